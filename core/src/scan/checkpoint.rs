//! Listing checkpoints: a crash during the listing of millions of keys
//! resumes near where it stopped. Objects finish out of order; the
//! watermark is the last key such that it and every key listed before it
//! are finished. It is saved in the manifest every second or so; a pass that
//! finishes its listing clears it. Object stores list in key order, so the
//! next pass lists from the watermark (S3 `start-after`); local directories
//! do not, and always list from the start.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the watermark is written.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// A listed key's place in the listing, handed back when it finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Tracks listed keys until they finish; shared by the listing (which
/// records keys in order) and the loop that collects results.
///
/// Memory is bounded by the keys in flight, not by the keys listed: only
/// unfinished keys are held, each with the key listed just before it. (One
/// slow multi-GB object must not make millions of finished keys pile up
/// behind it.)
#[derive(Debug, Default)]
pub struct Watermark {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    last_listed: Option<String>,
    /// Unfinished tickets → the key listed just before each.
    open: BTreeMap<u64, Option<String>>,
    saved: Option<String>,
    last_save: Option<Instant>,
}

impl Inner {
    fn mark(&self) -> Option<String> {
        match self.open.first_key_value() {
            Some((_, before)) => before.clone(),
            None => self.last_listed.clone(),
        }
    }
}

impl Watermark {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A key came out of the listing (call in listing order).
    pub fn listed(&self, key: &str) -> Ticket {
        let mut w = self.lock();
        let t = w.next;
        w.next += 1;
        let before = w.last_listed.replace(key.to_owned());
        w.open.insert(t, before);
        Ticket(t)
    }

    /// A listed key finished (any outcome).
    pub fn finished(&self, t: Ticket) {
        self.lock().open.remove(&t.0);
    }

    /// The watermark to save now, if it moved and enough time passed.
    pub fn due(&self) -> Option<String> {
        let mut w = self.lock();
        let now = Instant::now();
        let time = w
            .last_save
            .is_none_or(|t| now.duration_since(t) >= SAVE_EVERY);
        let mark = w.mark();
        if time && mark != w.saved {
            w.last_save = Some(now);
            w.saved.clone_from(&mark);
            return mark;
        }
        None
    }

    /// The current watermark: the last key such that it and every key
    /// listed before it are finished (`None`: not even the first).
    pub fn mark(&self) -> Option<String> {
        self.lock().mark()
    }

    /// Keys listed and not finished (what the watermark holds in memory).
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_the_oldest_unfinished_key() {
        let w = Watermark::default();
        let t: Vec<Ticket> = ["a", "b", "c", "d"].iter().map(|k| w.listed(k)).collect();
        w.finished(t[1]);
        assert_eq!(w.mark(), None, "a is still running");
        w.finished(t[0]);
        assert_eq!(w.mark().as_deref(), Some("b"));
        assert_eq!(w.due().as_deref(), Some("b"));
        w.finished(t[3]);
        assert_eq!(w.mark().as_deref(), Some("b"));
        w.finished(t[2]);
        assert_eq!(w.mark().as_deref(), Some("d"));
        assert_eq!(w.due(), None, "saved less than a second ago");
    }

    #[test]
    fn memory_stays_with_the_keys_in_flight() {
        // One slow object, then two million keys that finish at once: the
        // watermark holds the slow one, not the two million behind it.
        let w = Watermark::default();
        let slow = w.listed("a-slow");
        for i in 0..2_000_000u32 {
            let t = w.listed(&format!("b{i:08}"));
            w.finished(t);
        }
        assert_eq!(w.open(), 1);
        assert_eq!(w.mark(), None, "the slow first key is not finished");
        w.finished(slow);
        assert_eq!(w.mark().as_deref(), Some("b01999999"));
        assert_eq!(w.open(), 0);
    }
}
