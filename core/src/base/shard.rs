//! Shards: one dataset replicated by N instances, each owning a fixed part
//! of the key space (`shard = "K/N"`).
//!
//! A key belongs to one of [`VIRTUAL`] virtual shards: the first 12 bits
//! of BLAKE3(key) — the same hash whose first 16 bits choose the key's
//! Merkle bucket, so a virtual shard is 16 whole consecutive buckets and a
//! shard's buckets are complete (merging shards' trees is bucket by
//! bucket). Virtual shards are given to instances by rendezvous hashing:
//! virtual shard `v` goes to the instance `k < N` with the highest
//! BLAKE3(`v`, `k`). Going from N to M instances moves only the virtual
//! shards whose highest score changes owner — about |M − N| / max(M, N) of
//! them, the fewest possible — and never rehashes a key: a key's virtual
//! shard does not depend on N.

use std::fmt;
use std::sync::Arc;

use crate::base::error::Error;
use crate::base::ranges::Ranges;

/// Virtual shards of the key space.
pub const VIRTUAL: u16 = 4096;

/// Most instances a dataset may be split over.
pub const MAX_SHARDS: u16 = 1024;

const OWNER_CONTEXT: &str = "passeur 2026-12 shard owner v1";

/// The virtual shard of `key`: the first 12 bits of BLAKE3(key).
pub fn virtual_shard(key: &str) -> u16 {
    let h = blake3::hash(key.as_bytes());
    u16::from_be_bytes([h.as_bytes()[0], h.as_bytes()[1]]) >> 4
}

/// The instance, of `n`, that owns virtual shard `v`.
pub fn owner(v: u16, n: u16) -> u16 {
    (0..n.max(1))
        .max_by_key(|k| {
            let mut h = blake3::Hasher::new_derive_key(OWNER_CONTEXT);
            h.update(&v.to_le_bytes()).update(&k.to_le_bytes());
            let b = h.finalize();
            let mut top = [0u8; 8];
            top.copy_from_slice(&b.as_bytes()[..8]);
            (u64::from_le_bytes(top), *k)
        })
        .unwrap_or(0)
}

/// This instance's part of the key space: shard `index` of `count`.
#[derive(Clone, PartialEq, Eq)]
pub struct Shard {
    index: u16,
    count: u16,
    /// Whether each virtual shard is this instance's.
    owned: Vec<bool>,
    /// Range shards: the cuts of the key space (`None`: hash shards).
    ranges: Option<Arc<Ranges>>,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shard({self})")
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Shard `index` of `count` (0 ≤ index < count ≤ [`MAX_SHARDS`]).
    pub fn new(index: u16, count: u16) -> Result<Self, Error> {
        Self::checked(index, count).map_err(|why| Error::InvalidOption(format!("shard: {why}")))
    }

    fn checked(index: u16, count: u16) -> Result<Self, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "the number of shards must be 1 to {MAX_SHARDS}, not {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "index {index} is not below the number of shards {count} (shards are numbered from 0)"
            ));
        }
        let owned = (0..VIRTUAL).map(|v| owner(v, count) == index).collect();
        Ok(Self {
            index,
            count,
            owned,
            ranges: None,
        })
    }

    /// The same shard of a key space cut into ranges at `ranges` (which
    /// must make exactly [`Self::count`] ranges) instead of hashed.
    pub fn with_ranges(mut self, ranges: Ranges) -> Result<Self, Error> {
        if ranges.shards() != self.count {
            return Err(Error::InvalidOption(format!(
                "shard {self}: the ranges file cuts the key space into {} ranges, not {}",
                ranges.shards(),
                self.count
            )));
        }
        self.ranges = Some(Arc::new(ranges));
        Ok(self)
    }

    /// The ranges of a range shard (`None`: a hash shard).
    pub fn ranges(&self) -> Option<&Ranges> {
        self.ranges.as_deref()
    }

    /// A range shard's keys, `(after, until]`; `None` for a hash shard,
    /// whose keys are everywhere.
    pub fn span(&self) -> Option<(Option<String>, Option<String>)> {
        self.ranges.as_ref().map(|r| r.span(self.index))
    }

    /// The shard and how keys are divided, as state and reports record
    /// it: `K/N` (hashed) or `K/N ranges DIGEST`.
    pub fn describe(&self) -> String {
        match &self.ranges {
            None => self.to_string(),
            Some(r) => format!("{self} ranges {}", r.digest()),
        }
    }

    /// Parse `K/N`, where K is a number or `ordinal`: the number after the
    /// last `-` of `hostname` (a Kubernetes StatefulSet's pod `name-3` is
    /// ordinal 3).
    pub fn parse(text: &str, hostname: impl FnOnce() -> Option<String>) -> Result<Self, Error> {
        let bad = |why: String| Error::InvalidOption(format!("shard {text:?}: {why}"));
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| bad("expected K/N, for example \"0/4\" or \"ordinal/4\"".into()))?;
        let n: u16 = n
            .trim()
            .parse()
            .map_err(|_| bad(format!("N must be a number, not {n:?}")))?;
        let k: u16 = match k.trim() {
            "ordinal" => {
                let host = hostname().ok_or_else(|| bad("the host name is unknown".into()))?;
                host.rsplit_once('-')
                    .and_then(|(_, o)| o.parse().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "the host name {host:?} does not end in -<ordinal> (as a StatefulSet's pods do)"
                        ))
                    })?
            }
            k => k
                .parse()
                .map_err(|_| bad(format!("K must be a number or \"ordinal\", not {k:?}")))?,
        };
        Self::checked(k, n).map_err(bad)
    }

    /// This instance's number (from 0).
    pub fn index(&self) -> u16 {
        self.index
    }

    /// How many instances share the dataset.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Whether `key` is this instance's.
    pub fn owns(&self, key: &str) -> bool {
        match &self.ranges {
            Some(r) => r.owner(key) == self.index,
            None => self.owns_virtual(virtual_shard(key)),
        }
    }

    /// Whether virtual shard `v` is this instance's.
    pub fn owns_virtual(&self, v: u16) -> bool {
        self.owned.get(usize::from(v)).copied().unwrap_or(false)
    }

    /// Whether Merkle bucket `b` (first 16 bits of BLAKE3(key)) holds only
    /// this instance's keys (a hash shard's). A range shard's keys are in
    /// every bucket: this is always false for it.
    pub fn owns_bucket(&self, b: u16) -> bool {
        self.ranges.is_none() && self.owns_virtual(b >> 4)
    }

    /// How many virtual shards are this instance's.
    pub fn virtual_count(&self) -> usize {
        self.owned.iter().filter(|o| **o).count()
    }
}

