//! A metering HTTP/1.1 proxy between passeur and a source server: it
//! forwards every request unchanged and counts the body bytes of object
//! reads (GET responses to requests without a query string; listings carry
//! a query, HEAD has no body). The count is independent of passeur's own
//! statistics and survives SIGKILLs of passeur, and the time of the first
//! and last such byte. It can also answer the next N uploads (PUT) itself
//! with 503 SlowDown, as a throttling S3 does, hold ranged GETs or HEADs,
//! and answer as S3 does where moto does not (see
//! [`Meter::s3_no_such_upload`]). It breaks requests by a seeded schedule
//! ([`crate::netfault`]: resets, stalls, error answers, bytes altered on
//! their way down or up), and counts the uploads that carry a checksum of
//! their body. The HTTP/1.1 framing it forwards by is in [`crate::http1`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::http1::{self, BodyCopier, Message, header, read_head};
use crate::netfault::{self, Kind, NetFaults};

mod counts;
pub use counts::Counts;

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct Meter {
    /// `http://127.0.0.1:PORT`: use this as the source endpoint.
    pub endpoint: String,
    /// What went through.
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl Meter {
    /// Proxy to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Result<Self> {
        let upstream = upstream
            .strip_prefix("http://")
            .context("upstream must be http://")?
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&counts), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let (c, up) = (Arc::clone(&c), upstream.clone());
                // Connection threads end when either side closes.
                c.connections.fetch_add(1, Relaxed);
                std::thread::spawn(move || {
                    let _ = serve(client, &up, &c);
                    c.connections.fetch_sub(1, Relaxed);
                });
            }
        });
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            counts,
            stop,
            port,
            accept: Some(accept),
        })
    }

    /// Make ranged GETs wait (`true`) or let them through (`false`), so a
    /// test can change the source between a listing and a read.
    pub fn hold_ranged_gets(&self, hold: bool) {
        self.counts.hold_ranged.store(hold, Relaxed);
    }

    /// Ranged GETs that have waited so far.
    pub fn held(&self) -> u64 {
        self.counts.held.load(Relaxed)
    }

    /// Answer the next `n` PUTs with 503 SlowDown without forwarding them.
    pub fn refuse_puts(&self, n: u64) {
        self.counts.refuse_puts.store(n, Relaxed);
    }

    /// Delay every request by `ms` milliseconds from now on.
    pub fn delay(&self, ms: u64) {
        self.counts.delay_ms.store(ms, Relaxed);
    }

    /// PUTs refused so far.
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Relaxed)
    }

    /// Requests seen so far (refused ones included).
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Relaxed)
    }

    /// The listing requests seen so far (`METHOD target`).
    pub fn listings(&self) -> Vec<String> {
        lock(&self.counts.listings).clone()
    }

    /// The requests naming multipart uploads seen so far (`METHOD target`).
    pub fn upload_calls(&self) -> Vec<String> {
        lock(&self.counts.upload_calls).clone()
    }

    /// Body bytes of object reads so far.
    pub fn object_bytes(&self) -> u64 {
        self.counts.object_bytes.load(Relaxed)
    }

    /// Forget the first and last object byte seen so far.
    pub fn reset_window(&self) {
        *lock(&self.counts.window) = None;
    }

    /// Time from the first to the last object body byte since the last
    /// [`Meter::reset_window`]; `None` if none passed.
    pub fn window(&self) -> Option<Duration> {
        lock(&self.counts.window).map(|(first, last)| last - first)
    }

    /// Make HEAD requests wait (`true`) or let them through (`false`): a
    /// resumable upload checks its source with a HEAD just before it
    /// completes, so a held HEAD keeps a run from completing its uploads.
    pub fn hold_heads(&self, hold: bool) {
        self.counts.hold_heads.store(hold, Relaxed);
    }

    /// Break requests by `faults` from now on (`None`: no more faults);
    /// returns the schedule, which counts what it injected.
    pub fn break_requests(&self, faults: Option<NetFaults>) -> Option<Arc<NetFaults>> {
        let f = faults.map(Arc::new);
        *lock(&self.counts.faults) = f.clone();
        f
    }

    /// Wait until no client connection is open (a killed client's last
    /// requests have drained through the proxy), at most `limit`.
    pub fn wait_idle(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.counts.connections.load(Relaxed) > 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} connections still open after {limit:?}",
                self.counts.connections.load(Relaxed)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Wait until `n` HEAD requests have been held, at most `limit`.
    pub fn wait_held_heads(&self, n: u64, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.held_heads() < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} HEAD requests held after {limit:?}, want {n}",
                self.held_heads()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// HEAD requests that have waited so far.
    pub fn held_heads(&self) -> u64 {
        self.counts.held_heads.load(Relaxed)
    }

    /// In front of moto as a target: S3 answers UploadPart and
    /// CompleteMultipartUpload of an upload id it does not know (aborted,
    /// e.g. by a lifecycle rule) with 404 NoSuchUpload; moto 5.2 answers
    /// 500 (a KeyError) instead. With this set, a 500 to a request naming
    /// an upload id is passed on as S3's 404 NoSuchUpload.
    pub fn s3_no_such_upload(&self, on: bool) {
        self.counts.no_such_upload.store(on, Relaxed);
    }

    /// Answers rewritten to 404 NoSuchUpload so far.
    pub fn no_such_upload_sent(&self) -> u64 {
        self.counts.no_such_upload_sent.load(Relaxed)
    }

    /// Refuse (403) every delete naming `part` (`None`: stop).
    pub fn refuse_deletes_of(&self, part: Option<&str>) {
        *lock(&self.counts.refuse_deletes_of) = part.map(str::to_owned);
    }

    /// Requests that carried an object's bytes up, and how many of them
    /// with a checksum of their body.
    pub fn uploads(&self) -> (u64, u64) {
        (
            self.counts.uploads.load(Relaxed),
            self.counts.uploads_with_checksum.load(Relaxed),
        )
    }

    /// Requests that carried an object's bytes up, by the checksum header
    /// they carried (lowercase name, or `none`).
    pub fn uploads_by_checksum(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.counts.uploads_by_checksum).clone()
    }

    /// Hold requests whose target holds `text` (`None`: let them go).
    pub fn hold_matching(&self, text: Option<&str>) {
        *lock(&self.counts.hold_matching) = text.map(str::to_owned);
    }

    /// Wait until `n` requests were held by [`Meter::hold_matching`].
    pub fn wait_held(&self, n: u64, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.counts.held_matching.load(Relaxed) < n {
            anyhow::ensure!(Instant::now() < deadline, "no request held in {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Hold the server's answers to `method` requests whose target holds
    /// `text` (`None`: let them go), once the server has handled them.
    pub fn hold_answers(&self, to: Option<(&str, &str)>) {
        *lock(&self.counts.hold_answers) = to.map(|(m, t)| (m.to_owned(), t.to_owned()));
    }

    /// Lose the server's next answer to a `method` request whose target
    /// holds `text`: the connection closes instead (the client may try
    /// again, and the server will have handled the request twice).
    pub fn lose_answer_to(&self, method: &str, text: &str) {
        *lock(&self.counts.lose_answer) = Some((method.to_owned(), text.to_owned()));
    }

    /// Answers lost by [`Meter::lose_answer_to`].
    pub fn lost_answers(&self) -> u64 {
        self.counts.lost_answers.load(Relaxed)
    }

    /// Wait until `n` answers were held by [`Meter::hold_answers`].
    pub fn wait_held_answers(&self, n: u64, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.counts.held_answers.load(Relaxed) < n {
            anyhow::ensure!(Instant::now() < deadline, "no answer held in {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Alter one byte of object GET answers to a Range holding `text`.
    pub fn alter_range(&self, text: Option<&str>) {
        *lock(&self.counts.alter_range) = text.map(str::to_owned);
    }

    /// Refuse (403) every S3 listing request for a page after the first.
    pub fn refuse_next_pages(&self, on: bool) {
        self.counts.refuse_next_pages.store(on, Relaxed);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// A copier of message bodies; with `object`, it adds what passes to the
/// object byte count as it passes (a response cut short by a kill still
/// counts what was sent), and moves the window's last byte.
fn copier(counts: &Counts, object: bool) -> BodyCopier<'_> {
    if !object {
        return BodyCopier::default();
    }
    BodyCopier::watched(move |bytes: &[u8]| {
        counts.object_bytes.fetch_add(bytes.len() as u64, Relaxed);
        let now = Instant::now();
        let mut window = lock(&counts.window);
        *window = Some(window.map_or((now, now), |(first, _)| (first, now)));
    })
}

fn serve(client: TcpStream, upstream: &str, counts: &Counts) -> Result<()> {
    let server = TcpStream::connect(upstream)?;
    // A head and a body are two writes: with Nagle's algorithm the second
    // waits for the peer's delayed ACK (40 ms), on top of `delay`.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut from_server = BufReader::new(server.try_clone()?);
    let mut to_server = server;
    while let Some(mut req) = read_head(&mut from_client)? {
        let req_text = String::from_utf8_lossy(&req).into_owned();
        let (method, target) = http1::request_line(&req_text);
        counts.requests.fetch_add(1, Relaxed);
        if target.contains("list-type=") || target.contains("comp=list") {
            lock(&counts.listings).push(format!("{method} {target}"));
        }
        if target.contains("?uploads") || target.contains("uploadId=") {
            lock(&counts.upload_calls).push(format!("{method} {target}"));
        }
        let delay = counts.delay_ms.load(Relaxed);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        // The proxy reads a body whole before forwarding it: it answers an
        // `Expect: 100-continue` itself, and the server never sees one (its
        // interim answer would be taken for the final one).
        if header(&req_text, "expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            to_client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            req = http1::without_header(&req_text, "expect").into_bytes();
        }
        if method == "GET"
            && header(&req_text, "range").is_some()
            && counts.hold_ranged.load(Relaxed)
        {
            counts.held.fetch_add(1, Relaxed);
            while counts.hold_ranged.load(Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let held = |c: &Counts| {
            lock(&c.hold_matching)
                .as_deref()
                .is_some_and(|t| target.contains(t))
        };
        if held(counts) {
            counts.held_matching.fetch_add(1, Relaxed);
            while held(counts) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        if method == "HEAD" && counts.hold_heads.load(Relaxed) {
            counts.held_heads.fetch_add(1, Relaxed);
            while counts.hold_heads.load(Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let fault = lock(&counts.faults).clone().and_then(|f| {
            let k = f.decide(&method, &target, header(&req_text, "range").as_deref())?;
            Some((f, k))
        });
        match &fault {
            Some((_, Kind::ResetRequest)) => {
                // Half the body reaches the proxy, none the server.
                if let Some(len) =
                    header(&req_text, "content-length").and_then(|l| l.parse::<u64>().ok())
                {
                    let mut half = vec![0; usize::try_from(len / 2).unwrap_or(0)];
                    from_client.read_exact(&mut half)?;
                }
                reset(&to_client);
                return Ok(());
            }
            Some((f, Kind::Stall)) => {
                std::thread::sleep(f.stall);
                return Ok(());
            }
            Some((f, k)) if k.status().is_some() => {
                http1::skip_body(&mut from_client, &req_text, Message::Request)?;
                to_client.write_all(f.answer(*k).as_bytes())?;
                continue;
            }
            _ => {}
        }
        if method == "PUT"
            && counts
                .refuse_puts
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            counts.refused.fetch_add(1, Relaxed);
            http1::skip_body(&mut from_client, &req_text, Message::Request)?;
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            write!(
                to_client,
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        // The request body, read here (object_store deletes with a bulk
        // `POST ?delete` whose body names the keys).
        let mut body = http1::read_body(&mut from_client, &req_text, Message::Request)?;
        let refused_key = lock(&counts.refuse_deletes_of).clone();
        let refuse_delete = refused_key.is_some_and(|k| {
            (method == "DELETE" && target.contains(&k))
                || (method == "POST"
                    && target.contains("delete")
                    && String::from_utf8_lossy(&body).contains(&k))
        });
        if refuse_delete
            || (method == "GET"
                && target.contains("continuation-token=")
                && !target.contains("delimiter=")
                && counts.refuse_next_pages.load(Relaxed))
        {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
            write!(
                to_client,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        let upload = netfault::is_upload_body(&method, &target, body.len());
        if upload {
            counts.uploads.fetch_add(1, Relaxed);
            let checksum = counts::checksum_header(&req_text);
            if checksum.is_some() {
                counts.uploads_with_checksum.fetch_add(1, Relaxed);
            }
            let key = checksum.unwrap_or_else(|| "none".into()) + counts::unsigned(&req_text);
            *lock(&counts.uploads_by_checksum).entry(key).or_default() += 1;
        }
        if let Some((f, Kind::AlterUpload)) = &fault {
            // Its head (the Content-Length, any checksum) goes unchanged.
            if upload && netfault::alter(&mut body) {
                f.altered_upload(&target);
            } else {
                f.not_applied(Kind::AlterUpload);
            }
        }
        to_server.write_all(&req)?;
        to_server.write_all(&body)?;
        let resp = read_head(&mut from_server)?.context("server closed")?;
        let resp_text = String::from_utf8_lossy(&resp).into_owned();
        let status = http1::status(&resp_text);
        let is = |rule: &Option<(String, String)>| {
            rule.as_ref()
                .is_some_and(|(m, t)| m.as_str() == method && target.contains(t.as_str()))
        };
        if is(&lock(&counts.hold_answers)) {
            counts.held_answers.fetch_add(1, Relaxed);
            while is(&lock(&counts.hold_answers)) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let lose = {
            let mut rule = lock(&counts.lose_answer);
            let hit = is(&rule);
            if hit {
                *rule = None;
            }
            hit
        };
        if lose {
            http1::skip_body(&mut from_server, &resp_text, Message::Response)?;
            counts.lost_answers.fetch_add(1, Relaxed);
            return Ok(());
        }
        if status == 500 && target.contains("uploadId=") && counts.no_such_upload.load(Relaxed) {
            http1::skip_body(&mut from_server, &resp_text, Message::Response)?;
            counts.no_such_upload_sent.fetch_add(1, Relaxed);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.</Message></Error>";
            // moto closes the connection after its 500: so does the proxy.
            write!(
                to_client,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            break;
        }
        let no_body = http1::bodiless(&method, status);
        let object = method == "GET" && !target.contains('?') && (200..300).contains(&status);
        let range = header(&req_text, "range").unwrap_or_default();
        let alter = lock(&counts.alter_range)
            .as_deref()
            .is_some_and(|t| range.contains(t));
        // Only object bodies are altered (a listing altered names other keys).
        if (alter || matches!(&fault, Some((_, Kind::Alter)))) && object {
            let mut body = Vec::new();
            copier(counts, object).body(
                &mut from_server,
                &mut body,
                &resp_text,
                Message::Response,
            )?;
            netfault::alter(&mut body);
            to_client.write_all(&resp)?;
            to_client.write_all(&body)?;
            continue;
        }
        if let Some((f, Kind::Alter)) = &fault {
            f.not_applied(Kind::Alter);
        }
        if let Some((_, k @ (Kind::ResetResponse | Kind::Truncate))) = &fault {
            return cut_answer(
                *k,
                &resp,
                &resp_text,
                no_body,
                object,
                &mut from_server,
                &mut to_client,
                counts,
            );
        }
        to_client.write_all(&resp)?;
        if object {
            counts.object_gets.fetch_add(1, Relaxed);
        }
        if !no_body {
            copier(counts, object).body(
                &mut from_server,
                &mut to_client,
                &resp_text,
                Message::Response,
            )?;
        }
        if http1::closes(&resp_text) {
            // The server reads no more requests on this connection.
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Both);
    Ok(())
}

/// Answer half of the server's answer (its head, and half its body; half
/// the head when it has no body), then reset the connection or close it
/// cleanly ([`Kind::Truncate`]: the Content-Length promised more).
#[allow(
    clippy::too_many_arguments,
    reason = "the state of one proxied exchange"
)]
fn cut_answer(
    kind: Kind,
    head: &[u8],
    head_text: &str,
    no_body: bool,
    object: bool,
    from_server: &mut impl BufRead,
    to_client: &mut TcpStream,
    counts: &Counts,
) -> Result<()> {
    let body = if no_body {
        Vec::new()
    } else {
        http1::read_body(from_server, head_text, Message::Response)?
    };
    if body.is_empty() {
        to_client.write_all(&head[..head.len() / 2])?;
    } else {
        to_client.write_all(head)?;
        to_client.write_all(&body[..body.len() / 2])?;
        if object {
            counts
                .object_bytes
                .fetch_add(body.len() as u64 / 2, Relaxed);
        }
    }
    match kind {
        Kind::Truncate => {
            to_client.flush()?;
            let _ = to_client.shutdown(Shutdown::Write);
        }
        _ => reset(to_client),
    }
    Ok(())
}

/// Reset the connection (TCP RST) once its last handle is dropped.
fn reset(conn: &TcpStream) {
    let _ = socket2::SockRef::from(conn).set_linger(Some(Duration::ZERO));
}

/// A mutex of the proxy's, poisoned or not.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
