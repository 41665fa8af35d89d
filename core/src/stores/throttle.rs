//! Throttling: caps the operator sets, and back-off the stores ask for.
//!
//! - **Request-rate cap** (per store, requests/s) and **bandwidth cap** (per
//!   pass, source bytes/s): GCRA token buckets from `governor`, one second
//!   of burst. The request cap sits in the HTTP client, so it also paces
//!   object_store's own retries.
//! - **Adaptive concurrency** ([`Window`], in `window.rs`): the HTTP client
//!   counts 429 and 503 answers (S3 SlowDown, Azure ServerBusy, GCS rate
//!   limits) in the store's [`Pressure`]; object_store retries them with
//!   exponential back-off, and the pass halves the number of objects it
//!   runs at once. Between throttling, the window grows while throughput
//!   rises and backs off when latency rises, up to the configured
//!   concurrency.
//! - **Which failures were throttling** ([`watch_answers`]): object_store
//!   reports a request whose retries ran out on 429 / 503 as a generic
//!   error whose status is private to it. The HTTP client notes the status
//!   of every answer in a task-local cell that one object's transfer
//!   scopes, so that transfer can name its failure throttled, not transient.
//! - **Creates tried again** ([`creates_sent`]): in the same cell, the
//!   CreateMultipartUpload requests sent, so that a create object_store
//!   retried (its first answer lost) is known (`transfer::starts`).
//! - **What the answers publish** ([`content_md5`]): in the same cell, an
//!   Azure store's GET and HEAD answers leave the blob's Content-MD5 (`Content-MD5`
//!   for a whole blob, `x-ms-blob-content-md5` for a range), which
//!   object_store does not expose, for the transfer that reads the blob to
//!   check its bytes against.

use std::cell::Cell;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

pub use super::window::{Slot, Window};

/// Throttling answers (429 / 503) one store gave, since it was opened.
#[derive(Debug, Default)]
pub struct Pressure {
    pub(super) throttled: AtomicU64,
}

impl Pressure {
    /// Answers that asked passeur to slow down.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Relaxed)
    }
}

/// What one transfer's HTTP answers said.
#[derive(Default)]
struct Answers {
    /// Status of the last answer (0: none, or the request failed without one).
    last: Cell<u16>,
    /// The Content-MD5 the last GET or HEAD answer of an Azure store carried, with
    /// the store it came from ([`store_id`]); `None` when it carried none.
    content_md5: Cell<Option<(usize, [u8; 16])>>,
    /// CreateMultipartUpload requests sent (each try of object_store's
    /// retries counts).
    creates: Cell<u32>,
}

tokio::task_local! {
    static ANSWERS: Answers;
}

/// Which store an answer came from: its [`Pressure`], one per store.
fn store_id(pressure: &Arc<Pressure>) -> usize {
    Arc::as_ptr(pressure) as usize
}

/// The Content-MD5 the last GET or HEAD answer of the store counting
/// `pressure` published, within [`watch_answers`]; `None` outside it, or when that
/// answer carried none.
pub(crate) fn content_md5(pressure: &Arc<Pressure>) -> Option<[u8; 16]> {
    let id = store_id(pressure);
    ANSWERS
        .try_with(|a| a.content_md5.get())
        .ok()
        .flatten()
        .and_then(|(from, md5)| (from == id).then_some(md5))
}

/// CreateMultipartUpload requests sent so far within [`watch_answers`]
/// (0 outside it): more than one for one create means object_store tried
/// it again, and an earlier try may have created an upload whose answer
/// was lost.
pub(crate) fn creates_sent() -> u32 {
    ANSWERS.try_with(|a| a.creates.get()).unwrap_or(0)
}

/// Whether a request is an S3 CreateMultipartUpload (`POST ?uploads`).
fn is_create(req: &HttpRequest) -> bool {
    *req.method() == http::Method::POST
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "uploads" || p == "uploads="))
}

/// A blob's MD5 in a GET or HEAD answer: `x-ms-blob-content-md5` (the
/// whole blob's, sent with ranged answers) or, for a whole answer,
/// `Content-MD5`.
fn answer_md5(resp: &HttpResponse) -> Option<[u8; 16]> {
    use base64::Engine;
    let h = resp.headers();
    let v = h.get("x-ms-blob-content-md5").or_else(|| {
        (resp.status().as_u16() == 200)
            .then(|| h.get("content-md5"))
            .flatten()
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_bytes())
        .ok()?;
    raw.try_into().ok()
}

/// Whether an HTTP status asks the client to slow down.
fn is_throttling(status: u16) -> bool {
    status == 429 || status == 503
}

/// Run `fut`, and say whether the last HTTP answer it received asked to
/// slow down (429 / 503).
pub async fn watch_answers<T>(fut: impl Future<Output = T>) -> (T, bool) {
    ANSWERS
        .scope(Answers::default(), async {
            let out = fut.await;
            (out, is_throttling(ANSWERS.with(|a| a.last.get())))
        })
        .await
}

/// A token bucket with one second of burst.
fn bucket(per_second: u64) -> DefaultDirectRateLimiter {
    let n =
        NonZeroU32::new(u32::try_from(per_second).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(n))
}

/// object_store's HTTP client, wrapped: waits for the request-rate cap and
/// counts throttling answers. Clones share the cap.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    rate: Option<Arc<DefaultDirectRateLimiter>>,
    pressure: Arc<Pressure>,
    /// Note the Content-MD5 of GET answers (Azure).
    content_md5: bool,
}

