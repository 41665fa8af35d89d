//! A single PUT to an S3 target carrying the MD5 the source published for
//! the object (`Content-MD5`), its body unsigned. The target checks the
//! body against the source's own checksum before it stores it (S3 answers
//! 400 BadDigest and stores nothing), which checks the bytes end to end,
//! source to target; with the SigV4 payload hash or an
//! `x-amz-checksum-*` header, the body's check covered only the way from
//! passeur, at the cost of a SHA-256 (or CRC) of every body on both
//! sides. object_store's `put` sends no `Content-MD5`, so this request is
//! signed and sent here, through the store's own HTTP client (its
//! request-rate cap and throttling counts), with the headers object_store
//! would send for the same attributes.
//!
//! Used only where it replaces nothing the operator asked for: neither
//! `upload-checksum` nor `signed-payload` set, and none of the S3 options
//! that add headers to object_store's PUTs (server-side encryption,
//! requester pays) nor a signature-less store ([`md5_puts_allowed`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::HttpRequest;
use object_store::{Attribute, Attributes, PutPayload, PutResult};
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use super::uploads::KEY_PATH;
use super::{RawLister, err, refusal};

/// What a PUT with the source's MD5 came to.
#[derive(Debug)]
pub enum Md5Put {
    /// Stored: the target's ETag and version.
    Stored(PutResult),
    /// Refused because the body does not hash to the MD5 sent with it
    /// (`BadDigest`, `InvalidDigest`): the server's answer.
    Refused(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    code: Option<String>,
}

/// Whether an S3 store built from `b` may send its single PUTs here: no
/// option of its configuration adds to a PUT a header this request would
/// leave out.
pub(crate) fn md5_puts_allowed(b: &AmazonS3Builder) -> bool {
    let value = |name: &str| {
        name.parse::<AmazonS3ConfigKey>()
            .ok()
            .and_then(|k| b.get_config_value(&k))
            .filter(|v| !v.is_empty())
    };
    let set = ADDING_HEADERS.iter().any(|k| value(k).is_some());
    // As object_store reads a boolean option.
    let truthy =
        |v: String| ["true", "1", "yes", "on", "y"].contains(&v.to_ascii_lowercase().as_str());
    let on = SWITCHES.iter().any(|k| value(k).is_some_and(truthy));
    !(set || on)
}

/// Options that add headers to object_store's PUTs when set: server-side
/// encryption (the SSE-C key also signs its own headers).
const ADDING_HEADERS: [&str; 4] = [
    "aws_server_side_encryption",
    "aws_sse_kms_key_id",
    "aws_sse_bucket_key_enabled",
    "aws_sse_customer_key_base64",
];

/// Switches that change object_store's PUTs when `true`: requester pays,
/// no signature at all, S3 Express session credentials.
const SWITCHES: [&str; 3] = ["aws_request_payer", "aws_skip_signature", "aws_s3_express"];

/// The headers object_store's S3 client sends for `attributes` (its
/// `with_attributes`), as `(name, value)`.
fn attribute_headers(attributes: &Attributes) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|(k, v)| {
            let name = match k {
                Attribute::CacheControl => "cache-control".to_owned(),
                Attribute::ContentDisposition => "content-disposition".to_owned(),
                Attribute::ContentEncoding => "content-encoding".to_owned(),
                Attribute::ContentLanguage => "content-language".to_owned(),
                Attribute::ContentType => "content-type".to_owned(),
                Attribute::StorageClass => "x-amz-storage-class".to_owned(),
                Attribute::Metadata(m) => format!("x-amz-meta-{m}"),
                // An attribute object_store adds later: not sent by this
                // build's object_store either (its match is exhaustive).
                _ => String::new(),
            };
            (name, v.as_ref().to_owned())
        })
        .filter(|(name, _)| !name.is_empty())
        .collect()
}

impl crate::stores::Store {
    /// This store's PUTs with the source's MD5, where it sends them.
    pub(crate) fn md5_puts(&self) -> Option<&RawLister> {
        self.raw.as_deref().filter(|r| r.puts_md5)
    }
}

