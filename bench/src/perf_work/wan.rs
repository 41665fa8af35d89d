//! The WAN workload of issue 17: many small objects from Azurite to s3s-fs,
//! both behind proxies adding the same latency to every request, so that
//! the number of objects in flight — not bandwidth — sets the pace.

use anyhow::Result;
use passeur_bench::measure::Row;
use passeur_tests::meter::Meter;

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
            &["--transfers", "16"],
            &[
                ("--transfers 64", &["--transfers", "64"]),
                ("--transfers 256", &["--transfers", "256"]),
            ],
            &want,
        )?;
        eprintln!(
            "  requests through the proxies, all runs: source {}, target {}",
            a.requests(),
            s.requests()
        );
        for r in &mut rows {
            r.what += &format!(
                ": passeur {:.0} objects/s (machine {:.0} % busy), rclone {:.0} ({:.0} %)",
                n as f64 / r.passeur.wall().max(1e-9),
                r.passeur.busy() * 100.0,
                n as f64 / r.peer.wall().max(1e-9),
                r.peer.busy() * 100.0
            );
        }
        Ok(rows)
    }
}
