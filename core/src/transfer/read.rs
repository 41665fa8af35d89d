//! Reading the source: single objects in one GET; multipart objects as
//! one ranged GET per part, up to `parts_in_flight` of them sent ahead of
//! the part being read (their round trips overlap; their bodies wait in
//! the sockets until read), so that a crash or a stop wastes at most the
//! parts in flight and what the sockets hold, and every range after the
//! first carries If-Match the first one's ETag.
//!
//! The bandwidth cap is a property of every source stream made here (the
//! first GET and the parts after it, a re-read after a dedup attempt, the
//! ranged reads of a resumed upload): each buffer waits for its share
//! inside the stream, so whoever reads it (a single PUT, a multipart
//! upload, a resumable upload, the dedup peek) is paced, and a reader that
//! drops a pending `next()` (a `select!` whose other branch won) loses no
//! byte: the wait, and its buffer, stay in the stream for the next call.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures::stream::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult};

use crate::base::error::Error;
use crate::base::error::store_err;
use crate::content::digest::Digester;
use crate::content::published::Published;
use crate::manifest::{SourceVersion, normalize_etag};
use crate::stores::StoreKind;
use crate::stores::body::body;
use crate::stores::fileio::SMALL_FILE;
use crate::stores::throttle::content_md5;
use crate::transfer::ctx::{ByteStream, Ctx};
use crate::transfer::plan::{Parts, Plan};

/// Whether a read error means the source is no longer the version being
/// copied (rather than a transient failure).
pub(crate) fn changed(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::NotFound { .. }
    )
}

impl Ctx {
    /// The MD5 the source publishes for the version being read, if it
    /// publishes one and `check-md5` is on: an S3 ETag that is a plain MD5
    /// (`etag`), or the Content-MD5 an Azure source's last GET or HEAD
    /// answer carried in this transfer.
    pub(crate) fn published(&self, etag: Option<&str>) -> Option<Published> {
        if !self.source.check_md5 {
            return None;
        }
        match self.source.kind {
            StoreKind::S3 => etag.and_then(Published::from_etag),
            StoreKind::Azure => content_md5(&self.source.pressure).map(|md5| Published {
                what: "Content-MD5",
                md5,
            }),
            StoreKind::Local | StoreKind::Gcs => None,
        }
    }

