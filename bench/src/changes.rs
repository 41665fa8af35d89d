//! Benchmark (issue 14): the incremental cutover window. N small objects
//! in Azurite are replicated to a local directory by a full `passeur
//! cutover`; then `BENCH_CHANGES` objects change at the source (new
//! content for most, a few deleted), the change feed records them (written
//! by the benchmark: Azurite has none), and the window is timed three ways
//! on the same changes: `passeur cutover --changes` (feed + changed keys),
//! a full `passeur cutover` (listing + fast verification of everything),
//! and `rclone sync` + `rclone check`. Repeated for several N: the
//! incremental window should not grow with N.
//!
//! `bench/changes.sh` builds and runs it. `BENCH_SIZES` (default
//! "10000,100000"), `BENCH_CHANGES` (default 100), `BENCH_AZURITE`
//! (`sql`, the default: Azurite's metadata in MariaDB; `memory`),
//! `BENCH_RCLONE=0` (no rclone columns: its first copy of 10⁶ objects
//! takes about half an hour here).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Duration as Hours, Utc};
use object_store::ObjectStoreExt;
use object_store::path::Path as OsPath;
use passeur_bench::{mixed_keys, seed};
use passeur_core::feed::Cursor;
use passeur_core::manifest::Manifest;
use passeur_tests::feedgen::{FeedWriter, ev};
use passeur_tests::mariadb::MariaDb;
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur_command};

fn timed(mut c: Command) -> Result<(f64, Run)> {
    let t = Instant::now();
    let run = Run::from_output(c.output()?);
    Ok((t.elapsed().as_secs_f64(), run))
}

