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
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use object_store::aws::AwsCredentialProvider;
use object_store::azure::AzureCredentialProvider;
use object_store::client::HttpClient;
use serde::Deserialize;

mod put;
mod send;
mod uploads;
pub use put::Md5Put;
pub(crate) use put::md5_puts_allowed;
use send::refusal;
pub use uploads::{OpenUpload, UploadParts, UploadsListing};

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
    /// What else the listing said, when the lister was asked for it
    /// ([`RawLister::with_details`]).
    pub details: Option<Box<Details>>,
}

/// What a listing says of an object beyond its key, size and time: for
/// planning a migration (`passeur plan`), not needed to copy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// Azure Content-MD5 (base64).
    pub content_md5: Option<String>,
    /// Azure access tier or S3 storage class.
    pub class: Option<String>,
    /// Azure archive status (a rehydration under way).
    pub archive_status: Option<String>,
    /// Azure blob type.
    pub blob_type: Option<String>,
    /// Azure snapshot time: the entry is a snapshot.
    pub snapshot: Option<String>,
    /// Version id (Azure with versioning).
    pub version: Option<String>,
    /// False for an earlier version.
    pub current: bool,
    /// User metadata (Azure: names as listed).
    pub metadata: Option<Vec<(String, String)>>,
}

/// Nothing more said: a current object.
impl Default for Details {
    fn default() -> Self {
        Self {
            content_md5: None,
            class: None,
            archive_status: None,
            blob_type: None,
            snapshot: None,
            version: None,
            current: true,
            metadata: None,
        }
    }
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
    /// Whether the S3 server really URL-encodes keys when asked
    /// ([`Encoding`]), found out once per store, shared by every range
    /// lister of it, and decided before any key that decoding would change
    /// is decoded.
    pub(crate) encoding: Arc<AtomicU8>,
    /// List snapshots, versions and metadata too (Azure) and keep what
    /// each entry's properties say ([`Details`]).
    pub(crate) details: bool,
    /// Single PUTs of objects whose source publishes an MD5 go through
    /// [`RawLister::put_md5`] (S3; see `put`).
    pub(crate) puts_md5: bool,
    /// The store's retry settings, which those PUTs follow.
    pub(crate) retry: object_store::RetryConfig,
}

/// What an S3 server does with `encoding-type=url` (stored in an
/// `AtomicU8`). AWS encodes every key; s3s-fs answers `EncodingType=url`
/// but leaves its keys as they are, so decoding its `a+b` would list `a b`,
/// a key that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Encoding {
    /// Not seen yet: no listed key so far was one decoding changes.
    Unknown = 0,
    /// Keys come encoded: decode them.
    Encodes = 1,
    /// Keys come as they are, whatever the answer says.
    Echoes = 2,
}

