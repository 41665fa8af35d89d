//! Benchmark (issue 14): how long after the change feed makes a change
//! consumable it is at the target, with full passes hours apart.
//!
//! `passeur run` replicates Azurite → s3s-fs (through proxies that can add
//! a round trip to every request) with `interval = "6h"` and
//! `changes = "azure-change-feed"`. After its first full pass, each round
//! writes new objects of several sizes at the source (one of them in
//! parts) and deletes one object of the round before, records these
//! changes in a new closed hour of the feed (written by the benchmark:
//! Azurite has no change feed) and moves `lastConsumable` past it. That
//! instant starts every change's clock; the clock stops when the test's
//! own client finds the object at the target with the source's length
//! (its bytes are then compared by BLAKE3), or the deleted key gone.
//! Rounds start at a random point of the poll cycle. Goal: every change
//! within one poll interval (`changes-interval`) plus its transfer time.
//!
//! `bench/change-latency.sh` builds and runs it. `BENCH_POLL` (the
//! `changes-interval`, default "10s"), `BENCH_ROUNDS` (default 8),
//! `BENCH_DELAYS` (milliseconds added to every request on both sides,
//! default "0,50").

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Duration as Hours, DurationRound, Utc};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_core::feed::Cursor;
use passeur_core::manifest::Manifest;
use passeur_tests::feedgen::{FeedWriter, ev};
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server, free_port};
use passeur_tests::{passeur_command, status_json, wait_until};
use rand::Rng;

/// Sizes written each round: small objects, one of a few MiB, one above
/// the multipart threshold (uploaded in parts).
const SIZES: [usize; 6] = [1 << 10, 7 << 10, 64 << 10, 300 << 10, 4 << 20, 21 << 20];

fn body(round: usize, j: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(&round.to_le_bytes())
        .update(&j.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// One change to watch for at the target: the source's length and hash,
/// or `None` for a delete.
type Expect = Option<(u64, blake3::Hash)>;

/// Wait until every expected change is at the target; each key's seconds
/// since `t0`.
async fn arrivals(
    dst: &dyn ObjectStore,
    mut want: BTreeMap<String, Expect>,
    t0: Instant,
    limit: Duration,
) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    while !want.is_empty() {
        if t0.elapsed() > limit {
            bail!("not at the target after {limit:?}: {:?}", want.keys());
        }
        let mut done = Vec::new();
        for (key, expect) in &want {
            let path = OsPath::parse(key)?;
            let head = dst.head(&path).await;
            let arrived = match (expect, head) {
                (None, Err(object_store::Error::NotFound { .. })) => true,
                (Some((len, _)), Ok(meta)) => meta.size == *len,
                (_, Ok(_) | Err(object_store::Error::NotFound { .. })) => false,
                (_, Err(e)) => return Err(e.into()),
            };
            if arrived {
                out.push(t0.elapsed().as_secs_f64());
                if let Some((_, hash)) = expect {
                    let bytes = dst.get(&path).await?.bytes().await?;
                    ensure!(blake3::hash(&bytes) == *hash, "{key}: other bytes");
                }
                done.push(key.clone());
            }
        }
        for key in done {
            want.remove(&key);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(out)
}

struct Row {
    delay_ms: u64,
    changes: usize,
    median: f64,
    p90: f64,
    max: f64,
    full_passes: u64,
}

fn one(delay_ms: u64, poll: &str, rounds: usize) -> Result<Row> {
    let poll_s = poll_secs(poll)?;
    let az = Server::start(Kind::Azurite)?;
    az.create_bucket("src")?;
    az.create_bucket("$blobchangefeed")?;
    let s3 = Server::start(Kind::S3sFs)?;
    s3.create_bucket("dst")?;
    let (az_meter, s3_meter) = (Meter::start(&az.endpoint)?, Meter::start(&s3.endpoint)?);
    let rt = tokio::runtime::Runtime::new()?;
    let (src, dst) = (az.client("src")?, s3.client("dst")?);
    let feed = FeedWriter::new(az.client("$blobchangefeed")?)?;
    rt.block_on(async {
        for (j, len) in SIZES.iter().enumerate() {
            let key = OsPath::parse(format!("r00/o{j}.bin"))?;
            src.put(&key, PutPayload::from(body(0, j, *len))).await?;
        }
        let old = Utc::now().duration_trunc(Hours::hours(1))? - Hours::hours(3);
        feed.hour(old, &[], &[]).await?;
        feed.consumable_until(old + Hours::hours(1)).await
    })?;
    az_meter.delay(delay_ms);
    s3_meter.delay(delay_ms);

    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("p.toml");
    // `passeur status` asks the running service here.
    let addr = format!("127.0.0.1:{}", free_port()?);
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\nmetrics-address = \"{addr}\"\n[[job]]\nname = \"j\"\ninterval = \"6h\"\nchanges = \"azure-change-feed\"\nchanges-interval = \"{poll}\"\n[job.source]\nurl = \"az://src\"\n{}[job.target]\nurl = \"s3://dst\"\n{}[job.delete]\nenabled = true\nmax-fraction = 1.0\n",
            dir.path().join("state").display(),
            az.config().replace(&az.endpoint, &az_meter.endpoint),
            s3.config().replace(&s3.endpoint, &s3_meter.endpoint),
        ),
    )?;
    let cfg_s = cfg.to_string_lossy().into_owned();
    let log = dir.path().join("run.log");
    let mut child: Child = passeur_command(&["run", "--config", &cfg_s])?
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let result = (|| -> Result<(Vec<f64>, u64)> {
        wait_until("the first full pass", Duration::from_secs(60), || {
            Ok(status_json(&cfg_s)?[0]["last_pass"]["complete"] == true)
        })?;
        let cursor: Cursor = Manifest::open_read_only(&dir.path().join("state/j"))?
            .feed_cursor()?
            .context("the full pass anchors the feed")?;
        let h0 = DateTime::from_timestamp_millis(cursor.segment_ms).context("cursor")?;
        let mut all = Vec::new();
        let mut rng = rand::rng();
        for round in 1..=rounds {
            // A random point of the poll cycle.
            std::thread::sleep(Duration::from_secs_f64(rng.random_range(0.0..poll_s)));
            let t0 = rt.block_on(change_round(&src, &feed, h0, round))?;
            let want = expected(round)?;
            let limit = Duration::from_secs_f64(3.0 * poll_s + 120.0);
            let got = rt.block_on(arrivals(dst.as_ref(), want, t0, limit))?;
            eprintln!("round {round}: {got:.1?} s after {:?}", chrono::Utc::now());
            all.extend(got);
        }
        let full_passes = status_json(&cfg_s)?[0]["totals"]["passes"]
            .as_u64()
            .unwrap_or(0);
        Ok((all, full_passes))
    })();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait()?;
    if let Some(keep) = std::env::var_os("BENCH_LOG") {
        std::fs::copy(&log, keep)?;
    }
    let (mut all, full_passes) = result.map_err(|e| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        e.context(format!(
            "passeur run said (last lines, newest first):\n{}",
            tail.join("\n")
        ))
    })?;
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
    Ok(Row {
        delay_ms,
        changes: all.len(),
        median: at(0.5),
        p90: at(0.9),
        max: at(1.0),
        full_passes,
    })
}

