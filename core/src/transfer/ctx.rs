//! What every stage of one object's transfer shares: the context ([`Ctx`],
//! whose methods the stage modules add), the byte stream type, and the
//! results a stage hands back ([`Outcome`], [`Stop`]). The bottom of the
//! transfer folder: it imports no other stage.

use std::sync::Arc;

use object_store::ObjectMeta;
use tokio::sync::Semaphore;

use crate::base::error::Error;
use crate::base::stats::Stats;
use crate::content::chunk::ChunkParams;
use crate::manifest::{Manifest, SourceVersion, normalize_etag};
use crate::stores::Store;
use crate::transfer::gate::KeyGate;

/// A stream of object bytes.
pub(crate) type ByteStream =
    futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>;

/// Everything one object's transfer needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Where objects are read.
    pub source: Store,
    /// Where objects are written.
    pub target: Store,
    /// The state directory.
    pub manifest: Arc<Manifest>,
    /// Chunking parameters.
    pub chunking: ChunkParams,
    /// Live counters.
    pub stats: Arc<Stats>,
    /// Memory budget in MiB permits: bytes buffered for PUTs and parts.
    pub memory: Arc<Semaphore>,
    /// Total MiB permits of `memory`.
    pub memory_mib: u32,
    /// Parts uploaded concurrently per multipart object.
    pub parts_in_flight: usize,
    /// Keeps dedup copies and writes of one key apart.
    pub gate: KeyGate,
    /// Becomes true when the pass is asked to stop: resumable uploads then
    /// pause at their next part boundary.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Cap on source bytes per second, if any.
    pub bandwidth: Option<Arc<crate::stores::throttle::Bandwidth>>,
    /// Where recorded parts are announced (the pass turns them into
    /// events), if anyone listens.
    pub parts: Option<tokio::sync::mpsc::UnboundedSender<PartRecorded>>,
    /// Look for an unrecorded key at the target before writing it
    /// (`transfer::adopt`): until the job's first complete full pass under
    /// its filter, when the target is not empty.
    pub adopt: bool,
}

/// A multipart part the target confirmed and the manifest recorded: what
/// a crash from now on no longer costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecorded {
    /// The object's key.
    pub key: String,
    /// The part's number, from 0.
    pub part: u32,
    /// Its size in bytes.
    pub size: u64,
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already replicated at this version: no bytes read or written.
    Unchanged,
    /// Read and written to the target.
    Copied,
    /// Materialised by server-side copy of identical content.
    Deduplicated,
    /// Already at the target with the same bytes and attributes, though
    /// unrecorded: read, compared and recorded, not written.
    Adopted,
    /// Dry run: would be copied.
    WouldCopy,
    /// Listed but gone when read: deleted since the listing, or an S3
    /// directory marker (`dir/`, which object_store lists as `dir`).
    Vanished,
    /// A resumable upload paused at a part boundary because the pass was
    /// asked to stop; its parts are recorded and the next run continues.
    Paused,
}

/// The version a listing entry describes.
pub fn listed_version(meta: &ObjectMeta) -> SourceVersion {
    SourceVersion {
        size: meta.size,
        etag: normalize_etag(meta.e_tag.as_deref()),
        version: meta.version.clone(),
        last_modified_ms: meta.last_modified.timestamp_millis(),
    }
}

/// Why a resumable upload stopped short.
pub(crate) enum Stop {
    /// The source is not the version the upload copies (or is gone), or
    /// the upload is gone at the target: abort the upload, forget it and
    /// start the object over.
    Restart(String),
    /// Anything else: the recorded parts stay for the next attempt.
    Fail(Error),
    /// The pass is stopping: paused at a part boundary, parts recorded.
    Paused,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fail(e)
    }
}
