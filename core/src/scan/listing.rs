//! Parallel listing that still comes out in key order.
//!
//! One paginated listing is one request at a time: at ~1,000 keys a page,
//! 10⁹ objects are a million round trips in a row. This lister cuts the key
//! space into ranges `(start, end]` and lists several at once with
//! `list_with_offset` (S3 and GCS start-after, Azure startFrom),
//! each range stopping at its end. Output is the ranges concatenated in
//! order, so the stream is exactly what one listing would give: listing
//! checkpoints and delete tracking (which need key order) work unchanged.
//!
//! Where to cut comes from the previous complete listing, which kept every
//! `n`-th key it passed ([`CutSampler`], saved in the manifest's `meta`). S3 has no
//! end-before, so a range's last request reads up to a page past its end;
//! ranges of [`MIN_RANGE`] keys or more keep that waste under a few
//! percent. (Cutting blind, along guessed prefixes, made many empty or tiny
//! ranges: on moto, 35× the requests of one listing and 25× the time.) The
//! first pass of a job, with an empty manifest, lists in one go.
//!
//! A range is one request at a time too (each page's token comes with the
//! page before), so the ranges ahead of the one being consumed must be able
//! to list to their end meanwhile: a range buffers up to [`BUFFER`] =
//! [`MIN_RANGE`] entries, and ranges stay about that size at any dataset
//! size (up to [`MAX_CUTS`] cuts: 2.6 × 10⁹ keys). With a buffer of a fifth
//! of a range, the ranges ahead stopped after two pages and the listing of
//! 10⁶ keys behind 30 ms per request ran at one page per round trip (31.7 s
//! for 1,102 requests, `bench/shard-listing.sh`).
//!
//! Memory: at most `fanout` ranges are listed at once, each buffering at
//! most [`TOTAL_BUFFER`] / `fanout` entries (between [`MIN_BUFFER`] and
//! [`BUFFER`]), and no range opens while those ahead hold `fanout` times
//! that: at most twice [`TOTAL_BUFFER`] entries (about 32 MB at ~200 bytes
//! an entry) up to 40 ranges at once. A waiting range is only its cut: a
//! range is made when it is about to be listed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

pub use crate::scan::cuts::{CutSampler, MAX_CUTS, MIN_RANGE};

/// Entries a range buffers ahead of the consumer: a whole range, as long
/// as all the ranges listed at once hold at most [`TOTAL_BUFFER`].
const BUFFER: usize = MIN_RANGE;
/// Entries all the ranges listed at once may buffer (about 16 MB); with
/// more than 8 ranges at once each buffers less, never under
/// [`MIN_BUFFER`].
const TOTAL_BUFFER: usize = 8 * MIN_RANGE;
/// Entries a range buffers at the least (two pages).
const MIN_BUFFER: usize = 2_000;

/// An ordered store's keys in `(after, until]` (`None`: from the first key /
/// to the last): up to `concurrency` key ranges at once, cut where the last
/// complete listing said, when the store lists after a key server-side (the
/// first listing of a job goes in one go).
pub fn of_store(
    store: &crate::stores::Store,
    manifest: &crate::manifest::Manifest,
    after: Option<String>,
    until: Option<String>,
    concurrency: usize,
) -> Result<BoxStream<'static, object_store::Result<ObjectMeta>>, crate::base::error::Error> {
    let cuts = if store.seeks && concurrency > 1 {
        manifest.listing_cuts()?
    } else {
        Vec::new()
    };
    let lister = match &store.raw {
        Some(raw) => Lister::Raw(Arc::clone(raw)),
        None => Lister::Store(Arc::clone(&store.inner)),
    };
    Ok(ordered(lister, after, until, cuts, concurrency))
}

/// A listed key passeur cannot replicate: the listing goes on, the pass
/// fails the key by name.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyFault {
    /// Listed at or before the key listed just before it. S3 and Azure list
    /// in UTF-8 byte order, so this is a key object_store rewrote (it drops
    /// a leading or trailing `/`: `photos/` comes back as `photos`, after
    /// `photos.zip`) or a server that ignores start-after. A listing that
    /// went backwards is no proof of absence: deletes are off for the pass.
    #[error(
        "the store listed {key:?} after {after:?}, not in key order (object_store drops a leading or trailing '/' of a key; or the server ignores start-after): not replicated, deletes disabled for this pass"
    )]
    OutOfOrder {
        /// The key as object_store gave it.
        key: String,
        /// The greatest key listed before it.
        after: String,
    },
    /// A key the store holds that object_store's paths cannot carry (an
    /// empty, `.` or `..` segment, a leading or trailing `/`, a control
    /// character), seen by the store's own listing
    /// ([`crate::stores::rawlist`]).
    #[error("the key {key:?} cannot be carried by object_store ({reason}): not replicated")]
    Uncarriable {
        /// The key exactly as the store holds it.
        key: String,
        /// What object_store makes of it.
        reason: String,
    },
    /// A local file whose name object_store's paths cannot carry (not
    /// UTF-8, a control character), named by the directory's own walk
    /// ([`crate::stores::dirlist::unnamable`]).
    #[error(
        "the file {key:?} has a name object_store cannot carry as a key ({reason}): not replicated"
    )]
    UnnamableFile {
        /// Its path under the directory (lossily UTF-8).
        key: String,
        /// What object_store said of it.
        reason: String,
    },
}

