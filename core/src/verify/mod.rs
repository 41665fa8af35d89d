//! Verification of the target against the manifest.
//!
//! Fast: list the target (in key order, ranges in parallel) and walk the
//! manifest alongside it. Every manifest object must be there with its
//! recorded size and target ETag; nothing else may be there (within the
//! job's filters, outside the trash prefix). No object is read. A record
//! without a target ETag is a mismatch (its size alone proves nothing);
//! where the target's listing gives no ETag, only the size is compared and
//! the report counts those objects (`etag_unchecked`).
//!
//! Deep: also read objects back and recompute their BLAKE3 (in parallel,
//! under the bandwidth cap), all of them or a random sample. A match is
//! recorded (`deep_verified`), so the next deep run skips objects unchanged
//! since, unless asked for a full one.
//!
//! Both build the Merkle tree of what was found (key, size seen, content:
//! recomputed when read, the recorded one when size and ETag matched,
//! unknown otherwise) and compare its root with the manifest's root,
//! itself recomputed from the manifest's leaves.

mod walk;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::Serialize;

use crate::base::error::{Error, parse_key, store_err};
use crate::base::filter::KeyFilter;
use crate::content::hash::Hash;
use crate::manifest::{LastVerified, Manifest};
use crate::stores::Store;
use crate::stores::throttle::Bandwidth;
use walk::Walk;

/// How a verification runs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Read objects back and recompute their BLAKE3.
    pub deep: bool,
    /// Deep: read only this fraction of the objects, chosen at random.
    pub sample: Option<f64>,
    /// Deep: read objects verified before and unchanged since, too.
    pub full: bool,
    /// Objects read back at once.
    pub concurrency: usize,
    /// Cap on bytes read back per second.
    pub bandwidth_limit: Option<u64>,
    /// Key ranges of the target listed at once.
    pub listing_concurrency: usize,
    /// Target keys outside these filters are not the job's: never "extra".
    pub filter: KeyFilter,
    /// Target keys under this prefix (deletes' trash) are not "extra".
    pub trash_prefix: Option<String>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            deep: false,
            sample: None,
            full: false,
            concurrency: 8,
            bandwidth_limit: None,
            listing_concurrency: 8,
            filter: KeyFilter::default(),
            trash_prefix: None,
        }
    }
}

/// What is wrong with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MismatchKind {
    /// In the manifest, not at the target.
    Missing,
    /// At the target, not in the manifest.
    Extra,
    /// At the target with another size.
    Size,
    /// At the target with other bytes (deep).
    Content,
    /// At the target with another ETag: rewritten since replication.
    Etag,
}

/// One key that does not verify.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// Object key, relative to the target URL.
    pub key: String,
    /// What is wrong.
    pub kind: MismatchKind,
    /// What the manifest says (size, ETag or BLAKE3).
    pub expected: Option<String>,
    /// What the target has.
    pub found: Option<String>,
}

/// Mismatches kept with their details (all are counted).
pub const MAX_MISMATCHES_KEPT: usize = 100_000;

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Deep (bytes read back) or fast.
    pub deep: bool,
    /// Objects in the manifest.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects listed at the target (the job's keys only).
    pub target_objects: u64,
    /// Deep: objects read back and hashed.
    pub deep_checked: u64,
    /// Deep: bytes read back.
    pub deep_bytes: u64,
    /// Deep: skipped, verified before and unchanged since.
    pub deep_skipped_unchanged: u64,
    /// Deep: left out of the sample.
    pub deep_not_sampled: u64,
    /// Objects compared by size alone: the target's listing gave no ETag.
    pub etag_unchecked: u64,
    /// Mismatches counted.
    pub mismatch_count: u64,
    /// Mismatches, the first [`MAX_MISMATCHES_KEPT`] found, in key order.
    pub mismatches: Vec<Mismatch>,
    /// Merkle root of the manifest, recomputed from its leaves (hex).
    pub manifest_root: String,
    /// Merkle root of what was found at the target (hex).
    pub found_root: String,
    /// Seconds the verification took.
    pub seconds: f64,
    /// The manifest was a read-only snapshot (the service held it): objects
    /// replicated since show as extra, and deep checks are not recorded.
    pub state_snapshot: bool,
    /// Only the keys changed since an earlier verification were looked at:
    /// which one it relied on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
}

