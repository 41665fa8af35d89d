//! Keeps server-side copies (dedup) and writes of the same target key apart
//! within a pass: an object being written is never used as a copy source,
//! and a key is not overwritten while a copy reads from it. Without this, a
//! copy could read a holder that a concurrent task is replacing, and the
//! manifest would vouch for content that is not at the target.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Default)]
struct State {
    writing: HashSet<String>,
    sources: HashMap<String, usize>,
}

/// The gate, shared by every task of a pass.
#[derive(Debug, Default, Clone)]
pub struct KeyGate {
    state: Arc<Mutex<State>>,
}

/// Held while a key is being written; releases it on drop.
#[derive(Debug)]
pub struct WriteGuard {
    gate: KeyGate,
    key: String,
}

/// Held while a key is the source of a server-side copy.
#[derive(Debug)]
pub struct SourceGuard {
    gate: KeyGate,
    key: String,
}

impl KeyGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claim `key` for writing, waiting while copies read from it or
    /// another task writes it (an upload continued from an earlier run and
    /// the same key met again in the listing).
    pub async fn begin_write(&self, key: &str) -> WriteGuard {
        loop {
            {
                let mut s = self.lock();
                if s.sources.get(key).copied().unwrap_or(0) == 0 && !s.writing.contains(key) {
                    s.writing.insert(key.to_owned());
                    return WriteGuard {
                        gate: self.clone(),
                        key: key.to_owned(),
                    };
                }
            }
            // Copies are single server-side requests: short waits; a
            // concurrent writer is rare (see above).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Use `key` as a copy source, unless it is being written right now.
    pub fn begin_copy_from(&self, key: &str) -> Option<SourceGuard> {
        let mut s = self.lock();
        if s.writing.contains(key) {
            return None;
        }
        *s.sources.entry(key.to_owned()).or_insert(0) += 1;
        Some(SourceGuard {
            gate: self.clone(),
            key: key.to_owned(),
        })
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.gate.lock().writing.remove(&self.key);
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        if let Some(n) = s.sources.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                s.sources.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_and_copy_sources_exclude_each_other() {
        let gate = KeyGate::default();
        let w = gate.begin_write("a").await;
        assert!(gate.begin_copy_from("a").is_none(), "a is being written");
        drop(w);
        let src = gate.begin_copy_from("a").expect("free now");
        let g2 = gate.clone();
        let writer = tokio::spawn(async move {
            let _w = g2.begin_write("a").await;
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!writer.is_finished(), "writer waits for the copy");
        drop(src);
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("writer proceeds")
            .expect("no panic");
    }

    #[tokio::test]
    async fn two_writers_of_one_key_take_turns() {
        let gate = KeyGate::default();
        let first = gate.begin_write("k").await;
        let g2 = gate.clone();
        let second = tokio::spawn(async move {
            let _w = g2.begin_write("k").await;
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!second.is_finished(), "second writer waits");
        let _other = gate.begin_write("other").await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("second writer proceeds")
            .expect("no panic");
    }
}
