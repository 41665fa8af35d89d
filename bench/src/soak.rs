//! The fault campaign's soak mode (not in CI): Azurite → s3s-fs, each
//! behind a metering proxy that breaks a seeded share of the requests in
//! every way `passeur_tests::netfault` knows, while a live writer changes
//! the source directly. `passeur sync --delete` runs pass after pass, each
//! under a fresh fault schedule, until the minutes are up; then the writer
//! stops, the faults stop, `passeur cutover --deep` runs, and the source
//! and the target are compared independently (listed and read back whole,
//! BLAKE3 of every object, by object_store clients of this program; open
//! multipart uploads from s3s-fs's data directory). The verdict comes from
//! those reads and from the exit codes, never from passeur's summaries.
//!
//! `bench/soak.sh` builds and runs it. `PASSEUR_SOAK_MINUTES` (default 20),
//! `PASSEUR_FAULT_SEED` (default: from the clock; printed first: the same
//! seed gives the same dataset, the same sequence of writer changes and
//! the same fault schedule per pass — when a change lands relative to a
//! pass follows the clock), `PASSEUR_SOAK_RATE` (share of the requests
//! broken on each side, default 0.08), `PASSEUR_BIN` (the passeur to
//! soak). Exit 0 only if CLEAN.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "soak/check.rs"]
mod check;
#[path = "soak/proc.rs"]
mod proc;
#[path = "soak/writer.rs"]
mod writer;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::netfault::{Dialect, Kind as Fault, NetFaults};
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur_command};
use serde_json::Value;

/// Share of the requests broken on each side, unless
/// `PASSEUR_SOAK_RATE` says otherwise.
const RATE: f64 = 0.08;
/// How long a stalled request hangs: past the client's request-timeout.
const STALL: Duration = Duration::from_secs(4);
/// Client settings of both stores (as the fault scenarios' own): a stall
/// is given up on after 2 s, a broken request retried quickly.
const CLIENT: &str = "request-timeout = \"2s\"\nmax-retries = 4\nretry-timeout = \"30s\"\n";
/// The target's parts: 5 MiB, multipart from 5 MiB.
const PARTS: &str = "part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n";
/// Small objects of the seeded dataset, besides the object shapes.
const SMALL: usize = 300;
/// A pass (or the cutover) still running after this hangs: it is killed
/// and counts as a failure.
const HANG: Duration = Duration::from_secs(600);
/// Objects in flight per pass.
const CONCURRENCY: usize = 8;
/// Mixed into the target's schedule seeds (the source's is seed ^ pass).
const TARGET_SALT: u64 = 0x7461_7267 << 32;

/// Which side a fault schedule breaks.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
}

/// The fault schedule of one side in one pass: `seed ^ pass` at the
/// source, that and [`TARGET_SALT`] at the target.
fn schedule(seed: u64, rate: f64, pass: u64, side: Side) -> NetFaults {
    let (s, dialect) = match side {
        Side::Source => (seed ^ pass, Dialect::Azure),
        Side::Target => (seed ^ pass ^ TARGET_SALT, Dialect::S3),
    };
    NetFaults::new(s, rate, &Fault::ALL, dialect).stall_for(STALL)
}

/// `name` as a number, `default` if unset.
fn env_f64(name: &str, default: f64) -> Result<f64> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.parse()
            .with_context(|| format!("{name}={v:?} is not a number"))
    })
}

fn seed() -> Result<u64> {
    let seed = match std::env::var("PASSEUR_FAULT_SEED") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("PASSEUR_FAULT_SEED={v:?} is not a number"))?,
        Err(_) => {
            let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
            // Nanoseconds, folded: any u64 will do, and it must vary.
            t.as_secs() ^ u64::from(t.subsec_nanos()) << 20
        }
    };
    Ok(seed)
}

/// Awkward keys besides the dataset's own, with small random bodies.
fn odd_keys(seed: u64) -> Vec<Obj> {
    [
        "odd/a+b.txt",
        "odd/+leading-plus",
        "odd/percent%41%42.dat",
        "odd/100%41 done.txt",
        "odd/k=v/x=1&y=2.json",
        "odd/with  two spaces.txt",
        "odd/ünïcödé/日本語 ファイル.txt",
        "odd/emoji 🦀.bin",
        "odd/mixed +%41= é.bin",
    ]
    .iter()
    .map(|k| Obj {
        key: (*k).to_owned(),
        data: Bytes::from(dataset::body(k, 64 + seed % 512, 0)),
        content_type: None,
        meta: vec![],
    })
    .collect()
}