impl Encoding {
    fn load(cell: &AtomicU8) -> Self {
        match cell.load(Relaxed) {
            1 => Self::Encodes,
            2 => Self::Echoes,
            _ => Self::Unknown,
        }
    }
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

/// What an Azure listing with details includes.
const AZURE_DETAILS: &str = "snapshots,metadata,versions";

/// Names asked for in the first page of an Azure listing (the later pages
/// are the server's default, 5,000). A server builds a page before it
/// sends any of it, and nothing is copied before the first page arrives;
/// the next, full page is listed while the first 1,000 objects are
/// copied. Azurite, 5,000 blobs: a page of 5,000 in ≈ 1.2 s, of 1,000 in
/// ≈ 0.2 s (through the Azure SDK); a pass's first copies began ≈ 0.2 s
/// sooner.
const AZURE_FIRST_PAGE: &str = "1000";

impl RawLister {
    /// The same lister, asking for and keeping each entry's [`Details`]:
    /// an Azure listing then holds snapshots and earlier versions too.
    pub fn with_details(&self) -> Self {
        Self {
            details: true,
            ..self.clone()
        }
    }

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
                if token.is_none() {
                    query.push(("maxresults", AZURE_FIRST_PAGE));
                }
                if self.details {
                    query.push(("include", AZURE_DETAILS));
                }
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
        let body = self.send(&self.url(&query)?).await?;
        let (entries, next) = match &self.signer {
            Signer::S3 { .. } => {
                let page = parse_s3(&body)?;
                let encoded = page.url_encoded && self.encodes(&page, &query).await?;
                page.into_entries(encoded, self.details)?
            }
            Signer::Azure { .. } => parse_azure(&body, self.details)?,
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

    fn url(&self, query: &[(&str, &str)]) -> object_store::Result<String> {
        url::Url::parse_with_params(&format!("{}/", self.base), query)
            .map(String::from)
            .map_err(|e| err(format!("list URL: {e}")))
    }

    /// Whether the keys of a page answered `EncodingType=url` are really
    /// encoded. Decided once per store, before any key that decoding would
    /// change is decoded: a key no encoder leaves as it is (a space, a
    /// control character, non-ASCII) shows the server echoes; otherwise a
    /// page holding a `%` or `+` is asked for again without
    /// `encoding-type`: the same keys mean the server echoes (an encoder
    /// writes `+` as `%2B` and `%` as `%25`), other keys, or an answer XML
    /// cannot carry, that it encodes.
    async fn encodes(&self, page: &S3Page, query: &[(&str, &str)]) -> object_store::Result<bool> {
        let decided = match Encoding::load(&self.encoding) {
            Encoding::Unknown if page.keys().any(plainly_unencoded) => Encoding::Echoes,
            Encoding::Unknown if page.keys().any(|k| k.contains(['%', '+'])) => {
                let plain: Vec<_> = query
                    .iter()
                    .copied()
                    .filter(|(k, _)| *k != "encoding-type")
                    .collect();
                let body = self.send(&self.url(&plain)?).await?;
                match parse_s3(&body) {
                    Ok(p) if p.keys().eq(page.keys()) => Encoding::Echoes,
                    _ => Encoding::Encodes,
                }
            }
            known => known,
        };
        if decided != Encoding::Unknown
            && self
                .encoding
                .compare_exchange(Encoding::Unknown as u8, decided as u8, Relaxed, Relaxed)
                .is_ok()
            && decided == Encoding::Echoes
        {
            tracing::warn!(
                store = %self.base,
                "the S3 server answers EncodingType=url but does not encode keys: its keys are taken as listed"
            );
        }
        Ok(decided != Encoding::Echoes)
    }

    async fn send(&self, url: &str) -> object_store::Result<Bytes> {
        match self.answer(url).await? {
            (status, body) if status.is_success() => Ok(body),
            (status, body) => Err(err(format!(
                "listing {}: {}",
                self.base,
                refusal(status, &body)
            ))),
        }
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
    storage_class: Option<String>,
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

/// One ListObjectsV2 page, keys as they came.
struct S3Page {
    contents: Vec<S3Object>,
    next: Option<String>,
    /// The answer says `EncodingType=url` (whether its keys really are is
    /// [`RawLister::encodes`]'s question).
    url_encoded: bool,
}

impl S3Page {
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.contents.iter().map(|o| o.key.as_str())
    }

    fn into_entries(
        self,
        decode: bool,
        details: bool,
    ) -> object_store::Result<(Vec<RawEntry>, Option<String>)> {
        let entries = self
            .contents
            .into_iter()
            .map(|o| {
                Ok(RawEntry {
                    key: if decode { url_decoded(&o.key)? } else { o.key },
                    size: o.size,
                    etag: o.e_tag,
                    last_modified: time(&o.last_modified)?,
                    details: details.then(|| {
                        Box::new(Details {
                            class: o.storage_class,
                            ..Details::default()
                        })
                    }),
                })
            })
            .collect::<object_store::Result<_>>()?;
        Ok((entries, self.next))
    }
}

/// Parse one ListObjectsV2 page.
fn parse_s3(body: &[u8]) -> object_store::Result<S3Page> {
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
    Ok(S3Page {
        contents: list.contents,
        next,
        url_encoded: list.encoding_type.as_deref() == Some("url"),
    })
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
    snapshot: Option<String>,
    version_id: Option<String>,
    is_current_version: Option<bool>,
    /// One element per name.
    metadata: Option<std::collections::BTreeMap<String, String>>,
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
    #[serde(rename = "Content-MD5")]
    content_md5: Option<String>,
    #[serde(rename = "BlobType")]
    blob_type: Option<String>,
    #[serde(rename = "AccessTier")]
    access_tier: Option<String>,
    #[serde(rename = "ArchiveStatus")]
    archive_status: Option<String>,
}

fn parse_azure(
    body: &[u8],
    details: bool,
) -> object_store::Result<(Vec<RawEntry>, Option<String>)> {
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
            let last_modified = time(&b.properties.last_modified)?;
            let p = b.properties;
            let details = details.then(|| {
                Box::new(Details {
                    content_md5: p.content_md5.filter(|m| !m.is_empty()),
                    class: p.access_tier,
                    archive_status: p.archive_status,
                    blob_type: p.blob_type,
                    // A version listing marks the current one; a blob
                    // without versions is current.
                    current: b.snapshot.is_none()
                        && (b.version_id.is_none() || b.is_current_version == Some(true)),
                    snapshot: b.snapshot,
                    version: b.version_id,
                    metadata: b.metadata.map(|m| m.into_iter().collect()),
                })
            });
            Ok(RawEntry {
                key,
                size: p.size,
                etag: p.etag,
                last_modified,
                details,
            })
        })
        .collect::<object_store::Result<_>>()?;
    Ok((entries, list.next_marker.filter(|t| !t.is_empty())))
}

#[cfg(test)]
mod tests;
