//! Multipart uploads the target created but no manifest names. A run
//! stopped (killed, or cut off by a power loss) after sending
//! CreateMultipartUpload and before recording the upload id it answered,
//! or a create whose answer never came back, leaves an upload at the
//! target that nothing would ever continue or abort: empty, but listed
//! among the bucket's open uploads until a lifecycle rule removes it.
//!
//! So each create is preceded by a synced `upload_starts` record (the key,
//! the time), removed in the batch that records the upload id — unless
//! object_store sent the create more than once (its first answer lost:
//! the HTTP client counts the tries), which may have left an upload too:
//! then the start stays and is cleared once the recorded upload is done.
//! A start still there — at the start of a pass, once such an upload is
//! done, or before the same key's next create — means an upload may have
//! been left: the target's open uploads
//! of exactly that key (S3 ListMultipartUploads) that no record names and
//! that hold no part (ListParts) are aborted, then the start is forgotten.
//! No part is what such an upload always is (parts are sent only once its
//! id is recorded); an upload with parts is another writer's, and is left
//! alone. The time of the start is not compared with the server's
//! creation time: moto answers a fixed one, and clocks drift. A server
//! that will not list uploads or their parts (AccessDenied: the
//! credentials lack `s3:ListBucketMultipartUploads` or
//! `s3:ListMultipartUploadParts`; 501: s3s-fs) gets a
//! warning naming the key, and the start is forgotten: an
//! `AbortIncompleteMultipartUpload` lifecycle rule is the remedy there.
//! Only S3 targets note starts (GCS has no such listing through
//! object_store; Azure blocks never committed expire by themselves).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::base::error::{Error, error_chain, parse_key, store_err};
use crate::base::now_ms;
use crate::stores::Multipart;
use crate::stores::checksum::UploadChecksum;
use crate::stores::rawlist::{RawLister, UploadParts, UploadsListing};
use crate::transfer::ctx::Ctx;
use crate::transfer::record::blocking;

impl Ctx {
    /// The target's lister of open uploads, if starts are noted for it.
    fn upload_lister(&self) -> Option<(&Multipart, &Arc<RawLister>)> {
        let mp = self.target.multipart.as_ref()?;
        let raw = self.target.raw.as_ref().filter(|r| r.lists_uploads())?;
        Some((mp, raw))
    }

    /// Just before creating an upload of `key`: an earlier start of the
    /// same key not followed by a recorded id (its create failed, its
    /// answer perhaps lost) is cleared first, then this one is noted.
    /// Returns whether the earlier one could not be cleared now: then the
    /// start must outlive the new upload's record (`begin_upload`'s
    /// `keep_start`), for the next pass to try again.
    pub(crate) async fn note_start(&self, key: &str) -> Result<bool, Error> {
        let Some((mp, raw)) = self.upload_lister() else {
            return Ok(false);
        };
        let kept = match self.start_of(key).await? {
            Some(at) => !self.clear_or_keep(mp, raw, key, at).await?,
            None => false,
        };
        let key = key.to_owned();
        blocking(&self.manifest, move |m| m.note_upload_start(&key, now_ms())).await?;
        Ok(kept)
    }

    /// After the upload of `key` whose create was tried more than once:
    /// its start is cleared now (what an earlier try created aborted),
    /// or, if the target cannot be asked now, at the next pass.
    pub(crate) async fn clear_start_now(&self, key: &str) -> Result<(), Error> {
        let Some((mp, raw)) = self.upload_lister() else {
            return Ok(());
        };
        if let Some(at) = self.start_of(key).await? {
            self.clear_or_keep(mp, raw, key, at).await?;
        }
        Ok(())
    }

    /// `key`'s upload start, if one is noted.
    async fn start_of(&self, key: &str) -> Result<Option<i64>, Error> {
        let key = key.to_owned();
        blocking(&self.manifest, move |m| m.upload_start(&key)).await
    }

