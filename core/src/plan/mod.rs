//! `passeur plan`: what a migration will move, cost, take and trip over,
//! from one listing of the source and nothing read. A [`Census`] takes
//! listed objects one at a time in bounded memory (whatever their number)
//! and ends in a [`Survey`]: totals, a size histogram, the largest
//! prefixes, duplicates estimated from listed MD5s, blockers, and the
//! requests one copy makes; [`estimate`] turns it into time and money.

pub mod blockers;
pub mod dups;
pub mod estimate;
pub mod inventory;
pub mod prefixes;

use chrono::{DateTime, Utc};
use serde::Serialize;

use blockers::{Blocker, BlockerTally, TargetRules};
use dups::{DupCounter, Duplicates};
use estimate::Requests;
use prefixes::{PrefixBreakdown, PrefixTally};

use crate::stores::limits::PartPolicy;
use crate::stores::rawlist::Details;
use crate::transfer::plan::Plan;

/// One listed object with what the listing said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the source URL.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Last modification.
    pub last_modified: DateTime<Utc>,
    /// ETag as listed.
    pub etag: Option<String>,
    /// What else the listing said (tier, blob type, Content-MD5,
    /// snapshot, version, metadata).
    pub details: Details,
}

impl Listed {
    /// A plain entry: key, size, time.
    pub fn new(key: String, size: u64, last_modified: DateTime<Utc>) -> Self {
        Self {
            key,
            size,
            last_modified,
            etag: None,
            details: Details::default(),
        }
    }

    /// Unreadable until rehydrated or restored.
    pub fn archived(&self) -> bool {
        let cold = matches!(
            self.details.class.as_deref(),
            Some("Archive" | "GLACIER" | "DEEP_ARCHIVE")
        );
        // Azure: a rehydration under way; S3 Intelligent-Tiering: the
        // archive access tiers (a restore first).
        cold || self
            .details
            .archive_status
            .as_deref()
            .is_some_and(|s| s.starts_with("rehydrate-pending") || s.ends_with("ARCHIVE_ACCESS"))
    }

    /// The content MD5 the listing states, if any.
    fn md5(&self) -> Option<[u8; 16]> {
        match &self.details.content_md5 {
            Some(b64) => dups::md5_of_base64(b64),
            None if self.details.blob_type.is_some() => None, // an Azure ETag is no MD5
            None => self.etag.as_deref().and_then(dups::md5_of_etag),
        }
    }
}

/// Objects of at most `2^i` bytes (and more than `2^(i-1)`); bucket 0
/// holds the empty objects, bucket 1 the one-byte ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeBucket {
    /// Smallest size in the bucket.
    pub min: u64,
    /// Largest size in the bucket.
    pub max: u64,
    /// Objects.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

fn bucket_of(size: u64) -> usize {
    match size {
        0 => 0,
        s => 65 - (s - 1).leading_zeros() as usize,
    }
}

fn bucket_range(i: usize) -> (u64, u64) {
    match i {
        0 => (0, 0),
        1 => (1, 1),
        i => (
            (1u64 << (i - 2)) + 1,
            if i >= 65 { u64::MAX } else { 1u64 << (i - 1) },
        ),
    }
}

/// How the census is taken.
#[derive(Debug, Clone)]
pub struct CensusOptions {
    /// The target's rules (none: no target-side blockers).
    pub target: Option<TargetRules>,
    /// How the target cuts objects into parts (for the request count).
    pub policy: PartPolicy,
    /// Example keys kept per blocker.
    pub examples: usize,
    /// Prefixes kept per depth.
    pub top: usize,
    /// Entries come in no key order (an inventory report).
    pub unordered: bool,
}

/// Everything the listing said, in bounded memory.
#[derive(Debug)]
pub struct Census {
    opts: CensusOptions,
    objects: u64,
    bytes: u64,
    histogram: [(u64, u64); 66],
    oldest: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
    prefixes: [PrefixTally; 2],
    dups: DupCounter,
    blockers: BlockerTally,
    requests: Requests,
}

/// What a census found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Survey {
    /// Current objects (snapshots and earlier versions are blockers).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Sizes by powers of two, the empty buckets left out.
    pub histogram: Vec<SizeBucket>,
    /// Oldest modification.
    pub oldest: Option<DateTime<Utc>>,
    /// Newest modification.
    pub newest: Option<DateTime<Utc>>,
    /// The largest prefixes at depth 1 and 2.
    pub prefixes: Vec<PrefixBreakdown>,
    /// Duplicates from listed MD5s.
    pub duplicates: Duplicates,
    /// What will fail.
    pub blockers: Vec<Blocker>,
    /// Requests one copy makes.
    pub requests: Requests,
}

