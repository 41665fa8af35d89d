//! A fault-injecting [`ObjectStore`] for in-process engine tests: it wraps
//! any store (object_store's `InMemory`, a local directory, a client of a
//! test server) and, by rule, fails the Nth call of an operation (before
//! it is carried out, or after: its answer lost), cuts or alters what a
//! read returns, or rewrites a listing; or, from a seed, fails calls at
//! random. Every method of the trait goes through it, and every call is
//! counted, so a test can say what the engine did. The multipart half
//! (`MultipartStore`, and the uploads `put_multipart` hands out) is in
//! `faulty/multipart.rs`.

mod multipart;

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use rand::{Rng, SeedableRng};

/// The operations a rule can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A single PUT.
    Put,
    /// Starting a multipart upload.
    CreateUpload,
    /// One part of a multipart upload.
    PutPart,
    /// Completing a multipart upload.
    Complete,
    /// A GET or HEAD (HEAD is a GET with `head` set).
    Get,
    /// A HEAD only. A HEAD is counted, and matched by rules, as
    /// [`Op::Get`] too; its fault is the first of the two that hits.
    Head,
    /// A listing (with or without offset).
    List,
    /// A listing with a delimiter (what a probe sends).
    ListDelimited,
    /// A delete.
    Delete,
    /// A server-side copy.
    Copy,
    /// Aborting a multipart upload (the low-level API's
    /// `abort_multipart`).
    Abort,
}

const OPS: usize = 11;

impl Op {
    fn index(self) -> usize {
        self as usize
    }
}

/// What a failed call returns, as the engine must tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A transient error (a reset connection, a 500 after retries).
    Transient,
    /// 404.
    NotFound,
    /// 412 (If-Match, If-None-Match).
    Precondition,
    /// 403.
    Denied,
}

/// What to do to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fail the call.
    Fail(Failure),
    /// A read returns only its first N bytes, then ends (as a connection
    /// closed early would, without an error).
    Short(usize),
    /// A read returns its bytes with one byte changed (at this offset of
    /// the returned range, or its last byte if shorter).
    Alter(usize),
    /// A listing returns its entries with neighbours swapped (out of key
    /// order).
    Reorder,
    /// A listing drops this entry (as if the store had lost it).
    Hide(String),
    /// A listing gives its first N entries, then the same N again (a page
    /// answered twice), then the rest.
    Repeat(usize),
    /// The call reports success and does nothing (a copy that "succeeds"
    /// without copying).
    Skip,
    /// The call is carried out, then answered with this failure: its
    /// answer lost on the way (a reset connection) and the client's retry
    /// refused, as the work is done (a completed upload is no longer
    /// known). For [`Op::Put`], [`Op::Complete`] and [`Op::Abort`].
    Applied(Failure),
}

/// A fault on the Nth call (1-based) of an operation, optionally only on
/// calls whose key contains some text.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The operation.
    pub op: Op,
    /// Which call of it, counting only calls that match `key`.
    pub nth: u64,
    /// Only calls whose key contains this (for listings: the prefix or
    /// offset; `None` matches every call).
    pub key: Option<String>,
    /// What happens.
    pub fault: Fault,
}

#[derive(Debug, Default)]
struct Plan {
    rules: Vec<(Rule, u64)>,
    random: Option<(rand::rngs::StdRng, f64)>,
}

