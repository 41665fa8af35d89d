//! `passeur sync` between every pair of backends the acceptance names, on
//! real servers, verified by reading the target back independently.

use std::sync::Arc;

use anyhow::{Result, ensure};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{b3sum, sync};

const SMALL: usize = 1_000;

fn s3_target_config(server: &Server) -> String {
    format!(
        "[target]\n{}part-size = \"5MiB\"\nmax-parts = 4\n",
        server.config()
    )
}

/// A second pass over an unchanged source reads and writes no object bytes.
fn assert_idempotent(
    source: &str,
    target: &str,
    state: &std::path::Path,
    cfg: Option<&str>,
    n: usize,
) -> Result<()> {
    let again = sync(source, target, state, cfg)?;
    ensure!(again.code == 0, "second pass failed: {}", again.stderr);
    ensure!(again.stat("bytes_read")? == 0, "second pass read bytes");
    ensure!(again.stat("bytes_written")? == 0, "second pass wrote bytes");
    ensure!(
        again.stat("unchanged")? == n as u64,
        "second pass: {}",
        again.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_to_fs_is_byte_identical_and_matches_b3sum() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (src, dst, state) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("state"),
    );
    let objs = dataset::standard(1, SMALL);
    dataset::write_dir(&src, &objs)?;
    let run = sync(&src.to_string_lossy(), &dst.to_string_lossy(), &state, None)?;
    ensure!(run.code == 0, "sync failed: {}\n{}", run.stdout, run.stderr);
    ensure!(run.stat("copied")? == objs.len() as u64);
    let total: usize = objs.iter().map(|o| o.data.len()).sum();
    ensure!(run.stat("bytes_read")? == total as u64);

    let target: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&dst)?);
    let checks = Checks {
        attributes: false,
        guessed_type: false,
    };
    dataset::verify(target.as_ref(), &objs, checks, Some(&state)).await?;
    // The manifest's BLAKE3 is what b3sum prints for the target file.
    let m = passeur_core::manifest::Manifest::open(&state)?;
    for o in objs
        .iter()
        .filter(|o| !o.key.starts_with("small/"))
        .chain(objs.iter().step_by(97))
    {
        let rec = m.object(&o.key)?.expect("recorded");
        ensure!(
            rec.blake3.to_hex() == b3sum(&dst.join(&o.key))?,
            "{}: b3sum differs",
            o.key
        );
    }
    drop(m);
    assert_idempotent(
        &src.to_string_lossy(),
        &dst.to_string_lossy(),
        &state,
        None,
        objs.len(),
    )
}

async fn object_store_to_object_store(from: Kind, to: Kind) -> Result<()> {
    let (a, b) = (Server::start(from)?, Server::start(to)?);
    a.create_bucket("src")?;
    b.create_bucket("dst")?;
    let objs: Vec<Obj> = dataset::standard(2, SMALL);
    dataset::seed(a.client("src")?.as_ref(), &objs).await?;
    let cfg = format!("[source]\n{}\n{}", a.config(), s3_or_az_target(&b));
    let state = tempfile::tempdir()?;
    let (su, tu) = (a.url("src"), b.url("dst/replica"));
    let run = sync(&su, &tu, state.path(), Some(&cfg))?;
    ensure!(run.code == 0, "sync failed: {}\n{}", run.stdout, run.stderr);
    let target = object_store::prefix::PrefixStore::new(b.client("dst")?, "replica");
    let checks = Checks {
        attributes: true,
        guessed_type: false,
    };
    dataset::verify(&target, &objs, checks, Some(state.path())).await?;
    if to == Kind::Moto {
        // 30 MiB under max-parts = 4: 8 MiB parts, so an S3 ETag ending in -4.
        let meta =
            object_store::ObjectStoreExt::head(&target, &"parts/forces-bigger-parts.bin".into())
                .await?;
        let etag = meta.e_tag.unwrap_or_default();
        ensure!(
            etag.trim_matches('"').ends_with("-4"),
            "expected 4 parts, etag {etag}"
        );
    }
    assert_idempotent(&su, &tu, state.path(), Some(&cfg), objs.len())
}

