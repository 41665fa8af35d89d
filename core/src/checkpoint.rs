//! Listing checkpoints: a crash during the listing of millions of keys
//! resumes near where it stopped. Objects finish out of order; the
//! watermark is the last key such that it and every key listed before it
//! are finished. It is saved in the manifest every second or so; a pass that
//! finishes its listing clears it. Object stores list in key order, so the
//! next pass lists from the watermark (S3 `start-after`); local directories
//! do not, and always list from the start.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the watermark is written.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Tracks listed keys until they finish; shared by the listing (which
/// records keys in order) and the loop that collects results.
#[derive(Debug, Default)]
pub struct Watermark {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    listed: VecDeque<String>,
    finished: HashSet<String>,
    mark: Option<String>,
    saved: Option<String>,
    last_save: Option<Instant>,
}

impl Watermark {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A key came out of the listing (called in listing order).
    pub fn listed(&self, key: &str) {
        self.lock().listed.push_back(key.to_owned());
    }

    /// A key finished (any outcome); advances the watermark.
    pub fn finished(&self, key: String) {
        let mut g = self.lock();
        let w = &mut *g;
        w.finished.insert(key);
        while let Some(front) = w.listed.front() {
            if !w.finished.remove(front) {
                break;
            }
            w.mark = w.listed.pop_front();
        }
    }

    /// The watermark to save now, if it moved and enough time passed.
    pub fn due(&self) -> Option<String> {
        let mut w = self.lock();
        let now = Instant::now();
        let time = w
            .last_save
            .is_none_or(|t| now.duration_since(t) >= SAVE_EVERY);
        if time && w.mark != w.saved {
            w.last_save = Some(now);
            w.saved = w.mark.clone();
            return w.mark.clone();
        }
        None
    }

    /// The current watermark.
    pub fn mark(&self) -> Option<String> {
        self.lock().mark.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_the_oldest_unfinished_key() {
        let w = Watermark::default();
        for k in ["a", "b", "c", "d"] {
            w.listed(k);
        }
        w.finished("b".into());
        assert_eq!(w.mark(), None, "a is still running");
        w.finished("a".into());
        assert_eq!(w.mark().as_deref(), Some("b"));
        assert_eq!(w.due().as_deref(), Some("b"));
        w.finished("d".into());
        assert_eq!(w.mark().as_deref(), Some("b"));
        w.finished("c".into());
        assert_eq!(w.mark().as_deref(), Some("d"));
        assert_eq!(w.due(), None, "saved less than a second ago");
    }
}
