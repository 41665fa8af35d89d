//! What every store must do alike, as object_store's own conformance
//! suite does: one test function, run with each backend as the target
//! (`InMemory`, a local directory, moto, s3s-fs, Azurite), opened the way
//! passeur opens it. Every object shape (empty, small, exactly one part,
//! one byte over, unaligned multipart) and key shapes both S3 and Azure
//! accept; a first pass copies them, a second changes nothing, a changed
//! and a deleted source object are followed, and deep verification holds;
//! and the same objects read from the backend as a source arrive intact.
//! The target is read back with its own client, never through passeur.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_core::base::stats::Stats;
use passeur_core::content::chunk::ChunkParams;
use passeur_core::manifest::Manifest;
use passeur_core::stores::limits::{PartPolicy, Provider};
use passeur_core::stores::{LocalDir, Store, StoreOptions};
use passeur_core::sync::deletes::DeletePolicy;
use passeur_core::sync::{PassOptions, PassSummary, run_pass};
use passeur_core::verify::{VerifyOptions, verify};
use passeur_tests::dataset::body;
use passeur_tests::servers::{Kind, Server};

const MIB: u64 = 1024 * 1024;
/// Part size: S3's smallest, so that every backend takes the same plan.
const PART: u64 = 5 * MIB;

/// Every object shape and key shapes S3 and Azure both accept.
const OBJECTS: [(&str, u64); 8] = [
    ("empty", 0),
    ("small", 100),
    ("one-part", PART),
    ("two-parts", PART + 1),
    ("multi/unaligned", 3 * PART + 777),
    ("keys/with space", 10),
    ("keys/ünïcødé €", 11),
    ("keys/a+b=c&d", 12),
];

/// A target under test: the store passeur writes to, and an independent
/// client on the same bucket for reading back.
struct Target {
    store: Store,
    read_back: Arc<dyn ObjectStore>,
}

fn policy() -> PartPolicy {
    PartPolicy {
        part_size: PART,
        multipart_threshold: PART,
        ..PartPolicy::for_provider(Provider::Generic)
    }
}

fn options(deletes: bool) -> PassOptions {
    PassOptions {
        chunking: ChunkParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        concurrency: 4,
        parts_in_flight: 2,
        deletes: DeletePolicy {
            enabled: deletes,
            max_fraction: 1.0,
            trash_prefix: None,
        },
        ..PassOptions::default()
    }
}

async fn keys(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut l = store.list(None);
    while let Some(m) = l.next().await {
        out.push(m?.location.to_string());
    }
    out.sort();
    Ok(out)
}

/// The target holds exactly the source's objects, byte for byte.
async fn assert_replica(src: &InMemory, dst: &dyn ObjectStore, backend: &str) -> Result<()> {
    let want = keys(src).await?;
    let got = keys(dst).await?;
    ensure!(
        want == got,
        "{backend}: target keys {got:?}, source {want:?}"
    );
    for k in &want {
        let p = Path::parse(k)?;
        let a = src.get(&p).await?.bytes().await?;
        let b = dst
            .get(&p)
            .await
            .with_context(|| format!("{backend}: read back {k:?}"))?
            .bytes()
            .await?;
        ensure!(
            a.len() == b.len() && blake3::hash(&a) == blake3::hash(&b),
            "{backend}: {k:?}: target has {} bytes, BLAKE3 {}; source {} bytes, {}",
            b.len(),
            blake3::hash(&b),
            a.len(),
            blake3::hash(&a)
        );
    }
    Ok(())
}

async fn pass(
    src: &Arc<InMemory>,
    target: &Store,
    state: &std::path::Path,
    deletes: bool,
) -> Result<PassSummary> {
    let source = Store::in_process(
        "memory://source",
        Arc::clone(src) as Arc<dyn ObjectStore>,
        policy(),
        None,
    );
    let manifest = Arc::new(Manifest::open(state)?);
    Ok(run_pass(
        source,
        target.clone(),
        manifest,
        &options(deletes),
        Arc::new(Stats::default()),
        |_| {},
        std::future::pending(),
    )
    .await?)
}