fn s3_or_az_target(b: &Server) -> String {
    match b.kind {
        Kind::Azurite => format!(
            "[target]\n{}part-size = \"5MiB\"\nmax-parts = 4\n",
            b.config()
        ),
        _ => s3_target_config(b),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn azurite_to_moto_keeps_bytes_type_and_metadata() -> Result<()> {
    object_store_to_object_store(Kind::Azurite, Kind::Moto).await
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_to_azurite_keeps_bytes_type_and_metadata() -> Result<()> {
    object_store_to_object_store(Kind::Moto, Kind::Azurite).await
}

async fn fs_to_s3(kind: Kind) -> Result<()> {
    let server = Server::start(kind)?;
    server.create_bucket("dst")?;
    let work = tempfile::tempdir()?;
    let (src, state) = (work.path().join("src"), work.path().join("state"));
    let mut objs = dataset::standard(3, SMALL);
    if kind == Kind::S3sFs {
        // s3s-fs keeps objects as files: it cannot hold `x` and `x/y` both,
        // and the standard dataset has no such pair; nothing to drop.
        objs.retain(|o| !o.key.is_empty());
    }
    dataset::write_dir(&src, &objs)?;
    let cfg = s3_target_config(&server);
    let tu = server.url("dst");
    let run = sync(&src.to_string_lossy(), &tu, &state, Some(&cfg))?;
    ensure!(run.code == 0, "sync failed: {}\n{}", run.stdout, run.stderr);
    let checks = Checks {
        attributes: false,
        guessed_type: true,
    };
    dataset::verify(server.client("dst")?.as_ref(), &objs, checks, Some(&state)).await?;
    assert_idempotent(&src.to_string_lossy(), &tu, &state, Some(&cfg), objs.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_to_moto() -> Result<()> {
    fs_to_s3(Kind::Moto).await
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_to_s3s_fs() -> Result<()> {
    fs_to_s3(Kind::S3sFs).await
}

#[test]
fn dry_run_lists_and_writes_nothing() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (src, dst, state) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("state"),
    );
    let objs = dataset::standard(5, 20);
    dataset::write_dir(&src, &objs)?;
    let state_s = state.to_string_lossy().into_owned();
    let (s, d) = (
        src.to_string_lossy().into_owned(),
        dst.to_string_lossy().into_owned(),
    );
    let run = passeur_tests::passeur(
        &[
            "sync",
            "--source",
            &s,
            "--target",
            &d,
            "--state",
            &state_s,
            "--dry-run",
            "--output",
            "json",
        ],
        &[],
    )?;
    ensure!(run.code == 0, "{}", run.stderr);
    ensure!(run.stat("would_copy")? == objs.len() as u64);
    ensure!(run.stat("bytes_read")? == 0 && run.stat("bytes_written")? == 0);
    let listed = run
        .stderr
        .lines()
        .filter(|l| l.contains("\"would-copy\""))
        .count();
    ensure!(listed == objs.len(), "{listed} would-copy lines");
    ensure!(!dst.exists(), "dry run created the target");
    Ok(())
}

/// `--output json` names every copied object once on stderr, whole lines
/// only, none lost at exit (they are written in batches, not per object).
#[test]
fn json_lines_name_every_copied_object_once() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (src, dst, state) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("state"),
    );
    // Enough lines to fill the batch several times over.
    let objs = dataset::standard(7, 3_000);
    dataset::write_dir(&src, &objs)?;
    let run = sync(&src.to_string_lossy(), &dst.to_string_lossy(), &state, None)?;
    ensure!(run.code == 0, "{}\n{}", run.stdout, run.stderr);
    let mut seen = std::collections::BTreeMap::new();
    for line in run.stderr.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("not a whole JSON line ({e}): {line:?}"))?;
        if v["event"] != "object" {
            continue;
        }
        ensure!(v["outcome"] == "copied" && v["reason"].is_null(), "{line}");
        let key = v["key"].as_str().unwrap_or_default().to_owned();
        let size = v["size"].as_u64();
        ensure!(seen.insert(key, size).is_none(), "named twice: {line}");
    }
    let want: std::collections::BTreeMap<String, Option<u64>> = objs
        .iter()
        .map(|o| (o.key.clone(), Some(o.data.len() as u64)))
        .collect();
    ensure!(
        seen == want,
        "{} object lines for {} objects",
        seen.len(),
        want.len()
    );
    Ok(())
}

#[test]
fn demo_runs_the_embedded_default_twice() -> Result<()> {
    let work = tempfile::tempdir()?;
    let dir = work.path().to_string_lossy().into_owned();
    let run = passeur_tests::passeur(&["demo", "--dir", &dir], &[])?;
    ensure!(run.code == 0, "{}\n{}", run.stdout, run.stderr);
    ensure!(
        run.stdout.matches("pass complete").count() == 2,
        "{}",
        run.stdout
    );
    ensure!(run.stdout.contains("0 read, 0 written"), "{}", run.stdout);
    Ok(())
}

#[test]
fn include_and_exclude_select_the_keys() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (src, dst, state) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("state"),
    );
    let objs = dataset::standard(11, 20);
    dataset::write_dir(&src, &objs)?;
    let (s, d, st) = (
        src.to_string_lossy().into_owned(),
        dst.to_string_lossy().into_owned(),
        state.to_string_lossy().into_owned(),
    );
    let run = passeur_tests::passeur(
        &[
            "sync",
            "--source",
            &s,
            "--target",
            &d,
            "--state",
            &st,
            "--output",
            "json",
            "--include",
            "keys/**",
            "--include",
            "*.bin",
            "--exclude",
            "keys/deep/**",
        ],
        &[],
    )?;
    ensure!(run.code == 0, "{}\n{}", run.stdout, run.stderr);
    let accepted = |k: &str| {
        (k.starts_with("keys/") && !k.starts_with("keys/deep/"))
            || (!k.contains('/') && k.ends_with(".bin"))
    };
    let want: Vec<&Obj> = objs.iter().filter(|o| accepted(&o.key)).collect();
    ensure!(
        want.len() > 3 && want.len() < objs.len(),
        "dataset does not exercise the filter"
    );
    for o in &objs {
        let p = dst.join(&o.key);
        if accepted(&o.key) {
            ensure!(std::fs::read(&p)? == o.data, "{} differs", o.key);
        } else {
            ensure!(!p.exists(), "{} should have been left out", o.key);
        }
    }
    ensure!(run.stat("copied")? == want.len() as u64, "{}", run.stdout);
    ensure!(
        run.stat("excluded")? == (objs.len() - want.len()) as u64,
        "{}",
        run.stdout
    );
    let bad = passeur_tests::passeur(
        &[
            "sync",
            "--source",
            &s,
            "--target",
            &d,
            "--state",
            &st,
            "--exclude",
            "a[",
        ],
        &[],
    )?;
    ensure!(
        bad.code == 78 && bad.stderr.lines().count() == 1 && bad.stderr.contains("exclude pattern"),
        "{}",
        bad.stderr
    );
    Ok(())
}
