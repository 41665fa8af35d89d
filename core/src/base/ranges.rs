//! Range shards: the key space cut into N contiguous ranges at keys learned
//! from a previous listing (`passeur manifest ranges`), shard K owning the
//! keys in `(cut[K-1], cut[K]]`. A hash shard ([`crate::base::shard`])
//! lists the whole source and skips the others' keys; a range shard lists
//! only its own range (S3 start-after, Azure startFrom), about 1 / N of
//! the names, at the price of ranges that must be learned first and that
//! drift as the dataset grows unevenly (relearning them is a reshard).
//!
//! The cuts travel as a JSON file that every shard of the dataset reads;
//! its digest names the cutting in each shard's state and report, so
//! shards cut differently are never merged.

use serde::{Deserialize, Serialize};

use crate::base::error::Error;

/// The format tag of a ranges file.
pub const FORMAT: &str = "passeur shard ranges v1";

/// The cuts of a key space into `cuts.len() + 1` ranges.
#[derive(Clone, PartialEq, Eq)]
pub struct Ranges {
    cuts: Vec<String>,
    digest: String,
}

impl std::fmt::Debug for Ranges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ranges({} shards, {})", self.shards(), self.digest)
    }
}

/// A ranges file as written and read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangesFile {
    /// [`FORMAT`].
    pub format: String,
    /// How many shards (ranges).
    pub shards: u16,
    /// The N − 1 cuts, increasing: shard K owns `(cuts[K-1], cuts[K]]`.
    pub cuts: Vec<String>,
    /// Keys each range held when the cuts were learned.
    #[serde(default)]
    pub keys_per_shard: Vec<u64>,
    /// Where the cuts were learned (state directories), for the reader.
    #[serde(default)]
    pub learned_from: Vec<String>,
}

