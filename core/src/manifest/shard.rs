//! A sharded job's manifest holds only its shard's records. When the shard
//! changes (N grew or shrank, K changed, or the key space was cut into
//! other ranges), the records of keys that now belong to another shard are
//! forgotten — that shard replicates, records and verifies them from now
//! on, and their objects at the target are left alone — so this shard's
//! Merkle tree and verification cover its keys only.

use super::merkle::{bucket_leaves, node, node_hash};
use super::{CF_MERKLE_DIRTY, CF_META, KEY_SHARD, KEY_SHARD_RANGES, Manifest, cf, db_err};
use crate::base::error::Error;
use crate::base::ranges::Ranges;
use crate::base::shard::Shard;
use crate::content::hash::Hash;

/// A dataset's tree merged from its shards' manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The dataset's Merkle root: equal to the root one unsharded manifest
    /// of the same objects has.
    pub root: Hash,
    /// How many shards the dataset is split over.
    pub shards: u16,
    /// Objects recorded, all shards together.
    pub objects: u64,
}

/// The shard a manifest replicates, from its `meta/shard`; an error names
/// a manifest that is not one shard of several.
pub fn shard_of(m: &Manifest) -> Result<Shard, Error> {
    let not = |why: &str| Error::InvalidOption(format!("{}: {why}", m.path().display()));
    let text = m
        .recorded_shard()?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| not("not a shard (no shard recorded: not sharded, or no pass ran since)"))?;
    let (kn, digest) = match text.split_once(" ranges ") {
        Some((kn, d)) => (kn, Some(d)),
        None => (text.as_str(), None),
    };
    let (k, n) = kn
        .split_once('/')
        .and_then(|(k, n)| Some((k.parse().ok()?, n.parse().ok()?)))
        .ok_or_else(|| not(&format!("shard {text:?} recorded")))?;
    let shard = Shard::new(k, n)?;
    let Some(digest) = digest else {
        return Ok(shard);
    };
    let json =
        m.db.get_cf(cf(&m.db, CF_META)?, KEY_SHARD_RANGES)
            .map_err(db_err)?
            .ok_or_else(|| not("a range shard whose ranges are not recorded"))?;
    let ranges = Ranges::from_json(&json)?;
    if ranges.digest() != digest {
        return Err(Error::Corrupt(format!(
            "{}: ranges {} recorded for shard {text:?}",
            m.path().display(),
            ranges.digest()
        )));
    }
    shard.with_ranges(ranges)
}

/// Merge the trees of every shard of one dataset: each Merkle bucket is
/// taken from the manifest of the shard that owns it (a shard's keys fill
/// whole buckets), then the upper levels are hashed as one manifest's are.
/// Refused unless `manifests` are each shard of one count exactly once.
pub fn merge(manifests: &[Manifest]) -> Result<Merged, Error> {
    if manifests.is_empty() {
        return Err(Error::InvalidOption(
            "no state directory to merge".to_owned(),
        ));
    }
    let shards = manifests
        .iter()
        .map(shard_of)
        .collect::<Result<Vec<_>, _>>()?;
    let n = shards.first().map_or(0, Shard::count);
    let mut by_index: Vec<Option<usize>> = vec![None; usize::from(n)];
    let cutting = |s: &Shard| s.ranges().map(|r| r.digest().to_owned());
    for (i, s) in shards.iter().enumerate() {
        if cutting(s) != cutting(&shards[0]) {
            return Err(Error::InvalidOption(format!(
                "{} is shard {}, {} is shard {}: every shard must divide the keys the same way",
                manifests[i].path().display(),
                s.describe(),
                manifests[0].path().display(),
                shards[0].describe()
            )));
        }
        if s.count() != n {
            return Err(Error::InvalidOption(format!(
                "{} is shard {s}, the first is of {n}: every shard must be of the same count",
                manifests[i].path().display()
            )));
        }
        if let Some(j) = by_index[usize::from(s.index())].replace(i) {
            return Err(Error::InvalidOption(format!(
                "{} and {} are both shard {s}",
                manifests[j].path().display(),
                manifests[i].path().display()
            )));
        }
    }
    if let Some(k) = by_index.iter().position(Option::is_none) {
        return Err(Error::InvalidOption(format!(
            "shard {k}/{n} is missing: {} of {n} state directories given",
            manifests.len()
        )));
    }
    let ranged = shards.iter().any(|s| s.ranges().is_some());
    let mut buckets = Vec::with_capacity(65_536);
    for b in 0..=u16::MAX {
        let hash = if ranged {
            // A range shard's keys are in every bucket: the bucket's
            // leaves of every shard, each leaf from its key's owner.
            let mut leaves = Vec::new();
            for (m, s) in manifests.iter().zip(&shards) {
                let mine = bucket_leaves(&m.db, b)?;
                leaves.extend(mine.into_iter().filter(|(k, _)| s.owns(k)));
            }
            leaves.sort_unstable_by(|x, y| x.0.cmp(&y.0));
            node_hash(leaves.iter().map(|(_, h)| h))
        } else {
            // Every shard is present: exactly one owns the bucket.
            match shards.iter().position(|s| s.owns_bucket(b)) {
                Some(i) => manifests[i].bucket_hash(b)?,
                None => Hash([0; 32]),
            }
        };
        buckets.push(hash);
    }
    let level1: Vec<Hash> = buckets.chunks(256).map(node_hash).collect();
    let mut objects = 0;
    for m in manifests {
        objects += m.object_count()?;
    }
    Ok(Merged {
        root: node_hash(&level1),
        shards: n,
        objects,
    })
}

