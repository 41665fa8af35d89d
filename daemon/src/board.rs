//! What the service reports about itself: per job, the pass running now
//! (live counters), the last finished pass, totals since start, and the
//! replication lag (time since the start of the last complete pass: every
//! change the source had by then is at the target), and for jobs that
//! follow a change feed, the change lag (time since the moment before which
//! every change the feed recorded is at the target). Rendered as the JSON
//! of `passeur status` and as Prometheus text for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use passeur_core::base::stats::{Snapshot, Stats};
use passeur_core::sync::PassSummary;
use passeur_core::sync::changes::ChangesSummary;
use serde::Serialize;

fn epoch_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A finished pass.
#[derive(Debug, Clone, Serialize)]
pub struct LastPass {
    /// Start, seconds since the Unix epoch.
    pub started: f64,
    /// End, seconds since the Unix epoch.
    pub ended: f64,
    /// The pass listed the whole key space and everything is at the target.
    pub complete: bool,
    /// Counters.
    pub stats: Snapshot,
    /// Failed objects, first ones with their reasons.
    pub failures: Vec<(String, String)>,
    /// Why deletes were refused, if they were.
    pub deletes_refused: Option<String>,
    /// The listing error that left part of the key space unlisted (the next
    /// pass lists from the first key again).
    pub listing_error: Option<String>,
}

/// Totals since the service started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Passes finished.
    pub passes: u64,
    /// Passes that failed to run (stores, state directory).
    pub pass_errors: u64,
    /// Objects copied.
    pub copied: u64,
    /// Objects materialised by server-side copy.
    pub deduplicated: u64,
    /// Objects found at the target already and recorded, not written.
    pub adopted: u64,
    /// Objects deleted at the target.
    pub deleted: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// Answers 429 / 503 from the stores.
    pub throttled: u64,
}

impl Totals {
    /// Count a finished pass's objects and bytes (full or change pass).
    fn add(&mut self, st: &Snapshot) {
        self.copied += st.copied;
        self.deduplicated += st.deduplicated;
        self.adopted += st.adopted;
        self.deleted += st.deleted;
        self.failed += st.failed;
        self.bytes_read += st.bytes_read;
        self.bytes_written += st.bytes_written;
        self.throttled += st.throttled;
    }
}

#[derive(Debug, Default)]
struct JobState {
    running: Option<(Arc<Stats>, SystemTime)>,
    last: Option<LastPass>,
    last_complete_start: Option<SystemTime>,
    next_pass: Option<SystemTime>,
    totals: Totals,
    changes: Option<ChangesState>,
}

/// A job's change feed, as the board keeps it.
#[derive(Debug, Default)]
struct ChangesState {
    /// Every change the feed recorded before this is at the target.
    replicated_until: Option<SystemTime>,
    /// Keys pending after the last change pass, and the oldest change.
    pending: u64,
    pending_since: Option<SystemTime>,
    last: Option<LastChanges>,
    error: Option<String>,
    next: Option<SystemTime>,
}

/// A finished change pass.
#[derive(Debug, Clone, Serialize)]
pub struct LastChanges {
    /// Start, seconds since the Unix epoch.
    pub started: f64,
    /// End, seconds since the Unix epoch.
    pub ended: f64,
    /// Every change up to the feed's `lastConsumable` is at the target.
    pub complete: bool,
    /// Events read.
    pub events: u64,
    /// Keys looked at.
    pub keys: u64,
    /// Objects copied.
    pub copied: u64,
    /// Objects deleted at the target.
    pub deleted: u64,
    /// Keys that failed.
    pub failed: u64,
}

/// A job's change feed, as served.
#[derive(Debug, Clone, Serialize)]
pub struct ChangesStatus {
    /// Seconds since the moment before which every change the feed
    /// recorded is at the target (the feed's own delay included); null
    /// before the first change pass or complete full pass.
    pub lag_s: Option<f64>,
    /// That moment, seconds since the Unix epoch.
    pub replicated_until: Option<f64>,
    /// Keys pending (failed; tried again by the next change pass).
    pub pending: u64,
    /// Age in seconds of the oldest change of a pending key.
    pub oldest_pending_s: Option<f64>,
    /// The last finished change pass.
    pub last: Option<LastChanges>,
    /// Why the last change pass could not run (a gap in the feed…).
    pub error: Option<String>,
    /// Next change pass, seconds since the Unix epoch.
    pub next: Option<f64>,
}

