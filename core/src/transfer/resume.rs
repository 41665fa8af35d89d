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
//! Bytes checked against the source's MD5 (an S3 ETag, an Azure
//! Content-MD5): the MD5 runs over the parts in order and its state after
//! each part is recorded with the part. A resume goes on from the state of
//! the part before the first missing one, and reads again the parts after
//! it that the target holds (at most the parts that were in flight):
//! their bytes must be the ones sent (BLAKE3 of the part), and their
//! records get the new state. Before completing, the last part's state
//! must come to the MD5 the source publishes (HEAD); an upload whose bytes
//! fail either check is dropped, never completed nor continued.
//!
//! An upload the target no longer knows (S3 and GCS answer 404
//! NoSuchUpload: aborted by an `AbortIncompleteMultipartUpload` lifecycle
//! rule, or by hand) is forgotten and the object starts over, whether a
//! part or the completion meets it.
//!
//! A completion answered with any error may still have been applied (its
//! answer lost and the client's retry refused, the upload being gone; or a
//! run that crashed completed it): the target is read back, and the object
//! is recorded only if it holds exactly the size and BLAKE3 merged from the
//! recorded parts. Otherwise NoSuchUpload starts the object over at once;
//! any other error drops the upload and fails the object for this pass.
//!
//! An abort the target refuses (s3s-fs answers 403 to an upload id it no
//! longer knows) is logged and the upload forgotten all the same: it must
//! not stop a pass, nor every later one. Neither must a source that cannot
//! be checked when a pass starts (a HEAD refused or failing): that upload
//! is left recorded, and the listing tries its object. Only a failure of
//! the state directory does.

use std::sync::atomic::Ordering::Relaxed;

use futures::stream::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{Attributes, GetOptions, ObjectMeta, ObjectStoreExt, PutMultipartOptions};

use std::collections::BTreeMap;

use crate::base::error::{Error, error_chain, parse_key, store_err};
use crate::base::filter::KeyFilter;
use crate::content::digest::Digested;
use crate::content::hash::Hash;
use crate::content::published::{Md5Run, Published};
use crate::manifest::{PartDone, UploadHead};
use crate::stores::Multipart;
use crate::stores::body::body;
use crate::stores::throttle::creates_sent;
use crate::transfer::ctx::{ByteStream, Ctx, Outcome, Stop, listed_version};
use crate::transfer::parts::{PartsRun, merge};
use crate::transfer::plan::Parts;
use crate::transfer::record::{Commit, Replicated, blocking};

impl Ctx {
    /// Start a resumable upload of `stream` (the whole object, one GET),
    /// `in_flight` parts at a time. With `md5` (the source published an
    /// MD5 of the object: an S3 ETag that is one, an Azure blob's
    /// Content-MD5 in the first GET's answer) it runs over the parts and
    /// each recorded part keeps its state, so a resume goes on from it.
    pub(crate) async fn upload_fresh(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: UploadHead,
        attributes: Attributes,
        (in_flight, md5): (usize, bool),
        stream: ByteStream,
    ) -> Result<Outcome, Stop> {
        let key = loc.as_ref();
        let path = mp.path(loc);
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let kept = self.note_start(key).await?;
        let sent = creates_sent();
        let id = mp
            .api()
            .create_multipart_opts(&path, opts)
            .await
            .map_err(|e| store_err("start multipart upload", e))?;
        // Tried more than once: an earlier try may have created an upload
        // whose answer was lost. Its start stays until that is looked at
        // (so does an earlier start that could not be cleared).
        let retried = creates_sent().saturating_sub(sent) > 1 || kept;
        let head = UploadHead {
            upload_id: id,
            ..head
        };
        let begun = {
            let (key, head) = (key.to_owned(), head.clone());
            blocking(&self.manifest, move |m| {
                m.begin_upload(&key, &head, retried)
            })
            .await
        };
        if let Err(e) = begun {
            let _ = mp.api().abort_multipart(&path, &head.upload_id).await;
            return Err(e.into());
        }
        let run = PartsRun {
            layout: layout_of(&head),
            todo: (0..head.parts()).collect(),
            held: BTreeMap::new(),
            in_flight,
            pausable: true,
            md5: md5.then(Md5Run::default),
        };
        let done = async {
            self.send_recorded(mp, loc, &head, run, BTreeMap::new(), stream)
                .await?;
            self.finish_upload(mp, loc, &head).await
        }
        .await;
        if retried {
            self.clear_start_now(key).await?;
        }
        done
    }

