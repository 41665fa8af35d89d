//! Deletes at the target: off unless asked. After a pass whose listing
//! was complete, objects the manifest holds but the source no longer lists
//! (`manifest/missing.rs`; only keys the include / exclude patterns accept)
//! are deleted at the target, or moved under a trash prefix, and forgotten.
//! Refused, with the reason in the summary, when the source listed nothing
//! or more than `max_fraction` of the manifest would go in one pass — the
//! mistakes (an emptied prefix, wrong credentials scoped to an empty
//! bucket) that make tools delete a whole replica.
//!
//! Trash: the objects one pass deletes are copied to
//! `PREFIX/<deletion time>/<key>` first, the time in UTC, ISO 8601 basic
//! with milliseconds (`20260314T092653.123Z`), one per pass. A key deleted
//! twice leaves two trashed versions, and one pass's deletes are restored
//! by copying one folder back to the source. A trashed object is never
//! overwritten, and the job may not replicate into its trash: the prefix
//! must be left out by its filters ([`check_trash_prefix`]).

use std::sync::atomic::Ordering::Relaxed;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::base::error::{Error, parse_key, store_err};
use crate::base::filter::KeyFilter;
use crate::base::now_ms;
use crate::transfer::Ctx;

/// What a job may delete at its target.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletePolicy {
    /// Delete at all (default: no).
    pub enabled: bool,
    /// Refuse a pass that would delete more than this fraction of the
    /// objects the manifest holds (default 0.1).
    pub max_fraction: f64,
    /// Move deleted objects under this prefix of the target, as
    /// `prefix/<deletion time>/<key>`, instead of deleting them. The job's
    /// filters must leave it out ([`check_trash_prefix`]).
    pub trash_prefix: Option<String>,
}

impl Default for DeletePolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            max_fraction: 0.1,
            trash_prefix: None,
        }
    }
}

/// Keys deleted per manifest page.
const PAGE: usize = 1000;

/// Refuse a trash prefix the job would replicate into (a source key under
/// it would land in the trash, over trashed objects), an empty one (trashed
/// objects would mix with replicated keys), one with glob characters, or
/// one that is not a valid key prefix. Returns the prefix without its
/// surrounding slashes.
pub fn check_trash_prefix(trash: &str, filter: &KeyFilter) -> Result<String, Error> {
    let prefix = trash.trim_matches('/');
    if prefix.is_empty() {
        return Err(Error::InvalidOption(
            "trash prefix: empty; name a folder of the target, e.g. \"_deleted\"".into(),
        ));
    }
    if prefix.contains(['*', '?', '[', ']', '{', '}', '\\']) {
        return Err(Error::InvalidOption(format!(
            "trash prefix {prefix:?}: no glob characters (it must be excluded literally)"
        )));
    }
    Path::parse(prefix)
        .map_err(|e| Error::InvalidOption(format!("trash prefix {prefix:?}: {e}")))?;
    if filter.may_accept_under(prefix) {
        return Err(Error::TrashOverlap {
            prefix: prefix.to_owned(),
        });
    }
    Ok(prefix.to_owned())
}

/// A time as UTC ISO 8601 basic with milliseconds: `20260314T092653.123Z`.
pub fn trash_stamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
}

/// What the deletes of one pass came to.
#[derive(Debug, Default)]
pub(crate) struct DeleteReport {
    /// Why no delete was made, if refused.
    pub(crate) refused: Option<String>,
    /// Keys whose delete failed, and why: still recorded, tried again after
    /// the next complete pass; the other keys went on.
    pub(crate) failures: Vec<(String, Error)>,
}

