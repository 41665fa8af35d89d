//! The workloads of `bench-perf`: their sources, the commands of both
//! tools, fresh targets per run, each read back (`perf_io`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use passeur_bench::measure::{
    Cost, Row, Runs, busiest_thread, cpu_of, machine_ticks, threads_of, timed,
};
use passeur_bench::timeline::Sampler;
use passeur_bench::{mixed_keys, rclone_remote};
use passeur_tests::passeur_command;
use passeur_tests::servers::{Kind, Server};

mod floor;
mod large;
mod tiny;
mod wan;

use crate::perf_io::{Expect, bytes, expect_of, profiled, put, read_dir, read_store, tracing_line};
pub use floor::copy_floor;
use tiny::settle_disk;

/// Files under `dir`, counted up to `most`.
fn files_under(dir: &Path, most: usize) -> Result<usize> {
    let mut n = 0;
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            } else {
                n += 1;
            }
            if n >= most {
                return Ok(n);
            }
        }
    }
    Ok(n)
}

/// Where a workload reads.
enum Src {
    Dir(PathBuf),
    /// An Azurite container, at `endpoint` (the server or a proxy).
    Azure {
        container: String,
        endpoint: String,
    },
}

/// Where a workload writes; a fresh bucket or directory per run.
#[derive(Clone)]
enum Dst {
    Dir(PathBuf),
    /// The s3s-fs bucket `bucket`, reached at `endpoint`.
    S3 {
        bucket: String,
        endpoint: String,
    },
}

/// Shared servers, scratch space and settings.
pub struct Bench {
    runs: usize,
    /// Runs of the tiny-file workloads (minutes each).
    tiny_runs: usize,
    work: tempfile::TempDir,
    shm: tempfile::TempDir,
    s3: Server,
    az: Option<Server>,
    seeded: BTreeSet<String>,
    rt: tokio::runtime::Runtime,
    seq: usize,
}

impl Bench {
    pub fn new(runs: usize, tiny_runs: usize) -> Result<Self> {
        let shm_root = Path::new("/dev/shm");
        let shm = if shm_root.is_dir() {
            tempfile::tempdir_in(shm_root)?
        } else {
            tempfile::tempdir()?
        };
        Ok(Self {
            runs,
            tiny_runs,
            work: tempfile::tempdir()?,
            shm,
            s3: Server::start(Kind::S3sFs)?,
            az: None,
            seeded: BTreeSet::new(),
            rt: tokio::runtime::Runtime::new()?,
            seq: 0,
        })
    }

    fn azurite(&mut self) -> Result<&Server> {
        if self.az.is_none() {
            self.az = Some(Server::start(Kind::Azurite)?);
        }
        self.az.as_ref().context("Azurite")
    }

    /// Seed Azurite container `name` with `objects` (once per run of the
    /// benchmark), large ones in 8 MiB blocks.
    fn seed_azure(&mut self, name: &str, objects: &[(String, Vec<u8>)]) -> Result<()> {
        if self.seeded.contains(name) {
            return Ok(());
        }
        let az = self.azurite()?;
        az.create_bucket(name)?;
        let client = az.client(name)?;
        self.rt.block_on(async {
            let puts = futures::stream::iter(objects)
                .map(|(k, b)| put(client.as_ref(), k, b))
                .buffer_unordered(16);
            let done: Vec<Result<()>> = puts.collect().await;
            done.into_iter().collect::<Result<()>>()
        })?;
        self.seeded.insert(name.to_owned());
        Ok(())
    }

    fn fresh(&mut self, dst: &Dst) -> Result<Dst> {
        self.seq += 1;
        Ok(match dst {
            Dst::Dir(base) => Dst::Dir(base.join(format!("run{}", self.seq))),
            Dst::S3 { endpoint, .. } => {
                let bucket = format!("dst{}", self.seq);
                self.s3.create_bucket(&bucket)?;
                Dst::S3 {
                    bucket,
                    endpoint: endpoint.clone(),
                }
            }
        })
    }

