//! Dedup of large objects without reading them twice and without uploading
//! speculatively: the first content-defined chunk and the size name a
//! candidate already at the target; the rest of the stream is compared chunk
//! by chunk with the candidate's chunk list, holding no data. Identical to
//! the end → server-side copy. A divergence (rare: same size and same first
//! chunk, different content) → the object is read again and uploaded.

use std::sync::atomic::Ordering::Relaxed;

use futures::stream::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::chunk::Segmented;
use crate::error::Error;
use crate::hash::Hash;
use crate::transfer::{ByteStream, Ctx, Digested, Digester, store_err};

/// What the dedup attempt of a large object came to.
pub(crate) enum Large {
    /// Materialised by server-side copy.
    Copied(Digested),
    /// No candidate: upload this stream (nothing consumed from it).
    Upload(ByteStream),
    /// Candidate diverged or the copy failed: the stream is spent; read the
    /// object again and upload it.
    Reread,
}

impl Ctx {
    pub(crate) async fn dedup_large(
        &self,
        loc: &Path,
        size: u64,
        part_size: u64,
        mut stream: ByteStream,
        attrs_digest: &Hash,
    ) -> Result<Large, Error> {
        // Peek until the first chunk is settled; the bytes go back in front
        // of the stream (and are counted by whoever consumes it).
        let mut prefix = Vec::new();
        let mut have = 0u64;
        while have < u64::from(self.chunking.max) {
            match stream.next().await {
                Some(b) => {
                    let b = b.map_err(|e| store_err("read source", e))?;
                    have += b.len() as u64;
                    prefix.push(b);
                }
                None => break,
            }
        }
        let mut chunker = Segmented::new(self.chunking, Some(part_size));
        let mut first = Vec::new();
        for b in &prefix {
            chunker.push(b, &mut first);
        }
        if first.is_empty() {
            chunker.finish(&mut first);
        }
        let rejoined = futures::stream::iter(prefix.into_iter().map(Ok))
            .chain(stream)
            .boxed();
        let Some(first) = first.first() else {
            return Ok(Large::Upload(rejoined));
        };
        let candidate = self
            .manifest
            .large_candidate(size, &first.hash, attrs_digest)?;
        // S3's CopyObject stops at 5 GiB: beyond the target's single-request
        // limit a copy would fail after a full read, so do not try.
        let copyable = size <= self.target.policy.limits.max_single_put;
        let Some(cand) = candidate.filter(|c| {
            copyable && c.holder != loc.as_ref() && self.gate.begin_copy_from(&c.holder).is_some()
        }) else {
            return Ok(Large::Upload(rejoined));
        };
        let mut stream = rejoined;
        let mut dig = Digester::new(self.chunking, Some(part_size));
        let mut matched = 0;
        while self.read_next(&mut stream, &mut dig, size).await?.is_some() {
            while matched < dig.chunks.len() {
                if cand.chunks.get(matched) != Some(&dig.chunks[matched]) {
                    tracing::debug!(key = %loc, candidate = %cand.holder, "dedup candidate diverged");
                    return Ok(Large::Reread);
                }
                matched += 1;
            }
        }
        let digest = dig.finish(size)?;
        if digest.blake3 != cand.content || digest.chunks != cand.chunks {
            return Ok(Large::Reread);
        }
        // Hold the holder against writers for the copy, and make sure its
        // record still names this content (a writer may have finished).
        let Some(_source) = self.gate.begin_copy_from(&cand.holder) else {
            return Ok(Large::Reread);
        };
        let attrs_ok = self
            .manifest
            .content_holder(&cand.content, size, attrs_digest)?;
        if attrs_ok.as_deref() != Some(cand.holder.as_str()) {
            return Ok(Large::Reread);
        }
        let from = Path::parse(&cand.holder).map_err(|e| Error::Object(e.to_string()))?;
        match self.target.inner.copy(&from, loc).await {
            Ok(()) => {
                self.stats.bytes_saved.fetch_add(size, Relaxed);
                Ok(Large::Copied(digest))
            }
            Err(e) => {
                tracing::debug!(key = %loc, error = %e, "server-side copy failed; uploading");
                Ok(Large::Reread)
            }
        }
    }
}
