//! The largest prefixes of a listing, by bytes, at one depth, in bounded
//! memory. In a listing in key order every prefix's keys come together, so
//! a prefix is final when the next key leaves it: only the current one and
//! the top `n` finished ones are kept. A listing out of order (a local
//! directory walk, a server sorting otherwise) falls back to a table of
//! every prefix, capped; past the cap the breakdown says it is not exact.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Prefixes kept at most by a listing out of key order.
pub const MAX_UNORDERED: usize = 200_000;

/// One prefix's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixTotal {
    /// The prefix, ending in `/`.
    pub prefix: String,
    /// Objects under it.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The largest prefixes at one depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixBreakdown {
    /// Depth: 1 is `a/`, 2 is `a/b/`.
    pub depth: usize,
    /// The largest by bytes, largest first (ties by prefix).
    pub top: Vec<PrefixTotal>,
    /// How many distinct prefixes of this depth hold objects.
    pub prefixes: u64,
    /// Objects whose key has fewer than `depth` `/`-separated prefixes
    /// (they are in no prefix of this depth).
    pub shallower_objects: u64,
    /// Their bytes.
    pub shallower_bytes: u64,
    /// False when the listing came out of key order and held more than
    /// [`MAX_UNORDERED`] prefixes: `top` and `prefixes` are then a lower
    /// bound.
    pub exact: bool,
}

/// Counts the prefixes of one depth as keys stream by.
#[derive(Debug)]
pub struct PrefixTally {
    depth: usize,
    n: usize,
    current: Option<PrefixTotal>,
    last_key: Option<String>,
    /// Finished prefixes: the top `n` (ordered listing), or every one
    /// (unordered).
    done: BTreeMap<(std::cmp::Reverse<u64>, String), u64>,
    unordered: Option<HashMap<String, (u64, u64)>>,
    distinct: u64,
    shallower: (u64, u64),
    /// A finished prefix left `done` (ordered), so an out-of-order key
    /// could have reopened one already forgotten.
    dropped: bool,
    exact: bool,
}

impl PrefixTally {
    /// Keep the `n` largest prefixes of `depth` segments.
    pub fn new(depth: usize, n: usize) -> Self {
        Self {
            depth: depth.max(1),
            n,
            current: None,
            last_key: None,
            done: BTreeMap::new(),
            unordered: None,
            distinct: 0,
            shallower: (0, 0),
            dropped: false,
            exact: true,
        }
    }

    /// The prefix of `key` at this depth, with its trailing `/`.
    fn prefix_of(&self, key: &str) -> Option<usize> {
        let mut seen = 0;
        for (i, b) in key.bytes().enumerate() {
            if b == b'/' {
                seen += 1;
                if seen == self.depth {
                    return Some(i + 1);
                }
            }
        }
        None
    }

    /// Keep the `n` largest prefixes of `depth` segments of entries in no
    /// order (an inventory report): a table of every prefix from the
    /// first entry, exact up to [`MAX_UNORDERED`] prefixes.
    pub fn unordered(depth: usize, n: usize) -> Self {
        let mut t = Self::new(depth, n);
        t.go_unordered();
        t
    }

    /// One listed object.
    pub fn add(&mut self, key: &str, size: u64) {
        if self.unordered.is_none()
            && let Some(last) = &self.last_key
            && key < last.as_str()
        {
            self.go_unordered();
        }
        if self.unordered.is_none() {
            let last = self.last_key.get_or_insert_with(String::new);
            last.clear();
            last.push_str(key);
        }
        let Some(end) = self.prefix_of(key) else {
            self.shallower.0 += 1;
            self.shallower.1 += size;
            return;
        };
        let prefix = &key[..end];
        if let Some(map) = &mut self.unordered {
            if let Some(t) = map.get_mut(prefix) {
                t.0 += 1;
                t.1 += size;
            } else if map.len() < MAX_UNORDERED {
                map.insert(prefix.to_owned(), (1, size));
                self.distinct += 1;
            } else {
                self.exact = false;
            }
            return;
        }
        match &mut self.current {
            Some(c) if c.prefix == prefix => {
                c.objects += 1;
                c.bytes += size;
            }
            _ => {
                self.finish_current();
                self.distinct += 1;
                self.current = Some(PrefixTotal {
                    prefix: prefix.to_owned(),
                    objects: 1,
                    bytes: size,
                });
            }
        }
    }

