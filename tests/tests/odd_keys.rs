//! Keys real buckets contain that object_store's paths cannot represent.

use anyhow::{Result, ensure};
use passeur_tests::LocalTargetJob;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::servers::{Kind, Server};

fn obj(key: &str, data: &'static [u8]) -> Obj {
    Obj {
        key: key.into(),
        data: bytes::Bytes::from_static(data),
        content_type: None,
        meta: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_markers_are_skipped_not_failed() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    dataset::seed(
        moto.client("src")?.as_ref(),
        &[obj("folder/in.txt", b"inside"), obj("top.txt", b"top")],
    )
    .await?;
    // Zero-byte `dir/` markers, as consoles and some tools create them.
    moto.put_raw_keys("src", &["folder/", "empty-dir/"])?;
    let job = LocalTargetJob::new(&moto.url("src"), &moto.config(), 8)?;
    let (run, dst) = (job.run()?, &job.dst);
    ensure!(
        run.code == 0,
        "exit {}: {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    ensure!(
        run.stat("copied")? == 2 && run.stat("vanished")? == 2,
        "{}",
        run.stdout
    );
    ensure!(std::fs::read(dst.join("folder/in.txt"))? == b"inside");
    ensure!(std::fs::read(dst.join("top.txt"))? == b"top");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unrepresentable_key_stops_the_listing_with_a_clear_reason() -> Result<()> {
    // Known limit: object_store rejects a listing page holding `a//b`; the
    // pass must say so and exit 1, never report success.
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.put_raw_keys("src", &["a//b"])?;
    let job = LocalTargetJob::new(&moto.url("src"), &moto.config(), 8)?;
    let run = job.run()?;
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stderr);
    let err = run.summary()?["summary"]["listing_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        err.contains("a//b"),
        "listing error does not name the key: {err}"
    );
    Ok(())
}
