//! The source's MD5 across a stop: an upload paused with parts whose bytes
//! were altered on their way from the source is continued by the next run
//! from the recorded state of its running MD5, and fails the check before
//! completion (the object is named, not recorded, and its upload dropped),
//! instead of completing with the altered parts; the object is read
//! afresh. The target is read back independently.

use std::time::Duration;

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use passeur_core::manifest::{Manifest, PartDone};
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::netfault::{Dialect, Kind as Fault, NetFaults};
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

const PART: usize = 5 * 1024 * 1024;

/// One object of five parts, copied to moto; its first run read every
/// part altered and was stopped after two parts (its upload paused).
struct Paused {
    objs: Vec<Obj>,
    proxy: Meter,
    job: StoreJob,
    moto: Server,
    _src: Server,
}

/// Run `job`, stopped (SIGINT) once two parts are recorded: it pauses.
fn stop_after_two_parts(job: &StoreJob) -> Result<()> {
    let first = job.run_and_signal(2, "INT")?;
    ensure!(
        first.code == 130 && first.stat("paused")? == 1,
        "first run: exit {}, {}\n{}",
        first.code,
        first.stdout,
        first.stderr
    );
    Ok(())
}

/// An object of `len` random bytes (from `seed`) under `key`.
fn random_obj(key: &str, seed: u64, len: usize) -> Obj {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    Obj {
        key: key.into(),
        data: Bytes::from(v),
        content_type: None,
        meta: Vec::new(),
    }
}

/// moto as the target, a metering proxy before `src`, and a job sending
/// 5 MiB parts one at a time, at most 20 MiB/s: a part takes ≥ 250 ms, so
/// the stop sent once two parts are recorded arrives before the last one
/// even when the event saying so is late (the whole object, unpaced, went
/// through in 0.3 s on a loaded machine, the stop after it).
fn one_part_at_a_time(src: &Server) -> Result<(Server, Meter, StoreJob)> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let proxy = Meter::start(&src.endpoint)?;
    let job = StoreJob::through(
        src,
        &proxy.endpoint,
        &moto,
        &moto.endpoint,
        "part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n[transfer]\nparts-in-flight = 1\nbandwidth-limit = \"20MiB\"\n",
        1,
    )?;
    Ok((moto, proxy, job))
}

async fn paused_with_altered_parts(source: Kind, dialect: Dialect) -> Result<Paused> {
    let obj = random_obj("big/altered.bin", 77, 4 * PART + 333);
    let objs = vec![obj];
    let src = Server::start(source)?;
    src.create_bucket("src")?;
    // Written in one request: S3 gives it an MD5 ETag, Azure a Content-MD5.
    dataset::seed(src.client("src")?.as_ref(), &objs).await?;
    let (moto, proxy, job) = one_part_at_a_time(&src)?;

    // Every object GET altered in one byte; stopped after two parts.
    proxy.break_requests(Some(
        NetFaults::new(5, 1.0, &[Fault::Alter], dialect).only(&["GET"]),
    ));
    stop_after_two_parts(&job)?;
    ensure!(
        moto.open_uploads("dst")?.len() == 1,
        "the paused upload stays open"
    );
    // Faults off: the rest of the parts read right, the recorded ones not.
    proxy.break_requests(None);
    Ok(Paused {
        objs,
        proxy,
        job,
        moto,
        _src: src,
    })
}

