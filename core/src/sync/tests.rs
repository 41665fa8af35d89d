//! The pass's hand-off of window slots: an object written to a local
//! directory says so before it waits to be durable.

use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::PassOptions;
use super::pass::pass_ctx;
use crate::base::error::Error;
use crate::base::stats::Stats;
use crate::base::testing::{setup_err, tempdir};
use crate::manifest::Manifest;
use crate::stores::{LocalDir, Store, StoreOptions};
use crate::transfer::Outcome;

/// Replicate `key` from `source` to `target` with a `written` channel:
/// whether it was told, and the outcome.
async fn replicate_telling(
    source: &Store,
    target: Store,
    state: &std::path::Path,
    key: &str,
) -> Result<(bool, Outcome), Error> {
    let manifest = Arc::new(Manifest::open(state)?);
    let opts = PassOptions::default();
    let (_pause_tx, pause) = tokio::sync::watch::channel(false);
    let (parts, _parts_rx) = tokio::sync::mpsc::unbounded_channel();
    let stats = Arc::new(Stats::default());
    let ctx = Arc::new(pass_ctx(
        source, target, &manifest, &opts, &stats, pause, parts,
    ));
    let meta = source
        .inner
        .head(&Path::from(key))
        .await
        .map_err(|e| crate::base::error::store_err("head", e))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let outcome = ctx.replicate(&meta, false, Some(tx)).await?;
    Ok((rx.await.is_ok(), outcome))
}

#[tokio::test]
async fn an_object_written_to_a_local_directory_says_so_and_is_still_recorded() -> Result<(), Error>
{
    let (src, dst, state) = (tempdir()?, tempdir()?, tempdir()?);
    std::fs::write(src.path().join("a"), b"hello").map_err(|e| setup_err("source file", e))?;
    let url = |d: &tempfile::TempDir| d.path().to_string_lossy().into_owned();
    let opts = StoreOptions::default();
    let source = Store::open(&url(&src), &opts, LocalDir::MustExist)?;
    let target = Store::open(&url(&dst), &opts, LocalDir::Create)?;
    let (told, outcome) = replicate_telling(&source, target, state.path(), "a").await?;
    assert!(told, "a local target's copy tells it was written");
    assert!(matches!(outcome, Outcome::Copied), "{outcome:?}");
    // The future ended only once recorded, and the bytes are there.
    assert!(Manifest::open(state.path())?.object("a")?.is_some());
    let got = std::fs::read(dst.path().join("a")).map_err(|e| setup_err("read back", e))?;
    assert_eq!(got, b"hello");

    // Already replicated: settled from the manifest, nothing to tell.
    let target = Store::open(&url(&dst), &opts, LocalDir::Create)?;
    let (told, outcome) = replicate_telling(&source, target, state.path(), "a").await?;
    assert!(!told);
    assert!(matches!(outcome, Outcome::Unchanged), "{outcome:?}");

    // An object store acknowledges only what it stored durably: no wait
    // to hand a slot over for.
    let mem = Store::in_process(
        "memory",
        Arc::new(object_store::memory::InMemory::new()),
        crate::stores::limits::PartPolicy::for_provider(crate::stores::limits::Provider::Generic),
        None,
    );
    let state2 = tempdir()?;
    let (told, outcome) = replicate_telling(&source, mem, state2.path(), "a").await?;
    assert!(!told);
    assert!(matches!(outcome, Outcome::Copied), "{outcome:?}");
    Ok(())
}
