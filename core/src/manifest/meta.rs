//! The `meta` column family: the schema version, the job the directory is
//! bound to (source, target, chunking), and the listing checkpoint (the
//! listing cuts are in `missing.rs`, beside the delete candidates).

use rocksdb::WriteBatch;

use super::{
    CF_META, KEY_CHUNKING, KEY_FEED_COVERED, KEY_FEED_CURSOR, KEY_LAST_COMPLETE_PASS,
    KEY_LAST_PASS, KEY_LISTING_CHECKPOINT, KEY_SCHEMA, KEY_SOURCE, KEY_TARGET, Manifest, cf,
    db_err, records,
};
use crate::base::error::Error;
use crate::content::chunk::ChunkParams;

/// A full pass that completed (`Manifest::last_complete_pass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCompletePass {
    pub started_ms: i64,
    pub ended_ms: i64,
    /// `KeyFilter::fingerprint` of the filter it ran with.
    pub filter: [u8; 32],
}

/// The last full pass that started (`Manifest::last_pass`), complete or
/// not: what a verification says the manifest holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastPass {
    pub started_ms: i64,
    /// `None`: it has not ended (killed, or still running).
    pub ended_ms: Option<i64>,
    /// It ended complete (`PassSummary::complete`).
    pub complete: bool,
}