/// What a verification of the changed keys alone relied on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Incremental {
    /// When the verification it relies on ended (RFC 3339).
    pub basis_at: String,
    /// The root that verification found equal at the target (hex).
    pub basis_root: String,
    /// Whether it read bytes back.
    pub basis_deep: bool,
    /// Whether it was itself incremental (a chain back to a full one).
    pub basis_incremental: bool,
    /// Keys changed since, each looked at (HEAD; deep: read back).
    pub keys_checked: u64,
}

impl VerifyReport {
    /// Whether the target verified: no mismatch and equal roots.
    pub fn verified(&self) -> bool {
        self.mismatch_count == 0 && self.manifest_root == self.found_root
    }

    fn push(&mut self, m: Mismatch) {
        self.mismatch_count += 1;
        if self.mismatches.len() < MAX_MISMATCHES_KEPT {
            self.mismatches.push(m);
        }
    }
}

/// Verify `target` against `manifest`.
#[tracing::instrument(level = "debug", skip_all, fields(target = %target.url, deep = opts.deep))]
pub async fn verify(
    target: &Store,
    manifest: &Manifest,
    opts: &VerifyOptions,
) -> Result<VerifyReport, Error> {
    let started = Instant::now();
    target.probe().await?;
    let manifest_root = manifest_root(manifest)?;
    let bandwidth = opts.bandwidth_limit.map(Bandwidth::new);
    let mut walk = Walk::new(
        target,
        manifest,
        opts,
        bandwidth.as_ref(),
        manifest.found_tree()?,
    )?;
    let mut listing = target_listing(target, manifest, opts).await?;
    let mut records = manifest.objects();
    let mut next_rec = records.next().transpose()?;
    let mut next_found = walk.next_listed(&mut listing).await?;
    loop {
        let order = match (&next_rec, &next_found) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((k, _)), Some(m)) => k.as_str().cmp(m.location.as_ref()),
        };
        let rec = match order {
            Ordering::Less | Ordering::Equal => next_rec.take(),
            Ordering::Greater => None,
        };
        let found = match order {
            Ordering::Greater | Ordering::Equal => next_found.take(),
            Ordering::Less => None,
        };
        if rec.is_some() {
            next_rec = records.next().transpose()?;
        }
        if found.is_some() {
            next_found = walk.next_listed(&mut listing).await?;
        }
        match (rec, found) {
            (Some((key, rec)), Some(meta)) => walk.compare(key, rec, &meta).await?,
            (Some((key, rec)), None) => walk.missing(key, &rec),
            (None, Some(meta)) => walk.extra(&meta)?,
            (None, None) => break,
        }
    }
    let report = walk.finish(manifest_root, started).await?;
    note(manifest, &report, opts, false)?;
    Ok(report)
}

/// A verification that found the target equal is the basis of the next
/// incremental one (never with a sample: not every object was read).
fn note(
    manifest: &Manifest,
    report: &VerifyReport,
    opts: &VerifyOptions,
    incremental: bool,
) -> Result<(), Error> {
    if report.verified() {
        manifest.note_verified(&LastVerified {
            root: report.manifest_root.clone(),
            at_ms: crate::base::now_ms(),
            deep: opts.deep && opts.sample.is_none(),
            incremental,
        })?;
    }
    Ok(())
}

/// Changed keys a verification of the changes alone holds in memory (about
/// 100 MB of keys); beyond, a full verification is asked for.
pub const MAX_CHANGED_KEYS: usize = 1_000_000;

