//! The source's MD5 across a stop: an upload paused with parts whose bytes
//! were altered on their way from the source is continued by the next run
//! from the recorded state of its running MD5, and fails the check before
//! completion (the object is named, not recorded, and its upload dropped),
//! instead of completing with the altered parts; the object is read
//! afresh. The target is read back independently.

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::netfault::{Dialect, Kind as Fault, NetFaults};
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

const PART: usize = 5 * 1024 * 1024;

async fn altered_before_a_stop(source: Kind, dialect: Dialect) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(77);
    let mut v = vec![0u8; 4 * PART + 333];
    rng.fill(&mut v[..]);
    let objs = vec![Obj {
        key: "big/altered.bin".into(),
        data: Bytes::from(v),
        content_type: None,
        meta: Vec::new(),
    }];
    let src = Server::start(source)?;
    src.create_bucket("src")?;
    // Written in one request: S3 gives it an MD5 ETag, Azure a Content-MD5.
    dataset::seed(src.client("src")?.as_ref(), &objs).await?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let proxy = Meter::start(&src.endpoint)?;
    let job = StoreJob::through(
        &src,
        &proxy.endpoint,
        &moto,
        &moto.endpoint,
        "part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n[transfer]\nparts-in-flight = 1\n",
        1,
    )?;

    // Every object GET altered in one byte; stopped after two parts.
    proxy.break_requests(Some(
        NetFaults::new(5, 1.0, &[Fault::Alter], dialect).only(&["GET"]),
    ));
    let first = job.run_and_signal(2, "INT")?;
    ensure!(
        first.code == 130 && first.stat("paused")? == 1,
        "first run: exit {}, {}\n{}",
        first.code,
        first.stdout,
        first.stderr
    );
    ensure!(
        moto.open_uploads("dst")?.len() == 1,
        "the paused upload stays open"
    );

    // Faults off: the rest of the parts read right, the recorded ones not.
    proxy.break_requests(None);
    let second = job.run()?;
    ensure!(
        second.code == 1 && second.stat("failed")? == 1 && second.stat("uploads_resumed")? == 1,
        "a resumed upload with altered parts must fail its check: exit {}\n{}\n{}",
        second.code,
        second.stdout,
        second.stderr
    );
    ensure!(
        second.stderr.contains("big/altered.bin") && second.stderr.contains("MD5"),
        "the failure names the key and the checksum:\n{}",
        second.stderr
    );
    ensure!(
        moto.open_uploads("dst")?.is_empty(),
        "the upload holding altered parts is aborted"
    );
    // The pass may go on to read the object afresh (it is listed as well
    // as continued): whatever the target holds now must be the source's
    // bytes, read back with its own client.
    let path = object_store::path::Path::from("big/altered.bin");
    match moto.client("dst")?.get(&path).await {
        Err(object_store::Error::NotFound { .. }) => {}
        Ok(got) => ensure!(
            blake3::hash(&got.bytes().await?) == blake3::hash(&objs[0].data),
            "the target holds other bytes than the source after the failed resume"
        ),
        Err(e) => return Err(e.into()),
    }

    let third = job.run()?;
    ensure!(
        third.code == 0 && third.stat("uploads_resumed")? == 0,
        "third run: exit {}\n{}",
        third.code,
        third.stdout
    );
    dataset::verify(
        moto.client("dst")?.as_ref(),
        &objs,
        Checks::BYTES,
        Some(&job.state),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_source_altered_parts_before_a_stop_fail_the_resumed_upload() -> Result<()> {
    altered_before_a_stop(Kind::Moto, Dialect::S3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_source_altered_parts_before_a_stop_fail_the_resumed_upload() -> Result<()> {
    altered_before_a_stop(Kind::Azurite, Dialect::Azure).await
}
