//! Benchmark (issue 15): what one shard's pass costs in listing, hash
//! shards (every shard lists every name and skips the others') against
//! range shards (each lists its own range, cut where the previous pass's
//! keys fall: `passeur manifest ranges`), on one S3 source behind a proxy
//! that adds a round trip to every request. Each shard runs alone, one
//! after the other (as each would on its own host); its no-op pass (the
//! pass of every day between changes, and the cutover's final pass) is
//! timed, its list requests counted by the proxy.
//!
//! The source is the synthetic S3 bucket ([`passeur_bench::synth`]: its
//! listing costs the same per page at any size, as a cloud's does; the
//! emulators' grow with the bucket), the target a local directory. Only
//! the measured passes go through the added latency.
//!
//! `bench/shard-listing.sh` builds and runs it. `BENCH_OBJECTS` (default
//! 1,000,000), `BENCH_SHARDS` (default 4; 1: the one instance alone),
//! `BENCH_LATENCY_MS` (default 30).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};
use passeur_bench::env_u64;
use passeur_bench::synth::{self, Bucket};
use passeur_tests::meter::Meter;
use passeur_tests::{Run, passeur_command};

/// One pass: seconds, list requests, names listed, the run.
struct Pass {
    secs: f64,
    lists: usize,
    listed: u64,
    run: Run,
}

fn main() -> Result<()> {
    let n = env_u64("BENCH_OBJECTS", 1_000_000)?;
    let shards = u16::try_from(env_u64("BENCH_SHARDS", 4)?)?;
    let latency = env_u64("BENCH_LATENCY_MS", 30)?;
    // The synthetic bucket lists a page in O(page): the emulators' listings
    // grow with the bucket (s3s-fs walks and sorts it per request).
    let bucket = Arc::new(Bucket::new(n, 1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let addr = rt.block_on(Arc::clone(&bucket).serve())?;
    let meter = Meter::start(&format!("http://{addr}"))?;
    let work = tempfile::tempdir()?;
    let cfg = work.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[source]\n{}", synth::config(&meter.endpoint)),
    )?;
    let target = work.path().join("target");
    let pass = |state: &Path, extra: &[&str]| -> Result<Pass> {
        let lists = meter.listings().len();
        let mut args = vec![
            "sync".to_owned(),
            "--source".into(),
            "s3://src".into(),
            "--target".into(),
            target.to_string_lossy().into_owned(),
            "--state".into(),
            state.to_string_lossy().into_owned(),
            "--config".into(),
            cfg.to_string_lossy().into_owned(),
            "--output".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let t = Instant::now();
        let run = Run::from_output(
            passeur_command(&args.iter().map(String::as_str).collect::<Vec<_>>())?.output()?,
        );
        let secs = t.elapsed().as_secs_f64();
        ensure!(run.code == 0, "passeur {extra:?} failed: {}", run.stderr);
        Ok(Pass {
            secs,
            lists: meter.listings().len() - lists,
            // Names the listing returned: kept, and skipped as others'.
            listed: run.stat("listed")? + run.stat("excluded")?,
            run,
        })
    };

    // One instance first: the target filled, and the keys ranges are
    // learned from.
    // Only the measured passes go through the added latency.
    let total = n + 1;
    let single = work.path().join("single");
    meter.delay(0);
    let first = pass(&single, &[])?;
    ensure!(first.listed == total, "listed {} of {total}", first.listed);
    meter.delay(latency);
    let again = pass(&single, &[])?;
    let ranges = work.path().join("ranges.json");
    let learned = passeur_tests::passeur(
        &[
            "manifest",
            "ranges",
            &single.to_string_lossy(),
            "--shards",
            &shards.to_string(),
            "--out",
            &ranges.to_string_lossy(),
        ],
        &[],
    )?;
    ensure!(learned.code == 0, "manifest ranges: {}", learned.stderr);

    println!(
        "{total} objects (a synthetic S3 bucket), {latency} ms added per request, {shards} shards, each alone; the no-op pass of each"
    );
    println!("| division | shard | seconds | list requests | names listed | its keys |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| one instance | - | {:.2} | {} | {} | {} |",
        again.secs,
        again.lists,
        again.listed,
        again.run.stat("unchanged")?
    );
    if shards < 2 {
        // BENCH_SHARDS=1: the one instance alone.
        return Ok(());
    }
    let ranges_arg = ranges.to_string_lossy().into_owned();
    for (name, extra) in [("hash", None), ("ranges", Some(ranges_arg.as_str()))] {
        let (mut total_secs, mut max_secs, mut lists, mut listed) = (0.0f64, 0.0f64, 0, 0);
        for k in 0..shards {
            let state = work.path().join(format!("{name}-{k}"));
            let shard = format!("{k}/{shards}");
            let mut args = vec!["--shard", shard.as_str()];
            if let Some(r) = extra {
                args.extend(["--shard-ranges", r]);
            }
            // The shard's first pass adopts its objects (already at the
            // target); the second is the one measured.
            meter.delay(0);
            let adopt = pass(&state, &args)?;
            ensure!(
                adopt.run.stat("copied")? == 0,
                "{name} shard {shard} copied objects the target held"
            );
            meter.delay(latency);
            let p = pass(&state, &args)?;
            let mine = p.run.stat("unchanged")?;
            println!(
                "| {name} | {shard} | {:.2} | {} | {} | {mine} |",
                p.secs, p.lists, p.listed
            );
            total_secs += p.secs;
            max_secs = max_secs.max(p.secs);
            lists += p.lists;
            listed += p.listed;
        }
        println!(
            "| {name}, all shards | sum (max) | {total_secs:.2} ({max_secs:.2}) | {lists} | {listed} | {total} |"
        );
    }
    Ok(())
}
