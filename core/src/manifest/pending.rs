//! Keys the change feed named that are not at the target yet (column
//! family `changes_pending`): a key whose replication failed in a change
//! pass is kept here, with the time of the oldest change it stands for,
//! before the feed cursor moves past its event. Every change pass tries
//! them again first; a complete full pass that started after a key's
//! change settles it. The oldest entry is the change lag's floor, and
//! `cutover --changes` replicates them with the feed.

use rocksdb::IteratorMode;
use serde::{Deserialize, Serialize};

use super::{CF_CHANGES_PENDING, Manifest, cf, db_err, records};
use crate::base::error::Error;

/// Why a key is pending, and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Time of the oldest change of the key not at the target (ms since
    /// the epoch, from the event).
    pub since_ms: i64,
    /// The last failure, one line.
    pub reason: String,
}

impl Manifest {
    /// Record `key` as pending since `since_ms` (an earlier time already
    /// recorded is kept).
    pub fn note_pending(&self, key: &str, since_ms: i64, reason: &str) -> Result<(), Error> {
        let since_ms = match self.pending(key)? {
            Some(p) => p.since_ms.min(since_ms),
            None => since_ms,
        };
        let value = records::encode(&Pending {
            since_ms,
            reason: reason.to_owned(),
        });
        self.db
            .put_cf(cf(&self.db, CF_CHANGES_PENDING)?, key.as_bytes(), value)
            .map_err(db_err)
    }

    /// The pending record of `key`, if any.
    pub fn pending(&self, key: &str) -> Result<Option<Pending>, Error> {
        self.db
            .get_cf(cf(&self.db, CF_CHANGES_PENDING)?, key.as_bytes())
            .map_err(db_err)?
            .map(|v| {
                records::decode(&v).map_err(|e| Error::Corrupt(format!("pending {key:?}: {e}")))
            })
            .transpose()
    }

    /// `key` is at the target (or gone from the source and settled).
    pub fn clear_pending(&self, key: &str) -> Result<(), Error> {
        self.db
            .delete_cf(cf(&self.db, CF_CHANGES_PENDING)?, key.as_bytes())
            .map_err(db_err)
    }

    /// Every pending key, in key order. The set is small (keys that keep
    /// failing); it is read whole.
    pub fn pending_keys(&self) -> Result<Vec<(String, Pending)>, Error> {
        self.db
            .iterator_cf(cf(&self.db, CF_CHANGES_PENDING)?, IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.map_err(db_err)?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let p = records::decode(&v)
                    .map_err(|e| Error::Corrupt(format!("pending {key:?}: {e}")))?;
                Ok((key, p))
            })
            .collect()
    }

    /// A complete full pass that started at `started_ms` replicated every
    /// key changed before it: forget those; returns how many.
    pub fn clear_pending_before(&self, started_ms: i64) -> Result<u64, Error> {
        let mut n = 0;
        for (key, p) in self.pending_keys()? {
            if p.since_ms < started_ms {
                self.clear_pending(&key)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
