//! What verification keeps in the state directory:
//!
//! - `deep_verified`: object key → the record fingerprint (BLAKE3, size,
//!   target ETag) whose bytes were last read back from the target and
//!   matched, the target's last-modified then, and when. Deep verification skips objects whose record still
//!   has that fingerprint (unless asked for a full check).
//! - `verify_leaf`: scratch space of one verification, laid out like
//!   `merkle_leaf` (bucket ‖ key → leaf hash): the Merkle tree of what was
//!   found at the target, whose root is compared with the manifest's. A
//!   manifest opened read-only (the service holds it) uses a temporary
//!   database instead, and records no deep verification.
//!
//! And what `--repair` forgets ([`Manifest::forget_damaged`]).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use rocksdb::{DB, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::merkle::{bucket_of, leaf_hash, root_of_leaves, root_with};
use super::{CF_DEEP_VERIFIED, CF_MERKLE_LEAF, CF_VERIFY_LEAF, Manifest, cf, db_err, records};
use crate::base::error::Error;
use crate::content::hash::Hash;

/// The fingerprint of a record whose target bytes were read back and matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeepVerified {
    /// Content hash that was recomputed from the target bytes.
    pub blake3: Hash,
    /// Size read back.
    pub size: u64,
    /// Target ETag of the record at the time.
    pub target_etag: Option<String>,
    /// The target object's last-modified when it was read, ms.
    pub target_modified_ms: i64,
    /// When, milliseconds since the Unix epoch.
    pub verified_ms: i64,
}

/// Leaves staged per write batch while building the scratch tree.
const BATCH: usize = 10_000;

/// Where a found-tree's leaves go.
enum Scratch<'a> {
    /// The manifest's `verify_leaf` column family.
    Manifest(&'a DB),
    /// Only the keys changed since the last complete verification were
    /// looked at: their leaves (none until found) over the manifest's own.
    Changes(&'a DB, BTreeMap<String, Option<Hash>>),
    /// A temporary database, removed on drop.
    Own(Option<DB>, PathBuf),
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if let Scratch::Own(db, path) = self {
            drop(db.take());
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Builds the Merkle tree of what verification found.
pub struct FoundTree<'a> {
    scratch: Scratch<'a>,
    batch: WriteBatch,
    staged: usize,
}

impl std::fmt::Debug for FoundTree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoundTree")
            .field("staged", &self.staged)
            .finish_non_exhaustive()
    }
}

impl FoundTree<'_> {
    /// Add what was found under `key`.
    pub fn add(&mut self, key: &str, size: u64, content: &Hash) -> Result<(), Error> {
        let mut k = bucket_of(key).to_be_bytes().to_vec();
        k.extend_from_slice(key.as_bytes());
        let leaf = leaf_hash(key, size, content);
        match &mut self.scratch {
            Scratch::Manifest(db) => {
                self.batch
                    .put_cf(cf(db, CF_VERIFY_LEAF)?, k, leaf.as_bytes());
            }
            Scratch::Own(..) => self.batch.put(k, leaf.as_bytes()),
            Scratch::Changes(_, subs) => {
                subs.insert(key.to_owned(), Some(leaf));
                return Ok(());
            }
        }
        self.staged += 1;
        if self.staged >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        let batch = std::mem::take(&mut self.batch);
        self.staged = 0;
        let db: &DB = match &self.scratch {
            Scratch::Manifest(db) => db,
            Scratch::Own(Some(db), _) => db,
            Scratch::Own(None, _) | Scratch::Changes(..) => return Ok(()),
        };
        db.write_without_wal(batch).map_err(db_err)
    }

    /// The root over everything added.
    pub fn root(mut self) -> Result<Hash, Error> {
        self.flush()?;
        match &self.scratch {
            Scratch::Manifest(db) => {
                root_of_leaves(db.iterator_cf(cf(db, CF_VERIFY_LEAF)?, IteratorMode::Start))
            }
            Scratch::Own(Some(db), _) => root_of_leaves(db.iterator(IteratorMode::Start)),
            Scratch::Changes(db, subs) => root_with(db, subs),
            Scratch::Own(None, _) => Err(Error::Corrupt("scratch database closed".into())),
        }
    }
}