impl Manifest {
    /// Merkle bucket `b`'s hash as its leaves stand now: the stored node,
    /// or, for a bucket still marked dirty, its leaves hashed (nothing is
    /// written: works on a read-only manifest).
    pub fn bucket_hash(&self, b: u16) -> Result<Hash, Error> {
        let dirty = self
            .db
            .get_cf(cf(&self.db, CF_MERKLE_DIRTY)?, b.to_be_bytes())
            .map_err(db_err)?
            .is_some();
        if !dirty {
            return node(&self.db, 2, b);
        }
        let leaves = bucket_leaves(&self.db, b)?;
        Ok(node_hash(leaves.iter().map(|(_, h)| h)))
    }

    /// The shard this state directory last replicated (`K/N`; empty: every
    /// key; `None`: never recorded).
    pub fn recorded_shard(&self) -> Result<Option<String>, Error> {
        Ok(self
            .db
            .get_cf(cf(&self.db, CF_META)?, KEY_SHARD)
            .map_err(db_err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Keep only `shard`'s records (`None`: every key is the job's): if the
    /// shard differs from the recorded one, forget the records of other
    /// shards' keys, then record the shard (and a range shard's cuts). How
    /// many were forgotten.
    pub fn keep_shard(&self, shard: Option<&Shard>) -> Result<u64, Error> {
        let want = shard.map(Shard::describe).unwrap_or_default();
        if self.recorded_shard()?.as_deref() == Some(want.as_str()) {
            return Ok(0);
        }
        let mut forgotten = 0;
        if let Some(s) = shard {
            // The iterator reads a snapshot: removing as it goes is safe.
            for r in self.objects() {
                let (key, _) = r?;
                if !s.owns(&key) {
                    self.remove_object(&key)?;
                    forgotten += 1;
                }
            }
        }
        let mut batch = rocksdb::WriteBatch::default();
        let meta = cf(&self.db, CF_META)?;
        match shard.and_then(Shard::ranges) {
            Some(r) => {
                let json = serde_json::to_vec(&r.to_file(Vec::new(), Vec::new()))
                    .map_err(|e| Error::Corrupt(format!("shard ranges: {e}")))?;
                batch.put_cf(meta, KEY_SHARD_RANGES, json);
            }
            None => batch.delete_cf(meta, KEY_SHARD_RANGES),
        }
        batch.put_cf(meta, KEY_SHARD, want.as_bytes());
        self.db.write(batch).map_err(db_err)?;
        if forgotten > 0 {
            tracing::info!(shard = %want, forgotten, "records of keys now another shard's forgotten");
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testing::tempdir;
    use crate::content::hash::Hash;
    use crate::manifest::{ObjectRecord, ObjectState, SourceVersion};

    fn record(size: u64) -> ObjectRecord {
        ObjectRecord {
            source: SourceVersion {
                size,
                etag: Some("e".into()),
                version: None,
                last_modified_ms: 0,
            },
            blake3: Hash(*blake3::hash(&size.to_le_bytes()).as_bytes()),
            chunks: 0,
            target_etag: None,
            attrs_digest: Hash([0; 32]),
            state: ObjectState::Complete,
            recorded_ms: 0,
        }
    }

    #[test]
    fn a_new_shard_forgets_the_keys_it_gave_away() -> Result<(), Error> {
        let dir = tempdir()?;
        let m = Manifest::open(dir.path())?;
        let keys: Vec<String> = (0..500).map(|i| format!("k/{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            m.commit_object(k, &record(i as u64), &[])?;
        }
        // Unsharded until now: every key kept.
        assert_eq!(m.keep_shard(None)?, 0);
        let four = Shard::new(1, 4)?;
        let gone = m.keep_shard(Some(&four))?;
        let kept: Vec<String> = m
            .objects()
            .map(|r| r.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        assert_eq!(gone as usize + kept.len(), keys.len());
        assert!(kept.iter().all(|k| four.owns(k)) && !kept.is_empty());
        assert_eq!(m.object_count()?, kept.len() as u64);
        // The same shard again: nothing to do.
        assert_eq!(m.keep_shard(Some(&four))?, 0);
        // Its tree is the tree of its keys alone.
        let root = m.merkle_root()?;
        let other = tempdir()?;
        let fresh = Manifest::open(other.path())?;
        for (i, k) in keys.iter().enumerate() {
            if four.owns(k) {
                fresh.commit_object(k, &record(i as u64), &[])?;
            }
        }
        assert_eq!(root, fresh.merkle_root()?);
        Ok(())
    }

    #[test]
    fn range_shards_merge_into_the_root_of_one_manifest() -> Result<(), Error> {
        let mut keys: Vec<String> = (0..400).map(|i| format!("r{}/{i}", i % 9)).collect();
        keys.sort();
        let (ranges, _) = Ranges::learn(keys.iter().cloned().map(Ok), keys.len() as u64, 3)?;
        let (one_dir, dirs) = (tempdir()?, [tempdir()?, tempdir()?, tempdir()?]);
        let one = Manifest::open(one_dir.path())?;
        let shards: Vec<Manifest> = dirs
            .iter()
            .map(|d| Manifest::open(d.path()))
            .collect::<Result<_, _>>()?;
        for (k, m) in (0u16..).zip(&shards) {
            m.keep_shard(Some(&Shard::new(k, 3)?.with_ranges(ranges.clone())?))?;
        }
        for (i, key) in keys.iter().enumerate() {
            one.commit_object(key, &record(i as u64), &[])?;
            shards[usize::from(ranges.owner(key))].commit_object(key, &record(i as u64), &[])?;
        }
        let merged = merge(&shards)?;
        assert_eq!(merged.root, one.merkle_root()?);
        assert_eq!(merged.objects, keys.len() as u64);
        // The state says how it was cut: the shard is rebuilt with its ranges.
        let s1 = shard_of(&shards[1])?;
        assert_eq!(s1.ranges(), Some(&ranges));
        // Hashed again: the keys of other shards are forgotten, and a range
        // shard and a hash shard are never merged.
        let hashed = Shard::new(2, 3)?;
        let gone = shards[2].keep_shard(Some(&hashed))?;
        assert!(gone > 0);
        assert!(
            shards[2]
                .objects()
                .all(|r| r.is_ok_and(|(k, _)| hashed.owns(&k)))
        );
        let e = merge(&shards).expect_err("mixed").to_string();
        assert!(e.contains("divide the keys the same way"), "{e}");
        Ok(())
    }

    #[test]
    fn three_shards_merge_into_the_root_of_one_manifest() -> Result<(), Error> {
        let keys: Vec<String> = (0..300).map(|i| format!("d{}/{i}", i % 5)).collect();
        let (one_dir, dirs) = (tempdir()?, [tempdir()?, tempdir()?, tempdir()?]);
        let one = Manifest::open(one_dir.path())?;
        let shards: Vec<Manifest> = dirs
            .iter()
            .map(|d| Manifest::open(d.path()))
            .collect::<Result<_, _>>()?;
        for (k, m) in (0u16..).zip(&shards) {
            m.keep_shard(Some(&Shard::new(k, 3)?))?;
        }
        for (i, key) in keys.iter().enumerate() {
            one.commit_object(key, &record(i as u64), &[])?;
            let owner = crate::base::shard::owner(crate::base::shard::virtual_shard(key), 3);
            shards[usize::from(owner)].commit_object(key, &record(i as u64), &[])?;
        }
        // Some buckets still dirty in one shard, rehashed in the others.
        shards[0].merkle_root()?;
        let merged = merge(&shards)?;
        assert_eq!(merged.root, one.merkle_root()?);
        assert_eq!((merged.shards, merged.objects), (3, keys.len() as u64));
        // Refused: a shard missing, a shard twice, a manifest not sharded.
        let e = merge(&shards[..2]).expect_err("missing").to_string();
        assert!(e.contains("shard 2/3 is missing"), "{e}");
        let mut it = shards.into_iter();
        let (s0, s1) = (it.next().expect("0"), it.next().expect("1"));
        drop(it);
        let twice = Manifest::open_read_only(dirs[1].path())?;
        let e = merge(&[s0, s1, twice]).expect_err("twice").to_string();
        assert!(e.contains("both shard 1/3"), "{e}");
        let e = merge(&[one]).expect_err("unsharded").to_string();
        assert!(e.contains("not a shard"), "{e}");
        assert!(merge(&[]).is_err());
        Ok(())
    }
}
