//! Content-defined chunking (FastCDC 2020) of a byte stream, each chunk named
//! by its BLAKE3, with bounded memory: the chunker never holds more than
//! `max + one pushed buffer` bytes, and never more than it was given: its
//! buffer grows with what is pushed, so a 100-byte object costs 100 bytes,
//! not the `2 × max` a large one may use.

use fastcdc::v2020;
use serde::{Deserialize, Serialize};

use crate::content::gear::Gear;
use crate::content::hash::Hash;

/// FastCDC size parameters, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Smallest chunk (except the last of an object).
    pub min: u32,
    /// Target average chunk size.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkParams {
    /// Check the parameters against FastCDC's bounds (it panics otherwise).
    pub fn validate(&self) -> Result<(), String> {
        let in_range = |v: u32, lo: u32, hi: u32, what: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("chunk {what} size {v} is outside {lo}..={hi}"))
            }
        };
        in_range(self.min, v2020::MINIMUM_MIN, v2020::MINIMUM_MAX, "min")?;
        in_range(self.avg, v2020::AVERAGE_MIN, v2020::AVERAGE_MAX, "avg")?;
        in_range(self.max, v2020::MAXIMUM_MIN, v2020::MAXIMUM_MAX, "max")?;
        if !(self.min <= self.avg && self.avg <= self.max) {
            return Err(format!(
                "chunk sizes must satisfy min <= avg <= max (got {} / {} / {})",
                self.min, self.avg, self.max
            ));
        }
        Ok(())
    }
}

/// One content-defined chunk of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub hash: Hash,
    /// Length in bytes.
    pub len: u32,
}

/// Streaming chunker: push bytes as they arrive, collect the chunks whose
/// boundaries are settled, call [`Chunker::finish`] at the end of the object.
#[derive(Debug)]
pub struct Chunker {
    gear: Gear,
    buf: Vec<u8>,
    start: usize,
}

impl Chunker {
    /// A chunker; `params` must have passed [`ChunkParams::validate`].
    ///
    /// The buffer starts empty and grows with what is pushed. Reserving
    /// `2 × max` up front (8 MiB by default) for every object cost a pass
    /// over 10⁶ tiny files its memory goal: each object reserved 8 MiB it
    /// touched 100 bytes of, and the allocator's heaps, carved that
    /// coarsely, kept ever more pages resident as the pass went on.
    pub fn new(params: ChunkParams) -> Self {
        Self {
            gear: Gear::new(params),
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Feed bytes; settled chunks are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<ChunkRef>) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        // A cut point depends only on the bytes from the chunk's start up to
        // `max`, so once `max` bytes are buffered the next chunk is settled.
        while self.buf.len() - self.start >= self.gear.max() {
            self.cut_one(out);
        }
    }

    /// End of the object: emit the remaining chunks.
    pub fn finish(mut self, out: &mut Vec<ChunkRef>) {
        self.end_segment(out);
    }

    /// Emit the remaining chunks and start afresh, keeping the buffer's
    /// allocation for the next segment.
    fn end_segment(&mut self, out: &mut Vec<ChunkRef>) {
        while self.start < self.buf.len() {
            self.cut_one(out);
        }
        self.buf.clear();
        self.start = 0;
    }

    fn cut_one(&mut self, out: &mut Vec<ChunkRef>) {
        let rest = &self.buf[self.start..];
        let len = self.gear.cut(rest);
        let bytes = &rest[..len];
        out.push(ChunkRef {
            hash: Hash::of(bytes),
            len: u32::try_from(len).unwrap_or(u32::MAX),
        });
        self.start += len;
    }
}

/// Chunk `data`, a whole object or part held in memory, without copying
/// it: the same chunks as [`Chunker`] fed the same bytes in any pieces.
pub fn chunk_slice(params: ChunkParams, mut data: &[u8], out: &mut Vec<ChunkRef>) {
    let gear = Gear::new(params);
    while !data.is_empty() {
        let (bytes, rest) = data.split_at(gear.cut(data));
        out.push(ChunkRef {
            hash: Hash::of(bytes),
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        });
        data = rest;
    }
}

/// A chunker whose boundaries are also forced every `segment` bytes: the
/// parts of a multipart upload. Each part's chunks then depend on that
/// part's bytes alone, so a resumed upload chunks its missing parts without
/// reading the finished ones, and the object's chunk list is the
/// concatenation of its parts' lists.
#[derive(Debug)]
pub struct Segmented {
    inner: Chunker,
    segment: Option<u64>,
    pos: u64,
}

impl Segmented {
    /// Boundaries every `segment` bytes (`None`: content-defined only).
    pub fn new(params: ChunkParams, segment: Option<u64>) -> Self {
        Self {
            inner: Chunker::new(params),
            segment: segment.filter(|s| *s > 0),
            pos: 0,
        }
    }