impl Ctx {
    /// Apply `policy` to the recorded missing keys after a complete listing
    /// of the whole key space by this pass, which listed `listed` keys.
    #[tracing::instrument(level = "debug", skip_all, fields(listed = listed))]
    pub(crate) async fn apply_deletes(
        &self,
        policy: &DeletePolicy,
        listed: u64,
    ) -> Result<DeleteReport, Error> {
        let mut report = DeleteReport::default();
        let missing = self.manifest.missing_count()?;
        if missing == 0 {
            return Ok(report);
        }
        let total = self.manifest.object_count()?.max(missing);
        if listed == 0 {
            report.refused = Some(format!(
                "the source listed no objects: refusing to delete the {missing} objects at the target"
            ));
            return Ok(report);
        }
        if missing as f64 > policy.max_fraction * total as f64 {
            report.refused = Some(format!(
                "{missing} of {total} objects ({:.1} %) would be deleted, above max-delete-fraction {}: nothing deleted",
                100.0 * missing as f64 / total as f64,
                policy.max_fraction
            ));
            return Ok(report);
        }
        // One trash folder per pass, named by its deletion time.
        let trash = policy
            .trash_prefix
            .as_deref()
            .map(|t| format!("{}/{}", t.trim_matches('/'), trash_stamp(now_ms())));
        let mut after: Option<String> = None;
        loop {
            let page = self.manifest.missing_page_after(after.as_deref(), PAGE)?;
            let Some(last) = page.last() else {
                return Ok(report);
            };
            after = Some(last.clone());
            for key in page {
                match self.delete_one(trash.as_deref(), &key).await {
                    Ok(()) => {
                        self.manifest.remove_object(&key)?;
                        self.manifest.forget_missing(&key)?;
                        self.stats.deleted.fetch_add(1, Relaxed);
                        tracing::info!(key, "deleted at the target (gone from the source)");
                    }
                    Err(e) => {
                        tracing::warn!(key, error = %e, "delete at the target failed");
                        report.failures.push((key, e));
                    }
                }
            }
        }
    }

    /// Delete one key at the target (copied to `trash/<key>` first; a
    /// trashed object already there is not overwritten: the key fails).
    #[tracing::instrument(level = "debug", skip_all, fields(key = key))]
    pub(crate) async fn delete_one(&self, trash: Option<&str>, key: &str) -> Result<(), Error> {
        let loc = parse_key(key)?;
        let _writing = self.gate.begin_write(key).await;
        if let Some(trash) = trash {
            let to = parse_key(&format!("{trash}/{key}"))?;
            match self.target.inner.head(&to).await {
                Err(object_store::Error::NotFound { .. }) => {}
                Ok(_) => {
                    return Err(Error::TrashOccupied {
                        key: key.to_owned(),
                        trashed: to.to_string(),
                    });
                }
                Err(e) => return Err(store_err("look in the trash", e)),
            }
            match self.target.inner.copy(&loc, &to).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err("move to trash", e)),
            }
        }
        match self.target.inner.delete(&loc).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err("delete at target", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_basic_with_milliseconds() {
        assert_eq!(trash_stamp(0), "19700101T000000.000Z");
        assert_eq!(trash_stamp(1_700_000_000_123), "20231114T221320.123Z");
        assert_eq!(trash_stamp(951_782_400_000 - 1), "20000228T235959.999Z");
        assert_eq!(
            trash_stamp(951_782_400_000 + 86_400_000),
            "20000301T000000.000Z"
        );
        // Later times sort later.
        assert!(trash_stamp(1_700_000_000_123) < trash_stamp(1_700_000_000_124));
    }

    #[test]
    fn trash_prefixes_the_job_replicates_into_are_refused() {
        let f = |inc: &[&str], exc: &[&str]| {
            let v = |s: &[&str]| s.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
            KeyFilter::new(&v(inc), &v(exc)).unwrap_or_else(|e| panic!("{e}"))
        };
        let err = check_trash_prefix(".trash", &f(&[], &[])).expect_err("overlap");
        assert!(matches!(err, Error::TrashOverlap { .. }), "{err}");
        assert!(err.to_string().contains("exclude \".trash/**\""), "{err}");
        assert_eq!(
            check_trash_prefix("/.trash/", &f(&[], &[".trash/**"])).ok(),
            Some(".trash".to_owned())
        );
        assert!(check_trash_prefix("_deleted", &f(&["data/**"], &[])).is_ok());
        assert!(check_trash_prefix("/", &f(&[], &["**"])).is_err());
        assert!(check_trash_prefix("t*", &f(&[], &["**"])).is_err());
    }
}
