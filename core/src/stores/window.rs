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
//!   calm completions. This always wins over the rules below.
//! - **Throughput**: completions are measured in epochs (at least twice
//!   the limit, and [`MIN_EPOCH`]). Starting from [`INITIAL`], the limit
//!   doubles while each doubling raises objects/s or bytes/s by
//!   [`GAIN`]; the first step that does not is undone and the window
//!   settles. Settled, it probes a quarter more every [`PROBE_EVERY`]
//!   epochs and keeps the step only if throughput rose.
//! - **Latency**: settled, when an epoch's mean time per object is more
//!   than twice the settled one while its objects/s fell by a quarter (the
//!   store is slowing down under load, not the objects getting larger),
//!   the limit goes down by a quarter and is measured again.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
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
/// Settled epochs between two probes for a larger window.
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
    fn beats(&self, before: &Rate) -> bool {
        self.objects > before.objects * GAIN || self.bytes > before.bytes * GAIN
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
    /// Throttling answers already acted on.
    seen: u64,
    /// Completions still to come from objects started before the last
    /// decrease: their throttling was already answered.
    hold: usize,
    /// Completions without throttling since the last change.
    calm: usize,
    /// After throttling, the limit to climb back to, one per window of
    /// calm completions (0: not recovering).
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
    freed: Notify,
    max: usize,
    pressure: Vec<Arc<Pressure>>,
    base: u64,
    stats: Arc<Stats>,
}

impl Window {
    /// Up to `max` at once, starting at [`INITIAL`]; lowered by throttling
    /// counted in `pressure`, grown while throughput rises.
    pub fn new(max: usize, pressure: Vec<Arc<Pressure>>, stats: Arc<Stats>) -> Arc<Self> {
        let max = max.max(1);
        let limit = INITIAL.min(max);
        let base = pressure.iter().map(|p| p.throttled()).sum();
        stats.concurrency.store(limit as u64, Relaxed);
        stats.concurrency_min.store(limit as u64, Relaxed);
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
            freed: Notify::new(),
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
        loop {
            let freed = self.freed.notified();
            {
                let mut st = self.lock();
                if st.in_use < st.limit {
                    st.in_use += 1;
                    return Slot(Arc::clone(self), Instant::now());
                }
            }
            freed.await;
        }
    }

    /// An object finished after `held`: release its slot and adjust.
    fn release(&self, held: Duration) {
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
            st.recover_to = st.recover_to.max(st.limit);
            st.limit = (st.limit / 2).max(1);
            throttled = true;
            st.hold = st.in_use;
            st.calm = 0;
            // Throughput is measured again from here.
            st.slow_start = false;
            st.probe = None;
            st.settled = None;
            st.steady = 0;
            st.restart_epoch(bytes);
        } else {
            st.calm += 1;
            st.epoch.done += 1;
            st.epoch.busy += held;
            self.tune(&mut st, bytes);
        }
        let limit = st.limit;
        drop(st);
        if limit != before {
            self.changed(before, limit, throttled.then_some(total));
        }
        self.freed.notify_waiters();
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
        if st.epoch.done < (2 * st.limit).max(16) || elapsed < MIN_EPOCH {
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
        if rate.latency > 2.0 * settled.latency && rate.objects < 0.75 * settled.objects {
            st.limit = (st.limit - st.limit / 4).max(1);
            st.settled = None;
            st.steady = 0;
        } else if st.steady >= PROBE_EVERY && st.limit < self.max && st.recover_to == 0 {
            st.probe = Some((st.limit, rate));
            st.limit = (st.limit + (st.limit / 4).max(1)).min(self.max);
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
        st.limit = (st.limit + step).min(self.max);
    }

    /// Report a new limit; `throttled`: the answers that caused it.
    fn changed(&self, before: usize, limit: usize, throttled: Option<u64>) {
        self.stats.concurrency.store(limit as u64, Relaxed);
        self.stats.concurrency_min.fetch_min(limit as u64, Relaxed);
        if let Some(total) = throttled {
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
pub struct Slot(Arc<Window>, Instant);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release(self.1.elapsed());
    }
}

#[cfg(test)]
mod tests;
