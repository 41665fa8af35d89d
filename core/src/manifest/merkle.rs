//! The dataset Merkle tree over (key, size, BLAKE3) of every object.
//!
//! Shape: 65,536 buckets chosen by the first two bytes of BLAKE3(key); a
//! bucket's hash covers its leaves in key order; 256 level-1 nodes each cover
//! 256 consecutive buckets; the root covers the 256 level-1 nodes. An empty
//! subtree hashes to 32 zero bytes. Updates touch one leaf and mark its bucket
//! dirty in the same WriteBatch; [`recompute`] rehashes only dirty buckets and
//! their parents, so the root is maintained incrementally, and two manifests
//! can be compared node by node, descending only where hashes differ.

use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use super::{CF_MERKLE_DIRTY, CF_MERKLE_LEAF, CF_MERKLE_NODE, CF_UNVERIFIED, cf, db_err};
use crate::base::error::Error;
use crate::content::hash::Hash;

const LEAF_CONTEXT: &str = "passeur 2026-11 merkle leaf v1";
const NODE_CONTEXT: &str = "passeur 2026-11 merkle node v1";

/// Bucket of a key: the first two bytes of BLAKE3(key), big-endian.
pub fn bucket_of(key: &str) -> u16 {
    let h = blake3::hash(key.as_bytes());
    u16::from_be_bytes([h.as_bytes()[0], h.as_bytes()[1]])
}

/// Leaf hash: BLAKE3 derive-key mode over key length (u64 LE), key, size
/// (u64 LE) and content hash.
pub fn leaf_hash(key: &str, size: u64, content: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(LEAF_CONTEXT);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key.as_bytes());
    h.update(&size.to_le_bytes());
    h.update(content.as_bytes());
    h.finalize().into()
}

/// Interior node hash over child hashes; all-zero when every child is.
pub(super) fn node_hash<'a>(children: impl IntoIterator<Item = &'a Hash>) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(NODE_CONTEXT);
    let mut any = false;
    for c in children {
        any |= c.0 != [0; 32];
        h.update(c.as_bytes());
    }
    if any {
        h.finalize().into()
    } else {
        Hash([0; 32])
    }
}

