//! One replication pass: stream the source listing, replicate each object
//! with bounded concurrency, and report what happened. The listing is never
//! collected in memory; failures of single objects do not stop the pass.

pub mod changes;
pub mod deletes;
mod pass;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::stream::StreamExt;
use serde::Serialize;

use crate::base::error::{Error, FailureKind};
use crate::base::filter::KeyFilter;
use crate::base::stats::{Snapshot, Stats};
use crate::content::chunk::ChunkParams;
use crate::manifest::Manifest;
use crate::stores::Store;
use crate::sync::deletes::DeletePolicy;
use crate::transfer::{Outcome, PartRecorded};
use pass::{Pass, Tally};

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
            concurrency: DEFAULT_CONCURRENCY,
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

/// The most objects a pass replicates at once unless configured: the
/// ceiling of its adaptive window ([`crate::stores::window`]), which starts
/// at 64 and grows only while throughput rises. 256 objects of 100 ms each
/// (two round trips 50 ms away) are at most 2,560 objects/s; measured
/// between synthetic stores 50 ms away, 2,037 (bench/README.md, "WAN").
/// Memory stays bounded by the memory budget. A local directory settles
/// near 64: 8 made a first pass over 10⁵ tiny local files 1.5 × slower
/// than 64 (20.1 s against 13.4 s; rclone 13.7 s), 128 gained nothing.
pub const DEFAULT_CONCURRENCY: usize = 256;

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

/// Run one pass from `source` to `target`. `shutdown` resolving stops taking
/// new objects; objects in progress finish.
#[tracing::instrument(level = "debug", skip_all, fields(source = %source.url, target = %target.url))]
pub async fn run_pass(
    source: Store,
    target: Store,
    manifest: Arc<Manifest>,
    opts: &PassOptions,
    stats: Arc<Stats>,
    on_event: impl Fn(&Event),
    shutdown: impl Future<Output = ()>,
) -> Result<PassSummary, Error> {
    pass::check_options(opts, &target)?;
    source.probe().await?;
    target.probe().await?;
    // Only a job whose stores answer claims the state directory.
    manifest.bind(&source.url, &target.url, &opts.chunking)?;
    if !opts.dry_run {
        manifest.keep_shard(opts.filter.shard())?;
    }
    // An Azure source's change feed is read from the start of the job's
    // first full pass, and after a complete one, from its start.
    let started_ms = crate::base::now_ms();
    let anchors = source.kind == crate::stores::StoreKind::Azure && !opts.dry_run;
    if anchors {
        changes::anchor_if_absent(&manifest, started_ms)?;
    }
    // Set only by a stop request: resumable uploads pause at a part boundary
    // (a listing error lets them finish).
    let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
    let (parts_tx, mut parts_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ctx = pass::pass_ctx(&source, target, &manifest, opts, &stats, pause_rx, parts_tx);
    ctx.adopt = !opts.dry_run && adopts(&manifest, opts, &ctx.target).await?;
    let unfinished = if opts.dry_run {
        Vec::new()
    } else {
        ctx.sweep_uploads(&opts.filter).await?
    };
    // Recorded once the state directory has settled what earlier runs
    // left (a full disk stops the pass there first, with its own error).
    let mut last = crate::manifest::LastPass {
        started_ms,
        ended_ms: None,
        complete: false,
    };
    if !opts.dry_run {
        manifest.set_last_pass(&last)?;
    }
    let pass = Pass::new(ctx, &manifest, opts)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tally = Tally::default();
    let mut interrupted = false;
    let results = pass.results(unfinished, stop_rx)?;
    let mut results = std::pin::pin!(results);
    let mut shutdown = std::pin::pin!(shutdown);
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
        pass.settle(done, &mut tally, &on_event)?;
    }
    while let Ok(part) = parts_rx.try_recv() {
        on_event(&Event::Part(part));
    }
    let summary = pass.finish(tally, interrupted).await?;
    if anchors && summary.complete() {
        changes::after_complete_pass(&manifest, started_ms)?;
    }
    if summary.complete() && !opts.dry_run {
        manifest.set_last_complete_pass(&crate::manifest::LastCompletePass {
            started_ms,
            ended_ms: crate::base::now_ms(),
            filter: opts.filter.fingerprint(),
        })?;
    }
    if !opts.dry_run {
        last.ended_ms = Some(crate::base::now_ms());
        last.complete = summary.complete();
        manifest.set_last_pass(&last)?;
    }
    Ok(summary)
}

/// Whether this pass looks for unrecorded keys at the target before
/// writing them (`transfer::adopt`): no full pass under this filter has
/// completed yet (a fresh or lost state directory, a new shard), and the
/// target holds something (one listing request; a listing error counts as
/// "something": the HEADs then tell).
async fn adopts(manifest: &Manifest, opts: &PassOptions, target: &Store) -> Result<bool, Error> {
    let known = manifest
        .last_complete_pass()?
        .is_some_and(|l| l.filter == opts.filter.fingerprint());
    if known {
        return Ok(false);
    }
    let mut listing = target.inner.list(None);
    Ok(listing.next().await.is_some())
}
