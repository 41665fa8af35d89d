//! Dedup of large objects without reading them twice and without uploading
//! speculatively: the first content-defined chunk and the size name a
//! candidate already at the target; the rest of the stream is compared chunk
//! by chunk with the candidate's chunk list, holding no data. Identical to
//! the end → server-side copy. A divergence (rare: same size and same first
//! chunk, different content) → the object is read again and uploaded.
//!
//! Every dedup copy (small objects too, see `transfer`) goes through
//! [`Ctx::copy_held`]: the holder must still be at the target with
//! the ETag and size its record names (an object overwritten at the target
//! by someone else, or left stale, is never copied), and the new object's
//! own ETag is read back for its record, so fast verification checks it.

use std::sync::atomic::Ordering::Relaxed;

use futures::stream::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStoreExt};

use crate::base::error::{Error, parse_key, store_err};
use crate::content::chunk::Segmented;
use crate::content::digest::{Digested, Digester};
use crate::content::hash::Hash;
use crate::content::published::Published;
use crate::manifest::normalize_etag;
use crate::transfer::ctx::{ByteStream, Ctx};

/// What the dedup attempt of a large object came to.
pub(crate) enum Large {
    /// Materialised by server-side copy; the new object's target ETag.
    Copied(Digested, String),
    /// No candidate: upload this stream (nothing consumed from it).
    Upload(ByteStream),
    /// Candidate diverged or the copy failed: the stream is spent; read the
    /// object again and upload it.
    Reread,
}

impl Ctx {
    #[tracing::instrument(level = "debug", skip_all, fields(size = size))]
    pub(crate) async fn dedup_large(
        &self,
        loc: &Path,
        size: u64,
        part_size: u64,
        mut stream: ByteStream,
        attrs_digest: &Hash,
        published: Option<Published>,
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
        // A holder no longer as recorded is not worth comparing with (and
        // reading the object twice for): checked again just before the copy.
        if !self.holder_intact(&cand.holder, size).await? {
            return Ok(Large::Upload(rejoined));
        }
        let mut stream = rejoined;
        let mut dig = Digester::new(self.chunking, Some(part_size), published);
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
        match self
            .copy_held(&cand.holder, loc, &cand.content, size, attrs_digest)
            .await?
        {
            Some(etag) => Ok(Large::Copied(digest, etag)),
            None => Ok(Large::Reread),
        }
    }

    /// The one server-side copy path (single PUTs and large objects): copy
    /// `holder`, which the manifest named as holding `content` (`size`
    /// bytes, attributes `attrs_digest`), to `to`. The holder is held
    /// against writers for the copy and must still be named under that
    /// hold (a writer may have finished), its bytes are HEADed against its
    /// record, and the copy is HEADed after. The copy's ETag; `None`: the
    /// caller uploads instead.
    #[tracing::instrument(level = "debug", skip_all, fields(holder = holder, size = size))]
    pub(crate) async fn copy_held(
        &self,
        holder: &str,
        to: &Path,
        content: &Hash,
        size: u64,
        attrs_digest: &Hash,
    ) -> Result<Option<String>, Error> {
        if holder == to.as_ref() {
            return Ok(None);
        }
        let Some(_source) = self.gate.begin_copy_from(holder) else {
            return Ok(None);
        };
        if self
            .manifest
            .content_holder(content, size, attrs_digest)?
            .as_deref()
            != Some(holder)
        {
            return Ok(None);
        }
        self.copy_from_holder(holder, to, size, attrs_digest).await
    }

    /// Server-side copy of `holder` to `to`, only if the holder is still at
    /// the target as recorded: a HEAD must show the ETag, size and
    /// attributes of its record (a record without a target ETag cannot be
    /// checked: no copy). Returns the copy's own ETag (object_store's copy
    /// returns none, so the copy is HEADed; it must have the size and the
    /// attributes `attrs_digest` of the object it stands for), or `None`
    /// when the caller must upload instead (over the copy, if one was
    /// made). The caller holds the holder's copy gate. A holder's bytes
    /// rewritten between the HEAD and the copy (one request apart) are not
    /// detected here; deep verification reads the bytes.
    async fn copy_from_holder(
        &self,
        holder: &str,
        to: &Path,
        size: u64,
        attrs_digest: &Hash,
    ) -> Result<Option<String>, Error> {
        if !self.holder_intact(holder, size).await? {
            return Ok(None);
        }
        let from = parse_key(holder)?;
        if let Err(e) = self.target.inner.copy(&from, to).await {
            tracing::debug!(key = %to, error = %e, "server-side copy failed; uploading");
            return Ok(None);
        }
        match self
            .target
            .inner
            .get_opts(to, GetOptions::new().with_head(true))
            .await
        {
            Ok(got) if got.meta.size != size => {
                let found = got.meta.size;
                tracing::warn!(key = %to, size = found, want = size, "copy has another size; uploading");
                Ok(None)
            }
            Ok(got) if !self.same_attrs(&got, attrs_digest) => {
                tracing::warn!(key = %to, %holder, "copy has other attributes than its source's; uploading");
                Ok(None)
            }
            Ok(got) => match normalize_etag(got.meta.e_tag.as_deref()) {
                Some(etag) => {
                    self.stats.bytes_saved.fetch_add(size, Relaxed);
                    Ok(Some(etag))
                }
                None => Ok(None),
            },
            Err(e) => {
                tracing::debug!(key = %to, error = %e, "copy not readable; uploading");
                Ok(None)
            }
        }
    }

    /// Whether `holder` is at the target as its record says: a HEAD shows
    /// the recorded target ETag, `size` and attributes (someone may have
    /// changed them at the target, which keeps the ETag). A record without
    /// a target ETag cannot be checked: not intact.
    async fn holder_intact(&self, holder: &str, size: u64) -> Result<bool, Error> {
        let Some(rec) = self.manifest.object(holder)? else {
            return Ok(false);
        };
        let Some(want) = rec.target_etag.as_deref() else {
            tracing::debug!(%holder, "dedup holder has no recorded target ETag; uploading");
            return Ok(false);
        };
        let from = parse_key(holder)?;
        let head = GetOptions::new().with_head(true);
        let seen = match self.target.inner.get_opts(&from, head).await {
            Ok(got) if !self.same_attrs(&got, &rec.attrs_digest) => {
                tracing::warn!(%holder, "dedup holder's attributes changed at the target since it was recorded; uploading instead");
                return Ok(false);
            }
            Ok(got) => got.meta,
            Err(e) => {
                tracing::warn!(%holder, error = %e, "dedup holder not readable at the target; uploading");
                return Ok(false);
            }
        };
        let seen_etag = normalize_etag(seen.e_tag.as_deref());
        if seen.size != size || rec.source.size != size || seen_etag.as_deref() != Some(want) {
            tracing::warn!(
                %holder,
                recorded_etag = want,
                found_etag = seen_etag.as_deref().unwrap_or("none"),
                found_size = seen.size,
                "dedup holder changed at the target since it was recorded; uploading instead"
            );
            return Ok(false);
        }
        Ok(true)
    }
}
