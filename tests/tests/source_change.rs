//! The source changes under a resumed multipart upload. The target must end
//! with the new version, the manifest hash must match it, and no object
//! made of two versions may ever be visible.
//!
//! Two moments, against moto and Azurite (which honour If-Match) and s3s-fs
//! (which ignores it):
//! - between the kill and the restart: the listing shows a new version, and
//!   the upload is aborted before anything is read;
//! - after the restart has listed the old version, while its ranged reads
//!   are held by the proxy: moto refuses the If-Match read; s3s-fs serves
//!   the new bytes, and the HEAD before completion catches the change.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStoreExt, PutPayload};
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

const PART: usize = 5 * 1024 * 1024;
const KEY: &str = "big/changing.bin";

fn version(seed: u64) -> Obj {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; 9 * PART + 777];
    rng.fill(&mut v[..]);
    Obj {
        key: KEY.into(),
        data: Bytes::from(v),
        content_type: None,
        meta: Vec::new(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    BeforeRestart,
    DuringRead,
}

async fn put_source(source: &Server, obj: &Obj) -> Result<()> {
    if source.kind == Kind::S3sFs {
        // s3s-fs serves files; its last-modified has whole seconds: the
        // new version's is moved past the old one's.
        let path = source.data.path().join("src").join(&obj.key);
        let before = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        dataset::write_dir(&source.data.path().join("src"), std::slice::from_ref(obj))?;
        if let Some(t) = before {
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(t + Duration::from_secs(2))?;
        }
    } else {
        source
            .client("src")?
            .put(
                &OsPath::parse(&obj.key)?,
                PutPayload::from(obj.data.clone()),
            )
            .await?;
    }
    Ok(())
}

async fn change_under_resume(kind: Kind, when: When) -> Result<()> {
    let old = version(1);
    let new = version(2);
    let source = Server::start(kind)?;
    source.create_bucket("src")?;
    put_source(&source, &old).await?;
    let moto_target;
    let target = if kind == Kind::Moto {
        // One moto serves both buckets.
        &source
    } else {
        moto_target = Server::start(Kind::Moto)?;
        &moto_target
    };
    target.create_bucket("dst")?;
    let meter = Meter::start(&source.endpoint)?;
    let job = StoreJob::new(
        &source,
        &meter.endpoint,
        target,
        "part-size = \"5MiB\"\n[transfer]\nparts-in-flight = 1\n",
        1,
    )?;
    let dst = target.client("dst")?;

    ensure!(
        job.run_and_kill(3, Duration::ZERO)?,
        "{kind:?}: first run ended before the kill"
    );
    ensure!(
        dst.head(&OsPath::parse(KEY)?).await.is_err(),
        "{kind:?}: a partial object is visible at the target"
    );

    let run = match when {
        When::BeforeRestart => {
            put_source(&source, &new).await?;
            job.run()?
        }
        When::DuringRead => {
            meter.hold_ranged_gets(true);
            let mut cmd = job.command()?;
            cmd.env("PASSEUR_LOG", "passeur_core=info");
            let handle = std::thread::spawn(move || cmd.output());
            let deadline = Instant::now() + Duration::from_secs(60);
            while meter.held() == 0 {
                ensure!(
                    Instant::now() < deadline,
                    "{kind:?}: restart never read a part"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            put_source(&source, &new).await?;
            meter.hold_ranged_gets(false);
            let out = handle
                .join()
                .map_err(|_| anyhow::anyhow!("restart thread panicked"))??;
            passeur_tests::Run::from_output(out)
        }
    };
    ensure!(
        run.code == 0,
        "{kind:?} {when:?}: restart failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    let restarted = run.stat("uploads_restarted")?;
    eprintln!(
        "{kind:?} {when:?}: uploads restarted {restarted}, resumed {}",
        run.stat("uploads_resumed")?
    );
    ensure!(
        restarted >= 1,
        "{kind:?} {when:?}: the change was not detected"
    );
    dataset::verify(
        dst.as_ref(),
        std::slice::from_ref(&new),
        Checks::BYTES,
        Some(&job.state),
    )
    .await?;
    let open = target.open_uploads("dst")?;
    ensure!(
        open.is_empty(),
        "{kind:?} {when:?}: uploads left open: {open:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_source_changed_before_restart() -> Result<()> {
    change_under_resume(Kind::Moto, When::BeforeRestart).await
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_source_changed_during_resumed_read() -> Result<()> {
    change_under_resume(Kind::Moto, When::DuringRead).await
}

#[tokio::test(flavor = "multi_thread")]
async fn s3s_fs_source_changed_before_restart() -> Result<()> {
    change_under_resume(Kind::S3sFs, When::BeforeRestart).await
}

#[tokio::test(flavor = "multi_thread")]
async fn s3s_fs_source_changed_during_resumed_read() -> Result<()> {
    change_under_resume(Kind::S3sFs, When::DuringRead).await
}

#[tokio::test(flavor = "multi_thread")]
async fn azurite_source_changed_during_resumed_read() -> Result<()> {
    change_under_resume(Kind::Azurite, When::DuringRead).await
}