/// Totals over the passes, from their exit codes and JSON summaries.
#[derive(Default)]
struct Tally {
    passes: u64,
    exit0: u64,
    exit1: u64,
    /// Passes that exited otherwise, panicked or hung, and how.
    failed: Vec<String>,
    no_summary: u64,
    stats: BTreeMap<&'static str, u64>,
    failed_by_kind: BTreeMap<String, u64>,
    listing_errors: u64,
    deletes_refused: u64,
    injected: [BTreeMap<Fault, u64>; 2],
}

/// The summary counters added up over the passes.
const STATS: [&str; 9] = [
    "copied",
    "deduplicated",
    "deleted",
    "failed",
    "vanished",
    "bytes_written",
    "throttled",
    "uploads_resumed",
    "uploads_restarted",
];

impl Tally {
    fn stat(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
    }

    /// Count one pass; a line about it on stderr.
    fn add(&mut self, pass: u64, (r, hung): &(Run, bool), seconds: f64, faults: [&NetFaults; 2]) {
        self.passes += 1;
        let panicked = r.stderr.contains("panicked");
        let fail = match (r.code, panicked, hung) {
            (_, _, true) => Some(format!("pass {pass}: hung, killed after {HANG:?}")),
            (_, true, _) => Some(format!("pass {pass}: exit {}, panicked", r.code)),
            (0, ..) => {
                self.exit0 += 1;
                None
            }
            (1, ..) => {
                self.exit1 += 1;
                None
            }
            (code, ..) => Some(format!("pass {pass}: exit {code}")),
        };
        for (i, f) in faults.iter().enumerate() {
            for (k, n) in f.injected() {
                *self.injected[i].entry(k).or_default() += n;
            }
        }
        let summary = r.summary().ok();
        let s = summary.as_ref().map(|v| &v["summary"]);
        let mut line = format!(
            "soak: pass {pass}: exit {} in {seconds:.1} s; faults {} at the source, {} at the target",
            r.code,
            faults[0].total(),
            faults[1].total()
        );
        match s {
            Some(s) => {
                for name in STATS {
                    *self.stats.entry(name).or_default() += s["stats"][name].as_u64().unwrap_or(0);
                }
                if let Some(kinds) = s["failed_by_kind"].as_object() {
                    for (k, n) in kinds {
                        *self.failed_by_kind.entry(k.clone()).or_default() +=
                            n.as_u64().unwrap_or(0);
                    }
                }
                self.listing_errors += u64::from(!s["listing_error"].is_null());
                self.deletes_refused += u64::from(!s["deletes_refused"].is_null());
                line += &format!(
                    "; copied {}, deleted {}, failed {} {}",
                    s["stats"]["copied"],
                    s["stats"]["deleted"],
                    s["stats"]["failed"],
                    s["failed_by_kind"]
                );
                if !s["listing_error"].is_null() {
                    line += &format!("; listing error {}", s["listing_error"]);
                }
            }
            None => self.no_summary += 1,
        }
        eprintln!("{line}");
        if let Some(f) = fail {
            eprintln!("soak: FAIL: {f}; the end of its stderr:");
            tail(&r.stderr);
            self.failed.push(f);
        }
    }
}

/// `passeur cutover --deep` of the job, reaching both servers directly
/// (faults off), with deletes on and the job's parts settings: its run and
/// its JSON report.
fn cutover(
    job: &StoreJob,
    source: &Server,
    target: &Server,
) -> Result<((Run, bool), Option<Value>)> {
    let work = job.work.path();
    let cfg = work.join("cutover.toml");
    let report = work.join("cutover-report.json");
    // The job's state directory is WORK/state: state-dir WORK, job "state".
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\n[[job]]\nname = \"state\"\n[job.source]\nurl = \"{}\"\n{}[job.target]\nurl = \"{}\"\n{}{PARTS}[job.transfer]\nconcurrency = {CONCURRENCY}\n[job.delete]\nenabled = true\nmax-fraction = 1.0\n",
            work.display(),
            source.url("src"),
            source.config(),
            target.url("dst"),
            target.config(),
        ),
    )?;
    let (c, r) = (cfg.to_string_lossy(), report.to_string_lossy());
    let run = proc::run_limited(
        passeur_command(&[
            "cutover", "--config", &c, "--job", "state", "--deep", "--report", &r,
        ])?,
        HANG,
    )?;
    let json = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    Ok((run, json))
}

/// The last lines of a process's stderr, indented, on stderr.
fn tail(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().rev().take(40).collect();
    for l in lines.iter().rev() {
        eprintln!("    {l}");
    }
}

