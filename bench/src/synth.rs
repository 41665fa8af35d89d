//! A synthetic S3 bucket for benchmarks that need more objects than the
//! emulators can hold or list: `n` small objects and one large one, made up
//! from their key (nothing is stored), served over path-style S3 HTTP
//! (ListObjectsV2 with start-after and continuation tokens, GET and HEAD with
//! Range and If-Match). Authentication is not checked. As a target it takes
//! single PUTs and keeps their bodies (`received`, served back by GET and
//! HEAD), which the benchmark compares with what it expects; they are not
//! listed.
//!
//! The large object, `a/slow.bin`, sorts before every small one
//! (`k/0000000`…), so it is the first key listed. Its reads are *paced* to
//! the small objects: a ranged GET starting at fraction f of it waits until
//! f × n small objects have been served, and the range that ends it waits
//! until all of them have. So it stays unfinished for the whole pass, with
//! every other key finishing behind it, whatever the speed of the machine.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The key of the large object.
pub const SLOW_KEY: &str = "a/slow.bin";
/// Size of every small object.
pub const SMALL_SIZE: usize = 100;
/// The longest a paced read waits (below object_store's 30 s request
/// timeout), so that a stalled pass still ends.
const MAX_WAIT: Duration = Duration::from_secs(20);
const BLOCK: usize = 1 << 20;

/// passeur's store options for a synthetic bucket served at `endpoint`
/// (`http://HOST:PORT`, or a proxy in front of it): the body of a
/// `[source]` or `[target]` table.
pub fn config(endpoint: &str) -> String {
    format!(
        "endpoint = \"{endpoint}\"\nallow-http = true\npath-style = true\nregion = \"us-east-1\"\naccess-key-id = \"bench\"\nsecret-access-key = \"bench\"\n"
    )
}

/// The bucket's shape and what was served.
#[derive(Debug)]
pub struct Bucket {
    /// Number of small objects.
    pub n: u64,
    /// Size of the large object.
    pub slow_size: u64,
    /// Small objects served by GET.
    pub small_served: AtomicU64,
    /// When the last small object was served (ms after start).
    pub last_small_ms: AtomicU64,
    /// When the range that ends the large object was served (ms after start).
    pub slow_end_ms: AtomicU64,
    /// While set, the bucket lists no key (the objects still answer GETs).
    pub empty: AtomicBool,
    /// Bodies PUT, by key.
    pub received: std::sync::Mutex<std::collections::HashMap<String, Bytes>>,
    base: Vec<u8>,
    start: Instant,
}

