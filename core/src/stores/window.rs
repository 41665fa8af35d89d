//! How many objects a pass runs at once.
//!
//! Over a link with tens of milliseconds of latency every small object
//! costs a few round trips, so the number of objects in flight — not
//! bandwidth — sets the pace: 64 at once move at most 640 objects/s when
//! each takes 100 ms. Too many at once only queue at a slow store and hold
//! memory. So the window is adaptive, bounded by the configured
//! `concurrency` as a ceiling:
//!
//! - **Throttling** (429 / 503, counted per store in [`Pressure`]): the
//!   limit halves, once per window of completions (the objects already in
//!   flight saw the same answers), then grows back by one per window of
//!   calm completions to where it was (to where it was before a trial, if
//!   a trial drew the throttling). This always wins over the rules below.
//! - **Throughput**: the objects that moved bytes (not those found
//!   unchanged) are measured in epochs (at least twice the limit, and
//!   [`MIN_EPOCH`]). Starting from [`INITIAL`], the limit doubles while
//!   each doubling raises objects/s or bytes/s by [`GAIN`] with neither
//!   falling by as much; the first step that does not is undone and the
//!   window settles. Settled, it tries a quarter more every
//!   [`PROBE_EVERY`] epochs and keeps the step on the same terms.
//! - **Latency**: settled, an epoch whose mean time per object is more
//!   than twice the settled one while objects/s *and* bytes/s fell below
//!   three quarters of it (a store slowing down under load; larger objects
//!   would raise bytes/s) takes a quarter off, and the window settles again.
//!
//! Slots are permits of a semaphore (woken one per free slot, in order);
//! a smaller limit withholds permits as they come back.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::throttle::Pressure;
use crate::base::stats::Stats;

/// Where the window starts (or the ceiling, if lower): the fixed
/// concurrency earlier versions ran, right for local directories.
pub const INITIAL: usize = 64;
/// The shortest epoch: a rate over less is noise.
pub const MIN_EPOCH: Duration = Duration::from_millis(200);
/// How much a larger window must raise throughput to be kept.
pub const GAIN: f64 = 1.10;
/// Settled epochs between two trials of a larger window.
pub const PROBE_EVERY: usize = 8;

/// Throughput of one epoch.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    objects: f64,
    bytes: f64,
    /// Mean seconds an object held its slot.
    latency: f64,
}

impl Rate {
    /// Better than `before`: one measure up by [`GAIN`], neither down by
    /// as much (object sizes vary; one measure alone moves by chance).
    fn beats(&self, before: &Rate) -> bool {
        let up = self.objects > before.objects * GAIN || self.bytes > before.bytes * GAIN;
        let down = self.objects * GAIN < before.objects || self.bytes * GAIN < before.bytes;
        up && !down
    }

    /// Slower than `settled` as a loaded store is: each object twice as
    /// long, and fewer objects *and* bytes per second.
    fn slowed(&self, settled: &Rate) -> bool {
        self.latency > 2.0 * settled.latency
            && self.objects < 0.75 * settled.objects
            && self.bytes <= 0.75 * settled.bytes
    }
}

#[derive(Debug)]
struct Epoch {
    start: Instant,
    done: usize,
    busy: Duration,
    bytes_at_start: u64,
}

#[derive(Debug)]
struct WindowState {
    limit: usize,
    in_use: usize,
    /// Permits to keep, instead of returning, as slots come back (the
    /// limit went down while they were out).
    owed: usize,
    /// Throttling answers already acted on.
    seen: u64,
    /// Completions still to come from objects started before the last
    /// decrease: their throttling was already answered.
    hold: usize,
    /// Completions without throttling since the last change.
    calm: usize,
    /// After throttling, the limit to climb back to (0: not recovering).
    recover_to: usize,
    /// Still doubling (no step has failed to raise throughput yet).
    slow_start: bool,
    epoch: Epoch,
    /// A larger limit being tried: the limit before it and the rate then.
    probe: Option<(usize, Rate)>,
    /// Settled: the rate the current limit gave, and epochs since.
    settled: Option<Rate>,
    steady: usize,
}