    /// [`Ctx::clear_start`], keeping the start for the next pass when the
    /// target fails (logged); other failures are errors. Returns whether
    /// the start was cleared.
    async fn clear_or_keep(
        &self,
        mp: &Multipart,
        raw: &RawLister,
        key: &str,
        at: i64,
    ) -> Result<bool, Error> {
        match self.clear_start(mp, raw, key, at).await {
            Ok(()) => Ok(true),
            Err(e @ Error::StoreOp { .. }) => {
                tracing::warn!(
                    key,
                    error = %error_chain(&e),
                    "could not look for a multipart upload a stopped run or a lost answer may have left unrecorded: tried again at the next pass"
                );
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Abort the target's uploads of exactly `key` that no record names
    /// and that hold no part, then forget the start (noted at `at`, ms).
    /// A listing the server refuses is logged and the start forgotten; any
    /// other failure is an error and the start stays.
    async fn clear_start(
        &self,
        mp: &Multipart,
        raw: &RawLister,
        key: &str,
        at: i64,
    ) -> Result<(), Error> {
        let loc = parse_key(key)?;
        let recorded = {
            let key = key.to_owned();
            blocking(&self.manifest, move |m| m.upload(&key)).await?
        }
        .map(|h| UploadChecksum::of_recorded(&h.upload_id).1.to_owned());
        match raw
            .open_uploads(key)
            .await
            .map_err(|e| store_err("list open multipart uploads", e))?
        {
            UploadsListing::Refused(why) => tracing::warn!(
                key,
                answer = %why,
                "the target will not list open multipart uploads: an upload a stopped run may have left unrecorded for this key cannot be looked for (an AbortIncompleteMultipartUpload lifecycle rule on the target removes it)"
            ),
            UploadsListing::Listed(open) => {
                for u in open {
                    if recorded.as_deref() == Some(u.id.as_str()) {
                        continue;
                    }
                    match raw
                        .upload_parts(key, &u.id)
                        .await
                        .map_err(|e| store_err("list the parts of an open upload", e))?
                    {
                        UploadParts::None => {}
                        UploadParts::Some => continue,
                        UploadParts::Gone => {
                            tracing::warn!(
                                key,
                                upload = %u.id,
                                "an open upload the target listed for this key is unknown to its ListParts: not aborted"
                            );
                            continue;
                        }
                        UploadParts::Refused(why) => {
                            tracing::warn!(
                                key,
                                upload = %u.id,
                                answer = %why,
                                "the target will not list the parts of an open upload (s3:ListMultipartUploadParts): an upload a stopped run may have left unrecorded is not aborted (an AbortIncompleteMultipartUpload lifecycle rule on the target removes it)"
                            );
                            continue;
                        }
                    }
                    match mp.api().abort_multipart(&mp.path(&loc), &u.id).await {
                        Ok(()) => {}
                        // Gone by itself in between: nothing aborted.
                        Err(object_store::Error::NotFound { .. }) => continue,
                        Err(e) => return Err(store_err("abort unrecorded multipart upload", e)),
                    }
                    self.stats.uploads_unrecorded_aborted.fetch_add(1, Relaxed);
                    tracing::info!(
                        key,
                        upload = %u.id,
                        created = ?u.initiated,
                        noted_ms = at,
                        "aborted a multipart upload a stopped run created and never recorded"
                    );
                }
            }
        }
        let key = key.to_owned();
        blocking(&self.manifest, move |m| m.forget_upload_start(&key)).await
    }

    /// Start of a pass: clear every start an earlier run left. A key whose
    /// uploads cannot be listed or aborted now is logged and kept for the
    /// next pass; any other failure (the state directory's) stops the pass.
    pub(crate) async fn sweep_starts(&self) -> Result<(), Error> {
        let Some((mp, raw)) = self.upload_lister() else {
            return Ok(());
        };
        let starts = blocking(&self.manifest, |m| m.upload_starts()).await?;
        for (key, at) in starts {
            self.clear_or_keep(mp, raw, &key, at).await?;
        }
        Ok(())
    }
}