/// Round `round`'s changes at the source and in the feed (hour `round`
/// after `h0`); the instant they became consumable.
async fn change_round(
    src: &Arc<dyn ObjectStore>,
    feed: &FeedWriter,
    h0: DateTime<Utc>,
    round: usize,
) -> Result<Instant> {
    let h = h0 + Hours::hours(i64::try_from(round)? - 1);
    let mut events = Vec::new();
    for (j, len) in SIZES.iter().enumerate() {
        let key = format!("r{round:02}/o{j}.bin");
        src.put(
            &OsPath::parse(&key)?,
            PutPayload::from(body(round, j, *len)),
        )
        .await?;
        events.push(ev("BlobCreated", &key, events.len() as u64 + 1, h, 1));
    }
    let gone = format!("r{:02}/o0.bin", round - 1);
    src.delete(&OsPath::parse(&gone)?).await?;
    events.push(ev("BlobDeleted", &gone, events.len() as u64 + 1, h, 2));
    feed.hour(h, &[vec![vec![events]]], &[]).await?;
    feed.consumable_until(h + Hours::hours(1)).await?;
    Ok(Instant::now())
}

fn expected(round: usize) -> Result<BTreeMap<String, Expect>> {
    let mut want = BTreeMap::new();
    for (j, len) in SIZES.iter().enumerate() {
        let b = body(round, j, *len);
        want.insert(
            format!("r{round:02}/o{j}.bin"),
            Some((u64::try_from(b.len())?, blake3::hash(&b))),
        );
    }
    want.insert(format!("r{:02}/o0.bin", round - 1), None);
    Ok(want)
}

/// Seconds of a `changes-interval` such as "10s" or "1m".
fn poll_secs(text: &str) -> Result<f64> {
    Ok(humantime::parse_duration(text)
        .with_context(|| format!("BENCH_POLL {text:?}"))?
        .as_secs_f64())
}

fn main() -> Result<()> {
    let poll = std::env::var("BENCH_POLL").unwrap_or_else(|_| "10s".into());
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(8);
    let delays: Vec<u64> = std::env::var("BENCH_DELAYS")
        .unwrap_or_else(|_| "0,50".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    println!(
        "change-feed replication latency, full passes 6 h apart, changes-interval {poll}, {rounds} rounds of {} writes (1 KiB … 21 MiB) and 1 delete (Azurite → s3s-fs)",
        SIZES.len()
    );
    println!(
        "| added latency per request | changes | median | p90 | max | max − poll interval | full passes |"
    );
    println!("|---|---|---|---|---|---|---|");
    let poll_s = poll_secs(&poll)?;
    for delay in delays {
        eprintln!("{delay} ms per request...");
        let r = one(delay, &poll, rounds)?;
        println!(
            "| {} ms | {} | {:.1} s | {:.1} s | **{:.1} s** | {:.1} s | {} |",
            r.delay_ms,
            r.changes,
            r.median,
            r.p90,
            r.max,
            r.max - poll_s,
            r.full_passes
        );
    }
    Ok(())
}
