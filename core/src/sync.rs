//! One replication pass: stream the source listing, replicate each object
//! with bounded concurrency, and report what happened. The listing is never
//! collected in memory; failures of single objects do not stop the pass.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures::stream::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::checkpoint::Watermark;
use crate::chunk::ChunkParams;
use crate::deletes::DeletePolicy;
use crate::error::{Error, error_chain};
use crate::filter::KeyFilter;
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::stats::{Snapshot, Stats};
use crate::stores::Store;
use crate::throttle::Window;
use crate::transfer::{Ctx, Outcome};

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
        }
    }
}

/// A failed object and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Object key relative to the source URL.
    pub key: String,
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
}

/// The result of a pass.
#[derive(Debug, Clone, Serialize)]
pub struct PassSummary {
    /// Final counters.
    pub stats: Snapshot,
    /// Failed objects (at most [`MAX_FAILURES_KEPT`]; `stats.failed` counts all).
    pub failures: Vec<Failure>,
    /// Listing error that cut the pass short, if any.
    pub listing_error: Option<String>,
    /// Whether the pass stopped early on request.
    pub interrupted: bool,
    /// Dataset Merkle root after the pass (hex).
    pub merkle_root: String,
    /// The listing resumed after this key (an interrupted pass continued).
    pub resumed_after: Option<String>,
    /// Why deletes at the target were refused this pass, if they were.
    pub deletes_refused: Option<String>,
}

/// Failures kept with their reasons in the summary.
pub const MAX_FAILURES_KEPT: usize = 1000;

