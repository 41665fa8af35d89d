//! Include / exclude globs on object keys (relative to the source URL), as
//! rclone's `--include` / `--exclude`: a key is replicated when it matches
//! an include pattern (or there are none) and no exclude pattern. `*`
//! stays within one path segment, `**` crosses segments, `{a,b}` and `[ab]`
//! work as in a shell.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Error;

/// Which keys a job replicates.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
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
        })
    }

    /// Whether `key` is replicated.
    pub fn accepts(&self, key: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(key))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(key))
    }

    /// Whether every key is replicated.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
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
}
