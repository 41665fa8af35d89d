//! The large-object workloads: Azurite → s3s-fs (also behind proxies
//! adding latency), directory → s3s-fs, tmpfs → tmpfs; rclone also in
//! passeur's multipart shape, and passeur in other configurations.

use anyhow::Result;
use passeur_bench::measure::Row;
use passeur_tests::meter::Meter;

use super::{Bench, Dst, Src};
use crate::perf_io::{Expect, bytes, expect_of};

/// passeur otherwise configured, as variant rows of the large workloads
/// to s3s-fs: without a SHA-256 of the bodies (CRC64NVME checksums, sent
/// unsigned), in rclone's upload shape (objects up to 256 MiB in one
/// PUT; rclone's `--s3-upload-cutoff` is 200 MiB), and both.
const VARIANTS: &[(&str, &str)] = &[
    (
        "with upload-checksum = \"crc64nvme\", signed-payload = false",
        "upload-checksum = \"crc64nvme\"\nsigned-payload = false",
    ),
    (
        "in whole PUTs like rclone (multipart-threshold = \"256MiB\")",
        "multipart-threshold = \"256MiB\"",
    ),
    (
        "in whole PUTs, crc64nvme, unsigned",
        "multipart-threshold = \"256MiB\"\nupload-checksum = \"crc64nvme\"\nsigned-payload = false",
    ),
];

impl Bench {
    fn large_objects(n: usize, mib: usize) -> (Vec<(String, Vec<u8>)>, Expect) {
        let mut want = Expect::new();
        let objects: Vec<(String, Vec<u8>)> = (0..n)
            .map(|i| {
                let k = format!("big/object-{i}.bin");
                let b = bytes("large", i, mib << 20);
                expect_of(&mut want, &k, &b);
                (k, b)
            })
            .collect();
        (objects, want)
    }

    /// `n` objects of `mib` MiB from Azurite to s3s-fs; with `latency`,
    /// both behind a proxy adding that many milliseconds per request.
    pub fn large_azure_s3(
        &mut self,
        n: usize,
        mib: usize,
        latency: Option<u64>,
    ) -> Result<Vec<Row>> {
        let (objects, want) = Self::large_objects(n, mib);
        let container = format!("large{n}x{mib}");
        self.seed_azure(&container, &objects)?;
        drop(objects);
        let az = self.azurite()?.endpoint.clone();
        let (meters, name, what) = match latency {
            Some(ms) => {
                let (a, s) = (Meter::start(&az)?, Meter::start(&self.s3.endpoint)?);
                a.delay(ms);
                s.delay(ms);
                let what = format!("{n} × {mib} MiB, Azurite → s3s-fs, {ms} ms per request");
                (Some((a, s)), "large-latency", what)
            }
            None => (
                None,
                "large-azure-s3",
                format!("{n} × {mib} MiB, Azurite → s3s-fs"),
            ),
        };
        let (src_ep, dst_ep) = match &meters {
            Some((a, s)) => (a.endpoint.clone(), s.endpoint.clone()),
            None => (az, self.s3.endpoint.clone()),
        };
        let src = Src::Azure {
            container,
            endpoint: src_ep,
        };
        let dst = Dst::S3 {
            bucket: String::new(),
            endpoint: dst_ep,
        };
        let row = Self::row(name, what, (n * mib) as u64 * (1 << 20), 0.8);
        let mp: &[&str] = &["--s3-upload-cutoff", "8Mi", "--s3-chunk-size", "8Mi"];
        let alt: &[(&str, &[&str])] = &[("multipart like passeur", mp)];
        let mut rows = self.pair(row, (&src, &dst), (&[], alt), VARIANTS, &want)?;
        // The servers' floor in rclone's shape (whole PUTs) and in
        // passeur's (8 MiB parts), against rclone's own runs.
        for part in [0, 8 << 20] {
            let floor = self.floor((&rows[0], part), (&src, &dst), &rows[0].peer, &want)?;
            rows.push(floor);
        }
        drop(meters);
        Ok(rows)
    }

    /// `n` objects of `mib` MiB from a directory to s3s-fs (rclone with
    /// `--transfers 16`).
    pub fn large_fs_s3(&mut self, n: usize, mib: usize) -> Result<Vec<Row>> {
        let (objects, want) = Self::large_objects(n, mib);
        let dir = self.work.path().join("large-src");
        Self::write_dir(&dir, &objects)?;
        drop(objects);
        let what = format!("{n} × {mib} MiB, directory → s3s-fs");
        let row = Self::row("large-fs-s3", what, (n * mib) as u64 * (1 << 20), 0.8);
        let dst = Dst::S3 {
            bucket: String::new(),
            endpoint: self.s3.endpoint.clone(),
        };
        let mp = &[
            "--transfers",
            "16",
            "--s3-upload-cutoff",
            "8Mi",
            "--s3-chunk-size",
            "8Mi",
        ];
        let alt: &[(&str, &[&str])] = &[("multipart like passeur", mp)];
        let src = Src::Dir(dir.clone());
        let peer = (&["--transfers", "16"][..], alt);
        let r = self.pair(row, (&src, &dst), peer, VARIANTS, &want);
        // `dir` stays until the benchmark ends (`Bench::drop_target`).
        r
    }

    /// `n` objects of `mib` MiB from one tmpfs directory to another.
    pub fn large_local(&mut self, n: usize, mib: usize) -> Result<Vec<Row>> {
        let (objects, want) = Self::large_objects(n, mib);
        let dir = self.shm.path().join("src");
        Self::write_dir(&dir, &objects)?;
        drop(objects);
        let what = format!("{n} × {mib} MiB, tmpfs → tmpfs");
        let row = Self::row("large-local", what, (n * mib) as u64 * (1 << 20), 0.8);
        let dst = Dst::Dir(self.shm.path().join("dst"));
        let r = self.pair(row, (&Src::Dir(dir.clone()), &dst), (&[], &[]), &[], &want);
        std::fs::remove_dir_all(dir)?;
        r
    }
}