impl KeyFault {
    /// The key at fault.
    pub fn key(&self) -> &str {
        match self {
            Self::OutOfOrder { key, .. }
            | Self::Uncarriable { key, .. }
            | Self::UnnamableFile { key, .. } => key,
        }
    }

    /// Whether the listing went backwards (deletes must not follow it).
    pub fn breaks_order(&self) -> bool {
        matches!(self, Self::OutOfOrder { .. })
    }

    fn into_error(self) -> object_store::Error {
        object_store::Error::Generic {
            store: FAULT,
            source: Box::new(self),
        }
    }
}

/// The [`KeyFault`] inside a listing error, if that is what it is.
pub fn key_fault(e: &object_store::Error) -> Option<&KeyFault> {
    match e {
        object_store::Error::Generic { store, source } if *store == FAULT => {
            source.downcast_ref::<KeyFault>()
        }
        _ => None,
    }
}

const FAULT: &str = "listed key";

/// Where a range's keys come from: object_store's listing, or the store's
/// own list requests (keys byte for byte; see [`crate::stores::rawlist`]).
#[derive(Debug, Clone)]
pub enum Lister {
    /// object_store's listing.
    Store(Arc<dyn ObjectStore>),
    /// The store's own list requests.
    Raw(Arc<crate::stores::rawlist::RawLister>),
}

