//! The tiny-file workloads: a million files of 100 bytes, first pass and
//! no-op pass, both tools, with passeur's peak RSS against its goal.

use anyhow::{Context, Result};
use passeur_bench::measure::Row;

use super::{Bench, Dst, Src};
use crate::perf_io::{Expect, bytes, expect_of};

impl Bench {
    /// `n` files of 100 bytes in `dirs` directories, directory →
    /// directory: the first pass and a no-op pass after it, both tools;
    /// passeur's peak RSS against its goal.
    pub fn tiny(&mut self, n: usize, dirs: usize) -> Result<Vec<Row>> {
        let dir = self.work.path().join(format!("tiny-{n}-{dirs}"));
        let mut want = Expect::new();
        eprintln!("creating {n} files in {dirs} directories...");
        for d in 0..dirs {
            std::fs::create_dir_all(dir.join(format!("d{d:04}")))?;
        }
        for i in 0..n {
            let k = format!("d{:04}/obj-{i:08}", i % dirs);
            let b = bytes("tiny", i, 100);
            std::fs::write(dir.join(&k), &b)?;
            expect_of(&mut want, &k, &b);
        }
        let label = if dirs == 1 {
            format!("{n} files, one directory")
        } else {
            format!("{n} files in {dirs} directories")
        };
        let name = format!("tiny-{n}-{}", if dirs == 1 { "flat" } else { "dirs" });
        let mut first = Self::row(&name, format!("{label}, first pass"), (n * 100) as u64, 1.0);
        first.rss_goal = Some(150.0);
        let mut again = Self::row(
            &format!("{name}-again"),
            format!("{label}, no-op pass"),
            0,
            1.0,
        );
        again.rss_goal = Some(150.0);
        let base = Dst::Dir(self.work.path().join("tiny-dst"));
        let src = Src::Dir(dir.clone());
        for run in 0..self.tiny_runs {
            // Each tool goes first every other run: the first to run after
            // the set-up meets the disk as it left it.
            let order = if run % 2 == 0 {
                ["passeur", "rclone"]
            } else {
                ["rclone", "passeur"]
            };
            for tool in order {
                let d = self.fresh(&base)?;
                let state = self.work.path().join(format!("state{}", self.seq));
                let c = match tool {
                    "passeur" => self.passeur(&src, &d, &state, "")?,
                    _ => Self::rclone(&src, &d, &[]),
                };
                // Nothing left dirty by the tool before: rclone never syncs,
                // and passeur's `syncfs` would write its files back too.
                settle_disk()?;
                let mut once = self.run(&c).with_context(|| format!("{name}: {tool}"))?;
                // What the pass left for the disk: passeur's exit 0 means
                // written back (recorded objects are durable), rclone's
                // does not. Timed apart, and not left to tax the no-op pass.
                let t = std::time::Instant::now();
                settle_disk()?;
                once.writeback = t.elapsed().as_secs_f64();
                eprintln!("  sync after it: {:.2} s", once.writeback);
                let twice = self
                    .run(&c)
                    .with_context(|| format!("{name}: {tool} again"))?;
                let (a, b) = match tool {
                    "passeur" => (&mut first.passeur, &mut again.passeur),
                    _ => (&mut first.peer, &mut again.peer),
                };
                a.0.push(once);
                b.0.push(twice);
                self.check(&d, &want, run == 0)
                    .with_context(|| format!("{name}: {tool}'s target"))?;
                // Kept until the benchmark ends (see `Bench::drop_target`).
                self.drop_target(&d)?;
            }
        }
        let durable = until_written_back(&first);
        Ok(vec![first, durable, again])
    }
}

/// The first pass timed until its files are on disk (the run, then a
/// `sync`): no goal, beside the row the goal is measured on.
fn until_written_back(first: &Row) -> Row {
    let mut r = first.clone();
    r.name = format!("{}-durable", first.name);
    r.what = format!("{}, until written back (+ sync)", first.what);
    r.goal = None;
    r.rss_goal = None;
    for runs in [&mut r.passeur, &mut r.peer] {
        for c in &mut runs.0 {
            c.wall += c.writeback;
        }
    }
    r
}

/// Write back what setting up a workload left dirty: a local target is
/// made durable by `syncfs`, which would otherwise pay for flushing the
/// source the benchmark just wrote (50,000 fresh files: 7.1 s instead of
/// 5.1 s), a cost no tool's copy causes.
pub(super) fn settle_disk() -> Result<()> {
    let st = std::process::Command::new("sync").status()?;
    anyhow::ensure!(st.success(), "sync: {st}");
    Ok(())
}