    /// Remove a target in tmpfs, or one of fewer than 100 files (the
    /// large rows': tens of GB in all), at once; any other only when the
    /// benchmark ends, with its work directory: ext4 without a journal
    /// steps over inodes freed in the last minute (six while their inode
    /// table is dirty, as it stays for a tool that does not sync), so a
    /// delete of many files would tax whichever tool creates files next
    /// (2×10⁵ files right after a delete: 30 s instead of 13–16 s).
    fn drop_target(&self, dst: &Dst) -> Result<()> {
        let dir = match dst {
            Dst::Dir(d) => d.clone(),
            Dst::S3 { bucket, .. } => self.s3.data.path().join(bucket),
        };
        if dir.exists() && (dir.starts_with(self.shm.path()) || files_under(&dir, 100)? < 100) {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// CPU seconds s3s-fs and Azurite have used so far.
    fn servers_apart(&self) -> (f64, f64) {
        let az = self.az.as_ref().map_or(0.0, |a| cpu_of(a.pid()));
        (cpu_of(self.s3.pid()), az)
    }

    /// CPU seconds so far of every thread of the servers, by thread id.
    fn server_threads(&self) -> HashMap<u32, f64> {
        let mut all = threads_of(self.s3.pid());
        if let Some(a) = &self.az {
            all.extend(threads_of(a.pid()));
        }
        all
    }

    /// `c` timed, with the servers' CPU meanwhile.
    fn run(&self, c: &Command) -> Result<Cost> {
        let before = self.servers_apart();
        let threads = self.server_threads();
        let ticks = machine_ticks();
        let tool = Path::new(c.get_program()).file_name().unwrap_or_default();
        let (s3, az) = (self.s3.pid(), self.az.as_ref().map(|a| a.pid()));
        let sampler = Sampler::start(
            tool.to_string_lossy().chars().take(15).collect(),
            move || cpu_of(s3),
            move || az.map_or(0.0, cpu_of),
        );
        let cost = timed(c, &self.work.path().join("time"));
        if let Some(s) = sampler {
            s.finish();
        }
        let mut cost = cost?;
        let (busy, total) = machine_ticks();
        cost.busy = (busy - ticks.0) as f64 / (total - ticks.1).max(1) as f64;
        cost.server_thread = busiest_thread(&threads, &self.server_threads());
        let after = self.servers_apart();
        cost.servers_cpu = after.0 + after.1 - before.0 - before.1;
        tracing_line(c, &cost, after.0 - before.0, after.1 - before.1);
        Ok(cost)
    }

    /// passeur's command; `target_extra` is added to its `[target]` table
    /// (an S3 target's).
    fn passeur(&self, src: &Src, dst: &Dst, state: &Path, target_extra: &str) -> Result<Command> {
        let mut cfg = String::new();
        let src_url = match src {
            Src::Dir(d) => d.display().to_string(),
            Src::Azure {
                container,
                endpoint,
            } => {
                cfg += &format!(
                    "[source]\nendpoint = \"{endpoint}\"\nemulator = true\nallow-http = true\n"
                );
                format!("az://{container}")
            }
        };
        let dst_url = match dst {
            Dst::Dir(d) => d.display().to_string(),
            Dst::S3 { bucket, endpoint } => {
                cfg += &format!(
                    "[target]\n{}{}\n{target_extra}\n",
                    self.s3.config().replace(&self.s3.endpoint, endpoint),
                    std::env::var("BENCH_TARGET_OPTIONS").unwrap_or_default()
                );
                format!("s3://{bucket}")
            }
        };
        // Settings to try (`[transfer]\nconcurrency = 256`), whole tables.
        if let Ok(extra) = std::env::var("BENCH_PASSEUR_CONFIG") {
            cfg += &format!("\n{}\n", extra.replace("\\n", "\n"));
        }
        let file = state.with_extension("toml");
        std::fs::write(&file, cfg)?;
        let c = passeur_command(&[
            "sync",
            "--source",
            &src_url,
            "--target",
            &dst_url,
            "--state",
            &state.to_string_lossy(),
            "--config",
            &file.to_string_lossy(),
            "--output",
            "json",
        ])?;
        Ok(profiled(c, state))
    }

    fn rclone(src: &Src, dst: &Dst, extra: &[&str]) -> Command {
        let mut c = Command::new("rclone");
        c.arg("copy").args(extra);
        match src {
            Src::Dir(d) => {
                c.arg(d);
            }
            Src::Azure {
                container,
                endpoint,
            } => {
                c.env("RCLONE_CONFIG_AZ_TYPE", "azureblob")
                    .env("RCLONE_CONFIG_AZ_USE_EMULATOR", "true")
                    .env(
                        "RCLONE_CONFIG_AZ_ENDPOINT",
                        format!("{endpoint}/devstoreaccount1"),
                    )
                    .arg(format!("az:{container}"));
            }
        }
        match dst {
            Dst::Dir(d) => {
                c.arg(d);
            }
            Dst::S3 { bucket, endpoint } => {
                rclone_remote(&mut c, "s3", endpoint);
                c.arg(format!("s3:{bucket}"));
            }
        }
        c
    }

    /// Read `dst` back: exactly the keys and sizes of `want`; with `full`,
    /// every byte's BLAKE3 too.
    fn check(&self, dst: &Dst, want: &Expect, full: bool) -> Result<()> {
        let got: Expect = match dst {
            Dst::Dir(d) => read_dir(d, full)?,
            Dst::S3 { bucket, .. } => {
                let client = self.s3.client(bucket)?;
                self.rt.block_on(read_store(client.as_ref(), full))?
            }
        };
        ensure!(
            got.len() == want.len(),
            "target holds {} keys, {} expected",
            got.len(),
            want.len()
        );
        for (k, (size, hash)) in want {
            let Some((s, h)) = got.get(k) else {
                anyhow::bail!("{k}: missing at the target");
            };
            ensure!(s == size, "{k}: {s} bytes at the target, {size} expected");
            ensure!(!full || h == hash, "{k}: bytes differ at the target");
        }
        Ok(())
    }

    /// Copy `src` to a fresh `dst` with each tool, alternating, `runs`
    /// times; read every target back. With `alts`, rclone also runs with
    /// those options instead of `extra`, reported as a second row
    /// (`NAME-alt`) sharing passeur's runs; with `variants` (what, lines
    /// added to passeur's `[target]`), passeur also runs so configured,
    /// each reported as a row (`NAME-v`, `NAME-v2`, …) sharing rclone's
    /// runs with `extra`.
    fn pair(
        &mut self,
        row: Row,
        (src, dst): (&Src, &Dst),
        (extra, alts): (&[&str], &[(&str, &[&str])]),
        variants: &[(&str, &str)],
        want: &Expect,
    ) -> Result<Vec<Row>> {
        let mut row = row;
        let mut others: Vec<Row> = alts
            .iter()
            .enumerate()
            .map(|(i, (what, _))| Row {
                name: match i {
                    0 => format!("{}-alt", row.name),
                    _ => format!("{}-alt{}", row.name, i + 1),
                },
                peer_name: format!("rclone copy, {what}"),
                goal: None,
                ..row.clone()
            })
            .collect();
        let mut mine: Vec<Row> = variants
            .iter()
            .enumerate()
            .map(|(i, (what, _))| Row {
                name: match i {
                    0 => format!("{}-v", row.name),
                    _ => format!("{}-v{}", row.name, i + 1),
                },
                what: format!("{}; passeur {what}", row.what),
                goal: None,
                ..row.clone()
            })
            .collect();
        // Targets go at the end of the row when in tmpfs or of few files,
        // else when the benchmark ends (`drop_target`).
        let in_shm = matches!(dst, Dst::Dir(d) if d.starts_with(self.shm.path()));
        let mut made = Vec::new();
        for run in 0..self.runs {
            let (cost, d) = self.passeur_once(&row.name, (src, dst), "", want, run == 0)?;
            row.passeur.0.push(cost);
            made.push(d);
            for ((_, lines), v) in variants.iter().zip(mine.iter_mut()) {
                let (cost, d) = self.passeur_once(&v.name, (src, dst), lines, want, run == 0)?;
                v.passeur.0.push(cost);
                made.push(d);
            }

            let mut peers = vec![(extra, &mut row)];
            for ((_, opts), o) in alts.iter().zip(others.iter_mut()) {
                o.passeur.0.push(cost);
                peers.push((opts, o));
            }
            // `BENCH_PEER=0`: passeur alone (trying settings).
            if std::env::var("BENCH_PEER").is_ok_and(|v| v == "0") {
                peers.clear();
            }
            for (opts, r) in peers {
                let d = self.fresh(dst)?;
                settle_disk()?;
                let cost = self
                    .run(&Self::rclone(src, &d, opts))
                    .with_context(|| format!("{}: {}", r.name, r.peer_name))?;
                self.check(&d, want, run == 0)
                    .with_context(|| format!("{}: rclone's target", r.name))?;
                r.peer.0.push(cost);
                made.push(d);
            }
            if in_shm {
                for d in made.drain(..) {
                    self.drop_target(&d)?;
                }
            }
        }
        for d in made {
            self.drop_target(&d)?;
        }
        for v in &mut mine {
            v.peer = row.peer.clone();
        }
        Ok(std::iter::once(row).chain(others).chain(mine).collect())
    }

    /// One timed passeur run into a fresh copy of `dst`, read back (every
    /// byte when `full`); its state directory removed after.
    fn passeur_once(
        &mut self,
        name: &str,
        (src, dst): (&Src, &Dst),
        target_extra: &str,
        want: &Expect,
        full: bool,
    ) -> Result<(Cost, Dst)> {
        let d = self.fresh(dst)?;
        let state = self.work.path().join(format!("state{}", self.seq));
        let c = self.passeur(src, &d, &state, target_extra)?;
        // Each tool starts with nothing dirty on the disk: rclone never
        // syncs, and a local target's `syncfs` would write its files back
        // too.
        settle_disk()?;
        let cost = self.run(&c).with_context(|| format!("{name}: passeur"))?;
        self.check(&d, want, full)
            .with_context(|| format!("{name}: passeur's target"))?;
        std::fs::remove_dir_all(&state)?;
        Ok((cost, d))
    }

    fn row(name: &str, what: String, bytes: u64, goal: f64) -> Row {
        Row {
            name: name.into(),
            what,
            bytes,
            goal: Some(goal),
            rss_goal: None,
            passeur: Runs::default(),
            peer: Runs::default(),
            peer_name: "rclone copy".into(),
        }
    }

    fn write_dir(dir: &Path, objects: &[(String, Vec<u8>)]) -> Result<()> {
        for (k, b) in objects {
            let p = dir.join(k);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(p, b)?;
        }
        settle_disk()
    }

    fn small_objects(n: usize, size: impl Fn(usize) -> usize) -> (Vec<(String, Vec<u8>)>, Expect) {
        let mut want = Expect::new();
        let objects = mixed_keys(n)
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let b = bytes("small", i, size(i));
                expect_of(&mut want, &k, &b);
                (k, b)
            })
            .collect();
        (objects, want)
    }

