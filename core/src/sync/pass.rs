//! The inside of one pass: the listing admitted through the filter, each
//! object replicated in a concurrency window, each result settled (counted,
//! reported, checkpointed), and at the end the deletes and the summary.
//! [`super::run_pass`] drives these steps; nothing here is public.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use futures::stream::{Stream, StreamExt};
use object_store::ObjectMeta;
use tokio::sync::Semaphore;

use super::{Event, Failure, MAX_FAILURES_KEPT, PassOptions, PassSummary};
use crate::base::error::{Error, FailureKind, error_chain, store_err};
use crate::base::stats::Stats;
use crate::manifest::Manifest;
use crate::scan::checkpoint::{Ticket, Watermark};
use crate::scan::coverage::{self, DeleteTracker, Listed, Segment};
use crate::scan::listing::{CutSampler, KeyFault};
use crate::stores::Store;
use crate::stores::throttle::Window;
use crate::sync::deletes::DeletePolicy;
use crate::transfer::{Ctx, Outcome, PartRecorded};

/// One pass under way: its shared context and the listing's bookkeeping,
/// shared by the objects in flight (hence the atomics and locks).
pub(super) struct Pass<'a> {
    /// Shared with each object's task.
    ctx: Arc<Ctx>,
    opts: &'a PassOptions,
    manifest: &'a Manifest,
    window: Arc<Window>,
    /// The source lists in key order (object stores, not directories).
    ordered: bool,
    /// The interrupted listing this pass continues after, if any.
    resumed_after: Option<String>,
    segs: Vec<Segment>,
    /// Records delete candidates, when this pass deletes.
    tracker: Option<DeleteTracker<'a>>,
    /// Follows the first segment of an ordered listing only: it is where
    /// the next pass continues if this one is cut short.
    watermark: Watermark,
    /// A complete listing from the first key leaves the cuts of the next
    /// passes' parallel listings.
    sampler: Mutex<CutSampler>,
    /// Segments listed to their end.
    ended: AtomicUsize,
    /// Keys of the earlier run's uploads this pass continued first: each
    /// is counted by its upload, not again as unchanged when the listing
    /// comes to it.
    resumed: Mutex<HashSet<String>>,
}

impl<'a> Pass<'a> {
    /// Plan the listing of a pass whose stores answered: where it starts,
    /// and whether it records delete candidates.
    pub(super) fn new(
        ctx: Ctx,
        manifest: &'a Manifest,
        opts: &'a PassOptions,
    ) -> Result<Self, Error> {
        let ordered = ctx.source.lists_in_order();
        let checkpoint = match (ordered, opts.dry_run, opts.resume_listing) {
            (true, false, true) => manifest.listing_checkpoint()?,
            _ => None,
        };
        let span = opts
            .filter
            .shard()
            .and_then(crate::base::shard::Shard::span)
            .unwrap_or_default();
        let segs = coverage::segments(checkpoint.as_deref(), span);
        // Two segments: the checkpoint is inside the job's span.
        let resumed_after = checkpoint.filter(|_| segs.len() == 2);
        if let Some(k) = &resumed_after {
            tracing::info!(after = %k, "continuing an interrupted listing, then around to it");
        }
        let tracker = if opts.deletes.enabled && !opts.dry_run {
            Some(DeleteTracker::start(
                manifest,
                &opts.filter,
                &segs,
                ordered,
            )?)
        } else {
            None
        };
        let window = Window::new(
            opts.concurrency,
            vec![
                Arc::clone(&ctx.source.pressure),
                Arc::clone(&ctx.target.pressure),
            ],
            Arc::clone(&ctx.stats),
        );
        let sampler = Mutex::new(CutSampler::new(manifest.object_count()?));
        Ok(Self {
            ctx: Arc::new(ctx),
            opts,
            manifest,
            window,
            ordered,
            resumed_after,
            segs,
            tracker,
            watermark: Watermark::default(),
            sampler,
            ended: AtomicUsize::new(0),
            resumed: Mutex::new(HashSet::new()),
        })
    }

    /// The pass's results: the `unfinished` uploads of an earlier run first
    /// (whatever the checkpoint says: they may lie before it), then the
    /// listing until `stop` is set, each object replicated in the window.
    pub(super) fn results(
        &self,
        unfinished: Vec<ObjectMeta>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<impl Stream<Item = Done> + '_, Error> {
        let listing = coverage::listing(
            &self.ctx.source,
            self.manifest,
            &self.segs,
            self.opts.listing_concurrency,
        )?
        .take_until(async move {
            let mut rx = stop;
            let _ = rx.wait_for(|s| *s).await;
        });
        let listed = listing.filter_map(move |item| futures::future::ready(self.admit(item)));
        self.resumed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(unfinished.iter().map(|m| m.location.as_ref().to_owned()));
        let unfinished =
            futures::stream::iter(unfinished.into_iter().map(|m| Work::Object(m, None)));
        Ok(unfinished
            .chain(listed)
            .map(move |work| self.work(work))
            .buffer_unordered(self.opts.concurrency.max(1)))
    }