impl Manifest {
    /// Start an empty found-tree (clears the previous verification's).
    pub fn found_tree(&self) -> Result<FoundTree<'_>, Error> {
        let scratch = if self.read_only {
            let path = std::env::temp_dir().join(format!(
                "passeur-verify-{}-{}",
                std::process::id(),
                crate::base::now_ms()
            ));
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            let db = DB::open(&opts, &path).map_err(db_err)?;
            Scratch::Own(Some(db), path)
        } else {
            let leaves = cf(&self.db, CF_VERIFY_LEAF)?;
            self.db
                .delete_range_cf(leaves, &[][..], &[0xffu8; 3][..])
                .map_err(db_err)?;
            Scratch::Manifest(&self.db)
        };
        Ok(FoundTree {
            scratch,
            batch: WriteBatch::default(),
            staged: 0,
        })
    }

    /// A found-tree over the manifest's own leaves in which only `keys`
    /// are looked at: each has no leaf until found. For a verification of
    /// the keys changed since the last complete one (the stored nodes must
    /// be current: [`Manifest::merkle_root`] first).
    pub fn changed_tree(&self, keys: &[String]) -> FoundTree<'_> {
        FoundTree {
            scratch: Scratch::Changes(&self.db, keys.iter().map(|k| (k.clone(), None)).collect()),
            batch: WriteBatch::default(),
            staged: 0,
        }
    }

    /// Whether this manifest was opened read-only (nothing is recorded).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The manifest's Merkle root recomputed from its leaves (not read from
    /// the stored nodes): what an auditor would compute.
    pub fn merkle_root_from_leaves(&self) -> Result<Hash, Error> {
        root_of_leaves(
            self.db
                .iterator_cf(cf(&self.db, CF_MERKLE_LEAF)?, IteratorMode::Start),
        )
    }

    /// When `key`'s bytes were last read back and matched, if they were.
    pub fn deep_verified(&self, key: &str) -> Result<Option<DeepVerified>, Error> {
        let Some(c) = self.db.cf_handle(CF_DEEP_VERIFIED) else {
            // A directory from before deep verification, opened read-only.
            return Ok(None);
        };
        self.db
            .get_cf(c, key.as_bytes())
            .map_err(db_err)?
            .map(|v| records::decode(&v).map_err(Error::Corrupt))
            .transpose()
    }

    /// Record that `key`'s bytes were read back and matched (not in a
    /// manifest opened read-only).
    pub fn set_deep_verified(&self, key: &str, v: &DeepVerified) -> Result<(), Error> {
        if self.read_only {
            return Ok(());
        }
        self.db
            .put_cf(
                cf(&self.db, CF_DEEP_VERIFIED)?,
                key.as_bytes(),
                records::encode(v),
            )
            .map_err(db_err)
    }
}

impl Manifest {
    /// Forget the records of `keys` (missing or damaged at the target) and
    /// of every other key recorded with the same content (BLAKE3 and size):
    /// those may be server-side copies of a damaged holder, and a copy's
    /// record cannot tell. The next pass copies them all again. Returns the
    /// other keys forgotten, in key order. One scan of the records.
    pub fn forget_damaged(&self, keys: &[String]) -> Result<Vec<String>, Error> {
        let mut contents = HashSet::new();
        let damaged: HashSet<&str> = keys.iter().map(String::as_str).collect();
        for key in keys {
            if let Some(rec) = self.object(key)? {
                contents.insert((rec.blake3, rec.source.size));
            }
        }
        let mut same_content = Vec::new();
        if !contents.is_empty() {
            for item in self.objects() {
                let (key, rec) = item?;
                if contents.contains(&(rec.blake3, rec.source.size))
                    && !damaged.contains(key.as_str())
                {
                    same_content.push(key);
                }
            }
        }
        for key in keys.iter().chain(&same_content) {
            self.remove_object(key)?;
        }
        Ok(same_content)
    }
}