impl Connector {
    /// At most `requests_per_second` (if set); answers counted in `pressure`.
    pub(crate) fn new(requests_per_second: Option<u32>, pressure: Arc<Pressure>) -> Self {
        Self {
            rate: requests_per_second.map(|r| Arc::new(bucket(r.into()))),
            pressure,
            content_md5: false,
        }
    }

    /// Also note the Content-MD5 of every GET and HEAD answer ([`content_md5`]).
    pub(crate) fn noting_content_md5(self) -> Self {
        Self {
            content_md5: true,
            ..self
        }
    }
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Service {
            inner,
            rate: self.rate.clone(),
            pressure: Arc::clone(&self.pressure),
            content_md5: self.content_md5,
        }))
    }
}

#[derive(Debug)]
struct Service {
    inner: HttpClient,
    rate: Option<Arc<DefaultDirectRateLimiter>>,
    pressure: Arc<Pressure>,
    content_md5: bool,
}

#[async_trait::async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        let get = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
        if is_create(&req) {
            let _ = ANSWERS.try_with(|a| a.creates.set(a.creates.get() + 1));
        }
        let resp = self.inner.execute(req).await;
        let status = resp.as_ref().map_or(0, |r| r.status().as_u16());
        // Outside a transfer's scope (listings, probes) there is no cell.
        let _ = ANSWERS.try_with(|a| {
            a.last.set(status);
            if let Ok(r) = &resp
                && self.content_md5
                && get
                && (status == 200 || status == 206)
            {
                let md5 = answer_md5(r).map(|m| (store_id(&self.pressure), m));
                a.content_md5.set(md5);
            }
        });
        let resp = resp?;
        if is_throttling(status) {
            self.pressure.throttled.fetch_add(1, Relaxed);
            tracing::debug!(status, "store asked to slow down");
        }
        Ok(resp)
    }
}

/// The bandwidth cap of a pass: source bytes per second, counted in KiB
/// cells (a per-byte quota would need sub-nanosecond refill periods, which
/// governor rounds: caps of 1 GB/s or more would all mean 1 GB/s).
#[derive(Debug)]
pub struct Bandwidth {
    bucket: DefaultDirectRateLimiter,
    /// Most KiB taken at once: a fraction of the burst, so that a large
    /// buffer does not wait for a completely full bucket.
    piece: u32,
    /// Bytes below one KiB, carried to the next buffer.
    carry: Mutex<u64>,
}

impl Bandwidth {
    /// At most `bytes_per_second` (one second of burst).
    pub fn new(bytes_per_second: u64) -> Self {
        let kib = (bytes_per_second / 1024).max(1);
        let burst =
            NonZeroU32::new(u32::try_from(kib).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let period = std::time::Duration::from_nanos(1_000_000_000u64.div_ceil(kib).max(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        Self {
            bucket: RateLimiter::direct(quota),
            piece: (burst.get() / 8).max(1),
            carry: Mutex::new(0),
        }
    }

    /// Wait until `bytes` more may pass.
    pub async fn take(&self, bytes: usize) {
        let mut kib = {
            let mut carry = self.carry.lock().unwrap_or_else(|p| p.into_inner());
            let total = *carry + u64::try_from(bytes).unwrap_or(u64::MAX);
            *carry = total % 1024;
            total / 1024
        };
        while kib > 0 {
            let n = u32::try_from(kib.min(self.piece.into())).unwrap_or(self.piece);
            let Some(n) = NonZeroU32::new(n) else { return };
            // n ≤ burst: the bucket can always grant it.
            let _ = self.bucket.until_n_ready(n).await;
            kib -= u64::from(n.get());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bandwidth_takes_more_than_the_burst_in_steps() {
        let bw = Bandwidth::new(1024 * 1024);
        let t = std::time::Instant::now();
        // 1 MiB burst, then 0.5 MiB at 1 MiB/s.
        bw.take(1536 * 1024).await;
        assert!(t.elapsed() >= std::time::Duration::from_millis(400));
    }
}
