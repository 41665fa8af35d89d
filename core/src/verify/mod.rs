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

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::Serialize;

use crate::base::error::{Error, parse_key, store_err};
use crate::base::filter::KeyFilter;
use crate::content::hash::Hash;
use crate::manifest::{DeepVerified, Manifest, ObjectRecord, normalize_etag};
use crate::stores::Store;
use crate::stores::throttle::Bandwidth;

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
pub async fn verify(
    target: &Store,
    manifest: &Manifest,
    opts: &VerifyOptions,
) -> Result<VerifyReport, Error> {
    let started = Instant::now();
    target.probe().await?;
    let mut report = VerifyReport {
        deep: opts.deep,
        ..VerifyReport::default()
    };
    let manifest_root = manifest.merkle_root_from_leaves()?;
    report.state_snapshot = manifest.is_read_only();
    // A read-only snapshot may be mid-pass (stale nodes): only the leaves count.
    let stored_root = match manifest.is_read_only() {
        true => manifest_root,
        false => manifest.merkle_root()?,
    };
    if stored_root != manifest_root {
        return Err(Error::Corrupt(format!(
            "stored Merkle root {} differs from the root of the manifest's leaves {}",
            stored_root.to_hex(),
            manifest_root.to_hex()
        )));
    }
    let trash = opts
        .trash_prefix
        .as_deref()
        .map(|t| format!("{}/", t.trim_matches('/')));
    let mine =
        |k: &str| opts.filter.accepts(k) && trash.as_deref().is_none_or(|t| !k.starts_with(t));
    let mut listing = target_listing(target, manifest, opts).await?;
    let mut records = manifest.objects();
    let mut tree = manifest.found_tree()?;
    let bandwidth = opts.bandwidth_limit.map(Bandwidth::new);
    let mut reads = FuturesUnordered::new();
    let listed = |m: Option<object_store::Result<ObjectMeta>>| {
        m.transpose().map_err(|e| store_err("list the target", e))
    };
    // The next listing entry, settling read-backs while the listing waits
    // (so reads and listing overlap).
    macro_rules! next_listed {
        () => {
            loop {
                tokio::select! {
                    m = listing.next() => break listed(m)?,
                    Some(r) = reads.next(), if !reads.is_empty() => {
                        settle(r, manifest, &mut tree, &mut report)?;
                    }
                }
            }
        };
    }
    let mut next_rec = records.next().transpose()?;
    let mut next_found = next_listed!();
    loop {
        let order = match (&next_rec, &next_found) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((k, _)), Some(m)) => k.as_str().cmp(m.location.as_ref()),
        };
        if order == Ordering::Greater {
            // At the target only.
            let Some(meta) = next_found.take() else { break };
            next_found = next_listed!();
            let key = meta.location.to_string();
            if mine(&key) {
                report.target_objects += 1;
                tree.add(&key, meta.size, &UNKNOWN)?;
                report.push(Mismatch {
                    key,
                    kind: MismatchKind::Extra,
                    expected: None,
                    found: Some(format!("{} bytes", meta.size)),
                });
            }
            continue;
        }
        let Some((key, rec)) = next_rec.take() else {
            break;
        };
        next_rec = records.next().transpose()?;
        report.objects += 1;
        report.bytes += rec.source.size;
        if order == Ordering::Less {
            report.push(Mismatch {
                key,
                kind: MismatchKind::Missing,
                expected: Some(format!("{} bytes", rec.source.size)),
                found: None,
            });
            continue;
        }
        let Some(meta) = next_found.take() else { break };
        next_found = next_listed!();
        report.target_objects += 1;
        if meta.e_tag.is_none() {
            report.etag_unchecked += 1;
        }
        // Deep: an ETag that changed is settled by the bytes (content, or
        // etag when they are still right); fast: it is the mismatch.
        let etag_changed = match fast_check(&key, &rec, &meta) {
            Some(m) if m.kind == MismatchKind::Size || !opts.deep => {
                tree.add(&key, meta.size, &UNKNOWN)?;
                report.push(m);
                continue;
            }
            other => other,
        };
        let skip = if !opts.deep {
            Some(Skip::Fast)
        } else if etag_changed.is_some() {
            None
        } else {
            deep_skip(manifest, &key, &rec, &meta, opts)?
        };
        match skip {
            Some(why) => {
                match why {
                    Skip::Unchanged => report.deep_skipped_unchanged += 1,
                    Skip::NotSampled => report.deep_not_sampled += 1,
                    Skip::Fast => {}
                }
                tree.add(&key, meta.size, &rec.blake3)?;
            }
            None => {
                if reads.len() >= opts.concurrency.max(1)
                    && let Some(r) = reads.next().await
                {
                    settle(r, manifest, &mut tree, &mut report)?;
                }
                reads.push(read_back(
                    target,
                    key,
                    rec,
                    meta.last_modified.timestamp_millis(),
                    etag_changed,
                    bandwidth.as_ref(),
                ));
            }
        }
    }
    while let Some(r) = reads.next().await {
        settle(r, manifest, &mut tree, &mut report)?;
    }
    report.mismatches.sort_by(|a, b| a.key.cmp(&b.key));
    report.manifest_root = manifest_root.to_hex();
    report.found_root = tree.root()?.to_hex();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Content of an object found but not confirmed (extra, or size or ETag
/// changed): a leaf no replicated object has.
const UNKNOWN: Hash = Hash([0; 32]);

/// The target listed in key order. Object stores list in order (key
/// ranges in parallel, cut at manifest keys); a local directory does not,
/// so its listing is sorted in memory.
async fn target_listing(
    target: &Store,
    manifest: &Manifest,
    opts: &VerifyOptions,
) -> Result<futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>>, Error> {
    if target.lists_in_order() {
        return crate::scan::listing::of_store(
            target,
            manifest,
            None,
            None,
            opts.listing_concurrency,
        );
    }
    let mut all = BTreeMap::new();
    let mut s = target.inner.list(None);
    while let Some(m) = s.next().await {
        let m = m.map_err(|e| store_err("list the target", e))?;
        all.insert(m.location.to_string(), m);
    }
    Ok(futures::stream::iter(all.into_values().map(Ok)).boxed())
}

/// Size and ETag against the record. A record without a target ETag (a
/// dedup copy recorded before copies were HEADed) is a mismatch; a listing
/// entry without one can only be checked by size.
fn fast_check(key: &str, rec: &ObjectRecord, meta: &ObjectMeta) -> Option<Mismatch> {
    if meta.size != rec.source.size {
        return Some(Mismatch {
            key: key.to_owned(),
            kind: MismatchKind::Size,
            expected: Some(rec.source.size.to_string()),
            found: Some(meta.size.to_string()),
        });
    }
    let found = normalize_etag(meta.e_tag.as_deref());
    match (&rec.target_etag, &found) {
        (Some(want), Some(got)) if want != got => Some(Mismatch {
            key: key.to_owned(),
            kind: MismatchKind::Etag,
            expected: Some(want.clone()),
            found: Some(got.clone()),
        }),
        (None, Some(got)) => Some(Mismatch {
            key: key.to_owned(),
            kind: MismatchKind::Etag,
            expected: Some("no target ETag recorded".into()),
            found: Some(got.clone()),
        }),
        _ => None,
    }
}

/// Why an object is not read back.
enum Skip {
    /// Fast verification reads nothing.
    Fast,
    /// Read back since its last change.
    Unchanged,
    /// Not drawn for the sample.
    NotSampled,
}

/// Whether deep verification can leave `key` unread: read back before and
/// unchanged since (same record, same target last-modified, which also
/// covers stores without ETags), or not drawn for the sample.
fn deep_skip(
    manifest: &Manifest,
    key: &str,
    rec: &ObjectRecord,
    meta: &ObjectMeta,
    opts: &VerifyOptions,
) -> Result<Option<Skip>, Error> {
    if !opts.full
        && let Some(v) = manifest.deep_verified(key)?
        && v.blake3 == rec.blake3
        && v.size == rec.source.size
        && v.target_etag == rec.target_etag
        && v.target_modified_ms == meta.last_modified.timestamp_millis()
    {
        return Ok(Some(Skip::Unchanged));
    }
    if let Some(f) = opts.sample
        && rand::random::<f64>() >= f
    {
        return Ok(Some(Skip::NotSampled));
    }
    Ok(None)
}

/// One object read back.
struct ReadBack {
    key: String,
    rec: ObjectRecord,
    /// The ETag mismatch the listing showed, if any.
    etag_changed: Option<Mismatch>,
    /// Last-modified of the target object in the listing, ms.
    modified_ms: i64,
    /// Bytes read and their BLAKE3; `Ok(None)`: gone since the listing.
    result: Result<Option<(u64, Hash)>, Error>,
}

async fn read_back(
    target: &Store,
    key: String,
    rec: ObjectRecord,
    modified_ms: i64,
    etag_changed: Option<Mismatch>,
    bandwidth: Option<&Bandwidth>,
) -> ReadBack {
    let result = async {
        let path = parse_key(&key)?;
        let got = match target.inner.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err("read back from the target", e)),
        };
        let mut stream = got.into_stream();
        let mut h = blake3::Hasher::new();
        let mut n = 0u64;
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| store_err("read back from the target", e))?;
            if let Some(bw) = bandwidth {
                bw.take(b.len()).await;
            }
            n += b.len() as u64;
            h.update(&b);
        }
        Ok(Some((n, Hash::from(h.finalize()))))
    }
    .await;
    ReadBack {
        key,
        rec,
        etag_changed,
        modified_ms,
        result,
    }
}

