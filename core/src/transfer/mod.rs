//! One object's trip: read the source once as a stream, cut it into
//! content-defined chunks, hash it, write it to the target (one PUT, or a
//! multipart upload whose parts follow the target's limits), or materialise
//! it by server-side copy when the target already holds the same content.
//! The manifest is written only after the target confirmed the object, so a
//! record always describes bytes that are really there.

pub mod attrs;
mod ctx;
mod dedup;
pub mod gate;
pub(crate) mod read;
pub(crate) mod resume;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::path::Path;
use object_store::{Attributes, ObjectMeta, PutMultipartOptions, PutOptions, PutPayload};

use crate::base::error::{Error, store_err};
use crate::base::now_ms;
use crate::content::digest::{Digested, Digester};
use crate::content::hash::Hash;
use crate::content::parthash::{self, PartHasher};
use crate::manifest::{ObjectRecord, ObjectState, SourceVersion, UploadHead, normalize_etag};
use crate::stores::StoreKind;
use crate::stores::limits::Plan;
pub(crate) use ctx::{ByteStream, Stop};
pub use ctx::{Ctx, Outcome, listed_version};
use dedup::Large;

const MIB: u64 = 1024 * 1024;
/// Times one object starts over because its source changed under it.
const MAX_RESTARTS: usize = 3;

impl Ctx {
    /// Replicate one listed object.
    pub async fn replicate(&self, meta: &ObjectMeta, dry_run: bool) -> Result<Outcome, Error> {
        let key = meta.location.as_ref();
        let listed = listed_version(meta);
        if self.is_replicated(key, &listed)? {
            return Ok(Outcome::Unchanged);
        }
        if dry_run {
            return Ok(Outcome::WouldCopy);
        }
        let _writing = self.gate.begin_write(key).await;
        // Another task may have finished this key while we waited.
        if self.is_replicated(key, &listed)? {
            return Ok(Outcome::Unchanged);
        }
        let mut last = String::new();
        for _ in 0..MAX_RESTARTS {
            match self.replicate_once(meta, &listed).await {
                Ok(o) => return Ok(o),
                Err(Stop::Fail(e)) => return Err(e),
                Err(Stop::Paused) => return Ok(Outcome::Paused),
                Err(Stop::Restart(why)) => {
                    self.stats.uploads_restarted.fetch_add(1, Relaxed);
                    tracing::info!(key, reason = %why, "starting the object over");
                    if let (Some(mp), Some(head)) =
                        (&self.target.multipart, self.manifest.upload(key)?)
                    {
                        self.abandon(mp, key, &head).await?;
                    }
                    last = why;
                }
            }
        }
        Err(Error::Object(format!(
            "started over {MAX_RESTARTS} times, last because: {last}; retried next pass"
        )))
    }

    fn is_replicated(&self, key: &str, listed: &SourceVersion) -> Result<bool, Error> {
        Ok(self
            .manifest
            .object(key)?
            .is_some_and(|r| r.state == ObjectState::Complete && r.source.same_as(listed)))
    }

