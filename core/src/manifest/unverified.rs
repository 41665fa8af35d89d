//! What the last complete verification established, and what changed
//! since: `meta/last_verified` holds the Merkle root a verification found
//! equal at the target, and `unverified` every key whose record was
//! written or removed after it (marked in the record's own batch, by
//! `merkle::stage_leaf` / `stage_remove`). A verification of the changed
//! keys alone (`cutover --changes`) looks at those keys and relies on the
//! earlier verification for the rest.

use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{CF_META, CF_UNVERIFIED, KEY_LAST_VERIFIED, Manifest, cf, db_err, records};
use crate::base::error::Error;

/// A verification that found the whole target equal to the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastVerified {
    /// The Merkle root found equal (hex).
    pub root: String,
    /// When it ended, ms since the epoch.
    pub at_ms: i64,
    /// Deep (bytes read back) or fast.
    pub deep: bool,
    /// It looked only at the keys changed since the one before.
    pub incremental: bool,
}

impl Manifest {
    /// The last verification that found the target equal, if any.
    pub fn last_verified(&self) -> Result<Option<LastVerified>, Error> {
        self.db
            .get_cf(cf(&self.db, CF_META)?, KEY_LAST_VERIFIED)
            .map_err(db_err)?
            .map(|v| records::decode(&v).map_err(|e| Error::Corrupt(format!("last_verified: {e}"))))
            .transpose()
    }

    /// Keys written or removed since the last verification that found the
    /// target equal, in key order, or `None` when there are more than
    /// `limit`: they are held in memory (the changes of one cutover window;
    /// before the first whole verification, every key of the dataset).
    pub fn unverified_keys(&self, limit: usize) -> Result<Option<Vec<String>>, Error> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_UNVERIFIED)?, IteratorMode::Start)
        {
            let (k, _) = item.map_err(db_err)?;
            if out.len() == limit {
                return Ok(None);
            }
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(Some(out))
    }

    /// A verification found the target equal to the manifest: record it
    /// and forget the changed keys, in one synced batch. Nothing in a
    /// manifest opened read-only.
    pub fn note_verified(&self, v: &LastVerified) -> Result<(), Error> {
        if self.read_only {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&self.db, CF_META)?,
            KEY_LAST_VERIFIED,
            records::encode(v),
        );
        batch.delete_range_cf(cf(&self.db, CF_UNVERIFIED)?, &[][..], &[0xffu8][..]);
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(db_err)
    }
}
