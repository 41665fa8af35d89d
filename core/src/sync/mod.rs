//! One replication pass: stream the source listing, replicate each object
//! with bounded concurrency, and report what happened. The listing is never
//! collected in memory; failures of single objects do not stop the pass.

pub mod deletes;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures::stream::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::base::error::{Error, FailureKind, error_chain};
use crate::base::filter::KeyFilter;
use crate::base::stats::{Snapshot, Stats};
use crate::content::chunk::ChunkParams;
use crate::content::hash::Hash;
use crate::manifest::Manifest;
use crate::scan::checkpoint::{Ticket, Watermark};
use crate::scan::coverage::{self, Listed};
use crate::scan::listing::KeyFault;
use crate::stores::Store;
use crate::stores::throttle::Window;
use crate::sync::deletes::DeletePolicy;
use crate::transfer::{Ctx, Outcome, PartRecorded};

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// List and compare only; read and write nothing.
    pub dry_run: bool,
    /// Objects replicated at once.
    pub concurrency: usize,
    /// Bytes of object data buffered at once, all objects together.
    pub memory_budget: u64,
    /// Parts uploaded at once per multipart object.
    pub parts_in_flight: usize,
    /// Content-defined chunking parameters.
    pub chunking: ChunkParams,
    /// Which keys are replicated.
    pub filter: KeyFilter,
    /// What may be deleted at the target.
    pub deletes: DeletePolicy,
    /// Cap on source bytes read per second.
    pub bandwidth_limit: Option<u64>,
    /// Key ranges of the source listed at once (stores that list after a
    /// key server-side; output stays in key order).
    pub listing_concurrency: usize,
    /// Continue an interrupted pass's listing after its checkpoint (then
    /// wrap around to the keys before it). `false` lists from the first key
    /// whatever the state directory says (the final pass of `cutover`).
    pub resume_listing: bool,
}

impl Default for PassOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            concurrency: 8,
            memory_budget: 1024 * 1024 * 1024,
            parts_in_flight: 4,
            chunking: ChunkParams::default(),
            filter: KeyFilter::default(),
            deletes: DeletePolicy::default(),
            bandwidth_limit: None,
            listing_concurrency: 8,
            resume_listing: true,
        }
    }
}

/// A failed object and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Object key relative to the source URL.
    pub key: String,
    /// What kind of failure (from the store's error, never from its text).
    pub kind: FailureKind,
    /// One-line reason.
    pub reason: String,
}

/// Events a pass reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// One object finished.
    Object {
        /// Key relative to the source URL.
        key: String,
        /// Size in bytes.
        size: u64,
        /// What happened, or why it failed.
        result: Result<Outcome, String>,
    },
    /// A multipart part was confirmed by the target and recorded.
    Part(PartRecorded),
}

/// The result of a pass.
#[derive(Debug, Clone, Serialize)]
pub struct PassSummary {
    /// Final counters.
    pub stats: Snapshot,
    /// Failed objects (at most [`MAX_FAILURES_KEPT`]; `stats.failed` counts all).
    pub failures: Vec<Failure>,
    /// Every failure of the pass (objects and deletes), counted by kind.
    pub failed_by_kind: BTreeMap<FailureKind, u64>,
    /// The first listing error, if any (the rest of its key range was not
    /// listed; the ranges after it were).
    pub listing_error: Option<String>,
    /// Whether this pass listed the whole key space itself — from the first
    /// key, or after its checkpoint and then around to it — with no listing
    /// error and no key out of order.
    pub listing_complete: bool,
    /// Whether the pass stopped early on request.
    pub interrupted: bool,
    /// Dataset Merkle root after the pass (hex).
    pub merkle_root: String,
    /// The listing started after this key (an interrupted pass continued)
    /// and wrapped around to it; `None`: it started at the first key.
    pub resumed_after: Option<String>,
    /// Why deletes at the target were refused this pass, if they were.
    pub deletes_refused: Option<String>,
}

/// What the pass does with one listing item.
enum Work {
    Object(object_store::ObjectMeta, Option<Ticket>),
    Fault(KeyFault),
    ListingFailed(object_store::Error),
}

