//! Multipart uploads that survive crashes. The upload id, and every part the
//! target confirmed with its part id, BLAKE3 subtrees and chunk list, are
//! recorded in the manifest with synced writes (`manifest::uploads`). A
//! later run continues at the missing parts, reading only their byte ranges
//! from the source (If-Match the recorded ETag), and merges the whole-object
//! BLAKE3 from the recorded subtrees, so finished parts are neither read nor
//! uploaded again.
//!
//! Never two versions in one object: a resume continues only when the
//! listing still shows the recorded version; ranged reads carry If-Match;
//! and before completing, a HEAD must still show it (for servers that ignore
//! If-Match). Otherwise the upload is aborted and the object starts over.
//!
//! An upload the target no longer knows (S3 and GCS answer 404
//! NoSuchUpload: aborted by an `AbortIncompleteMultipartUpload` lifecycle
//! rule, or by hand) is forgotten and the object starts over, whether a
//! part or the completion meets it; a completion first reads the target
//! back, in case a run that crashed had completed the upload.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{Attributes, GetOptions, ObjectMeta, ObjectStoreExt, PutMultipartOptions};

use crate::base::error::store_err;
use crate::base::error::{Error, error_chain};
use crate::base::now_ms;
use crate::content::chunk::{ChunkParams, Segmented};
use crate::content::hash::Hash;
use crate::content::parthash::{self, PartHasher};
use crate::manifest::{ObjectRecord, ObjectState, PartDone, PartHash, UploadHead, normalize_etag};
use crate::stores::Multipart;
use crate::transfer::ctx::{ByteStream, Ctx, Outcome, Stop, listed_version};
use crate::transfer::read::changed;

fn perr(e: parthash::PartHashError) -> Error {
    Error::Object(e.to_string())
}

/// Hash and chunk one part on its own.
fn prepare(
    head: &UploadHead,
    index: u64,
    data: &[u8],
    chunking: ChunkParams,
) -> Result<(PartHash, Vec<crate::content::chunk::ChunkRef>), Error> {
    let (start, end) = head.range(index);
    let hash = if start == 0 && end == head.source.size {
        PartHash::Whole(Hash::of(data))
    } else {
        let mut h = PartHasher::new(head.source.size, start, end).map_err(perr)?;
        h.update(data);
        PartHash::Subtrees(h.finish().map_err(perr)?)
    };
    let mut chunks = Vec::new();
    let mut c = Segmented::new(chunking, None);
    c.push(data, &mut chunks);
    c.finish(&mut chunks);
    Ok((hash, chunks))
}

impl Ctx {
    /// Start a resumable upload of `stream` (the whole object, one GET).
    #[allow(clippy::too_many_arguments, reason = "the fields of one upload")]
    pub(crate) async fn upload_fresh(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: UploadHead,
        attributes: Attributes,
        in_flight: usize,
        stream: ByteStream,
    ) -> Result<Outcome, Stop> {
        let key = loc.as_ref();
        let path = mp.path(loc);
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let id = mp
            .api()
            .create_multipart_opts(&path, opts)
            .await
            .map_err(|e| store_err("start multipart upload", e))?;
        let head = UploadHead {
            upload_id: id,
            ..head
        };
        if let Err(e) = self.manifest.begin_upload(key, &head) {
            let _ = mp.api().abort_multipart(&path, &head.upload_id).await;
            return Err(e.into());
        }
        self.send_parts(
            mp,
            loc,
            &head,
            (0..head.parts()).collect(),
            stream,
            in_flight,
        )
        .await?;
        self.finish_upload(mp, loc, &head).await
    }

    /// Continue a recorded upload at its missing parts.
    pub(crate) async fn upload_resume(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: &UploadHead,
        in_flight: usize,
    ) -> Result<Outcome, Stop> {
        let done = self.manifest.upload_parts(loc.as_ref())?;
        let n = head.parts();
        let have: u64 = done
            .keys()
            .map(|&i| {
                let (s, e) = head.range(u64::from(i));
                e - s
            })
            .sum();
        self.stats.uploads_resumed.fetch_add(1, Relaxed);
        self.stats.bytes_resumed.fetch_add(have, Relaxed);
        tracing::info!(key = %loc, parts_done = done.len(), parts = n, "resuming multipart upload");
        let missing: Vec<u64> = (0..n)
            .filter(|i| u32::try_from(*i).is_ok_and(|i| !done.contains_key(&i)))
            .collect();
        // One ranged GET per missing part, each If-Match the recorded ETag.
        let ranges = missing
            .iter()
            .map(|&i| {
                let (s, e) = head.range(i);
                s..e
            })
            .collect();
        let stream = self.ranged(loc, ranges, head.if_match.clone(), head.source.size);
        self.send_parts(mp, loc, head, missing, stream, in_flight)
            .await?;
        self.finish_upload(mp, loc, head).await
    }