    async fn replicate_once(
        &self,
        meta: &ObjectMeta,
        listed: &SourceVersion,
    ) -> Result<Outcome, Stop> {
        let key = meta.location.as_ref();
        if let Some(mp) = &self.target.multipart
            && let Some(head) = self.manifest.upload(key)?
        {
            if !head.source.same_as(listed) {
                return Err(Stop::Restart(
                    "source changed since the upload started".into(),
                ));
            }
            let (in_flight, need) = self.parts_budget(head.part_size);
            let _permit = self.budget(need).await?;
            return self
                .upload_resume(mp, &meta.location, &head, in_flight)
                .await;
        }
        // Memory first, then the GET: a response body must not wait unread
        // for a permit (servers time out idle connections).
        let (mut plan, mut in_flight, mut permit) = self.reserve(meta.size).await?;
        let Some(mut got) = self.open_source(&meta.location, plan, meta.size).await? else {
            return Ok(Outcome::Vanished);
        };
        let size = got.meta.size;
        if size != meta.size {
            // Changed since the listing: plan for the size there is now.
            drop(permit);
            (plan, in_flight, permit) = self.reserve(size).await?;
            got = match self.open_source(&meta.location, plan, size).await? {
                Some(g) if g.meta.size == size => g,
                Some(_) => return Err(Stop::Restart("source changing while being read".into())),
                None => return Ok(Outcome::Vanished),
            };
        }
        let _permit = permit;
        let mut version = listed.clone();
        let if_match = got.meta.e_tag.clone();
        let got_etag = normalize_etag(got.meta.e_tag.as_deref());
        if version.size != size
            || (version.etag.is_some() && got_etag.is_some() && version.etag != got_etag)
        {
            // Changed between listing and read: record what we read.
            version = listed_version(&got.meta);
        } else if version.etag.is_none() {
            version.etag = got_etag;
        }
        let attributes = if self.target.supports_attributes() {
            attrs::for_target(
                &got.attributes,
                key,
                version.last_modified_ms,
                self.source.kind == StoreKind::Local,
            )
        } else {
            Attributes::new()
        };
        let attrs_digest = attrs::digest(&attributes);
        let stream = self.rest_of(&meta.location, plan, got);
        let (digest, put, outcome) = match plan {
            Plan::Single => {
                self.single(&meta.location, size, stream, attributes, &attrs_digest)
                    .await?
            }
            Plan::Multipart { part_size, .. } => {
                let dedup = self
                    .dedup_large(&meta.location, size, part_size, stream, &attrs_digest)
                    .await?;
                let stream = match dedup {
                    Large::Copied(d, etag) => {
                        return Ok(self
                            .record(
                                &meta.location,
                                version,
                                d,
                                Some(etag),
                                attrs_digest,
                                size,
                                Outcome::Deduplicated,
                            )
                            .await?);
                    }
                    Large::Upload(s) => s,
                    Large::Reread => self.reopen(&meta.location, &version).await?,
                };
                if let Some(mp) = &self.target.multipart {
                    let head = UploadHead {
                        upload_id: String::new(),
                        source: version,
                        if_match,
                        part_size,
                        attrs_digest,
                        started_ms: now_ms(),
                    };
                    return self
                        .upload_fresh(mp, &meta.location, head, attributes, in_flight, stream)
                        .await;
                }
                let (d, p) = self
                    .multipart(
                        &meta.location,
                        size,
                        part_size,
                        in_flight,
                        stream,
                        attributes,
                    )
                    .await?;
                (d, p, Outcome::Copied)
            }
        };
        Ok(self
            .record(
                &meta.location,
                version,
                digest,
                put,
                attrs_digest,
                size,
                outcome,
            )
            .await?)
    }

