//! The in-process rig of the engine tests: source and target are
//! object_store `InMemory` stores, each behind a fault-injecting wrapper
//! ([`Faulty`]), with a state directory; one pass runs as a new process
//! would (the manifest opened for it), and the replica is checked by
//! reading both `InMemory` stores directly, never through passeur.

use std::sync::Arc;

use anyhow::{Result, ensure};
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_core::base::stats::Stats;
use passeur_core::content::chunk::ChunkParams;
use passeur_core::manifest::Manifest;
use passeur_core::stores::Store;
use passeur_core::stores::limits::{Limits, PartPolicy};
use passeur_core::sync::{PassOptions, PassSummary, run_pass};

use crate::dataset::body;
use crate::faulty::Faulty;

pub const KIB: u64 = 1024;
/// Part size of the target: objects above it go multipart.
pub const PART: u64 = 64 * KIB;

/// Every object shape, by key: empty, small, exactly one part (a single
/// PUT), one byte over (two parts, the last of one byte), unaligned
/// multipart.
pub const SHAPES: [(&str, u64); 5] = [
    ("empty", 0),
    ("small", 100),
    ("one-part", PART),
    ("two-parts", PART + 1),
    ("multi/unaligned", 3 * PART + 777),
];

/// Source and target, each an `InMemory` behind a fault wrapper, and a
/// state directory.
#[derive(Debug)]
pub struct Rig {
    /// The source, read directly.
    pub src: Arc<InMemory>,
    /// The target, read directly.
    pub dst: Arc<InMemory>,
    /// The source as passeur sees it.
    pub src_faults: Arc<Faulty>,
    /// The target as passeur sees it.
    pub dst_faults: Arc<Faulty>,
    /// The state directory.
    pub state: tempfile::TempDir,
    /// Whether the target offers its multipart API (resumable uploads).
    pub resumable: bool,
}

impl Rig {
    /// A rig whose target offers its multipart API when `resumable`.
    pub fn new(resumable: bool) -> Result<Self> {
        let src = Arc::new(InMemory::new());
        let dst = Arc::new(InMemory::new());
        Ok(Self {
            src_faults: Arc::new(Faulty::new(Arc::clone(&src) as Arc<dyn ObjectStore>)),
            dst_faults: Arc::new(Faulty::with_multipart(Arc::clone(&dst))),
            src,
            dst,
            state: tempfile::tempdir()?,
            resumable,
        })
    }

    /// Put an object at the source.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.src
            .put(&Path::parse(key)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Every shape at the source, in `generation`.
    pub async fn seed(&self, generation: u8) -> Result<()> {
        for (k, size) in SHAPES {
            self.put(k, body(k, size, generation)).await?;
        }
        Ok(())
    }

    /// Source and target as passeur's stores.
    pub fn stores(&self) -> (Store, Store) {
        let policy = PartPolicy {
            limits: Limits {
                max_parts: 10_000,
                min_part: KIB,
                max_part: 1 << 30,
                max_single_put: 1 << 30,
            },
            part_size: PART,
            multipart_threshold: PART,
        };
        let source = Store::in_process(
            "memory://source",
            Arc::clone(&self.src_faults) as Arc<dyn ObjectStore>,
            policy,
            None,
        );
        let multipart = self
            .resumable
            .then(|| Arc::clone(&self.dst_faults) as Arc<dyn MultipartStore>);
        let target = Store::in_process(
            "memory://target",
            Arc::clone(&self.dst_faults) as Arc<dyn ObjectStore>,
            policy,
            multipart,
        );
        (source, target)
    }

    /// Pass options sized for the rig.
    pub fn options() -> PassOptions {
        PassOptions {
            chunking: ChunkParams {
                min: 4 * 1024,
                avg: 16 * 1024,
                max: 64 * 1024,
            },
            concurrency: 4,
            parts_in_flight: 2,
            ..PassOptions::default()
        }
    }

    /// One pass, with the manifest opened for it (as a new process would).
    pub async fn pass(&self, opts: &PassOptions) -> Result<PassSummary> {
        let (source, target) = self.stores();
        let manifest = Arc::new(Manifest::open(self.state.path())?);
        Ok(run_pass(
            source,
            target,
            manifest,
            opts,
            Arc::new(Stats::default()),
            |_| {},
            std::future::pending(),
        )
        .await?)
    }

    /// The state directory as it stands between passes, opened read-only
    /// (to check what passeur recorded, never to decide what the target
    /// holds).
    pub fn manifest(&self) -> Result<Manifest> {
        Ok(Manifest::open_read_only(self.state.path())?)
    }

    /// The target holds exactly the source's keys, byte for byte.
    pub async fn assert_replica(&self) -> Result<()> {
        let keys = |s: Arc<InMemory>| async move {
            let mut keys = Vec::new();
            let mut l = s.list(None);
            while let Some(m) = futures::StreamExt::next(&mut l).await {
                keys.push(m?.location.to_string());
            }
            keys.sort();
            anyhow::Ok(keys)
        };
        let want = keys(Arc::clone(&self.src)).await?;
        let got = keys(Arc::clone(&self.dst)).await?;
        ensure!(want == got, "target keys {got:?}, source keys {want:?}");
        for k in &want {
            let p = Path::parse(k)?;
            let a = self.src.get(&p).await?.bytes().await?;
            let b = self.dst.get(&p).await?.bytes().await?;
            ensure!(
                blake3::hash(&a) == blake3::hash(&b),
                "{k}: target BLAKE3 {} differs from source {}",
                blake3::hash(&b),
                blake3::hash(&a)
            );
        }
        Ok(())
    }
}
