//! The streaming digester: every byte of an object passes through it once,
//! feeding the whole-object BLAKE3, the content-defined chunker and, when
//! the source published one, the MD5 it is checked against; and
//! [`hash_and_chunk`], the same work on bytes held whole in memory (a
//! part), on two cores.

use crate::base::error::Error;
use crate::content::chunk::{ChunkParams, ChunkRef, Segmented, chunk_slice};
use crate::content::hash::Hash;
use crate::content::published::{Md5Run, Published};

/// What a digester found: the object's BLAKE3 and its chunks.
pub(crate) struct Digested {
    pub(crate) blake3: Hash,
    pub(crate) chunks: Vec<ChunkRef>,
}

/// Hashes and chunks a stream as it passes.
pub(crate) struct Digester {
    hasher: blake3::Hasher,
    chunker: Segmented,
    pub(crate) chunks: Vec<ChunkRef>,
    pub(crate) total: u64,
    /// The source's checksum of the object, and the MD5 running to it.
    check: Option<(Published, Md5Run)>,
}

impl Digester {
    /// `parts`: the part size of a multipart object, whose parts are
    /// chunked independently (see [`Segmented`]); `None` for single PUTs.
    /// `published`: the checksum the bytes must match at the end.
    pub(crate) fn new(p: ChunkParams, parts: Option<u64>, published: Option<Published>) -> Self {
        Self {
            hasher: blake3::Hasher::new(),
            chunker: Segmented::new(p, parts),
            chunks: Vec::new(),
            total: 0,
            check: published.map(|p| (p, Md5Run::default())),
        }
    }
    pub(crate) fn update(&mut self, b: &[u8]) {
        self.hasher.update(b);
        self.chunker.push(b, &mut self.chunks);
        if let Some((_, md5)) = &mut self.check {
            md5.update(b);
        }
        self.total += b.len() as u64;
    }
    pub(crate) fn finish(mut self, expected: u64) -> Result<Digested, Error> {
        if self.total != expected {
            return Err(Error::SourceChanged(format!(
                "source changed while being read: expected {expected} bytes, got {}",
                self.total
            )));
        }
        if let Some((published, md5)) = self.check {
            md5.check(&published)?;
        }
        self.chunker.finish(&mut self.chunks);
        Ok(Digested {
            blake3: self.hasher.finalize().into(),
            chunks: self.chunks,
        })
    }
}

/// Below this many bytes, hashing and chunking stay on one thread (a
/// thread costs tens of microseconds; 1 MiB takes a few hundred).
const PARALLEL_FROM: usize = 1024 * 1024;

/// Hash `data` with `hash` and cut it into content-defined chunks, each
/// chunk hashed: the two halves of the work run on two threads (the
/// caller's and a scoped one), so a part costs the time of the slower half
/// rather than of both. Blocking: call it off the async workers.
pub fn hash_and_chunk<H: Send>(
    data: &[u8],
    chunking: ChunkParams,
    hash: impl FnOnce(&[u8]) -> H + Send,
) -> (H, Vec<ChunkRef>) {
    let mut chunks = Vec::new();
    if data.len() < PARALLEL_FROM {
        chunk_slice(chunking, data, &mut chunks);
        return (hash(data), chunks);
    }
    let h = std::thread::scope(|s| {
        let hashing = s.spawn(|| hash(data));
        chunk_slice(chunking, data, &mut chunks);
        hashing.join()
    });
    match h {
        Ok(h) => (h, chunks),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_threads_give_what_the_streaming_digester_gives() {
        let p = ChunkParams::default();
        let data: Vec<u8> = (0..3 * PARALLEL_FROM as u64 + 12_345)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 29) as u8)
            .collect();
        for len in [0, 1, PARALLEL_FROM - 1, PARALLEL_FROM, data.len()] {
            let bytes = &data[..len];
            let mut d = Digester::new(p, None, None);
            for piece in bytes.chunks(65_536) {
                d.update(piece);
            }
            let want = d.finish(len as u64).expect("digest");
            let (h, chunks) = hash_and_chunk(bytes, p, Hash::of);
            assert_eq!(h, want.blake3, "{len} bytes");
            assert_eq!(chunks, want.chunks, "{len} bytes");
        }
    }

    /// What the `fastcdc` crate cuts, one thread, each chunk hashed.
    fn reference(p: ChunkParams, data: &[u8]) -> Vec<ChunkRef> {
        fastcdc::v2020::FastCDC::new(data, p.min, p.avg, p.max)
            .map(|c| ChunkRef {
                hash: Hash::of(&data[c.offset..c.offset + c.length]),
                len: c.length as u32,
            })
            .collect()
    }

    #[test]
    fn cuts_what_fastcdc_cuts_whatever_the_bytes() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect()
        };
        let default = ChunkParams::default();
        let small = ChunkParams {
            min: 64,
            avg: 256,
            max: 1024,
        };
        let pattern = random(1000);
        let mut shapes: Vec<(&str, Vec<u8>, ChunkParams)> = vec![
            ("random 8 MiB part", random(8 << 20), default),
            ("random, unaligned", random((9 << 20) + 12_345), default),
            ("random 5 MiB", random(5 << 20), default),
            // Never passes the masks: cut every `max`.
            ("zeros 8 MiB", vec![0; 8 << 20], default),
            ("zeros 5 MiB", vec![0; 5 << 20], default),
            ("one period repeated", pattern.repeat(3000), small),
            ("random, small chunks", random((2 << 20) + 7), small),
            ("zeros, small chunks", vec![0; (3 << 20) + 100], small),
        ];
        let mut runs = random(6 << 20);
        for (i, b) in runs.iter_mut().enumerate() {
            if (i >> 16) % 3 == 0 {
                *b = 0;
            }
        }
        shapes.push(("random with zero runs", runs, default));
        for (what, data, p) in &shapes {
            let (h, chunks) = hash_and_chunk(data, *p, Hash::of);
            assert_eq!(h, Hash::of(data), "{what}");
            assert_eq!(chunks, reference(*p, data), "{what}");
        }
    }

    #[test]
    #[should_panic(expected = "hash failed")]
    fn a_panic_in_the_hash_reaches_the_caller() {
        let data = vec![1u8; 3 << 20];
        let _ = hash_and_chunk(&data, ChunkParams::default(), |_| -> Hash {
            panic!("hash failed")
        });
    }
}