/// One job's status, as served.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// "running" or "idle".
    pub state: &'static str,
    /// Seconds since the start of the last complete pass; null before one.
    pub lag_s: Option<f64>,
    /// The pass running now.
    pub current: Option<Current>,
    /// The last finished pass.
    pub last_pass: Option<LastPass>,
    /// Next pass, seconds since the Unix epoch.
    pub next_pass: Option<f64>,
    /// Since the service started.
    pub totals: Totals,
    /// The change feed the job follows, if it follows one.
    pub changes: Option<ChangesStatus>,
}

/// The pass running now.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    /// Start, seconds since the Unix epoch.
    pub started: f64,
    /// Live counters.
    pub stats: Snapshot,
    /// Objects listed but not finished.
    pub in_flight_or_pending: u64,
    /// Bytes written per second so far.
    pub throughput_bps: f64,
    /// Seconds until the listed bytes are done at that rate (once the
    /// listing is complete).
    pub eta_s: Option<f64>,
}

/// Shared between the service loop and the status server.
#[derive(Debug, Clone, Default)]
pub struct Board {
    jobs: Arc<Mutex<BTreeMap<String, JobState>>>,
}

impl Board {
    fn with<R>(&self, job: &str, f: impl FnOnce(&mut JobState) -> R) -> R {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        f(jobs.entry(job.to_owned()).or_default())
    }