    /// Upload the parts numbered `parts` (ascending) from `stream`, which
    /// holds exactly their bytes in order; each part the target confirms is
    /// recorded (synced) as it completes.
    async fn send_parts(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: &UploadHead,
        parts: Vec<u64>,
        mut stream: ByteStream,
        in_flight: usize,
    ) -> Result<(), Stop> {
        let key = loc.as_ref();
        let path = mp.path(loc);
        let expected: u64 = parts
            .iter()
            .map(|&i| {
                let (s, e) = head.range(i);
                e - s
            })
            .sum();
        let mut received = 0u64;
        let mut todo = parts.into_iter().peekable();
        let mut buf = BytesMut::new();
        let mut pending = FuturesUnordered::new();
        loop {
            // Read on only while a part slot is free: bytes read but not yet
            // confirmed stay within `in_flight` parts, what a crash can cost.
            while pending.len() >= in_flight.max(1) {
                if let Some(r) = pending.next().await {
                    r?;
                }
            }
            if buf.is_empty() && *self.stop.borrow() {
                // Stopping: let the parts in flight finish and be recorded,
                // read no more.
                while let Some(r) = pending.next().await {
                    r?;
                }
                tracing::info!(key, "upload paused; the next run continues it");
                return Err(Stop::Paused);
            }
            // Parts keep uploading while the next one is read.
            let next = tokio::select! {
                biased;
                Some(r) = pending.next(), if !pending.is_empty() => {
                    r?;
                    continue;
                }
                n = stream.next() => n,
            };
            let next = next.transpose().map_err(|e| {
                if changed(&e) {
                    Stop::Restart(format!("source changed since the upload started: {e}"))
                } else {
                    Stop::Fail(store_err("read source", e))
                }
            })?;
            let last = next.is_none();
            if let Some(b) = next {
                self.stats.bytes_read.fetch_add(b.len() as u64, Relaxed);
                received += b.len() as u64;
                if received > expected {
                    return Err(Stop::Restart(
                        "source longer than when the upload started".into(),
                    ));
                }
                buf.extend_from_slice(&b);
            }
            while let Some(&index) = todo.peek() {
                let (s, e) = head.range(index);
                let want = usize::try_from(e - s).unwrap_or(usize::MAX);
                if buf.len() < want {
                    break;
                }
                todo.next();
                let data: Bytes = buf.split_to(want).freeze();
                let (hash, chunks) = prepare(head, index, &data, self.chunking)?;
                let idx = u32::try_from(index)
                    .map_err(|_| Error::Object(format!("part {index} out of range")))?;
                let path = &path;
                pending.push(async move {
                    let n = data.len() as u64;
                    let part = match mp
                        .api()
                        .put_part(path, &head.upload_id, idx as usize, data.into())
                        .await
                    {
                        Ok(p) => p,
                        // NoSuchUpload: aborted at the target since it was
                        // recorded; its recorded parts are worth nothing.
                        Err(e @ object_store::Error::NotFound { .. }) => {
                            return Err(Stop::Restart(format!(
                                "upload vanished at the target: {}",
                                error_chain(&e)
                            )));
                        }
                        Err(e) => return Err(store_err("upload part", e).into()),
                    };
                    self.stats.bytes_written.fetch_add(n, Relaxed);
                    let done = PartDone {
                        part_id: part.content_id,
                        hash,
                        chunks,
                    };
                    self.manifest.record_part(key, idx, &done)?;
                    tracing::debug!(key, part = idx, "part recorded");
                    Ok::<(), Stop>(())
                });
            }
            if last {
                break;
            }
        }
        while let Some(r) = pending.next().await {
            r?;
        }
        if todo.peek().is_some() {
            return Err(Stop::Restart(
                "source shorter than when the upload started".into(),
            ));
        }
        Ok(())
    }

