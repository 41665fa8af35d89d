//! What a [`Meter`](super::Meter) counts and the switches tests flip on
//! it: one struct of atomics shared by the proxy's connection threads.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::netfault::NetFaults;

/// Counters of a [`Meter`](super::Meter).
#[derive(Debug, Default)]
pub struct Counts {
    /// Body bytes of object GET responses.
    pub object_bytes: AtomicU64,
    /// Object GET requests.
    pub object_gets: AtomicU64,
    /// All requests.
    pub requests: AtomicU64,
    /// While set, ranged GETs wait before reaching the server.
    pub hold_ranged: AtomicBool,
    /// Ranged GETs that waited.
    pub held: AtomicU64,
    /// PUTs still to be refused with 503 SlowDown.
    pub refuse_puts: AtomicU64,
    /// PUTs refused so far.
    pub refused: AtomicU64,
    /// Milliseconds every request waits before it is forwarded (a wide
    /// area network's round trip).
    pub delay_ms: AtomicU64,
    /// While set, HEAD requests wait before reaching the server.
    pub hold_heads: AtomicBool,
    /// HEAD requests that waited.
    pub held_heads: AtomicU64,
    /// While set, requests whose target (path and query) holds this text
    /// wait before reaching the server.
    pub hold_matching: Mutex<Option<String>>,
    /// Requests that waited for `hold_matching`.
    pub held_matching: AtomicU64,
    /// While set, the server's answers to requests of this method whose
    /// target holds this text wait before going back to the client: the
    /// server has done what was asked, the client does not know it yet.
    pub hold_answers: Mutex<Option<(String, String)>>,
    /// Answers that waited for `hold_answers`.
    pub held_answers: AtomicU64,
    /// The next answer to a request of this method whose target holds
    /// this text is lost: the server handled the request, and the proxy
    /// closes the client's connection instead of answering (once).
    pub lose_answer: Mutex<Option<(String, String)>>,
    /// Answers lost so.
    pub lost_answers: AtomicU64,
    /// While set, object GET answers to a Range holding this text come
    /// with one byte of their body changed.
    pub alter_range: Mutex<Option<String>>,
    /// Answer 404 NoSuchUpload where moto answers 500 to a request naming
    /// an upload id (see [`Meter::s3_no_such_upload`](super::Meter::s3_no_such_upload)).
    pub no_such_upload: AtomicBool,
    /// Answers rewritten to 404 NoSuchUpload.
    pub no_such_upload_sent: AtomicU64,
    /// While set, S3 listing requests for a next page (with a continuation
    /// token, without a delimiter: not the probe's) are refused with 403
    /// AccessDenied: a listing that fails after its first page, every time.
    pub refuse_next_pages: AtomicBool,
    /// Deletes naming this text (a DELETE's path, a bulk `POST ?delete`'s
    /// body) are refused with 403 AccessDenied: a key the target will not
    /// let go of.
    pub refuse_deletes_of: Mutex<Option<String>>,
    /// The request line (method and target) of every listing request
    /// (an S3 `list-type`, an Azure `comp=list`) seen so far.
    pub listings: Mutex<Vec<String>>,
    /// The request line of every request naming multipart uploads (an
    /// `uploads` or `uploadId` query parameter) seen so far.
    pub upload_calls: Mutex<Vec<String>>,
    /// Client connections open now.
    pub connections: AtomicU64,
    /// Requests that carried an object's bytes up (see
    /// [`netfault::is_upload_body`](crate::netfault::is_upload_body)).
    pub uploads: AtomicU64,
    /// Of those, requests with a checksum of their body the server can
    /// check (`x-amz-checksum-*`, `Content-MD5`, `x-ms-content-crc64`).
    pub uploads_with_checksum: AtomicU64,
    /// Those requests by the checksum header they carried (lowercase
    /// name; `none`), followed by ` unsigned` for a body sent as
    /// `UNSIGNED-PAYLOAD`.
    pub uploads_by_checksum: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Seeded network faults, when set (see [`Meter::break_requests`](super::Meter::break_requests)).
    pub faults: Mutex<Option<Arc<NetFaults>>>,
    /// When the first and the last object body byte passed since the last
    /// [`Meter::reset_window`](super::Meter::reset_window).
    pub window: Mutex<Option<(Instant, Instant)>>,
}

/// The header (lowercase name) of a checksum of its body that the server
/// can check, if the request head carries one.
pub(super) fn checksum_header(head: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, _) = l.split_once(':')?;
        let k = k.trim().to_ascii_lowercase();
        ((k.starts_with("x-amz-checksum-") && k != "x-amz-checksum-algorithm")
            || k == "content-md5"
            || k == "x-ms-content-crc64")
            .then_some(k)
    })
}

/// `" unsigned"` when the request head says its body is not signed
/// (`x-amz-content-sha256: UNSIGNED-PAYLOAD`), else nothing.
pub(super) fn unsigned(head: &str) -> &'static str {
    let signed_as = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("x-amz-content-sha256")
            .then(|| v.trim().to_owned())
    });
    match signed_as {
        Some(v) if v == "UNSIGNED-PAYLOAD" => " unsigned",
        _ => "",
    }
}
