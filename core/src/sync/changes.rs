//! A change pass: the keys the Azure change feed named since the cursor,
//! each looked at again at the source (HEAD) and replicated, or deleted
//! at the target under the job's delete policy, with the transfer, resume
//! and dedup paths of a full pass. The feed is a hint, never the truth:
//! a change pass claims nothing about keys the feed did not name (it
//! never lists, never sets `listing_complete`), and the periodic full
//! pass still catches what the feed missed.
//!
//! The cursor moves past a batch of events only once every key the batch
//! named is settled: at the target, gone from the source, or recorded as
//! pending (`changes_pending`, tried again first by every change pass). A
//! stopped pass leaves the cursor where it was: its events are read again.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;

use super::pass::{self, Tally, count};
use super::{Event, Failure, PassOptions};
use crate::base::error::{Error, FailureKind, store_err};
use crate::base::now_ms;
use crate::base::stats::{Snapshot, Stats};
use crate::feed::segments::SEGMENTS_PREFIX;
use crate::feed::{ChangeSource, Cursor};
use crate::manifest::Manifest;
use crate::stores::Store;
use crate::stores::throttle::Window;
use crate::sync::deletes::trash_stamp;
use crate::transfer::{Ctx, Outcome};

/// Events read per poll: the keys of one batch are held in memory.
pub const POLL_LIMIT: usize = 10_000;

/// The result of a change pass.
#[derive(Debug, Clone, Serialize)]
pub struct ChangesSummary {
    /// Final counters (`listed`: keys looked at).
    pub stats: Snapshot,
    /// Failed keys (at most [`super::MAX_FAILURES_KEPT`]).
    pub failures: Vec<Failure>,
    /// Every failure, counted by kind.
    pub failed_by_kind: BTreeMap<FailureKind, u64>,
    /// Events read from the feed (control records left out).
    pub events: u64,
    /// Keys looked at: named by events (once per batch) or pending.
    pub keys: u64,
    /// Keys not at the source when looked at.
    pub gone: u64,
    /// Keys pending after this pass (failed; tried again next time).
    pub pending: u64,
    /// The oldest change of a pending key (RFC 3339).
    pub pending_since: Option<String>,
    /// The feed was read up to its `lastConsumable`.
    pub caught_up: bool,
    /// `lastConsumable` when the feed was last read (RFC 3339): every
    /// change the feed recorded before it is at the target, unless its key
    /// is pending.
    pub consumable_until: Option<String>,
    /// Stopped on request (the cursor did not move past the batch).
    pub interrupted: bool,
    /// Why deletes at the target were refused, if they were.
    pub deletes_refused: Option<String>,
    /// Dataset Merkle root after the pass (hex).
    pub merkle_root: String,
}

impl ChangesSummary {
    /// Whether every change the feed recorded up to `consumable_until` is
    /// at the target: nothing failed or pending, the feed read to its end.
    pub fn complete(&self) -> bool {
        self.stats.failed == 0
            && self.pending == 0
            && self.caught_up
            && !self.interrupted
            && self.deletes_refused.is_none()
    }
}

/// When the feed must be read from for a full pass that starts at
/// `started_ms`: the start of its hour, taken five minutes earlier so
/// that a host clock a little ahead of Azure's loses nothing.
pub(super) fn anchor_ms(started_ms: i64) -> i64 {
    let t = started_ms - 5 * 60_000;
    t - t.rem_euclid(3_600_000)
}

/// A full pass over an Azure source starts: the first one anchors the
/// feed cursor at its start (the changes it may not see are after that).
pub(super) fn anchor_if_absent(manifest: &Manifest, started_ms: i64) -> Result<(), Error> {
    if manifest.feed_cursor::<Cursor>()?.is_none() {
        // Until a full pass completes, the manifest may lack keys changed
        // before the anchor (one failed): the feed alone does not cover them.
        manifest.set_feed_covered(false)?;
        manifest.set_feed_cursor(&Cursor {
            segment_ms: anchor_ms(started_ms),
            shards: Vec::new(),
        })?;
    }
    Ok(())
}

