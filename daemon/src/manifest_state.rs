//! What the manifest covers of the source, as `verify` and `cutover`
//! report it. Verification compares the target with the manifest; the
//! manifest holds the source only as far as the passes got. A pass that was
//! stopped, killed, failed objects or is still running leaves its start
//! without a complete end (`meta/last_pass`), perhaps a listing checkpoint
//! and uploads in progress: what it did not settle is not in the manifest,
//! so no verification looks at it. The
//! report says so, beside its verdict, rather than let VERIFIED stand for a
//! copy that is not finished.

use std::time::{Duration, UNIX_EPOCH};

use passeur_core::base::filter::KeyFilter;
use passeur_core::manifest::Manifest;
use serde::Serialize;

/// The manifest's coverage of the source when verification ran.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ManifestState {
    /// The last full pass that completed with the job's present filters
    /// (every key they select was looked at, none failed): when it started
    /// and ended (RFC 3339). `None`: no such pass is recorded, so source
    /// keys may be missing from the manifest, and from any verification.
    pub last_complete_pass: Option<PassTimes>,
    /// The last full pass that started, when it did not complete: `ended`
    /// none if it did not end (killed, or still running when a
    /// snapshot of the state was verified); it ended incomplete otherwise
    /// (stopped, objects failed, or its listing was cut short). Keys it did
    /// not settle are not in the manifest at their present version.
    pub unfinished_pass: Option<Unfinished>,
    /// A pass after it did not finish (stopped, killed, or still running
    /// when a snapshot of the state was verified): its listing had reached
    /// this key; source keys after it may not be in the manifest yet.
    pub pass_stopped_at: Option<String>,
    /// Multipart uploads begun and not completed: their keys are not in
    /// the manifest at their new version yet.
    pub uploads_in_progress: u64,
    /// Keys the change feed named whose change is not at the target yet
    /// (a change pass failed them; the next one tries them again).
    pub pending_changes: u64,
}

/// When a pass ran.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PassTimes {
    pub started: String,
    pub ended: String,
}

/// A pass that did not complete.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Unfinished {
    pub started: String,
    pub ended: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

impl ManifestState {
    /// Read from the manifest; a complete pass recorded under other filters
    /// does not count (it did not look at the keys these select).
    pub fn read(m: &Manifest, filter: &KeyFilter) -> Result<Self, passeur_core::Error> {
        let last = m
            .last_complete_pass()?
            .filter(|p| p.filter == filter.fingerprint());
        // Builds before the record existed wrote no `last_pass`: the
        // complete pass and the checkpoint then say what is known. A last
        // pass that completed under other filters is not unfinished: the
        // complete pass under these (older, or none) says what they hold.
        let unfinished = m.last_pass()?.filter(|p| !p.complete).map(|p| Unfinished {
            started: rfc3339(p.started_ms),
            ended: p.ended_ms.map(rfc3339),
        });
        Ok(Self {
            unfinished_pass: unfinished,
            last_complete_pass: last.map(|p| PassTimes {
                started: rfc3339(p.started_ms),
                ended: rfc3339(p.ended_ms),
            }),
            pass_stopped_at: m.listing_checkpoint()?,
            uploads_in_progress: m.uploads()?.len() as u64,
            pending_changes: m.pending_keys()?.len() as u64,
        })
    }

    /// Whether the manifest holds what a complete pass found, with nothing
    /// left half done since.
    pub fn whole(&self) -> bool {
        self.last_complete_pass.is_some()
            && self.unfinished_pass.is_none()
            && self.pass_stopped_at.is_none()
            && self.uploads_in_progress == 0
            && self.pending_changes == 0
    }

    /// Lines for the human summary: what the verdict covers.
    pub fn human(&self) -> String {
        let mut t = match &self.last_complete_pass {
            Some(p) => format!(
                "manifest: as of the last complete pass ({} to {})\n",
                p.started, p.ended
            ),
            None => "manifest: NO complete pass is recorded (with these filters): source keys may be missing from it, and so from this verification\n".to_owned(),
        };
        if let Some(p) = &self.unfinished_pass {
            t.push_str(&match &p.ended {
                Some(e) => format!(
                    "  the last pass ({} to {e}) did not complete (stopped, objects failed, or its listing cut short): keys it did not settle are not verified at their present version\n",
                    p.started
                ),
                None => format!(
                    "  the last pass, started {}, did not end (killed, or still running): keys it did not settle are not verified at their present version\n",
                    p.started
                ),
            });
        }
        if let Some(k) = &self.pass_stopped_at {
            t.push_str(&format!(
                "  the listing of a pass that did not complete reached {k:?}: source keys after it are not in the manifest until one does\n"
            ));
        }
        if self.uploads_in_progress > 0 {
            t.push_str(&format!(
                "  {} uploads in progress: their keys are not verified at their new version until a pass completes them\n",
                self.uploads_in_progress
            ));
        }
        if self.pending_changes > 0 {
            t.push_str(&format!(
                "  {} keys the change feed named are pending: their change is not at the target, nor verified, until a pass replicates it\n",
                self.pending_changes
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_complete_pass_with_nothing_half_done_makes_it_whole() {
        let done = PassTimes {
            started: rfc3339(0),
            ended: rfc3339(1_000),
        };
        let whole = ManifestState {
            unfinished_pass: None,
            last_complete_pass: Some(done.clone()),
            pass_stopped_at: None,
            uploads_in_progress: 0,
            pending_changes: 0,
        };
        assert!(whole.whole());
        assert!(!whole.human().contains("NO complete"));
        let stopped = ManifestState {
            pass_stopped_at: Some("k/0042".into()),
            ..whole.clone()
        };
        assert!(!stopped.whole());
        assert!(stopped.human().contains("\"k/0042\""));
        let killed = ManifestState {
            unfinished_pass: Some(Unfinished {
                started: rfc3339(2_000),
                ended: None,
            }),
            ..whole.clone()
        };
        assert!(!killed.whole() && killed.human().contains("did not end"));
        let uploading = ManifestState {
            uploads_in_progress: 2,
            ..whole.clone()
        };
        assert!(!uploading.whole() && uploading.human().contains("2 uploads"));
        let pending = ManifestState {
            pending_changes: 3,
            ..whole.clone()
        };
        assert!(!pending.whole() && pending.human().contains("3 keys the change feed named"));
        let never = ManifestState {
            last_complete_pass: None,
            ..whole
        };
        assert!(!never.whole() && never.human().contains("NO complete pass"));
        assert_eq!(done.ended, "1970-01-01T00:00:01Z");
    }
}
