//! Where a run's CPU went over time: with `BENCH_TIMELINE=SECONDS`, each
//! timed run is sampled every SECONDS (the machine, its iowait, the tool,
//! s3s-fs and Azurite, in cores busy), and the samples and the idle they
//! leave are printed after the run. A run's totals say how busy the
//! machine was; this says *when* it was not, and who was working then.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One sample: cores busy over the interval before it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    /// Seconds since the run started, at the end of the interval.
    pub at: f64,
    /// The machine, all processes (0 to the number of cores).
    pub busy: f64,
    /// Cores idle waiting on I/O.
    pub iowait: f64,
    /// The timed tool (every process of that name).
    pub tool: f64,
    /// s3s-fs.
    pub s3: f64,
    /// Azurite.
    pub az: f64,
}

/// The machine's clock ticks so far: (busy, iowait, total), from
/// `/proc/stat` (100 per second per core).
fn ticks() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = f.iter().sum();
    let idle = f.get(3).copied().unwrap_or(0.0);
    let iowait = f.get(4).copied().unwrap_or(0.0);
    (total - idle - iowait, iowait, total)
}

/// CPU seconds used so far by every process whose name is `comm` (but
/// this one: the benchmark runs its own binary as a tool).
fn cpu_of_name(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let me = std::process::id();
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        let pid: u32 = name.to_str()?.parse().ok()?;
        (pid != me).then_some(())?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let (_, c) = head.split_once('(')?;
        (c == comm).then_some(())?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Some((t(11) + t(12)) / 100.0)
    })
    .sum()
}

/// A sampler running beside one timed run.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Slot>>,
}

impl Sampler {
    /// Starts sampling every `BENCH_TIMELINE` seconds, or returns `None`
    /// when it is unset. `tool` is the timed program's process name;
    /// `s3` and `az` give the servers' CPU seconds so far.
    pub fn start(
        tool: String,
        s3: impl Fn() -> f64 + Send + 'static,
        az: impl Fn() -> f64 + Send + 'static,
    ) -> Option<Self> {
        let every: f64 = std::env::var("BENCH_TIMELINE").ok()?.parse().ok()?;
        let every = Duration::from_secs_f64(every.max(0.02));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let read = || (ticks(), cpu_of_name(&tool), s3(), az());
            let mut last = (start, read());
            let mut slots = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let now = (Instant::now(), read());
                let dt = now.0.duration_since(last.0).as_secs_f64().max(1e-6);
                let ((b1, w1, t1), tool1, s1, a1) = now.1;
                let ((b0, w0, t0), tool0, s0, a0) = last.1;
                let span = (t1 - t0).max(1.0);
                slots.push(Slot {
                    at: now.0.duration_since(start).as_secs_f64(),
                    busy: (b1 - b0) / span * cores,
                    iowait: (w1 - w0) / span * cores,
                    tool: ((tool1 - tool0) / dt).max(0.0),
                    s3: ((s1 - s0) / dt).max(0.0),
                    az: ((a1 - a0) / dt).max(0.0),
                });
                last = now;
            }
            slots
        });
        Some(Self { stop, handle })
    }

    /// Stops sampling and prints the samples and a summary of the idle
    /// (first and last tenth of the run apart) on stderr.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let Ok(slots) = self.handle.join() else {
            return;
        };
        print(&slots);
    }
}

fn print(slots: &[Slot]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let Some(end) = slots.last().map(|s| s.at) else {
        return;
    };
    eprintln!("    timeline, cores busy: at s | machine | iowait | tool | s3s-fs | Azurite");
    let mut prev = 0.0;
    let (mut head, mut body, mut tail) = (0.0, 0.0, 0.0);
    for s in slots {
        eprintln!(
            "    {:6.2} | {:4.2} | {:4.2} | {:4.2} | {:4.2} | {:4.2}",
            s.at, s.busy, s.iowait, s.tool, s.s3, s.az
        );
        let idle = (cores - s.busy).max(0.0) * (s.at - prev);
        match s.at {
            t if t <= end * 0.1 => head += idle,
            t if t > end * 0.9 => tail += idle,
            _ => body += idle,
        }
        prev = s.at;
    }
    eprintln!(
        "    idle core-seconds: {:.2} in the first tenth, {:.2} in between, {:.2} in the last tenth",
        head, body, tail
    );
}