fn leaf_key(bucket: u16, key: &str) -> Vec<u8> {
    let mut k = bucket.to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

fn node_key(level: u8, index: u16) -> [u8; 3] {
    let [a, b] = index.to_be_bytes();
    [level, a, b]
}

/// The buckets whose `merkle_dirty` mark this process wrote since the last
/// [`recompute`]: a later leaf in such a bucket needs no mark of its own.
/// Skipping it is crash-safe because the write-ahead log recovers a prefix
/// of the writes: a batch without the mark survives a crash only if the
/// earlier batch that wrote it does. A bucket is set only once that batch
/// is written, and every bucket is cleared when a [`recompute`] starts (it
/// deletes the marks it finds). Leaf writes hold [`Marked::shared`] from
/// staging to written and a recompute holds the lock alone, so no leaf
/// that skipped its mark lands after the recompute read the bucket.
#[derive(Debug)]
pub(super) struct Marked {
    bits: Box<[AtomicU64]>,
    writes: RwLock<()>,
}

impl Marked {
    pub(super) fn new() -> Self {
        Self {
            bits: (0..1024).map(|_| AtomicU64::new(0)).collect(),
            writes: RwLock::new(()),
        }
    }

    /// Held by a leaf's write from staging until the batch is written.
    pub(super) fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.writes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn has(&self, bucket: u16) -> bool {
        let (word, bit) = (usize::from(bucket >> 6), bucket & 63);
        self.bits[word].load(Relaxed) & (1 << bit) != 0
    }

    /// `bucket`'s mark is written.
    pub(super) fn set(&self, bucket: u16) {
        let (word, bit) = (usize::from(bucket >> 6), bucket & 63);
        self.bits[word].fetch_or(1 << bit, Relaxed);
    }
}

/// Stage a leaf insert or update in `batch`, with its bucket's dirty mark
/// unless `marked` holds it, and mark the key changed since the last
/// complete verification. Returns the bucket, to [`Marked::set`] once the
/// batch is written.
pub(super) fn stage_leaf(
    db: &DB,
    batch: &mut WriteBatch,
    key: &str,
    size: u64,
    content: &Hash,
    marked: &Marked,
) -> u16 {
    let bucket = bucket_of(key);
    if let (Some(leaf), Some(dirty)) = (db.cf_handle(CF_MERKLE_LEAF), db.cf_handle(CF_MERKLE_DIRTY))
    {
        batch.put_cf(
            leaf,
            leaf_key(bucket, key),
            leaf_hash(key, size, content).as_bytes(),
        );
        if !marked.has(bucket) {
            batch.put_cf(dirty, bucket.to_be_bytes(), []);
        }
    }
    stage_unverified(db, batch, key);
    bucket
}

/// Stage a leaf removal in `batch` (the key changed, too).
pub(super) fn stage_remove(db: &DB, batch: &mut WriteBatch, key: &str) {
    let bucket = bucket_of(key);
    if let (Some(leaf), Some(dirty)) = (db.cf_handle(CF_MERKLE_LEAF), db.cf_handle(CF_MERKLE_DIRTY))
    {
        batch.delete_cf(leaf, leaf_key(bucket, key));
        batch.put_cf(dirty, bucket.to_be_bytes(), []);
    }
    stage_unverified(db, batch, key);
}

fn stage_unverified(db: &DB, batch: &mut WriteBatch, key: &str) {
    if let Some(unverified) = db.cf_handle(CF_UNVERIFIED) {
        batch.put_cf(unverified, key.as_bytes(), []);
    }
}

/// The root of the tree whose leaves are the stored ones with `subs`
/// applied (key → its leaf, or `None`: no leaf), computed from the stored
/// nodes, which must be current ([`recompute`] first): only the buckets of
/// the substituted keys are rehashed, and nothing is written.
pub(super) fn root_with(db: &DB, subs: &BTreeMap<String, Option<Hash>>) -> Result<Hash, Error> {
    let mut by_bucket: BTreeMap<u16, Vec<(&String, &Option<Hash>)>> = BTreeMap::new();
    for (k, v) in subs {
        by_bucket.entry(bucket_of(k)).or_default().push((k, v));
    }
    let mut fresh = HashMap::new();
    let mut parents = BTreeSet::new();
    for (b, changed) in by_bucket {
        let mut leaves: BTreeMap<String, Hash> = bucket_leaves(db, b)?.into_iter().collect();
        for (k, v) in changed {
            match v {
                Some(h) => leaves.insert(k.clone(), *h),
                None => leaves.remove(k),
            };
        }
        fresh.insert((2u8, b), node_hash(leaves.values()));
        parents.insert(b >> 8);
    }
    ancestors(db, &mut fresh, &parents)
}

/// With the `fresh` buckets (level 2) rehashed, rehash their `parents`
/// (level 1, added to `fresh`) and return the root; every other node is
/// read as stored.
fn ancestors(
    db: &DB,
    fresh: &mut HashMap<(u8, u16), Hash>,
    parents: &BTreeSet<u16>,
) -> Result<Hash, Error> {
    let read = |level: u8, i: u16, fresh: &HashMap<(u8, u16), Hash>| {
        fresh
            .get(&(level, i))
            .copied()
            .map_or_else(|| node(db, level, i), Ok)
    };
    for &p in parents {
        let kids = (0..256u16)
            .map(|i| read(2, (p << 8) | i, fresh))
            .collect::<Result<Vec<_>, _>>()?;
        fresh.insert((1, p), node_hash(&kids));
    }
    let kids = (0..256u16)
        .map(|i| read(1, i, fresh))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(node_hash(&kids))
}

/// Read one node: level 0 is the root (index 0), level 1 has 256 nodes,
/// level 2 has 65,536 buckets.
pub fn node(db: &DB, level: u8, index: u16) -> Result<Hash, Error> {
    let v = db
        .get_cf(cf(db, CF_MERKLE_NODE)?, node_key(level, index))
        .map_err(db_err)?;
    Ok(v.and_then(|v| Hash::from_slice(&v))
        .unwrap_or(Hash([0; 32])))
}

/// The leaves of one bucket, in key order.
pub fn bucket_leaves(db: &DB, bucket: u16) -> Result<Vec<(String, Hash)>, Error> {
    let prefix = bucket.to_be_bytes();
    let mut out = Vec::new();
    let iter = db.iterator_cf(
        cf(db, CF_MERKLE_LEAF)?,
        IteratorMode::From(&prefix, Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.map_err(db_err)?;
        if !k.starts_with(&prefix) {
            break;
        }
        let key = String::from_utf8_lossy(&k[2..]).into_owned();
        if let Some(h) = Hash::from_slice(&v) {
            out.push((key, h));
        }
    }
    Ok(out)
}

/// The root over leaves laid out like `merkle_leaf` (bucket ‖ key → leaf
/// hash), in key order, computed from the leaves alone in one scan.
pub(super) fn root_of_leaves<K, V>(
    leaves: impl Iterator<Item = Result<(K, V), rocksdb::Error>>,
) -> Result<Hash, Error>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut buckets = vec![Hash([0; 32]); 65_536];
    let mut current: Option<(u16, blake3::Hasher, bool)> = None;
    let close = |c: Option<(u16, blake3::Hasher, bool)>, buckets: &mut Vec<Hash>| {
        if let Some((b, h, true)) = c {
            buckets[usize::from(b)] = h.finalize().into();
        }
    };
    for item in leaves {
        let (k, v) = item.map_err(db_err)?;
        let (Some(b), Some(leaf)) = (k.as_ref().get(..2), Hash::from_slice(v.as_ref())) else {
            continue;
        };
        let b = u16::from_be_bytes([b[0], b[1]]);
        if current.as_ref().is_none_or(|(cb, _, _)| *cb != b) {
            close(current.take(), &mut buckets);
            current = Some((b, blake3::Hasher::new_derive_key(NODE_CONTEXT), false));
        }
        if let Some((_, h, any)) = current.as_mut() {
            *any |= leaf.0 != [0; 32];
            h.update(leaf.as_bytes());
        }
    }
    close(current, &mut buckets);
    let level1: Vec<Hash> = buckets.chunks(256).map(node_hash).collect();
    Ok(node_hash(&level1))
}

/// The hashes of `buckets` (ascending), from their stored leaves, in one
/// forward scan of `merkle_leaf`: the scan goes on from one bucket into
/// the next and seeks only over buckets not asked for. After a first pass
/// every bucket is dirty, and an iterator made per bucket (65,536 of them,
/// each merging the memtables and every table file) was the pass's last
/// second, on one core.
fn hash_buckets(db: &DB, buckets: &[u16]) -> Result<Vec<Hash>, Error> {
    let mut opts = ReadOptions::default();
    // A one-off scan: the block cache keeps what lookups need.
    opts.fill_cache(false);
    let mut it = db.raw_iterator_cf_opt(cf(db, CF_MERKLE_LEAF)?, opts);
    let mut leaves: Vec<Hash> = Vec::new();
    let mut out = Vec::with_capacity(buckets.len());
    for &b in buckets {
        let prefix = b.to_be_bytes();
        // Seek unless the scan already stands at or past the bucket.
        if it.key().is_none_or(|k| k < &prefix[..]) {
            it.seek(prefix);
        }
        leaves.clear();
        while let Some((k, v)) = it.item() {
            if !k.starts_with(&prefix) {
                break;
            }
            leaves.extend(Hash::from_slice(v));
            it.next();
        }
        it.status().map_err(db_err)?;
        out.push(node_hash(&leaves));
    }
    Ok(out)
}

/// Rehash dirty buckets and their ancestors; returns the root.
pub(super) fn recompute(db: &DB, marked: &Marked) -> Result<Hash, Error> {
    // No leaf is written meanwhile; the marks read below are deleted, so
    // leaves written after mark their buckets again.
    let _alone = marked
        .writes
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    for w in &marked.bits {
        w.store(0, Relaxed);
    }
    let dirty_cf = cf(db, CF_MERKLE_DIRTY)?;
    let node_cf = cf(db, CF_MERKLE_NODE)?;
    let mut dirty: Vec<u16> = Vec::new();
    for item in db.iterator_cf(dirty_cf, IteratorMode::Start) {
        let (k, _) = item.map_err(db_err)?;
        if let Ok(b) = <[u8; 2]>::try_from(&k[..]) {
            dirty.push(u16::from_be_bytes(b));
        }
    }
    if dirty.is_empty() {
        return node(db, 0, 0);
    }
    let mut batch = WriteBatch::default();
    let mut parents = BTreeSet::new();
    let mut fresh = HashMap::new();
    for (b, h) in dirty.iter().copied().zip(hash_buckets(db, &dirty)?) {
        batch.put_cf(node_cf, node_key(2, b), h.as_bytes());
        fresh.insert((2u8, b), h);
        batch.delete_cf(dirty_cf, b.to_be_bytes());
        parents.insert(b >> 8);
    }
    let root = ancestors(db, &mut fresh, &parents)?;
    for &p in &parents {
        if let Some(h) = fresh.get(&(1, p)) {
            batch.put_cf(node_cf, node_key(1, p), h.as_bytes());
        }
    }
    batch.put_cf(node_cf, node_key(0, 0), root.as_bytes());
    db.write(batch).map_err(db_err)?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tree_is_zero_and_leaf_hash_binds_all_fields() {
        assert_eq!(node_hash(&[Hash([0; 32]); 4]), Hash([0; 32]));
        let h = Hash::of(b"x");
        let base = leaf_hash("k", 1, &h);
        assert_ne!(base, leaf_hash("k2", 1, &h));
        assert_ne!(base, leaf_hash("k", 2, &h));
        assert_ne!(base, leaf_hash("k", 1, &Hash::of(b"y")));
    }
}
