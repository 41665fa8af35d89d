//! Benchmark: the cutover window. N small objects are replicated (from a
//! local directory, or from S3 on s3s-fs, to a local directory), then
//! `BENCH_CHANGES` objects change at the source, and the window is timed:
//! `passeur cutover` (final pass + fast verification) against `rclone sync`
//! followed by `rclone check` on the same source, each tool with its own
//! replica. Repeated for several N to show the window grows with the
//! listing, not with the bytes.
//!
//! `bench/cutover.sh` builds and runs it. `BENCH_SIZES` (default
//! "5000,20000,50000"), `BENCH_CHANGES` (default 50), `BENCH_SOURCE`
//! (`local`, the default, or `s3s-fs`: its listing walks the whole bucket
//! for every page, so it is quadratic in N).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use passeur_bench::{mixed_keys, rclone_remote, seed};
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur_command};

fn timed(mut c: Command) -> Result<(f64, Run)> {
    let t = Instant::now();
    let run = Run::from_output(c.output()?);
    Ok((t.elapsed().as_secs_f64(), run))
}

/// Where the objects come from.
enum Source {
    Local(std::path::PathBuf),
    S3(Server),
}

impl Source {
    /// Write `body(i, generation)` under each of `keys`.
    fn put(&self, keys: &[(usize, String)], generation: u8) -> Result<()> {
        match self {
            Source::Local(dir) => {
                for (i, k) in keys {
                    let p = dir.join(k);
                    if let Some(d) = p.parent() {
                        std::fs::create_dir_all(d)?;
                    }
                    std::fs::write(p, body(*i, generation))?;
                }
                Ok(())
            }
            Source::S3(server) => {
                let rt = tokio::runtime::Runtime::new()?;
                let client = server.client("src")?;
                let names: Vec<String> = keys.iter().map(|(_, k)| k.clone()).collect();
                let index: Vec<usize> = keys.iter().map(|(i, _)| *i).collect();
                rt.block_on(seed(
                    client.as_ref(),
                    &names,
                    |j| body(index[j], generation),
                    32,
                ))
            }
        }
    }

    /// The `[job.source]` section.
    fn section(&self) -> String {
        match self {
            Source::Local(dir) => format!("url = \"{}\"\n", dir.display()),
            Source::S3(server) => format!("url = \"s3://src\"\n{}", server.config()),
        }
    }

    /// rclone's name for it, with the remote configured on `c`.
    fn rclone(&self, args: &[&str], replica: &str) -> Command {
        let mut c = Command::new("rclone");
        c.args(args);
        match self {
            Source::Local(dir) => {
                c.arg(dir);
            }
            Source::S3(server) => {
                c.arg("src:src");
                rclone_remote(&mut c, "src", &server.endpoint);
            }
        }
        c.arg(replica);
        c
    }
}

fn body(i: usize, generation: u8) -> Vec<u8> {
    let len = 1024 + (i * 37) % 3072;
    let mut out = Vec::with_capacity(len);
    let mut x = blake3::Hasher::new()
        .update(&[generation])
        .update(&i.to_le_bytes())
        .finalize_xof();
    out.resize(len, 0);
    x.fill(&mut out);
    out
}

struct Row {
    n: usize,
    initial_passeur: f64,
    initial_rclone: f64,
    passeur: f64,
    rclone_sync: f64,
    rclone_check: f64,
}

fn one_size(n: usize, changes: usize, work: &Path, s3: bool) -> Result<Row> {
    let dir = work.join(format!("n{n}"));
    std::fs::create_dir_all(&dir)?;
    let source = if s3 {
        let server = Server::start(Kind::S3sFs)?;
        server.create_bucket("src")?;
        Source::S3(server)
    } else {
        Source::Local(dir.join("source"))
    };
    let keys: Vec<(usize, String)> = mixed_keys(n).into_iter().enumerate().collect();
    source.put(&keys, 0)?;
    let cfg = dir.join("passeur.toml");
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\n[[job]]\nname = \"bench\"\n[job.source]\n{}[job.target]\nurl = \"{}\"\n",
            dir.join("state").display(),
            source.section(),
            dir.join("passeur-replica").display()
        ),
    )?;
    let cutover = || -> Result<Command> {
        passeur_command(&[
            "cutover",
            "--config",
            &cfg.to_string_lossy(),
            "--report",
            &dir.join("report.json").to_string_lossy(),
        ])
    };
    let replica = dir.join("rclone-replica").to_string_lossy().into_owned();
    let (initial_passeur, run) = timed(cutover()?)?;
    ensure!(run.code == 0, "initial passeur cutover: {}", run.stderr);
    let (initial_rclone, run) = timed(source.rclone(&["sync"], &replica))?;
    ensure!(run.code == 0, "initial rclone sync: {}", run.stderr);

    // Applications write a little more, then the source freezes.
    let changed: Vec<(usize, String)> = keys
        .iter()
        .step_by(n / changes)
        .take(changes)
        .cloned()
        .collect();
    source.put(&changed, 1)?;

    let (passeur, run) = timed(cutover()?)?;
    ensure!(
        run.code == 0,
        "passeur cutover: {}\n{}",
        run.stdout,
        run.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json"))?)?;
    let copied = report["final_pass"]["summary"]["stats"]["copied"]
        .as_u64()
        .context("copied")?;
    ensure!(
        copied == changes as u64,
        "passeur copied {copied}, not {changes}"
    );
    let (rclone_sync, run) = timed(source.rclone(&["sync"], &replica))?;
    ensure!(run.code == 0, "rclone sync: {}", run.stderr);
    let (rclone_check, run) = timed(source.rclone(&["check"], &replica))?;
    ensure!(run.code == 0, "rclone check: {}", run.stderr);
    Ok(Row {
        n,
        initial_passeur,
        initial_rclone,
        passeur,
        rclone_sync,
        rclone_check,
    })
}

fn main() -> Result<()> {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "5000,20000,50000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let changes: usize = std::env::var("BENCH_CHANGES")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(50);
    let s3 = std::env::var("BENCH_SOURCE").is_ok_and(|s| s == "s3s-fs");
    let work = tempfile::tempdir()?;
    println!(
        "cutover window after {changes} changes ({} → local directory)",
        if s3 { "s3s-fs" } else { "local directory" }
    );
    println!(
        "{:>8} {:>12} {:>12} | {:>10} {:>12} {:>12} {:>12} {:>7}",
        "objects",
        "1st passeur",
        "1st rclone",
        "passeur",
        "rclone sync",
        "rclone check",
        "rclone total",
        "ratio"
    );
    for n in sizes {
        eprintln!("{n} objects...");
        let r = one_size(n, changes.min(n), work.path(), s3)?;
        let total = r.rclone_sync + r.rclone_check;
        println!(
            "{:>8} {:>11.1}s {:>11.1}s | {:>9.1}s {:>11.1}s {:>11.1}s {:>11.1}s {:>7.2}",
            r.n,
            r.initial_passeur,
            r.initial_rclone,
            r.passeur,
            r.rclone_sync,
            r.rclone_check,
            total,
            r.passeur / total
        );
    }
    Ok(())
}