impl RawLister {
    /// PUT `body` under `key` (relative to the store's prefix) with
    /// `Content-MD5: md5` and `attributes`, unsigned. Transport errors,
    /// 5xx and 429 are tried again as the store's retry settings say (as
    /// object_store's own PUT would); a digest refusal is returned as
    /// [`Md5Put::Refused`]; any other refusal is the error object_store
    /// would give for it.
    pub(crate) async fn put_md5(
        &self,
        key: &str,
        body: PutPayload,
        md5: [u8; 16],
        attributes: &Attributes,
    ) -> object_store::Result<Md5Put> {
        let full = format!("{}{key}", self.prefix);
        let url = format!("{}/{}", self.base, utf8_percent_encode(&full, KEY_PATH));
        let md5 = STANDARD.encode(md5);
        let headers = attribute_headers(attributes);
        let len = body.content_length().to_string();
        let a = self
            .exchange("PUT", Some(&self.retry), || {
                let mut r = http::Request::put(url.as_str())
                    .header(http::header::CONTENT_LENGTH, len.as_str())
                    .header("content-md5", md5.as_str());
                for (k, v) in &headers {
                    r = r.header(k.as_str(), v.as_str());
                }
                let req: HttpRequest = r
                    .body(body.clone().into())
                    .map_err(|e| err(format!("PUT {full:?}: {e}")))?;
                Ok(req)
            })
            .await?;
        let header = |name: &str| {
            a.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = a.status.as_u16();
        if a.status.is_success() {
            return Ok(Md5Put::Stored(PutResult {
                e_tag: header("etag"),
                version: header("x-amz-version-id"),
                extensions: http::Extensions::default(),
            }));
        }
        let code = quick_xml::de::from_reader::<_, ErrorBody>(a.body.as_ref())
            .ok()
            .and_then(|b| b.code);
        let why = refusal(a.status, &a.body);
        if status == 400 && matches!(code.as_deref(), Some("BadDigest" | "InvalidDigest")) {
            return Ok(Md5Put::Refused(why));
        }
        let source = format!(
            "PUT {} with the source's MD5 (Content-MD5, unsigned body): {why}; \
             upload-checksum = \"sha256\" in [target] sends every body with its signed SHA-256",
            self.base
        )
        .into();
        let path = full;
        Err(match status {
            401 => object_store::Error::Unauthenticated { path, source },
            403 => object_store::Error::PermissionDenied { path, source },
            404 => object_store::Error::NotFound { path, source },
            409 | 412 => object_store::Error::Precondition { path, source },
            _ => object_store::Error::Generic {
                store: "S3",
                source,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_go_as_object_stores_s3_headers() {
        let mut a = Attributes::new();
        a.insert(Attribute::ContentType, "text/plain".into());
        a.insert(Attribute::CacheControl, "no-cache".into());
        a.insert(Attribute::Metadata("Owner".into()), "ops".into());
        let mut h = attribute_headers(&a);
        h.sort();
        assert_eq!(
            h,
            [
                ("cache-control".to_owned(), "no-cache".to_owned()),
                ("content-type".to_owned(), "text/plain".to_owned()),
                ("x-amz-meta-Owner".to_owned(), "ops".to_owned()),
            ]
        );
    }

    #[test]
    fn encryption_and_requester_pays_keep_object_stores_put() {
        assert!(md5_puts_allowed(&AmazonS3Builder::new()));
        let off = AmazonS3Builder::new().with_config(key("aws_request_payer"), "false");
        assert!(md5_puts_allowed(&off));
        for (k, v) in [
            ("aws_server_side_encryption", "aws:kms"),
            ("aws_sse_kms_key_id", "key"),
            ("aws_sse_bucket_key_enabled", "true"),
            ("aws_sse_customer_key_base64", "a2V5"),
            ("aws_request_payer", "True"),
            ("aws_skip_signature", "true"),
            ("aws_s3_express", "true"),
        ] {
            let b = AmazonS3Builder::new().with_config(key(k), v);
            assert!(!md5_puts_allowed(&b), "{k}");
        }
    }

    fn key(name: &str) -> AmazonS3ConfigKey {
        name.parse().expect("an S3 option")
    }
}