/// The wrapper. Clone-free: share it as an `Arc`.
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    plan: Arc<Mutex<Plan>>,
    calls: Arc<[AtomicU64; OPS]>,
    injected: Arc<AtomicU64>,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &self.inner.to_string())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl Faulty {
    /// Wrap `inner`; no fault until rules are added.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            multipart: None,
            plan: Arc::default(),
            calls: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
            injected: Arc::default(),
        }
    }

    /// Wrap a store with a low-level multipart API too (object_store's
    /// `InMemory`, S3): its parts go through [`Op::PutPart`] and
    /// [`Op::Complete`] as well.
    pub fn with_multipart<S: ObjectStore + MultipartStore>(inner: Arc<S>) -> Self {
        Self {
            multipart: Some(Arc::clone(&inner) as Arc<dyn MultipartStore>),
            ..Self::new(inner)
        }
    }

    /// Add a rule.
    pub fn rule(&self, op: Op, nth: u64, key: Option<&str>, fault: Fault) -> &Self {
        self.lock().rules.push((
            Rule {
                op,
                nth,
                key: key.map(str::to_owned),
                fault,
            },
            0,
        ));
        self
    }

    /// Fail each call (of every operation) with probability `rate`, as
    /// [`Failure::Transient`], drawn from `seed`.
    pub fn random(&self, seed: u64, rate: f64) -> &Self {
        self.lock().random = Some((rand::rngs::StdRng::seed_from_u64(seed), rate));
        self
    }

    /// Remove every rule and the random failures.
    pub fn heal(&self) {
        *self.lock() = Plan::default();
    }

    /// Calls of `op` so far (failed ones included).
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()].load(Relaxed)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count a call and decide its fault.
    fn decide(&self, op: Op, key: &str) -> Option<Fault> {
        decide(&self.plan, &self.calls, &self.injected, op, key)
    }
}

fn decide(
    plan: &Mutex<Plan>,
    calls: &[AtomicU64; OPS],
    injected: &AtomicU64,
    op: Op,
    key: &str,
) -> Option<Fault> {
    calls[op.index()].fetch_add(1, Relaxed);
    let mut plan = plan.lock().unwrap_or_else(PoisonError::into_inner);
    let mut hit = None;
    for (rule, seen) in &mut plan.rules {
        if rule.op != op || rule.key.as_deref().is_some_and(|k| !key.contains(k)) {
            continue;
        }
        *seen += 1;
        if *seen == rule.nth && hit.is_none() {
            hit = Some(rule.fault.clone());
        }
    }
    if hit.is_none()
        && let Some((rng, rate)) = &mut plan.random
        && rng.random_bool(*rate)
    {
        hit = Some(Fault::Fail(Failure::Transient));
    }
    if hit.is_some() {
        injected.fetch_add(1, Relaxed);
    }
    hit
}

fn failure(f: Failure, op: Op, key: &str) -> object_store::Error {
    let source = format!("injected {f:?} on {op:?} {key}").into();
    let path = key.to_owned();
    match f {
        Failure::Transient => object_store::Error::Generic {
            store: "Faulty",
            source,
        },
        Failure::NotFound => object_store::Error::NotFound { path, source },
        Failure::Precondition => object_store::Error::Precondition { path, source },
        Failure::Denied => object_store::Error::PermissionDenied { path, source },
    }
}

/// Fail the call if the fault is a failure; return the other faults.
fn check(fault: Option<Fault>, op: Op, key: &str) -> Result<Option<Fault>> {
    match fault {
        Some(Fault::Fail(f)) => Err(failure(f, op, key)),
        other => Ok(other),
    }
}

/// The answer to a call carried out: its own, or the failure of an
/// [`Fault::Applied`].
fn answer<T>(fault: Option<&Fault>, op: Op, key: &str, done: Result<T>) -> Result<T> {
    match (fault, done) {
        (Some(Fault::Applied(f)), Ok(_)) => Err(failure(*f, op, key)),
        (_, done) => done,
    }
}

/// A read cut short or altered.
fn doctor(
    stream: BoxStream<'static, Result<Bytes>>,
    fault: Fault,
) -> BoxStream<'static, Result<Bytes>> {
    let mut at = 0usize;
    // Short: the bytes after the cut are dropped. Alter: one byte changed,
    // every byte passed on.
    let mut cut = false;
    let mut altered = false;
    stream
        .filter_map(move |chunk| {
            let out = match chunk {
                Err(e) => Some(Err(e)),
                Ok(_) if cut => None,
                Ok(b) => {
                    let start = at;
                    at += b.len();
                    match &fault {
                        Fault::Short(n) if at >= *n => {
                            cut = true;
                            Some(Ok(b.slice(..n.saturating_sub(start).min(b.len()))))
                        }
                        Fault::Alter(n) if at > *n && !altered => {
                            altered = true;
                            let mut v = b.to_vec();
                            v[n - start] ^= 0xff;
                            Some(Ok(Bytes::from(v)))
                        }
                        _ => Some(Ok(b)),
                    }
                }
            };
            std::future::ready(out)
        })
        .boxed()
}