    fn finish_current(&mut self) {
        if let Some(c) = self.current.take() {
            self.done
                .insert((std::cmp::Reverse(c.bytes), c.prefix), c.objects);
            if self.done.len() > self.n {
                self.done.pop_last();
                self.dropped = true;
            }
        }
    }

    /// The listing went back in key order: count every prefix from here.
    fn go_unordered(&mut self) {
        self.finish_current();
        if self.dropped {
            // A prefix already forgotten may come again: its count would
            // restart from zero.
            self.exact = false;
        }
        let map = std::mem::take(&mut self.done)
            .into_iter()
            .map(|((bytes, prefix), objects)| (prefix, (objects, bytes.0)))
            .collect();
        self.unordered = Some(map);
        self.last_key = None;
    }

    /// The breakdown so far.
    pub fn finish(mut self) -> PrefixBreakdown {
        self.finish_current();
        let mut top: Vec<PrefixTotal> = match self.unordered {
            Some(map) => map
                .into_iter()
                .map(|(prefix, (objects, bytes))| PrefixTotal {
                    prefix,
                    objects,
                    bytes,
                })
                .collect(),
            None => self
                .done
                .into_iter()
                .map(|((bytes, prefix), objects)| PrefixTotal {
                    prefix,
                    objects,
                    bytes: bytes.0,
                })
                .collect(),
        };
        top.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.prefix.cmp(&b.prefix)));
        top.truncate(self.n);
        PrefixBreakdown {
            depth: self.depth,
            top,
            prefixes: self.distinct,
            shallower_objects: self.shallower.0,
            shallower_bytes: self.shallower.1,
            exact: self.exact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(b: &PrefixBreakdown) -> Vec<(&str, u64, u64)> {
        b.top
            .iter()
            .map(|t| (t.prefix.as_str(), t.objects, t.bytes))
            .collect()
    }

    #[test]
    fn ordered_listing_keeps_the_largest() {
        let mut t = PrefixTally::new(1, 2);
        for (k, s) in [
            ("a/1", 5),
            ("a/2", 5),
            ("b/x/1", 100),
            ("c", 7),
            ("d/1", 50),
            ("e/1", 1),
        ] {
            t.add(k, s);
        }
        let b = t.finish();
        assert_eq!(totals(&b), [("b/", 1, 100), ("d/", 1, 50)]);
        assert_eq!(b.prefixes, 4);
        assert_eq!((b.shallower_objects, b.shallower_bytes), (1, 7));
        assert!(b.exact);
    }

    #[test]
    fn depth_two_skips_shallow_keys_without_splitting_prefixes() {
        let mut t = PrefixTally::new(2, 10);
        for (k, s) in [("a/b/x", 1), ("a/b/y", 2), ("a/file", 4), ("a/z/y", 8)] {
            t.add(k, s);
        }
        let b = t.finish();
        assert_eq!(totals(&b), [("a/z/", 1, 8), ("a/b/", 2, 3)]);
        assert_eq!((b.shallower_objects, b.shallower_bytes), (1, 4));
    }

    #[test]
    fn unordered_listing_is_counted_whole_and_says_when_it_may_not_be() {
        // Back in order before anything was forgotten: still exact.
        let mut t = PrefixTally::new(1, 1);
        for (k, s) in [("b/1", 1), ("a/1", 2), ("b/2", 3)] {
            t.add(k, s);
        }
        let b = t.finish();
        assert_eq!(totals(&b), [("b/", 2, 4)]);
        assert_eq!(b.prefixes, 2);
        assert!(b.exact);
        // A prefix dropped from the top before the listing turned out
        // unordered: its count may be short.
        let mut t = PrefixTally::new(1, 1);
        for (k, s) in [("a/1", 1), ("b/1", 9), ("c/1", 1), ("a/2", 1)] {
            t.add(k, s);
        }
        assert!(!t.finish().exact);
        // Known to come in no order (an inventory): a table from the
        // start, exact.
        let mut t = PrefixTally::unordered(1, 1);
        for (k, s) in [("a/1", 1), ("b/1", 9), ("c/1", 1), ("a/2", 9)] {
            t.add(k, s);
        }
        let b = t.finish();
        assert_eq!(totals(&b), [("a/", 2, 10)]);
        assert_eq!(b.prefixes, 3);
        assert!(b.exact);
    }
}
