//! Store-level faults, in-process (the fault campaign's part without a
//! network): a listing that answers a page twice, a server-side copy that
//! "succeeds" without copying, `NoSuchUpload` for an upload that existed,
//! (random failures of every call, seeded, are in `engine.rs`). Every scenario
//! ends with the same check: the target read back directly equals the
//! source byte for byte, and no pass claimed complete before it did.

use anyhow::{Result, ensure};
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