    /// The set of jobs changed (start, reload).
    pub fn set_jobs(&self, names: &[String]) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.retain(|k, _| names.contains(k));
        for n in names {
            jobs.entry(n.clone()).or_default();
        }
    }

    /// A pass starts.
    pub fn pass_started(&self, job: &str, stats: Arc<Stats>) {
        self.with(job, |j| j.running = Some((stats, SystemTime::now())));
    }

    /// A pass ended with a summary.
    pub fn pass_finished(&self, job: &str, s: &PassSummary, next: SystemTime) {
        self.with(job, |j| {
            let started = j.running.take().map_or_else(SystemTime::now, |(_, t)| t);
            let st = &s.stats;
            j.totals.passes += 1;
            j.totals.add(st);
            if s.complete() {
                j.last_complete_start = Some(started);
                // A complete pass saw every change made before it began.
                if let Some(c) = &mut j.changes {
                    c.replicated_until = c.replicated_until.max(Some(started));
                    c.error = None;
                }
            }
            j.last = Some(LastPass {
                started: epoch_s(started),
                ended: epoch_s(SystemTime::now()),
                complete: s.complete(),
                stats: *st,
                failures: s
                    .failures
                    .iter()
                    .take(20)
                    .map(|f| (f.key.clone(), f.reason.clone()))
                    .collect(),
                deletes_refused: s.deletes_refused.clone(),
                listing_error: s.listing_error.clone(),
            });
            j.next_pass = Some(next);
        });
    }

    /// A pass could not run.
    pub fn pass_failed(&self, job: &str, next: SystemTime) {
        self.with(job, |j| {
            j.running = None;
            j.totals.pass_errors += 1;
            j.next_pass = Some(next);
        });
    }

    /// What the state directory says of a job's last complete full pass
    /// (it started at `started`: every change before it was at the target
    /// when it ended), and when the next is due; live figures win.
    pub fn restore(&self, job: &str, started: SystemTime, next: SystemTime) {
        self.with(job, |j| {
            j.last_complete_start = j.last_complete_start.max(Some(started));
            if let Some(c) = &mut j.changes {
                c.replicated_until = c.replicated_until.max(Some(started));
            }
            if j.running.is_none() {
                j.next_pass = Some(next);
            }
        });
    }

    /// The job follows a change feed.
    pub fn follows_changes(&self, job: &str) {
        self.with(job, |j| {
            j.changes.get_or_insert_with(ChangesState::default);
        });
    }

    /// A change pass ended with a summary.
    pub fn changes_finished(&self, job: &str, s: &ChangesSummary, next: SystemTime) {
        self.with(job, |j| {
            let started = j.running.take().map_or_else(SystemTime::now, |(_, t)| t);
            let st = &s.stats;
            j.totals.add(st);
            let c = j.changes.get_or_insert_with(ChangesState::default);
            let at = |rfc: &Option<String>| {
                rfc.as_deref()
                    .and_then(|r| chrono::DateTime::parse_from_rfc3339(r).ok())
                    .map(SystemTime::from)
            };
            c.pending = s.pending;
            c.pending_since = at(&s.pending_since);
            if s.caught_up && !s.interrupted {
                let mut until = at(&s.consumable_until);
                if let (Some(u), Some(p)) = (until, c.pending_since) {
                    until = Some(u.min(p));
                }
                c.replicated_until = c.replicated_until.max(until);
            }
            c.error = None;
            c.next = Some(next);
            c.last = Some(LastChanges {
                started: epoch_s(started),
                ended: epoch_s(SystemTime::now()),
                complete: s.complete(),
                events: s.events,
                keys: s.keys,
                copied: st.copied,
                deleted: st.deleted,
                failed: st.failed,
            });
        });
    }

    /// A change pass could not run (the feed unreadable, a gap).
    pub fn changes_failed(&self, job: &str, error: &str, next: SystemTime) {
        self.with(job, |j| {
            j.running = None;
            j.totals.pass_errors += 1;
            let c = j.changes.get_or_insert_with(ChangesState::default);
            c.error = Some(error.to_owned());
            c.next = Some(next);
        });
    }

    /// Every job's status.
    pub fn status(&self) -> Vec<JobStatus> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        jobs.iter()
            .map(|(name, j)| {
                let current = j.running.as_ref().map(|(stats, started)| {
                    let st = stats.snapshot();
                    let secs = now
                        .duration_since(*started)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let rate = if secs > 0.0 {
                        st.bytes_written as f64 / secs
                    } else {
                        0.0
                    };
                    let left = st.listed_bytes.saturating_sub(st.done_bytes) as f64;
                    Current {
                        started: epoch_s(*started),
                        stats: st,
                        in_flight_or_pending: st.listed.saturating_sub(st.finished()),
                        throughput_bps: rate,
                        eta_s: (st.listing_done && rate > 0.0).then(|| left / rate),
                    }
                });
                JobStatus {
                    name: name.clone(),
                    state: if current.is_some() { "running" } else { "idle" },
                    lag_s: j
                        .last_complete_start
                        .map(|t| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64())),
                    current,
                    last_pass: j.last.clone(),
                    next_pass: j.next_pass.map(epoch_s),
                    totals: j.totals.clone(),
                    changes: j.changes.as_ref().map(|c| {
                        let age =
                            |t: SystemTime| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64());
                        ChangesStatus {
                            lag_s: c.replicated_until.map(age),
                            replicated_until: c.replicated_until.map(epoch_s),
                            pending: c.pending,
                            oldest_pending_s: c.pending_since.map(age),
                            last: c.last.clone(),
                            error: c.error.clone(),
                            next: c.next.map(epoch_s),
                        }
                    }),
                }
            })
            .collect()
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let jobs = self.status();
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&JobStatus) -> Option<f64>| {
                let _ = writeln!(
                    out,
                    "# HELP passeur_{name} {help}\n# TYPE passeur_{name} {kind}"
                );
                for j in &jobs {
                    if let Some(v) = value(j) {
                        let _ = writeln!(out, "passeur_{name}{{job=\"{}\"}} {v}", j.name);
                    }
                }
            };
        let f = |v: u64| Some(v as f64);
        family("passes_total", "counter", "Passes finished.", &|j| {
            f(j.totals.passes)
        });
        family(
            "pass_errors_total",
            "counter",
            "Passes that could not run.",
            &|j| f(j.totals.pass_errors),
        );
        family("objects_copied_total", "counter", "Objects copied.", &|j| {
            f(j.totals.copied)
        });
        family(
            "objects_deduplicated_total",
            "counter",
            "Objects materialised by server-side copy.",
            &|j| f(j.totals.deduplicated),
        );
        family(
            "objects_adopted_total",
            "counter",
            "Objects found at the target with the source's content, recorded without writing.",
            &|j| f(j.totals.adopted),
        );
        family(
            "objects_deleted_total",
            "counter",
            "Objects deleted at the target.",
            &|j| f(j.totals.deleted),
        );
        family(
            "objects_failed_total",
            "counter",
            "Objects that failed.",
            &|j| f(j.totals.failed),
        );
        family(
            "bytes_read_total",
            "counter",
            "Bytes read from the source.",
            &|j| f(j.totals.bytes_read),
        );
        family(
            "bytes_written_total",
            "counter",
            "Bytes written to the target.",
            &|j| f(j.totals.bytes_written),
        );
        family(
            "throttled_responses_total",
            "counter",
            "Answers 429/503 (slow down) from either store, finished passes.",
            &|j| f(j.totals.throttled),
        );
        family(
            "concurrency_limit",
            "gauge",
            "Objects the running pass may run at once (lowered while stores throttle).",
            &|j| j.current.as_ref().map(|c| c.stats.concurrency as f64),
        );
        family(
            "replication_lag_seconds",
            "gauge",
            "Seconds since the start of the last complete pass.",
            &|j| j.lag_s,
        );
        family(
            "change_lag_seconds",
            "gauge",
            "Seconds since the moment before which every change the change feed recorded is at the target.",
            &|j| j.changes.as_ref().and_then(|c| c.lag_s),
        );
        family(
            "changes_pending",
            "gauge",
            "Keys named by the change feed and not at the target (failed; tried again).",
            &|j| j.changes.as_ref().map(|c| c.pending as f64),
        );
        family(
            "change_oldest_pending_seconds",
            "gauge",
            "Age of the oldest change of a pending key.",
            &|j| j.changes.as_ref().and_then(|c| c.oldest_pending_s),
        );
        family("pass_running", "gauge", "1 while a pass runs.", &|j| {
            Some(if j.current.is_some() { 1.0 } else { 0.0 })
        });
        family(
            "objects_in_flight",
            "gauge",
            "Objects listed by the running pass and not finished.",
            &|j| f(j.current.as_ref().map_or(0, |c| c.in_flight_or_pending)),
        );
        family(
            "last_pass_end_timestamp_seconds",
            "gauge",
            "End of the last finished pass.",
            &|j| j.last_pass.as_ref().map(|l| l.ended),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(listing_complete: bool, failed: u64, resumed: bool) -> PassSummary {
        PassSummary {
            stats: Snapshot {
                failed,
                ..Snapshot::default()
            },
            failures: Vec::new(),
            failed_by_kind: std::collections::BTreeMap::new(),
            listing_error: None,
            listing_complete,
            interrupted: false,
            merkle_root: String::new(),
            resumed_after: resumed.then(|| "k".to_owned()),
            deletes_refused: None,
        }
    }

    fn lag(b: &Board) -> Option<f64> {
        b.status().first().and_then(|j| j.lag_s)
    }

    #[test]
    fn lag_moves_only_after_a_pass_over_the_whole_key_space() {
        let b = Board::default();
        b.set_jobs(&["j".to_owned()]);
        let next = SystemTime::now();
        // A pass that did not list the whole source (stopped, listing
        // error, key out of order) proves nothing about what it missed.
        b.pass_started("j", Arc::default());
        b.pass_finished("j", &summary(false, 0, true), next);
        assert_eq!(lag(&b), None);
        // A failed object: not everything is at the target.
        b.pass_started("j", Arc::default());
        b.pass_finished("j", &summary(true, 1, false), next);
        assert_eq!(lag(&b), None);
        // A resumed pass that wrapped around the whole key space counts.
        b.pass_started("j", Arc::default());
        b.pass_finished("j", &summary(true, 0, true), next);
        assert!(lag(&b).is_some_and(|l| l >= 0.0));
    }
}
