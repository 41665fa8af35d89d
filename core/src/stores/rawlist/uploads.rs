//! The multipart uploads an S3 target holds open for one key
//! (ListMultipartUploads), which object_store does not ask for. A run
//! stopped between creating an upload and recording its id leaves an
//! upload no manifest names; the next one finds it here by its key and
//! aborts it (`transfer::starts`).

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{RawLister, Signer, err, refusal, time};

/// One open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The server's upload id.
    pub id: String,
    /// When the server created it (its own clock), if it said so in a
    /// form this parser reads: for logs only.
    pub initiated: Option<DateTime<Utc>>,
}

/// What asking for a key's open uploads gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadsListing {
    /// The uploads open for exactly that key.
    Listed(Vec<OpenUpload>),
    /// The server will not list uploads (a permission the credentials
    /// lack, an operation it does not implement): its answer.
    Refused(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    #[serde(default)]
    upload: Vec<Upload>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Upload {
    key: String,
    upload_id: String,
    initiated: Option<String>,
}

/// What a key's bytes keep in a request path: S3's unreserved characters
/// and `/`; every other byte is percent-encoded (the path is signed as
/// sent).
pub(super) const KEY_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Whether an open upload holds parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadParts {
    /// No part: nothing was sent to it.
    None,
    /// At least one part.
    Some,
    /// The server no longer knows the upload (404).
    Gone,
    /// The server will not list parts (see [`refuses`]): its answer.
    Refused(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    code: Option<String>,
}

/// Whether an answer refuses the request for good: an operation the
/// server does not implement (501, 405, `NotImplemented`,
/// `MethodNotAllowed`) or a permission the credentials lack
/// (`AccessDenied`). Other 4xx (an expired token, a skewed clock, a bad
/// signature) may pass.
fn refuses(status: http::StatusCode, body: &[u8]) -> bool {
    if matches!(status.as_u16(), 405 | 501) {
        return true;
    }
    let code = quick_xml::de::from_reader::<_, ErrorBody>(body)
        .ok()
        .and_then(|e| e.code);
    matches!(
        code.as_deref(),
        Some("AccessDenied" | "NotImplemented" | "MethodNotAllowed")
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PartsPage {
    #[serde(default)]
    part: Vec<serde::de::IgnoredAny>,
}

/// Where a next page of uploads starts: key marker, upload id marker.
type Marker = (String, String);

/// One page: the uploads of exactly `key`, and where the next page starts
/// if the server has more that may still be of `key`.
fn parse_page(body: &[u8], key: &str) -> object_store::Result<(Vec<OpenUpload>, Option<Marker>)> {
    let page: Page = quick_xml::de::from_reader(body)
        .map_err(|e| err(format!("S3 ListMultipartUploads response: {e}")))?;
    let mut out = Vec::new();
    for u in page.upload.into_iter().filter(|u| u.key == key) {
        out.push(OpenUpload {
            id: u.upload_id,
            initiated: u.initiated.as_deref().and_then(|t| time(t).ok()),
        });
    }
    if !page.is_truncated {
        return Ok((out, None));
    }
    match (page.next_key_marker, page.next_upload_id_marker) {
        // Uploads come in key order: past `key`, none is of it.
        (Some(k), _) if k.as_str() > key => Ok((out, None)),
        // Going on from `key` itself needs the upload id to go on from.
        (Some(k), Some(u)) if !k.is_empty() && (k.as_str() != key || !u.is_empty()) => {
            Ok((out, Some((k, u))))
        }
        (k, u) => Err(err(format!(
            "S3 ListMultipartUploads response is truncated but names no next page to go on from (key marker {k:?}, upload id marker {u:?})"
        ))),
    }
}

impl RawLister {
    /// Whether the store can be asked for open uploads (S3).
    pub fn lists_uploads(&self) -> bool {
        matches!(self.signer, Signer::S3 { .. })
    }

    /// The multipart uploads open for `key` (relative to the store's
    /// prefix). A refusal the server will give again ([`refuses`]) is
    /// [`UploadsListing::Refused`]; a failure that may pass (an expired
    /// token, a skewed clock, a 5xx) is an error.
    pub async fn open_uploads(&self, key: &str) -> object_store::Result<UploadsListing> {
        if !self.lists_uploads() {
            return Ok(UploadsListing::Refused(
                "not an S3 store: no ListMultipartUploads".into(),
            ));
        }
        let abs = format!("{}{key}", self.prefix);
        let mut out = Vec::new();
        let mut marker: Option<Marker> = None;
        loop {
            let mut query = vec![("uploads", ""), ("prefix", abs.as_str())];
            if let Some((k, u)) = &marker {
                query.extend([("key-marker", k.as_str()), ("upload-id-marker", u.as_str())]);
            }
            let (status, body) = self.answer(&self.url(&query)?).await?;
            if !status.is_success() {
                let why = refusal(status, &body);
                return if refuses(status, &body) {
                    Ok(UploadsListing::Refused(why))
                } else {
                    Err(err(format!("listing uploads of {abs:?}: {why}")))
                };
            }
            let (found, next) = parse_page(&body, &abs)?;
            out.extend(found);
            if next.is_some() && next == marker {
                return Err(err(format!(
                    "S3 ListMultipartUploads of {abs:?} named the same next page twice"
                )));
            }
            if next.is_none() {
                break;
            }
            marker = next;
        }
        Ok(UploadsListing::Listed(out))
    }

    /// Whether the upload `id` of `key` (relative to the store's prefix)
    /// holds any part (S3 ListParts).
    pub async fn upload_parts(&self, key: &str, id: &str) -> object_store::Result<UploadParts> {
        let path = utf8_percent_encode(&format!("{}{key}", self.prefix), KEY_PATH).to_string();
        let url = url::Url::parse_with_params(
            &format!("{}/{path}", self.base),
            [("max-parts", "1"), ("uploadId", id)],
        )
        .map_err(|e| err(format!("ListParts URL: {e}")))?;
        let (status, body) = self.answer(url.as_str()).await?;
        if status.as_u16() == 404 {
            return Ok(UploadParts::Gone);
        }
        if !status.is_success() {
            let why = refusal(status, &body);
            return if refuses(status, &body) {
                Ok(UploadParts::Refused(why))
            } else {
                Err(err(format!(
                    "listing the parts of upload {id} of {key:?}: {why}"
                )))
            };
        }
        let page: PartsPage = quick_xml::de::from_reader(body.as_ref())
            .map_err(|e| err(format!("S3 ListParts response: {e}")))?;
        Ok(if page.part.is_empty() {
            UploadParts::None
        } else {
            UploadParts::Some
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_uploads_of_exactly_the_key_are_kept() -> object_store::Result<()> {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>p/a</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated><Upload><Key>p/a</Key><UploadId>one</UploadId><Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass><Initiated>2026-12-07T04:00:00.000Z</Initiated></Upload><Upload><Key>p/a b&amp;c</Key><UploadId>two</UploadId><Initiated>2026-12-07T04:00:01.000Z</Initiated></Upload><Upload><Key>p/ab</Key><UploadId>three</UploadId><Initiated>2026-12-07T04:00:02.000Z</Initiated></Upload></ListMultipartUploadsResult>"#;
        let (got, next) = parse_page(xml, "p/a")?;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "one");
        assert_eq!(got[0].initiated, Some(time("2026-12-07T04:00:00.000Z")?));
        assert!(next.is_none());
        let (got, _) = parse_page(xml, "p/a b&c")?;
        assert_eq!(
            got.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            ["two"]
        );
        Ok(())
    }

    #[test]
    fn a_parts_page_tells_an_empty_upload_and_keys_are_encoded_for_the_path() {
        let empty = br#"<ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId><IsTruncated>false</IsTruncated></ListPartsResult>"#;
        let one = br#"<ListPartsResult><IsTruncated>true</IsTruncated><Part><PartNumber>1</PartNumber><ETag>"e"</ETag><Size>5</Size></Part></ListPartsResult>"#;
        let parts = |b: &[u8]| {
            quick_xml::de::from_reader::<_, PartsPage>(b)
                .map(|p| p.part.len())
                .ok()
        };
        assert_eq!(parts(empty), Some(0));
        assert_eq!(parts(one), Some(1));
        assert_eq!(
            utf8_percent_encode("big/été +%41 x~.bin", KEY_PATH).to_string(),
            "big/%C3%A9t%C3%A9%20%2B%2541%20x~.bin"
        );
    }

    #[test]
    fn only_refusals_that_stay_are_refusals() {
        let body = |code: &str| format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
        let s = |n| http::StatusCode::from_u16(n).unwrap_or(http::StatusCode::OK);
        assert!(refuses(s(403), body("AccessDenied").as_bytes()));
        assert!(refuses(s(501), b""));
        assert!(refuses(s(400), body("NotImplemented").as_bytes()));
        assert!(!refuses(s(400), body("ExpiredToken").as_bytes()));
        assert!(!refuses(s(403), body("RequestTimeTooSkewed").as_bytes()));
        assert!(!refuses(s(403), body("SignatureDoesNotMatch").as_bytes()));
        assert!(!refuses(s(403), b"not xml"));
    }

    #[test]
    fn a_truncated_page_goes_on_while_it_can_hold_the_key() -> object_store::Result<()> {
        let page = |next: &str| {
            format!(
                "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>{next}<Upload><Key>k</Key><UploadId>u1</UploadId><Initiated>2026-12-07T04:00:00Z</Initiated></Upload></ListMultipartUploadsResult>"
            )
        };
        let more =
            page("<NextKeyMarker>k</NextKeyMarker><NextUploadIdMarker>u1</NextUploadIdMarker>");
        let (_, next) = parse_page(more.as_bytes(), "k")?;
        assert_eq!(next, Some(("k".to_owned(), "u1".to_owned())));
        let past =
            page("<NextKeyMarker>l</NextKeyMarker><NextUploadIdMarker>v</NextUploadIdMarker>");
        assert_eq!(parse_page(past.as_bytes(), "k")?.1, None);
        let same =
            page("<NextKeyMarker>k</NextKeyMarker><NextUploadIdMarker></NextUploadIdMarker>");
        assert!(parse_page(same.as_bytes(), "k").is_err());
        // A page without a time is read all the same.
        let untimed = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>k</Key><UploadId>u</UploadId></Upload></ListMultipartUploadsResult>";
        assert_eq!(parse_page(untimed.as_bytes(), "k")?.0[0].initiated, None);
        // Truncated with nowhere to go on: an error, never "none open".
        assert!(parse_page(page("").as_bytes(), "k").is_err());
        Ok(())
    }
}
