//! Benchmark: an incremental pass over a large, unchanged S3 source (what
//! every daemon pass after the first and the cutover's final pass do: list,
//! compare with the manifest), passeur with one listing vs parallel key
//! ranges, and `rclone lsf -R` listing the same bucket, through a proxy that
//! adds a round-trip delay to every request (a cloud endpoint is tens of
//! milliseconds away; the local servers are not).
//!
//! `bench/listing.sh` builds and runs it. `BENCH_OBJECTS` (default 50,000),
//! `BENCH_LATENCY_MS` (default 30) and `BENCH_SERVER` (s3s-fs, or moto)
//! set the size, the delay and the server.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, ensure};
use passeur_bench::{env_u64, mixed_keys, rclone_remote, seed};
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur_command};

fn main() -> Result<()> {
    let n = usize::try_from(env_u64("BENCH_OBJECTS", 50_000)?)?;
    let latency = env_u64("BENCH_LATENCY_MS", 30)?;
    let kind = match std::env::var("BENCH_SERVER").as_deref() {
        Ok("moto") => Kind::Moto,
        _ => Kind::S3sFs,
    };
    let server = Server::start(kind)?;
    server.create_bucket("src")?;
    let keys = mixed_keys(n);
    eprintln!("seeding {n} objects...");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(seed(
        server.client("src")?.as_ref(),
        &keys,
        |_| b"x".to_vec(),
        32,
    ))?;
    let meter = Meter::start(&server.endpoint)?;
    meter.delay(latency);
    let work = tempfile::tempdir()?;
    let cfg = work.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\n{}",
            server.config().replace(&server.endpoint, &meter.endpoint)
        ),
    )?;
    println!("{n} objects on {kind:?}, {latency} ms added per request");
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "tool", "seconds", "requests", "keys"
    );
    let state = work.path().join("state");
    let target = work.path().join("target");
    let pass = |fanout: usize| -> Result<(f64, u64, Run)> {
        let before = meter.requests();
        let t = Instant::now();
        let run = Run::from_output(
            passeur_command(&[
                "sync",
                "--source",
                &server.url("src"),
                "--target",
                &target.to_string_lossy(),
                "--state",
                &state.to_string_lossy(),
                "--config",
                &cfg.to_string_lossy(),
                "--output",
                "json",
                "--listing-concurrency",
                &fanout.to_string(),
            ])?
            .output()?,
        );
        let secs = t.elapsed().as_secs_f64();
        ensure!(run.code == 0, "passeur failed: {}", run.stderr);
        let listed = run.stat("listed")?;
        ensure!(listed == n as u64, "passeur listed {listed} of {n}");
        Ok((secs, meter.requests() - before, run))
    };
    let (secs, requests, _) = pass(8)?;
    println!(
        "{:<34} {secs:>10.1} {requests:>10} {n:>10}",
        "passeur first pass (copies all)"
    );
    for fanout in [1usize, 4, 8, 16] {
        let (secs, requests, run) = pass(fanout)?;
        ensure!(run.stat("unchanged")? == n as u64, "not all unchanged");
        println!(
            "{:<34} {secs:>10.1} {requests:>10} {n:>10}",
            format!("passeur next pass, listing x{fanout}")
        );
    }
    let before = meter.requests();
    let t = Instant::now();
    let mut c = Command::new("rclone");
    c.args(["lsf", "-R", "--files-only", "--checkers", "8", "src:src"]);
    rclone_remote(&mut c, "src", &meter.endpoint);
    let out = c.output()?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "rclone failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout).lines().count();
    ensure!(listed == n, "rclone listed {listed} of {n}");
    println!(
        "{:<34} {secs:>10.1} {:>10} {listed:>10}",
        "rclone lsf -R --checkers 8",
        meter.requests() - before
    );
    Ok(())
}
