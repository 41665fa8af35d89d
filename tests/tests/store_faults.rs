//! Store-level faults, in-process (the fault campaign's part without a
//! network): a listing that answers a page twice, a server-side copy that
//! "succeeds" without copying, `NoSuchUpload` for an upload that existed,
//! an abort of a resumable upload the target refuses, a source HEAD refused
//! when a pass checks its unfinished uploads, a completion the target
//! applied but answered with an error (random failures of every call,
//! seeded, are in `engine.rs`). Every scenario ends with the same
//! check: the target read back directly equals the source byte for byte,
//! and no pass claimed complete before it did.

use anyhow::{Context, Result, bail, ensure};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use passeur_core::base::error::FailureKind;
use passeur_core::sync::deletes::DeletePolicy;
use passeur_tests::dataset::body;
use passeur_tests::faulty::{Failure, Fault, Op};
use passeur_tests::rig::{PART, Rig};

fn deleting() -> passeur_core::sync::PassOptions {
    let mut opts = Rig::options();
    opts.deletes = DeletePolicy {
        enabled: true,
        max_fraction: 1.0,
        trash_prefix: None,
    };
    opts
}

/// A page answered twice repeats keys: they fail by name, the pass is not
/// complete, and nothing is deleted on its ground; healed, the next pass
/// deletes what the source no longer holds.
#[tokio::test]
async fn a_listing_page_answered_twice_deletes_nothing() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    ensure!(rig.pass(&deleting()).await?.complete());
    rig.src.delete(&Path::parse("small")?).await?;
    rig.src_faults.rule(Op::List, 1, None, Fault::Repeat(2));
    let before = rig.dst_faults.calls(Op::Delete);
    let pass = rig.pass(&deleting()).await?;
    ensure!(!pass.complete(), "a repeated page said complete");
    ensure!(
        !pass.failures.is_empty() && pass.deletes_refused.is_some(),
        "failures {:?}, deletes refused {:?}",
        pass.failures,
        pass.deletes_refused
    );
    ensure!(
        rig.dst_faults.calls(Op::Delete) == before,
        "a delete was sent"
    );
    ensure!(
        rig.dst.head(&Path::parse("small")?).await.is_ok(),
        "small deleted"
    );
    rig.src_faults.heal();
    let healed = rig.pass(&deleting()).await?;
    ensure!(healed.complete(), "{:?}", healed.failures);
    rig.assert_replica().await
}

/// A server-side copy (dedup) that reports success without copying: the
/// copy is checked at the target after it is made, so the key is uploaded
/// (or fails) — never recorded as there while it is not.
#[tokio::test]
async fn a_copy_that_does_not_copy_is_never_recorded() -> Result<()> {
    let rig = Rig::new(true)?;
    let small = body("held", 1000, 1);
    let large = body("held-large", 3 * PART + 9, 1);
    rig.put("orig/small", small.clone()).await?;
    rig.put("orig/large", large.clone()).await?;
    ensure!(rig.pass(&Rig::options()).await?.complete());
    rig.put("copy/small", small).await?;
    rig.put("copy/large", large).await?;
    rig.dst_faults.rule(Op::Copy, 1, None, Fault::Skip);
    rig.dst_faults.rule(Op::Copy, 2, None, Fault::Skip);
    let pass = rig.pass(&Rig::options()).await?;
    if pass.complete() {
        rig.assert_replica().await?;
    }
    ensure!(
        rig.dst_faults.injected() >= 1,
        "no copy was attempted: the test shows nothing"
    );
    let next = rig.pass(&Rig::options()).await?;
    ensure!(next.complete(), "{:?}", next.failures);
    rig.assert_replica().await
}

/// The target forgets a resumable upload passeur recorded (`NoSuchUpload`
/// on completion, as after a lifecycle rule): the object is not recorded,
/// and the next pass uploads it afresh.
#[tokio::test]
async fn no_such_upload_at_completion_restarts_the_upload() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    rig.dst_faults.rule(
        Op::Complete,
        1,
        Some("unaligned"),
        Fault::Fail(Failure::NotFound),
    );
    let first = rig.pass(&Rig::options()).await?;
    if first.complete() {
        rig.assert_replica().await?;
    } else {
        ensure!(
            first.failures.iter().any(|f| f.key == "multi/unaligned"),
            "{:?}",
            first.failures
        );
    }
    let second = rig.pass(&Rig::options()).await?;
    ensure!(second.complete(), "{:?}", second.failures);
    rig.assert_replica().await
}

