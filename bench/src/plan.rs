//! Benchmark (issue 16): `passeur plan` over a large bucket against a
//! plain listing of it: `rclone size` (one recursive listing, objects and
//! bytes summed), side by side, peak RSS of each.
//!
//! The source is the synthetic S3 bucket ([`passeur_bench::synth`]: its
//! pages cost the same at any size, as a cloud's do) behind the metering
//! proxy adding `BENCH_LATENCY_MS` (default 0) to every request.
//! `bench/plan.sh` builds and runs it. `BENCH_OBJECTS` (default
//! 1,000,000), `BENCH_RUNS` (default 3, medians).
//!
//! Then (`BENCH_INVENTORY`, default 1) the same number of objects as an
//! S3 Inventory report, gzip CSV and Parquet, 10 data files each
//! (`bench/support/inventory_big.py`, pyarrow), every object its own MD5
//! (the duplicate table full): `passeur plan --inventory`, seconds and
//! peak RSS.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::process::Command;
use std::sync::Arc;

use anyhow::{Result, ensure};
use passeur_bench::measure::{Cost, median, timed};
use passeur_bench::synth::{self, Bucket};
use passeur_bench::{env_u64, rclone_remote};
use passeur_tests::meter::Meter;
use passeur_tests::passeur_command;
use passeur_tests::servers::tool;

/// `c` with its standard output sent to `out`, through `sh` (GNU time,
/// which [`timed`] wraps around it, keeps the command's output to itself).
fn to_file(c: &Command, out: &std::path::Path) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("out=$1; shift; exec \"$@\" > \"$out\"")
        .arg("sh")
        .arg(out)
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh
}

fn main() -> Result<()> {
    let n = env_u64("BENCH_OBJECTS", 1_000_000)?;
    let runs = env_u64("BENCH_RUNS", 3)?.max(1);
    let latency = env_u64("BENCH_LATENCY_MS", 0)?;
    let bucket = Arc::new(Bucket::new(n, 1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let addr = rt.block_on(Arc::clone(&bucket).serve())?;
    let meter = Meter::start(&format!("http://{addr}"))?;
    meter.delay(latency);
    let work = tempfile::tempdir()?;
    let cfg = work.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[source]\n{}", synth::config(&meter.endpoint)),
    )?;
    let scratch = work.path().join("time");
    let report = work.path().join("plan.json");
    let (mut plan, mut rclone) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let p = passeur_command(&[
            "plan",
            "--source",
            "s3://src",
            "--config",
            &cfg.to_string_lossy(),
            "--json",
        ])?;
        plan.push(timed(&to_file(&p, &report), &scratch)?);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
        ensure!(
            v["survey"]["objects"] == n + 1,
            "plan counted {} of {} objects",
            v["survey"]["objects"],
            n + 1
        );
        let mut r = Command::new("rclone");
        rclone_remote(&mut r, "src", &meter.endpoint);
        r.args([
            "size",
            "--fast-list",
            "--s3-list-version",
            "2",
            "src:src",
            "--json",
        ]);
        let out = work.path().join("size.json");
        rclone.push(timed(&to_file(&r, &out), &scratch)?);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
        ensure!(v["count"] == n + 1, "rclone size counted {}", v["count"]);
    }
    let med = |v: &[Cost], f: fn(&Cost) -> f64| median(v.iter().map(f).collect());
    let (pw, rw) = (med(&plan, |c| c.wall), med(&rclone, |c| c.wall));
    let (pr, rr) = (
        med(&plan, |c| c.rss_kib as f64 / 1024.0),
        med(&rclone, |c| c.rss_kib as f64 / 1024.0),
    );
    println!(
        "{} objects (a synthetic S3 bucket), {latency} ms added per request, medians of {runs}",
        n + 1
    );
    println!("| | seconds | CPU-s | peak RSS MiB |");
    println!("|---|---|---|---|");
    println!(
        "| `passeur plan` | {pw:.2} | {:.2} | {pr:.0} |",
        med(&plan, |c| c.cpu)
    );
    println!(
        "| `rclone size --fast-list` | {rw:.2} | {:.2} | {rr:.0} |",
        med(&rclone, |c| c.cpu)
    );
    println!("| plan / listing | {:.2} | | |", pw / rw);
    if env_u64("BENCH_INVENTORY", 1)? != 0 {
        inventories(n, runs, work.path(), &scratch)?;
    }
    Ok(())
}

/// `passeur plan --inventory` over reports of `n` objects.
fn inventories(n: u64, runs: u64, work: &std::path::Path, scratch: &std::path::Path) -> Result<()> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/inventory_big.py");
    let out = Command::new(tool("PASSEUR_PYTHON")?)
        .arg(script)
        .arg(n.to_string())
        .arg(work.join("inventory"))
        .output()?;
    ensure!(
        out.status.success(),
        "inventory_big.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifests = String::from_utf8(out.stdout)?;
    let report = work.join("inventory.json");
    for (manifest, what) in manifests.lines().zip(["gzip CSV", "Parquet"]) {
        let mut costs = Vec::new();
        for _ in 0..runs {
            let p = passeur_command(&[
                "plan",
                "--source",
                "s3://src",
                "--inventory",
                manifest,
                "--json",
            ])?;
            costs.push(timed(&to_file(&p, &report), scratch)?);
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
            ensure!(
                v["survey"]["objects"] == n
                    && (n > 1 << 20 || v["survey"]["duplicates"]["distinct"] == n),
                "plan --inventory counted {} objects, {} contents",
                v["survey"]["objects"],
                v["survey"]["duplicates"]["distinct"]
            );
        }
        let med = |f: fn(&Cost) -> f64| median(costs.iter().map(f).collect());
        println!(
            "| `passeur plan --inventory`, {n} objects, S3 Inventory {what} (10 files) | {:.2} | {:.2} | {:.0} |",
            med(|c| c.wall),
            med(|c| c.cpu),
            med(|c| c.rss_kib as f64 / 1024.0)
        );
    }
    Ok(())
}