fn kinds(m: &BTreeMap<Fault, u64>) -> String {
    let total: u64 = m.values().sum();
    let each: Vec<String> = m.iter().map(|(k, n)| format!("{k:?} {n}")).collect();
    format!("{total} ({})", each.join(", "))
}

fn first(keys: &[String]) -> String {
    match keys {
        [] => String::new(),
        [k, ..] => format!(" (first: {k:?})"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn main() -> ExitCode {
    match soak() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The whole soak; `Ok(true)` if CLEAN. Everything it starts is owned
/// here and stopped by the time it returns (servers and proxies on drop).
fn soak() -> Result<bool> {
    let seed = seed()?;
    println!("seed {seed} (PASSEUR_FAULT_SEED={seed} to run it again)");
    std::io::stdout().flush()?;
    let minutes = env_f64("PASSEUR_SOAK_MINUTES", 20.0)?;
    let rate = env_f64("PASSEUR_SOAK_RATE", RATE)?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&rate),
        "PASSEUR_SOAK_RATE: between 0 and 1"
    );
    let rt = tokio::runtime::Runtime::new()?;
    let az = Server::start(Kind::Azurite)?;
    az.create_bucket("src")?;
    let s3 = Server::start(Kind::S3sFs)?;
    s3.create_bucket("dst")?;
    let src = az.client("src")?;
    let mut objs = dataset::standard(seed, SMALL);
    objs.extend(odd_keys(seed));
    eprintln!("soak: seeding {} objects...", objs.len());
    rt.block_on(dataset::seed(src.as_ref(), &objs))?;
    let src_proxy = Meter::start(&az.endpoint)?;
    let dst_proxy = Meter::start(&s3.endpoint)?;
    let job = StoreJob::through(
        &az,
        &src_proxy.endpoint,
        &s3,
        &dst_proxy.endpoint,
        &format!("{CLIENT}{PARTS}"),
        CONCURRENCY,
    )?
    .with_source_config(CLIENT)?
    .with_args(&["--delete", "--max-delete-fraction", "1"]);

    let model = objs.iter().map(|o| (o.key.clone(), o.data.len() as u64));
    let writer = writer::Writer::start(&rt, Arc::clone(&src), seed, model.collect());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    let mut tally = Tally::default();
    let mut windows = Vec::new();
    let mut pass = 0u64;
    while Instant::now() < deadline {
        pass += 1;
        let f_src = src_proxy
            .break_requests(Some(schedule(seed, rate, pass, Side::Source)))
            .context("no source schedule")?;
        let f_dst = dst_proxy
            .break_requests(Some(schedule(seed, rate, pass, Side::Target)))
            .context("no target schedule")?;
        let (from, t) = (SystemTime::now(), Instant::now());
        let r = proc::run_limited(job.command()?, HANG)?;
        windows.push(check::Window {
            pass,
            from,
            to: SystemTime::now(),
        });
        tally.add(pass, &r, t.elapsed().as_secs_f64(), [&f_src, &f_dst]);
    }
    let soaked = started.elapsed();
    let counts = Arc::clone(&writer.counts);
    let model = writer.finish(&rt)?;
    let w = [
        &counts.puts,
        &counts.overwrites,
        &counts.deletes,
        &counts.renames,
        &counts.large,
        &counts.errors,
    ]
    .map(|c| c.load(Relaxed));
    src_proxy.break_requests(None);
    dst_proxy.break_requests(None);
    src_proxy.wait_idle(Duration::from_secs(30))?;
    dst_proxy.wait_idle(Duration::from_secs(30))?;

    eprintln!("soak: writer stopped, faults off; cutover...");
    let ((cut, cut_hung), report) = cutover(&job, &az, &s3)?;
    let cut_panicked = cut.stderr.contains("panicked");
    let verified = report.as_ref().is_some_and(|r| r["verified"] == true);
    eprintln!("soak: comparing source and target...");
    let source = rt.block_on(check::digests(src.as_ref()))?;
    let target = rt.block_on(check::digests(s3.client("dst")?.as_ref()))?;
    let cmp = check::compare(&source, &target);
    let model_matches = model.keys().eq(source.keys());
    let mut open = check::open_uploads(s3.data.path(), "dst")?;
    for u in &mut open {
        u.explained = check::explain(u, "dst", &windows, |p| {
            schedule(seed, rate, p, Side::Target)
        });
    }
    let unexplained = open.iter().filter(|u| u.explained.is_none()).count();

    let total_faults: u64 = tally.injected.iter().flat_map(|m| m.values()).sum();
    let clean = tally.failed.is_empty()
        && total_faults > 0
        && cut.code == 0
        && !cut_panicked
        && !cut_hung
        && verified
        && cmp.equal()
        && unexplained == 0;

    let row = |name: &str, value: String| println!("{name:<34} {value}");
    row("seed", seed.to_string());
    row(
        "minutes",
        format!("{minutes} asked, {:.1} soaked", soaked.as_secs_f64() / 60.0),
    );
    row(
        "passes",
        format!(
            "{} (exit 0: {}, exit 1: {}, other or panic: {}{})",
            tally.passes,
            tally.exit0,
            tally.exit1,
            tally.failed.len(),
            if tally.failed.is_empty() {
                String::new()
            } else {
                format!(": {}", tally.failed.join("; "))
            }
        ),
    );
    row(
        &format!("faults at the source ({:.0} %)", rate * 100.0),
        kinds(&tally.injected[0]),
    );
    row(
        &format!("faults at the target ({:.0} %)", rate * 100.0),
        kinds(&tally.injected[1]),
    );
    row(
        "writer",
        format!(
            "puts {}, overwrites {}, deletes {}, renames {} ({} above 5 MiB; {} errors)",
            w[0], w[1], w[2], w[3], w[4], w[5]
        ),
    );
    row(
        "copied / dedup / deleted (passes)",
        format!(
            "{} / {} / {}",
            tally.stat("copied"),
            tally.stat("deduplicated"),
            tally.stat("deleted")
        ),
    );
    row("bytes written (passes)", mib(tally.stat("bytes_written")));
    let by_kind: Vec<String> = tally
        .failed_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    row(
        "failures (passes)",
        format!(
            "{} ({}); vanished {}; listing errors {}; deletes refused {}; no summary {}",
            tally.stat("failed"),
            by_kind.join(", "),
            tally.stat("vanished"),
            tally.listing_errors,
            tally.deletes_refused,
            tally.no_summary
        ),
    );
    row("throttled (passes)", tally.stat("throttled").to_string());
    row(
        "uploads resumed / restarted",
        format!(
            "{} / {}",
            tally.stat("uploads_resumed"),
            tally.stat("uploads_restarted")
        ),
    );
    let fp = report
        .as_ref()
        .map(|r| &r["final_pass"]["summary"]["stats"]);
    row(
        "cutover --deep",
        format!(
            "exit {}, {}{}; final pass copied {}, deleted {}; mismatches {}",
            cut.code,
            if verified { "VERIFIED" } else { "NOT VERIFIED" },
            match (cut_panicked, cut_hung) {
                (_, true) => ", hung (killed)",
                (true, _) => ", panicked",
                _ => "",
            },
            fp.map_or(Value::Null, |s| s["copied"].clone()),
            fp.map_or(Value::Null, |s| s["deleted"].clone()),
            report.as_ref().map_or(Value::Null, |r| {
                r["verification"]["mismatches"]
                    .as_array()
                    .map_or(Value::Null, |a| a.len().into())
            }),
        ),
    );
    row(
        "source vs target (read back)",
        format!(
            "{} vs {} keys, {} at the source; missing {}{}, extra {}{}, differ {}{}",
            cmp.source,
            cmp.target,
            mib(cmp.bytes),
            cmp.missing.len(),
            first(&cmp.missing),
            cmp.extra.len(),
            first(&cmp.extra),
            cmp.differ.len(),
            first(&cmp.differ)
        ),
    );
    row(
        "source = writer's model",
        if model_matches { "yes" } else { "NO (harness)" }.to_owned(),
    );
    row(
        "open uploads at the target",
        format!(
            "{} ({} explained by a cut CreateMultipartUpload answer)",
            open.len(),
            open.len() - unexplained
        ),
    );
    for u in &open {
        row(
            "  open upload",
            format!(
                "{:?} {}: {}",
                u.key,
                u.id,
                u.explained.as_deref().unwrap_or("UNEXPLAINED")
            ),
        );
    }
    row(
        "verdict",
        if clean { "CLEAN" } else { "NOT CLEAN" }.to_owned(),
    );
    if cut.code != 0 || !verified || cut_panicked || cut_hung {
        eprintln!(
            "soak: cutover stdout:\n{}\nthe end of its stderr:",
            cut.stdout
        );
        tail(&cut.stderr);
    }
    for (what, keys) in [
        ("missing at the target", &cmp.missing),
        ("extra at the target", &cmp.extra),
        ("differ", &cmp.differ),
    ] {
        for k in keys.iter().take(20) {
            eprintln!("soak: {what}: {k:?}");
        }
    }
    Ok(clean)
}