    /// `n` objects of 4 KiB (a mixed layout) from a directory to s3s-fs.
    pub fn small_fs_s3(&mut self, n: usize) -> Result<Vec<Row>> {
        let (objects, want) = Self::small_objects(n, |_| 4096);
        let dir = self.work.path().join("small-src");
        Self::write_dir(&dir, &objects)?;
        let row = Self::row(
            "small-fs-s3",
            format!("{n} × 4 KiB, directory → s3s-fs"),
            (n * 4096) as u64,
            0.5,
        );
        let dst = Dst::S3 {
            bucket: String::new(),
            endpoint: self.s3.endpoint.clone(),
        };
        let r = self.pair(row, (&Src::Dir(dir.clone()), &dst), (&[], &[]), &[], &want);
        // `dir` stays until the benchmark ends (`Bench::drop_target`).
        r
    }

    /// `n` objects of 1–64 KiB (a mixed layout) from Azurite to s3s-fs.
    pub fn small_azure_s3(&mut self, n: usize) -> Result<Vec<Row>> {
        let size = |i: usize| 1024 + (i * 7919) % (63 * 1024);
        let (objects, want) = Self::small_objects(n, size);
        let bytes: usize = objects.iter().map(|(_, b)| b.len()).sum();
        self.seed_azure("small", &objects)?;
        let src = Src::Azure {
            container: "small".into(),
            endpoint: self.azurite()?.endpoint.clone(),
        };
        let what = format!("{n} objects of 1–64 KiB, Azurite → s3s-fs");
        let row = Self::row("small-azure-s3", what, bytes as u64, 0.5);
        let dst = Dst::S3 {
            bucket: String::new(),
            endpoint: self.s3.endpoint.clone(),
        };
        let mut rows = self.pair(row, (&src, &dst), (&[], &[]), &[], &want)?;
        let floor = self.floor((&rows[0], 0), (&src, &dst), &rows[0].peer, &want)?;
        rows.push(floor);
        Ok(rows)
    }