async fn altered_before_a_stop(source: Kind, dialect: Dialect) -> Result<()> {
    // Every field bound: the servers and the proxy live to the end.
    let Paused {
        objs,
        proxy: _proxy,
        job,
        moto,
        _src,
    } = paused_with_altered_parts(source, dialect).await?;
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

/// Parts recorded without the running MD5's state (a build before it, or
/// `check-md5` turned on since) cannot be checked against the source's
/// MD5: the upload is never completed from them, the object starts over
/// and is read whole (the recorded parts here hold altered bytes).
#[tokio::test(flavor = "multi_thread")]
async fn parts_recorded_without_the_md5_state_are_not_completed() -> Result<()> {
    let p = paused_with_altered_parts(Kind::Moto, Dialect::S3).await?;
    {
        let m = Manifest::open(&p.job.state)?;
        for (i, part) in m.upload_parts("big/altered.bin")? {
            let part = PartDone {
                md5_after: None,
                ..part
            };
            m.record_part("big/altered.bin", i, &part)?;
        }
    }
    let second = p.job.run()?;
    ensure!(
        second.code == 0 && second.stat("uploads_restarted")? >= 1,
        "exit {}, restarted {:?}\n{}",
        second.code,
        second.stat("uploads_restarted").ok(),
        second.stderr
    );
    ensure!(p.moto.open_uploads("dst")?.is_empty(), "uploads left open");
    dataset::verify(
        p.moto.client("dst")?.as_ref(),
        &p.objs,
        Checks::BYTES,
        Some(&p.job.state),
    )
    .await?;
    Ok(())
}

/// Six parts, four in flight; the target holds back the upload of part 1
/// while parts 0, 2, 3… are confirmed and recorded, and the run is killed:
/// a gap. The next run goes on from part 0's MD5 state and reads parts 1–5
/// again — the held ones only to hash them, their BLAKE3 checked against
/// what was sent. `alter_part_2`: the first run read part 2 altered (and
/// sent it so): the resume must find the part sent differs from the
/// source and drop the upload, never complete it.
async fn gap_before_held_parts(alter_part_2: bool) -> Result<()> {
    let obj = random_obj("big/gap.bin", 78, 5 * PART + 333);
    let total = obj.data.len() as u64;
    let objs = vec![obj];
    let src = Server::start(Kind::Moto)?;
    src.create_bucket("src")?;
    dataset::seed(src.client("src")?.as_ref(), &objs).await?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let src_proxy = Meter::start(&src.endpoint)?;
    let dst_proxy = Meter::start(&moto.endpoint)?;
    let job = StoreJob::through(
        &src,
        &src_proxy.endpoint,
        &moto,
        &dst_proxy.endpoint,
        "part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n[transfer]\nparts-in-flight = 4\n",
        1,
    )?;
    // S3 numbers parts from 1: part 1 is partNumber=2.
    dst_proxy.hold_matching(Some("partNumber=2"));
    if alter_part_2 {
        src_proxy.alter_range(Some(&format!("bytes={}-", 2 * PART)));
    }
    ensure!(
        job.run_and_kill_when(3, || dst_proxy.wait_held(1, Duration::from_secs(30)))?,
        "the first run ended before it could be killed"
    );
    dst_proxy.hold_matching(None);
    src_proxy.alter_range(None);
    let recorded = passeur_core::manifest::Manifest::open_read_only(&job.state)?
        .upload_parts("big/gap.bin")?;
    ensure!(
        !recorded.contains_key(&1) && recorded.contains_key(&2),
        "no gap recorded: parts {:?}",
        recorded.keys().collect::<Vec<_>>()
    );

    let before = src_proxy.object_bytes();
    let second = job.run()?;
    let reread = src_proxy.object_bytes() - before;
    if alter_part_2 {
        ensure!(
            second.code == 1
                && second.stat("failed")? == 1
                && second.stderr.contains("part 2 read again differs"),
            "a part sent altered must fail the resume: exit {}\n{}\n{}",
            second.code,
            second.stdout,
            second.stderr
        );
        let third = job.run()?;
        ensure!(
            third.code == 0,
            "third run: exit {}\n{}",
            third.code,
            third.stdout
        );
    } else {
        ensure!(
            second.code == 0 && second.stat("uploads_resumed")? == 1,
            "second run: exit {}\n{}\n{}",
            second.code,
            second.stdout,
            second.stderr
        );
        // Parts 1–5 read once more; part 0 not.
        ensure!(
            reread == total - PART as u64,
            "the resume read {reread} bytes from the source, not the {} after part 0",
            total - PART as u64
        );
    }
    ensure!(moto.open_uploads("dst")?.is_empty(), "uploads left open");
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
async fn held_parts_after_a_gap_carry_the_md5_on() -> Result<()> {
    gap_before_held_parts(false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_part_sent_altered_fails_the_resume() -> Result<()> {
    gap_before_held_parts(true).await
}

/// An Azure blob written as a block list has no Content-MD5: nothing to
/// check, so no MD5 runs and its parts are recorded without a state. A
/// stopped upload of it must then go on where it stopped (a HEAD shows no
/// Content-MD5), not start over for the missing state; the bytes read on
/// resume are only the missing parts, and the target holds the source's.
#[tokio::test(flavor = "multi_thread")]
async fn azure_blob_without_content_md5_resumes_where_it_stopped() -> Result<()> {
    let obj = random_obj("big/blocks.bin", 78, 4 * PART + 333);
    let src = Server::start(Kind::Azurite)?;
    src.create_bucket("src")?;
    let client = src.client("src")?;
    let path = object_store::path::Path::from(obj.key.as_str());
    let mut w =
        object_store::WriteMultipart::new_with_chunk_size(client.put_multipart(&path).await?, PART);
    w.write(&obj.data);
    w.finish().await?;
    let (moto, proxy, job) = one_part_at_a_time(&src)?;
    stop_after_two_parts(&job)?;
    let read_before = proxy.object_bytes();
    let second = job.run()?;
    ensure!(
        second.code == 0
            && second.stat("uploads_resumed")? == 1
            && second.stat("uploads_restarted")? == 0,
        "the upload must go on where it stopped: exit {}\n{}\n{}",
        second.code,
        second.stdout,
        second.stderr
    );
    let reread = proxy.object_bytes() - read_before;
    ensure!(
        reread < obj.data.len() as u64,
        "the resume read {reread} bytes of a {}-byte object: it started over",
        obj.data.len()
    );
    ensure!(moto.open_uploads("dst")?.is_empty(), "uploads left open");
    dataset::verify(
        moto.client("dst")?.as_ref(),
        &[obj],
        Checks::BYTES,
        Some(&job.state),
    )
    .await?;
    Ok(())
}