/// The multipart object of the rig's shapes (four parts, the last short).
const MULTI: &str = "multi/unaligned";

/// Leave a recorded, unfinished upload of each of `keys` (multipart
/// objects): the second part of each fails, so the object fails and its
/// upload id and first part stay in the state directory.
async fn leave_uploads(rig: &Rig, keys: &[&str]) -> Result<()> {
    for k in keys {
        rig.dst_faults
            .rule(Op::PutPart, 2, Some(k), Fault::Fail(Failure::Transient));
    }
    let pass = rig.pass(&Rig::options()).await?;
    rig.dst_faults.heal();
    ensure!(!pass.complete(), "no part failed: the test shows nothing");
    let mut left: Vec<String> = rig
        .manifest()?
        .uploads()?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    left.sort();
    ensure!(left == keys, "uploads left {left:?}, wanted {keys:?}");
    Ok(())
}

/// Bug 6. Unfinished uploads whose source changed or is gone are aborted
/// when a pass starts; the target refuses the aborts (s3s-fs answers 403 to
/// an upload id it no longer knows). The uploads are forgotten all the
/// same, the pass goes on and is complete, the changed object is uploaded
/// afresh, and the next pass is complete too.
#[tokio::test]
async fn a_refused_abort_at_pass_start_drops_the_upload_and_the_pass_goes_on() -> Result<()> {
    let size = 3 * PART + 777;
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    rig.put("changed/big", body("changed/big", size, 1)).await?;
    rig.put("gone/big", body("gone/big", size, 1)).await?;
    leave_uploads(&rig, &["changed/big", "gone/big"]).await?;
    rig.put("changed/big", body("changed/big", size, 2)).await?;
    rig.src.delete(&Path::parse("gone/big")?).await?;
    rig.dst_faults
        .rule(Op::Abort, 1, None, Fault::Fail(Failure::Denied))
        .rule(Op::Abort, 2, None, Fault::Fail(Failure::Denied));
    let (aborts, creates) = (
        rig.dst_faults.calls(Op::Abort),
        rig.dst_faults.calls(Op::CreateUpload),
    );
    let pass = match rig.pass(&Rig::options()).await {
        Ok(p) => p,
        Err(e) => bail!("a refused abort stopped the pass: {e:#}"),
    };
    ensure!(
        rig.dst_faults.calls(Op::Abort) - aborts >= 2 && rig.dst_faults.injected() >= 2,
        "the aborts were not tried: the test shows nothing"
    );
    ensure!(pass.complete(), "pass not complete: {:?}", pass.failures);
    ensure!(
        rig.dst_faults.calls(Op::CreateUpload) > creates,
        "changed/big was not uploaded afresh"
    );
    let left = rig.manifest()?.uploads()?;
    ensure!(left.is_empty(), "uploads still recorded: {left:?}");
    rig.assert_replica().await?;
    let next = rig.pass(&Rig::options()).await?;
    ensure!(next.complete(), "next pass: {:?}", next.failures);
    rig.assert_replica().await
}

/// Bug 6, within an object: its upload vanished at the target (a part
/// meets NoSuchUpload) and the abort before starting over is refused. The
/// upload is forgotten and the object starts over in the same pass.
#[tokio::test]
async fn a_refused_abort_of_a_vanished_upload_still_starts_the_object_over() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    rig.dst_faults
        .rule(
            Op::PutPart,
            2,
            Some("unaligned"),
            Fault::Fail(Failure::NotFound),
        )
        .rule(
            Op::Abort,
            1,
            Some("unaligned"),
            Fault::Fail(Failure::Denied),
        );
    let pass = rig.pass(&Rig::options()).await?;
    ensure!(
        rig.dst_faults.injected() == 2,
        "{} faults injected, wanted 2: the test shows nothing",
        rig.dst_faults.injected()
    );
    ensure!(pass.complete(), "pass not complete: {:?}", pass.failures);
    let left = rig.manifest()?.uploads()?;
    ensure!(left.is_empty(), "uploads still recorded: {left:?}");
    rig.assert_replica().await
}

