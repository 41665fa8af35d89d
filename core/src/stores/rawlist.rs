//! Listing keys as the store holds them. object_store turns every listed
//! key into a `Path`: it drops a leading or trailing `/` (`photos/` comes
//! back as `photos`, out of key order) and rejects the whole page when one
//! key has an empty, `.` or `..` segment (`m//x`), so that one odd key hid
//! up to a thousand neighbours, every pass. This lister sends the same
//! signed list requests (S3 ListObjectsV2, Azure List Blobs; object_store's
//! own signers and HTTP client, so credentials, retries of the connection
//! and the request-rate cap are the job's) and parses the answers itself:
//! every key comes back byte for byte, in the store's order, and a key a
//! `Path` cannot carry is named by the listing instead of breaking it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::azure::{AzureAuthorizer, AzureCredentialProvider};
use object_store::client::{HttpClient, HttpRequest};
use serde::Deserialize;

/// One listed object, its key relative to the store's prefix.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The key exactly as the store holds it, without the store's prefix.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// ETag as listed (quoted or not).
    pub etag: Option<String>,
    /// Last modification.
    pub last_modified: DateTime<Utc>,
}

/// How to sign a list request.
#[derive(Clone)]
pub(crate) enum Signer {
    S3 {
        credentials: AwsCredentialProvider,
        region: String,
    },
    Azure {
        credentials: AzureCredentialProvider,
        account: String,
    },
}

/// A store's own listing requests.
#[derive(Clone)]
pub struct RawLister {
    pub(crate) client: HttpClient,
    pub(crate) signer: Signer,
    /// Bucket or container URL (no trailing `/`).
    pub(crate) base: String,
    /// The store's prefix with its trailing `/`, or empty.
    pub(crate) prefix: String,
    /// Set once an S3 answer said `EncodingType=url` over keys it had not
    /// encoded (s3s-fs does): its keys are then taken as they are.
    pub(crate) echoes_encoding: Arc<AtomicBool>,
}

impl std::fmt::Debug for RawLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawLister")
            .field("base", &self.base)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(msg: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: "raw listing",
        source: msg.into().into(),
    }
}

/// Requests tried this many times on a transport error or a 5xx / 429.
const ATTEMPTS: u32 = 5;

impl RawLister {
    /// Every key after `after` (exclusive, relative), in the store's order.
    pub fn list_after(
        self: Arc<Self>,
        after: Option<String>,
    ) -> BoxStream<'static, object_store::Result<RawEntry>> {
        let state = (self, after, None::<String>, true);
        futures::stream::try_unfold(state, |(me, after, token, more)| async move {
            if !more {
                return Ok(None);
            }
            let (entries, next) = me.page(after.as_deref(), token.as_deref()).await?;
            let more = next.is_some();
            Ok(Some((
                futures::stream::iter(entries.into_iter().map(Ok)),
                (me, after, next, more),
            )))
        })
        .map(|r: object_store::Result<_>| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn page(
        &self,
        after: Option<&str>,
        token: Option<&str>,
    ) -> object_store::Result<(Vec<RawEntry>, Option<String>)> {
        let abs_after = after.map(|a| format!("{}{a}", self.prefix));
        let mut query: Vec<(&str, &str)> = Vec::new();
        match &self.signer {
            Signer::S3 { .. } => {
                query.extend([("list-type", "2"), ("encoding-type", "url")]);
                if !self.prefix.is_empty() {
                    query.push(("prefix", &self.prefix));
                }
                match (token, abs_after.as_deref()) {
                    (Some(t), _) => query.push(("continuation-token", t)),
                    (None, Some(a)) => query.push(("start-after", a)),
                    (None, None) => {}
                }
            }
            Signer::Azure { .. } => {
                query.extend([("restype", "container"), ("comp", "list")]);
                if !self.prefix.is_empty() {
                    query.push(("prefix", &self.prefix));
                }
                // startFrom is inclusive and not honoured by every server:
                // keys up to `after` are dropped below either way.
                match (token, abs_after.as_deref()) {
                    (Some(t), _) => query.push(("marker", t)),
                    (None, Some(a)) => query.push(("startFrom", a)),
                    (None, None) => {}
                }
            }
        }
        let url = url::Url::parse_with_params(&format!("{}/", self.base), &query)
            .map_err(|e| err(format!("list URL: {e}")))?;
        let body = self.send(url.as_str()).await?;
        let (entries, next) = match &self.signer {
            Signer::S3 { .. } => parse_s3(&body, &self.echoes_encoding)?,
            Signer::Azure { .. } => parse_azure(&body)?,
        };
        let entries = entries
            .into_iter()
            .filter_map(|mut e| {
                let rel = e.key.strip_prefix(&self.prefix)?.to_owned();
                e.key = rel;
                Some(e)
            })
            .filter(|e| after.is_none_or(|a| e.key.as_str() > a))
            .collect();
        Ok((entries, next))
    }

    async fn send(&self, url: &str) -> object_store::Result<Bytes> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            let mut req: HttpRequest = http::Request::get(url)
                .body(Bytes::new().into())
                .map_err(|e| err(format!("list request: {e}")))?;
            match &self.signer {
                Signer::S3 {
                    credentials,
                    region,
                } => {
                    let c = credentials.get_credential().await?;
                    AwsAuthorizer::new(&c, "s3", region)
                        .with_sign_payload(false)
                        .try_authorize(&mut req, None)?;
                }
                Signer::Azure {
                    credentials,
                    account,
                } => {
                    let c = credentials.get_credential().await?;
                    AzureAuthorizer::new(&c, account).try_authorize(&mut req)?;
                }
            }
            let resp = match self.client.execute(req).await {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = resp.status();
            // A body cut short (a reset, an answer under its length) is
            // retried like a failed request.
            let body = match resp.into_body().bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = format!("list response: {e}");
                    continue;
                }
            };
            if status.is_success() {
                return Ok(body);
            }
            last = format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
            if !(status.is_server_error() || status.as_u16() == 429) {
                break;
            }
        }
        Err(err(format!("listing {}: {last}", self.base)))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3List {
    #[serde(default)]
    contents: Vec<S3Object>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
    encoding_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Object {
    key: String,
    size: u64,
    last_modified: String,
    #[serde(rename = "ETag")]
    e_tag: Option<String>,
}

fn time(s: &str) -> object_store::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_rfc2822(s))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| err(format!("listed time {s:?}: {e}")))
}