    /// What one listing item becomes: work, or nothing (filtered out, or
    /// the end of a segment). Every item is seen by the delete tracker.
    fn admit(&self, item: Listed) -> Option<Work> {
        if let Some(t) = &self.tracker {
            t.see(&item);
        }
        match item {
            Listed::Object(m, seg) => {
                let stats = &self.ctx.stats;
                let key = m.location.as_ref();
                if !self.opts.filter.accepts(key) {
                    stats.excluded.fetch_add(1, Relaxed);
                    return None;
                }
                let ticket = (self.ordered && seg == 0).then(|| self.watermark.listed(key));
                if self.resumed_after.is_none() {
                    self.sampler
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .see(key);
                }
                stats.listed.fetch_add(1, Relaxed);
                stats.listed_bytes.fetch_add(m.size, Relaxed);
                Some(Work::Object(m, ticket))
            }
            Listed::Fault(o) => {
                // Not the job's: as any key the filter leaves out (a key
                // listed out of order still fails: it may hide another).
                if !o.breaks_order() && !self.opts.filter.accepts(o.key()) {
                    self.ctx.stats.excluded.fetch_add(1, Relaxed);
                    return None;
                }
                self.ctx.stats.listed.fetch_add(1, Relaxed);
                Some(Work::Fault(o))
            }
            Listed::Failed(e) => Some(Work::ListingFailed(e)),
            Listed::End(_) => {
                self.ended.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Do one item's work: replicate an object while holding a slot of the
    /// window. An object written to a local directory gives its slot back
    /// while it waits for the shared `syncfs` that makes it durable: the
    /// window bounds the objects being worked on, the stream's ceiling all
    /// of them (a window full of objects waiting for one `syncfs` left the
    /// cores idle).
    async fn work(&self, work: Work) -> Done {
        match work {
            Work::Object(meta, ticket) => {
                let mut slot = Some(self.window.acquire().await);
                let (tx, written) = tokio::sync::oneshot::channel();
                let mut r = {
                    let replicate = self.ctx.replicate(&meta, self.opts.dry_run, Some(tx));
                    let mut replicate = std::pin::pin!(replicate);
                    tokio::select! {
                        r = &mut replicate => r,
                        Ok(()) = written => {
                            drop(slot.take());
                            replicate.await
                        }
                    }
                };
                if matches!(r, Ok(Outcome::Vanished)) {
                    r = slash_key_check(&self.ctx.source, &meta.location).await;
                }
                match (slot, &r) {
                    // Settled from the manifest: no request to measure.
                    (Some(s), Ok(Outcome::Unchanged | Outcome::WouldCopy)) => s.uncounted(),
                    (s, _) => drop(s),
                }
                Done::Object(meta, ticket, r)
            }
            Work::Fault(o) => Done::Fault(o),
            Work::ListingFailed(e) => Done::ListingFailed(e),
        }
    }

    /// Settle one result: count it, report it, and move the listing
    /// checkpoint past the keys finished in order.
    pub(super) fn settle(
        &self,
        done: Done,
        tally: &mut Tally,
        on_event: &impl Fn(&Event),
    ) -> Result<(), Error> {
        let (mut key, size, ticket, r) = match done {
            Done::Object(meta, ticket, r) => {
                (meta.location.as_ref().to_owned(), meta.size, ticket, r)
            }
            Done::ListingFailed(e) => {
                // The rest of that key range is not listed this pass; the
                // ranges after it still are. The next pass lists from the
                // first key again (no checkpoint past a failure).
                let msg = format!(
                    "listing {} failed: {}",
                    self.ctx.source.url,
                    error_chain(&e)
                );
                tracing::warn!("{msg}");
                tally.listing_error.get_or_insert(msg);
                return Ok(());
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
        // The state directory failed (a full disk, a damaged file): no
        // object can be recorded, so the pass stops here, loudly.
        let r = match r {
            Err(e @ (Error::Db { .. } | Error::Corrupt(_))) => return Err(e),
            r => r,
        };
        let counted_by_its_upload = matches!(r, Ok(Outcome::Unchanged))
            && self
                .resumed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        if !counted_by_its_upload {
            count(&self.ctx.stats, &r, size);
        }
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
            self.watermark.finished(t);
        }
        if !self.opts.dry_run
            && self.ordered
            && tally.listing_error.is_none()
            && let Some(mark) = self.watermark.due()
        {
            self.manifest.set_listing_checkpoint(Some(&mark))?;
            // About once a second: a power cut loses at most the last
            // second of object records (upload parts are synced as they
            // complete).
            self.manifest.sync()?;
        }
        Ok(())
    }

    /// End the pass: deletes (after a complete listing only), where the
    /// next pass starts, and the summary.
    pub(super) async fn finish(
        &self,
        mut tally: Tally,
        interrupted: bool,
    ) -> Result<PassSummary, Error> {
        let listing_complete =
            !interrupted && self.ended.load(Relaxed) == self.segs.len() && tally.listing_intact();
        let deletes_refused = match &self.tracker {
            Some(t) if !interrupted => {
                deletes_after(
                    &self.ctx,
                    t,
                    &self.opts.deletes,
                    listing_complete,
                    &mut tally,
                )
                .await?
            }
            // Stopped: nothing was deleted, and nothing to say about it.
            _ => None,
        };
        let stats = &self.ctx.stats;
        if listing_complete {
            stats.listing_done.store(1, Relaxed);
        }
        if !self.opts.dry_run && self.ordered {
            self.leave_checkpoint(listing_complete, interrupted && tally.listing_intact())?;
        }
        let root = self.manifest.merkle_root()?;
        self.manifest.settle()?;
        Ok(PassSummary {
            stats: stats.snapshot(),
            failures: tally.failures,
            failed_by_kind: tally.failed_by_kind,
            listing_error: tally.listing_error,
            listing_complete,
            interrupted,
            merkle_root: root.to_hex(),
            resumed_after: self.resumed_after.clone(),
            deletes_refused,
        })
    }

    /// Where the next pass starts: after the watermark only if this one was
    /// `stopped_intact` (stopped with its listing intact); from the first
    /// key after a complete listing or a listing that failed (a checkpoint
    /// past a failure would make every later pass fail at once).
    fn leave_checkpoint(&self, listing_complete: bool, stopped_intact: bool) -> Result<(), Error> {
        if listing_complete && self.resumed_after.is_none() {
            let cuts = self
                .sampler
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take_cuts();
            self.manifest.set_listing_cuts(&cuts)?;
        }
        let next = match (stopped_intact, self.watermark.mark()) {
            (true, Some(mark)) => Some(mark),
            (true, None) => self.resumed_after.clone(),
            (false, _) => None,
        };
        self.manifest.set_listing_checkpoint(next.as_deref())
    }
}

/// What the pass does with one listing item.
enum Work {
    Object(object_store::ObjectMeta, Option<Ticket>),
    Fault(KeyFault),
    ListingFailed(object_store::Error),
}

/// What became of it.
pub(super) enum Done {
    Object(
        object_store::ObjectMeta,
        Option<Ticket>,
        Result<Outcome, Error>,
    ),
    Fault(KeyFault),
    ListingFailed(object_store::Error),
}

/// What went wrong in a pass, as its summary reports it.
#[derive(Default)]
pub(super) struct Tally {
    /// Failed objects (at most [`MAX_FAILURES_KEPT`]).
    pub(super) failures: Vec<Failure>,
    /// Every failure, counted by kind.
    pub(super) failed_by_kind: BTreeMap<FailureKind, u64>,
    /// The first listing error.
    listing_error: Option<String>,
    /// Keys the listing gave out of order.
    out_of_order: u64,
    /// Keys the listing named wrongly (see [`Error::MisreadKey`]): the
    /// listing did not show what the source holds, so no deletes follow it.
    misread: u64,
}

impl Tally {
    /// Whether the listing showed the source as it is: no request failed,
    /// no key out of order, no key misread.
    fn listing_intact(&self) -> bool {
        self.listing_error.is_none() && self.out_of_order == 0 && self.misread == 0
    }

    /// Keep a failed key with its kind and reason.
    pub(super) fn fail(&mut self, key: &str, e: &Error) {
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
pub(super) fn count(stats: &Stats, r: &Result<Outcome, Error>, size: u64) {
    match r {
        Ok(Outcome::Copied) => &stats.copied,
        Ok(Outcome::Unchanged) => &stats.unchanged,
        Ok(Outcome::Deduplicated) => &stats.deduplicated,
        Ok(Outcome::Adopted) => &stats.adopted,
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
    tracker: &DeleteTracker<'_>,
    policy: &DeletePolicy,
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

/// Options a pass refuses before touching a store.
pub(super) fn check_options(opts: &PassOptions, target: &Store) -> Result<(), Error> {
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
pub(super) fn pass_ctx(
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
        adopt: false,
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
            Err(e) => Err(store_err("check a vanished key", e)),
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
        Err(e) => Err(store_err("check a vanished key", e)),
    }
}