/// Bug 8. At the start of a pass the source HEAD of an unfinished upload's
/// key is refused (403; as well a transient error outlasting the retries):
/// not a reason to stop the pass, nor every later one. The upload is left
/// recorded and untouched (not aborted), the pass lists everything and
/// every other object reaches the target; the key, tried when the listing
/// reaches it, fails by name (denied). Healed, the next pass resumes the
/// upload (no new upload, no part sent twice) and completes.
#[tokio::test]
async fn a_source_head_refused_at_pass_start_fails_only_its_key() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    leave_uploads(&rig, &[MULTI]).await?;
    let m = rig.manifest()?;
    let left = m.upload(MULTI)?.context("no upload left")?;
    let missing = left.parts() - m.upload_parts(MULTI)?.len() as u64;
    drop(m);
    // The pass has more to do than the failing key: a new and a changed
    // object.
    rig.put("after/new", body("after/new", 1000, 1)).await?;
    rig.put("small", body("small", 100, 2)).await?;
    // Every source HEAD of the key is refused while the fault lasts.
    for nth in 1..=4 {
        rig.src_faults
            .rule(Op::Head, nth, Some(MULTI), Fault::Fail(Failure::Denied));
    }
    let (heads, aborts, creates, parts) = (
        rig.src_faults.calls(Op::Head),
        rig.dst_faults.calls(Op::Abort),
        rig.dst_faults.calls(Op::CreateUpload),
        rig.dst_faults.calls(Op::PutPart),
    );
    let pass = match rig.pass(&Rig::options()).await {
        Ok(p) => p,
        Err(e) => bail!("a refused source HEAD at pass start stopped the pass: {e:#}"),
    };
    ensure!(
        rig.src_faults.calls(Op::Head) > heads && rig.src_faults.injected() >= 1,
        "the source of the upload was not checked: the test shows nothing"
    );
    ensure!(!pass.complete(), "a refused key said complete");
    ensure!(
        pass.listing_complete && pass.listing_error.is_none(),
        "the listing did not cover the key space: {:?}",
        pass.listing_error
    );
    let failure = pass
        .failures
        .iter()
        .find(|f| f.key == MULTI)
        .with_context(|| format!("{MULTI} did not fail by name: {:?}", pass.failures))?;
    ensure!(
        failure.kind == FailureKind::Denied,
        "failure kind {:?}, wanted denied: {}",
        failure.kind,
        failure.reason
    );
    ensure!(
        pass.failures.len() == 1 && pass.stats.failed == 1,
        "other keys failed: {:?}",
        pass.failures
    );
    ensure!(
        rig.dst_faults.calls(Op::Abort) == aborts
            && rig.dst_faults.calls(Op::CreateUpload) == creates,
        "the upload was aborted or started over"
    );
    let m = rig.manifest()?;
    let kept = m.upload(MULTI)?.context("the upload was forgotten")?;
    ensure!(
        kept.upload_id == left.upload_id,
        "upload {} recorded, {} left",
        kept.upload_id,
        left.upload_id
    );
    drop(m);
    ensure!(
        rig.dst.head(&Path::parse(MULTI)?).await.is_err(),
        "{MULTI} at the target before its source was checked"
    );
    // Every other object, read back directly, equals the source.
    let mut listed = rig.src.list(None);
    let mut others = 0;
    while let Some(meta) = futures::StreamExt::next(&mut listed).await {
        let loc = meta?.location;
        if loc.as_ref() == MULTI {
            continue;
        }
        let want = rig.src.get(&loc).await?.bytes().await?;
        let got = rig
            .dst
            .get(&loc)
            .await
            .with_context(|| format!("{loc} not at the target"))?;
        let got = got.bytes().await?;
        ensure!(
            blake3::hash(&want) == blake3::hash(&got),
            "{loc}: target BLAKE3 {} differs from source {}",
            blake3::hash(&got),
            blake3::hash(&want)
        );
        others += 1;
    }
    ensure!(others == 5, "{others} other objects checked, wanted 5");
    rig.src_faults.heal();
    let next = rig.pass(&Rig::options()).await?;
    ensure!(next.complete(), "next pass: {:?}", next.failures);
    rig.assert_replica().await?;
    recorded_as_held(&rig, MULTI).await?;
    ensure!(
        rig.manifest()?.uploads()?.is_empty(),
        "uploads still recorded"
    );
    let sent = rig.dst_faults.calls(Op::PutPart) - parts;
    ensure!(
        next.stats.uploads_resumed >= 1
            && next.stats.uploads_restarted == 0
            && rig.dst_faults.calls(Op::CreateUpload) == creates
            && sent == missing,
        "not resumed: {} resumed, {} restarted, {} uploads created, {sent} parts sent for {missing} missing",
        next.stats.uploads_resumed,
        next.stats.uploads_restarted,
        rig.dst_faults.calls(Op::CreateUpload) - creates
    );
    Ok(())
}

