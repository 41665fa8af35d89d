//! The WAN workload of issue 17: many small objects from Azurite to s3s-fs,
//! both behind proxies adding the same latency to every request, so that
//! the number of objects in flight — not bandwidth — sets the pace.

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use passeur_bench::measure::Row;
use passeur_bench::rclone_remote;
use passeur_bench::synth::{self, Bucket, SLOW_KEY};
use passeur_tests::meter::Meter;
use passeur_tests::passeur_command;

use super::{Bench, Dst, Src};

impl Bench {
    /// `n` objects of 1–16 KiB (a mixed layout), Azurite → s3s-fs, each
    /// behind a proxy adding `ms` per request; rclone with `--transfers 16`,
    /// 64 and 256. Objects per second go into each row's text.
    pub fn wan_small(&mut self, n: usize, ms: u64) -> Result<Vec<Row>> {
        let size = |i: usize| 1024 + (i * 7919) % (15 * 1024);
        let (objects, want) = Self::small_objects(n, size);
        let bytes: usize = objects.iter().map(|(_, b)| b.len()).sum();
        let container = format!("wan{n}");
        self.seed_azure(&container, &objects)?;
        drop(objects);
        let (a, s) = (
            Meter::start(&self.azurite()?.endpoint)?,
            Meter::start(&self.s3.endpoint)?,
        );
        a.delay(ms);
        s.delay(ms);
        let src = Src::Azure {
            container,
            endpoint: a.endpoint.clone(),
        };
        let dst = Dst::S3 {
            bucket: String::new(),
            endpoint: s.endpoint.clone(),
        };
        let what = format!("{n} objects of 1–16 KiB, Azurite → s3s-fs, {ms} ms per request");
        let mut row = Self::row(&format!("wan-{ms}ms"), what, bytes as u64, 1.0);
        row.goal = None;
        row.peer_name = "rclone copy --transfers 16".into();
        let mut rows = self.pair(
            row,
            (&src, &dst),
            (
                &["--transfers", "16"],
                &[
                    ("--transfers 64", &["--transfers", "64"]),
                    ("--transfers 256", &["--transfers", "256"]),
                ],
            ),
            &[],
            &want,
        )?;
        eprintln!(
            "  requests through the proxies, all runs: source {}, target {}",
            a.requests(),
            s.requests()
        );
        rates(&mut rows, n);
        Ok(rows)
    }
}

/// Objects per second of each tool, and how busy the machine was, added
/// to each row's text.
fn rates(rows: &mut [Row], n: usize) {
    for r in rows {
        r.what += &format!(
            ": passeur {:.0} objects/s (machine {:.0} % busy), rclone {:.0} ({:.0} %)",
            n as f64 / r.passeur.wall().max(1e-9),
            r.passeur.busy() * 100.0,
            n as f64 / r.peer.wall().max(1e-9),
            r.peer.busy() * 100.0
        );
    }
}

/// A synthetic S3 bucket served in this process behind a proxy adding
/// `ms` per request: its address and the proxy.
fn synthetic(rt: &tokio::runtime::Runtime, bucket: &Arc<Bucket>, ms: u64) -> Result<Meter> {
    let addr = rt.block_on(Arc::clone(bucket).serve())?;
    let m = Meter::start(&format!("http://{addr}"))?;
    m.delay(ms);
    Ok(m)
}

impl Bench {
    /// `n` objects of 100 bytes between two synthetic S3 buckets served in
    /// this process (a listing page or an object costs them microseconds),
    /// each behind a proxy adding `ms` per request: what passeur itself
    /// can sustain when the servers are not the limit. rclone with
    /// `--transfers 64` and 256. Each run writes to a fresh bucket, whose
    /// bodies are compared with the source's afterwards.
    pub fn wan_synthetic(&mut self, n: usize, ms: u64) -> Result<Vec<Row>> {
        let src = Arc::new(Bucket::new(n as u64, 0));
        let a = synthetic(&self.rt, &src, ms)?;
        let what =
            format!("{n} objects of 100 B, synthetic S3 → synthetic S3, {ms} ms per request");
        let mut row = Self::row(
            &format!("wan-synthetic-{ms}ms"),
            what,
            (n * 100) as u64,
            1.0,
        );
        row.goal = None;
        row.peer_name = "rclone copy --transfers 64".into();
        let mut alt = row.clone();
        alt.name += "-alt";
        alt.peer_name = "rclone copy --transfers 256".into();
        let tools: [(&str, Option<&str>); 3] = [
            ("passeur", None),
            ("rclone", Some("64")),
            ("rclone", Some("256")),
        ];
        for _ in 0..self.runs {
            for (tool, transfers) in tools {
                let dst = Arc::new(Bucket::new(0, 0));
                dst.empty.store(true, std::sync::atomic::Ordering::Relaxed);
                let s = synthetic(&self.rt, &dst, ms)?;
                self.seq += 1;
                let state = self.work.path().join(format!("state{}", self.seq));
                let c = match transfers {
                    None => {
                        let cfg = state.with_extension("toml");
                        std::fs::write(
                            &cfg,
                            format!(
                                "[source]\n{}[target]\n{}",
                                synth::config(&a.endpoint),
                                synth::config(&s.endpoint)
                            ),
                        )?;
                        passeur_command(&[
                            "sync",
                            "--source",
                            "s3://src",
                            "--target",
                            "s3://dst",
                            "--state",
                            &state.to_string_lossy(),
                            "--config",
                            &cfg.to_string_lossy(),
                            "--output",
                            "json",
                        ])?
                    }
                    Some(t) => {
                        let mut c = Command::new("rclone");
                        // The synthetic bucket lists flat only (ListObjectsV2).
                        c.args(["copy", "--s3-no-check-bucket", "--fast-list"]);
                        c.args(["--s3-list-version", "2", "--transfers", t]);
                        rclone_remote(&mut c, "src", &a.endpoint);
                        rclone_remote(&mut c, "dst", &s.endpoint);
                        c.args(["src:src", "dst:dst"]);
                        c
                    }
                };
                let cost = self
                    .run(&c)
                    .with_context(|| format!("{tool} {transfers:?}"))?;
                check_synthetic(&src, &dst).with_context(|| format!("{tool}'s target"))?;
                match transfers {
                    None => {
                        row.passeur.0.push(cost);
                        alt.passeur.0.push(cost);
                        std::fs::remove_dir_all(&state)?;
                    }
                    Some("64") => row.peer.0.push(cost),
                    Some(_) => alt.peer.0.push(cost),
                }
            }
        }
        let mut rows = vec![row, alt];
        rates(&mut rows, n);
        Ok(rows)
    }
}

/// Every object of `src` at `dst` with the same bytes, and nothing else.
fn check_synthetic(src: &Bucket, dst: &Bucket) -> Result<()> {
    let got = dst
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ensure!(
        got.len() as u64 == src.n + 1,
        "{} objects at the target, {} expected",
        got.len(),
        src.n + 1
    );
    for i in 0..src.n {
        let key = src.key(i + 1);
        let body = got.get(&key).with_context(|| format!("{key}: missing"))?;
        ensure!(
            blake3::hash(body) == blake3::hash(&Bucket::small_body(i)),
            "{key}: bytes differ"
        );
    }
    let slow = got.get(SLOW_KEY).context("the empty object: missing")?;
    ensure!(slow.is_empty(), "the empty object: {} bytes", slow.len());
    Ok(())
}
