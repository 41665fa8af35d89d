//! Objects already at the target that the manifest does not know: a state
//! directory lost or deleted, a shard that gained keys another shard
//! wrote, a target filled by an earlier tool. Until the job's first
//! complete full pass under its current filter (`Ctx::adopt`), an
//! unrecorded key is first looked at the target (one HEAD, before the
//! source is read). Only an object of the same size and attributes there
//! goes on: the source is read and hashed without writing, the target's
//! object is read and hashed, and equal bytes are recorded as they stand,
//! with the ETag of the version read (outcome *adopted*): read twice,
//! written never. Another size or attributes at the HEAD: the object is
//! written as usual, its source read once; other bytes (or a version
//! changed since the HEAD): the source is read again and written. After a
//! complete full pass the manifest knows every object passeur wrote, and
//! no key is looked at first.

use std::sync::atomic::Ordering::Relaxed;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetResult, ObjectStoreExt};

use crate::base::error::{Error, store_err};
use crate::content::digest::{Digested, Digester};
use crate::content::hash::Hash;
use crate::content::published::Published;
use crate::stores::body::body;
use crate::transfer::attrs;
use crate::transfer::ctx::{ByteStream, Ctx};

impl Ctx {
    /// When adoption is on: whether the target holds an object at `loc`
    /// of `size` bytes whose attributes digest to `attrs_digest` (one
    /// HEAD, before the source is read: a key that cannot be adopted costs
    /// the source nothing).
    pub(crate) async fn adoptable(
        &self,
        loc: &Path,
        size: u64,
        attrs_digest: &Hash,
    ) -> Result<bool, Error> {
        if !self.adopt {
            return Ok(false);
        }
        let head = GetOptions::new().with_head(true);
        match self.target.inner.get_opts(loc, head).await {
            Ok(got) => Ok(got.meta.size == size && self.same_attrs(&got, attrs_digest)),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err("look at the target", e)),
        }
    }

    /// Whether `got` (a HEAD or GET of the target) has the attributes
    /// `attrs_digest` names (always, at a target that keeps none).
    pub(crate) fn same_attrs(&self, got: &GetResult, attrs_digest: &Hash) -> bool {
        !self.target.supports_attributes() || attrs::matches(&got.attributes, attrs_digest)
    }

    /// Read the source (`stream`, `size` bytes, hashed and chunked as its
    /// upload would be: parts of `parts` bytes) and the target's object
    /// at `loc`: the source's digest and the ETag of the target's version
    /// read when both hold the same bytes (and the target's attributes
    /// still digest to `attrs_digest`); `None` otherwise (the caller reads
    /// the source again and writes it).
    pub(crate) async fn same_at_target(
        &self,
        loc: &Path,
        (size, parts): (u64, Option<u64>),
        mut stream: ByteStream,
        published: Option<Published>,
        attrs_digest: &Hash,
    ) -> Result<Option<(Digested, Option<String>)>, Error> {
        let mut dig = Digester::new(self.chunking, parts, published);
        while self.read_next(&mut stream, &mut dig, size).await?.is_some() {}
        let digest = dig.finish(size)?;
        let got = match self.target.inner.get(loc).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err("read the target", e)),
        };
        // It may have changed since the HEAD: judge the version read.
        if got.meta.size != size || !self.same_attrs(&got, attrs_digest) {
            return Ok(None);
        }
        let etag = got.meta.e_tag.clone();
        let mut hasher = blake3::Hasher::new();
        let mut target = body(got);
        while let Some(b) = target.next().await {
            let b = b.map_err(|e| store_err("read the target", e))?;
            self.stats.bytes_compared.fetch_add(b.len() as u64, Relaxed);
            hasher.update(&b);
        }
        let found: Hash = hasher.finalize().into();
        Ok((found == digest.blake3).then_some((digest, etag)))
    }
}
