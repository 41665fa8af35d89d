//! Which keys differ between two manifests (two shards, two points in
//! time), found through the Merkle trees: equal roots end the comparison,
//! and only level-1 nodes and buckets whose hashes differ are descended
//! into. Buckets changed since their last rehash (a pass cut short) are
//! always compared leaf by leaf, as their stored hashes may be stale.

use std::collections::BTreeSet;

use rocksdb::IteratorMode;
use serde::Serialize;

use super::merkle::{bucket_leaves, node};
use super::{CF_MERKLE_DIRTY, Manifest, cf, db_err};
use crate::base::error::Error;
use crate::content::hash::Hash;

/// How one key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffKind {
    /// Only the first manifest has it.
    OnlyInA,
    /// Only the second manifest has it.
    OnlyInB,
    /// Both have it, with another size or content.
    Differs,
}

/// How much of the trees a diff looked at.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DiffStats {
    /// Level-1 nodes (of 256) that differed and were descended into.
    pub nodes_compared: u64,
    /// Buckets whose leaves were compared (of 65,536).
    pub buckets_compared: u64,
    /// Keys that differ.
    pub differences: u64,
}

impl Manifest {
    fn dirty_buckets(&self) -> Result<BTreeSet<u16>, Error> {
        let mut out = BTreeSet::new();
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_MERKLE_DIRTY)?, IteratorMode::Start)
        {
            let (k, _) = item.map_err(db_err)?;
            if let Ok(b) = <[u8; 2]>::try_from(&k[..]) {
                out.insert(u16::from_be_bytes(b));
            }
        }
        Ok(out)
    }
}

/// Call `each` for every key that differs between `a` and `b`, bucket by
/// bucket (in key order within a bucket).
pub fn diff(
    a: &Manifest,
    b: &Manifest,
    mut each: impl FnMut(&str, DiffKind) -> Result<(), Error>,
) -> Result<DiffStats, Error> {
    let dirty: BTreeSet<u16> = &a.dirty_buckets()? | &b.dirty_buckets()?;
    let dirty_parents: BTreeSet<u16> = dirty.iter().map(|b| b >> 8).collect();
    let mut stats = DiffStats::default();
    if dirty.is_empty() && node(&a.db, 0, 0)? == node(&b.db, 0, 0)? {
        return Ok(stats);
    }
    for i in 0..256u16 {
        if !dirty_parents.contains(&i) && node(&a.db, 1, i)? == node(&b.db, 1, i)? {
            continue;
        }
        stats.nodes_compared += 1;
        for j in 0..256u16 {
            let bucket = (i << 8) | j;
            if !dirty.contains(&bucket) && node(&a.db, 2, bucket)? == node(&b.db, 2, bucket)? {
                continue;
            }
            stats.buckets_compared += 1;
            let (la, lb) = (bucket_leaves(&a.db, bucket)?, bucket_leaves(&b.db, bucket)?);
            stats.differences += merge(&la, &lb, &mut each)?;
        }
    }
    Ok(stats)
}

/// Compare two key-sorted leaf lists.
fn merge(
    a: &[(String, Hash)],
    b: &[(String, Hash)],
    each: &mut impl FnMut(&str, DiffKind) -> Result<(), Error>,
) -> Result<u64, Error> {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                each(&a[i].0, DiffKind::OnlyInA)?;
                n += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                each(&b[j].0, DiffKind::OnlyInB)?;
                n += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if a[i].1 != b[j].1 {
                    each(&a[i].0, DiffKind::Differs)?;
                    n += 1;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(n)
}
