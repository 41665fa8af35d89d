//! Objects already at the target that the manifest does not know: a state
//! directory lost or deleted, a shard that gained keys another shard
//! wrote, a target filled by an earlier tool. Until the job's first
//! complete full pass under its current filter (`Ctx::adopt`), an
//! unrecorded key is first looked at the target (HEAD); if an object of
//! the same size is there, the source is read and hashed without writing,
//! the target's object is read and hashed, and equal bytes with equal
//! attributes are recorded as they stand (outcome *adopted*): the object
//! is read twice and written never. Anything else — another size, other
//! bytes, other attributes — is read again and written as usual. After a
//! complete full pass the manifest knows every object passeur wrote, and
//! no key is looked at first.

use std::sync::atomic::Ordering::Relaxed;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::base::error::{Error, store_err};
use crate::content::digest::{Digested, Digester};
use crate::content::hash::Hash;
use crate::content::published::Published;
use crate::stores::body::body;
use crate::transfer::attrs;
use crate::transfer::ctx::{ByteStream, Ctx};

impl Ctx {
    /// When adoption is on: the target's object at `loc`, if it has
    /// `size` bytes.
    pub(crate) async fn adoptable(
        &self,
        loc: &Path,
        size: u64,
    ) -> Result<Option<ObjectMeta>, Error> {
        if !self.adopt {
            return Ok(None);
        }
        match self.target.inner.head(loc).await {
            Ok(m) if m.size == size => Ok(Some(m)),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err("look at the target", e)),
        }
    }

    /// Read the source (`stream`, `size` bytes, hashed and chunked as its
    /// upload would be: parts of `parts` bytes) and the target's object
    /// at `loc`: the source's digest when both hold the same bytes and the
    /// target's attributes digest to `attrs_digest`; `None` otherwise (the
    /// caller reads the source again and writes it).
    pub(crate) async fn same_at_target(
        &self,
        loc: &Path,
        (size, parts): (u64, Option<u64>),
        mut stream: ByteStream,
        published: Option<Published>,
        attrs_digest: &Hash,
    ) -> Result<Option<Digested>, Error> {
        let mut dig = Digester::new(self.chunking, parts, published);
        while self.read_next(&mut stream, &mut dig, size).await?.is_some() {}
        let digest = dig.finish(size)?;
        let got = match self.target.inner.get(loc).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err("read the target", e)),
        };
        let same_attrs =
            !self.target.supports_attributes() || attrs::digest(&got.attributes) == *attrs_digest;
        if got.meta.size != size || !same_attrs {
            return Ok(None);
        }
        let mut hasher = blake3::Hasher::new();
        let mut target = body(got);
        while let Some(b) = target.next().await {
            let b = b.map_err(|e| store_err("read the target", e))?;
            self.stats.bytes_compared.fetch_add(b.len() as u64, Relaxed);
            hasher.update(&b);
        }
        let found: Hash = hasher.finalize().into();
        Ok((found == digest.blake3).then_some(digest))
    }
}