impl Census {
    /// An empty census.
    pub fn new(opts: CensusOptions) -> Self {
        let blockers = BlockerTally::new(opts.target.clone(), opts.examples);
        let tally = if opts.unordered {
            PrefixTally::unordered
        } else {
            PrefixTally::new
        };
        let prefixes = [tally(1, opts.top), tally(2, opts.top)];
        Self {
            opts,
            objects: 0,
            bytes: 0,
            histogram: [(0, 0); 66],
            oldest: None,
            newest: None,
            prefixes,
            dups: DupCounter::default(),
            blockers,
            requests: Requests::default(),
        }
    }

    /// Objects counted so far (current ones).
    pub fn objects(&self) -> u64 {
        self.objects
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// One listed entry.
    pub fn add(&mut self, e: &Listed) {
        if e.details.snapshot.is_some() || !e.details.current {
            self.blockers.add_old(e);
            return;
        }
        self.objects += 1;
        self.bytes = self.bytes.saturating_add(e.size);
        let b = &mut self.histogram[bucket_of(e.size)];
        b.0 += 1;
        b.1 = b.1.saturating_add(e.size);
        self.oldest = Some(
            self.oldest
                .map_or(e.last_modified, |o| o.min(e.last_modified)),
        );
        self.newest = Some(
            self.newest
                .map_or(e.last_modified, |o| o.max(e.last_modified)),
        );
        for p in &mut self.prefixes {
            p.add(&e.key, e.size);
        }
        self.dups.add(e.size, e.md5());
        self.blockers.add(e);
        match Plan::new(&self.opts.policy, e.size) {
            Ok(Plan::Single) => {
                self.requests.reads += 1;
                self.requests.writes += 1;
            }
            Ok(Plan::Multipart(parts)) => {
                self.requests.reads += parts.count();
                self.requests.writes += parts.count() + 2;
            }
            // Too large for the target: a blocker, never copied.
            Err(_) => {}
        }
    }

    /// The survey.
    pub fn finish(self) -> Survey {
        let histogram = self
            .histogram
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, b)| {
                let (min, max) = bucket_range(i);
                SizeBucket {
                    min,
                    max,
                    objects: b.0,
                    bytes: b.1,
                }
            })
            .collect();
        let [p1, p2] = self.prefixes;
        Survey {
            objects: self.objects,
            bytes: self.bytes,
            histogram,
            oldest: self.oldest,
            newest: self.newest,
            prefixes: vec![p1.finish(), p2.finish()],
            duplicates: self.dups.finish(),
            blockers: self.blockers.finish(),
            requests: self.requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::limits::Provider;

    #[test]
    fn buckets_are_powers_of_two() {
        for (size, bucket) in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (1024, 11)] {
            assert_eq!(bucket_of(size), bucket, "size {size}");
            let (lo, hi) = bucket_range(bucket);
            assert!(lo <= size && size <= hi, "{size} in {lo}..={hi}");
        }
        assert_eq!(bucket_of(u64::MAX), 65);
        assert_eq!(bucket_range(65).1, u64::MAX);
    }

    #[test]
    fn a_census_counts_current_objects_and_their_requests() {
        let policy = PartPolicy::for_provider(Provider::Aws);
        let mut c = Census::new(CensusOptions {
            target: None,
            policy,
            examples: 3,
            top: 5,
            unordered: false,
        });
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
        let mut a = Listed::new("a/1".into(), 0, t(10));
        a.etag = Some("\"d41d8cd98f00b204e9800998ecf8427e\"".into());
        c.add(&a);
        a.key = "b/1".into();
        a.last_modified = t(5);
        c.add(&a);
        c.add(&Listed::new("b/big".into(), 20 << 20, t(20)));
        let mut v = Listed::new("b/1".into(), 7, t(1));
        v.details.current = false;
        v.details.version = Some("v1".into());
        c.add(&v);
        let s = c.finish();
        assert_eq!((s.objects, s.bytes), (3, 20 << 20));
        assert_eq!((s.oldest, s.newest), (Some(t(5)), Some(t(20))));
        assert_eq!(s.histogram.len(), 2);
        assert_eq!((s.duplicates.objects, s.duplicates.unknown_objects), (1, 1));
        // 20 MiB in 8 MiB parts: 3 ranged GETs; create + 3 + complete.
        assert_eq!(
            s.requests,
            Requests {
                reads: 5,
                writes: 7
            }
        );
        assert_eq!(s.blockers.len(), 1);
        assert_eq!(s.blockers[0].examples, ["b/1@v1"]);
    }
}