/// What became of it.
enum Done {
    Object(
        object_store::ObjectMeta,
        Option<Ticket>,
        Result<Outcome, Error>,
    ),
    Fault(KeyFault),
    ListingFailed(object_store::Error),
}

/// Failures kept with their reasons in the summary.
pub const MAX_FAILURES_KEPT: usize = 1000;

impl PassSummary {
    /// Whether every source key, listed by this pass over the whole key
    /// space, is at the target (and deletes, if asked, were done).
    pub fn complete(&self) -> bool {
        self.stats.failed == 0
            && self.listing_complete
            && self.listing_error.is_none()
            && !self.interrupted
            && self.deletes_refused.is_none()
    }
}

/// A listed key that was not there when read: gone since the listing
/// (vanished), unless it stands for `key/`, which object_store's listing
/// gives as `key` and cannot read — then it fails by name. Stores listed
/// with their own requests (`rawlist`: S3, Azure) name such keys in the
/// listing, and local directories cannot hold them: no check there. But
/// a key with a space listed by our own S3 requests may be a `+` decoded
/// by mistake (a server that answers `EncodingType=url` without encoding,
/// on a page that did not show it): if the key with `+` is there, it fails
/// by name rather than vanish.
async fn slash_key_check(source: &Store, loc: &object_store::path::Path) -> Result<Outcome, Error> {
    if source.raw.is_some() {
        let key = loc.as_ref();
        if !key.contains(' ') {
            return Ok(Outcome::Vanished);
        }
        let plus = key.replace(' ', "+");
        let Ok(plus_loc) = object_store::path::Path::parse(&plus) else {
            return Ok(Outcome::Vanished);
        };
        return match object_store::ObjectStoreExt::head(source.inner.as_ref(), &plus_loc).await {
            Ok(_) => Err(Error::MisreadKey {
                listed: key.to_owned(),
                key: plus,
            }),
            Err(object_store::Error::NotFound { .. }) => Ok(Outcome::Vanished),
            Err(e) => Err(crate::base::error::store_err("check a vanished key", e)),
        };
    }
    if !source.lists_in_order() {
        return Ok(Outcome::Vanished);
    }
    match crate::scan::listing::holds_slash_key(source.inner.as_ref(), loc).await {
        Ok(false) => Ok(Outcome::Vanished),
        Ok(true) => Err(Error::NotCarried {
            key: format!("{loc}/"),
            reason: format!(
                "a key ending in '/', which object_store lists as {:?} and cannot read: not replicated",
                loc.as_ref()
            ),
        }),
        Err(e) => Err(crate::base::error::store_err("check a vanished key", e)),
    }
}

/// Options a pass refuses before touching a store.
fn check_options(opts: &PassOptions, target: &Store) -> Result<(), Error> {
    opts.chunking.validate().map_err(Error::InvalidOption)?;
    // The trash must lie outside what the job replicates (every caller
    // checks its configuration; a library user gets the same refusal).
    if opts.deletes.enabled
        && let Some(t) = &opts.deletes.trash_prefix
    {
        crate::sync::deletes::check_trash_prefix(t, &opts.filter)?;
    }
    if target.policy.multipart_threshold > opts.memory_budget {
        return Err(Error::InvalidOption(format!(
            "multipart-threshold ({} bytes) exceeds memory-budget ({} bytes): single PUTs are buffered whole",
            target.policy.multipart_threshold, opts.memory_budget
        )));
    }
    Ok(())
}

/// The context every object of the pass shares.
fn pass_ctx(
    source: &Store,
    target: Store,
    manifest: &Arc<Manifest>,
    opts: &PassOptions,
    stats: &Arc<Stats>,
    pause: tokio::sync::watch::Receiver<bool>,
    parts: tokio::sync::mpsc::UnboundedSender<PartRecorded>,
) -> Ctx {
    let memory_mib =
        u32::try_from(opts.memory_budget.div_ceil(1024 * 1024).max(1)).unwrap_or(u32::MAX);
    Ctx {
        source: source.clone(),
        target,
        manifest: Arc::clone(manifest),
        chunking: opts.chunking,
        stats: Arc::clone(stats),
        memory: Arc::new(Semaphore::new(memory_mib as usize)),
        memory_mib,
        parts_in_flight: opts.parts_in_flight,
        gate: crate::transfer::gate::KeyGate::default(),
        stop: pause,
        bandwidth: opts
            .bandwidth_limit
            .map(|b| Arc::new(crate::stores::throttle::Bandwidth::new(b))),
        parts: Some(parts),
    }
}

