//! A resumable upload aborted at the target behind passeur's back (an
//! `AbortIncompleteMultipartUpload` lifecycle rule, an operator) must not
//! make its object fail on every later pass: the next run finds the upload
//! gone (S3 answers 404 NoSuchUpload), forgets it and starts the object
//! over. Checked with an independent read of the target (bytes, BLAKE3).
//!
//! moto 5.2 answers 500 where S3 answers 404 NoSuchUpload (UploadPart and
//! CompleteMultipartUpload of an unknown upload id): a proxy in front of
//! the target passes those answers on as S3 gives them.
//!
//! Two moments of the kill: mid-upload (the resumed `put_part` meets the
//! vanished upload) and once every part is recorded (the completion does).
//! A HEAD of the source, which a resumable upload sends just before it
//! completes, is held by the source's proxy, so the killed run can never
//! complete the upload itself.

use std::time::Duration;

use anyhow::{Result, ensure};
use object_store::ObjectStoreExt;
use object_store::path::Path as OsPath;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};

const PART: usize = 5 * 1024 * 1024;
const KEY: &str = "big/aborted.bin";
/// Parts of the object: six whole and one of 7 bytes.
const PARTS: usize = 7;

#[derive(Debug, Clone, Copy)]
enum When {
    /// Two parts recorded: the rerun's `put_part` meets the aborted upload.
    MidUpload,
    /// Every part recorded: the rerun's `complete_multipart` meets it.
    AllPartsRecorded,
}

async fn aborted_then_rerun(when: When, seed: u64) -> Result<()> {
    let obj = Obj::random(KEY, (PARTS - 1) * PART + 7, seed);
    // One moto serves both buckets.
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    dataset::seed(moto.client("src")?.as_ref(), std::slice::from_ref(&obj)).await?;
    let source = Meter::start(&moto.endpoint)?;
    let target = Meter::start(&moto.endpoint)?;
    target.s3_no_such_upload(true);
    let job = StoreJob::through(
        &moto,
        &source.endpoint,
        &moto,
        &target.endpoint,
        "part-size = \"5MiB\"\n[transfer]\nparts-in-flight = 1\n",
        1,
    )?;

    source.hold_heads(true);
    // Killed mid-upload, or once every part is recorded and the run waits
    // on the HEAD that checks its source before completing.
    let killed = match when {
        When::MidUpload => job.run_and_kill(2, Duration::ZERO)?,
        When::AllPartsRecorded => {
            job.run_and_kill_when(PARTS, || source.wait_held_heads(1, Duration::from_secs(60)))?
        }
    };
    ensure!(killed, "{when:?}: the first run ended before the kill");
    match when {
        // Parts were left unread, so the rerun has parts to upload.
        When::MidUpload => ensure!(
            source.object_bytes() < obj.data.len() as u64,
            "{when:?}: the killed run had read the whole object"
        ),
        When::AllPartsRecorded => ensure!(
            source.held_heads() >= 1,
            "{when:?}: the killed run never checked its source before completing"
        ),
    }
    source.hold_heads(false);
    let aborted = moto.abort_uploads("dst")?;
    ensure!(
        aborted.len() == 1,
        "{when:?}: aborted {aborted:?}, want the one upload of {KEY}"
    );

    let run = job.run()?;
    ensure!(
        run.code == 0,
        "{when:?}: the run after the abort failed (exit {}): {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let restarted = run.stat("uploads_restarted")?;
    eprintln!(
        "{when:?}: NoSuchUpload answers {}, uploads restarted {restarted}, resumed {}",
        target.no_such_upload_sent(),
        run.stat("uploads_resumed")?
    );
    ensure!(
        target.no_such_upload_sent() >= 1,
        "{when:?}: the rerun never met the aborted upload"
    );
    ensure!(
        restarted >= 1,
        "{when:?}: uploads_restarted {restarted}, want ≥ 1"
    );
    let got = moto
        .client("dst")?
        .get(&OsPath::parse(KEY)?)
        .await?
        .bytes()
        .await?;
    ensure!(
        blake3::hash(&got) == blake3::hash(&obj.data),
        "{when:?}: BLAKE3 {} ({} bytes) at the target, {} ({} bytes) at the source",
        blake3::hash(&got),
        got.len(),
        blake3::hash(&obj.data),
        obj.data.len()
    );
    ensure!(got == obj.data, "{when:?}: bytes differ");
    let open = moto.open_uploads("dst")?;
    ensure!(open.is_empty(), "{when:?}: uploads left open: {open:?}");
    // And the pass after that has nothing left to do.
    let again = job.run()?;
    ensure!(
        again.code == 0 && again.stat("copied")? == 0,
        "{when:?}: the next pass: exit {}: {}",
        again.code,
        again.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_aborted_mid_upload_starts_over() -> Result<()> {
    aborted_then_rerun(When::MidUpload, 51).await
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_aborted_after_its_last_part_starts_over() -> Result<()> {
    aborted_then_rerun(When::AllPartsRecorded, 52).await
}
