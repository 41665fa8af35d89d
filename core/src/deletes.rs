//! Deletes at the target: off unless asked. After a pass whose listing
//! was complete, objects the manifest holds but the source no longer lists
//! (`manifest/missing.rs`; only keys the include / exclude patterns accept)
//! are deleted at the target, or moved under a trash prefix, and forgotten.
//! Refused, with the reason in the summary, when the source listed nothing
//! or more than `max_fraction` of the manifest would go in one pass — the
//! mistakes (an emptied prefix, wrong credentials scoped to an empty
//! bucket) that make tools delete a whole replica.

use std::sync::atomic::Ordering::Relaxed;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::Error;
use crate::transfer::{Ctx, store_err};

/// What a job may delete at its target.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletePolicy {
    /// Delete at all (default: no).
    pub enabled: bool,
    /// Refuse a pass that would delete more than this fraction of the
    /// objects the manifest holds (default 0.1).
    pub max_fraction: f64,
    /// Move deleted objects under this prefix of the target instead of
    /// deleting them.
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

impl Ctx {
    /// Apply `policy` to the recorded missing keys after a complete listing
    /// of `listed` keys. Returns why deletes were refused, if they were.
    pub(crate) async fn apply_deletes(
        &self,
        policy: &DeletePolicy,
        listed: u64,
    ) -> Result<Option<String>, Error> {
        let missing = self.manifest.missing_count()?;
        if missing == 0 {
            return Ok(None);
        }
        let total = self.manifest.object_count_estimate()?.max(missing);
        if listed == 0 {
            return Ok(Some(format!(
                "the source listed no objects: refusing to delete the {missing} objects at the target"
            )));
        }
        if missing as f64 > policy.max_fraction * total as f64 {
            return Ok(Some(format!(
                "{missing} of about {total} objects ({:.1} %) would be deleted, above max-delete-fraction {}: nothing deleted",
                100.0 * missing as f64 / total as f64,
                policy.max_fraction
            )));
        }
        loop {
            let page = self.manifest.missing_page(PAGE)?;
            if page.is_empty() {
                return Ok(None);
            }
            for key in page {
                let loc = Path::parse(&key).map_err(|e| Error::Object(e.to_string()))?;
                let _writing = self.gate.begin_write(&key).await;
                if let Some(trash) = &policy.trash_prefix {
                    let to = Path::parse(format!("{}/{key}", trash.trim_matches('/')))
                        .map_err(|e| Error::Object(e.to_string()))?;
                    match self.target.inner.copy(&loc, &to).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(store_err("move to trash", e)),
                    }
                }
                match self.target.inner.delete(&loc).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store_err("delete at target", e)),
                }
                self.manifest.remove_object(&key)?;
                self.manifest.forget_missing(&key)?;
                self.stats.deleted.fetch_add(1, Relaxed);
                tracing::info!(key, "deleted at the target (gone from the source)");
            }
        }
    }
}
