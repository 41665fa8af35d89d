//! Store-level faults, in-process (the fault campaign's part without a
//! network): a listing that answers a page twice, a server-side copy that
//! "succeeds" without copying, `NoSuchUpload` for an upload that existed,
//! (random failures of every call, seeded, are in `engine.rs`). Every scenario
//! ends with the same check: the target read back directly equals the
//! source byte for byte, and no pass claimed complete before it did.

use anyhow::{Context, Result, bail, ensure};
use object_store::ObjectStoreExt;
use object_store::path::Path;
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