/// A job's shard from its settings: `shard` (`K/N`) and, for range shards,
/// the file of `ranges` (`passeur manifest ranges`). `None`: not sharded.
pub fn configured(
    shard: Option<&str>,
    ranges: Option<&std::path::Path>,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<Option<Shard>, Error> {
    match (shard, ranges) {
        (None, None) => Ok(None),
        (None, Some(r)) => Err(Error::InvalidOption(format!(
            "shard ranges {} given without a shard (K/N)",
            r.display()
        ))),
        (Some(s), None) => Shard::parse(s, hostname).map(Some),
        (Some(s), Some(r)) => Shard::parse(s, hostname)?
            .with_ranges(Ranges::read(r)?)
            .map(Some),
    }
}

/// The host name, as the kernel has it.
pub fn hostname() -> Option<String> {
    #[cfg(unix)]
    {
        let u = rustix::system::uname();
        u.nodename().to_str().ok().map(str::to_owned)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("dir{}/object-{i:06}", i % 7))
            .collect()
    }

    #[test]
    fn every_key_has_exactly_one_owner() {
        let shards: Vec<Shard> = (0..4).map(|k| Shard::new(k, 4).expect("shard")).collect();
        for key in keys(20_000) {
            assert_eq!(shards.iter().filter(|s| s.owns(&key)).count(), 1, "{key}");
        }
        let total: usize = shards.iter().map(Shard::virtual_count).sum();
        assert_eq!(total, usize::from(VIRTUAL));
        for s in &shards {
            // 1,024 expected each; rendezvous hashing spreads them evenly.
            let c = s.virtual_count();
            assert!((900..=1150).contains(&c), "{s}: {c} virtual shards");
        }
    }

    #[test]
    fn growing_moves_only_what_the_new_instances_take() {
        for (from, to) in [(4u16, 8u16), (4, 5), (8, 4)] {
            let mut moved = 0usize;
            for v in 0..VIRTUAL {
                let (a, b) = (owner(v, from), owner(v, to));
                if a != b {
                    moved += 1;
                    // Growing: a virtual shard only ever moves to a new
                    // instance; shrinking: only away from a removed one.
                    if to > from {
                        assert!(b >= from, "{v}: {a} → {b}");
                    } else {
                        assert!(a >= to, "{v}: {a} → {b}");
                    }
                }
            }
            let (lo, hi) = (from.min(to), from.max(to));
            let expected = usize::from(VIRTUAL) * usize::from(hi - lo) / usize::from(hi);
            assert!(
                moved.abs_diff(expected) < expected / 8 + 16,
                "{from} → {to}: {moved} moved, expected about {expected}"
            );
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        let s = Shard::new(0, 1).expect("shard");
        assert_eq!(s.virtual_count(), usize::from(VIRTUAL));
        assert!(s.owns("anything"));
    }

    #[test]
    fn a_virtual_shard_is_sixteen_whole_merkle_buckets() {
        for key in keys(2_000) {
            let h = blake3::hash(key.as_bytes());
            let bucket = u16::from_be_bytes([h.as_bytes()[0], h.as_bytes()[1]]);
            assert_eq!(virtual_shard(&key), bucket >> 4);
        }
    }

    #[test]
    fn parse_names_what_is_wrong() {
        let host = |h: &str| {
            let h = h.to_owned();
            move || Some(h)
        };
        assert_eq!(Shard::parse("2/4", host("x")).expect("ok").index(), 2);
        assert_eq!(
            Shard::parse("ordinal/4", host("passeur-3"))
                .expect("ok")
                .index(),
            3
        );
        for (bad, says) in [
            ("4/4", "not below"),
            ("0/0", "1 to 1024"),
            ("a/4", "K must be"),
            ("1", "expected K/N"),
            ("1/x", "N must be"),
        ] {
            let e = Shard::parse(bad, host("h")).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = Shard::parse("ordinal/4", host("migration")).expect_err("no ordinal");
        assert!(e.to_string().contains("-<ordinal>"), "{e}");
    }
}