    /// The first copy of `n` local files of 1–4 KiB (a mixed layout) to a
    /// local directory.
    pub fn small_local(&mut self, n: usize) -> Result<Vec<Row>> {
        let (objects, want) = Self::small_objects(n, |i| 1024 + (i * 37) % 3072);
        let bytes: usize = objects.iter().map(|(_, b)| b.len()).sum();
        let dir = self.work.path().join("local-src");
        Self::write_dir(&dir, &objects)?;
        let what = format!("first copy of {n} files of 1–4 KiB, directory → directory");
        let row = Self::row("small-local", what, bytes as u64, 0.5);
        let dst = Dst::Dir(self.work.path().join("local-dst"));
        let r = self.pair(row, (&Src::Dir(dir.clone()), &dst), (&[], &[]), &[], &want);
        // `dir` stays until the benchmark ends (`Bench::drop_target`).
        r
    }

    /// passeur's chunk + hash pipeline (`bench-perf hash-file`) against
    /// `b3sum --num-threads 1` on the same `mib` MiB in tmpfs.
    pub fn chunk_hash(&mut self, mib: usize) -> Result<Row> {
        let file = self.shm.path().join("hash.bin");
        std::fs::write(&file, bytes("hash", 0, mib << 20))?;
        let mut row = Self::row(
            "chunk-hash",
            format!("{mib} MiB in tmpfs, 8 MiB parts"),
            (mib as u64) << 20,
            2.0,
        );
        row.peer_name = "b3sum --num-threads 1".into();
        let scratch = self.work.path().join("time");
        let mut own = Command::new(std::env::current_exe()?);
        own.arg("hash-file").arg(&file);
        let mut b3 = Command::new("b3sum");
        b3.args(["--num-threads", "1", "--no-names"]).arg(&file);
        for _ in 0..self.runs {
            row.passeur.0.push(timed(&own, &scratch)?);
            row.peer.0.push(timed(&b3, &scratch)?);
        }
        std::fs::remove_file(file)?;
        Ok(row)
    }
}