/// The behaviours every target must share.
async fn conform(backend: &str, target: Target) -> Result<()> {
    let src = Arc::new(InMemory::new());
    for (k, size) in OBJECTS {
        src.put(&Path::parse(k)?, PutPayload::from(body(k, size, 1)))
            .await?;
    }
    let state = tempfile::tempdir()?;
    let first = pass(&src, &target.store, state.path(), false).await?;
    ensure!(
        first.complete(),
        "{backend}: first pass: {:?}",
        first.failures
    );
    ensure!(
        first.stats.copied + first.stats.deduplicated == OBJECTS.len() as u64,
        "{backend}: first pass: {:?}",
        first.stats
    );
    assert_replica(&src, target.read_back.as_ref(), backend).await?;

    let second = pass(&src, &target.store, state.path(), false).await?;
    ensure!(
        second.complete()
            && second.stats.unchanged == OBJECTS.len() as u64
            && second.stats.bytes_written == 0,
        "{backend}: a second pass changed something: {:?}",
        second.stats
    );

    // One object changes (multipart), one is deleted; deletes on.
    let changed = "multi/unaligned";
    src.put(
        &Path::parse(changed)?,
        PutPayload::from(body(changed, 3 * PART + 777, 2)),
    )
    .await?;
    src.delete(&Path::parse("two-parts")?).await?;
    let third = pass(&src, &target.store, state.path(), true).await?;
    ensure!(
        third.complete(),
        "{backend}: third pass: {:?}",
        third.failures
    );
    ensure!(
        third.stats.copied == 1 && third.stats.deleted == 1,
        "{backend}: third pass: {:?}",
        third.stats
    );
    assert_replica(&src, target.read_back.as_ref(), backend).await?;

    let manifest = Manifest::open(state.path())?;
    let deep = verify(
        &target.store,
        &manifest,
        &VerifyOptions {
            deep: true,
            ..VerifyOptions::default()
        },
    )
    .await?;
    ensure!(deep.verified(), "{backend}: deep verification: {deep:?}");
    Ok(())
}

/// The same objects read from the backend as a source (its listing, its
/// reads) arrive byte for byte, and a second pass changes nothing.
async fn conform_as_source(
    backend: &str,
    source: Store,
    client: Arc<dyn ObjectStore>,
) -> Result<()> {
    let want = Arc::new(InMemory::new());
    for (k, size) in OBJECTS {
        let (p, b) = (Path::parse(k)?, body(k, size, 3));
        client.put(&p, PutPayload::from(b.clone())).await?;
        want.put(&p, PutPayload::from(b)).await?;
    }
    let dst = Arc::new(InMemory::new());
    let target = Store::in_process(
        "memory://target",
        Arc::clone(&dst) as Arc<dyn ObjectStore>,
        policy(),
        Some(Arc::clone(&dst) as Arc<dyn MultipartStore>),
    );
    let state = tempfile::tempdir()?;
    for round in ["first", "second"] {
        let manifest = Arc::new(Manifest::open(state.path())?);
        let summary = run_pass(
            source.clone(),
            target.clone(),
            manifest,
            &options(false),
            Arc::new(Stats::default()),
            |_| {},
            std::future::pending(),
        )
        .await?;
        ensure!(
            summary.complete(),
            "{backend} as source, {round} pass: {:?} {:?}",
            summary.failures,
            summary.stats
        );
    }
    assert_replica(&want, dst.as_ref(), &format!("{backend} as source")).await
}

fn server_source(server: &Server) -> Result<(Store, Arc<dyn ObjectStore>)> {
    server.create_bucket("src")?;
    Ok((source_store(server)?, server.client("src")?))
}

/// The server's `src` bucket as passeur opens a source.
fn source_store(server: &Server) -> Result<Store> {
    let opts = StoreOptions {
        part_size: Some(PART),
        multipart_threshold: Some(PART),
        ..server.store_options()
    };
    Ok(Store::open(&server.url("src"), &opts, LocalDir::MustExist)?)
}

fn server_target(server: &Server) -> Result<Target> {
    server.create_bucket("dst")?;
    let opts = StoreOptions {
        part_size: Some(PART),
        multipart_threshold: Some(PART),
        ..server.store_options()
    };
    Ok(Target {
        store: Store::open(&server.url("dst"), &opts, LocalDir::Create)?,
        read_back: server.client("dst")?,
    })
}

