//! Bytes altered on the way: answers of the source changed in one byte
//! (caught by the MD5 the source publishes) and upload bodies changed on
//! their way to the target (refused by an S3 target that checks the
//! checksum the request carries; stored by Azure, where `verify --deep`
//! names every damaged key and `--repair` with one more pass heals them).
//! The scenarios run through `super::run`, like every other fault.

use super::*;

/// Bytes altered between the source and passeur, answers whole and of the
/// right length, mixed with answers reset in the middle of their body (so
/// that multipart uploads stop part-way and are resumed). Every object at
/// an S3 source written in one PUT publishes its MD5 as ETag: read in one
/// GET, or in ranged parts (the running MD5 is kept with every recorded
/// part, so a resumed upload goes on from it), an altered read fails its
/// object (transient) instead of being recorded, and a recorded upload is
/// dropped; the next pass reads it right.
#[tokio::test(flavor = "multi_thread")]
async fn source_bytes_altered_on_the_way_are_caught_by_the_md5_etag() -> Result<()> {
    let mut sc = Scenario::new("source-altered", 1211, Kind::Moto, Kind::Moto).on(
        Side::Source,
        0.2,
        &[Fault::Alter, Fault::Alter, Fault::ResetResponse],
    );
    sc.max_passes = 8;
    run(sc).await
}

/// The same at an Azure source: a blob written with Put Blob has a
/// Content-MD5, which every GET answers with (`Content-MD5` whole,
/// `x-ms-blob-content-md5` for a range); bytes that do not hash to it fail
/// their object, whole or read in parts, fresh or resumed.
#[tokio::test(flavor = "multi_thread")]
async fn azure_source_bytes_altered_on_the_way_are_caught_by_content_md5() -> Result<()> {
    let mut sc = Scenario::new("source-altered-azure", 1214, Kind::Azurite, Kind::Moto).on(
        Side::Source,
        0.2,
        &[Fault::Alter, Fault::Alter, Fault::ResetResponse],
    );
    sc.max_passes = 8;
    run(sc).await
}

/// Bytes altered between passeur and an S3 target, lengths kept: nothing
/// altered is stored, and every upload body carried `x-amz-checksum-sha256`
/// (`upload-checksum`, default sha256; seen by the proxy, so the scenario
/// fails with `none`). What refuses the altered bodies here is s3s-fs's
/// check of the SigV4 payload hash (`x-amz-content-sha256`, answered 500
/// and retried by object_store): s3s-fs checks `x-amz-checksum-sha256` on
/// PutObject only, behind that check, and moto checks neither (altered
/// bytes are stored there whatever the option), so no local server
/// refuses a body by its checksum header alone; AWS checks both.
#[tokio::test(flavor = "multi_thread")]
async fn target_altered_s3_uploads_are_refused() -> Result<()> {
    let mut sc = Scenario::new("target-altered-s3", 1212, Kind::Moto, Kind::S3sFs).on(
        Side::Target,
        0.2,
        &[Fault::AlterUpload],
    );
    sc.upload_checksums = true;
    sc.target_extra = "upload-checksum = \"sha256\"\n";
    sc.uploads_as = Some("x-amz-checksum-sha256");
    run(sc).await
}

/// The default: single PUTs carry the MD5 the source publishes
/// (`Content-MD5`, the body unsigned), which s3s-fs checks (400
/// BadDigest). s3s-fs checks it only once the body is in place, so an
/// altered object is visible there until a later pass writes it again
/// (AWS stores nothing); the passes go on until one is clean. Objects
/// stay under the multipart threshold: parts carry their SHA-256.
#[tokio::test(flavor = "multi_thread")]
async fn target_altered_single_puts_are_refused_by_the_sources_md5() -> Result<()> {
    let mut sc = Scenario::new("target-altered-s3-md5", 1216, Kind::Moto, Kind::S3sFs).on(
        Side::Target,
        0.2,
        &[Fault::AlterUpload],
    );
    sc.upload_checksums = true;
    sc.max_size = 5 << 20;
    sc.max_passes = 10;
    sc.uploads_as = Some("content-md5 unsigned");
    run(sc).await
}