/// A complete full pass that started at `started_ms` replicated every
/// change before it: the cursor moves up to its anchor (never back), past
/// any gap before it, and the keys pending since before it are settled.
pub(super) fn after_complete_pass(manifest: &Manifest, started_ms: i64) -> Result<(), Error> {
    let anchor = anchor_ms(started_ms);
    match manifest.feed_cursor::<Cursor>()? {
        Some(c) if c.segment_ms >= anchor => {}
        _ => manifest.set_feed_cursor(&Cursor {
            segment_ms: anchor,
            shards: Vec::new(),
        })?,
    }
    manifest.clear_pending_before(started_ms)?;
    manifest.set_feed_covered(true)
}

/// What looking at one key came to.
enum Looked {
    /// At the source: replicated (or failed), with its size.
    Object(u64, Result<Outcome, Error>),
    /// Not at the source.
    Gone,
    /// Could not be looked at.
    Failed(Error),
}

/// One change pass under way.
struct Changes<'a> {
    /// Shared with each object's task.
    ctx: Arc<Ctx>,
    opts: &'a PassOptions,
    manifest: &'a Manifest,
    window: Arc<Window>,
    tally: Tally,
    keys: u64,
    gone: u64,
    deletes_refused: Option<String>,
    /// Keys recorded in `changes_pending`.
    pending: HashSet<String>,
    /// Objects the manifest held when the pass started (the delete guard's
    /// base).
    replica_at_start: u64,
    /// The trash folder of this pass's deletes.
    trash: Option<String>,
}

impl Changes<'_> {
    async fn look(&self, key: &str) -> Looked {
        // A name object_store would carry changed (an empty segment, `.`,
        // `..`, a trailing `/`) would look at another key: refused by name.
        let loc = match object_store::path::Path::parse(key) {
            Ok(l) if l.as_ref() == key => l,
            _ => {
                return Looked::Failed(Error::NotCarried {
                    key: key.to_owned(),
                    reason: "a blob name object_store cannot carry unchanged (an empty segment, '.', '..' or a trailing '/'): not replicated".to_owned(),
                });
            }
        };
        let slot = self.window.acquire().await;
        let looked = match self.ctx.source.inner.head(&loc).await {
            Ok(meta) => match self.ctx.replicate(&meta, self.opts.dry_run, None).await {
                Ok(Outcome::Vanished) => Looked::Gone,
                r => Looked::Object(meta.size, r),
            },
            Err(object_store::Error::NotFound { .. }) => Looked::Gone,
            Err(e) => Looked::Failed(store_err("look at a changed key", e)),
        };
        drop(slot);
        looked
    }

    /// Settle one key; `gone` collects the keys to delete at the target.
    fn settle(
        &mut self,
        key: String,
        since_ms: i64,
        looked: Looked,
        gone: &mut Vec<(String, i64)>,
        on_event: &impl Fn(&Event),
    ) -> Result<(), Error> {
        self.keys += 1;
        let stats = &self.ctx.stats;
        stats.listed.fetch_add(1, Relaxed);
        let (size, r) = match looked {
            Looked::Gone => {
                self.gone += 1;
                stats.vanished.fetch_add(1, Relaxed);
                let held = self.manifest.object(&key)?.is_some();
                if held && self.opts.deletes.enabled {
                    gone.push((key, since_ms));
                } else if !self.opts.dry_run {
                    // Nothing to do at the target (or deletes are off: the
                    // replica keeps it, as a full pass would).
                    self.settled(&key)?;
                }
                return Ok(());
            }
            Looked::Object(size, r) => (size, r),
            Looked::Failed(e) => (0, Err(e)),
        };
        let r = match r {
            Err(e @ (Error::Db { .. } | Error::Corrupt(_))) => return Err(e),
            r => r,
        };
        count(stats, &r, size);
        stats.listed_bytes.fetch_add(size, Relaxed);
        if !self.opts.dry_run {
            match &r {
                Ok(_) => self.settled(&key)?,
                Err(e) => self.unsettled(&key, since_ms, &e.to_string())?,
            }
        }
        if let Err(e) = &r {
            tracing::debug!(%key, reason = %e, "changed key failed");
            self.tally.fail(&key, e);
        }
        let result = r.map_err(|e| e.to_string());
        on_event(&Event::Object { key, size, result });
        Ok(())
    }

    /// `key` is at the target (or needs nothing there): no longer pending.
    /// Only keys recorded as pending are written to.
    fn settled(&mut self, key: &str) -> Result<(), Error> {
        if self.pending.remove(key) {
            self.manifest.clear_pending(key)?;
        }
        Ok(())
    }

    /// `key` is not at the target: pending since `since_ms`.
    fn unsettled(&mut self, key: &str, since_ms: i64, reason: &str) -> Result<(), Error> {
        self.pending.insert(key.to_owned());
        self.manifest.note_pending(key, since_ms, reason)
    }

    /// Delete at the target the keys of one batch gone from the source,
    /// unless this change pass would then have deleted more than the
    /// policy's fraction of the replica it started with, as a full pass
    /// may not (then they stay pending: a full pass decides).
    async fn delete_gone(&mut self, gone: Vec<(String, i64)>) -> Result<(), Error> {
        if gone.is_empty() {
            return Ok(());
        }
        let total = self.replica_at_start.max(1);
        let policy = &self.opts.deletes;
        let would = self.ctx.stats.deleted.load(Relaxed) + gone.len() as u64;
        if would as f64 > policy.max_fraction * total as f64 {
            let why = format!(
                "{would} of {total} objects would be deleted by this change pass, above max-delete-fraction {}: {} keys not deleted",
                policy.max_fraction,
                gone.len()
            );
            tracing::warn!("{why}");
            for (key, since) in &gone {
                self.unsettled(key, *since, &why)?;
            }
            self.deletes_refused.get_or_insert(why);
            return Ok(());
        }
        let trash = self.trash.get_or_insert_with(|| {
            policy
                .trash_prefix
                .as_deref()
                .map(|t| format!("{}/{}", t.trim_matches('/'), trash_stamp(now_ms())))
                .unwrap_or_default()
        });
        let trash = (!trash.is_empty()).then(|| trash.clone());
        for (key, since) in gone {
            match self.ctx.delete_one(trash.as_deref(), &key).await {
                Ok(()) => {
                    self.manifest.remove_object(&key)?;
                    self.settled(&key)?;
                    self.ctx.stats.deleted.fetch_add(1, Relaxed);
                    tracing::info!(key, "deleted at the target (the feed saw it go)");
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "delete at the target failed");
                    self.ctx.stats.failed.fetch_add(1, Relaxed);
                    self.unsettled(&key, since, &e.to_string())?;
                    self.tally.fail(&key, &e);
                }
            }
        }
        Ok(())
    }
}

