//! HTTP/1.1 framing for the test proxies ([`crate::meter`]): reading a
//! request or response head, the few things read from one (request line,
//! status, a header), whether a response has a body, and copying a body as
//! it is framed (Content-Length, chunked, or to the end of the connection),
//! verbatim. Nothing here knows what passes through; a caller that does
//! (the meter counts object bytes) watches the bytes as they are copied.

use std::io::{BufRead, Read, Write};

use anyhow::{Context, Result, bail};

/// Read an HTTP head (through the blank line); `None` at a clean EOF.
pub fn read_head(r: &mut impl BufRead) -> Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            bail!("connection closed inside a head");
        }
        if head.ends_with(b"\r\n\r\n") {
            return Ok(Some(head));
        }
    }
}

/// The value of header `name` (any case) in `head`, trimmed.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// `head` without its `name` header lines.
pub fn without_header(head: &str, name: &str) -> String {
    head.split_inclusive("\r\n")
        .enumerate()
        .filter(|(i, l)| {
            *i == 0
                || l.split_once(':')
                    .is_none_or(|(k, _)| !k.trim().eq_ignore_ascii_case(name))
        })
        .map(|(_, l)| l)
        .collect()
}

/// A request head's method and target (empty if missing).
pub fn request_line(head: &str) -> (String, String) {
    let mut first = head.split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    (method, target)
}

/// A response head's status (0 if unreadable).
pub fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Whether the response with `status` to a `method` request has no body
/// whatever its headers say (HEAD, 1xx, 204, 304).
pub fn bodiless(method: &str, status: u16) -> bool {
    method == "HEAD" || status == 204 || status == 304 || status < 200
}

/// Whether the head says the connection closes after this message.
pub fn closes(head: &str) -> bool {
    header(head, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close"))
}

/// Which message a body belongs to: a request without a length has none,
/// a response without one runs to the end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A request's body.
    Request,
    /// A response's body.
    Response,
}

/// What a [`BodyCopier`] shows each piece of body to.
type Watch<'a> = Box<dyn FnMut(&[u8]) + 'a>;

/// Copies message bodies through one buffer, showing each piece of body
/// to a watcher as it passes (a message cut short still showed what
/// passed). Chunk framing is copied too, and not shown.
pub struct BodyCopier<'a> {
    watch: Option<Watch<'a>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for BodyCopier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyCopier")
            .field("watched", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for BodyCopier<'_> {
    fn default() -> Self {
        Self {
            watch: None,
            buf: vec![0; 64 * 1024],
        }
    }
}

impl<'a> BodyCopier<'a> {
    /// A copier that shows every piece of body to `watch`.
    pub fn watched(watch: impl FnMut(&[u8]) + 'a) -> Self {
        Self {
            watch: Some(Box::new(watch)),
            ..Self::default()
        }
    }

    /// Copy up to `n` bytes (until EOF if `None`); returns the bytes copied.
    pub fn copy(&mut self, r: &mut impl Read, w: &mut impl Write, n: Option<u64>) -> Result<u64> {
        let mut done = 0u64;
        loop {
            let want = n.map_or(self.buf.len() as u64, |n| {
                (n - done).min(self.buf.len() as u64)
            });
            if want == 0 {
                return Ok(done);
            }
            let got = r.read(&mut self.buf[..usize::try_from(want).unwrap_or(0)])?;
            if got == 0 {
                if let Some(n) = n {
                    bail!("body ended after {done} of {n} bytes");
                }
                return Ok(done);
            }
            w.write_all(&self.buf[..got])?;
            if let Some(watch) = &mut self.watch {
                watch(&self.buf[..got]);
            }
            done += got as u64;
        }
    }

    /// Forward a chunked body verbatim.
    pub fn chunked(&mut self, r: &mut impl BufRead, w: &mut impl Write) -> Result<()> {
        loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line)?;
            w.write_all(&line)?;
            let text = String::from_utf8_lossy(&line);
            let size = u64::from_str_radix(text.trim().split(';').next().unwrap_or("").trim(), 16)
                .context("bad chunk size")?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut t = Vec::new();
                    r.read_until(b'\n', &mut t)?;
                    w.write_all(&t)?;
                    if t == b"\r\n" || t.is_empty() {
                        return Ok(());
                    }
                }
            }
            self.copy(r, w, Some(size))?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
            w.write_all(&crlf)?;
        }
    }

    /// Forward the body of the message whose head is `head`, as that head
    /// frames it.
    pub fn body(
        &mut self,
        r: &mut impl BufRead,
        w: &mut impl Write,
        head: &str,
        message: Message,
    ) -> Result<()> {
        if let Some(len) = header(head, "content-length") {
            self.copy(r, w, Some(len.parse()?))?;
        } else if header(head, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            self.chunked(r, w)?;
        } else if message == Message::Response {
            self.copy(r, w, None)?;
        }
        Ok(())
    }
}

/// Skip the body of the message whose head is `head`.
pub fn skip_body(r: &mut impl BufRead, head: &str, message: Message) -> Result<()> {
    BodyCopier::default().body(r, &mut std::io::sink(), head, message)
}

/// Read the body of the message whose head is `head` into memory.
pub fn read_body(r: &mut impl BufRead, head: &str, message: Message) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    BodyCopier::default().body(r, &mut body, head, message)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_header_drops_only_that_header() {
        let head =
            "PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            super::without_header(head, "expect"),
            "PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"
        );
    }
}