/// What went wrong in a pass, as its summary reports it.
#[derive(Default)]
struct Tally {
    /// Failed objects (at most [`MAX_FAILURES_KEPT`]).
    failures: Vec<Failure>,
    /// Every failure, counted by kind.
    failed_by_kind: BTreeMap<FailureKind, u64>,
    /// The first listing error.
    listing_error: Option<String>,
    /// Keys the listing gave out of order.
    out_of_order: u64,
    /// Keys the listing named wrongly (see [`Error::MisreadKey`]): the
    /// listing did not show what the source holds, so no deletes follow it.
    misread: u64,
}

impl Tally {
    /// Keep a failed key with its kind and reason.
    fn fail(&mut self, key: &str, e: &Error) {
        *self.failed_by_kind.entry(e.kind()).or_default() += 1;
        if self.failures.len() < MAX_FAILURES_KEPT {
            self.failures.push(Failure {
                key: key.to_owned(),
                kind: e.kind(),
                reason: e.to_string(),
            });
        }
    }
}

/// Count one object's outcome (and its bytes, once done).
fn count(stats: &Stats, r: &Result<Outcome, Error>, size: u64) {
    match r {
        Ok(Outcome::Copied) => &stats.copied,
        Ok(Outcome::Unchanged) => &stats.unchanged,
        Ok(Outcome::Deduplicated) => &stats.deduplicated,
        Ok(Outcome::Vanished) => &stats.vanished,
        Ok(Outcome::Paused) => &stats.paused,
        Ok(Outcome::WouldCopy) => &stats.would_copy,
        Err(_) => &stats.failed,
    }
    .fetch_add(1, Relaxed);
    if r.as_ref().is_ok_and(|o| *o != Outcome::Paused) {
        stats.done_bytes.fetch_add(size, Relaxed);
    }
}

/// Deletes at the end of a pass that tracked them: only after this pass's
/// complete listing of the whole key space. Why they were refused, if they
/// were; a delete the target refuses is a failure of its key.
async fn deletes_after(
    ctx: &Ctx,
    tracker: &coverage::DeleteTracker<'_>,
    policy: &crate::sync::deletes::DeletePolicy,
    listing_complete: bool,
    tally: &mut Tally,
) -> Result<Option<String>, Error> {
    let refused = if !listing_complete {
        Some("deletes skipped: this pass did not list the whole source".to_owned())
    } else if let Some(e) = tracker.error() {
        Some(format!("deletes skipped: {e}"))
    } else {
        let stats = &ctx.stats;
        let listed = stats.listed.load(Relaxed) + stats.excluded.load(Relaxed);
        let report = ctx.apply_deletes(policy, listed).await?;
        for (key, e) in report.failures {
            stats.failed.fetch_add(1, Relaxed);
            tally.fail(&key, &e);
        }
        report.refused
    };
    if let Some(why) = &refused {
        tracing::warn!("{why}");
    }
    Ok(refused)
}

