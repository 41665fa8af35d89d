//! The one part pipeline of every multipart upload, fresh or resumed,
//! recorded or not: read the source stream, cut it at the part boundaries
//! of the object's [`Parts`] layout, hash and chunk each part on its own
//! (so a resumed upload never needs the finished parts' bytes), and hand
//! each part to a sender with at most `in_flight` sends running while the
//! next part is read. When the source published an MD5 of the object, it
//! runs over the parts in order, and each part carries its state.
//!
//! Two senders use it: [`Ctx::upload_unrecorded`] (object_store's
//! in-process multipart upload: Azure and local targets; a crash loses the
//! upload) and `resume` (the low-level multipart API: each part the target
//! confirms is recorded, synced, and a later run continues at the missing
//! ones).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::path::Path;
use object_store::{Attributes, PutMultipartOptions, PutPayload};

use crate::base::error::{Error, store_err};
use crate::content::chunk::{ChunkParams, ChunkRef, Segmented};
use crate::content::digest::Digested;
use crate::content::hash::Hash;
use crate::content::parthash::{self, PartHasher};
use crate::content::published::{Md5Run, Published};
use crate::manifest::PartHash;
use crate::transfer::ctx::{ByteStream, Ctx, Stop};
use crate::transfer::plan::Parts;
use crate::transfer::read::changed;

/// One part, cut, hashed and chunked, on its way to the target.
pub(crate) struct Part {
    /// Its number, from 0.
    pub(crate) index: u32,
    /// Its bytes.
    pub(crate) data: Bytes,
    /// Its share of the whole-object BLAKE3.
    pub(crate) hash: PartHash,
    /// Its content-defined chunks.
    pub(crate) chunks: Vec<ChunkRef>,
    /// The state of the running MD5 after this part.
    pub(crate) md5_after: Option<Vec<u8>>,
    /// The target holds it already (read again for the running MD5 only):
    /// nothing to send, only its record's MD5 state is new.
    pub(crate) held: bool,
}

/// One run of the part pipeline: which parts the stream holds, which of
/// them the target already has, and how many may be in flight.
pub(crate) struct PartsRun {
    pub(crate) layout: Parts,
    /// Parts whose bytes the stream holds, ascending.
    pub(crate) todo: Vec<u64>,
    /// Of those, parts the target already holds, by index with their
    /// BLAKE3 share: read again only to carry the running MD5 on; their
    /// bytes must still be the ones sent (else the object fails).
    pub(crate) held: BTreeMap<u64, PartHash>,
    pub(crate) in_flight: usize,
    /// When the pass is asked to stop, let the parts in flight finish and
    /// return [`Stop::Paused`] (uploads whose parts are recorded).
    pub(crate) pausable: bool,
    /// The MD5 of the object's bytes before the first part of `todo`,
    /// when the source may publish one.
    pub(crate) md5: Option<Md5Run>,
}

/// Hash and chunk part `index` of `layout` on its own.
fn prepare(layout: Parts, index: u64, data: Bytes, chunking: ChunkParams) -> Result<Part, Error> {
    let range = layout.range(index);
    let hash = if range.start == 0 && range.end == layout.size {
        PartHash::Whole(Hash::of(&data))
    } else {
        let mut h = PartHasher::new(layout.size, range.start, range.end)?;
        h.update(&data);
        PartHash::Subtrees(h.finish()?)
    };
    let mut chunks = Vec::new();
    let mut c = Segmented::new(chunking, None);
    c.push(&data, &mut chunks);
    c.finish(&mut chunks);
    let index = u32::try_from(index).map_err(|_| Error::PartOutOfRange(index))?;
    Ok(Part {
        index,
        data,
        hash,
        chunks,
        md5_after: None,
        held: false,
    })
}

/// The whole object's BLAKE3 and chunk list from its parts' shares, in
/// part order.
pub(crate) fn merge(
    parts: impl IntoIterator<Item = (PartHash, Vec<ChunkRef>)>,
    size: u64,
) -> Result<Digested, Error> {
    let mut subtrees = Vec::new();
    let mut whole = None;
    let mut chunks = Vec::new();
    for (hash, part_chunks) in parts {
        match hash {
            PartHash::Whole(h) => whole = Some(h),
            PartHash::Subtrees(s) => subtrees.extend(s),
        }
        chunks.extend(part_chunks);
    }
    let blake3 = match whole {
        Some(h) => h,
        None => parthash::root(subtrees, size)?,
    };
    Ok(Digested { blake3, chunks })
}