#[tokio::test]
async fn in_memory() -> Result<()> {
    let dst = Arc::new(InMemory::new());
    let store = Store::in_process(
        "memory://target",
        Arc::clone(&dst) as Arc<dyn ObjectStore>,
        policy(),
        Some(Arc::clone(&dst) as Arc<dyn MultipartStore>),
    );
    conform(
        "InMemory",
        Target {
            store,
            read_back: dst,
        },
    )
    .await
}

#[tokio::test]
async fn local_directory() -> Result<()> {
    let src = tempfile::tempdir()?;
    let source = Store::open(
        &src.path().to_string_lossy(),
        &StoreOptions::default(),
        LocalDir::MustExist,
    )?;
    let client = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
        src.path(),
    )?);
    conform_as_source("local", source, client).await?;
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("dst");
    let opts = StoreOptions {
        part_size: Some(PART),
        multipart_threshold: Some(PART),
        ..StoreOptions::default()
    };
    let store = Store::open(&root.to_string_lossy(), &opts, LocalDir::Create)?;
    let read_back = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
        &root,
    )?);
    conform("local", Target { store, read_back }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn moto() -> Result<()> {
    let server = Server::start(Kind::Moto)?;
    conform("moto", server_target(&server)?).await?;
    let (source, client) = server_source(&server)?;
    conform_as_source("moto", source, client).await
}

#[tokio::test(flavor = "multi_thread")]
async fn s3s_fs() -> Result<()> {
    let server = Server::start(Kind::S3sFs)?;
    conform("s3s-fs", server_target(&server)?).await?;
    let (source, client) = server_source(&server)?;
    conform_as_source("s3s-fs", source, client).await
}

#[tokio::test(flavor = "multi_thread")]
async fn azurite() -> Result<()> {
    let server = Server::start(Kind::Azurite)?;
    conform("Azurite", server_target(&server)?).await?;
    let (source, client) = server_source(&server)?;
    conform_as_source("Azurite", source, client).await
}

/// s3s-fs answers `EncodingType=url` over keys it did not encode. A page
/// where no key gives that away (`k/a+b` alone, once the tell-tale `k/é`
/// is gone) was decoded: `k/a+b` listed as `k/a b`, failed, and deleted
/// nothing only thanks to the vanish check. Now whether the server encodes
/// is asked of the server before such a key is decoded: in a new process,
/// the second pass lists `k/a+b` as it is, is complete, deletes exactly
/// the key that is gone, and `k/a+b` stays at the target byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_that_hides_an_echoing_server_is_read_as_listed() -> Result<()> {
    let server = Server::start(Kind::S3sFs)?;
    let (_, client) = server_source(&server)?;
    let (plus, tell) = ("k/a+b", "k/é");
    for k in [plus, tell] {
        client
            .put(&Path::parse(k)?, PutPayload::from(body(k, 10, 1)))
            .await?;
    }
    let dst = Arc::new(InMemory::new());
    let target = Store::in_process(
        "memory://target",
        Arc::clone(&dst) as Arc<dyn ObjectStore>,
        policy(),
        None,
    );
    let state = tempfile::tempdir()?;
    let run = |deletes: bool| {
        let (target, state) = (target.clone(), state.path().to_owned());
        let server = &server;
        async move {
            // A new process: the lister has not seen the server yet.
            let source = source_store(server)?;
            let manifest = Arc::new(Manifest::open(&state)?);
            anyhow::Ok(
                run_pass(
                    source,
                    target,
                    manifest,
                    &options(deletes),
                    Arc::new(Stats::default()),
                    |_| {},
                    std::future::pending(),
                )
                .await?,
            )
        }
    };
    let first = run(false).await?;
    ensure!(first.complete(), "first pass: {:?}", first.failures);
    // Without the tell-tale key, the page no longer shows the server.
    client.delete(&Path::parse(tell)?).await?;
    let second = run(true).await?;
    ensure!(second.complete(), "second pass: {:?}", second.failures);
    ensure!(
        second.stats.deleted == 1 && dst.head(&Path::parse(tell)?).await.is_err(),
        "deleted {}, want exactly {tell}",
        second.stats.deleted
    );
    let kept = dst.get(&Path::parse(plus)?).await?.bytes().await?;
    ensure!(
        kept.as_ref() == body(plus, 10, 1).as_slice(),
        "{plus} changed at the target"
    );
    Ok(())
}