/// After a listed key turned out not to exist: whether the store holds
/// `key/` (a key ending in `/`, which object_store lists as `key` and cannot
/// address). Such an object is failed by name, never counted as vanished.
pub async fn holds_slash_key(store: &dyn ObjectStore, key: &Path) -> object_store::Result<bool> {
    let mut under = store.list(Some(key));
    while let Some(m) = under.next().await {
        if m?.location == *key {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Keys of the store in order within `(after, until]`, listing up to
/// `fanout` of the ranges that `cuts` (sorted) delimit at once (1, or no
/// cuts: one range). Every range checks that its keys increase
/// ([`KeyFault`] items, the listing goes on); an error that ends one range
/// is returned in its place and the ranges after it are still listed.
pub fn ordered(
    store: Lister,
    after: Option<String>,
    until: Option<String>,
    cuts: Vec<String>,
    fanout: usize,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    // A cut is both an end bound (compared as a string) and an offset (a
    // Path): only strings a Path keeps as they are can be both.
    let cuts: Vec<String> = if fanout <= 1 {
        Vec::new()
    } else {
        cuts.into_iter()
            .filter(|c| after.as_deref().is_none_or(|a| c.as_str() > a))
            .filter(|c| until.as_deref().is_none_or(|u| c.as_str() < u))
            .filter(|c| Path::parse(c).is_ok_and(|p| p.as_ref() == c))
            .collect()
    };
    let fanout = fanout.max(1);
    Fanout {
        store,
        fanout,
        buffer: (TOTAL_BUFFER / fanout).clamp(MIN_BUFFER, BUFFER),
        ranges: VecDeque::new(),
        after,
        until,
        cuts,
        next: 0,
    }
    .boxed()
}

struct Range {
    /// Keys strictly after this (none: from the start).
    start: Option<String>,
    /// Keys up to and including this (none: to the end).
    end: Option<String>,
    stream: Option<BoxStream<'static, object_store::Result<ObjectMeta>>>,
    buf: VecDeque<object_store::Result<ObjectMeta>>,
    done: bool,
    /// The error that ended this range, returned once the ranges before
    /// it are drained (as one listing would have returned it).
    error: Option<object_store::Error>,
    /// The last key taken, to refuse a listing that goes backwards.
    last: Option<String>,
}

impl Range {
    fn new(start: Option<String>, end: Option<String>) -> Self {
        Self {
            last: start.clone(),
            start,
            end,
            stream: None,
            buf: VecDeque::new(),
            done: false,
            error: None,
        }
    }

    /// Pull what is ready, up to `buffer` entries.
    fn fill(&mut self, cx: &mut Context<'_>, buffer: usize) {
        while !self.done && self.buf.len() < buffer {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match stream.poll_next_unpin(cx) {
                Poll::Ready(Some(item)) => {
                    let key = match &item {
                        Ok(m) => m.location.as_ref().to_owned(),
                        Err(e) => match key_fault(e) {
                            Some(f) => f.key().to_owned(),
                            None => {
                                let Err(e) = item else { continue };
                                self.error = Some(e);
                                self.finish();
                                continue;
                            }
                        },
                    };
                    if self.end.as_deref().is_some_and(|e| key.as_str() > e) {
                        self.finish();
                        break;
                    }
                    // A key object_store rewrote, or a server that ignores
                    // start-after: never passed on as a listed key.
                    if let Some(l) = self.last.as_deref().filter(|l| key.as_str() <= *l) {
                        let f = KeyFault::OutOfOrder {
                            key,
                            after: l.to_owned(),
                        };
                        self.buf.push_back(Err(f.into_error()));
                        continue;
                    }
                    self.last = Some(key);
                    self.buf.push_back(item);
                }
                Poll::Ready(None) => self.finish(),
                Poll::Pending => break,
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.stream = None;
    }
}

struct Fanout {
    store: Lister,
    fanout: usize,
    /// Entries each range buffers at most.
    buffer: usize,
    /// The ranges opened and not yet drained, in key order.
    ranges: VecDeque<Range>,
    /// The bounds of the whole listing and the cuts inside: range `i`
    /// is made only when it is about to be listed (waiting ranges cost
    /// nothing but their cut).
    after: Option<String>,
    until: Option<String>,
    cuts: Vec<String>,
    /// The next range to make.
    next: usize,
}

impl Fanout {
    /// Make the next range, if any is left.
    fn make_next(&mut self) -> bool {
        let n = self.next;
        if n > self.cuts.len() {
            return false;
        }
        let start = match n {
            0 => self.after.clone(),
            _ => self.cuts.get(n - 1).cloned(),
        };
        let end = match self.cuts.get(n) {
            Some(c) => Some(c.clone()),
            None => self.until.clone(),
        };
        self.ranges.push_back(Range::new(start, end));
        self.next += 1;
        true
    }
}

/// One plain listing: every key, or the keys after `start`.
fn list_after(
    store: &Lister,
    start: Option<&str>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    let store = match store {
        Lister::Raw(raw) => {
            return Arc::clone(raw)
                .list_after(start.map(str::to_owned))
                .map(|r| r.and_then(carried))
                .boxed();
        }
        Lister::Store(s) => s,
    };
    match start.map(Path::parse) {
        Some(Ok(p)) => store.list_with_offset(None, &p),
        Some(Err(e)) => futures::stream::once(async move { Err(e.into()) }).boxed(),
        None => store.list(None),
    }
}

/// A raw listing entry as object_store's metadata, if a `Path` carries its
/// key exactly; else the key's fault.
fn carried(e: crate::stores::rawlist::RawEntry) -> object_store::Result<ObjectMeta> {
    match Path::parse(&e.key) {
        Ok(p) if p.as_ref() == e.key => Ok(ObjectMeta {
            location: p,
            last_modified: e.last_modified,
            size: e.size,
            e_tag: e.etag,
            version: None,
        }),
        Ok(p) => {
            let reason = format!("its paths would make it {:?}", p.as_ref());
            Err(KeyFault::Uncarriable { key: e.key, reason }.into_error())
        }
        Err(err) => {
            let reason = err.to_string();
            Err(KeyFault::Uncarriable { key: e.key, reason }.into_error())
        }
    }
}

impl Stream for Fanout {
    type Item = object_store::Result<ObjectMeta>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            // Keep `fanout` ranges listing, the earliest first; open no new
            // one while the ranges ahead hold a full share of entries.
            let (mut live, mut buffered, mut i) = (0, 0, 0);
            while live < this.fanout {
                if i == this.ranges.len()
                    && (buffered >= this.fanout * this.buffer || !this.make_next())
                {
                    break;
                }
                buffered += this.ranges[i].buf.len();
                if this.ranges[i].done {
                    i += 1;
                    continue;
                }
                if this.ranges[i].stream.is_none() {
                    if buffered >= this.fanout * this.buffer {
                        break;
                    }
                    let s = list_after(&this.store, this.ranges[i].start.as_deref());
                    this.ranges[i].stream = Some(s);
                }
                this.ranges[i].fill(cx, this.buffer);
                live += 1;
                i += 1;
            }
            if this.ranges.is_empty() && !this.make_next() {
                return Poll::Ready(None);
            }
            let Some(head) = this.ranges.front_mut() else {
                return Poll::Ready(None);
            };
            if let Some(m) = head.buf.pop_front() {
                return Poll::Ready(Some(m));
            }
            if !head.done {
                return Poll::Pending;
            }
            // The keys after this range's error in this range stay unlisted
            // (the pass is incomplete); the ranges after it are listed.
            if let Some(e) = head.error.take() {
                return Poll::Ready(Some(Err(e)));
            }
            this.ranges.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use proptest::prelude::*;

    async fn store(keys: &[String]) -> Arc<dyn ObjectStore> {
        let s = InMemory::new();
        for k in keys {
            s.put(&Path::parse(k).expect("key"), PutPayload::from_static(b"x"))
                .await
                .expect("put");
        }
        Arc::new(s)
    }

    async fn keys(
        store: &Arc<dyn ObjectStore>,
        after: Option<&str>,
        cuts: &[String],
        fanout: usize,
    ) -> Vec<String> {
        keys_until(store, after, None, cuts, fanout).await
    }

    async fn keys_until(
        store: &Arc<dyn ObjectStore>,
        after: Option<&str>,
        until: Option<&str>,
        cuts: &[String],
        fanout: usize,
    ) -> Vec<String> {
        ordered(
            Lister::Store(Arc::clone(store)),
            after.map(str::to_owned),
            until.map(str::to_owned),
            cuts.to_vec(),
            fanout,
        )
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("listing")
    }

    fn layouts() -> Vec<String> {
        let mut k = Vec::new();
        for i in 0..3000 {
            k.push(format!("flat-{i:05x}"));
        }
        for d in 1..=12 {
            for i in 0..400 {
                k.push(format!("2019/{d:02}/{i:04}.dat"));
            }
        }
        k.extend(["a", "a-b", "a/b", "a0", "é/ü"].map(str::to_owned));
        k.sort();
        k
    }

    #[tokio::test]
    async fn parallel_listing_equals_one_listing() {
        let all = layouts();
        let s = store(&all).await;
        assert_eq!(keys(&s, None, &[], 8).await, all);
        // Cuts at keys, between keys, before the first and after the last.
        let mut cuts: Vec<String> = all.iter().step_by(700).cloned().collect();
        cuts.extend(["0", "2019/05/zz", "a/", "zzz"].map(str::to_owned));
        cuts.sort();
        for fanout in [1, 2, 8, 32] {
            let got = keys(&s, None, &cuts, fanout).await;
            let diff = got.iter().zip(&all).position(|(a, b)| a != b);
            assert!(
                got.len() == all.len() && diff.is_none(),
                "fanout {fanout}: {} keys vs {}, first difference at {diff:?}",
                got.len(),
                all.len()
            );
        }
        // Resumed after a key: everything after it, once, in order.
        let mid = &all[all.len() / 3];
        let rest: Vec<String> = all.iter().filter(|k| *k > mid).cloned().collect();
        assert_eq!(keys(&s, Some(mid), &cuts, 8).await, rest);
        // Up to a key, inclusive: a resumed pass lists the rest, then wraps
        // around to list the keys up to where it resumed.
        let head: Vec<String> = all.iter().filter(|k| *k <= mid).cloned().collect();
        for fanout in [1, 8] {
            assert_eq!(keys_until(&s, None, Some(mid), &cuts, fanout).await, head);
        }
        let mut wrapped = keys(&s, Some(mid), &cuts, 8).await;
        wrapped.extend(keys_until(&s, None, Some(mid), &cuts, 8).await);
        wrapped.sort();
        assert_eq!(wrapped, all, "tail + head = every key once");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_keys_any_cuts(
            keys_in in proptest::collection::btree_set("[a-c0-2]{1,3}(/[a-c0-2]{1,4}){0,2}", 0..3000),
            cuts in proptest::collection::btree_set("[a-c0-2]{1,3}(/[a-c0-2]{1,4}){0,2}", 0..40),
            after in proptest::option::of("[a-c0-2]{1,3}(/[a-c0-2]{1,2})?"),
            fanout in 1usize..12,
        ) {
            let all: Vec<String> = keys_in.into_iter().collect();
            let cuts: Vec<String> = cuts.into_iter().collect();
            let want: Vec<String> = all
                .iter()
                .filter(|k| after.as_deref().is_none_or(|a| k.as_str() > a))
                .cloned()
                .collect();
            let head: Vec<String> = all
                .iter()
                .filter(|k| after.as_deref().is_none_or(|a| k.as_str() <= a))
                .cloned()
                .collect();
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
            let (got, got_head) = rt.block_on(async {
                let s = store(&all).await;
                (
                    keys(&s, after.as_deref(), &cuts, fanout).await,
                    keys_until(&s, None, after.as_deref(), &cuts, fanout).await,
                )
            });
            prop_assert_eq!(got, want);
            prop_assert_eq!(got_head, head);
        }
    }
}
