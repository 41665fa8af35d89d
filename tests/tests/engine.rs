//! The engine in-process: `run_pass` and `verify` driven on object_store's
//! `InMemory` stores, wrapped in a fault-injecting store ([`Faulty`]), with
//! every object shape (empty, small, exactly one part, unaligned multipart)
//! and at least one fault per behaviour. The target is read back with its
//! own client (the `InMemory` behind the wrapper), never through passeur's
//! summary. No server, no subprocess: the whole file runs in seconds.

use anyhow::{Context, Result, ensure};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use passeur_core::base::error::FailureKind;
use passeur_core::manifest::Manifest;
use passeur_core::sync::deletes::DeletePolicy;
use passeur_core::verify::{VerifyOptions, verify};
use passeur_tests::dataset::body;
use passeur_tests::faulty::{Failure, Fault, Op};
use passeur_tests::rig::{PART, Rig, SHAPES};

/// A failed PUT and a failed part fail their objects by name, never
/// complete the pass; the next pass finishes them, every shape byte for
/// byte.
#[tokio::test]
async fn failed_writes_fail_their_objects_and_the_next_pass_finishes_them() -> Result<()> {
    for resumable in [false, true] {
        let rig = Rig::new(resumable)?;
        rig.seed(1).await?;
        rig.dst_faults
            .rule(Op::Put, 1, Some("small"), Fault::Fail(Failure::Transient))
            .rule(
                Op::Put,
                1,
                Some("one-part"),
                Fault::Fail(Failure::Precondition),
            )
            .rule(
                Op::PutPart,
                2,
                Some("unaligned"),
                Fault::Fail(Failure::Denied),
            );
        let first = rig.pass(&Rig::options()).await?;
        ensure!(
            !first.complete(),
            "a pass with failed objects said complete"
        );
        // Each failure is named with the kind of the store's error.
        let mut failed: Vec<(&str, FailureKind)> = first
            .failures
            .iter()
            .map(|f| (f.key.as_str(), f.kind))
            .collect();
        failed.sort_by_key(|(k, _)| *k);
        ensure!(
            failed
                == [
                    ("multi/unaligned", FailureKind::Denied),
                    ("one-part", FailureKind::Precondition),
                    ("small", FailureKind::Transient),
                ],
            "resumable={resumable}: failures {failed:?}"
        );
        ensure!(
            rig.dst_faults.injected() == 3,
            "faults injected: {}",
            rig.dst_faults.injected()
        );
        // No partial object is visible at the target.
        for k in ["small", "one-part", "multi/unaligned"] {
            ensure!(
                rig.dst.head(&Path::parse(k)?).await.is_err(),
                "resumable={resumable}: {k} visible at the target after its write failed"
            );
        }
        let second = rig.pass(&Rig::options()).await?;
        ensure!(second.complete(), "second pass: {:?}", second.failures);
        rig.assert_replica().await?;
    }
    Ok(())
}

/// A resumable upload whose part failed continues where it stopped: the
/// next pass sends only the parts the target does not hold.
#[tokio::test]
async fn a_resumed_upload_sends_only_the_missing_parts() -> Result<()> {
    let rig = Rig::new(true)?;
    let key = "big";
    rig.put(key, body(key, 10 * PART + 5, 1)).await?;
    rig.dst_faults
        .rule(Op::PutPart, 6, None, Fault::Fail(Failure::Transient));
    let first = rig.pass(&Rig::options()).await?;
    ensure!(
        !first.complete(),
        "the pass with a failed part said complete"
    );
    let parts_first = rig.dst_faults.calls(Op::PutPart);
    rig.dst_faults.heal();
    let second = rig.pass(&Rig::options()).await?;
    ensure!(second.complete(), "second pass: {:?}", second.failures);
    let parts_second = rig.dst_faults.calls(Op::PutPart) - parts_first;
    ensure!(
        second.stats.uploads_resumed == 1,
        "uploads resumed: {}",
        second.stats.uploads_resumed
    );
    // 11 parts in all; the first pass confirmed at least the first 5.
    ensure!(
        parts_second <= 6,
        "the resumed upload sent {parts_second} parts of 11"
    );
    rig.assert_replica().await
}