/// How a send of one part ends.
pub(crate) type Sent<'a> = BoxFuture<'a, Result<(), Stop>>;

impl Ctx {
    /// Send the parts of `run` from `stream`, which holds exactly their
    /// bytes in order (those the target holds are only read). A source
    /// longer or shorter than the layout, or a read refused because the
    /// source changed, is a [`Stop::Restart`]. The running MD5 at the end.
    #[tracing::instrument(level = "debug", skip_all, fields(parts = run.todo.len(), in_flight = run.in_flight))]
    pub(crate) async fn send_parts<'a>(
        &self,
        run: PartsRun,
        mut stream: ByteStream,
        mut send: impl FnMut(Part) -> Sent<'a>,
    ) -> Result<Option<Md5Run>, Stop> {
        let PartsRun {
            layout,
            todo,
            held: held_parts,
            in_flight,
            pausable,
            mut md5,
        } = run;
        let expected: u64 = todo.iter().map(|&i| layout.len(i)).sum();
        let mut received = 0u64;
        let mut todo = todo.into_iter().peekable();
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
            if pausable && buf.is_empty() && *self.stop.borrow() {
                while let Some(r) = pending.next().await {
                    r?;
                }
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
                    Stop::Restart(format!("source changed while being copied: {e}"))
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
                        "source longer than when it was listed".into(),
                    ));
                }
                if buf.is_empty()
                    && let Some(&index) = todo.peek()
                {
                    // One allocation per part, not a doubling series.
                    buf.reserve(usize::try_from(layout.len(index)).unwrap_or(0));
                }
                buf.extend_from_slice(&b);
            }
            while let Some(&index) = todo.peek() {
                let want = usize::try_from(layout.len(index)).unwrap_or(usize::MAX);
                if buf.len() < want {
                    break;
                }
                todo.next();
                let data = buf.split_to(want).freeze();
                let md5_after = md5.as_mut().map(|m| {
                    m.update(&data);
                    m.state()
                });
                let part = prepare(layout, index, data, self.chunking)?;
                let held = match held_parts.get(&index) {
                    Some(sent) if *sent != part.hash => {
                        return Err(Stop::Fail(Error::SentPartDiffers { index: part.index }));
                    }
                    Some(_) => true,
                    None => false,
                };
                pending.push(send(Part {
                    md5_after,
                    held,
                    ..part
                }));
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
                "source shorter than when it was listed".into(),
            ));
        }
        Ok(md5)
    }

    /// Upload `stream` (the whole object) with object_store's in-process
    /// multipart upload, for targets without the low-level multipart API.
    /// Nothing is recorded before completion: a crash starts it over.
    pub(crate) async fn upload_unrecorded(
        &self,
        loc: &Path,
        layout: Parts,
        in_flight: usize,
        stream: ByteStream,
        attributes: Attributes,
        published: Option<Published>,
    ) -> Result<(Digested, Option<String>), Stop> {
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
        let mut shares = Vec::new();
        let run = PartsRun {
            layout,
            todo: (0..layout.count()).collect(),
            held: BTreeMap::new(),
            in_flight,
            pausable: false,
            md5: published.map(|_| Md5Run::default()),
        };
        let sent = self
            .send_parts(run, stream, |part| {
                let n = part.data.len() as u64;
                let put = upload.put_part(PutPayload::from(part.data));
                shares.push((part.hash, part.chunks));
                let stats = Arc::clone(&self.stats);
                Box::pin(async move {
                    put.await.map_err(|e| store_err("upload part", e))?;
                    stats.bytes_written.fetch_add(n, Relaxed);
                    Ok(())
                })
            })
            .await;
        // Nothing is completed that does not hash to the source's MD5.
        let checked = sent.and_then(|md5| match (md5, published) {
            (Some(m), Some(p)) => Ok(m.check(&p)?),
            _ => Ok(()),
        });
        let digest = checked.and_then(|()| Ok(merge(shares, layout.size)?));
        let digest = match digest {
            Ok(d) => d,
            Err(e) => {
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
                Err(store_err("complete multipart upload", e).into())
            }
        }
    }
}