/// What passeur recorded for `key` describes the bytes the target holds,
/// read back directly.
async fn recorded_as_held(rig: &Rig, key: &str) -> Result<()> {
    let held = rig.dst.get(&Path::parse(key)?).await?.bytes().await?;
    let rec = rig
        .manifest()?
        .object(key)?
        .with_context(|| format!("{key} not recorded"))?;
    ensure!(
        rec.blake3.as_bytes() == blake3::hash(&held).as_bytes()
            && rec.source.size == held.len() as u64,
        "{key}: recorded BLAKE3 {} of {} bytes, the target holds {} of {} bytes",
        rec.blake3,
        rec.source.size,
        blake3::hash(&held),
        held.len()
    );
    Ok(())
}

/// Bug 7. CompleteMultipartUpload is applied, its answer lost, and the
/// client's retry refused (403: the upload is no longer known). Read back,
/// the target holds exactly the object: it is recorded in this pass, and
/// the next pass finds it unchanged.
#[tokio::test]
async fn a_completion_applied_but_answered_with_an_error_is_read_back_and_recorded() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    rig.dst_faults.rule(
        Op::Complete,
        1,
        Some("unaligned"),
        Fault::Applied(Failure::Denied),
    );
    let reads = rig.dst_faults.calls(Op::Get);
    let pass = rig.pass(&Rig::options()).await?;
    ensure!(
        rig.dst_faults.injected() == 1,
        "the completion was not answered with an error: the test shows nothing"
    );
    ensure!(
        rig.dst_faults.calls(Op::Get) - reads >= 2,
        "the target was not read back (a HEAD, then a GET)"
    );
    ensure!(
        pass.complete(),
        "pass after an applied completion not complete: {:?}",
        pass.failures
    );
    rig.assert_replica().await?;
    recorded_as_held(&rig, MULTI).await?;
    let left = rig.manifest()?.uploads()?;
    ensure!(left.is_empty(), "uploads still recorded: {left:?}");
    let (creates, parts) = (
        rig.dst_faults.calls(Op::CreateUpload),
        rig.dst_faults.calls(Op::PutPart),
    );
    let next = rig.pass(&Rig::options()).await?;
    ensure!(next.complete(), "next pass: {:?}", next.failures);
    ensure!(
        next.stats.copied == 0
            && rig.dst_faults.calls(Op::CreateUpload) == creates
            && rig.dst_faults.calls(Op::PutPart) == parts,
        "the next pass uploaded again ({} copied)",
        next.stats.copied
    );
    rig.assert_replica().await
}

/// Bug 7, the other way: the completion is answered with an error and was
/// not applied. The target, read back, does not hold the object: nothing is
/// recorded, the upload is dropped, the object fails this pass (transient)
/// and the next pass uploads it afresh.
#[tokio::test]
async fn a_completion_refused_and_not_applied_fails_the_object_and_starts_over() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    rig.dst_faults.rule(
        Op::Complete,
        1,
        Some("unaligned"),
        Fault::Fail(Failure::Denied),
    );
    let pass = rig.pass(&Rig::options()).await?;
    ensure!(!pass.complete(), "a refused completion said complete");
    let failure = pass
        .failures
        .iter()
        .find(|f| f.key == MULTI)
        .with_context(|| format!("{MULTI} did not fail: {:?}", pass.failures))?;
    ensure!(
        failure.kind == FailureKind::Transient,
        "failure kind {:?}, wanted transient: {}",
        failure.kind,
        failure.reason
    );
    let m = rig.manifest()?;
    ensure!(m.object(MULTI)?.is_none(), "{MULTI} recorded, never held");
    let left = m.uploads()?;
    ensure!(left.is_empty(), "uploads still recorded: {left:?}");
    drop(m);
    ensure!(
        rig.dst.head(&Path::parse(MULTI)?).await.is_err(),
        "{MULTI} at the target: the test shows nothing"
    );
    let creates = rig.dst_faults.calls(Op::CreateUpload);
    let next = rig.pass(&Rig::options()).await?;
    ensure!(next.complete(), "next pass: {:?}", next.failures);
    ensure!(
        rig.dst_faults.calls(Op::CreateUpload) > creates,
        "{MULTI} was not uploaded afresh"
    );
    rig.assert_replica().await?;
    recorded_as_held(&rig, MULTI).await
}

