//! Single PUTs carrying the source's MD5: with neither `upload-checksum`
//! nor `signed-payload` set, an object written in one PUT to an S3 target
//! goes with the MD5 its source publishes (an S3 MD5 ETag, an Azure
//! Content-MD5) as `Content-MD5`, its body unsigned: the target checks
//! the bytes against the source's own checksum, and neither side hashes
//! the body with SHA-256. Parts of multipart uploads keep their
//! `x-amz-checksum-sha256`, and an explicit `upload-checksum` keeps it on
//! every body. A metering proxy before the target sees each body's
//! headers; every object of every shape and key is read back
//! independently, with its attributes, as the manifest records it.

use anyhow::{Result, ensure};
use passeur_tests::dataset::{self, Checks, Obj, PART};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};

/// Bodies a proxy counts as uploads in one PUT: objects of one byte up
/// to the multipart threshold (`PART`; empty bodies are not counted).
fn single_puts(objs: &[Obj]) -> u64 {
    objs.iter()
        .filter(|o| !o.data.is_empty() && o.data.len() <= PART)
        .count() as u64
}

/// Copy the standard dataset from a `source` server to s3s-fs through a
/// metering proxy, with `extra` target lines; the upload bodies by
/// checksum header, after every object was read back.
async fn copy_every_shape(
    source: &Server,
    objs: &[Obj],
    extra: &str,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let target = Server::start(Kind::S3sFs)?;
    target.create_bucket("dst")?;
    let proxy = Meter::start(&target.endpoint)?;
    let job = StoreJob::through(
        source,
        &source.endpoint,
        &target,
        &proxy.endpoint,
        &format!("part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n{extra}"),
        4,
    )?;
    let r = job.run()?;
    ensure!(
        r.code == 0 && r.stat("copied")? == objs.len() as u64,
        "exit {}\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let attrs = Checks {
        attributes: true,
        guessed_type: false,
    };
    let store = target.client("dst")?;
    dataset::verify(store.as_ref(), objs, attrs, Some(&job.state)).await?;
    dataset::verify_sdk(&target.sdk_read_back("dst")?, objs)?;
    Ok(proxy.uploads_by_checksum())
}

/// Every single PUT carries the source's MD5 unsigned, every part its
/// signed SHA-256; with `upload-checksum = "sha256"` every body carries
/// its SHA-256.
async fn single_puts_carry_the_sources_md5(kind: Kind, seed: u64) -> Result<()> {
    let source = Server::start(kind)?;
    source.create_bucket("src")?;
    let objs = dataset::standard(seed, 20);
    dataset::seed(source.client("src")?.as_ref(), &objs).await?;

    let sent = copy_every_shape(&source, &objs, "").await?;
    let singles = single_puts(&objs);
    let parts: u64 = sent
        .iter()
        .filter(|(k, _)| k.as_str() != "content-md5 unsigned")
        .map(|(_, n)| n)
        .sum();
    ensure!(
        sent.get("content-md5 unsigned") == Some(&singles)
            && sent.len() == 2
            && sent.get("x-amz-checksum-sha256") == Some(&parts),
        "{kind:?}: upload bodies by checksum header {sent:?}; want {singles} single PUTs as \
         content-md5 unsigned and every part as x-amz-checksum-sha256"
    );

    let sent = copy_every_shape(&source, &objs, "upload-checksum = \"sha256\"\n").await?;
    ensure!(
        sent.len() == 1 && sent.contains_key("x-amz-checksum-sha256"),
        "{kind:?}, upload-checksum = \"sha256\": upload bodies by checksum header {sent:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn single_puts_from_s3_carry_the_md5_etag() -> Result<()> {
    single_puts_carry_the_sources_md5(Kind::Moto, 1601).await
}

#[tokio::test(flavor = "multi_thread")]
async fn single_puts_from_azure_carry_the_content_md5() -> Result<()> {
    single_puts_carry_the_sources_md5(Kind::Azurite, 1602).await
}

/// A PUT with the source's MD5 is tried again as the store's retry
/// settings say, as object_store's own PUT is: six 503 SlowDown answers
/// in a row are outlasted under `max-retries = 8` (five tries in all
/// would have failed the object).
#[tokio::test(flavor = "multi_thread")]
async fn a_put_with_the_sources_md5_follows_the_stores_retries() -> Result<()> {
    let source = Server::start(Kind::Moto)?;
    source.create_bucket("src")?;
    let objs = vec![Obj::random("retried.bin", 10_000, 1603)];
    dataset::seed(source.client("src")?.as_ref(), &objs).await?;
    let target = Server::start(Kind::S3sFs)?;
    target.create_bucket("dst")?;
    let proxy = Meter::start(&target.endpoint)?;
    proxy.refuse_puts(6);
    let job = StoreJob::through(
        &source,
        &source.endpoint,
        &target,
        &proxy.endpoint,
        "max-retries = 8\nretry-timeout = \"60s\"\n",
        1,
    )?;
    let r = job.run()?;
    ensure!(
        r.code == 0 && r.stat("copied")? == 1 && proxy.refused() == 6,
        "exit {}, refused {}\n{}",
        r.code,
        proxy.refused(),
        r.stderr
    );
    let sent = proxy.uploads_by_checksum();
    ensure!(
        sent.keys().all(|k| k == "content-md5 unsigned"),
        "upload bodies by checksum header {sent:?}"
    );
    dataset::verify(
        target.client("dst")?.as_ref(),
        &objs,
        Checks::BYTES,
        Some(&job.state),
    )
    .await
}