/// Whether a key listed with `encoding-type=url` shows it was not encoded:
/// a URL encoder escapes every space, control character and non-ASCII
/// byte.
fn plainly_unencoded(key: &str) -> bool {
    key.bytes()
        .any(|b| !b.is_ascii() || b == b' ' || b.is_ascii_control())
}

/// A key as listed with `encoding-type=url`: form-style URL encoding (AWS
/// writes a space as `+`, others as `%20`; a literal `+` is always `%2B`).
fn url_decoded(key: &str) -> object_store::Result<String> {
    percent_encoding::percent_decode_str(&key.replace('+', " "))
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| err(format!("listed key {key:?}: {e}")))
}

/// Parse one ListObjectsV2 page. A server that answers `EncodingType=url`
/// over unencoded keys is recognised by a key no encoder would leave as it
/// is, and from then on (`echoes`) its keys are taken as listed: decoding
/// them would turn a `+` into a space and list a key that is not there.
fn parse_s3(
    body: &[u8],
    echoes: &AtomicBool,
) -> object_store::Result<(Vec<RawEntry>, Option<String>)> {
    let list: S3List =
        quick_xml::de::from_reader(body).map_err(|e| err(format!("S3 list response: {e}")))?;
    let next = list.next_continuation_token.filter(|t| !t.is_empty());
    // A truncated page with no way to the next one: ending the listing here
    // would pass for a complete listing.
    if list.is_truncated && next.is_none() {
        return Err(err(
            "S3 list response is truncated but has no NextContinuationToken (does the server implement ListObjectsV2?)",
        ));
    }
    let mut url_encoded = list.encoding_type.as_deref() == Some("url");
    if url_encoded
        && !echoes.load(Relaxed)
        && list.contents.iter().any(|o| plainly_unencoded(&o.key))
    {
        echoes.store(true, Relaxed);
        tracing::warn!(
            "the S3 server answers EncodingType=url but does not encode keys: its keys are taken as listed"
        );
    }
    url_encoded &= !echoes.load(Relaxed);
    let entries = list
        .contents
        .into_iter()
        .map(|o| {
            Ok(RawEntry {
                key: if url_encoded {
                    url_decoded(&o.key)?
                } else {
                    o.key
                },
                size: o.size,
                etag: o.e_tag,
                last_modified: time(&o.last_modified)?,
            })
        })
        .collect::<object_store::Result<_>>()?;
    Ok((entries, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AzList {
    blobs: AzBlobs,
    next_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AzBlobs {
    #[serde(default)]
    blob: Vec<AzBlob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AzBlob {
    name: AzName,
    properties: AzProps,
}

/// A blob name; `Encoded="true"` (a name holding characters XML cannot
/// carry) means it is URL-encoded.
#[derive(Deserialize)]
struct AzName {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<String>,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Deserialize)]
struct AzProps {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag")]
    etag: Option<String>,
    #[serde(rename = "Content-Length")]
    size: u64,
}

fn parse_azure(body: &[u8]) -> object_store::Result<(Vec<RawEntry>, Option<String>)> {
    // Some servers start the body with a byte order mark.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let list: AzList =
        quick_xml::de::from_reader(body).map_err(|e| err(format!("Azure list response: {e}")))?;
    let entries = list
        .blobs
        .blob
        .into_iter()
        .map(|b| {
            let key = if b.name.encoded.as_deref() == Some("true") {
                percent_encoding::percent_decode_str(&b.name.text)
                    .decode_utf8()
                    .map_err(|e| err(format!("listed blob name {:?}: {e}", b.name.text)))?
                    .into_owned()
            } else {
                b.name.text
            };
            Ok(RawEntry {
                key,
                size: b.properties.size,
                etag: b.properties.etag,
                last_modified: time(&b.properties.last_modified)?,
            })
        })
        .collect::<object_store::Result<_>>()?;
    Ok((entries, list.next_marker.filter(|t| !t.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_keys_come_back_byte_for_byte() -> object_store::Result<()> {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><Contents><Key>m//x</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>photos/</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><ETag>"d"</ETag><Size>0</Size></Contents><Contents><Key>caf%C3%A9%20%2Bx</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents><Contents><Key>a+b%2Bc%25</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let echoes = AtomicBool::new(false);
        let (e, next) = parse_s3(xml, &echoes)?;
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        // AWS writes a space as `+` (others as %20); a literal `+` is %2B.
        assert_eq!(keys, ["m//x", "photos/", "café +x", "a b+c%"]);
        assert_eq!(e[0].etag.as_deref(), Some("\"abc\""));
        assert_eq!(e[0].size, 3);
        assert_eq!(next.as_deref(), Some("tok"));
        Ok(())
    }

    #[test]
    fn a_truncated_s3_page_without_a_token_is_an_error() {
        let xml = br#"<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents></ListBucketResult>"#;
        assert!(
            parse_s3(xml, &AtomicBool::new(false)).is_err(),
            "would end the listing as if complete"
        );
        let last = br#"<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken></NextContinuationToken></ListBucketResult>"#;
        assert!(
            parse_s3(last, &AtomicBool::new(false)).is_ok_and(|(e, n)| e.is_empty() && n.is_none())
        );
    }

    /// s3s-fs answers `EncodingType=url` over keys it did not encode: a key
    /// no encoder leaves as it is gives it away, and from then on `+` stays
    /// `+` (decoded, `a+b` would list as `a b`, a key that is not there).
    #[test]
    fn an_s3_server_that_echoes_url_encoding_is_read_as_listed() -> object_store::Result<()> {
        let page = |keys: &[&str]| {
            let contents: String = keys
                .iter()
                .map(|k| format!("<Contents><Key>{k}</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents>"))
                .collect();
            format!(
                "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
            )
        };
        let echoes = AtomicBool::new(false);
        let (e, _) = parse_s3(page(&["k/a+b=c&amp;d", "k/ünï €"]).as_bytes(), &echoes)?;
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["k/a+b=c&d", "k/ünï €"]);
        let (e, _) = parse_s3(page(&["l/x+y%41"]).as_bytes(), &echoes)?;
        assert_eq!(e[0].key, "l/x+y%41", "a later page of the same server");
        Ok(())
    }

    #[test]
    fn azure_names_come_back_byte_for_byte() -> object_store::Result<()> {
        let xml = b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://x/\" ContainerName=\"c\"><Blobs><Blob><Name>/lead</Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x8D</Etag><Content-Length>7</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob><Blob><Name>a/./b</Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x8E</Etag><Content-Length>0</Content-Length></Properties></Blob><Blob><Name Encoded=\"true\">bell%07%20x</Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x8F</Etag><Content-Length>1</Content-Length></Properties></Blob><Blob><Name Encoded=\"false\"> plain+name </Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x90</Etag><Content-Length>1</Content-Length></Properties></Blob></Blobs><NextMarker /></EnumerationResults>";
        let (e, next) = parse_azure(xml)?;
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["/lead", "a/./b", "bell\u{7} x", " plain+name "]);
        assert_eq!(e[0].size, 7);
        assert!(next.is_none());
        Ok(())
    }
}
