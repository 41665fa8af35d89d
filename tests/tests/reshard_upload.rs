//! A resumable upload left by a killed run must not be continued by a run
//! that no longer owns its key: after the job's shard changes (or its
//! filter), another instance replicates that key, and two writers on one
//! key is exactly what sharding exists to prevent. The run that gave the
//! key away aborts the upload at the target and forgets it, reading
//! nothing of the object; the owner then copies it. Checked with
//! independent reads of the target (bytes, BLAKE3, the open uploads).

use std::time::Duration;

use anyhow::{Result, ensure};
use object_store::ObjectStoreExt;
use object_store::path::Path as OsPath;
use passeur_core::base::shard::{owner, virtual_shard};
use passeur_tests::dataset::{self, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};

const PART: usize = 5 * 1024 * 1024;
const KEY: &str = "big/given away.bin";

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_of_a_key_given_away_is_aborted_not_continued() -> Result<()> {
    let obj = Obj::random(KEY, 5 * PART + 7, 61);
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    dataset::seed(moto.client("src")?.as_ref(), std::slice::from_ref(&obj)).await?;
    let source = Meter::start(&moto.endpoint)?;
    let target = Meter::start(&moto.endpoint)?;
    let mut job = StoreJob::through(
        &moto,
        &source.endpoint,
        &moto,
        &target.endpoint,
        "part-size = \"5MiB\"\n[transfer]\nparts-in-flight = 1\n",
        1,
    )?;
    // Unsharded, killed with two parts recorded.
    ensure!(
        job.run_and_kill(2, Duration::ZERO)?,
        "the first run ended before the kill"
    );
    ensure!(
        moto.open_uploads("dst")?.len() == 1,
        "want the killed run's one open upload"
    );

    // The job becomes shard `other` of 2, which does not own the key.
    let mine = owner(virtual_shard(KEY), 2);
    let other = 1 - mine;
    job.set_arg("--shard", &format!("{other}/2"));
    let read_before = source.object_bytes();
    let run = job.run()?;
    ensure!(
        run.code == 0,
        "shard {other}/2 failed (exit {}): {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let read = source.object_bytes() - read_before;
    ensure!(
        read == 0,
        "shard {other}/2 read {read} bytes of a key it does not own"
    );
    ensure!(
        run.stat("uploads_resumed")? == 0,
        "shard {other}/2 resumed the upload of a key it gave away: {}",
        run.stdout
    );
    let dst = moto.client("dst")?;
    let held = dst.head(&OsPath::parse(KEY)?).await;
    ensure!(
        matches!(held, Err(object_store::Error::NotFound { .. })),
        "shard {other}/2 wrote {KEY:?}, which it does not own: {held:?}"
    );
    let open = moto.open_uploads("dst")?;
    ensure!(
        open.is_empty(),
        "the given-away upload was left open: {open:?}"
    );

    // Its owner copies it, whole and equal.
    job.set_arg("--shard", &format!("{mine}/2"));
    let run = job.run()?;
    ensure!(
        run.code == 0 && run.stat("copied")? == 1,
        "shard {mine}/2: exit {}: {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let got = dst.get(&OsPath::parse(KEY)?).await?.bytes().await?;
    ensure!(
        blake3::hash(&got) == blake3::hash(&obj.data) && got == obj.data,
        "BLAKE3 {} ({} bytes) at the target, {} ({} bytes) at the source",
        blake3::hash(&got),
        got.len(),
        blake3::hash(&obj.data),
        obj.data.len()
    );
    ensure!(moto.open_uploads("dst")?.is_empty(), "uploads left open");
    Ok(())
}
