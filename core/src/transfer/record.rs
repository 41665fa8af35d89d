//! The last step of one object's trip: commit what the target confirmed
//! to the manifest. A record is written only once the target holds the
//! object (durably, for a local directory), so it always describes bytes
//! that are really there. Synced writes (a confirmed part, the commit that
//! ends a resumable upload) run on tokio's blocking pool: an fsync must not
//! stall the async workers that drive every other transfer.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use object_store::path::Path;

use crate::base::error::Error;
use crate::base::now_ms;
use crate::content::digest::Digested;
use crate::content::hash::Hash;
use crate::manifest::{
    CommitStats, Manifest, ObjectRecord, ObjectState, PartDone, SourceVersion, normalize_etag,
};
use crate::transfer::ctx::{Ctx, Outcome, PartRecorded};

/// What the target confirmed for one object.
pub(crate) struct Replicated {
    /// The source version the bytes came from.
    pub(crate) source: SourceVersion,
    /// Their BLAKE3 and chunks.
    pub(crate) digest: Digested,
    /// The target's ETag of the new object.
    pub(crate) target_etag: Option<String>,
    /// Digest of the attributes written with it.
    pub(crate) attrs_digest: Hash,
}

/// Which commit ends the object.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// A single PUT, a copy or an unrecorded multipart upload.
    Object,
    /// A recorded multipart upload: its upload state goes in the same
    /// synced batch.
    Upload,
}

/// Run a manifest write on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    manifest: &Arc<Manifest>,
    write: impl FnOnce(&Manifest) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let m = Arc::clone(manifest);
    tokio::task::spawn_blocking(move || write(&m))
        .await
        .map_err(|_| Error::ShuttingDown)?
}

impl Ctx {
    /// Commit a replicated object, once it is durable at the target.
    pub(crate) async fn record(
        &self,
        loc: &Path,
        r: Replicated,
        commit: Commit,
        outcome: Outcome,
    ) -> Result<Outcome, Error> {
        let size = r.source.size;
        let rec = ObjectRecord {
            source: r.source,
            blake3: r.digest.blake3,
            chunks: u32::try_from(r.digest.chunks.len()).unwrap_or(u32::MAX),
            target_etag: normalize_etag(r.target_etag.as_deref()),
            attrs_digest: r.attrs_digest,
            state: ObjectState::Complete,
            recorded_ms: now_ms(),
        };
        let stats: CommitStats = match commit {
            Commit::Object => {
                if self.target.local.is_some() {
                    super::tell_written();
                }
                self.target.make_durable(loc).await?;
                self.manifest
                    .commit_object(loc.as_ref(), &rec, &r.digest.chunks)?
            }
            Commit::Upload => {
                let key = loc.as_ref().to_owned();
                let chunks = r.digest.chunks;
                blocking(&self.manifest, move |m| {
                    m.commit_upload(&key, &rec, &chunks)
                })
                .await?
            }
        };
        self.stats.chunk_bytes.fetch_add(size, Relaxed);
        self.stats
            .chunk_bytes_new
            .fetch_add(stats.new_chunk_bytes, Relaxed);
        Ok(outcome)
    }

    /// Record a part the target confirmed (synced).
    pub(crate) async fn record_part(
        &self,
        key: &str,
        index: u32,
        size: u64,
        done: PartDone,
    ) -> Result<(), Error> {
        let owned = key.to_owned();
        blocking(&self.manifest, move |m| m.record_part(&owned, index, &done)).await?;
        self.stats.parts_recorded.fetch_add(1, Relaxed);
        tracing::debug!(key, part = index, "part recorded");
        if let Some(tx) = &self.parts {
            let _ = tx.send(PartRecorded {
                key: key.to_owned(),
                part: index,
                size,
            });
        }
        Ok(())
    }
}