    /// Feed bytes; settled chunks are appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<ChunkRef>) {
        let Some(segment) = self.segment else {
            self.inner.push(data, out);
            return;
        };
        while !data.is_empty() {
            let room = usize::try_from(segment - self.pos).unwrap_or(usize::MAX);
            let take = room.min(data.len());
            self.inner.push(&data[..take], out);
            self.pos += take as u64;
            data = &data[take..];
            if self.pos == segment {
                self.inner.end_segment(out);
                self.pos = 0;
            }
        }
    }

    /// End of the object: emit the remaining chunks.
    pub fn finish(self, out: &mut Vec<ChunkRef>) {
        self.inner.finish(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkParams {
        ChunkParams {
            min: 64,
            avg: 256,
            max: 1024,
        }
    }

    fn chunk_all(data: &[u8], pieces: &[usize], p: ChunkParams) -> Vec<ChunkRef> {
        let mut c = Chunker::new(p);
        let mut out = Vec::new();
        let mut off = 0;
        for &n in pieces {
            let end = (off + n).min(data.len());
            c.push(&data[off..end], &mut out);
            off = end;
        }
        c.push(&data[off..], &mut out);
        c.finish(&mut out);
        out
    }

    #[test]
    fn rejects_out_of_range_params() {
        assert!(ChunkParams::default().validate().is_ok());
        let bad = ChunkParams {
            min: 1,
            avg: 2,
            max: 3,
        };
        assert!(bad.validate().is_err());
        let unordered = ChunkParams {
            min: 4096,
            avg: 1024,
            max: 8192,
        };
        assert!(unordered.validate().is_err());
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_all(&[], &[], small()).is_empty());
    }

    #[test]
    fn holds_what_it_was_given_not_twice_max() {
        // A tiny object reserves its bytes, not 2 × max (8 MiB by default).
        let p = ChunkParams::default();
        let mut c = Segmented::new(p, Some(8 << 20));
        let mut out = Vec::new();
        c.push(&[7; 100], &mut out);
        assert!(c.inner.buf.capacity() < 4096, "{}", c.inner.buf.capacity());
        // A large one stays within max plus one pushed buffer (twice that
        // while the buffer grows), across its segments.
        let piece = vec![3u8; 64 << 10];
        for _ in 0..(40 << 20) / piece.len() {
            c.push(&piece, &mut out);
            let cap = c.inner.buf.capacity();
            assert!(cap <= 2 * (p.max as usize + piece.len()), "{cap}");
        }
        c.finish(&mut out);
        let total: u64 = out.iter().map(|r| u64::from(r.len)).sum();
        assert_eq!(total, 100 + (40 << 20));
    }

    proptest! {
        // chunk-then-concatenate == input: chunk lengths tile the input and
        // each chunk hash is the hash of exactly that slice; the result does
        // not depend on how the stream was split into pushes.
        #[test]
        fn chunks_tile_the_input_whatever_the_push_sizes(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            pieces in proptest::collection::vec(1usize..3000, 0..20),
        ) {
            let p = small();
            let chunks = chunk_all(&data, &pieces, p);
            let mut rebuilt = Vec::new();
            let mut off = 0usize;
            for c in &chunks {
                let s = &data[off..off + c.len as usize];
                prop_assert_eq!(Hash::of(s), c.hash);
                prop_assert!(c.len <= p.max);
                rebuilt.extend_from_slice(s);
                off += c.len as usize;
            }
            prop_assert_eq!(rebuilt, data.clone());
            prop_assert_eq!(&chunks, &chunk_all(&data, &[data.len().max(1)], p));
            let mut sliced = Vec::new();
            chunk_slice(p, &data, &mut sliced);
            prop_assert_eq!(sliced, chunks);
        }

        // segmented chunking == chunking each segment on its own
        #[test]
        fn segments_chunk_independently(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            pieces in proptest::collection::vec(1usize..3000, 0..20),
            segment in 1024u64..6000,
        ) {
            let p = small();
            let mut s = Segmented::new(p, Some(segment));
            let mut out = Vec::new();
            let mut off = 0;
            for &n in &pieces {
                let end = (off + n).min(data.len());
                s.push(&data[off..end], &mut out);
                off = end;
            }
            s.push(&data[off..], &mut out);
            s.finish(&mut out);
            let mut want = Vec::new();
            for seg in data.chunks(usize::try_from(segment).unwrap_or(1)) {
                want.extend(chunk_all(seg, &[], p));
            }
            prop_assert_eq!(out, want);
        }

        // streaming whole-object hash == one-shot blake3::hash
        #[test]
        fn streaming_hash_equals_one_shot(
            data in proptest::collection::vec(any::<u8>(), 0..300_000),
            cut in 0usize..300_000,
        ) {
            let cut = cut.min(data.len());
            let mut h = blake3::Hasher::new();
            h.update(&data[..cut]);
            h.update(&data[cut..]);
            prop_assert_eq!(h.finalize(), blake3::hash(&data));
        }
    }
}