impl Ranges {
    /// Ranges cut at `cuts` (strictly increasing, UTF-8 byte order: the
    /// order S3 and Azure list in).
    pub fn new(cuts: Vec<String>) -> Result<Self, Error> {
        if let Some(w) = cuts.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::InvalidOption(format!(
                "shard ranges: cuts must increase, {:?} then {:?}",
                w[0], w[1]
            )));
        }
        // A cut is where a shard's listing starts (start-after): only keys
        // object_store's paths carry as they are can be one.
        if let Some(c) = cuts.iter().find(|c| {
            object_store::path::Path::parse(c.as_str()).map_or(true, |p| p.as_ref() != c.as_str())
        }) {
            return Err(Error::InvalidOption(format!(
                "shard ranges: the cut {c:?} is not a key object_store can list from (an empty, '.' or '..' segment, or a leading or trailing '/')"
            )));
        }
        if cuts.len() >= usize::from(crate::base::shard::MAX_SHARDS) {
            return Err(Error::InvalidOption(format!(
                "shard ranges: {} cuts make more than {} shards",
                cuts.len(),
                crate::base::shard::MAX_SHARDS
            )));
        }
        let mut h = blake3::Hasher::new_derive_key("passeur 2026-12 shard ranges v1");
        for c in &cuts {
            h.update(&(c.len() as u64).to_le_bytes())
                .update(c.as_bytes());
        }
        let digest = h.finalize().to_hex()[..16].to_owned();
        Ok(Self { cuts, digest })
    }

    /// Read a ranges file; an error names the file and the problem.
    pub fn read(path: &std::path::Path) -> Result<Self, Error> {
        let bad = |why: String| Error::InvalidOption(format!("{}: {why}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        Self::from_json(&bytes).map_err(|e| bad(e.to_string()))
    }

    /// Parse a ranges file's JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let f: RangesFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidOption(format!("not a shard ranges file: {e}")))?;
        if f.format != FORMAT {
            return Err(Error::InvalidOption(format!(
                "format {:?}, expected {FORMAT:?}",
                f.format
            )));
        }
        if f.cuts.len() + 1 != usize::from(f.shards) {
            return Err(Error::InvalidOption(format!(
                "{} shards need {} cuts, the file has {}",
                f.shards,
                f.shards.saturating_sub(1),
                f.cuts.len()
            )));
        }
        Self::new(f.cuts)
    }

    /// The file of these cuts.
    pub fn to_file(&self, keys_per_shard: Vec<u64>, learned_from: Vec<String>) -> RangesFile {
        RangesFile {
            format: FORMAT.to_owned(),
            shards: self.shards(),
            cuts: self.cuts.clone(),
            keys_per_shard,
            learned_from,
        }
    }

    /// How many ranges.
    pub fn shards(&self) -> u16 {
        u16::try_from(self.cuts.len() + 1).unwrap_or(u16::MAX)
    }

    /// The cuts.
    pub fn cuts(&self) -> &[String] {
        &self.cuts
    }

    /// A short digest of the cuts (16 hex digits).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The range `key` falls in: the number of cuts below it.
    pub fn owner(&self, key: &str) -> u16 {
        let i = self.cuts.partition_point(|c| c.as_str() < key);
        u16::try_from(i).unwrap_or(u16::MAX)
    }

    /// Range `k` as `(after, until]` (`None`: unbounded).
    pub fn span(&self, k: u16) -> (Option<String>, Option<String>) {
        let k = usize::from(k);
        let after = k.checked_sub(1).and_then(|i| self.cuts.get(i).cloned());
        (after, self.cuts.get(k).cloned())
    }

    /// Cut `total` keys, coming in increasing order, into `n` ranges of
    /// (nearly) equal counts. Returns the ranges and the keys in each.
    pub fn learn(
        keys: impl Iterator<Item = Result<String, Error>>,
        total: u64,
        n: u16,
    ) -> Result<(Self, Vec<u64>), Error> {
        if n == 0 || n > crate::base::shard::MAX_SHARDS {
            return Err(Error::InvalidOption(format!(
                "the number of shards must be 1 to {}, not {n}",
                crate::base::shard::MAX_SHARDS
            )));
        }
        let n64 = u64::from(n);
        if total < n64 {
            return Err(Error::InvalidOption(format!(
                "{total} keys cannot be cut into {n} ranges: learn ranges after a pass over the dataset"
            )));
        }
        // Range k ends at the key of rank ⌈(k + 1) · total / n⌉ (1-based).
        let end_rank = |k: u64| ((k + 1) * total).div_ceil(n64);
        let (mut cuts, mut counts) = (Vec::new(), vec![0u64; usize::from(n)]);
        let mut last: Option<String> = None;
        let mut rank = 0u64;
        for key in keys {
            let key = key?;
            if last.as_ref().is_some_and(|l| *l >= key) {
                return Err(Error::Corrupt(format!(
                    "keys not in increasing order while learning ranges: {key:?} after {last:?}"
                )));
            }
            rank += 1;
            let k = cuts.len();
            if let Some(c) = counts.get_mut(k) {
                *c += 1;
            }
            if k + 1 < usize::from(n) && rank == end_rank(k as u64) {
                cuts.push(key.clone());
            }
            last = Some(key);
        }
        if rank != total {
            return Err(Error::Corrupt(format!(
                "{rank} keys read while learning ranges, {total} counted"
            )));
        }
        Ok((Self::new(cuts)?, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        let mut k: Vec<String> = (0..n).map(|i| format!("d{}/{i:05}", i % 7)).collect();
        k.sort();
        k
    }

    #[test]
    fn learned_ranges_split_the_keys_evenly_and_own_each_once() -> Result<(), Error> {
        let all = keys(1003);
        let (r, counts) = Ranges::learn(all.iter().cloned().map(Ok), all.len() as u64, 4)?;
        assert_eq!(r.shards(), 4);
        assert_eq!(counts.iter().sum::<u64>(), 1003);
        assert!(
            counts.iter().all(|&c| (250..=251).contains(&c)),
            "{counts:?}"
        );
        let mut owned = [0u64; 4];
        for k in &all {
            let o = r.owner(k);
            let (after, until) = r.span(o);
            assert!(after.as_deref().is_none_or(|a| a < k.as_str()));
            assert!(until.as_deref().is_none_or(|u| k.as_str() <= u));
            owned[usize::from(o)] += 1;
        }
        assert_eq!(owned.to_vec(), counts);
        // A key never seen falls in exactly one range too.
        assert!(r.owner("") == 0 && r.owner("\u{10ffff}") == 3);
        // Round trip through the file, and its digest.
        let text = serde_json::to_vec(&r.to_file(counts, vec![]))
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        assert_eq!(Ranges::from_json(&text)?, r);
        assert_ne!(Ranges::new(vec!["a".into()])?.digest(), r.digest());
        Ok(())
    }

    #[test]
    fn bad_ranges_are_named() {
        let e = Ranges::new(vec!["b".into(), "a".into()]).expect_err("decreasing");
        assert!(e.to_string().contains("must increase"), "{e}");
        let e = Ranges::new(vec!["a/".into()]).expect_err("trailing slash");
        assert!(e.to_string().contains("\"a/\" is not a key"), "{e}");
        let e =
            Ranges::from_json(br#"{"format":"passeur shard ranges v1","shards":3,"cuts":["a"]}"#)
                .expect_err("count");
        assert!(e.to_string().contains("3 shards need 2 cuts"), "{e}");
        let e = Ranges::learn(std::iter::once(Ok("a".to_owned())), 1, 2).expect_err("few");
        assert!(e.to_string().contains("cannot be cut"), "{e}");
    }
}