    /// The MD5 the source publishes of the version `head` copies, after a
    /// HEAD of it (an Azure blob's Content-MD5 comes with the answer); a
    /// source that changed or vanished restarts the upload.
    async fn source_md5(&self, loc: &Path, head: &UploadHead) -> Result<Option<Published>, Stop> {
        match self.source.inner.head(loc).await {
            Ok(m) if head.source.same_as(&listed_version(&m)) => {
                Ok(self.published(m.e_tag.as_deref()))
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                Err(Stop::Restart("source changed while being copied".into()))
            }
            Err(e) => Err(store_err("check source", e).into()),
        }
    }

    /// Continue a recorded upload at its missing parts.
    #[tracing::instrument(level = "debug", skip_all, fields(upload = %head.upload_id))]
    pub(crate) async fn upload_resume(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: &UploadHead,
        in_flight: usize,
    ) -> Result<Outcome, Stop> {
        let done = self.manifest.upload_parts(loc.as_ref())?;
        let n = head.parts();
        let first_missing = (0..n)
            .find(|i| u32::try_from(*i).is_ok_and(|i| !done.contains_key(&i)))
            .unwrap_or(n);
        // The running MD5 goes on from the state recorded with the part
        // before the first missing one. Parts recorded without it (by an
        // older passeur, or with check-md5 off) cannot be checked: start over.
        let md5 = if self.source_md5(loc, head).await?.is_none() {
            None
        } else if first_missing == 0 {
            Some(Md5Run::default())
        } else {
            let state = u32::try_from(first_missing - 1)
                .ok()
                .and_then(|i| done.get(&i))
                .and_then(|p| p.md5_after.as_deref())
                .and_then(Md5Run::resume);
            let Some(state) = state else {
                return Err(Stop::Restart(
                    "its parts were recorded without the running MD5 of the source's checksum"
                        .into(),
                ));
            };
            Some(state)
        };
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
        // Parts to read: the missing ones; with the MD5, every part from
        // the first missing one on (those the target holds, only hashed).
        let todo: Vec<u64> = (first_missing..n)
            .filter(|&i| md5.is_some() || u32::try_from(i).is_ok_and(|i| !done.contains_key(&i)))
            .collect();
        let mut held = BTreeMap::new();
        let mut held_ids = BTreeMap::new();
        for (&i, p) in &done {
            if todo.contains(&u64::from(i)) {
                held.insert(u64::from(i), p.hash.clone());
                held_ids.insert(i, p.part_id.clone());
            }
        }
        // One ranged GET per part, each If-Match the recorded ETag.
        let ranges = todo
            .iter()
            .map(|&i| {
                let (s, e) = head.range(i);
                s..e
            })
            .collect();
        let stream = self.ranged(loc, ranges, head.if_match.clone(), head.source.size);
        let run = PartsRun {
            layout: layout_of(head),
            todo,
            held,
            in_flight,
            pausable: true,
            md5,
        };
        self.send_recorded(mp, loc, head, run, held_ids, stream)
            .await?;
        self.finish_upload(mp, loc, head).await
    }

    /// Send the parts of `run` of the recorded upload `head` from
    /// `stream`; each part the target confirms is recorded (synced) as it
    /// completes. A part the target holds (its id in `held_ids`) only has
    /// its record's MD5 state renewed.
    async fn send_recorded(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: &UploadHead,
        run: PartsRun,
        held_ids: BTreeMap<u32, String>,
        stream: ByteStream,
    ) -> Result<(), Stop> {
        let key = loc.as_ref();
        let path = mp.path(loc);
        let held_ids = &held_ids;
        let sent = self
            .send_parts(run, stream, |part| {
                let path = &path;
                Box::pin(async move {
                    if part.held {
                        let done = PartDone {
                            part_id: held_ids.get(&part.index).cloned().unwrap_or_default(),
                            hash: part.hash,
                            chunks: part.chunks,
                            md5_after: part.md5_after,
                        };
                        let (key, index) = (key.to_owned(), part.index);
                        blocking(&self.manifest, move |m| m.record_part(&key, index, &done))
                            .await?;
                        return Ok(());
                    }
                    let n = part.data.len() as u64;
                    let put = mp
                        .api()
                        .put_part(path, &head.upload_id, part.index as usize, part.data.into())
                        .await;
                    let confirmed = match put {
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
                        part_id: confirmed.content_id,
                        hash: part.hash,
                        chunks: part.chunks,
                        md5_after: part.md5_after,
                    };
                    self.record_part(key, part.index, n, done).await?;
                    Ok(())
                })
            })
            .await;
        if matches!(sent, Err(Stop::Paused)) {
            tracing::info!(key, "upload paused; the next run continues it");
        }
        sent.map(drop)
    }