/// A source read cut short is never recorded or left at the target; once
/// the source reads whole again, the object arrives.
#[tokio::test]
async fn a_short_source_read_fails_the_object_and_nothing_is_recorded() -> Result<()> {
    for resumable in [false, true] {
        let rig = Rig::new(resumable)?;
        rig.seed(1).await?;
        rig.src_faults
            .rule(Op::Get, 1, Some("small"), Fault::Short(10));
        rig.src_faults
            .rule(Op::Get, 2, Some("unaligned"), Fault::Short(100));
        let first = rig.pass(&Rig::options()).await?;
        let failed: Vec<&str> = first.failures.iter().map(|f| f.key.as_str()).collect();
        ensure!(
            failed.contains(&"small"),
            "resumable={resumable}: failures named {failed:?}"
        );
        // A multipart upload (recorded or not: one part pipeline) starts
        // over from the first part, counted as restarted, and finishes in
        // the same pass; a single PUT fails its object for the next pass.
        ensure!(
            first.stats.uploads_restarted == 1 && !failed.contains(&"multi/unaligned"),
            "resumable={resumable}: restarted {}, failures {failed:?}",
            first.stats.uploads_restarted
        );
        for k in &failed {
            ensure!(
                rig.dst.head(&Path::parse(*k)?).await.is_err(),
                "a short read left {k} at the target"
            );
        }
        let second = rig.pass(&Rig::options()).await?;
        ensure!(second.complete(), "second pass: {:?}", second.failures);
        rig.assert_replica().await?;
    }
    Ok(())
}

/// An object that changes at the source is read again on the next pass
/// (every shape), and the old bytes never stay at the target.
#[tokio::test]
async fn a_changed_source_is_copied_again() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    ensure!(rig.pass(&Rig::options()).await?.complete());
    rig.seed(2).await?;
    let second = rig.pass(&Rig::options()).await?;
    ensure!(second.complete(), "{:?}", second.failures);
    // Every object is a new version (a new ETag), the empty one too.
    ensure!(
        second.stats.copied == SHAPES.len() as u64,
        "copied {} of {}",
        second.stats.copied,
        SHAPES.len()
    );
    rig.assert_replica().await
}

/// Deletes follow the source; a delete the target refuses fails by name,
/// the others go on, and the next pass deletes it.
#[tokio::test]
async fn deletes_follow_the_source_and_a_refused_one_is_retried() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    for i in 0..20 {
        rig.put(&format!("keep/{i:02}"), body("keep", 10, i))
            .await?;
    }
    ensure!(rig.pass(&Rig::options()).await?.complete());
    rig.src.delete(&Path::parse("small")?).await?;
    rig.src.delete(&Path::parse("two-parts")?).await?;
    rig.dst_faults
        .rule(Op::Delete, 1, Some("small"), Fault::Fail(Failure::Denied));
    let mut opts = Rig::options();
    opts.deletes = DeletePolicy {
        enabled: true,
        max_fraction: 0.5,
        trash_prefix: None,
    };
    let first = rig.pass(&opts).await?;
    ensure!(!first.complete(), "a refused delete left the pass complete");
    ensure!(
        first
            .failures
            .iter()
            .any(|f| f.key == "small" && f.kind == FailureKind::Denied),
        "failures: {:?}",
        first.failures
    );
    ensure!(
        rig.dst.head(&Path::parse("two-parts")?).await.is_err(),
        "two-parts not deleted"
    );
    ensure!(
        rig.dst.head(&Path::parse("small")?).await.is_ok(),
        "small deleted despite the refusal"
    );
    let second = rig.pass(&opts).await?;
    ensure!(second.complete(), "{:?}", second.failures);
    rig.assert_replica().await
}

/// A listing out of key order is a failure by name and no ground for a
/// delete: nothing at the target is deleted because of it.
#[tokio::test]
async fn a_listing_out_of_order_deletes_nothing() -> Result<()> {
    let rig = Rig::new(false)?;
    rig.seed(1).await?;
    ensure!(rig.pass(&Rig::options()).await?.complete());
    rig.src_faults.rule(Op::List, 1, None, Fault::Reorder);
    let before = rig.dst_faults.calls(Op::Delete);
    let mut opts = Rig::options();
    opts.deletes = DeletePolicy {
        enabled: true,
        max_fraction: 1.0,
        trash_prefix: None,
    };
    let pass = rig.pass(&opts).await?;
    ensure!(!pass.complete(), "a listing out of order said complete");
    ensure!(
        !pass.failures.is_empty() && pass.deletes_refused.is_some(),
        "failures {:?}, deletes refused: {:?}",
        pass.failures,
        pass.deletes_refused
    );
    ensure!(
        rig.dst_faults.calls(Op::Delete) == before,
        "a delete was sent"
    );
    rig.assert_replica().await
}

/// Deep verification reads the target back: a target read altered in one
/// byte is a mismatch, named; fast verification passes a true replica.
#[tokio::test]
async fn deep_verify_names_an_altered_object() -> Result<()> {
    let rig = Rig::new(true)?;
    rig.seed(1).await?;
    ensure!(rig.pass(&Rig::options()).await?.complete());
    let (_, target) = rig.stores();
    let manifest = Manifest::open(rig.state.path())?;
    let fast = verify(&target, &manifest, &VerifyOptions::default()).await?;
    ensure!(
        fast.verified(),
        "fast verification of a true replica: {fast:?}"
    );
    rig.dst_faults.rule(
        Op::Get,
        1,
        Some("unaligned"),
        Fault::Alter(PART as usize + 3),
    );
    let deep = verify(
        &target,
        &manifest,
        &VerifyOptions {
            deep: true,
            ..VerifyOptions::default()
        },
    )
    .await?;
    ensure!(!deep.verified(), "deep verification missed an altered read");
    let named = format!("{deep:?}");
    ensure!(
        named.contains("multi/unaligned"),
        "mismatch not named: {named}"
    );
    Ok(())
}

