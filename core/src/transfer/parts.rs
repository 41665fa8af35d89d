//! The one part pipeline of every multipart upload, fresh or resumed,
//! recorded or not: read the source stream, cut it at the part boundaries
//! of the object's [`Parts`] layout, hash and chunk each part on its own
//! (so a resumed upload never needs the finished parts' bytes; on the
//! blocking pool, the hash and the chunks on two threads, two parts at
//! once unless a running MD5 orders them), and hand
//! each part to a sender with at most `in_flight` sends running while the
//! next part is read. When the source published an MD5 of the object, it
//! runs over the parts in order, and each part carries its state.
//!
//! Two senders use it: [`Ctx::upload_unrecorded`] (object_store's
//! in-process multipart upload: Azure and local targets; a crash loses the
//! upload) and `resume` (the low-level multipart API: each part the target
//! confirms is recorded, synced, and a later run continues at the missing
//! ones).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::path::Path;
use object_store::{Attributes, PutMultipartOptions, PutPayload};
use tokio::task::JoinHandle;

use crate::base::error::{Error, store_err};
use crate::content::chunk::{ChunkParams, ChunkRef};
use crate::content::digest::{Digested, hash_and_chunk};
use crate::content::hash::Hash;
use crate::content::parthash::{self, PartHasher};
use crate::content::published::{Md5Run, Published};
use crate::manifest::PartHash;
use crate::transfer::ctx::{ByteStream, Ctx, Stop};
use crate::transfer::plan::Parts;
use crate::transfer::read::changed;

/// Parts hashed and chunked at once for one object, when no running MD5
/// orders them: each runs on two threads, whose halves are uneven (the cut
/// search is the longer), so two parts fill two cores where one left them
/// a third idle.
const PREPARING: usize = 2;

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

/// One part cut from the stream, not yet hashed.
struct Cut {
    index: u64,
    data: Bytes,
    /// The share of the whole-object BLAKE3 the target's copy has, when
    /// the target holds this part already.
    held: Option<PartHash>,
}

/// Buffers of confirmed parts kept for the next parts of the same object.
/// A part's buffer is otherwise fresh memory each time (8 MiB by default,
/// which glibc maps and zeroes page by page: page faults and `clear_page`
/// were as much CPU as the copy into it on the large rows); two suffice,
/// as a confirmed part frees its slot for exactly one next part. Buffers
/// never outlive the object, so they stay within its memory reservation.
const SPARES: usize = 2;

/// A part hashed and chunked, with the running MD5 after it.
type Prepared = Result<(Part, Option<Md5Run>), Stop>;