impl PassSummary {
    /// Whether everything listed is at the target.
    pub fn complete(&self) -> bool {
        self.stats.failed == 0
            && self.listing_error.is_none()
            && !self.interrupted
            && self.deletes_refused.is_none()
    }
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
    opts.chunking.validate().map_err(Error::InvalidOption)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Set only by a stop request: resumable uploads pause at a part boundary
    // (a listing error lets them finish).
    let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
    if target.policy.multipart_threshold > opts.memory_budget {
        return Err(Error::InvalidOption(format!(
            "multipart-threshold ({} bytes) exceeds memory-budget ({} bytes): single PUTs are buffered whole",
            target.policy.multipart_threshold, opts.memory_budget
        )));
    }
    source.probe().await?;
    target.probe().await?;
    // Only a job whose stores answer claims the state directory.
    manifest.bind(&source.url, &target.url, &opts.chunking)?;
    let memory_mib =
        u32::try_from(opts.memory_budget.div_ceil(1024 * 1024).max(1)).unwrap_or(u32::MAX);
    let ctx = Ctx {
        source: source.clone(),
        target,
        manifest: Arc::clone(&manifest),
        chunking: opts.chunking,
        stats: Arc::clone(&stats),
        memory: Arc::new(Semaphore::new(memory_mib as usize)),
        memory_mib,
        parts_in_flight: opts.parts_in_flight,
        gate: crate::gate::KeyGate::default(),
        stop: pause_rx,
        bandwidth: opts
            .bandwidth_limit
            .map(|b| Arc::new(crate::throttle::Bandwidth::new(b))),
    };
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
    let mut failures = Vec::new();
    let mut listing_error = None;
    // Ordered listings (object stores) can resume, run in parallel ranges
    // and record what they step over for deletes; unordered ones (local
    // directories) mark what they list, swept after the listing.
    let ordered = source.lists_in_order();
    let resumed_after = match (ordered, opts.dry_run) {
        (true, false) => manifest.listing_checkpoint()?,
        _ => None,
    };
    if let Some(k) = &resumed_after {
        tracing::info!(after = %k, "resuming an interrupted listing");
    }
    let base = if ordered {
        crate::listing::of_store(
            &source,
            &manifest,
            resumed_after.clone(),
            opts.listing_concurrency,
        )?
    } else {
        source.inner.list(None)
    };
    let deleting = opts.deletes.enabled && !opts.dry_run;
    if deleting && resumed_after.is_none() {
        manifest.clear_missing()?;
        if !ordered {
            manifest.clear_listed()?;
        }
    }
    // Deletes: what the listing steps over (ordered) or lists (unordered)
    // is recorded as it goes; (last listed key, error that disables deletes
    // this pass).
    let missing = std::sync::Mutex::new((resumed_after.clone(), None::<String>));
    let missing_ref = &missing;
    let watermark = Watermark::default();
    let watermark_ref = &watermark;
    // A complete listing from the first key leaves the cuts of the next
    // passes' parallel listings.
    let sampler = std::sync::Mutex::new(crate::listing::CutSampler::new(
        manifest.object_count_estimate()?,
    ));
    let sampler_ref = &sampler;
    let listing = base.take_until(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    });
    let dry_run = opts.dry_run;
    let ctx_ref = &ctx;
    let stats_ref = &stats;
    let filter = &opts.filter;
    let manifest_ref = &manifest;
    let listed = listing
        .inspect(|item| {
            if let (true, Ok(m)) = (deleting, item) {
                let key = m.location.as_ref();
                let mut st = missing_ref.lock().unwrap_or_else(|p| p.into_inner());
                if st.1.is_none() {
                    let noted = if ordered {
                        manifest_ref.note_missing(st.0.as_deref(), Some(key), |k| filter.accepts(k))
                    } else {
                        manifest_ref.mark_listed(key).map(|()| 0)
                    };
                    match noted {
                        Ok(_) => st.0 = Some(key.to_owned()),
                        Err(e) => st.1 = Some(e.to_string()),
                    }
                }
            }
        })
        .filter(|item| {
            let keep = match item {
                Ok(m) => filter.accepts(m.location.as_ref()),
                Err(_) => true,
            };
            if !keep {
                stats_ref.excluded.fetch_add(1, Relaxed);
            }
            futures::future::ready(keep)
        })
        .map(|item| item.map(|m| (m, true)));
    let unfinished = futures::stream::iter(unfinished.into_iter().map(|m| Ok((m, false))));
    let results = unfinished
        .chain(listed)
        .map(|item| async move {
            let (meta, from_listing) = match item {
                Ok(m) => m,
                Err(e) => return Err(error_chain(&e)),
            };
            if from_listing {
                watermark_ref.listed(meta.location.as_ref());
                sampler_ref
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .see(meta.location.as_ref());
                stats_ref.listed.fetch_add(1, Relaxed);
                stats_ref.listed_bytes.fetch_add(meta.size, Relaxed);
            }
            let slot = window_ref.acquire().await;
            let r = ctx_ref.replicate(&meta, dry_run).await;
            drop(slot);
            Ok((meta, from_listing, r))
        })
        .buffer_unordered(opts.concurrency.max(1));
    let mut results = std::pin::pin!(results);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut interrupted = false;
    loop {
        let next = tokio::select! {
            n = results.next() => n,
            () = &mut shutdown, if !interrupted => {
                interrupted = true;
                let _ = pause_tx.send(true);
                let _ = stop_tx.send(true);
                tracing::info!("stop requested: finishing objects in progress");
                continue;
            }
        };
        let Some(item) = next else { break };
        let (meta, from_listing, r) = match item {
            Ok(v) => v,
            Err(e) => {
                listing_error = Some(format!("listing {} failed: {e}", source.url));
                let _ = stop_tx.send(true);
                continue;
            }
        };
        let key = meta.location.as_ref().to_owned();
        match &r {
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
            stats.done_bytes.fetch_add(meta.size, Relaxed);
        }
        let result = r.map_err(|e| e.to_string());
        if let Err(reason) = &result {
            tracing::debug!(%key, %reason, "object failed");
            if failures.len() < MAX_FAILURES_KEPT {
                failures.push(Failure {
                    key: key.clone(),
                    reason: reason.clone(),
                });
            }
        }
        on_event(&Event::Object {
            key: key.clone(),
            size: meta.size,
            result,
        });
        if from_listing {
            watermark.finished(key);
        }
        if !dry_run && let Some(mark) = watermark.due() {
            manifest.set_listing_checkpoint(Some(&mark))?;
            // About once a second: a power cut loses at most the last
            // second of object records (upload parts are synced as they
            // complete).
            manifest.sync()?;
        }
    }
    let mut deletes_refused = None;
    if deleting && listing_error.is_none() && !interrupted {
        let (last, err) = std::mem::take(&mut *missing.lock().unwrap_or_else(|p| p.into_inner()));
        deletes_refused = match err {
            Some(e) => Some(format!("deletes skipped: {e}")),
            None => {
                if ordered {
                    manifest.note_missing(last.as_deref(), None, |k| opts.filter.accepts(k))?;
                } else {
                    manifest.note_unlisted(|k| opts.filter.accepts(k))?;
                }
                let listed = stats.listed.load(Relaxed) + stats.excluded.load(Relaxed);
                let listed = if resumed_after.is_some() {
                    listed.max(1)
                } else {
                    listed
                };
                ctx.apply_deletes(&opts.deletes, listed).await?
            }
        };
        if let Some(why) = &deletes_refused {
            tracing::warn!("{why}");
        }
    }
    if listing_error.is_none() && !interrupted {
        stats.listing_done.store(1, Relaxed);
        if !dry_run && resumed_after.is_none() && ordered {
            let cuts = sampler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take_cuts();
            manifest.set_listing_cuts(&cuts)?;
        }
        if !dry_run {
            manifest.set_listing_checkpoint(None)?;
        }
    } else if !dry_run && let Some(mark) = watermark.mark() {
        manifest.set_listing_checkpoint(Some(&mark))?;
    }
    let root: Hash = manifest.merkle_root()?;
    manifest.sync()?;
    Ok(PassSummary {
        stats: stats.snapshot(),
        failures,
        listing_error,
        interrupted,
        merkle_root: root.to_hex(),
        resumed_after,
        deletes_refused,
    })
}