#[test]
fn the_bodies_differ_by_generation() -> Result<()> {
    ensure!(body("k", 100, 1) != body("k", 100, 2));
    ensure!(body("k", 0, 1).is_empty());
    let b = body("k", 3 * PART + 777, 1);
    ensure!(b.len() as u64 == 3 * PART + 777);
    Ok(())
}

/// Equal content is copied server-side from the key holding it, on both
/// paths (single PUT and multipart); a failed copy falls back to an upload,
/// and a holder rewritten at the target is never copied from.
#[tokio::test]
async fn dedup_copies_from_an_intact_holder_and_uploads_otherwise() -> Result<()> {
    let rig = Rig::new(true)?;
    let small = body("held", 1000, 1);
    let large = body("held-large", 3 * PART + 9, 1);
    rig.put("orig/small", small.clone()).await?;
    rig.put("orig/large", large.clone()).await?;
    ensure!(rig.pass(&Rig::options()).await?.complete());

    // Two copies of each; the first server-side copy fails.
    for k in ["a", "b"] {
        rig.put(&format!("{k}/small"), small.clone()).await?;
        rig.put(&format!("{k}/large"), large.clone()).await?;
    }
    rig.dst_faults
        .rule(Op::Copy, 1, None, Fault::Fail(Failure::Transient));
    let second = rig.pass(&Rig::options()).await?;
    ensure!(second.complete(), "{:?}", second.failures);
    ensure!(
        second.stats.deduplicated == 3 && second.stats.copied == 1,
        "deduplicated {}, copied {} (one copy failed and was uploaded)",
        second.stats.deduplicated,
        second.stats.copied
    );
    rig.assert_replica().await?;

    // Someone rewrites a holder at the target: its content must not spread.
    rig.dst
        .put(
            &Path::parse("orig/small")?,
            PutPayload::from(b"tampered".to_vec()),
        )
        .await?;
    rig.dst
        .put(
            &Path::parse("a/small")?,
            PutPayload::from(b"tampered".to_vec()),
        )
        .await?;
    rig.dst
        .put(
            &Path::parse("b/small")?,
            PutPayload::from(b"tampered".to_vec()),
        )
        .await?;
    rig.put("c/small", small.clone()).await?;
    let third = rig.pass(&Rig::options()).await?;
    ensure!(third.complete(), "{:?}", third.failures);
    let got = rig.dst.get(&Path::parse("c/small")?).await?.bytes().await?;
    ensure!(
        got.as_ref() == small.as_slice(),
        "c/small was copied from a rewritten holder"
    );
    Ok(())
}

/// Random transient faults on every operation of both stores (seeded, so a
/// failure replays): every pass that says complete left a byte-exact
/// replica, whatever it met on the way (a fault it could route around,
/// such as a failed copy or HEAD, may still end complete), and passes
/// converge on the replica once the faults stop.
#[tokio::test]
async fn random_faults_never_yield_a_false_complete_and_passes_converge() -> Result<()> {
    for seed in [1, 7, 42] {
        let rig = Rig::new(seed % 2 == 1)?;
        rig.seed(1).await?;
        for i in 0..12 {
            rig.put(&format!("many/{i:02}"), body("many", 300 + i, 1))
                .await?;
        }
        rig.src_faults.random(seed, 0.05);
        rig.dst_faults.random(seed + 1000, 0.05);
        let mut completes = 0;
        for _ in 0..4 {
            // A fault may also stop a pass before it starts (a probe).
            let Ok(pass) = rig.pass(&Rig::options()).await else {
                continue;
            };
            if pass.complete() {
                completes += 1;
                rig.assert_replica()
                    .await
                    .with_context(|| format!("seed {seed}: a pass said complete"))?;
            }
        }
        ensure!(
            rig.src_faults.injected() + rig.dst_faults.injected() > 0,
            "seed {seed}: no fault was injected"
        );
        rig.src_faults.heal();
        rig.dst_faults.heal();
        let last = rig.pass(&Rig::options()).await?;
        ensure!(last.complete(), "seed {seed}: {:?}", last.failures);
        rig.assert_replica().await?;
        eprintln!("seed {seed}: {completes} of 4 faulty passes complete");
    }
    Ok(())
}
