//! The walk of a verification: the manifest's records and the target's
//! listing side by side in key order, each key settled as extra, missing,
//! or compared (size and ETag, then, deep, its bytes read back while the
//! listing goes on).

use std::time::Instant;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered};
use object_store::{ObjectMeta, ObjectStoreExt};

use super::{Mismatch, MismatchKind, VerifyOptions, VerifyReport};
use crate::base::error::{Error, parse_key, store_err};
use crate::content::hash::Hash;
use crate::manifest::{DeepVerified, FoundTree, Manifest, ObjectRecord, normalize_etag};
use crate::scan::listing::{KeyFault, key_fault};
use crate::stores::Store;
use crate::stores::body::body;
use crate::stores::throttle::Bandwidth;

/// A verification under way.
pub(super) struct Walk<'a> {
    target: &'a Store,
    manifest: &'a Manifest,
    opts: &'a VerifyOptions,
    /// The trash prefix with its slash: its keys are not the job's.
    trash: Option<String>,
    bandwidth: Option<&'a Bandwidth>,
    /// The Merkle tree of what was found.
    tree: FoundTree<'a>,
    report: VerifyReport,
    /// Read-backs in flight (deep).
    reads: FuturesUnordered<BoxFuture<'a, ReadBack>>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(
        target: &'a Store,
        manifest: &'a Manifest,
        opts: &'a VerifyOptions,
        bandwidth: Option<&'a Bandwidth>,
        tree: FoundTree<'a>,
    ) -> Result<Self, Error> {
        let trash = opts
            .trash_prefix
            .as_deref()
            .map(|t| format!("{}/", t.trim_matches('/')));
        Ok(Self {
            target,
            manifest,
            opts,
            trash,
            bandwidth,
            tree,
            report: VerifyReport {
                deep: opts.deep,
                state_snapshot: manifest.is_read_only(),
                ..VerifyReport::default()
            },
            reads: FuturesUnordered::new(),
        })
    }

    /// Whether a target key is the job's: within its filters, outside
    /// the trash.
    fn mine(&self, key: &str) -> bool {
        self.opts.filter.accepts(key) && self.trash.as_deref().is_none_or(|t| !key.starts_with(t))
    }

    /// The next listing entry, settling read-backs while the listing waits
    /// (so reads and listing overlap). A key the target holds that
    /// object_store cannot address (a folder marker `x/`, `a//b`: passeur
    /// never writes one) is settled here as extra, and the listing goes on.
    pub(super) async fn next_listed(
        &mut self,
        listing: &mut BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> Result<Option<ObjectMeta>, Error> {
        loop {
            let done = tokio::select! {
                m = listing.next() => match m {
                    Some(Err(e)) => match key_fault(&e) {
                        Some(fault) => {
                            self.unaddressable(fault)?;
                            continue;
                        }
                        None => return Err(store_err("list the target", e)),
                    },
                    m => return Ok(m.and_then(Result::ok)),
                },
                Some(r) = self.reads.next(), if !self.reads.is_empty() => r,
            };
            settle(done, self.manifest, &mut self.tree, &mut self.report)?;
        }
    }

    /// A key the listing named but could not give as a path: extra, if it
    /// is the job's (no record can name it).
    fn unaddressable(&mut self, fault: &KeyFault) -> Result<(), Error> {
        let key = fault.key().to_owned();
        if !self.mine(&key) {
            return Ok(());
        }
        self.report.target_objects += 1;
        self.tree.add(&key, 0, &UNKNOWN)?;
        self.report.push(Mismatch {
            key,
            kind: MismatchKind::Extra,
            expected: None,
            found: Some(format!("a key passeur cannot address: {fault}")),
        });
        Ok(())
    }

    /// A key at the target only: extra, if it is the job's.
    pub(super) fn extra(&mut self, meta: &ObjectMeta) -> Result<(), Error> {
        let key = meta.location.to_string();
        if !self.mine(&key) {
            return Ok(());
        }
        self.report.target_objects += 1;
        self.tree.add(&key, meta.size, &UNKNOWN)?;
        self.report.push(Mismatch {
            key,
            kind: MismatchKind::Extra,
            expected: None,
            found: Some(format!("{} bytes", meta.size)),
        });
        Ok(())
    }

    /// A key in the manifest only: missing.
    pub(super) fn missing(&mut self, key: String, rec: &ObjectRecord) {
        self.count_record(rec);
        self.report.push(Mismatch {
            key,
            kind: MismatchKind::Missing,
            expected: Some(format!("{} bytes", rec.source.size)),
            found: None,
        });
    }

    fn count_record(&mut self, rec: &ObjectRecord) {
        self.report.objects += 1;
        self.report.bytes += rec.source.size;
    }

    /// A key in both: size and ETag, then (deep) its bytes, read back
    /// unless it may be skipped.
    pub(super) async fn compare(
        &mut self,
        key: String,
        rec: ObjectRecord,
        meta: &ObjectMeta,
    ) -> Result<(), Error> {
        self.count_record(&rec);
        self.report.target_objects += 1;
        if meta.e_tag.is_none() {
            self.report.etag_unchecked += 1;
        }
        // Deep: an ETag that changed is settled by the bytes (content, or
        // etag when they are still right); fast: it is the mismatch.
        let etag_changed = match fast_check(&key, &rec, meta) {
            Some(m) if m.kind == MismatchKind::Size || !self.opts.deep => {
                self.tree.add(&key, meta.size, &UNKNOWN)?;
                self.report.push(m);
                return Ok(());
            }
            other => other,
        };
        let skip = if !self.opts.deep {
            Some(Skip::Fast)
        } else if etag_changed.is_some() {
            None
        } else {
            deep_skip(self.manifest, &key, &rec, meta, self.opts)?
        };
        if let Some(why) = skip {
            match why {
                Skip::Unchanged => self.report.deep_skipped_unchanged += 1,
                Skip::NotSampled => self.report.deep_not_sampled += 1,
                Skip::Fast => {}
            }
            return self.tree.add(&key, meta.size, &rec.blake3);
        }
        if self.reads.len() >= self.opts.concurrency.max(1)
            && let Some(r) = self.reads.next().await
        {
            settle(r, self.manifest, &mut self.tree, &mut self.report)?;
        }
        self.reads.push(Box::pin(read_back(
            self.target,
            key,
            rec,
            meta.last_modified.timestamp_millis(),
            etag_changed,
            self.bandwidth,
        )));
        Ok(())
    }

    /// Wait for the last read-backs; the report, its roots filled in.
    pub(super) async fn finish(
        mut self,
        manifest_root: Hash,
        started: Instant,
    ) -> Result<VerifyReport, Error> {
        while let Some(r) = self.reads.next().await {
            settle(r, self.manifest, &mut self.tree, &mut self.report)?;
        }
        let mut report = self.report;
        report.mismatches.sort_by(|a, b| a.key.cmp(&b.key));
        report.manifest_root = manifest_root.to_hex();
        report.found_root = self.tree.root()?.to_hex();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// Content of an object found but not confirmed (extra, or size or ETag
/// changed): a leaf no replicated object has.
const UNKNOWN: Hash = Hash([0; 32]);

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

#[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
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
        let mut stream = body(got);
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
    tree: &mut FoundTree<'_>,
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
