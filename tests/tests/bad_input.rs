//! Bad input: one line naming the problem, a documented exit code, no
//! panic, nothing partial at the target.

use anyhow::{Result, ensure};
use passeur_tests::servers::{Kind, Server, free_port};
use passeur_tests::{LocalTargetJob, Run, dataset, sync};

/// A fatal error: the documented code and exactly one line on stderr.
fn expect_fatal(run: &Run, code: i32, needle: &str) -> Result<()> {
    ensure!(
        run.code == code,
        "exit {} (want {code}); stderr: {}",
        run.code,
        run.stderr
    );
    ensure!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    ensure!(lines.len() == 1, "want one line, got: {:?}", lines);
    ensure!(
        lines[0].to_lowercase().contains(needle),
        "{:?} does not mention {needle:?}",
        lines[0]
    );
    Ok(())
}

fn local_source() -> Result<tempfile::TempDir> {
    let d = tempfile::tempdir()?;
    dataset::write_dir(d.path(), &dataset::standard(9, 5)[6..])?;
    Ok(d)
}

#[test]
fn unknown_url_scheme_is_a_config_error() -> Result<()> {
    let state = tempfile::tempdir()?;
    let src = local_source()?;
    let run = sync(
        &src.path().to_string_lossy(),
        "ftp://host/dir",
        state.path(),
        None,
    )?;
    expect_fatal(&run, 78, "unknown scheme")
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_bucket_or_directory_is_unavailable() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("exists")?;
    let cfg = format!("[source]\n{0}\n[target]\n{0}", moto.config());
    let state = tempfile::tempdir()?;
    let run = sync(
        "s3://no-such-bucket",
        "s3://exists/copy",
        state.path(),
        Some(&cfg),
    )?;
    expect_fatal(&run, 69, "not found")?;
    ensure!(
        dataset::keys(moto.client("exists")?.as_ref())
            .await?
            .is_empty(),
        "target touched"
    );
    let src = local_source()?;
    let run = sync(
        &src.path().to_string_lossy(),
        "s3://no-such-bucket",
        state.path(),
        Some(&cfg),
    )?;
    expect_fatal(&run, 69, "not found")?;
    let run = sync(
        "/definitely/not/here",
        "s3://exists",
        state.path(),
        Some(&cfg),
    )?;
    expect_fatal(&run, 69, "not found")
}