/// Verify only the keys whose records changed since the last verification
/// that found the whole target equal (`unverified`), each looked at with a
/// HEAD (deep: read back); the found root is that verification's tree with
/// those keys' leaves as found. Objects not changed by passeur since are
/// not looked at again: the report says what it relied on. Refused without
/// such a verification, and on a read-only snapshot.
#[tracing::instrument(level = "debug", skip_all, fields(target = %target.url, deep = opts.deep))]
pub async fn verify_changed(
    target: &Store,
    manifest: &Manifest,
    opts: &VerifyOptions,
) -> Result<VerifyReport, Error> {
    let started = Instant::now();
    if manifest.is_read_only() {
        return Err(Error::InvalidOption(
            "verifying the changed keys needs the state directory: stop the service first".into(),
        ));
    }
    let Some(basis) = manifest.last_verified()? else {
        return Err(Error::InvalidOption(
            "no verification of the whole target is recorded yet: run a full cutover or verify once; --changes verifies what changed since".into(),
        ));
    };
    target.probe().await?;
    // The stored root, brought up to date (not recomputed from every leaf:
    // that scan grows with the dataset; the last full verification did it).
    let manifest_root = manifest.merkle_root()?;
    let Some(keys) = manifest.unverified_keys(MAX_CHANGED_KEYS)? else {
        return Err(Error::InvalidOption(format!(
            "more than {MAX_CHANGED_KEYS} keys changed since the last verification of the whole target: run a full verification (or cutover)"
        )));
    };
    let bandwidth = opts.bandwidth_limit.map(Bandwidth::new);
    let mut walk = Walk::new(
        target,
        manifest,
        opts,
        bandwidth.as_ref(),
        manifest.changed_tree(&keys),
    )?;
    // As the full walk: every record is compared; a key only at the target
    // counts as extra if it is the job's (`Walk::extra` decides).
    let heads = futures::stream::iter(keys.iter().cloned())
        .map(|key| async move {
            let loc = parse_key(&key)?;
            let found = match target.inner.head(&loc).await {
                Ok(m) => Some(m),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(store_err("look at the target", e)),
            };
            Ok((key, found))
        })
        .buffered(opts.concurrency.max(1))
        .collect::<Vec<Result<_, Error>>>()
        .await;
    let mut checked = 0;
    for item in heads {
        let (key, found) = item?;
        checked += 1;
        match (manifest.object(&key)?, found) {
            (Some(rec), Some(meta)) => walk.compare(key, rec, &meta).await?,
            (Some(rec), None) => walk.missing(key, &rec),
            (None, Some(meta)) => walk.extra(&meta)?,
            (None, None) => {}
        }
    }
    let mut report = walk.finish(manifest_root, started).await?;
    report.incremental = Some(Incremental {
        basis_at: chrono::DateTime::from_timestamp_millis(basis.at_ms)
            .unwrap_or_default()
            .to_rfc3339(),
        basis_root: basis.root,
        basis_deep: basis.deep,
        basis_incremental: basis.incremental,
        keys_checked: checked,
    });
    note(manifest, &report, opts, true)?;
    Ok(report)
}

/// The manifest's root recomputed from its leaves, checked against the
/// stored one (a stored root that disagrees is a corrupt manifest).
fn manifest_root(manifest: &Manifest) -> Result<Hash, Error> {
    let from_leaves = manifest.merkle_root_from_leaves()?;
    // A read-only snapshot may be mid-pass (stale nodes): only the leaves count.
    if manifest.is_read_only() {
        return Ok(from_leaves);
    }
    let stored = manifest.merkle_root()?;
    if stored != from_leaves {
        return Err(Error::Corrupt(format!(
            "stored Merkle root {} differs from the root of the manifest's leaves {}",
            stored.to_hex(),
            from_leaves.to_hex()
        )));
    }
    Ok(from_leaves)
}

/// The target listed in key order. Object stores list in order (key
/// ranges in parallel, cut at manifest keys); a local directory does not,
/// so its listing is sorted in memory.
async fn target_listing(
    target: &Store,
    manifest: &Manifest,
    opts: &VerifyOptions,
) -> Result<futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>>, Error> {
    if target.lists_in_order() {
        // A range shard's keys are one range: the rest is not listed.
        let (after, until) = opts
            .filter
            .shard()
            .and_then(crate::base::shard::Shard::span)
            .unwrap_or_default();
        return crate::scan::listing::of_store(
            target,
            manifest,
            after,
            until,
            opts.listing_concurrency,
        );
    }
    let mut all = BTreeMap::new();
    let mut s = target.list_all(crate::stores::Staging::Skip);
    while let Some(m) = s.next().await {
        let m = m.map_err(|e| store_err("list the target", e))?;
        all.insert(m.location.to_string(), m);
    }
    Ok(futures::stream::iter(all.into_values().map(Ok)).boxed())
}