/// Account for one finished read-back. A read that fails (after the
/// client's retries) stops the verification: it could not run to the end.
fn settle(
    done: ReadBack,
    manifest: &Manifest,
    tree: &mut crate::manifest::FoundTree<'_>,
    report: &mut VerifyReport,
) -> Result<(), Error> {
    let ReadBack {
        key,
        rec,
        etag_changed,
        modified_ms,
        result,
    } = done;
    let (n, hash) = match result {
        Ok(Some(got)) => got,
        Ok(None) => {
            report.push(Mismatch {
                key,
                kind: MismatchKind::Missing,
                expected: Some(format!("{} bytes", rec.source.size)),
                found: Some("deleted while being verified".into()),
            });
            return Ok(());
        }
        Err(reason) => {
            return Err(reason);
        }
    };
    report.deep_checked += 1;
    report.deep_bytes += n;
    tree.add(&key, n, &hash)?;
    let same = n == rec.source.size && hash == rec.blake3;
    if let (true, Some(m)) = (same, etag_changed) {
        // Rewritten with the same bytes: still not what was recorded.
        report.push(m);
    } else if same {
        manifest.set_deep_verified(
            &key,
            &DeepVerified {
                blake3: hash,
                size: n,
                target_etag: rec.target_etag.clone(),
                target_modified_ms: modified_ms,
                verified_ms: crate::base::now_ms(),
            },
        )?;
    } else {
        report.push(Mismatch {
            key,
            kind: MismatchKind::Content,
            expected: Some(rec.blake3.to_hex()),
            found: Some(hash.to_hex()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ObjectState, SourceVersion};

    fn rec(target_etag: Option<&str>) -> ObjectRecord {
        ObjectRecord {
            source: SourceVersion {
                size: 3,
                etag: None,
                version: None,
                last_modified_ms: 0,
            },
            blake3: Hash::of(b"abc"),
            chunks: 1,
            target_etag: target_etag.map(str::to_owned),
            attrs_digest: Hash::of(b""),
            state: ObjectState::Complete,
            recorded_ms: 0,
        }
    }

    fn listed(size: u64, etag: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            location: "k".into(),
            last_modified: Default::default(),
            size,
            e_tag: etag.map(str::to_owned),
            version: None,
        }
    }

    #[test]
    fn a_record_without_a_target_etag_does_not_verify_by_size() {
        let kind = |r: &ObjectRecord, m: &ObjectMeta| fast_check("k", r, m).map(|m| m.kind);
        assert_eq!(kind(&rec(Some("e")), &listed(3, Some("\"e\""))), None);
        assert_eq!(
            kind(&rec(Some("e")), &listed(3, Some("f"))),
            Some(MismatchKind::Etag)
        );
        assert_eq!(
            kind(&rec(None), &listed(3, Some("e"))),
            Some(MismatchKind::Etag),
            "size alone must not verify a record without a target ETag"
        );
        assert_eq!(
            kind(&rec(Some("e")), &listed(4, Some("e"))),
            Some(MismatchKind::Size)
        );
        // A listing without ETags: size only (counted by the caller).
        assert_eq!(kind(&rec(Some("e")), &listed(3, None)), None);
    }
}