impl Manifest {
    /// The schema version recorded in the directory, if any.
    pub fn schema_version(&self) -> Result<Option<u32>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_META)?, KEY_SCHEMA)
            .map_err(db_err)?;
        match v {
            None => Ok(None),
            Some(v) => <[u8; 4]>::try_from(&v[..])
                .map(|b| Some(u32::from_be_bytes(b)))
                .map_err(|_| Error::StateDir {
                    path: self.path.clone(),
                    detail: format!("corrupt schema version ({} bytes)", v.len()),
                }),
        }
    }

    /// Where an interrupted pass's listing can resume (see `checkpoint`).
    pub fn listing_checkpoint(&self) -> Result<Option<String>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_META)?, KEY_LISTING_CHECKPOINT)
            .map_err(db_err)?;
        Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Save (or with `None`, clear) the listing checkpoint.
    pub fn set_listing_checkpoint(&self, key: Option<&str>) -> Result<(), Error> {
        let meta = cf(&self.db, CF_META)?;
        match key {
            Some(k) => self.db.put_cf(meta, KEY_LISTING_CHECKPOINT, k.as_bytes()),
            None => self.db.delete_cf(meta, KEY_LISTING_CHECKPOINT),
        }
        .map_err(db_err)
    }

    /// Where reading of the change feed stopped (a `feed::Cursor`; this
    /// layer stores it as every record, without knowing its type).
    pub fn feed_cursor<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_META)?, KEY_FEED_CURSOR)
            .map_err(db_err)?;
        v.map(|v| {
            records::decode(&v).map_err(|e| Error::Corrupt(format!("change-feed cursor: {e}")))
        })
        .transpose()
    }

    /// Save the change-feed cursor, durably (the WAL is synced): it is
    /// moved only past events whose keys are settled.
    pub fn set_feed_cursor<T: serde::Serialize>(&self, cursor: &T) -> Result<(), Error> {
        self.db
            .put_cf(
                cf(&self.db, CF_META)?,
                KEY_FEED_CURSOR,
                records::encode(cursor),
            )
            .map_err(db_err)?;
        self.sync()
    }

    /// Whether a complete full pass has run since the feed cursor was
    /// anchored: every source change before the cursor is then in the
    /// manifest (or was settled by that pass), and the feed covers the rest.
    pub fn feed_covered(&self) -> Result<bool, Error> {
        Ok(self
            .db
            .get_cf(cf(&self.db, CF_META)?, KEY_FEED_COVERED)
            .map_err(db_err)?
            .is_some_and(|v| v.as_slice() == [1]))
    }

    /// Record whether the feed covers the source (see
    /// [`Manifest::feed_covered`]), durably.
    pub fn set_feed_covered(&self, covered: bool) -> Result<(), Error> {
        self.db
            .put_cf(
                cf(&self.db, CF_META)?,
                KEY_FEED_COVERED,
                [u8::from(covered)],
            )
            .map_err(db_err)?;
        self.sync()
    }

    /// When the last complete full pass started and ended (ms since the
    /// Unix epoch), and the fingerprint of the key filter it ran with: every
    /// change made at the source before its start to a key the filter
    /// selects was at the target at its end. The service keeps its
    /// full-pass schedule across restarts with it.
    pub fn last_complete_pass(&self) -> Result<Option<LastCompletePass>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_META)?, KEY_LAST_COMPLETE_PASS)
            .map_err(db_err)?;
        v.map(|v| match <[u8; 48]>::try_from(&v[..]) {
            Ok(b) => {
                let ms = |x: &[u8]| <[u8; 8]>::try_from(x).map_or(0, i64::from_be_bytes);
                let mut filter = [0u8; 32];
                filter.copy_from_slice(&b[16..]);
                Ok(LastCompletePass {
                    started_ms: ms(&b[..8]),
                    ended_ms: ms(&b[8..16]),
                    filter,
                })
            }
            Err(_) => Err(Error::Corrupt(format!(
                "last complete pass: {} bytes",
                v.len()
            ))),
        })
        .transpose()
    }

    /// Record a full pass that completed (never an older one over a newer).
    /// Not synced: lost in a crash, the older value only brings the next
    /// full pass forward.
    pub fn set_last_complete_pass(&self, pass: &LastCompletePass) -> Result<(), Error> {
        if self
            .last_complete_pass()?
            .is_some_and(|p| p.started_ms > pass.started_ms)
        {
            return Ok(());
        }
        let mut v = [0u8; 48];
        v[..8].copy_from_slice(&pass.started_ms.to_be_bytes());
        v[8..16].copy_from_slice(&pass.ended_ms.to_be_bytes());
        v[16..].copy_from_slice(&pass.filter);
        self.db
            .put_cf(cf(&self.db, CF_META)?, KEY_LAST_COMPLETE_PASS, v)
            .map_err(db_err)
    }

    /// The last full pass that started (none recorded by builds before
    /// this record existed).
    pub fn last_pass(&self) -> Result<Option<LastPass>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_META)?, KEY_LAST_PASS)
            .map_err(db_err)?;
        v.map(|v| match <[u8; 17]>::try_from(&v[..]) {
            Ok(b) => {
                let ms = |x: &[u8]| <[u8; 8]>::try_from(x).map_or(0, i64::from_be_bytes);
                let ended = ms(&b[8..16]);
                Ok(LastPass {
                    started_ms: ms(&b[..8]),
                    ended_ms: (ended != 0).then_some(ended),
                    complete: b[16] == 1,
                })
            }
            Err(_) => Err(Error::Corrupt(format!("last pass: {} bytes", v.len()))),
        })
        .transpose()
    }

    /// Record a full pass's start (`ended_ms` none), then its end. Not
    /// synced: the start reaches the disk with the pass's first synced
    /// checkpoint (the WAL keeps order); an end lost in a crash reads as a
    /// pass that did not end, which claims less, never more.
    pub fn set_last_pass(&self, pass: &LastPass) -> Result<(), Error> {
        let mut v = [0u8; 17];
        v[..8].copy_from_slice(&pass.started_ms.to_be_bytes());
        v[8..16].copy_from_slice(&pass.ended_ms.unwrap_or(0).to_be_bytes());
        v[16] = u8::from(pass.complete);
        self.db
            .put_cf(cf(&self.db, CF_META)?, KEY_LAST_PASS, v)
            .map_err(db_err)
    }

    /// Tie the directory to one job: its source, target and chunking
    /// parameters are recorded on first use and must match afterwards (a
    /// manifest describes one target; chunk lists depend on the chunking).
    pub fn bind(&self, source: &str, target: &str, chunking: &ChunkParams) -> Result<(), Error> {
        let meta = cf(&self.db, CF_META)?;
        let chunking = format!(
            "fastcdc2020 {}/{}/{}",
            chunking.min, chunking.avg, chunking.max
        );
        let mut batch = WriteBatch::default();
        for (key, want, what) in [
            (KEY_SOURCE, source, "source"),
            (KEY_TARGET, target, "target"),
            (KEY_CHUNKING, chunking.as_str(), "chunking"),
        ] {
            match self.db.get_cf(meta, key).map_err(db_err)? {
                None => batch.put_cf(meta, key, want.as_bytes()),
                Some(have) if have == want.as_bytes() => {}
                Some(have) => {
                    return Err(Error::StateMismatch {
                        path: self.path.clone(),
                        detail: format!(
                            "it belongs to {what} {:?}, not {want:?}; use one state directory per job",
                            String::from_utf8_lossy(&have)
                        ),
                    });
                }
            }
        }
        // Bound already: nothing to write (a pass on a full state disk
        // then meets it at its first real write).
        if batch.is_empty() {
            return Ok(());
        }
        self.db.write(batch).map_err(db_err)
    }

    /// Record a schema version (used on creation, by migrations, and by tests
    /// that need a directory of another version).
    #[doc(hidden)]
    pub fn set_schema_version(&self, v: u32) -> Result<(), Error> {
        self.db
            .put_cf(cf(&self.db, CF_META)?, KEY_SCHEMA, v.to_be_bytes())
            .map_err(db_err)
    }
}
