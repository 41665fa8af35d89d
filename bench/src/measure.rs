//! Timing one command the way GNU time does (wall, user and system CPU,
//! peak RSS), medians of repeated runs, and the rows of a side-by-side
//! table (markdown and JSON).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// What one run of a command cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Wall seconds.
    pub wall: f64,
    /// User + system CPU seconds.
    pub cpu: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak resident set, KiB.
    pub rss_kib: u64,
    /// CPU seconds the servers spent meanwhile.
    pub servers_cpu: f64,
    /// Share of the machine's CPU time (all cores) busy meanwhile, 0–1.
    pub busy: f64,
    /// CPU seconds of the servers' busiest thread meanwhile (Azurite
    /// serves every request on one node thread: at the wall time, it
    /// bounds the run).
    pub server_thread: f64,
    /// Seconds a `sync` right after the run took: writing back what the
    /// run left dirty (0 when not measured).
    pub writeback: f64,
    /// The most objects passeur's pass let run at once (its adaptive
    /// window's highest limit, `concurrency_max` in its JSON summary);
    /// 0 for a program that reports none.
    pub window: u64,
}

/// The machine's CPU time so far, all cores (busy, total), in clock
/// ticks, from `/proc/stat`; zeros when it cannot be read.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    // idle and iowait are the 4th and 5th.
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// CPU seconds (user + system) process `pid` has used so far; 0 when it
/// cannot be read.
pub fn cpu_of(pid: u32) -> f64 {
    cpu_of_path(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) of a `/proc/…/stat` file; 0 when it
/// cannot be read.
fn cpu_of_path(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command's closing parenthesis: state is field 3,
    // utime and stime are fields 14 and 15, in clock ticks (100 per s).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds each thread of process `pid` has used so far, by thread
/// id; empty when they cannot be read.
pub fn threads_of(pid: u32) -> HashMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    dir.filter_map(|e| {
        let tid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        Some((tid, cpu_of_path(&format!("/proc/{pid}/task/{tid}/stat"))))
    })
    .collect()
}

/// The most CPU seconds one thread used between `before` and `after`
/// ([`threads_of`]; a thread born meanwhile counts from 0, one gone by
/// `after` is not seen: the servers' request threads live as long as
/// they do).
pub fn busiest_thread(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(tid, t)| t - before.get(tid).copied().unwrap_or(0.0))
        .fold(0.0, f64::max)
}

/// Make `outer` (a wrapper: GNU time, perf) run `c`: its program and
/// arguments after `outer`'s own, its environment and directory.
pub fn wrap(outer: &mut Command, c: &Command) {
    outer.arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => outer.env(k, v),
            None => outer.env_remove(k),
        };
    }
    if let Some(d) = c.get_current_dir() {
        outer.current_dir(d);
    }
}