impl Bucket {
    /// A bucket of `n` small objects and one of `slow_size` bytes.
    pub fn new(n: u64, slow_size: u64) -> Self {
        // A pseudo-random block; each MiB of the large object is this block
        // with its index mixed in, so no two MiB are equal.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let base = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        Self {
            n,
            slow_size,
            small_served: AtomicU64::new(0),
            last_small_ms: AtomicU64::new(0),
            slow_end_ms: AtomicU64::new(0),
            empty: AtomicBool::new(false),
            received: std::sync::Mutex::default(),
            base,
            start: Instant::now(),
        }
    }

    /// Key number `j` in listing order (0 is the large object).
    pub fn key(&self, j: u64) -> String {
        if j == 0 {
            SLOW_KEY.to_owned()
        } else {
            format!("k/{:07}", j - 1)
        }
    }

    /// The bytes of small object `i`.
    pub fn small_body(i: u64) -> Vec<u8> {
        let line = format!("object {i:07} ");
        line.bytes().cycle().take(SMALL_SIZE).collect()
    }

    /// Bytes `[from, to)` of the large object.
    pub fn slow_bytes(&self, from: u64, to: u64) -> Vec<u8> {
        (from..to)
            .map(|o| {
                let block = o / BLOCK as u64;
                self.base[(o % BLOCK as u64) as usize] ^ (block.wrapping_mul(31) as u8)
            })
            .collect()
    }

    fn since_start_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The first key number after `key` in listing order.
    fn after(&self, key: &str) -> u64 {
        let (mut lo, mut hi) = (0, self.n + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid).as_str() > key {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn list(&self, query: &[(String, String)]) -> String {
        let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
        let mut xml = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>src</Name><Prefix></Prefix>"#,
        );
        if get("encoding-type") == Some("url") {
            xml.push_str("<EncodingType>url</EncodingType>");
        }
        let empty = self.empty.load(Relaxed);
        if get("delimiter").is_some_and(|d| !d.is_empty()) {
            if !empty {
                xml.push_str("<CommonPrefixes><Prefix>a/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>k/</Prefix></CommonPrefixes>");
            }
            xml.push_str(
                "<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>",
            );
            return xml;
        }
        let max = get("max-keys")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1000u64)
            .clamp(1, 1000);
        let from = match get("continuation-token").or(get("start-after")) {
            Some(after) => self.after(after),
            None => 0,
        };
        let end = if empty {
            from
        } else {
            (from + max).min(self.n + 1)
        };
        for j in from..end {
            let (size, etag) = if j == 0 {
                (self.slow_size, "slow".to_owned())
            } else {
                (SMALL_SIZE as u64, format!("{:x}", j - 1))
            };
            let _ = write!(
                xml,
                "<Contents><Key>{}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                self.key(j)
            );
        }
        let truncated = end < self.n + 1 && !empty;
        let _ = write!(
            xml,
            "<KeyCount>{}</KeyCount><MaxKeys>{max}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
            end - from
        );
        if truncated {
            let _ = write!(
                xml,
                "<NextContinuationToken>{}</NextContinuationToken>",
                self.key(end - 1)
            );
        }
        xml.push_str("</ListBucketResult>");
        xml
    }

    /// Wait until `need` small objects were served (or [`MAX_WAIT`]).
    async fn pace(&self, need: u64) {
        let until = Instant::now() + MAX_WAIT;
        while self.small_served.load(Relaxed) < need && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn object(
        &self,
        req: &Request<hyper::body::Incoming>,
        key: &str,
    ) -> Response<Full<Bytes>> {
        let (size, etag, small) = if key == SLOW_KEY {
            (self.slow_size, "\"slow\"".to_owned(), None)
        } else if let Some(i) = key
            .strip_prefix("k/")
            .and_then(|i| i.parse::<u64>().ok())
            .filter(|i| *i < self.n)
        {
            (SMALL_SIZE as u64, format!("\"{i:x}\""), Some(i))
        } else {
            return status(StatusCode::NOT_FOUND, "NoSuchKey");
        };
        let header =
            |name: hyper::header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
        if header(hyper::header::IF_MATCH).is_some_and(|m| m != etag && m != "*") {
            return status(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");
        }
        let range = header(hyper::header::RANGE).and_then(|r| {
            let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
            let a: u64 = a.parse().ok()?;
            let b: u64 = b.parse::<u64>().map_or(size - 1, |b| b.min(size - 1));
            (a <= b).then_some((a, b + 1))
        });
        let (from, to) = range.unwrap_or((0, size));
        let head = req.method() == Method::HEAD;
        if !head && small.is_none() && from > 0 {
            let need = if to == size {
                self.n
            } else {
                ((u128::from(from) * u128::from(self.n)) / u128::from(size)) as u64
            };
            self.pace(need).await;
            if to == size {
                self.slow_end_ms.store(self.since_start_ms(), Relaxed);
            }
        }
        let body = match (head, small) {
            (true, _) => Vec::new(),
            (false, Some(i)) => {
                let b = Self::small_body(i);
                if self.small_served.fetch_add(1, Relaxed) + 1 == self.n {
                    self.last_small_ms.store(self.since_start_ms(), Relaxed);
                }
                b[from as usize..to as usize].to_vec()
            }
            (false, None) => self.slow_bytes(from, to),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let h = resp.headers_mut();
        let mut set = |k: &str, v: String| {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::try_from(k),
                hyper::header::HeaderValue::try_from(v),
            ) {
                h.insert(k, v);
            }
        };
        set("etag", etag);
        set("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT".into());
        set("content-type", "application/octet-stream".into());
        set("accept-ranges", "bytes".into());
        set("content-length", (to - from).to_string());
        if range.is_some() {
            set("content-range", format!("bytes {from}-{}/{size}", to - 1));
        }
        resp
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path().trim_start_matches('/').to_owned();
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let resp = match path.split_once('/') {
            None | Some((_, "")) if req.method() == Method::GET => {
                let mut r = Response::new(Full::new(Bytes::from(self.list(&query))));
                if let Ok(v) = hyper::header::HeaderValue::from_str("application/xml") {
                    r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
                }
                r
            }
            Some((_, key)) if matches!(*req.method(), Method::GET | Method::HEAD) => {
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .into_owned();
                match self.received_object(req.method() == Method::HEAD, &key) {
                    Some(r) => r,
                    None => self.object(&req, &key).await,
                }
            }
            Some((_, key))
                if req.method() == Method::PUT
                    && req.uri().query().is_none_or(|q| q.is_empty()) =>
            {
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .into_owned();
                self.put(req, key).await
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        };
        Ok(resp)
    }

    /// Keep a PUT body (multipart uploads are refused).
    async fn put(&self, req: Request<hyper::body::Incoming>, key: String) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt;
        let Ok(body) = req.into_body().collect().await else {
            return status(StatusCode::BAD_REQUEST, "IncompleteBody");
        };
        let body = body.to_bytes();
        let etag = received_etag(&body);
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, body);
        let mut r = Response::new(Full::new(Bytes::new()));
        if let Ok(v) = hyper::header::HeaderValue::from_str(&etag) {
            r.headers_mut().insert(hyper::header::ETAG, v);
        }
        r
    }

    /// A body PUT earlier, as GET or HEAD answer it.
    fn received_object(&self, head: bool, key: &str) -> Option<Response<Full<Bytes>>> {
        let body = self
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()?;
        let len = body.len();
        let etag = received_etag(&body);
        let mut r = Response::new(Full::new(if head { Bytes::new() } else { body }));
        for (name, v) in [
            (hyper::header::ETAG, etag),
            (hyper::header::CONTENT_LENGTH, len.to_string()),
            (
                hyper::header::LAST_MODIFIED,
                "Thu, 01 Jan 2026 00:00:00 GMT".into(),
            ),
        ] {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                r.headers_mut().insert(name, v);
            }
        }
        Some(r)
    }

    /// Serve on 127.0.0.1 (a free port) until the runtime ends.
    pub async fn serve(self: Arc<Self>) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let bucket = Arc::clone(&self);
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| Arc::clone(&bucket).handle(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(addr)
    }
}

/// The ETag of a body PUT here: the start of its BLAKE3.
fn received_etag(body: &[u8]) -> String {
    format!("\"{}\"", &blake3::hash(body).to_hex()[..32])
}

fn status(code: StatusCode, what: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{what}</Code><Message>{what}</Message></Error>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_pages_follow_key_order() {
        let b = Bucket::new(2500, 10 << 20);
        let first = b.list(&[]);
        assert!(first.contains("<Key>a/slow.bin</Key>"));
        assert!(first.contains("<NextContinuationToken>k/0000998</NextContinuationToken>"));
        let last = b.list(&[("continuation-token".into(), "k/0001998".into())]);
        assert!(last.contains("<Key>k/0001999</Key>"));
        assert!(last.contains("<Key>k/0002499</Key>"));
        assert!(last.contains("<IsTruncated>false</IsTruncated>"));
        assert_eq!(b.after("a/slow.bin"), 1);
        assert_eq!(b.after(""), 0);
    }
}