/// How many objects a pass runs at once (see the module's text).
#[derive(Debug)]
pub struct Window {
    state: Mutex<WindowState>,
    slots: Arc<Semaphore>,
    max: usize,
    pressure: Vec<Arc<Pressure>>,
    base: u64,
    stats: Arc<Stats>,
}

impl Window {
    /// Up to `max` at once, starting at [`INITIAL`]; lowered by throttling
    /// counted in `pressure`, grown while throughput rises.
    pub fn new(max: usize, pressure: Vec<Arc<Pressure>>, stats: Arc<Stats>) -> Arc<Self> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        let limit = INITIAL.min(max);
        let base = pressure.iter().map(|p| p.throttled()).sum();
        stats.concurrency.store(limit as u64, Relaxed);
        stats.concurrency_max.fetch_max(limit as u64, Relaxed);
        // Lowered by throttling only (the summary reports it then).
        stats.concurrency_min.store(max as u64, Relaxed);
        let epoch = Epoch {
            start: Instant::now(),
            done: 0,
            busy: Duration::ZERO,
            bytes_at_start: stats.bytes_read.load(Relaxed),
        };
        Arc::new(Self {
            state: Mutex::new(WindowState {
                limit,
                in_use: 0,
                owed: 0,
                seen: base,
                hold: 0,
                calm: 0,
                recover_to: 0,
                slow_start: limit < max,
                epoch,
                probe: None,
                settled: None,
                steady: 0,
            }),
            slots: Arc::new(Semaphore::new(limit)),
            max,
            pressure,
            base,
            stats,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Wait for a slot; the object runs while the slot is held.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        // The semaphore is never closed.
        let permit = Arc::clone(&self.slots).acquire_owned().await.ok();
        self.lock().in_use += 1;
        Slot {
            window: Arc::clone(self),
            permit,
            start: Instant::now(),
            counted: true,
        }
    }

    /// A slot comes back after `held`; `counted`: the object moved bytes
    /// (it counts in the epoch).
    fn release(&self, held: Duration, counted: bool, permit: Option<OwnedSemaphorePermit>) {
        let total: u64 = self.pressure.iter().map(|p| p.throttled()).sum();
        self.stats
            .throttled
            .fetch_max(total.saturating_sub(self.base), Relaxed);
        let bytes = self.stats.bytes_read.load(Relaxed);
        let mut st = self.lock();
        st.in_use = st.in_use.saturating_sub(1);
        let before = st.limit;
        let mut throttled = false;
        if st.hold > 0 {
            st.hold -= 1;
            st.seen = total;
        } else if total > st.seen {
            st.seen = total;
            // A trial that drew the throttling is not climbed back to.
            let was = st.probe.take().map_or(st.limit, |(from, _)| from);
            st.recover_to = st.recover_to.max(was);
            st.limit = (st.limit / 2).max(1);
            st.hold = st.in_use;
            st.calm = 0;
            st.slow_start = false;
            st.settled = None;
            st.steady = 0;
            st.restart_epoch(bytes);
            throttled = true;
        } else if counted {
            st.calm += 1;
            st.epoch.done += 1;
            st.epoch.busy += held;
            self.tune(&mut st, bytes);
        }
        let limit = st.limit;
        // Resize the semaphore: this slot's permit is kept while permits
        // are owed; a larger limit pays what is owed first.
        if limit < before {
            let cut = before - limit;
            let forgotten = self.slots.forget_permits(cut);
            st.owed += cut - forgotten;
        } else if limit > before {
            let grow = limit - before;
            let paid = grow.min(st.owed);
            st.owed -= paid;
            self.slots.add_permits(grow - paid);
        }
        match permit {
            Some(p) if st.owed > 0 => {
                st.owed -= 1;
                p.forget();
            }
            p => drop(p),
        }
        drop(st);
        if limit != before {
            self.changed(before, limit, throttled.then_some(total));
        }
    }

    /// One calm completion: recover from throttling by one per window,
    /// and at the end of an epoch follow throughput and latency.
    fn tune(&self, st: &mut WindowState, bytes: u64) {
        if st.recover_to > st.limit && st.calm >= st.limit {
            // Back from throttling: one more per window of calm completions.
            st.limit += 1;
            st.calm = 0;
        }
        if st.recover_to <= st.limit {
            st.recover_to = 0;
        }
        let elapsed = st.epoch.start.elapsed();
        if st.epoch.done < st.limit.saturating_mul(2).max(16) || elapsed < MIN_EPOCH {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let rate = Rate {
            objects: st.epoch.done as f64 / secs,
            bytes: bytes.saturating_sub(st.epoch.bytes_at_start) as f64 / secs,
            latency: st.epoch.busy.as_secs_f64() / st.epoch.done as f64,
        };
        st.restart_epoch(bytes);
        if let Some((from, was)) = st.probe.take() {
            if rate.beats(&was) {
                self.grow(st, rate);
            } else {
                // The step bought nothing: undo it and settle.
                st.limit = from;
                st.slow_start = false;
                st.settled = None;
                st.steady = 0;
            }
            return;
        }
        if st.slow_start {
            self.grow(st, rate);
            return;
        }
        let Some(settled) = st.settled else {
            st.settled = Some(rate);
            st.steady = 0;
            return;
        };
        st.steady += 1;
        if rate.slowed(&settled) {
            st.limit = (st.limit - st.limit / 4).max(1);
            st.settled = None;
            st.steady = 0;
        } else if st.steady >= PROBE_EVERY && st.limit < self.max && st.recover_to == 0 {
            st.probe = Some((st.limit, rate));
            st.limit = st.limit.saturating_add((st.limit / 4).max(1)).min(self.max);
            st.steady = 0;
        }
    }

    /// Try a larger limit (double while slow-starting, else a quarter
    /// more), to be kept if the next epoch beats `rate`.
    fn grow(&self, st: &mut WindowState, rate: Rate) {
        if st.limit >= self.max {
            st.slow_start = false;
            st.settled = Some(rate);
            st.steady = 0;
            return;
        }
        let step = if st.slow_start {
            st.limit
        } else {
            (st.limit / 4).max(1)
        };
        st.probe = Some((st.limit, rate));
        st.limit = st.limit.saturating_add(step).min(self.max);
    }

    /// Report a new limit; `throttled`: the answers that caused it.
    fn changed(&self, before: usize, limit: usize, throttled: Option<u64>) {
        self.stats.concurrency.store(limit as u64, Relaxed);
        self.stats.concurrency_max.fetch_max(limit as u64, Relaxed);
        if let Some(total) = throttled {
            self.stats.concurrency_min.fetch_min(limit as u64, Relaxed);
            tracing::warn!(
                from = before,
                to = limit,
                throttled = total - self.base,
                "a store is throttling (429/503): fewer objects at once"
            );
        } else {
            tracing::debug!(from = before, to = limit, "objects at once");
        }
    }
}

impl WindowState {
    fn restart_epoch(&mut self, bytes: u64) {
        self.epoch = Epoch {
            start: Instant::now(),
            done: 0,
            busy: Duration::ZERO,
            bytes_at_start: bytes,
        };
    }
}

/// A running object's place in the [`Window`]; released on drop.
#[derive(Debug)]
pub struct Slot {
    window: Arc<Window>,
    permit: Option<OwnedSemaphorePermit>,
    start: Instant,
    counted: bool,
}

impl Slot {
    /// The object moved nothing (found unchanged, or a dry run): its time
    /// says nothing about the stores and stays out of the measures.
    pub fn uncounted(mut self) {
        self.counted = false;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let permit = self.permit.take();
        self.window
            .release(self.start.elapsed(), self.counted, permit);
    }
}

#[cfg(test)]
mod tests;
