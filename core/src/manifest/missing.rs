//! Objects the source no longer lists (column family `delete_candidates`):
//! while a pass lists the source in key order, every manifest key the
//! listing steps over is recorded here. They are cleared when a pass
//! starts: a pass that resumes after a checkpoint lists the whole key space
//! again (after the checkpoint, then around to it), so it needs nothing an
//! earlier pass recorded. Deletes act on them only after that pass's
//! complete listing (see `deletes`).
//!
//! A listing in no particular order (local directories) cannot step over
//! keys: every key it lists is marked in `listed` instead (scratch, written
//! without WAL: such a listing never resumes), and once it is complete the
//! manifest keys left unmarked become the candidates (mark and sweep).

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{
    CF_DELETE_CANDIDATES, CF_LISTED, CF_META, CF_OBJECTS, KEY_LISTING_CUTS, Manifest, cf, db_err,
    records,
};
use crate::base::error::Error;

/// Keys written per batch when many are noted at once.
const BATCH: usize = 10_000;

/// Delete every key of a column family. Object keys are UTF-8, which never
/// holds the byte 0xff, so one range tombstone covers them all.
fn clear_cf(db: &rocksdb::DB, name: &str) -> Result<(), Error> {
    db.delete_range_cf(cf(db, name)?, &[][..], &[0xffu8][..])
        .map_err(db_err)
}

impl Manifest {
    /// Record the manifest keys after `after` (exclusive; `None`: from the
    /// first) and below `before` that `keep` accepts; returns how many.
    /// Written in batches of [`BATCH`] keys, so a source that lists nothing
    /// (every manifest key a candidate) costs no more memory than any other.
    pub fn note_missing(
        &self,
        after: Option<&str>,
        before: std::ops::Bound<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<u64, Error> {
        use std::ops::Bound;
        let objects = cf(&self.db, CF_OBJECTS)?;
        let candidates = cf(&self.db, CF_DELETE_CANDIDATES)?;
        let mode = match after {
            Some(k) => IteratorMode::From(k.as_bytes(), Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db.iterator_cf(objects, mode) {
            let (k, _) = item.map_err(db_err)?;
            if after.is_some_and(|a| &*k == a.as_bytes()) {
                continue;
            }
            let beyond = match before {
                Bound::Excluded(b) => &*k >= b.as_bytes(),
                Bound::Included(b) => &*k > b.as_bytes(),
                Bound::Unbounded => false,
            };
            if beyond {
                break;
            }
            let key = String::from_utf8_lossy(&k);
            if keep(&key) {
                batch.put_cf(candidates, &k, b"");
                n += 1;
                if batch.len() >= BATCH {
                    self.db.write(std::mem::take(&mut batch)).map_err(db_err)?;
                }
            }
        }
        if !batch.is_empty() {
            self.db.write(batch).map_err(db_err)?;
        }
        Ok(n)
    }

    /// How many keys are recorded.
    pub fn missing_count(&self) -> Result<u64, Error> {
        let mut n = 0;
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_DELETE_CANDIDATES)?, IteratorMode::Start)
        {
            item.map_err(db_err)?;
            n += 1;
        }
        Ok(n)
    }

    /// Up to `n` recorded keys, in order, after `after` (exclusive; `None`:
    /// from the first).
    pub fn missing_page_after(&self, after: Option<&str>, n: usize) -> Result<Vec<String>, Error> {
        let mode = match after {
            Some(k) => IteratorMode::From(k.as_bytes(), Direction::Forward),
            None => IteratorMode::Start,
        };
        self.db
            .iterator_cf(cf(&self.db, CF_DELETE_CANDIDATES)?, mode)
            .filter(|item| !matches!((item, after), (Ok((k, _)), Some(a)) if &**k == a.as_bytes()))
            .take(n)
            .map(|item| {
                item.map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
                    .map_err(db_err)
            })
            .collect()
    }

    /// Forget one recorded key (its object was deleted, or is listed again).
    pub fn forget_missing(&self, key: &str) -> Result<(), Error> {
        self.db
            .delete_cf(cf(&self.db, CF_DELETE_CANDIDATES)?, key.as_bytes())
            .map_err(db_err)
    }

    /// Forget every recorded key (a pass starts: deletes only ever follow
    /// what one pass itself saw of the whole key space).
    pub fn clear_missing(&self) -> Result<(), Error> {
        clear_cf(&self.db, CF_DELETE_CANDIDATES)
    }

    /// Objects in the manifest, estimated by RocksDB (counts overwritten
    /// and deleted versions until compaction: for sizing only; guards use
    /// [`Manifest::object_count`]).
    pub fn object_count_estimate(&self) -> Result<u64, Error> {
        Ok(self
            .db
            .property_int_value_cf(cf(&self.db, CF_OBJECTS)?, "rocksdb.estimate-num-keys")
            .map_err(db_err)?
            .unwrap_or(0))
    }

    /// Where a parallel listing cuts the key space (`listing`): keys the
    /// last complete listing passed, in order (none before one).
    pub fn listing_cuts(&self) -> Result<Vec<String>, Error> {
        self.db
            .get_cf(cf(&self.db, CF_META)?, KEY_LISTING_CUTS)
            .map_err(db_err)?
            .map(|v| records::decode(&v).map_err(Error::Corrupt))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Save the cuts a complete listing sampled.
    pub fn set_listing_cuts(&self, cuts: &[String]) -> Result<(), Error> {
        self.db
            .put_cf(
                cf(&self.db, CF_META)?,
                KEY_LISTING_CUTS,
                records::encode(&cuts),
            )
            .map_err(db_err)
    }

    /// Unordered listing: `key` was listed.
    pub fn mark_listed(&self, key: &str) -> Result<(), Error> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.disable_wal(true);
        self.db
            .put_cf_opt(cf(&self.db, CF_LISTED)?, key.as_bytes(), b"", &opts)
            .map_err(db_err)
    }

    /// Forget every mark (an unordered listing starts).
    pub fn clear_listed(&self) -> Result<(), Error> {
        clear_cf(&self.db, CF_LISTED)
    }

    /// After a complete unordered listing: record every manifest key that
    /// `keep` accepts and that was not marked; returns how many.
    pub fn note_unlisted(&self, keep: impl Fn(&str) -> bool) -> Result<u64, Error> {
        let listed = cf(&self.db, CF_LISTED)?;
        let mut marks = self.db.raw_iterator_cf(listed);
        marks.seek_to_first();
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_OBJECTS)?, IteratorMode::Start)
        {
            let (k, _) = item.map_err(db_err)?;
            while marks.key().is_some_and(|m| m < &k[..]) {
                marks.next();
            }
            if marks.key() == Some(&k[..]) {
                continue;
            }
            let key = String::from_utf8_lossy(&k);
            if keep(&key) {
                batch.put_cf(cf(&self.db, CF_DELETE_CANDIDATES)?, &k, b"");
                n += 1;
                if batch.len() >= BATCH {
                    self.db.write(std::mem::take(&mut batch)).map_err(db_err)?;
                }
            }
        }
        marks.status().map_err(db_err)?;
        self.db.write(batch).map_err(db_err)?;
        self.clear_listed()?;
        Ok(n)
    }
}