    /// All parts are recorded: check the source is still the version they
    /// came from, complete the upload, and commit the object.
    async fn finish_upload(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: &UploadHead,
    ) -> Result<Outcome, Stop> {
        let key = loc.as_ref();
        let parts = self.manifest.upload_parts(key)?;
        let n = head.parts();
        if parts.len() as u64 != n
            || parts
                .keys()
                .enumerate()
                .any(|(i, &k)| i as u64 != u64::from(k))
        {
            return Err(
                Error::Object(format!("upload has {} of {n} parts recorded", parts.len())).into(),
            );
        }
        match self.source.inner.head(loc).await {
            Ok(m) if head.source.same_as(&listed_version(&m)) => {}
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                return Err(Stop::Restart("source changed while being copied".into()));
            }
            Err(e) => return Err(store_err("check source", e).into()),
        }
        let mut subtrees = Vec::new();
        let mut whole = None;
        let mut chunks = Vec::new();
        let mut ids = Vec::with_capacity(parts.len());
        for p in parts.into_values() {
            match p.hash {
                PartHash::Whole(h) => whole = Some(h),
                PartHash::Subtrees(s) => subtrees.extend(s),
            }
            chunks.extend(p.chunks);
            ids.push(PartId {
                content_id: p.part_id,
            });
        }
        let blake3 = match whole {
            Some(h) => h,
            None => parthash::root(subtrees, head.source.size).map_err(perr)?,
        };
        let path = mp.path(loc);
        let etag = match mp
            .api()
            .complete_multipart(&path, &head.upload_id, ids)
            .await
        {
            Ok(put) => put.e_tag,
            // Completed by a run that stopped before recording it? Then the
            // target holds exactly these bytes: check by reading them back.
            Err(object_store::Error::NotFound { .. }) => match self.target_hash(loc).await? {
                Some((h, size, etag)) if h == blake3 && size == head.source.size => etag,
                _ => return Err(Stop::Restart("upload vanished at the target".into())),
            },
            Err(e) => return Err(store_err("complete multipart upload", e).into()),
        };
        let rec = ObjectRecord {
            source: head.source.clone(),
            blake3,
            chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
            target_etag: normalize_etag(etag.as_deref()),
            attrs_digest: head.attrs_digest,
            state: ObjectState::Complete,
            recorded_ms: now_ms(),
        };
        let commit = self.manifest.commit_upload(key, &rec, &chunks)?;
        self.stats.chunk_bytes.fetch_add(head.source.size, Relaxed);
        self.stats
            .chunk_bytes_new
            .fetch_add(commit.new_chunk_bytes, Relaxed);
        Ok(Outcome::Copied)
    }

    /// BLAKE3, size and ETag of the object at the target, read back.
    async fn target_hash(&self, loc: &Path) -> Result<Option<(Hash, u64, Option<String>)>, Error> {
        let got = match self.target.inner.get_opts(loc, GetOptions::default()).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err("read target", e)),
        };
        let etag = got.meta.e_tag.clone();
        let mut h = blake3::Hasher::new();
        let mut size = 0u64;
        let mut s = got.into_stream();
        while let Some(b) = s.next().await {
            let b = b.map_err(|e| store_err("read target", e))?;
            size += b.len() as u64;
            h.update(&b);
        }
        Ok(Some((h.finalize().into(), size, etag)))
    }

    /// Abort an upload at the target and forget it.
    pub(crate) async fn abandon(
        &self,
        mp: &Multipart,
        key: &str,
        head: &UploadHead,
    ) -> Result<(), Error> {
        let loc = Path::parse(key).map_err(|e| Error::Object(e.to_string()))?;
        match mp
            .api()
            .abort_multipart(&mp.path(&loc), &head.upload_id)
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err("abort multipart upload", e)),
        }
        self.manifest.drop_upload(key)
    }

    /// Start of a pass: uploads left by an earlier run whose source object
    /// is gone or changed are aborted now; the others are returned (with
    /// the source's current metadata) to be continued first.
    pub async fn sweep_uploads(&self) -> Result<Vec<ObjectMeta>, Error> {
        let Some(mp) = &self.target.multipart else {
            return Ok(Vec::new());
        };
        let (mut kept, mut aborted) = (Vec::new(), 0);
        for (key, head) in self.manifest.uploads()? {
            let loc = Path::parse(&key).map_err(|e| Error::Object(e.to_string()))?;
            let current = match self.source.inner.head(&loc).await {
                Ok(m) => Some(m),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(store_err("check source", e)),
            };
            match current {
                Some(m) if head.source.same_as(&listed_version(&m)) => kept.push(m),
                _ => {
                    self.abandon(mp, &key, &head).await?;
                    aborted += 1;
                    if current.is_some() {
                        // Changed: the listing will start this object over.
                        self.stats.uploads_restarted.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        if !kept.is_empty() || aborted > 0 {
            tracing::info!(
                continued = kept.len(),
                aborted,
                "multipart uploads left by an earlier run"
            );
        }
        Ok(kept)
    }
}
