//! Seeded network faults for the proxy in [`crate::meter`]: which request
//! breaks, and how, follows from a seed and the request itself — its
//! method, path and query (less the parts a server or a client makes up
//! per run: an upload id, a continuation token, an Azure block id), its
//! Range, and how many times the same request was
//! seen before — never from the order in which concurrent requests happen
//! to arrive. A run with the same seed breaks the same requests the same
//! way, and a retry of a broken request is a new draw.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How a request breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The connection is reset (TCP RST) while the request body is sent,
    /// before anything reaches the server.
    ResetRequest,
    /// The server's answer starts, then the connection is reset in the
    /// middle of its body.
    ResetResponse,
    /// Nothing comes back for longer than the client waits; then the
    /// connection closes.
    Stall,
    /// The answer's head promises a Content-Length, half the body comes,
    /// then the connection closes cleanly (FIN).
    Truncate,
    /// 500 with the store's own error body.
    Status500,
    /// 503 with the store's own error body (S3 `SlowDown`, Azure
    /// `ServerBusy`).
    Status503,
    /// 429 with the store's own error body.
    Status429,
    /// The answer arrives whole, its length kept, with one byte of its
    /// body changed (not in [`Kind::ALL`]: only a checksum can catch it).
    Alter,
    /// The body of an upload — a single PUT, an S3 UploadPart, an Azure
    /// Put Block — reaches the server whole, its Content-Length kept, with
    /// one byte changed (not in [`Kind::ALL`]: only a checksum the server
    /// checks, or reading the object back, can catch it).
    AlterUpload,
}

impl Kind {
    /// Every kind, in the mix a broken connection is drawn from.
    pub const ALL: [Kind; 7] = [
        Kind::ResetRequest,
        Kind::ResetResponse,
        Kind::Stall,
        Kind::Truncate,
        Kind::Status500,
        Kind::Status503,
        Kind::Status429,
    ];

    /// The status answered in place of the server, for the status kinds.
    pub fn status(self) -> Option<u16> {
        match self {
            Kind::Status500 => Some(500),
            Kind::Status503 => Some(503),
            Kind::Status429 => Some(429),
            _ => None,
        }
    }
}

/// Whose error bodies the proxy answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// S3: `<Error><Code>…` XML.
    S3,
    /// Azure Blob: `<Error><Code>…` XML and `x-ms-error-code`.
    Azure,
}

/// A seeded fault schedule, shared by the proxy's connections.
#[derive(Debug)]
pub struct NetFaults {
    seed: u64,
    /// Fraction of requests broken, 0.0–1.0.
    rate: f64,
    kinds: Vec<Kind>,
    /// How long a stalled request hangs before its connection closes.
    pub stall: Duration,
    dialect: Dialect,
    /// Only requests whose method is one of these break (all if empty).
    methods: Vec<String>,
    seen: Mutex<HashMap<String, u64>>,
    injected: Mutex<BTreeMap<Kind, u64>>,
    /// Request targets whose upload body was altered, in order.
    altered: Mutex<Vec<String>>,
}

impl NetFaults {
    /// Break `rate` of the requests (0.0–1.0), each with a kind drawn from
    /// `kinds`, answering errors in `dialect`.
    pub fn new(seed: u64, rate: f64, kinds: &[Kind], dialect: Dialect) -> Self {
        Self {
            seed,
            rate,
            kinds: kinds.to_vec(),
            stall: Duration::from_secs(4),
            dialect,
            methods: Vec::new(),
            seen: Mutex::default(),
            injected: Mutex::default(),
            altered: Mutex::default(),
        }
    }

