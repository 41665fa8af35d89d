//! What a pass lists: always the whole key space — or the whole of a range
//! shard's range — so that a pass that finishes can say every source key
//! of the job was looked at while it ran.
//!
//! An object store lists in key order. A pass with no listing checkpoint
//! lists every key from the first. A pass that continues an interrupted
//! one lists the keys after the checkpoint first (the tail), then wraps
//! around to the keys up to and including it (the head): keys changed,
//! added or failed before the checkpoint since the interrupted pass went by
//! are looked at again, and only such a pass — the whole key space in one
//! run — is complete (counts toward lag, allows deletes, exits 0). A local
//! directory lists in no order and always lists everything.
//!
//! Delete tracking follows the segments: within each, every manifest key the
//! ordered listing steps over is a delete candidate (`manifest/missing.rs`);
//! a directory's listing marks what it lists and sweeps the rest at its end.

use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

use futures::stream::{BoxStream, StreamExt};
use object_store::ObjectMeta;

use crate::base::error::Error;
use crate::base::filter::KeyFilter;
use crate::manifest::Manifest;
use crate::scan::listing::{KeyFault, key_fault};
use crate::stores::Store;

/// A stretch of the key space listed in one go: keys in `(after, until]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) after: Option<String>,
    pub(crate) until: Option<String>,
}

/// The segments of a pass over the keys in `span` (`(after, until]`; a
/// range shard's range, or everything): all of them, or the tail after
/// `checkpoint` then the head up to it. A checkpoint outside the span (left
/// by a pass over another range) is ignored.
pub(crate) fn segments(
    checkpoint: Option<&str>,
    span: (Option<String>, Option<String>),
) -> Vec<Segment> {
    let (after, until) = span;
    let inside = |cp: &str| {
        after.as_deref().is_none_or(|a| a < cp) && until.as_deref().is_none_or(|u| cp <= u)
    };
    match checkpoint.filter(|cp| inside(cp)) {
        None => vec![Segment { after, until }],
        Some(cp) => vec![
            Segment {
                after: Some(cp.to_owned()),
                until,
            },
            Segment {
                after,
                until: Some(cp.to_owned()),
            },
        ],
    }
}

/// One item of a pass's listing.
#[derive(Debug)]
pub(crate) enum Listed {
    /// A key in segment `seg`.
    Object(ObjectMeta, usize),
    /// A key passeur cannot replicate (out of key order, or one object_store
    /// cannot carry): failed by name.
    Fault(KeyFault),
    /// A listing request failed: the rest of that range is not listed.
    Failed(object_store::Error),
    /// Segment `seg` has been listed to its end.
    End(usize),
}

/// The pass's listing: the segments one after the other, each in key order
/// (object stores), or one unordered listing (local directories).
pub(crate) fn listing(
    source: &Store,
    manifest: &Manifest,
    segs: &[Segment],
    concurrency: usize,
) -> Result<BoxStream<'static, Listed>, Error> {
    let tag = |seg: usize| {
        move |r: object_store::Result<ObjectMeta>| match r {
            Ok(m) => Listed::Object(m, seg),
            Err(e) => match (key_fault(&e), crate::stores::dirlist::unnamable(&e)) {
                (Some(o), _) => Listed::Fault(o.clone()),
                (None, Some((key, reason))) => Listed::Fault(KeyFault::UnnamableFile {
                    key: key.to_owned(),
                    reason: reason.to_owned(),
                }),
                (None, None) => Listed::Failed(e),
            },
        }
    };
    if !source.lists_in_order() {
        return Ok(source
            .list_all(crate::stores::Staging::List)
            .map(tag(0))
            .chain(futures::stream::iter([Listed::End(0)]))
            .boxed());
    }
    let mut all = futures::stream::empty().boxed();
    for (i, s) in segs.iter().enumerate() {
        let part = crate::scan::listing::of_store(
            source,
            manifest,
            s.after.clone(),
            s.until.clone(),
            concurrency,
        )?;
        all = all
            .chain(part.map(tag(i)))
            .chain(futures::stream::iter([Listed::End(i)]))
            .boxed();
    }
    Ok(all)
}

/// Records delete candidates as the listing goes (only when deleting).
#[derive(Debug)]
pub(crate) struct DeleteTracker<'a> {
    manifest: &'a Manifest,
    filter: &'a KeyFilter,
    segs: Vec<Segment>,
    ordered: bool,
    state: Mutex<TrackState>,
}

#[derive(Debug, Default)]
struct TrackState {
    /// Last key listed in the current segment.
    last: Option<String>,
    /// An error that disables deletes this pass.
    error: Option<String>,
}

impl<'a> DeleteTracker<'a> {
    /// Start tracking: forget what earlier passes recorded.
    pub(crate) fn start(
        manifest: &'a Manifest,
        filter: &'a KeyFilter,
        segs: &[Segment],
        ordered: bool,
    ) -> Result<Self, Error> {
        manifest.clear_missing()?;
        if !ordered {
            manifest.clear_listed()?;
        }
        Ok(Self {
            manifest,
            filter,
            segs: segs.to_vec(),
            ordered,
            state: Mutex::new(TrackState::default()),
        })
    }

    /// See one listing item (in listing order).
    pub(crate) fn see(&self, item: &Listed) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.error.is_some() {
            return;
        }
        let accept = |k: &str| self.filter.accepts(k);
        let r = match item {
            Listed::Object(m, seg) => {
                let key = m.location.as_ref();
                let r = if self.ordered {
                    let after = st.last.as_deref().or(self.segs[*seg].after.as_deref());
                    self.manifest
                        .note_missing(after, Bound::Excluded(key), accept)
                        .map(drop)
                } else {
                    self.manifest.mark_listed(key)
                };
                st.last = Some(key.to_owned());
                r
            }
            Listed::End(seg) => {
                let r = if self.ordered {
                    let s = &self.segs[*seg];
                    let after = st.last.as_deref().or(s.after.as_deref());
                    let until = s.until.as_deref().map_or(Bound::Unbounded, Bound::Included);
                    self.manifest.note_missing(after, until, accept).map(drop)
                } else {
                    self.manifest.note_unlisted(accept).map(drop)
                };
                st.last = None;
                r
            }
            Listed::Fault(_) | Listed::Failed(_) => Ok(()),
        };
        if let Err(e) = r {
            st.error = Some(e.to_string());
        }
    }

    /// Why deletes cannot follow this listing, if recording failed.
    pub(crate) fn error(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_pass_wraps_around_the_whole_key_space() {
        assert_eq!(
            segments(None, (None, None)),
            vec![Segment {
                after: None,
                until: None
            }]
        );
        let s = segments(Some("m"), (None, None));
        assert_eq!(s[0].after.as_deref(), Some("m"));
        assert_eq!(s[0].until, None);
        assert_eq!(s[1].after, None);
        assert_eq!(s[1].until.as_deref(), Some("m"));
    }

    #[test]
    fn a_range_shard_lists_its_range_and_wraps_around_within_it() {
        let span = || (Some("f".to_owned()), Some("p".to_owned()));
        let seg = |a: &str, u: &str| Segment {
            after: Some(a.to_owned()),
            until: Some(u.to_owned()),
        };
        assert_eq!(segments(None, span()), vec![seg("f", "p")]);
        assert_eq!(
            segments(Some("m"), span()),
            vec![seg("m", "p"), seg("f", "m")]
        );
        // A checkpoint of another range: the whole range.
        assert_eq!(segments(Some("x"), span()), vec![seg("f", "p")]);
        assert_eq!(segments(Some("f"), span()), vec![seg("f", "p")]);
    }
}
