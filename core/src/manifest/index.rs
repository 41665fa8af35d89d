//! The content index's lookups: chunk lists, the key holding a content,
//! large-object dedup candidates.

use super::{
    CF_CHUNKLISTS, CF_CONTENT, CF_CONTENT_HEAD, Candidate, Manifest, ObjectRecord, ObjectState,
};
use super::{cf, content_key, db_err, head_key, records};
use crate::base::error::Error;
use crate::content::chunk::ChunkRef;
use crate::content::hash::Hash;

impl Manifest {
    /// The chunk list of the content `rec` records: stored for two chunks
    /// or more; an object of one chunk (or none: empty) has no stored list,
    /// its one chunk being the whole content (same BLAKE3, same length).
    pub fn chunk_list(&self, rec: &ObjectRecord) -> Result<Option<Vec<ChunkRef>>, Error> {
        match (rec.chunks, u32::try_from(rec.source.size)) {
            (0, _) => return Ok(Some(Vec::new())),
            (1, Ok(len)) => {
                return Ok(Some(vec![ChunkRef {
                    hash: rec.blake3,
                    len,
                }]));
            }
            _ => {}
        }
        let content = &rec.blake3;
        let v = self
            .db
            .get_cf(cf(&self.db, CF_CHUNKLISTS)?, content.as_bytes())
            .map_err(db_err)?;
        v.map(|v| records::decode(&v).map_err(Error::Corrupt))
            .transpose()
    }

    /// A key whose target object holds this content with these attributes,
    /// checked against its current record (index entries can be stale).
    pub fn content_holder(
        &self,
        content: &Hash,
        size: u64,
        attrs_digest: &Hash,
    ) -> Result<Option<String>, Error> {
        Ok(self
            .holder(content, size, attrs_digest)?
            .map(|(key, _)| key))
    }

    /// [`Manifest::content_holder`] with the holder's record.
    fn holder(
        &self,
        content: &Hash,
        size: u64,
        attrs_digest: &Hash,
    ) -> Result<Option<(String, ObjectRecord)>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_CONTENT)?, content_key(content, size))
            .map_err(db_err)?;
        let Some(v) = v else { return Ok(None) };
        let key = String::from_utf8_lossy(&v).into_owned();
        Ok(self
            .object(&key)?
            .filter(|r| {
                r.blake3 == *content
                    && r.source.size == size
                    && r.attrs_digest == *attrs_digest
                    && r.state == ObjectState::Complete
            })
            .map(|r| (key, r)))
    }

    /// A dedup candidate for an object of `size` bytes whose first chunk is
    /// `first`, with the same attributes.
    pub fn large_candidate(
        &self,
        size: u64,
        first: &Hash,
        attrs_digest: &Hash,
    ) -> Result<Option<Candidate>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_CONTENT_HEAD)?, head_key(size, first))
            .map_err(db_err)?;
        // Objects of one chunk have no head entry: their content is that
        // chunk, so `first` names it.
        let content = v.and_then(|v| Hash::from_slice(&v)).unwrap_or(*first);
        let Some((holder, rec)) = self.holder(&content, size, attrs_digest)? else {
            return Ok(None);
        };
        Ok(self.chunk_list(&rec)?.map(|chunks| Candidate {
            holder,
            content,
            chunks,
        }))
    }
}
