//! A local-directory target's files are fsynced, with their directory,
//! before the manifest records them (ARCHITECTURE.md, durability policy):
//! after a power cut the manifest must not say *complete* for a file whose
//! bytes never reached the disk. Observed independently of passeur with
//! `strace` (installed by scripts/setup.sh): every target file, of every
//! shape, is fsynced by path.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::passeur_bin;
use rand::{Rng, SeedableRng, rngs::StdRng};

#[test]
fn local_target_files_and_their_directories_are_fsynced() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(8);
    let mut objs = Vec::new();
    // Empty, small, one part, and multipart unaligned (5 MiB parts).
    for (key, len) in [
        ("empty.bin", 0),
        ("d/small.bin", 1000),
        ("d/e/one-part.bin", 5 << 20),
        ("multi.bin", (11 << 20) + 5),
    ] {
        let mut v = vec![0u8; len];
        rng.fill(&mut v[..]);
        objs.push(Obj {
            key: key.into(),
            data: Bytes::from(v),
            content_type: None,
            meta: vec![],
        });
    }
    let work = tempfile::tempdir()?;
    let (src, dst, state) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("state"),
    );
    dataset::write_dir(&src, &objs)?;
    let cfg = work.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[target]\npart-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n",
    )?;
    let log = work.path().join("strace.log");
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fsync,fdatasync",
            "-e",
            "signal=none",
            "-o",
        ])
        .arg(&log)
        .arg(passeur_bin()?)
        .args(["sync", "--source"])
        .arg(&src)
        .arg("--target")
        .arg(&dst)
        .arg("--state")
        .arg(&state)
        .arg("--config")
        .arg(&cfg)
        .output()
        .context("strace (scripts/setup.sh installs it)")?;
    ensure!(
        out.status.success(),
        "sync under strace: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(&log)?;
    let dst = std::fs::canonicalize(&dst)?;
    // `fsync(7</dir/file>) = 0`, or split by another thread's call into
    // `fsync(7</dir/file> <unfinished ...>` and `<... fsync resumed>`.
    let synced = |p: &std::path::Path| {
        let (done, split) = (
            format!("<{}>)", p.display()),
            format!("<{}> <unfinished", p.display()),
        );
        trace.lines().any(|l| {
            (l.contains("fsync(") || l.contains("fdatasync("))
                && (l.contains(&done) || l.contains(&split))
        })
    };
    for o in &objs {
        let file = dst.join(&o.key);
        ensure!(
            std::fs::read(&file)? == o.data,
            "{}: bytes differ at the target",
            o.key
        );
        ensure!(
            synced(&file),
            "{} was never fsynced; fsyncs seen:\n{}",
            file.display(),
            trace
                .lines()
                .filter(|l| l.contains("sync("))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let dir = file.parent().context("parent")?;
        ensure!(synced(dir), "directory {} was never fsynced", dir.display());
    }
    Ok(())
}