    /// Break only requests with one of these methods.
    #[must_use]
    pub fn only(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    /// Hang stalled requests this long.
    #[must_use]
    pub fn stall_for(mut self, d: Duration) -> Self {
        self.stall = d;
        self
    }

    /// The fault for this request, if it draws one.
    pub fn decide(&self, method: &str, target: &str, range: Option<&str>) -> Option<Kind> {
        if self.kinds.is_empty()
            || (!self.methods.is_empty() && !self.methods.iter().any(|m| m == method))
        {
            return None;
        }
        let id = format!("{method} {} {}", stable_target(target), range.unwrap_or(""));
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let n = seen.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let draw = |salt: u64| {
            let mut h = DefaultHasher::new();
            (self.seed, salt, &id, n).hash(&mut h);
            h.finish()
        };
        // 53 bits: an f64 in [0, 1).
        let x = (draw(0) >> 11) as f64 / (1u64 << 53) as f64;
        if x >= self.rate {
            return None;
        }
        let kind = self.kinds[usize::try_from(draw(1) % self.kinds.len() as u64).unwrap_or(0)];
        *self
            .injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
        Some(kind)
    }

    /// A drawn fault that did not apply to its request after all (an
    /// [`Kind::Alter`] on an answer that is not an object's bytes): not
    /// counted as injected.
    pub fn not_applied(&self, kind: Kind) {
        if let Some(n) = self
            .injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&kind)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// A [`Kind::AlterUpload`] was applied to the request to `target`.
    pub fn altered_upload(&self, target: &str) {
        self.altered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(target.to_owned());
    }

    /// Request targets (path and query) whose upload body was altered.
    pub fn altered_uploads(&self) -> Vec<String> {
        self.altered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The keys whose upload bodies were altered: the paths of
    /// [`NetFaults::altered_uploads`] under `prefix` (`/bucket/`,
    /// `/account/container/`), percent-decoded.
    pub fn altered_keys(&self, prefix: &str) -> BTreeSet<String> {
        self.altered_uploads()
            .iter()
            .filter_map(|t| {
                let path = t.split_once('?').map_or(t.as_str(), |(p, _)| p);
                percent_decode(path.strip_prefix(prefix)?)
            })
            .collect()
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<Kind, u64> {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Faults injected so far, all kinds.
    pub fn total(&self) -> u64 {
        self.injected().values().sum()
    }

    /// The whole HTTP answer for a status kind, in the store's dialect.
    pub fn answer(&self, kind: Kind) -> String {
        let status = kind.status().unwrap_or(500);
        let (reason, code, message) = match (self.dialect, status) {
            (Dialect::S3, 503) => ("Slow Down", "SlowDown", "Please reduce your request rate."),
            (Dialect::S3, 429) => (
                "Too Many Requests",
                "TooManyRequests",
                "Please reduce your request rate.",
            ),
            (Dialect::S3, _) => (
                "Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
            (Dialect::Azure, 503) => (
                "Server Busy",
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            ),
            (Dialect::Azure, 429) => (
                "Too Many Requests",
                "TooManyRequests",
                "The request rate is too high. Please retry your request.",
            ),
            (Dialect::Azure, _) => (
                "Internal Server Error",
                "InternalError",
                "The server encountered an internal error. Please retry the request.",
            ),
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        );
        let extra = match self.dialect {
            Dialect::Azure => format!("x-ms-error-code: {code}\r\n"),
            Dialect::S3 => String::new(),
        };
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Whether a `method` request to `target` with a body of `len` bytes
/// carries an object's bytes: a single PUT (S3 PutObject, Azure Put Blob:
/// no query), an S3 UploadPart (`partNumber=`) or an Azure Put Block
/// (`comp=block`). Not a Put Block List, a copy (no body), a container
/// creation or a metadata update: altering those changes what is asked,
/// not the bytes stored.
pub fn is_upload_body(method: &str, target: &str, len: usize) -> bool {
    if method != "PUT" || len == 0 {
        return false;
    }
    let Some((_, query)) = target.split_once('?') else {
        return true;
    };
    query
        .split('&')
        .any(|p| p.starts_with("partNumber=") || p == "comp=block")
}

/// `%XX` escapes decoded (UTF-8); `None` if they do not make UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Change one byte of `body` (its middle), keeping its length; false if
/// it is empty.
pub fn alter(body: &mut [u8]) -> bool {
    let mid = body.len() / 2;
    body.get_mut(mid).map(|b| *b ^= 0x01).is_some()
}

/// A request target without what a server or a client makes up per run
/// (upload ids, continuation tokens, object_store's random Azure block
/// ids), so that the same request of another run with the same seed draws
/// the same fault. The blocks of one blob then look alike: which of them
/// breaks follows their order, how many of them break does not.
fn stable_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _))
                if k == "uploadId"
                    || k == "continuation-token"
                    || k == "marker"
                    || k == "blockid" =>
            {
                k
            }
            _ => p,
        })
        .collect();
    format!("{path}?{}", kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_breaks_the_same_requests_whatever_their_order() {
        let reqs: Vec<String> = (0..2000)
            .map(|i| format!("/b/k{i}?uploadId=x{i}"))
            .collect();
        let run = |order: &mut dyn Iterator<Item = &String>| {
            let f = NetFaults::new(7, 0.1, &Kind::ALL, Dialect::S3);
            let mut hit: Vec<(String, Kind)> = order
                .filter_map(|r| f.decide("PUT", r, None).map(|k| (r.clone(), k)))
                .collect();
            hit.sort();
            hit
        };
        let a = run(&mut reqs.iter());
        let b = run(&mut reqs.iter().rev());
        assert_eq!(a, b);
        assert!((150..250).contains(&a.len()), "{} of 2000 broken", a.len());
        let other = {
            let f = NetFaults::new(8, 0.1, &Kind::ALL, Dialect::S3);
            reqs.iter()
                .filter(|r| f.decide("PUT", r, None).is_some())
                .count()
        };
        assert!(other > 0);
    }

    #[test]
    fn only_bodies_that_carry_object_bytes_are_uploads() {
        let up = |m: &str, t: &str| is_upload_body(m, t, 10);
        assert!(up("PUT", "/dst/a/b.bin"));
        assert!(up("PUT", "/dst/a?partNumber=3&uploadId=x"));
        assert!(up(
            "PUT",
            "/devstoreaccount1/dst/a?comp=block&blockid=AAA%3D"
        ));
        assert!(!up("PUT", "/devstoreaccount1/dst/a?comp=blocklist"));
        assert!(!up("PUT", "/devstoreaccount1/dst/a?comp=metadata"));
        assert!(!up("PUT", "/devstoreaccount1/dst?restype=container"));
        assert!(!up("POST", "/dst/a?uploadId=x"));
        assert!(!up("GET", "/dst/a"));
        assert!(!is_upload_body("PUT", "/dst/a", 0), "a copy has no body");
    }

    #[test]
    fn an_altered_body_keeps_its_length_and_differs_in_one_byte() {
        let before: Vec<u8> = (0..=255).collect();
        let mut after = before.clone();
        assert!(alter(&mut after));
        assert_eq!(after.len(), before.len());
        assert_eq!(before.iter().zip(&after).filter(|(a, b)| a != b).count(), 1);
        assert!(!alter(&mut []));
        let f = NetFaults::new(3, 1.0, &[Kind::AlterUpload], Dialect::Azure);
        assert_eq!(f.decide("PUT", "/a", None), Some(Kind::AlterUpload));
        f.altered_upload("/acct/dst/keys/with%20space%2Bplus%25.txt?comp=block&blockid=x");
        f.altered_upload("/other/k");
        assert_eq!(
            f.altered_keys("/acct/dst/"),
            BTreeSet::from(["keys/with space+plus%.txt".to_owned()])
        );
        assert_eq!(f.total(), 1);
        f.not_applied(Kind::AlterUpload);
        assert_eq!(f.total(), 0);
    }

    #[test]
    fn ids_made_up_per_run_do_not_change_the_draw() {
        let f = |id: &str| {
            NetFaults::new(5, 0.5, &Kind::ALL, Dialect::Azure).decide(
                "PUT",
                &format!("/acct/dst/k?comp=block&blockid={id}"),
                None,
            )
        };
        let first = f("AAAA");
        assert!((0..32).all(|i| f(&format!("B{i}")) == first));
    }

    #[test]
    fn a_retry_is_a_new_draw() {
        let f = NetFaults::new(1, 0.5, &[Kind::Status500], Dialect::S3);
        let draws: Vec<bool> = (0..64)
            .map(|_| f.decide("GET", "/b/k", None).is_some())
            .collect();
        assert!(draws.iter().any(|d| *d) && draws.iter().any(|d| !*d));
    }
}