/// Run `c` under `/usr/bin/time` (its output in `scratch`); fails, with the
/// end of its stderr, unless it exits 0.
pub fn timed(c: &Command, scratch: &Path) -> Result<Cost> {
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f").arg("%e %U %S %M").arg("-o").arg(scratch);
    wrap(&mut t, c);
    let out = t
        .output()
        .with_context(|| format!("run {:?}", c.get_program()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        bail!(
            "{:?} exited {:?}:\n{}",
            c.get_program(),
            out.status.code(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let line = std::fs::read_to_string(scratch)?;
    let f: Vec<f64> = line
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("GNU time said {line:?}"))?;
    let [wall, user, sys, rss] = f[..] else {
        bail!("GNU time said {line:?}");
    };
    Ok(Cost {
        wall,
        cpu: user + sys,
        sys,
        rss_kib: rss as u64,
        servers_cpu: 0.0,
        busy: 0.0,
        server_thread: 0.0,
        writeback: 0.0,
        window: window_of(&out.stdout),
    })
}

/// `concurrency_max` of the last JSON summary in a passeur run's output
/// (`--output json`), else 0.
fn window_of(stdout: &[u8]) -> u64 {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "summary")
        .filter_map(|v| v["summary"]["stats"]["concurrency_max"].as_u64())
        .next_back()
        .unwrap_or(0)
}

/// The median of `v` (the lower middle one for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// Runs of one tool on one workload.
#[derive(Debug, Default, Clone)]
pub struct Runs(pub Vec<Cost>);

impl Runs {
    /// Median wall seconds.
    pub fn wall(&self) -> f64 {
        median(self.0.iter().map(|c| c.wall).collect())
    }
    /// Median CPU seconds.
    pub fn cpu(&self) -> f64 {
        median(self.0.iter().map(|c| c.cpu).collect())
    }
    /// Median CPU seconds of the servers.
    pub fn servers_cpu(&self) -> f64 {
        median(self.0.iter().map(|c| c.servers_cpu).collect())
    }

    /// Median share of the machine busy during the runs, 0–1.
    pub fn busy(&self) -> f64 {
        median(self.0.iter().map(|c| c.busy).collect())
    }
    /// Largest peak RSS, MiB.
    pub fn rss_mib(&self) -> f64 {
        self.0.iter().map(|c| c.rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
    fn json(&self) -> Value {
        json!({
            "wall_s": self.0.iter().map(|c| c.wall).collect::<Vec<_>>(),
            "cpu_s": self.0.iter().map(|c| c.cpu).collect::<Vec<_>>(),
            "sys_s": self.0.iter().map(|c| c.sys).collect::<Vec<_>>(),
            "peak_rss_kib": self.0.iter().map(|c| c.rss_kib).collect::<Vec<_>>(),
            "median_wall_s": self.wall(),
            "median_cpu_s": self.cpu(),
            "servers_cpu_s": self.0.iter().map(|c| c.servers_cpu).collect::<Vec<_>>(),
            "machine_busy": self.0.iter().map(|c| c.busy).collect::<Vec<_>>(),
            "busiest_server_thread_cpu_s": self.0.iter().map(|c| c.server_thread).collect::<Vec<_>>(),
            "writeback_s": self.0.iter().map(|c| c.writeback).collect::<Vec<_>>(),
            "window_max": self.0.iter().map(|c| c.window).collect::<Vec<_>>(),
        })
    }
}

/// One row of the table: a workload, passeur and its peer on it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Short name.
    pub name: String,
    /// What is moved, in words.
    pub what: String,
    /// Bytes moved per run.
    pub bytes: u64,
    /// The goal: passeur's median wall time at most this times the peer's.
    pub goal: Option<f64>,
    /// Peak RSS goal for passeur, MiB.
    pub rss_goal: Option<f64>,
    /// passeur's runs.
    pub passeur: Runs,
    /// The peer's runs (rclone; `b3sum` for the hashing row).
    pub peer: Runs,
    /// The peer's name.
    pub peer_name: String,
}

impl Row {
    /// passeur's median wall time over the peer's.
    pub fn ratio(&self) -> f64 {
        self.passeur.wall() / self.peer.wall().max(1e-9)
    }

    fn met(&self) -> bool {
        self.goal.is_none_or(|g| self.ratio() <= g)
            && self.rss_goal.is_none_or(|g| self.passeur.rss_mib() <= g)
    }

    fn per_gib(&self, r: &Runs) -> String {
        if self.bytes < (64 << 20) {
            return "–".into();
        }
        format!(
            "{:.2}",
            r.cpu() / (self.bytes as f64 / f64::from(1u32 << 30))
        )
    }

    /// The markdown header of [`Row::markdown`].
    pub fn header() -> String {
        "| workload | peer | peer s | passeur s | ratio | goal | CPU-s/GiB peer / passeur | servers' CPU-s peer / passeur | peak RSS MiB peer / passeur | met |\n|---|---|---|---|---|---|---|---|---|---|".into()
    }

    /// One markdown line.
    pub fn markdown(&self) -> String {
        let goal = match (self.goal, self.rss_goal) {
            (Some(g), Some(m)) => format!("≤ {g} ×, ≤ {m} MiB"),
            (Some(g), None) => format!("≤ {g} ×"),
            (None, Some(m)) => format!("≤ {m} MiB"),
            (None, None) => "–".into(),
        };
        format!(
            "| {} ({}) | {} | {:.2} | {:.2} | **{:.2}** | {} | {} / {} | {:.1} / {:.1} | {:.0} / {:.0} | {} |",
            self.name,
            self.what,
            self.peer_name,
            self.peer.wall(),
            self.passeur.wall(),
            self.ratio(),
            goal,
            self.per_gib(&self.peer),
            self.per_gib(&self.passeur),
            self.peer.servers_cpu(),
            self.passeur.servers_cpu(),
            self.peer.rss_mib(),
            self.passeur.rss_mib(),
            match (self.goal, self.rss_goal) {
                (None, None) => "–",
                _ if self.met() => "yes",
                _ => "**no**",
            }
        )
    }

    /// The row with every run, as JSON.
    pub fn json(&self) -> Value {
        json!({
            "workload": self.name,
            "what": self.what,
            "bytes": self.bytes,
            "peer": self.peer_name,
            "goal_ratio": self.goal,
            "goal_rss_mib": self.rss_goal,
            "ratio": self.ratio(),
            "met": self.met(),
            "passeur": self.passeur.json(),
            "peer_runs": self.peer.json(),
        })
    }
}