    /// The first GET of an object listed with `size` bytes: whole for a
    /// single PUT, its first part for multipart. `None`: it is gone.
    pub(crate) async fn open_source(
        &self,
        loc: &Path,
        plan: Plan,
        size: u64,
    ) -> Result<Option<GetResult>, Error> {
        let range = match plan {
            Plan::Multipart(parts) => Some(GetRange::Bounded(0..parts.part_size.min(size).max(1))),
            Plan::Single => None,
        };
        let got = match (&self.source.local, plan) {
            // A small local file: opened and read in one call.
            (Some(local), Plan::Single) if size <= SMALL_FILE => local.get_whole(loc, size).await,
            _ => {
                let opts = GetOptions {
                    range,
                    ..GetOptions::default()
                };
                self.source.inner.get_opts(loc, opts).await
            }
        };
        match got {
            Ok(g) => Ok(Some(g)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            // A read creates nothing: its 409 is the store refusing it.
            Err(source @ object_store::Error::AlreadyExists { .. }) => {
                Err(Error::SourceConflict { source })
            }
            Err(e) => Err(store_err("read source", e)),
        }
    }

    /// `stream` under the bandwidth cap (unchanged without one): each
    /// buffer is passed on once the cap lets its bytes through. The wait is
    /// a future held by the stream itself (`then`), not by its reader.
    fn capped(&self, stream: ByteStream) -> ByteStream {
        let Some(bw) = &self.bandwidth else {
            return stream;
        };
        let bw = Arc::clone(bw);
        stream
            .then(move |item| {
                let bw = Arc::clone(&bw);
                async move {
                    if let Ok(b) = &item {
                        bw.take(b.len()).await;
                    }
                    item
                }
            })
            .boxed()
    }

    /// The whole object as one stream, from the first GET's response,
    /// under the bandwidth cap.
    pub(crate) fn rest_of(&self, loc: &Path, plan: Plan, first: GetResult) -> ByteStream {
        let size = first.meta.size;
        let if_match = first.meta.e_tag.clone();
        let Plan::Multipart(parts) = plan else {
            return self.capped(body(first));
        };
        let parts = Parts { size, ..parts };
        let ranges = (1..parts.count()).map(|i| parts.range(i)).collect();
        let rest = self.part_reads(loc, ranges, if_match, size);
        self.capped(body(first).chain(rest).boxed())
    }

    /// Lazily read `ranges` one GET each, If-Match `if_match`, under the
    /// bandwidth cap; a response for an object of another size fails as a
    /// precondition.
    pub(crate) fn ranged(
        &self,
        loc: &Path,
        ranges: Vec<Range<u64>>,
        if_match: Option<String>,
        size: u64,
    ) -> ByteStream {
        self.capped(self.part_reads(loc, ranges, if_match, size))
    }

    /// [`Ctx::ranged`] without the cap. The GETs of the next
    /// `parts_in_flight` ranges are sent while the current one is read, so
    /// their round trips overlap it; only their answers' heads are awaited
    /// early (a body is read when its turn comes, so what is buffered ahead
    /// is the socket's, not the memory budget's).
    fn part_reads(
        &self,
        loc: &Path,
        ranges: Vec<Range<u64>>,
        if_match: Option<String>,
        size: u64,
    ) -> ByteStream {
        let store = Arc::clone(&self.source.inner);
        let loc = loc.clone();
        futures::stream::iter(ranges)
            .map(move |r| {
                let (store, loc, if_match) = (Arc::clone(&store), loc.clone(), if_match.clone());
                async move {
                    let opts = GetOptions {
                        if_match,
                        range: Some(GetRange::Bounded(r)),
                        ..GetOptions::default()
                    };
                    let got = store.get_opts(&loc, opts).await?;
                    if got.meta.size != size {
                        return Err(object_store::Error::Precondition {
                            path: loc.to_string(),
                            source: format!("size is now {}, was {size}", got.meta.size).into(),
                        });
                    }
                    Ok(body(got))
                }
            })
            .buffered(self.parts_in_flight.max(1))
            .try_flatten()
            .boxed()
    }

    /// Open the source object again (after a dedup attempt consumed the
    /// stream), refusing a different version than the one being copied;
    /// under the bandwidth cap.
    pub(crate) async fn reopen(
        &self,
        loc: &Path,
        version: &SourceVersion,
    ) -> Result<ByteStream, Error> {
        let got = self
            .source
            .inner
            .get_opts(loc, GetOptions::default())
            .await
            .map_err(|e| store_err("read source", e))?;
        let now = normalize_etag(got.meta.e_tag.as_deref());
        if got.meta.size != version.size
            || (now.is_some() && version.etag.is_some() && now != version.etag)
        {
            return Err(Error::SourceChanged(
                "source changed while being copied; retried next pass".into(),
            ));
        }
        Ok(self.capped(body(got)))
    }

    /// The next buffer of an object of `size` bytes, counted and fed to the
    /// digester; `None` at the end, or once more than `size` bytes came (the
    /// digester's `finish` then reports the change).
    ///
    /// Cancel-safe (`multipart` races it with part completions in a
    /// `select!`): its only await is the stream's `next()`, and nothing
    /// happens after it that a dropped future could leave half done. The
    /// streams made here keep their bandwidth wait inside (see `capped`).
    pub(crate) async fn read_next(
        &self,
        stream: &mut ByteStream,
        dig: &mut Digester,
        size: u64,
    ) -> Result<Option<bytes::Bytes>, Error> {
        let Some(b) = stream.next().await else {
            return Ok(None);
        };
        let b = b.map_err(|e| store_err("read source", e))?;
        self.stats.bytes_read.fetch_add(b.len() as u64, Relaxed);
        dig.update(&b);
        Ok((dig.total <= size).then_some(b))
    }
}