/// A listing rewritten.
fn relist(
    stream: BoxStream<'static, Result<ObjectMeta>>,
    fault: Fault,
) -> BoxStream<'static, Result<ObjectMeta>> {
    match fault {
        Fault::Hide(key) => stream
            .filter(move |m| {
                std::future::ready(!m.as_ref().is_ok_and(|m| m.location.as_ref() == key))
            })
            .boxed(),
        Fault::Repeat(n) => {
            let mut first = Vec::new();
            stream
                .enumerate()
                .flat_map(move |(i, m)| {
                    let mut out = vec![m];
                    if i < n {
                        if let Ok(meta) = &out[0] {
                            first.push(meta.clone());
                        }
                        if i + 1 == n {
                            out.extend(first.drain(..).map(Ok));
                        }
                    }
                    futures::stream::iter(out)
                })
                .boxed()
        }
        Fault::Reorder => stream
            .chunks(2)
            .flat_map(|mut pair| {
                pair.reverse();
                futures::stream::iter(pair)
            })
            .boxed(),
        _ => stream,
    }
}

#[async_trait::async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let key = location.as_ref();
        let fault = check(self.decide(Op::Put, key), Op::Put, key)?;
        let done = self.inner.put_opts(location, payload, opts).await;
        answer(fault.as_ref(), Op::Put, key, done)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let key = location.as_ref();
        check(self.decide(Op::CreateUpload, key), Op::CreateUpload, key)?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(multipart::FaultyUpload::new(self, upload, key)))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let key = location.as_ref();
        let get = self.decide(Op::Get, key);
        let fault = if options.head {
            let head = self.decide(Op::Head, key);
            check(get.or(head), Op::Head, key)?
        } else {
            check(get, Op::Get, key)?
        };
        let mut got = self.inner.get_opts(location, options).await?;
        let Some(fault) = fault else { return Ok(got) };
        // A local directory hands back a file: read it as a stream, then
        // doctor that.
        let payload = std::mem::replace(
            &mut got.payload,
            GetResultPayload::Stream(futures::stream::empty().boxed()),
        );
        let whole = GetResult {
            payload,
            meta: got.meta.clone(),
            range: got.range.clone(),
            attributes: got.attributes.clone(),
            extensions: object_store::Extensions::default(),
        };
        got.payload = GetResultPayload::Stream(doctor(whole.into_stream(), fault));
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let key = location.as_ref();
        check(self.decide(Op::Get, key), Op::Get, key)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let (plan, calls, injected) = (
            Arc::clone(&self.plan),
            Arc::clone(&self.calls),
            Arc::clone(&self.injected),
        );
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |p| {
                let (plan, calls, injected, inner) = (
                    Arc::clone(&plan),
                    Arc::clone(&calls),
                    Arc::clone(&injected),
                    Arc::clone(&inner),
                );
                async move {
                    let p = p?;
                    let key = p.as_ref().to_owned();
                    check(
                        decide(&plan, &calls, &injected, Op::Delete, &key),
                        Op::Delete,
                        &key,
                    )?;
                    let mut one =
                        inner.delete_stream(futures::stream::once(async { Ok(p) }).boxed());
                    match one.next().await {
                        Some(r) => r,
                        None => Err(failure(Failure::Transient, Op::Delete, &key)),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.map_or("", Path::as_ref);
        match check(self.decide(Op::List, key), Op::List, key) {
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            Ok(None) => self.inner.list(prefix),
            Ok(Some(f)) => relist(self.inner.list(prefix), f),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = offset.as_ref();
        match check(self.decide(Op::List, key), Op::List, key) {
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            Ok(None) => self.inner.list_with_offset(prefix, offset),
            Ok(Some(f)) => relist(self.inner.list_with_offset(prefix, offset), f),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let key = prefix.map_or("", Path::as_ref);
        check(self.decide(Op::ListDelimited, key), Op::ListDelimited, key)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let key = to.as_ref();
        if check(self.decide(Op::Copy, key), Op::Copy, key)? == Some(Fault::Skip) {
            return Ok(());
        }
        self.inner.copy_opts(from, to, options).await
    }
}
