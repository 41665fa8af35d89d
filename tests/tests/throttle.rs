//! Throttling: a target answering 503 SlowDown makes passeur run fewer
//! objects at once and recover; the request-rate and bandwidth caps pace
//! what passeur sends. The caps are checked with lower bounds on time only
//! (a busy machine makes a run slower, never faster than its cap allows).

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bytes::Bytes;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{passeur, sync};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn objects(n: usize, len: usize, seed: u64) -> Vec<Obj> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut v = vec![0u8; len];
            rng.fill(&mut v[..]);
            Obj {
                key: format!("d{}/obj-{i:04}", i % 7),
                data: Bytes::from(v),
                content_type: None,
                meta: vec![],
            }
        })
        .collect()
}

/// A local source of `n` objects and a moto target behind a meter.
struct Setup {
    moto: Server,
    meter: Meter,
    objs: Vec<Obj>,
    src: String,
    state: std::path::PathBuf,
    _work: tempfile::TempDir,
}

impl Setup {
    fn new(n: usize, len: usize, seed: u64) -> Result<Self> {
        let moto = Server::start(Kind::Moto)?;
        moto.create_bucket("dst")?;
        let meter = Meter::start(&moto.endpoint)?;
        let work = tempfile::tempdir()?;
        let src = work.path().join("src");
        let objs = objects(n, len, seed);
        dataset::write_dir(&src, &objs)?;
        Ok(Self {
            moto,
            meter,
            objs,
            src: src.to_string_lossy().into_owned(),
            state: work.path().join("state"),
            _work: work,
        })
    }

    /// `passeur sync` to the metered target with `extra` config text.
    fn sync(&self, target_extra: &str, extra: &str) -> Result<passeur_tests::Run> {
        let target = self
            .moto
            .config()
            .replace(&self.moto.endpoint, &self.meter.endpoint);
        sync(
            &self.src,
            &self.moto.url("dst"),
            &self.state,
            Some(&format!("[target]\n{target}{target_extra}\n{extra}")),
        )
    }

    /// The target holds exactly the dataset, and the manifest agrees.
    async fn verify(&self) -> Result<()> {
        let dst = self.moto.client("dst")?;
        dataset::verify(dst.as_ref(), &self.objs, Checks::BYTES, Some(&self.state)).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slowdown_lowers_concurrency_then_it_recovers() -> Result<()> {
    let s = Setup::new(240, 4096, 41)?;
    let meter = &s.meter;
    // The first 24 uploads are refused: a burst of throttling early in the
    // pass, then none.
    meter.refuse_puts(24);
    let run = s.sync("", "[transfer]\nconcurrency = 8\n")?;
    ensure!(run.code == 0, "pass failed: {}\n{}", run.stderr, run.stdout);
    ensure!(meter.refused() == 24, "refused {}", meter.refused());
    // Every refusal was seen (and retried by the client).
    ensure!(run.stat("throttled")? == 24, "{}", run.stdout);
    ensure!(run.stat("copied")? == 240, "{}", run.stdout);
    let (low, now) = (run.stat("concurrency_min")?, run.stat("concurrency")?);
    eprintln!("24 SlowDown answers: concurrency 8 → {low} → {now}");
    ensure!(low < 8, "concurrency never lowered (min {low})");
    ensure!(now == 8, "concurrency did not recover: {now} at the end");
    ensure!(
        run.stderr.contains("a store is throttling"),
        "no warning logged: {}",
        run.stderr
    );
    s.verify().await
}

/// A store that keeps answering 503 SlowDown until the client's retries
/// run out fails the objects by name with the kind `throttled` (not
/// `transient`), the pass is incomplete, and the next pass finishes.
#[tokio::test(flavor = "multi_thread")]
async fn retries_run_out_on_throttling_and_the_failure_says_throttled() -> Result<()> {
    let s = Setup::new(4, 4096, 43)?;
    s.meter.refuse_puts(u64::MAX);
    let first = s.sync(
        "max-retries = 1\nretry-timeout = \"20s\"\n",
        "[transfer]\nconcurrency = 2\n",
    )?;
    ensure!(first.code == 1, "exit {}: {}", first.code, first.stderr);
    let summary = first.summary()?;
    let failures = summary["summary"]["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let kinds: Vec<&str> = failures
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or("?"))
        .collect();
    ensure!(
        failures.len() == 4 && kinds.iter().all(|k| *k == "throttled"),
        "failures: {failures:?}"
    );
    ensure!(s.meter.refused() >= 8, "refused {}", s.meter.refused());
    s.meter.refuse_puts(0);
    let second = s.sync("", "")?;
    ensure!(second.code == 0, "second pass: {}", second.stderr);
    s.verify().await
}

#[tokio::test(flavor = "multi_thread")]
async fn request_rate_cap_paces_every_request() -> Result<()> {
    let s = Setup::new(60, 1024, 42)?;
    let rate = 20.0;
    let t = Instant::now();
    let run = s.sync("max-requests-per-second = 20\n", "")?;
    let took = t.elapsed();
    ensure!(run.code == 0, "pass failed: {}", run.stderr);
    let requests = s.meter.requests() as f64;
    ensure!(requests >= 60.0, "only {requests} requests");
    // One second of burst, then `rate` per second.
    let floor = Duration::from_secs_f64((requests - rate) / rate * 0.9);
    eprintln!("{requests} requests under a 20/s cap in {took:?} (floor {floor:?})");
    ensure!(
        took >= floor,
        "{requests} requests in {took:?}: faster than 20/s allows ({floor:?})"
    );
    s.verify().await
}

#[test]
fn bandwidth_cap_paces_reads() -> Result<()> {
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    let objs = objects(3, 1024 * 1024, 43);
    dataset::write_dir(&src, &objs)?;
    let dst = work.path().join("dst");
    let state = work.path().join("state");
    let (s, d, st) = (
        src.to_string_lossy(),
        dst.to_string_lossy(),
        state.to_string_lossy(),
    );
    let with_cap = |cap: &str| {
        let args = [
            "sync",
            "--source",
            &s,
            "--target",
            &d,
            "--state",
            &st,
            "--output",
            "json",
            "--bandwidth-limit",
            cap,
        ];
        passeur(&args, &[])
    };
    let t = Instant::now();
    let run = with_cap("1MiB")?;
    let took = t.elapsed();
    ensure!(run.code == 0, "pass failed: {}", run.stderr);
    ensure!(run.stat("bytes_read")? == 3 * 1024 * 1024, "{}", run.stdout);
    eprintln!("3 MiB under a 1 MiB/s cap in {took:?}");
    // 1 MiB of burst, then 2 MiB at 1 MiB/s.
    ensure!(
        took >= Duration::from_millis(1800),
        "3 MiB read in {took:?} under a 1 MiB/s cap"
    );
    for o in &objs {
        ensure!(
            std::fs::read(dst.join(&o.key))? == o.data,
            "{}: bytes differ",
            o.key
        );
    }
    // A zero cap is refused before anything runs.
    let zero = with_cap("0")?;
    ensure!(
        zero.code == 2,
        "zero cap: exit {}: {}",
        zero.code,
        zero.stderr
    );
    ensure!(zero.stderr.contains("must be above 0"), "{}", zero.stderr);
    Ok(())
}