fn body(i: usize, generation: u8) -> Vec<u8> {
    let len = 256 + (i * 37) % 1024;
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(&[generation])
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

struct Row {
    n: usize,
    seed: f64,
    first: f64,
    incremental: f64,
    /// Of it: the change pass, the verification (the rest: opening the
    /// state directory, probing the stores, reading the feed's index).
    change_pass: f64,
    verification: f64,
    /// The changed keys HEADed at the source one after the other by the
    /// benchmark's own client: what the server's per-request cost is at
    /// this size (Azurite's grows with the container).
    source_heads: f64,
    /// One listing under an empty prefix at the source (passeur's probe).
    probe: f64,
    keys_checked: u64,
    full: f64,
    /// `rclone sync` and `rclone check` of the same changes (none when
    /// `BENCH_RCLONE=0`: its first copy of 10⁶ objects takes half an hour).
    rclone: Option<(f64, f64)>,
}

fn rclone(az: &Server, args: &[&str], replica: &str) -> Command {
    let mut c = Command::new("rclone");
    c.args(args).arg("az:src");
    if !replica.is_empty() {
        c.arg(replica);
    }
    c.args(["--transfers", "16", "--checkers", "16"])
        .env("RCLONE_CONFIG_AZ_TYPE", "azureblob")
        .env("RCLONE_CONFIG_AZ_USE_EMULATOR", "true")
        .env(
            "RCLONE_CONFIG_AZ_ENDPOINT",
            format!("{}/devstoreaccount1", az.endpoint),
        );
    c
}

fn one_size(n: usize, changes: usize, work: &Path) -> Result<Row> {
    let dir = work.join(format!("n{n}"));
    std::fs::create_dir_all(&dir)?;
    // Azurite's own metadata store scans every blob for each lookup and
    // listing (seeding stalls near 430,000 blobs): over MariaDB by default,
    // in memory with BENCH_AZURITE=memory.
    let db = match std::env::var("BENCH_AZURITE").as_deref() {
        Ok("memory") => None,
        Ok("sql") | Err(_) => Some(MariaDb::start()?),
        Ok(other) => anyhow::bail!("BENCH_AZURITE={other}: sql or memory"),
    };
    let az = match &db {
        Some(db) => Server::start_azurite_over(db)?,
        None => Server::start_with(Kind::Azurite, true)?,
    };
    az.create_bucket("src")?;
    az.create_bucket("$blobchangefeed")?;
    let rt = tokio::runtime::Runtime::new()?;
    let src = az.client("src")?;
    let feed = FeedWriter::new(az.client("$blobchangefeed")?)?;
    let keys = mixed_keys(n);
    let t = Instant::now();
    rt.block_on(seed(src.as_ref(), &keys, |i| body(i, 0), 64))?;
    let seeded = t.elapsed().as_secs_f64();
    // A feed on for a while: an older hour, nothing consumable after it.
    let old = Utc::now() - Hours::hours(3);
    rt.block_on(async {
        feed.hour(old, &[], &[]).await?;
        feed.consumable_until(old + Hours::hours(1)).await
    })?;

    let cfg = dir.join("passeur.toml");
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\n[[job]]\nname = \"bench\"\nchanges = \"azure-change-feed\"\n[job.source]\nurl = \"az://src\"\n{}[job.target]\nurl = \"{}\"\n[job.delete]\nenabled = true\n",
            dir.join("state").display(),
            az.config(),
            dir.join("passeur-replica").display()
        ),
    )?;
    let report = dir.join("report.json");
    let cutover = |extra: &[&str]| -> Result<Command> {
        let (c, r) = (cfg.to_string_lossy(), report.to_string_lossy());
        let mut args = vec!["cutover", "--config", &c, "--report", &r];
        args.extend_from_slice(extra);
        passeur_command(&args)
    };
    let (first, run) = timed(cutover(&[])?)?;
    ensure!(run.code == 0, "first cutover: {}", run.stderr);
    let replica = dir.join("rclone-replica").to_string_lossy().into_owned();
    let with_rclone = std::env::var("BENCH_RCLONE").map_or(true, |v| v != "0");
    if with_rclone {
        let run = Run::from_output(rclone(&az, &["sync"], &replica).output()?);
        ensure!(run.code == 0, "first rclone sync: {}", run.stderr);
    }

    // The changes, and the feed's record of them in the cursor's hour.
    let cursor: Cursor = Manifest::open_read_only(&dir.join("state/bench"))?
        .feed_cursor()?
        .context("no feed cursor")?;
    let h = DateTime::from_timestamp_millis(cursor.segment_ms).context("cursor")?;
    let changed: Vec<(usize, &String)> = keys
        .iter()
        .enumerate()
        .step_by((n / changes).max(1))
        .take(changes)
        .collect();
    let deleted = changes / 10;
    let mut events = Vec::new();
    rt.block_on(async {
        for (j, (i, k)) in changed.iter().enumerate() {
            let seq = j as u64 + 1;
            if j < deleted {
                src.delete(&OsPath::parse(k.as_str())?).await?;
                events.push(ev("BlobDeleted", k, seq, h, 1));
            } else {
                src.put(&OsPath::parse(k.as_str())?, body(*i, 1).into())
                    .await?;
                events.push(ev("BlobCreated", k, seq, h, 1));
            }
        }
        feed.hour(h, &[vec![vec![events]]], &[]).await?;
        feed.consumable_until(Utc::now() + Hours::hours(1)).await
    })?;

    let (incremental, run) = timed(cutover(&["--changes"])?)?;
    ensure!(
        run.code == 0,
        "cutover --changes: {}\n{}",
        run.stdout,
        run.stderr
    );
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let keys_checked = rep["verification"]["incremental"]["keys_checked"]
        .as_u64()
        .context("keys_checked")?;
    ensure!(
        keys_checked == changes as u64,
        "looked at {keys_checked} keys, not {changes}"
    );
    let change_pass = rep["final_changes"]["seconds"].as_f64().unwrap_or(0.0)
        - rep["final_changes"]["waited_s"].as_f64().unwrap_or(0.0);
    let verification = rep["verification"]["seconds"].as_f64().unwrap_or(0.0);
    // The same state, whole: today's full cutover (nothing left to copy).
    let (full, run) = timed(cutover(&[])?)?;
    ensure!(run.code == 0, "full cutover: {}", run.stderr);
    let t = Instant::now();
    rt.block_on(async {
        for (_, k) in &changed {
            match src.head(&OsPath::parse(k.as_str())?).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
        Ok(())
    })?;
    let source_heads = t.elapsed().as_secs_f64();
    // What passeur's probe of the source costs the server (one listing
    // under a prefix nothing has).
    let t = Instant::now();
    rt.block_on(src.list_with_delimiter(Some(&OsPath::from(".passeur-probe"))))?;
    let probe = t.elapsed().as_secs_f64();
    let rclone = if with_rclone {
        let (sync, run) = timed(rclone(&az, &["sync"], &replica))?;
        ensure!(run.code == 0, "rclone sync: {}", run.stderr);
        let (check, run) = timed(rclone(&az, &["check"], &replica))?;
        ensure!(run.code == 0, "rclone check: {}", run.stderr);
        Some((sync, check))
    } else {
        None
    };
    Ok(Row {
        n,
        seed: seeded,
        first,
        incremental,
        change_pass,
        verification,
        source_heads,
        probe,
        keys_checked,
        full,
        rclone,
    })
}

fn main() -> Result<()> {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let changes: usize = std::env::var("BENCH_CHANGES")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100);
    let work = tempfile::tempdir()?;
    println!("incremental cutover after {changes} changes (Azurite → local directory)");
    println!(
        "| objects | seed | 1st cutover | cutover --changes | of it: change pass / verification | keys looked at | the same keys HEADed at the source, one by one | the probe's listing at the source | full cutover | rclone sync + check |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        eprintln!("{n} objects...");
        let r = one_size(n, changes.min(n), work.path())?;
        println!(
            "| {} | {:.1} s | {:.1} s | **{:.2} s** | {:.2} / {:.2} s | {} | {:.2} s | {:.2} s | {:.1} s | {} |",
            r.n,
            r.seed,
            r.first,
            r.incremental,
            r.change_pass,
            r.verification,
            r.keys_checked,
            r.source_heads,
            r.probe,
            r.full,
            r.rclone
                .map_or_else(|| "—".into(), |(s, c)| format!("{s:.1} + {c:.1} s"))
        );
    }
    Ok(())
}