/// Run one pass from `source` to `target`. `shutdown` resolving stops taking
/// new objects; objects in progress finish.
pub async fn run_pass(
    source: Store,
    target: Store,
    manifest: Arc<Manifest>,
    opts: &PassOptions,
    stats: Arc<Stats>,
    on_event: impl Fn(&Event),
    shutdown: impl Future<Output = ()>,
) -> Result<PassSummary, Error> {
    check_options(opts, &target)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Set only by a stop request: resumable uploads pause at a part boundary
    // (a listing error lets them finish).
    let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
    source.probe().await?;
    target.probe().await?;
    // Only a job whose stores answer claims the state directory.
    manifest.bind(&source.url, &target.url, &opts.chunking)?;
    let (parts_tx, mut parts_rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = pass_ctx(&source, target, &manifest, opts, &stats, pause_rx, parts_tx);
    let window = Window::new(
        opts.concurrency,
        vec![
            Arc::clone(&source.pressure),
            Arc::clone(&ctx.target.pressure),
        ],
        Arc::clone(&stats),
    );
    let window_ref = &window;
    // Uploads an earlier run left unfinished continue first, whatever the
    // listing checkpoint says (they may lie before it).
    let unfinished = if opts.dry_run {
        Vec::new()
    } else {
        ctx.sweep_uploads().await?
    };
    let mut tally = Tally::default();
    let ordered = source.lists_in_order();
    let resumed_after = match (ordered, opts.dry_run, opts.resume_listing) {
        (true, false, true) => manifest.listing_checkpoint()?,
        _ => None,
    };
    if let Some(k) = &resumed_after {
        tracing::info!(after = %k, "continuing an interrupted listing, then around to it");
    }
    let segs = coverage::segments(resumed_after.as_deref());
    let base = coverage::listing(&source, &manifest, &segs, opts.listing_concurrency)?;
    let deleting = opts.deletes.enabled && !opts.dry_run;
    let tracker = if deleting {
        Some(coverage::DeleteTracker::start(
            &manifest,
            &opts.filter,
            &segs,
            ordered,
        )?)
    } else {
        None
    };
    let tracker_ref = tracker.as_ref();
    let ended = std::sync::atomic::AtomicUsize::new(0);
    let ended_ref = &ended;
    // The watermark follows the first segment of an ordered listing only:
    // it is where the next pass continues if this one is cut short.
    let watermark = Watermark::default();
    let watermark_ref = &watermark;
    // A complete listing from the first key leaves the cuts of the next
    // passes' parallel listings.
    let sampler = std::sync::Mutex::new(crate::scan::listing::CutSampler::new(
        manifest.object_count()?,
    ));
    let sampler_ref = &sampler;
    let listing = base.take_until(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    });
    let dry_run = opts.dry_run;
    let sampling = resumed_after.is_none();
    let ctx_ref = &ctx;
    let stats_ref = &stats;
    let filter = &opts.filter;
    let listed = listing
        .inspect(move |item| {
            if let Some(t) = tracker_ref {
                t.see(item);
            }
            if matches!(item, Listed::End(_)) {
                ended_ref.fetch_add(1, Relaxed);
            }
        })
        .filter_map(move |item| {
            futures::future::ready(match item {
                Listed::Object(m, seg) => {
                    if filter.accepts(m.location.as_ref()) {
                        let key = m.location.as_ref();
                        let ticket = (ordered && seg == 0).then(|| watermark_ref.listed(key));
                        if sampling {
                            sampler_ref
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .see(key);
                        }
                        stats_ref.listed.fetch_add(1, Relaxed);
                        stats_ref.listed_bytes.fetch_add(m.size, Relaxed);
                        Some(Work::Object(m, ticket))
                    } else {
                        stats_ref.excluded.fetch_add(1, Relaxed);
                        None
                    }
                }
                Listed::Fault(o) => Some(Work::Fault(o)),
                Listed::Failed(e) => Some(Work::ListingFailed(e)),
                Listed::End(_) => None,
            })
        });
    let unfinished = futures::stream::iter(unfinished.into_iter().map(|m| Work::Object(m, None)));
    let results = unfinished
        .chain(listed)
        .map(|work| async move {
            match work {
                Work::Object(meta, ticket) => {
                    let slot = window_ref.acquire().await;
                    let mut r = ctx_ref.replicate(&meta, dry_run).await;
                    if matches!(r, Ok(Outcome::Vanished)) {
                        r = slash_key_check(&ctx_ref.source, &meta.location).await;
                    }
                    drop(slot);
                    Done::Object(meta, ticket, r)
                }
                Work::Fault(o) => Done::Fault(o),
                Work::ListingFailed(e) => Done::ListingFailed(e),
            }
        })
        .buffer_unordered(opts.concurrency.max(1));
    let mut results = std::pin::pin!(results);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut interrupted = false;
    loop {
        let next = tokio::select! {
            // A stop request first (a stream of ready results must not
            // starve it), then parts before the object they belong to.
            biased;
            () = &mut shutdown, if !interrupted => {
                interrupted = true;
                let _ = pause_tx.send(true);
                let _ = stop_tx.send(true);
                tracing::info!("stop requested: finishing objects in progress");
                continue;
            }
            Some(part) = parts_rx.recv() => {
                on_event(&Event::Part(part));
                continue;
            }
            n = results.next() => n,
        };
        let Some(done) = next else { break };
        let (mut key, size, ticket, r) = match done {
            Done::Object(meta, ticket, r) => {
                (meta.location.as_ref().to_owned(), meta.size, ticket, r)
            }
            Done::ListingFailed(e) => {
                // The rest of that key range is not listed this pass; the
                // ranges after it still are. The next pass lists from the
                // first key again (no checkpoint past a failure).
                let msg = format!("listing {} failed: {}", source.url, error_chain(&e));
                tracing::warn!("{msg}");
                tally.listing_error.get_or_insert(msg);
                continue;
            }
            // A key the pass cannot replicate: a failure by name.
            Done::Fault(o) => {
                if o.breaks_order() {
                    tally.out_of_order += 1;
                }
                tracing::warn!(key = o.key(), "{o}");
                let key = o.key().to_owned();
                let reason = o.to_string();
                (key.clone(), 0, None, Err(Error::NotCarried { key, reason }))
            }
        };
        count(&stats, &r, size);
        if let Err(Error::MisreadKey { key: held, .. }) = &r {
            // Named as the store holds it, not as it was misread.
            key.clone_from(held);
            tally.misread += 1;
        }
        if let Err(e) = &r {
            tracing::debug!(%key, reason = %e, "object failed");
            tally.fail(&key, e);
        }
        let result = r.map_err(|e| e.to_string());
        on_event(&Event::Object { key, size, result });
        if let Some(t) = ticket {
            watermark.finished(t);
        }
        if !dry_run
            && ordered
            && tally.listing_error.is_none()
            && let Some(mark) = watermark.due()
        {
            manifest.set_listing_checkpoint(Some(&mark))?;
            // About once a second: a power cut loses at most the last
            // second of object records (upload parts are synced as they
            // complete).
            manifest.sync()?;
        }
    }
    while let Ok(part) = parts_rx.try_recv() {
        on_event(&Event::Part(part));
    }
    let listing_complete = !interrupted
        && ended.load(Relaxed) == segs.len()
        && tally.listing_error.is_none()
        && tally.out_of_order == 0
        && tally.misread == 0;
    let deletes_refused = match &tracker {
        Some(t) if !interrupted => {
            deletes_after(&ctx, t, &opts.deletes, listing_complete, &mut tally).await?
        }
        // Stopped: nothing was deleted, and nothing to say about it.
        _ => None,
    };
    if listing_complete {
        stats.listing_done.store(1, Relaxed);
    }
    if !dry_run && ordered {
        if listing_complete && resumed_after.is_none() {
            let cuts = sampler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take_cuts();
            manifest.set_listing_cuts(&cuts)?;
        }
        // Where the next pass starts: after the watermark only if this one
        // was stopped with its listing intact; from the first key after a
        // complete listing or a listing that failed (a checkpoint past a
        // failure would make every later pass fail at once).
        let next = match (
            interrupted
                && tally.listing_error.is_none()
                && tally.out_of_order == 0
                && tally.misread == 0,
            watermark.mark(),
        ) {
            (true, Some(mark)) => Some(mark),
            (true, None) => resumed_after.clone(),
            (false, _) => None,
        };
        manifest.set_listing_checkpoint(next.as_deref())?;
    }
    let root: Hash = manifest.merkle_root()?;
    manifest.sync()?;
    Ok(PassSummary {
        stats: stats.snapshot(),
        failures: tally.failures,
        failed_by_kind: tally.failed_by_kind,
        listing_error: tally.listing_error,
        listing_complete,
        interrupted,
        merkle_root: root.to_hex(),
        resumed_after,
        deletes_refused,
    })
}