/// Bug 7, never record what was not verified: the completion is applied
/// and answered with an error, and the read-back returns other bytes (one
/// altered on the way). The object is not recorded, its upload is dropped,
/// and the next pass starts it over and completes.
#[tokio::test]
async fn a_completion_whose_read_back_differs_is_never_recorded() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    rig.dst_faults.rule(
        Op::Complete,
        1,
        Some("unaligned"),
        Fault::Applied(Failure::Transient),
    );
    // Every read of the object at the target (a HEAD, then the GET) alters
    // one byte.
    for nth in 1..=4 {
        rig.dst_faults.rule(
            Op::Get,
            nth,
            Some("unaligned"),
            Fault::Alter(PART as usize + 5),
        );
    }
    let pass = rig.pass(&Rig::options()).await?;
    ensure!(!pass.complete(), "an unverified completion said complete");
    ensure!(
        pass.failures
            .iter()
            .any(|f| f.key == MULTI && f.kind == FailureKind::Transient),
        "{MULTI} did not fail as transient: {:?}",
        pass.failures
    );
    let m = rig.manifest()?;
    ensure!(
        m.object(MULTI)?.is_none(),
        "{MULTI} recorded, never verified"
    );
    let left = m.uploads()?;
    ensure!(left.is_empty(), "uploads still recorded: {left:?}");
    drop(m);
    rig.dst_faults.heal();
    let next = rig.pass(&Rig::options()).await?;
    ensure!(next.complete(), "next pass: {:?}", next.failures);
    rig.assert_replica().await?;
    recorded_as_held(&rig, MULTI).await
}

/// A probe's listing that fails once with an error that can pass (a
/// connection reset on it, a 5xx) is asked again: the pass starts instead
/// of ending as "unreachable" (exit 69), completes, and the target read
/// back directly equals the source.
#[tokio::test]
async fn a_probe_failing_once_is_asked_again_and_the_pass_completes() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    for faults in [&rig.src_faults, &rig.dst_faults] {
        faults.rule(Op::ListDelimited, 1, None, Fault::Fail(Failure::Transient));
    }
    let pass = rig
        .pass(&Rig::options())
        .await
        .context("one transient failure of a probe ended the pass")?;
    ensure!(pass.complete(), "{:?}", pass.failures);
    for (name, faults) in [("source", &rig.src_faults), ("target", &rig.dst_faults)] {
        let probes = faults.calls(Op::ListDelimited);
        ensure!(probes == 2, "{name} probed {probes} times, want 2");
    }
    rig.assert_replica().await
}

/// A probe asks again only while its failure can pass: refused
/// credentials and a missing bucket are answers, given after one listing;
/// a failure that persists is "unreachable" after the first listing and
/// three more (0.5 s, 1 s and 2 s apart).
#[tokio::test]
async fn a_probe_asks_again_only_while_the_failure_can_pass() -> Result<()> {
    use passeur_core::base::error::Error;
    async fn probe_error(rig: &Rig) -> Result<Error> {
        match rig.pass(&Rig::options()).await {
            Ok(pass) => bail!("the pass ran: {pass:?}"),
            Err(e) => e
                .downcast::<Error>()
                .map_err(|e| anyhow::anyhow!("not a core error: {e:#}")),
        }
    }
    for failure in [Failure::Denied, Failure::NotFound] {
        let rig = Rig::new(true)?;
        rig.seed(1).await?;
        rig.src_faults
            .rule(Op::ListDelimited, 1, None, Fault::Fail(failure));
        let err = probe_error(&rig).await?;
        ensure!(
            matches!(
                (failure, &err),
                (Failure::Denied, Error::AccessDenied { .. })
                    | (Failure::NotFound, Error::MissingContainer { .. })
            ),
            "{failure:?}: {err:?}"
        );
        let probes = rig.src_faults.calls(Op::ListDelimited);
        ensure!(probes == 1, "{failure:?} asked {probes} times, want once");
    }
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    for nth in 1..=4 {
        rig.src_faults.rule(
            Op::ListDelimited,
            nth,
            None,
            Fault::Fail(Failure::Transient),
        );
    }
    let err = probe_error(&rig).await?;
    ensure!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let probes = rig.src_faults.calls(Op::ListDelimited);
    ensure!(probes == 4, "asked {probes} times, want 4");
    ensure!(
        rig.dst_faults.calls(Op::ListDelimited) == 0,
        "the target was probed after the source failed"
    );
    Ok(())
}
