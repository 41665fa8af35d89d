//! The streaming digester: every byte of an object passes through it once,
//! feeding the whole-object BLAKE3, the content-defined chunker and, when
//! the source published one, the MD5 it is checked against.

use crate::base::error::Error;
use crate::content::chunk::{ChunkParams, ChunkRef, Segmented};
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