/// Run one change pass from `source` to `target`: read the feed from the
/// manifest's cursor up to `lastConsumable`, replicating the keys it names
/// batch by batch (keys pending from earlier passes and unfinished uploads
/// first). `shutdown` resolving stops taking new keys; keys in progress
/// finish, and the cursor stays before the batch.
#[tracing::instrument(level = "debug", skip_all, fields(source = %source.url, target = %target.url))]
#[allow(
    clippy::too_many_arguments,
    reason = "run_pass's arguments and the feed"
)]
pub async fn run_changes(
    source: Store,
    target: Store,
    manifest: Arc<Manifest>,
    opts: &PassOptions,
    feed: &ChangeSource,
    stats: Arc<Stats>,
    on_event: impl Fn(&Event),
    shutdown: impl Future<Output = ()>,
) -> Result<ChangesSummary, Error> {
    pass::check_options(opts, &target)?;
    source.probe().await?;
    target.probe().await?;
    manifest.bind(&source.url, &target.url, &opts.chunking)?;
    if !opts.dry_run {
        manifest.keep_shard(opts.filter.shard())?;
    }
    let mut cursor: Cursor = manifest.feed_cursor()?.ok_or_else(|| Error::ChangeFeed {
        path: SEGMENTS_PREFIX.to_owned(),
        detail: "no cursor yet: the first full pass of the job anchors the feed at its start; run one first".to_owned(),
    })?;
    feed.reader.check_reach(&cursor).await?;
    let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
    let (parts_tx, mut parts_rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = pass::pass_ctx(&source, target, &manifest, opts, &stats, pause_rx, parts_tx);
    // Keys to look at first: pending ones and unfinished uploads.
    let mut keys = BTreeMap::new();
    for (key, p) in manifest.pending_keys()? {
        // A key given to another shard, or filtered out, since it was
        // noted is no longer this job's to replicate.
        if opts.filter.accepts(&key) {
            keys.insert(key, p.since_ms);
        } else if !opts.dry_run {
            manifest.clear_pending(&key)?;
        }
    }
    let pending = keys.keys().cloned().collect();
    if !opts.dry_run {
        for m in ctx.sweep_uploads(&opts.filter).await? {
            keys.entry(m.location.to_string()).or_insert_with(now_ms);
        }
    }
    let window = Window::new(
        opts.concurrency,
        vec![
            Arc::clone(&ctx.source.pressure),
            Arc::clone(&ctx.target.pressure),
        ],
        Arc::clone(&ctx.stats),
    );
    let mut run = Changes {
        ctx: Arc::new(ctx),
        opts,
        manifest: &manifest,
        window,
        tally: Tally::default(),
        keys: 0,
        gone: 0,
        deletes_refused: None,
        pending,
        replica_at_start: manifest.object_count()?,
        trash: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let (mut events, mut caught_up, mut interrupted) = (0u64, false, false);
    let mut consumable_until = None;
    while !interrupted {
        let polled = tokio::select! {
            biased;
            () = &mut shutdown => {
                interrupted = true;
                break;
            }
            p = feed.reader.poll(&cursor, POLL_LIMIT) => p?,
        };
        events += polled.events.len() as u64;
        for ev in &polled.events {
            let Some(key) = feed.key_of(ev) else { continue };
            if !opts.filter.accepts(key) {
                run.ctx.stats.excluded.fetch_add(1, Relaxed);
                continue;
            }
            let since = chrono::DateTime::parse_from_rfc3339(&ev.time)
                .map_or_else(|_| now_ms(), |t| t.timestamp_millis());
            let e = keys.entry(key.to_owned()).or_insert(since);
            *e = (*e).min(since);
        }
        let batch = std::mem::take(&mut keys);
        let n = batch.len();
        let mut settled = 0;
        let mut gone = Vec::new();
        let done = {
            let stop = stop_rx.clone();
            let run_ref = &run;
            let results = futures::stream::iter(batch)
                .take_until(async move {
                    let mut rx = stop;
                    let _ = rx.wait_for(|s| *s).await;
                })
                .map(|(key, since)| async move {
                    let looked = run_ref.look(&key).await;
                    (key, since, looked)
                })
                .buffer_unordered(opts.concurrency.max(1));
            let mut results = std::pin::pin!(results);
            let mut done = Vec::with_capacity(n);
            loop {
                let next = tokio::select! {
                    biased;
                    () = &mut shutdown, if !interrupted => {
                        interrupted = true;
                        let _ = pause_tx.send(true);
                        let _ = stop_tx.send(true);
                        tracing::info!("stop requested: finishing keys in progress");
                        continue;
                    }
                    Some(part) = parts_rx.recv() => {
                        on_event(&Event::Part(part));
                        continue;
                    }
                    n = results.next() => n,
                };
                let Some(d) = next else { break };
                done.push(d);
            }
            done
        };
        for (key, since, looked) in done {
            settled += 1;
            run.settle(key, since, looked, &mut gone, &on_event)?;
        }
        if !opts.dry_run && !interrupted {
            run.delete_gone(gone).await?;
        }
        while let Ok(part) = parts_rx.try_recv() {
            on_event(&Event::Part(part));
        }
        if interrupted || settled < n {
            break;
        }
        consumable_until = Some(polled.consumable_until.to_rfc3339());
        cursor = polled.cursor;
        if !opts.dry_run {
            manifest.set_feed_cursor(&cursor)?;
        }
        if !polled.limited {
            caught_up = true;
            break;
        }
    }
    let pending = manifest.pending_keys()?;
    let pending_since = pending
        .iter()
        .map(|(_, p)| p.since_ms)
        .min()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339());
    let root = manifest.merkle_root()?;
    manifest.settle()?;
    let tally = run.tally;
    Ok(ChangesSummary {
        stats: run.ctx.stats.snapshot(),
        failures: tally.failures,
        failed_by_kind: tally.failed_by_kind,
        events,
        keys: run.keys,
        gone: run.gone,
        pending: pending.len() as u64,
        pending_since,
        caught_up,
        consumable_until,
        interrupted,
        deletes_refused: run.deletes_refused,
        merkle_root: root.to_hex(),
    })
}
