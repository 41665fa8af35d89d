//! Benchmark: passeur against rclone on the workloads of the mission, side
//! by side in one run: large objects (Azurite → s3s-fs, directory → s3s-fs,
//! tmpfs → tmpfs, and Azurite → s3s-fs behind proxies adding
//! `BENCH_LATENCY_MS` per request), small objects, a million tiny files
//! (first pass, no-op re-pass, peak RSS in one directory and in 1,000), and
//! passeur's chunk + hash pipeline against `b3sum --num-threads 1`.
//!
//! Each tool gets a fresh target (and passeur a fresh state) per run; runs
//! alternate between the tools; every target is read back independently
//! (keys and sizes every run, BLAKE3 of every byte on the first).
//! Medians of `BENCH_RUNS` (default 3); prints a markdown table and writes
//! every run to `BENCH_JSON`. `BENCH_ONLY=a,b` runs the named workloads,
//! `BENCH_TINY` (default 1,000,000) sizes the tiny-file workloads and
//! `BENCH_TINY_RUNS` (default 1: minutes each) repeats them.
//! `bench/perf.sh` builds it (release) and runs it.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

mod perf_io;
mod perf_work;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use passeur_bench::env_u64;
use passeur_bench::measure::Row;
use passeur_core::content::chunk::ChunkParams;
use passeur_core::content::digest::hash_and_chunk;
use passeur_core::content::parthash::PartHasher;

use crate::perf_work::Bench;

/// The part size the pipeline cuts objects into here (the default for
/// S3 targets).
const PART: usize = 8 << 20;

/// `bench-perf hash-file PATH`: the chunk + hash pipeline over one file, as
/// a multipart transfer runs it: read in parts on one thread, two parts
/// hashed at once (each its share of the whole-object BLAKE3) and chunked,
/// each on two threads.
fn hash_file(path: &str) -> Result<()> {
    use std::io::Read;
    let size = std::fs::metadata(path)?.len();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(1);
    let owned = path.to_owned();
    let reader = std::thread::spawn(move || -> Result<()> {
        let mut f = std::fs::File::open(owned)?;
        let mut at = 0u64;
        loop {
            let mut part = Vec::with_capacity(PART);
            (&mut f).take(PART as u64).read_to_end(&mut part)?;
            if part.is_empty() {
                return Ok(());
            }
            let n = part.len() as u64;
            if tx.send((at, part)).is_err() {
                return Ok(());
            }
            at += n;
        }
    });
    let rx = std::sync::Mutex::new(rx);
    let work = || -> Result<(usize, usize)> {
        let (mut chunks, mut subtrees) = (0usize, 0usize);
        loop {
            let next = rx.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.recv();
            let Ok((at, part)) = next else {
                return Ok((chunks, subtrees));
            };
            let end = at + part.len() as u64;
            let (h, c) = hash_and_chunk(&part, ChunkParams::default(), |d| {
                let mut h = PartHasher::new(size, at, end)?;
                h.update(d);
                h.finish()
            });
            subtrees += h?.len();
            chunks += c.len();
        }
    };
    let (chunks, subtrees) = std::thread::scope(|s| -> Result<(usize, usize)> {
        let other = s.spawn(work);
        let (c, t) = work()?;
        let (oc, ot) = other
            .join()
            .map_err(|_| anyhow::anyhow!("worker panicked"))??;
        Ok((c + oc, t + ot))
    })?;
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    eprintln!("{size} bytes: {chunks} chunks, {subtrees} subtrees");
    Ok(())
}

/// The latencies of the WAN workload, `BENCH_WAN_MS` (default 20,50,100).
fn wan_latencies() -> Result<Vec<u64>> {
    let v = std::env::var("BENCH_WAN_MS").unwrap_or_else(|_| "20,50,100".into());
    v.split(',')
        .map(|m| {
            m.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("BENCH_WAN_MS: {m}: {e}"))
        })
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, cmd, path] = &args[..]
        && cmd == "hash-file"
    {
        return hash_file(path);
    }
    if args.get(1).is_some_and(|c| c == "copy-floor") {
        return perf_work::copy_floor(&args[2..]);
    }
    if args.len() > 1 {
        bail!("usage: bench-perf            (see bench/README.md)");
    }
    let runs = usize::try_from(env_u64("BENCH_RUNS", 3)?)?.max(1);
    let tiny = usize::try_from(env_u64("BENCH_TINY", 1_000_000)?)?;
    let tiny_runs = usize::try_from(env_u64("BENCH_TINY_RUNS", 1)?)?.max(1);
    let latency = env_u64("BENCH_LATENCY_MS", 50)?;
    let wan_objects = usize::try_from(env_u64("BENCH_WAN_OBJECTS", 10_000)?)?;
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let json = std::env::var_os("BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("passeur-bench-perf.json"));
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == name));

    let started = Instant::now();
    let mut b = Bench::new(runs, tiny_runs)?;
    let mut rows: Vec<Row> = Vec::new();
    let report = |rows: &mut Vec<Row>, got: Vec<Row>| {
        for r in got {
            eprintln!("{}", r.markdown());
            rows.push(r);
        }
    };
    if wanted("large-azure-s3") {
        let r = b.large_azure_s3(4, 128, None)?;
        report(&mut rows, r);
    }
    if wanted("large-fs-s3") {
        let r = b.large_fs_s3(8, 128)?;
        report(&mut rows, r);
    }
    if wanted("large-local") {
        let r = b.large_local(8, 256)?;
        report(&mut rows, r);
    }
    if wanted("large-latency") {
        let r = b.large_azure_s3(4, 128, Some(latency))?;
        report(&mut rows, r);
    }
    if wanted("small-fs-s3") {
        let r = b.small_fs_s3(20_000)?;
        report(&mut rows, r);
    }
    if wanted("small-azure-s3") {
        let r = b.small_azure_s3(5_000)?;
        report(&mut rows, r);
    }
    if wanted("small-local") {
        let r = b.small_local(50_000)?;
        report(&mut rows, r);
    }
    if wanted("tiny-flat") {
        let r = b.tiny(tiny, 1)?;
        report(&mut rows, r);
    }
    if wanted("tiny-dirs") {
        let r = b.tiny(tiny, 1000)?;
        report(&mut rows, r);
    }
    if wanted("tiny-flat-tenth") {
        let r = b.tiny(tiny / 10, 1)?;
        report(&mut rows, r);
    }
    for ms in wan_latencies()? {
        if wanted(&format!("wan-{ms}ms")) || wanted("wan") {
            let r = b.wan_small(wan_objects, ms)?;
            report(&mut rows, r);
        }
        if wanted(&format!("wan-synthetic-{ms}ms")) || wanted("wan-synthetic") {
            let r = b.wan_synthetic(wan_objects, ms)?;
            report(&mut rows, r);
        }
    }
    if wanted("chunk-hash") {
        let r = b.chunk_hash(1024)?;
        report(&mut rows, vec![r]);
    }

    println!(
        "passeur vs rclone, release builds, medians of {runs} (ratio = passeur / peer wall time; {latency} ms added per request in large-latency)\n"
    );
    println!("{}", Row::header());
    for r in &rows {
        println!("{}", r.markdown());
    }
    let doc = serde_json::json!({
        "runs": runs,
        "latency_ms": latency,
        "tiny": tiny,
        "seconds": started.elapsed().as_secs_f64(),
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    std::fs::write(&json, serde_json::to_string_pretty(&doc)?)?;
    println!("\nevery run: {}", json.display());
    Ok(())
}