    /// Commit a replicated object to the manifest, once it is durable at
    /// the target (a local directory's file and directory are fsynced).
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per outcome, all fields needed"
    )]
    async fn record(
        &self,
        loc: &Path,
        source: SourceVersion,
        digest: Digested,
        target_etag: Option<String>,
        attrs_digest: Hash,
        size: u64,
        outcome: Outcome,
    ) -> Result<Outcome, Error> {
        let rec = ObjectRecord {
            source,
            blake3: digest.blake3,
            chunks: u32::try_from(digest.chunks.len()).unwrap_or(u32::MAX),
            target_etag: normalize_etag(target_etag.as_deref()),
            attrs_digest,
            state: ObjectState::Complete,
            recorded_ms: now_ms(),
        };
        self.target.make_durable(loc).await?;
        let commit = self
            .manifest
            .commit_object(loc.as_ref(), &rec, &digest.chunks)?;
        self.stats.chunk_bytes.fetch_add(size, Relaxed);
        self.stats
            .chunk_bytes_new
            .fetch_add(commit.new_chunk_bytes, Relaxed);
        Ok(outcome)
    }

    /// Plan an object of `size` bytes and reserve the memory it needs:
    /// the whole object for a single PUT, `parts in flight + 1` parts for a
    /// multipart upload, with parts in flight lowered to fit the budget.
    async fn reserve(
        &self,
        size: u64,
    ) -> Result<(Plan, usize, tokio::sync::OwnedSemaphorePermit), Error> {
        let plan = self.target.policy.plan(size)?;
        let (in_flight, need) = match plan {
            Plan::Single => (0, size),
            Plan::Multipart { part_size, .. } => self.parts_budget(part_size),
        };
        Ok((plan, in_flight, self.budget(need).await?))
    }

    /// Parts in flight for parts of `part_size` bytes, lowered to fit the
    /// memory budget, and the bytes to reserve for them.
    fn parts_budget(&self, part_size: u64) -> (usize, u64) {
        let budget = u64::from(self.memory_mib) * MIB;
        let fit = (budget / part_size.max(1)).saturating_sub(1).max(1);
        let n = (self.parts_in_flight.max(1) as u64).min(fit);
        (usize::try_from(n).unwrap_or(1), part_size * (n + 1))
    }

    async fn budget(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        let want = u32::try_from(bytes.div_ceil(MIB).max(1))
            .unwrap_or(u32::MAX)
            .min(self.memory_mib);
        Arc::clone(&self.memory)
            .acquire_many_owned(want)
            .await
            .map_err(|e| Error::Object(format!("memory budget closed: {e}")))
    }

    async fn single(
        &self,
        loc: &Path,
        size: u64,
        mut stream: ByteStream,
        attributes: Attributes,
        attrs_digest: &Hash,
    ) -> Result<(Digested, Option<String>, Outcome), Error> {
        let mut buf = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut dig = Digester::new(self.chunking, None);
        while let Some(b) = self.read_next(&mut stream, &mut dig, size).await? {
            buf.extend_from_slice(&b);
        }
        let digest = dig.finish(size)?;
        if let Some(holder) = self
            .manifest
            .content_holder(&digest.blake3, size, attrs_digest)?
            && let Some(etag) = self
                .copy_held(&holder, loc, &digest.blake3, size, attrs_digest)
                .await?
        {
            return Ok((digest, Some(etag), Outcome::Deduplicated));
        }
        let opts = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        let put = self
            .target
            .inner
            .put_opts(loc, PutPayload::from(buf.freeze()), opts)
            .await
            .map_err(|e| store_err("write target", e))?;
        self.stats.bytes_written.fetch_add(size, Relaxed);
        Ok((digest, put.e_tag, Outcome::Copied))
    }

    async fn multipart(
        &self,
        loc: &Path,
        size: u64,
        part_size: u64,
        in_flight: usize,
        mut stream: ByteStream,
        attributes: Attributes,
    ) -> Result<(Digested, Option<String>), Error> {
        let in_flight = in_flight.max(1);
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let mut upload = self
            .target
            .inner
            .put_multipart_opts(loc, opts)
            .await
            .map_err(|e| store_err("start multipart upload", e))?;
        let part_len = usize::try_from(part_size).unwrap_or(usize::MAX);
        // The whole-object hash is merged from each part's BLAKE3 subtrees,
        // the form resumable uploads keep per part (see parthash).
        let mut dig = Digester::chunk_only(self.chunking, Some(part_size));
        let mut subtrees = Vec::new();
        let mut offset = 0u64;
        let mut one_part_hash = None;
        let mut part = BytesMut::with_capacity(part_len);
        let mut pending = FuturesUnordered::new();
        let stats = Arc::clone(&self.stats);
        let result: Result<(), Error> = async {
            loop {
                // Parts keep uploading while the next one is read.
                let next = tokio::select! {
                    biased;
                    Some(r) = pending.next(), if !pending.is_empty() => {
                        r?;
                        continue;
                    }
                    n = self.read_next(&mut stream, &mut dig, size) => n?,
                };
                let last = next.is_none();
                if let Some(b) = next {
                    part.extend_from_slice(&b);
                } else if dig.total > size {
                    break;
                }
                while part.len() >= part_len || (last && !part.is_empty()) {
                    let n = part.len().min(part_len);
                    let data = part.split_to(n).freeze();
                    let end = offset + n as u64;
                    if offset == 0 && end == size {
                        one_part_hash = Some(Hash::of(&data));
                    } else {
                        let mut h = PartHasher::new(size, offset, end)
                            .map_err(|e| Error::Object(e.to_string()))?;
                        h.update(&data);
                        subtrees.extend(h.finish().map_err(|e| Error::Object(e.to_string()))?);
                    }
                    offset = end;
                    while pending.len() >= in_flight {
                        if let Some(r) = pending.next().await {
                            r?;
                        }
                    }
                    let fut = upload.put_part(PutPayload::from(data));
                    let stats = Arc::clone(&stats);
                    pending.push(async move {
                        fut.await.map_err(|e| store_err("upload part", e))?;
                        stats.bytes_written.fetch_add(n as u64, Relaxed);
                        Ok::<(), Error>(())
                    });
                }
                if last {
                    break;
                }
            }
            while let Some(r) = pending.next().await {
                r?;
            }
            Ok(())
        }
        .await;
        let digest = result.and_then(|()| dig.finish(size)).and_then(|mut d| {
            d.blake3 = match one_part_hash {
                Some(h) => h,
                None => parthash::root(subtrees, size).map_err(|e| Error::Object(e.to_string()))?,
            };
            Ok(d)
        });
        let digest = match digest {
            Ok(d) => d,
            Err(e) => {
                drop(pending);
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(key = %loc, error = %abort, "abort of multipart upload failed");
                }
                return Err(e);
            }
        };
        match upload.complete().await {
            Ok(put) => Ok((digest, put.e_tag)),
            Err(e) => {
                let _ = upload.abort().await;
                Err(store_err("complete multipart upload", e))
            }
        }
    }
}