    /// All parts are recorded: check the source is still the version they
    /// came from, complete the upload, and commit the object.
    #[tracing::instrument(level = "debug", skip_all, fields(upload = %head.upload_id))]
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
            return Err(Error::Corrupt(format!(
                "upload of {key:?} has {} of {n} parts recorded",
                parts.len()
            ))
            .into());
        }
        if let Some(published) = self.source_md5(loc, head).await? {
            let states: Option<Vec<&[u8]>> =
                parts.values().map(|p| p.md5_after.as_deref()).collect();
            // Never completed unchecked: without a state, start over.
            let Some(md5) = states
                .and_then(|s| s.last().copied())
                .and_then(Md5Run::resume)
            else {
                return Err(Stop::Restart(
                    "its parts were recorded without the running MD5 of the source's checksum"
                        .into(),
                ));
            };
            md5.check(&published)?;
        }
        let mut ids = Vec::with_capacity(parts.len());
        let mut shares = Vec::with_capacity(parts.len());
        for p in parts.into_values() {
            ids.push(PartId {
                content_id: p.part_id,
            });
            shares.push((p.hash, p.chunks));
        }
        let digest = merge(shares, head.source.size)?;
        let path = mp.path(loc);
        let etag = match mp
            .api()
            .complete_multipart(&path, &head.upload_id, ids)
            .await
        {
            Ok(put) => put.e_tag,
            // Boxed: a rare path, kept out of every object's future.
            Err(e) => Box::pin(self.confirm_completion(mp, loc, head, &digest, e)).await?,
        };
        let replicated = Replicated {
            source: head.source.clone(),
            digest,
            target_etag: etag,
            attrs_digest: head.attrs_digest,
        };
        Ok(self
            .record(loc, replicated, Commit::Upload, Outcome::Copied)
            .await?)
    }

    /// The completion was answered with `err`; was it applied all the
    /// same? Only if the target, read back, holds exactly the object the
    /// recorded parts make (`digest`): then its ETag. Otherwise
    /// NoSuchUpload starts the object over; any other error drops the
    /// upload and fails the object for this pass (the next one starts it
    /// over).
    async fn confirm_completion(
        &self,
        mp: &Multipart,
        loc: &Path,
        head: &UploadHead,
        digest: &Digested,
        err: object_store::Error,
    ) -> Result<Option<String>, Stop> {
        let found = match self
            .held_at_target(loc, &digest.blake3, head.source.size)
            .await
        {
            Held::Same(etag) => {
                tracing::info!(
                    key = %loc,
                    upload = %head.upload_id,
                    error = %error_chain(&err),
                    "completion answered with an error, but the target holds the object (read back)"
                );
                return Ok(etag);
            }
            Held::Other(found) => found,
        };
        if matches!(err, object_store::Error::NotFound { .. }) {
            return Err(Stop::Restart(format!(
                "upload vanished at the target, which {found}"
            )));
        }
        self.abandon(mp, loc.as_ref(), head).await?;
        Err(Error::CompletionUnconfirmed { source: err, found }.into())
    }

    /// Whether the target holds `size` bytes of BLAKE3 `blake3` at `loc`:
    /// a HEAD for the size, then a GET hashed whole.
    async fn held_at_target(&self, loc: &Path, blake3: &Hash, size: u64) -> Held {
        let unreadable = |e: &object_store::Error| {
            Held::Other(format!("could not be read back: {}", error_chain(e)))
        };
        match self.target.inner.head(loc).await {
            Ok(m) if m.size == size => {}
            Ok(m) => return Held::Other(format!("holds {} bytes, not {size}", m.size)),
            Err(object_store::Error::NotFound { .. }) => {
                return Held::Other("holds no object".into());
            }
            Err(e) => return unreadable(&e),
        }
        let got = match self.target.inner.get_opts(loc, GetOptions::default()).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Held::Other("holds no object".into());
            }
            Err(e) => return unreadable(&e),
        };
        let etag = got.meta.e_tag.clone();
        let mut h = blake3::Hasher::new();
        let mut read = 0u64;
        let mut s = body(got);
        while let Some(b) = s.next().await {
            match b {
                Ok(b) => {
                    read += b.len() as u64;
                    h.update(&b);
                }
                Err(e) => return unreadable(&e),
            }
        }
        let found = Hash::from(h.finalize());
        if read != size {
            Held::Other(format!("holds {read} bytes, not {size}"))
        } else if found != *blake3 {
            Held::Other(format!(
                "holds other bytes (BLAKE3 {}, not {})",
                found.short(),
                blake3.short()
            ))
        } else {
            Held::Same(etag)
        }
    }

    /// Abort an upload at the target and forget it. An abort the target
    /// refuses (any error: s3s-fs answers 403 to an upload id it no longer
    /// knows) is logged and the upload forgotten all the same; what it
    /// leaves at the target, a lifecycle rule removes. Only the state
    /// directory's failure to forget it is an error.
    #[tracing::instrument(level = "debug", skip_all, fields(key = key, upload = %head.upload_id))]
    pub(crate) async fn abandon(
        &self,
        mp: &Multipart,
        key: &str,
        head: &UploadHead,
    ) -> Result<(), Error> {
        let loc = parse_key(key)?;
        match mp
            .api()
            .abort_multipart(&mp.path(&loc), &head.upload_id)
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(
                key,
                upload = %head.upload_id,
                error = %error_chain(&e),
                "the target refused to abort the multipart upload: forgotten all the same (an AbortIncompleteMultipartUpload lifecycle rule on the target removes it)"
            ),
        }
        let key = key.to_owned();
        blocking(&self.manifest, move |m| m.drop_upload(&key)).await
    }

    /// Start of a pass: uploads an earlier run created and never recorded
    /// are aborted (`transfer::starts`); uploads it left whose source object
    /// is gone or changed, or whose key `filter` no longer accepts (given
    /// to another shard, or filtered out: another writer may own it now),
    /// are aborted now (forgotten even if the target refuses the abort:
    /// only a state directory failure stops the pass); the others are
    /// returned (with the source's current metadata) to be continued first. An upload whose source cannot be checked (its HEAD
    /// fails otherwise than not-found: a 403 on that key, an error that
    /// outlasts the retries) is logged and left recorded, untouched: the
    /// listing tries the object when it reaches it, and one key's failure
    /// must not stop every pass.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sweep_uploads(&self, filter: &KeyFilter) -> Result<Vec<ObjectMeta>, Error> {
        let Some(mp) = &self.target.multipart else {
            return Ok(Vec::new());
        };
        self.sweep_starts().await?;
        let (mut kept, mut aborted, mut unchecked) = (Vec::new(), 0, 0);
        for (key, head) in self.manifest.uploads()? {
            if !filter.accepts(&key) {
                tracing::info!(
                    key,
                    upload = %head.upload_id,
                    "unfinished multipart upload of a key this job no longer replicates (another shard's, or filtered out): aborted, not continued"
                );
                self.abandon(mp, &key, &head).await?;
                aborted += 1;
                continue;
            }
            let loc = parse_key(&key)?;
            let current = match self.source.inner.head(&loc).await {
                Ok(m) => Some(m),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => {
                    tracing::warn!(
                        key,
                        upload = %head.upload_id,
                        error = %error_chain(&e),
                        "could not check the source of an unfinished multipart upload: left as it is; the listing tries the object"
                    );
                    unchecked += 1;
                    continue;
                }
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
        if !kept.is_empty() || aborted > 0 || unchecked > 0 {
            tracing::info!(
                continued = kept.len(),
                aborted,
                unchecked,
                "multipart uploads left by an earlier run"
            );
        }
        Ok(kept)
    }
}

/// What the target holds at a key, read back.
enum Held {
    /// Exactly the object expected; its ETag.
    Same(Option<String>),
    /// Something else, or nothing, or a failed read: what, for the error.
    Other(String),
}

/// The part layout a recorded upload was started with.
fn layout_of(head: &UploadHead) -> Parts {
    Parts {
        size: head.source.size,
        part_size: head.part_size,
    }
}
