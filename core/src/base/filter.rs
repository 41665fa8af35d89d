//! Include / exclude globs on object keys (relative to the source URL), as
//! rclone's `--include` / `--exclude`: a key is replicated when it matches
//! an include pattern (or there are none) and no exclude pattern. `*`
//! stays within one path segment, `**` crosses segments, `{a,b}` and `[ab]`
//! work as in a shell. A sharded job's filter also keeps only the keys of
//! its shard ([`crate::base::shard`]).

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::base::error::Error;
use crate::base::shard::Shard;

/// Which keys a job replicates.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// The patterns as given, to reason about whole prefixes.
    include_patterns: Vec<String>,
    exclude_patterns: Vec<String>,
    /// This instance's shard of the key space, when the job is sharded.
    shard: Option<Shard>,
}

/// Characters with a meaning in a glob.
const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}', '\\', '!'];

/// Whether a pattern segment matches only itself.
fn literal(segment: &str) -> bool {
    !segment.contains(GLOB_CHARS)
}

fn build(patterns: &[String], what: &str) -> Result<Option<GlobSet>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob: Glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidOption(format!("{what} pattern {p:?}: {}", e.kind())))?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::InvalidOption(format!("{what} patterns: {e}")))
}

impl KeyFilter {
    /// A filter from include and exclude patterns.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, Error> {
        Ok(Self {
            include: build(include, "include")?,
            exclude: build(exclude, "exclude")?,
            include_patterns: include.to_vec(),
            exclude_patterns: exclude.to_vec(),
            shard: None,
        })
    }

    /// The same filter, keeping only `shard`'s keys (`None`: all of them).
    #[must_use]
    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard.filter(|s| s.count() > 1);
        self
    }

    /// The shard whose keys this filter keeps, if the job is sharded.
    pub fn shard(&self) -> Option<&Shard> {
        self.shard.as_ref()
    }

    /// A digest of the patterns: two filters with the same one select the
    /// same keys (a pass complete under one is complete under the other).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for (tag, patterns) in [
            (b"i", &self.include_patterns),
            (b"e", &self.exclude_patterns),
        ] {
            for p in patterns {
                h.update(tag)
                    .update(&(p.len() as u64).to_le_bytes())
                    .update(p.as_bytes());
            }
        }
        if let Some(s) = &self.shard {
            h.update(b"s")
                .update(&s.index().to_le_bytes())
                .update(&s.count().to_le_bytes());
            if let Some(r) = s.ranges() {
                h.update(b"r").update(r.digest().as_bytes());
            }
        }
        *h.finalize().as_bytes()
    }

    /// Whether some key under `prefix/` may be replicated. Decided from the
    /// patterns' literal leading segments: `false` only when an exclude
    /// pattern `Q/**` (or `**`) covers the prefix (Q literal, the prefix
    /// equal to Q or under it), or when every include pattern starts with a
    /// literal segment that differs from the prefix's at the same place.
    /// Anything it cannot decide counts as "may".
    pub fn may_accept_under(&self, prefix: &str) -> bool {
        let segs: Vec<&str> = prefix.split('/').collect();
        let covered = self.exclude_patterns.iter().any(|p| {
            p == "**"
                || p.strip_suffix("/**").is_some_and(|q| {
                    let q: Vec<&str> = q.split('/').collect();
                    q.len() <= segs.len()
                        && q.iter().all(|s| literal(s))
                        && q[..] == segs[..q.len()]
                })
        });
        if covered {
            return false;
        }
        let disjoint = |pattern: &String| {
            for (p, s) in pattern.split('/').zip(&segs) {
                if !literal(p) {
                    return false;
                }
                if p != *s {
                    return true;
                }
            }
            false
        };
        self.include_patterns.is_empty() || !self.include_patterns.iter().all(disjoint)
    }

    /// Whether `key` is replicated.
    pub fn accepts(&self, key: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(key))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(key))
            && self.shard.as_ref().is_none_or(|s| s.owns(key))
    }

    /// Whether every key is replicated.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none() && self.shard.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(inc: &[&str], exc: &[&str]) -> KeyFilter {
        let v = |s: &[&str]| s.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        KeyFilter::new(&v(inc), &v(exc)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn includes_and_excludes_like_rclone() {
        let all = f(&[], &[]);
        assert!(all.is_empty() && all.accepts("anything/at/all"));
        let parquet = f(&["**/*.parquet", "*.parquet"], &["tmp/**"]);
        assert!(parquet.accepts("a.parquet"));
        assert!(parquet.accepts("2024/01/a.parquet"));
        assert!(!parquet.accepts("2024/01/a.csv"));
        assert!(!parquet.accepts("tmp/x/a.parquet"), "exclude wins");
        let one_level = f(&["logs/*"], &[]);
        assert!(one_level.accepts("logs/a"));
        assert!(!one_level.accepts("logs/2024/a"), "* stays in one segment");
        assert!(KeyFilter::new(&["a[".into()], &[]).is_err());
    }

    #[test]
    fn whole_prefixes_left_out_or_not() {
        assert!(f(&[], &[]).may_accept_under(".trash"));
        assert!(!f(&[], &[".trash/**"]).may_accept_under(".trash"));
        assert!(!f(&[], &["**"]).may_accept_under(".trash"));
        assert!(!f(&[], &["a/**"]).may_accept_under("a/trash"));
        assert!(f(&[], &["a/trash/**"]).may_accept_under("a"));
        // Patterns that leave out only some keys under the prefix.
        assert!(f(&[], &[".trash/*"]).may_accept_under(".trash"));
        assert!(f(&[], &[".trash/*.bin"]).may_accept_under(".trash"));
        assert!(f(&[], &[".t*/**"]).may_accept_under(".trash"));
        // Includes elsewhere leave the prefix out; others may reach it.
        assert!(!f(&["data/**", "logs/*.gz"], &[]).may_accept_under(".trash"));
        assert!(f(&["data/**", "**/*.gz"], &[]).may_accept_under(".trash"));
        assert!(f(&["*.parquet"], &[]).may_accept_under(".trash"));
        assert!(f(&["data/**"], &[]).may_accept_under("data/trash"));
        // Whatever it says "no" to, the globs indeed refuse.
        let out = f(&["data/**"], &[".trash/**"]);
        for k in [".trash/x", ".trash/20260101T000000.000Z/data/x", "data/x"] {
            assert_eq!(out.accepts(k), k.starts_with("data/"), "{k}");
        }
    }
}