/// `signed-payload = false`: no SigV4 payload hash, the body's
/// CRC64NVME alone, which s3s-fs checks on PutObject (400 BadDigest).
/// s3s-fs checks no checksum on UploadPart (AWS does), so objects stay
/// under the multipart threshold here; the proxy must see every body
/// unsigned, else the refusals could be the payload hash's.
#[tokio::test(flavor = "multi_thread")]
async fn target_altered_s3_unsigned_uploads_are_refused_by_their_checksum() -> Result<()> {
    let mut sc = Scenario::new("target-altered-s3-unsigned", 1215, Kind::Moto, Kind::S3sFs).on(
        Side::Target,
        0.2,
        &[Fault::AlterUpload],
    );
    sc.upload_checksums = true;
    sc.max_size = 5 << 20;
    // A 400 BadDigest is not retried within a pass: the next copies it.
    sc.max_passes = 10;
    sc.target_extra = "upload-checksum = \"crc64nvme\"\nsigned-payload = false\n";
    sc.uploads_as = Some("x-amz-checksum-crc64nvme unsigned");
    run(sc).await
}

/// Bytes altered between passeur and an Azure target: object_store sends
/// Put Blob and Put Block without Content-MD5, so Azure stores them and
/// the passes exit 0; `verify --deep` names every damaged key, and
/// `--repair` with one more pass heals them.
#[tokio::test(flavor = "multi_thread")]
async fn target_altered_azure_uploads_are_caught_by_verify_deep() -> Result<()> {
    let mut sc = Scenario::new("target-altered-azure", 1213, Kind::Moto, Kind::Azurite).on(
        Side::Target,
        0.2,
        &[Fault::AlterUpload],
    );
    sc.damage = Damage::CaughtByVerify;
    run(sc).await
}

/// Keys whose bytes at the target, read back independently, are not the
/// dataset's (or that cannot be read).
async fn damaged_keys(target: &Server, objs: &[Obj]) -> Result<BTreeSet<String>> {
    let store = target.client("dst")?;
    let mut damaged = BTreeSet::new();
    for o in objs {
        let path = object_store::path::Path::parse(&o.key)?;
        let same = match store.get(&path).await {
            Ok(got) => got.bytes().await.is_ok_and(|b| b == o.data),
            Err(_) => false,
        };
        if !same {
            damaged.insert(o.key.clone());
        }
    }
    Ok(damaged)
}

/// The keys a verification report names as mismatched, each of `kind`.
fn named(report: &serde_json::Value, kind: &str) -> Result<BTreeSet<String>> {
    let ver = &report["verification"];
    let list = ver["mismatches"].as_array().context("no mismatches list")?;
    ensure!(
        ver["mismatch_count"] == list.len() as u64,
        "mismatches not all listed: {ver}"
    );
    list.iter()
        .map(|m| {
            ensure!(m["kind"] == kind, "mismatch of another kind: {m}");
            m["key"]
                .as_str()
                .map(str::to_owned)
                .context("mismatch without key")
        })
        .collect()
}

/// Altered bytes were stored: `verify --deep` must fail and name exactly
/// the damaged keys (read back independently; every key whose upload the
/// proxy altered among them); `verify --deep --repair` forgets them and
/// one more pass copies them again.
pub(super) async fn heal_by_verify(
    sc: &Scenario,
    seed: u64,
    job: &StoreJob,
    source: &Server,
    target: &Server,
    objs: &[Obj],
    altered: &BTreeSet<String>,
) -> Result<()> {
    let name = sc.name;
    let damaged = damaged_keys(target, objs).await?;
    eprintln!(
        "{name}: seed {seed}: {} keys altered on the way, {} damaged at the target",
        altered.len(),
        damaged.len()
    );
    ensure!(
        !damaged.is_empty(),
        "{name}: seed {seed}: nothing altered was stored: does the target now check a checksum of uploads? then expect Damage::Refused"
    );
    ensure!(
        altered.is_subset(&damaged),
        "{name}: seed {seed}: altered but intact: {:?}",
        altered.difference(&damaged).collect::<Vec<_>>()
    );
    let (v, report) = job.verify(source, target, &["--deep"])?;
    ensure!(
        v.code == 1 && report["verified"] == false,
        "{name}: seed {seed}: verify --deep over damage exit {}: {}",
        v.code,
        v.stdout
    );
    let found = named(&report, "content")?;
    ensure!(
        found == damaged,
        "{name}: seed {seed}: verify --deep named {found:?}, damaged {damaged:?}"
    );
    let (v, report) = job.verify(source, target, &["--deep", "--repair"])?;
    let repaired: BTreeSet<String> = report["repaired"]
        .as_array()
        .context("no repaired list")?
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    ensure!(
        v.code == 1 && repaired == damaged,
        "{name}: seed {seed}: verify --repair exit {}, repaired {repaired:?}, damaged {damaged:?}",
        v.code
    );
    let r = job.run()?;
    ensure!(
        r.code == 0 && r.stat("copied")? == damaged.len() as u64,
        "{name}: seed {seed}: the pass after the repair: exit {}, copied {:?}\n{}",
        r.code,
        r.stat("copied").ok(),
        r.stderr
    );
    Ok(())
}