/// Hash and chunk part `cut` of `layout` on its own (two threads), with
/// the running MD5 carried over it; a part the target holds must hash as
/// the one sent. Blocking: runs on the blocking pool.
fn prepare(layout: Parts, cut: Cut, chunking: ChunkParams, mut md5: Option<Md5Run>) -> Prepared {
    let Cut { index, data, held } = cut;
    let range = layout.range(index);
    let (hash, chunks) = hash_and_chunk(&data, chunking, |data| {
        if range.start == 0 && range.end == layout.size {
            Ok(PartHash::Whole(Hash::of(data)))
        } else {
            let mut h = PartHasher::new(layout.size, range.start, range.end)?;
            h.update(data);
            Ok::<_, Error>(PartHash::Subtrees(h.finish()?))
        }
    });
    let hash = hash?;
    let index = u32::try_from(index).map_err(|_| Error::PartOutOfRange(index))?;
    let md5_after = md5.as_mut().map(|m| {
        m.update(&data);
        m.state()
    });
    let held = match held {
        Some(sent) if sent != hash => return Err(Stop::Fail(Error::SentPartDiffers { index })),
        Some(_) => true,
        None => false,
    };
    let part = Part {
        index,
        data,
        hash,
        chunks,
        md5_after,
        held,
    };
    Ok((part, md5))
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

/// Cuts the parts of a [`PartsRun`] out of the source's buffers, in order.
struct Cutter {
    layout: Parts,
    todo: std::iter::Peekable<std::vec::IntoIter<u64>>,
    held: BTreeMap<u64, PartHash>,
    md5: Option<Md5Run>,
    buf: BytesMut,
    /// Confirmed parts' buffers, cleared, for the next parts to fill.
    spares: Vec<BytesMut>,
    /// Bytes the stream should hold, and has given so far.
    expected: u64,
    received: u64,
}

impl Cutter {
    fn new(run: PartsRun) -> Self {
        let layout = run.layout;
        Self {
            expected: run.todo.iter().map(|&i| layout.len(i)).sum(),
            layout,
            todo: run.todo.into_iter().peekable(),
            held: run.held,
            md5: run.md5,
            buf: BytesMut::new(),
            spares: Vec::new(),
            received: 0,
        }
    }

    /// Take the next buffer of the stream.
    fn take(&mut self, b: &[u8]) -> Result<(), Stop> {
        self.received += b.len() as u64;
        if self.received > self.expected {
            return Err(Stop::Restart(
                "source longer than when it was listed".into(),
            ));
        }
        if self.buf.is_empty()
            && let Some(&index) = self.todo.peek()
        {
            // One buffer per part, not a doubling series: a confirmed
            // part's when there is one.
            let want = usize::try_from(self.layout.len(index)).unwrap_or(0);
            self.buf = match self.spares.pop() {
                Some(b) if b.capacity() >= want => b,
                _ => BytesMut::with_capacity(want),
            };
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }

    /// The next part, once all its bytes are in.
    fn next_cut(&mut self) -> Option<Cut> {
        let &index = self.todo.peek()?;
        let want = usize::try_from(self.layout.len(index)).unwrap_or(usize::MAX);
        if self.buf.len() < want {
            return None;
        }
        self.todo.next();
        // The buffer itself when it holds just this part, so that the part
        // is its only owner and its buffer can come back (`recycle`).
        let data = if self.buf.len() == want {
            std::mem::take(&mut self.buf)
        } else {
            self.buf.split_to(want)
        };
        Some(Cut {
            index,
            data: data.freeze(),
            held: self.held.remove(&index),
        })
    }

    /// A part the target confirmed: its buffer, if nothing else holds it
    /// any more, fills a next part.
    fn recycle(&mut self, sent: Bytes) {
        if self.spares.len() < SPARES
            && let Ok(mut b) = sent.try_into_mut()
        {
            b.clear();
            self.spares.push(b);
        }
    }

    /// Every part was cut: the running MD5.
    fn finish(mut self) -> Result<Option<Md5Run>, Stop> {
        if self.todo.peek().is_some() {
            return Err(Stop::Restart(
                "source shorter than when it was listed".into(),
            ));
        }
        Ok(self.md5)
    }
}

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
        let (in_flight, pausable) = (run.in_flight.max(1), run.pausable);
        let mut cutter = Cutter::new(run);
        let mut pending = FuturesUnordered::new();
        // Parts being hashed and chunked on the blocking pool, handed on in
        // part order (object_store numbers parts as they are put, and the
        // chunk list is their concatenation): two at once, so one object
        // keeps both cores busy, or one when the running MD5 must go
        // through the parts in order. Each holds a part slot, as the sends do.
        let most = if cutter.md5.is_some() { 1 } else { PREPARING };
        let mut preparing: VecDeque<JoinHandle<Prepared>> = VecDeque::new();
        let mut ended = false;
        loop {
            while preparing.len() < most {
                let Some(cut) = cutter.next_cut() else { break };
                let (layout, chunking, md5) = (cutter.layout, self.chunking, cutter.md5.take());
                preparing.push_back(tokio::task::spawn_blocking(move || {
                    prepare(layout, cut, chunking, md5)
                }));
            }
            if preparing.is_empty() && ended {
                break;
            }
            if pausable && preparing.is_empty() && cutter.buf.is_empty() && *self.stop.borrow() {
                while let Some(r) = pending.next().await {
                    r?;
                }
                return Err(Stop::Paused);
            }
            // Read on only while a part slot is free: bytes read but not yet
            // confirmed stay within `in_flight` parts, what a crash can cost.
            let reading = !ended && pending.len() + preparing.len() < in_flight;
            // Parts keep uploading while the next one is hashed and read.
            tokio::select! {
                biased;
                Some(r) = pending.next(), if !pending.is_empty() => cutter.recycle(r?),
                done = async {
                    match preparing.front_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                }, if !preparing.is_empty() => {
                    preparing.pop_front();
                    let (part, md5) = done.map_err(|_| Stop::Fail(Error::ShuttingDown))??;
                    cutter.md5 = md5;
                    // Its bytes come back once sent, for the next part.
                    let data = part.data.clone();
                    let sent = send(part);
                    pending.push(async move { sent.await.map(|()| data) });
                }
                next = stream.next(), if reading => {
                    let next = next.transpose().map_err(|e| {
                        if changed(&e) {
                            Stop::Restart(format!("source changed while being copied: {e}"))
                        } else {
                            Stop::Fail(store_err("read source", e))
                        }
                    })?;
                    match next {
                        Some(b) => {
                            self.stats.bytes_read.fetch_add(b.len() as u64, Relaxed);
                            cutter.take(&b)?;
                        }
                        None => ended = true,
                    }
                }
                else => break,
            }
        }
        while let Some(r) = pending.next().await {
            r?;
        }
        cutter.finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cutter(size: u64, part_size: u64) -> Cutter {
        let layout = Parts { size, part_size };
        Cutter::new(PartsRun {
            layout,
            todo: (0..layout.count()).collect(),
            held: BTreeMap::new(),
            in_flight: 2,
            pausable: false,
            md5: None,
        })
    }

    /// Feed `bytes` in pieces of `piece` and cut what is complete.
    fn feed(c: &mut Cutter, bytes: &[u8], piece: usize) -> Vec<Cut> {
        let mut cuts = Vec::new();
        for p in bytes.chunks(piece) {
            c.take(p).map_err(|_| "take").expect("within the layout");
            while let Some(cut) = c.next_cut() {
                cuts.push(cut);
            }
        }
        cuts
    }

    #[test]
    fn a_sent_parts_buffer_fills_the_next_part_and_a_held_one_is_left_alone() {
        let part = 64 * 1024;
        let size = 3 * part as u64 + 1000;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut c = cutter(size, part as u64);
        let at = |i: usize| &data[i * part..((i + 1) * part).min(data.len())];

        let first = feed(&mut c, at(0), 10_000);
        assert_eq!(first.len(), 1);
        let p0 = first.into_iter().next().expect("part 0").data;
        assert_eq!(&p0[..], at(0));
        let p0_addr = p0.as_ptr();
        // Sent and confirmed, nothing else holds it: its buffer comes back
        // (kept, not freed: the allocator might hand the same address out
        // again anyway).
        c.recycle(p0);
        assert_eq!(c.spares.len(), 1, "part 0's buffer kept");
        let p1 = feed(&mut c, at(1), 9_999).pop().expect("part 1").data;
        assert!(c.spares.is_empty(), "and taken by part 1");
        assert_eq!(p1.as_ptr(), p0_addr, "part 1 fills part 0's buffer");
        assert_eq!(&p1[..], at(1));

        // Someone still holds part 1 (a retry, a connection): not reused,
        // and its bytes stay what was sent.
        let held = p1.clone();
        c.recycle(p1);
        assert!(c.spares.is_empty(), "a buffer held elsewhere is not kept");
        let p2 = feed(&mut c, at(2), 4_096).pop().expect("part 2").data;
        assert_ne!(p2.as_ptr(), held.as_ptr());
        assert_eq!(&held[..], at(1));
        assert_eq!(&p2[..], at(2));

        // The short last part reuses a larger buffer.
        c.recycle(p2);
        assert_eq!(c.spares.len(), 1);
        let p3 = feed(&mut c, at(3), 300).pop().expect("part 3").data;
        assert_eq!(&p3[..], at(3));
        assert_eq!(p3.len(), 1000);
        assert!(c.finish().is_ok());
    }

    #[test]
    fn a_piece_across_a_part_boundary_is_split_between_the_parts() {
        let part = 5000;
        let size = 12_345u64;
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let mut c = cutter(size, part);
        let mut got = Vec::new();
        for cut in feed(&mut c, &data, 3001) {
            c.recycle(cut.data.clone());
            got.push(cut.data);
        }
        let lens: Vec<usize> = got.iter().map(Bytes::len).collect();
        assert_eq!(lens, [5000, 5000, 2345]);
        assert_eq!(got.concat(), data);
        assert!(c.finish().is_ok());
    }
}