#[test]
fn unreachable_endpoint_is_unavailable() -> Result<()> {
    let port = free_port()?;
    let cfg = format!(
        "[target]\nendpoint = \"http://127.0.0.1:{port}\"\nallow-http = true\npath-style = true\nregion = \"us-east-1\"\naccess-key-id = \"k\"\nsecret-access-key = \"s\"\nmax-retries = 1\nretry-timeout = \"2s\"\n"
    );
    let state = tempfile::tempdir()?;
    let src = local_source()?;
    let run = sync(
        &src.path().to_string_lossy(),
        "s3://bucket",
        state.path(),
        Some(&cfg),
    )?;
    expect_fatal(&run, 69, "unreachable")
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_refused() -> Result<()> {
    let src = local_source()?;
    let state = tempfile::tempdir()?;
    let s3s = Server::start(Kind::S3sFs)?;
    s3s.create_bucket("dst")?;
    let cfg = format!("[target]\n{}", s3s.config()).replace(
        "secret-access-key = \"testing\"",
        "secret-access-key = \"wrong\"",
    );
    let run = sync(
        &src.path().to_string_lossy(),
        &s3s.url("dst"),
        state.path(),
        Some(&cfg),
    )?;
    expect_fatal(&run, 77, "access denied")?;
    ensure!(
        dataset::keys(s3s.client("dst")?.as_ref()).await?.is_empty(),
        "target touched"
    );

    let az = Server::start(Kind::Azurite)?;
    az.create_bucket("dst")?;
    let cfg = format!(
        "[target]\n{}access-key = \"{}\"\n",
        az.config(),
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    );
    let run = sync(
        &src.path().to_string_lossy(),
        &az.url("dst"),
        state.path(),
        Some(&cfg),
    )?;
    expect_fatal(&run, 77, "access denied")
}

#[test]
fn unwritable_state_directory() -> Result<()> {
    let work = tempfile::tempdir()?;
    let file = work.path().join("a-file");
    std::fs::write(&file, b"not a directory")?;
    let src = local_source()?;
    let dst = work.path().join("dst");
    let run = sync(
        &src.path().to_string_lossy(),
        &dst.to_string_lossy(),
        &file.join("state"),
        None,
    )?;
    expect_fatal(&run, 73, "state directory")?;
    ensure!(
        !dst.exists() || std::fs::read_dir(&dst)?.next().is_none(),
        "target written"
    );
    Ok(())
}

#[test]
fn state_directory_of_another_schema_version() -> Result<()> {
    let work = tempfile::tempdir()?;
    let state = work.path().join("state");
    passeur_core::manifest::Manifest::open(&state)?.set_schema_version(999)?;
    let src = local_source()?;
    let dst = work.path().join("dst");
    let run = sync(
        &src.path().to_string_lossy(),
        &dst.to_string_lossy(),
        &state,
        None,
    )?;
    expect_fatal(&run, 65, "schema version 999")?;
    ensure!(
        !dst.exists() || std::fs::read_dir(&dst)?.next().is_none(),
        "target written"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn key_the_filesystem_cannot_hold_fails_alone() -> Result<()> {
    // `a` and `a/b` both exist in the bucket; a directory tree cannot hold both.
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    let mut objs = dataset::standard(4, 50)[6..].to_vec();
    for key in ["conflict", "conflict/child"] {
        objs.push(dataset::Obj {
            key: key.into(),
            data: bytes::Bytes::from_static(b"x"),
            content_type: None,
            meta: vec![],
        });
    }
    dataset::seed(moto.client("src")?.as_ref(), &objs).await?;
    let job = LocalTargetJob::new(&moto.url("src"), &moto.config(), 8)?;
    let (run, dst) = (job.run()?, &job.dst);
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stderr);
    ensure!(!run.stderr.contains("panicked"));
    ensure!(run.stat("failed")? == 1, "{}", run.stdout);
    ensure!(run.stat("copied")? == objs.len() as u64 - 1);
    let failures = &run.summary()?["summary"]["failures"];
    let key = failures[0]["key"].as_str().unwrap_or_default();
    ensure!(key.starts_with("conflict"), "failure names {key}");
    ensure!(
        !failures[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    // Every other object arrived intact.
    for o in objs.iter().filter(|o| !o.key.starts_with("conflict")) {
        ensure!(
            std::fs::read(dst.join(&o.key))? == o.data,
            "{} differs",
            o.key
        );
    }
    Ok(())
}

#[test]
fn state_directory_belongs_to_one_job() -> Result<()> {
    let work = tempfile::tempdir()?;
    let state = work.path().join("state");
    let src = local_source()?;
    let s = src.path().to_string_lossy().into_owned();
    let first = sync(&s, &work.path().join("a").to_string_lossy(), &state, None)?;
    ensure!(first.code == 0, "{}", first.stderr);
    // Same job spelled differently is the same job.
    let again = sync(
        &format!("{s}/."),
        &work.path().join("a").to_string_lossy(),
        &state,
        None,
    )?;
    ensure!(again.code == 0, "{}", again.stderr);
    let other = work.path().join("b");
    let run = sync(&s, &other.to_string_lossy(), &state, None)?;
    expect_fatal(&run, 78, "belongs to target")?;
    ensure!(
        !other.exists() || std::fs::read_dir(&other)?.next().is_none(),
        "other target written"
    );
    Ok(())
}

#[test]
fn single_put_threshold_above_memory_budget_is_refused() -> Result<()> {
    let work = tempfile::tempdir()?;
    let src = local_source()?;
    let cfg = "[target]\nmultipart-threshold = \"64MiB\"\n[transfer]\nmemory-budget = \"32MiB\"\n";
    let run = sync(
        &src.path().to_string_lossy(),
        &work.path().join("t").to_string_lossy(),
        &work.path().join("s"),
        Some(cfg),
    )?;
    expect_fatal(&run, 78, "memory-budget")
}
