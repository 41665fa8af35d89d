//! `upload-checksum` and resumed multipart uploads: an upload keeps, to
//! its completion, the checksum it was created with, whatever the option
//! says when a later run continues it (S3 refuses an UploadPart whose
//! checksum algorithm is not its upload's, and a completion without every
//! part's checksum when the upload has one). `signed-payload = false`:
//! bodies go as `UNSIGNED-PAYLOAD` with their checksum, never without one.
//! A metering proxy in front of the target sees which upload bodies carry
//! `x-amz-checksum-*`, and which are unsigned.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use bytes::Bytes;
use passeur_tests::dataset::{self, Checks, Obj, PART};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};

/// The header an upload body carries under `upload-checksum = value`.
fn header_of(value: &str) -> String {
    match value {
        "none" => "none".into(),
        v => format!("x-amz-checksum-{v}"),
    }
}

/// `after` less `before`, zero counts left out.
fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Run a job with `upload-checksum = first`, kill it after its first part
/// is recorded, then run it again with `then`: the run completes the
/// upload, and every part body of it, before and after the change,
/// carries `first`'s checksum header (or none).
async fn resume_after_the_option_changed(first: &str, then: &str) -> Result<()> {
    resume_after_the_options_changed(first, then, "").await
}

/// The same, with `then_extra` (lines of `[target]`) added for the second
/// run.
async fn resume_after_the_options_changed(first: &str, then: &str, then_extra: &str) -> Result<()> {
    let what = format!("{first} → {then} {then_extra:?}");
    let source = Server::start(Kind::Moto)?;
    source.create_bucket("src")?;
    let target = Server::start(Kind::Moto)?;
    target.create_bucket("dst")?;
    let data: Vec<u8> = dataset::body("big.bin", (4 * PART + 4321) as u64, 1);
    let objs = vec![Obj {
        key: "big.bin".into(),
        data: Bytes::from(data),
        content_type: None,
        meta: Vec::new(),
    }];
    dataset::seed(source.client("src")?.as_ref(), &objs).await?;
    let proxy = Meter::start(&target.endpoint)?;
    let job = StoreJob::through(
        &source,
        &source.endpoint,
        &target,
        &proxy.endpoint,
        &format!(
            "part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\nupload-checksum = \"{first}\"\n[transfer]\nparts-in-flight = 1\n"
        ),
        1,
    )?;
    // Slow enough that the kill lands before the last part.
    proxy.delay(300);
    ensure!(
        job.run_and_kill(1, Duration::ZERO)?,
        "{what}: the first run ended before the kill"
    );
    proxy.wait_idle(Duration::from_secs(10))?;
    proxy.delay(0);
    let sent = proxy.uploads_by_checksum();
    let header = header_of(first);
    let only_first = |m: &BTreeMap<String, u64>| m.len() == 1 && m.contains_key(&header);
    ensure!(
        only_first(&sent),
        "{what}: first run: parts by checksum header {sent:?}, want {header} only"
    );
    let cfg = job.work.path().join("c.toml");
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &cfg,
        text.replace(
            &format!("upload-checksum = \"{first}\""),
            &format!("upload-checksum = \"{then}\"\n{then_extra}"),
        ),
    )?;
    let r = job.run()?;
    ensure!(
        r.code == 0 && r.stat("uploads_resumed")? == 1,
        "{what}: the run after the change: exit {}, resumed {:?}\n{}",
        r.code,
        r.stat("uploads_resumed").ok(),
        r.stderr
    );
    let resumed = delta(&proxy.uploads_by_checksum(), &sent);
    eprintln!("{what}: first run's parts by checksum header {sent:?}, resumed parts {resumed:?}");
    ensure!(
        only_first(&resumed),
        "{what}: the resumed parts do not all carry the upload's own checksum: {resumed:?}, want {header} only"
    );
    dataset::verify(target.client("dst")?.as_ref(), &objs, Checks::BYTES, None).await?;
    let open = target.open_uploads("dst")?;
    ensure!(open.is_empty(), "{what}: uploads left open: {open:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_begun_without_checksums_is_resumed_without() -> Result<()> {
    resume_after_the_option_changed("none", "sha256").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_begun_with_sha256_is_resumed_with_it() -> Result<()> {
    resume_after_the_option_changed("sha256", "none").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_begun_with_crc64nvme_is_resumed_with_it_under_sha256() -> Result<()> {
    resume_after_the_option_changed("crc64nvme", "sha256").await
}

/// An upload begun without a checksum is continued signed when the job
/// now sends bodies unsigned: its parts would otherwise go with no check
/// at all.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_begun_without_checksums_stays_signed_under_signed_payload_false() -> Result<()> {
    resume_after_the_options_changed("none", "crc64nvme", "signed-payload = false\n").await
}

/// A moto source bucket `src` seeded with the standard dataset, and an
/// empty s3s-fs bucket `dst`.
async fn moto_to_s3s_fs(seed: u64, small: usize) -> Result<(Server, Server, Vec<Obj>)> {
    let source = Server::start(Kind::Moto)?;
    source.create_bucket("src")?;
    let target = Server::start(Kind::S3sFs)?;
    target.create_bucket("dst")?;
    let objs = dataset::standard(seed, small);
    dataset::seed(source.client("src")?.as_ref(), &objs).await?;
    Ok((source, target, objs))
}

/// `signed-payload = false` with `upload-checksum = "crc64nvme"`: every
/// body, PUT or part, of every object shape goes unsigned with its
/// CRC64NVME, and every object reads back with its own bytes and
/// attributes, as the manifest records them (s3s-fs).
#[tokio::test(flavor = "multi_thread")]
async fn unsigned_bodies_carry_their_checksum_and_every_shape_arrives() -> Result<()> {
    let (source, target, objs) = moto_to_s3s_fs(1501, 20).await?;
    let proxy = Meter::start(&target.endpoint)?;
    let job = StoreJob::through(
        &source,
        &source.endpoint,
        &target,
        &proxy.endpoint,
        "part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\nupload-checksum = \"crc64nvme\"\nsigned-payload = false\n",
        4,
    )?;
    let r = job.run()?;
    ensure!(r.code == 0, "exit {}\n{}", r.code, r.stderr);
    let sent = proxy.uploads_by_checksum();
    let n = sent.values().sum::<u64>();
    ensure!(
        n > objs.len() as u64 && sent.get("x-amz-checksum-crc64nvme unsigned") == Some(&n),
        "upload bodies by checksum header: {sent:?}, want every one crc64nvme and unsigned (more than {} objects: parts)",
        objs.len()
    );
    let attrs = Checks {
        attributes: true,
        guessed_type: false,
    };
    dataset::verify(
        target.client("dst")?.as_ref(),
        &objs,
        attrs,
        Some(&job.state),
    )
    .await?;
    Ok(())
}

/// Unsigned bodies without a checksum would go unchecked: refused before
/// anything is read or written, in one line naming the option (exit 78).
#[tokio::test(flavor = "multi_thread")]
async fn signed_payload_false_without_a_checksum_is_refused() -> Result<()> {
    let (source, target, _) = moto_to_s3s_fs(1502, 3).await?;
    let job = StoreJob::through(
        &source,
        &source.endpoint,
        &target,
        &target.endpoint,
        "upload-checksum = \"none\"\nsigned-payload = false\n",
        4,
    )?;
    let r = job.run()?;
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains("error")).collect();
    ensure!(
        r.code == 78
            && errors.len() == 1
            && errors[0].contains("signed-payload = false")
            && errors[0].contains("upload-checksum"),
        "exit {}, want 78 and one line naming signed-payload\n{}",
        r.code,
        r.stderr
    );
    let listed = dataset::keys(target.client("dst")?.as_ref()).await?;
    ensure!(listed.is_empty(), "objects at the target: {listed:?}");
    Ok(())
}
