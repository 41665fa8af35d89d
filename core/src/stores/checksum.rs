//! Checksums of upload bodies (S3 and S3-compatible targets). With
//! `upload-checksum = "sha256"` (the default) every PUT and UploadPart
//! carries `x-amz-checksum-sha256` of its body, and a multipart upload is
//! created with `x-amz-checksum-algorithm: SHA256`; S3 checks the body
//! against it before storing anything and refuses a body changed on the way
//! (400 BadDigest), so altered bytes never become an object. object_store
//! already computes the body's SHA-256 for the SigV4 signature and reuses
//! it: the header costs no second pass over the bytes. `"crc64nvme"` sends
//! `x-amz-checksum-crc64nvme` instead; `"none"` sends no checksum header.
//!
//! `signed-payload = false` sends each body as `UNSIGNED-PAYLOAD`: no
//! SHA-256 over the bytes for the signature (a quarter of passeur's CPU on
//! large objects), the way AWS's own SDKs upload over HTTPS; the upload
//! checksum is then the body's only check, so it is refused with
//! `upload-checksum = "none"`, and an upload recorded without a checksum
//! is continued signed.
//!
//! A multipart upload keeps, until it completes, the algorithm it was
//! created with: S3 refuses an UploadPart whose checksum is of another
//! algorithm than its upload's ("Checksum Type mismatch") and a completion
//! without a checksum for every part of an upload created with one. An
//! upload recorded in the manifest and continued after the option changed
//! (or by a build that did not send checksums) must therefore go on with
//! its own algorithm. The upload id passeur records names it: the server's
//! id after `sha256:` or `crc64nvme:`, or the bare id for an upload without
//! checksums (every upload recorded before upload checksums existed). The
//! target only ever sees the bare id. [`S3Multipart`] routes each request
//! of an upload to a client with that upload's algorithm.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, PutMultipartOptions, PutPayload, PutResult};
use serde::Deserialize;

/// The checksum every upload body to an S3 target carries
/// (`upload-checksum`: `"sha256"`, `"crc64nvme"` or `"none"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum UploadChecksum {
    /// `x-amz-checksum-sha256` (the default).
    #[default]
    Sha256,
    /// `x-amz-checksum-crc64nvme`.
    Crc64Nvme,
    /// No checksum header (the SigV4 signature still covers the body's
    /// SHA-256, which a server may or may not check).
    Off,
}

impl TryFrom<String> for UploadChecksum {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "sha256" => Ok(Self::Sha256),
            "crc64nvme" => Ok(Self::Crc64Nvme),
            "none" => Ok(Self::Off),
            _ => Err(format!(
                "upload-checksum: unknown value {s:?} (sha256, crc64nvme or none)"
            )),
        }
    }
}

impl UploadChecksum {
    /// object_store's algorithm.
    pub(crate) fn algorithm(self) -> Option<Checksum> {
        match self {
            Self::Sha256 => Some(Checksum::SHA256),
            Self::Crc64Nvme => Some(Checksum::CRC64NVME),
            Self::Off => None,
        }
    }

    /// The prefix of a recorded upload id created with this checksum.
    fn tag(self) -> Option<&'static str> {
        match self {
            Self::Sha256 => Some("sha256:"),
            Self::Crc64Nvme => Some("crc64nvme:"),
            Self::Off => None,
        }
    }

    /// The id to record for an upload the server named `id`, created with
    /// this checksum.
    pub fn record_id(self, id: &str) -> MultipartId {
        match self.tag() {
            Some(t) => format!("{t}{id}"),
            None => id.to_owned(),
        }
    }

    /// A recorded upload id's checksum and the server's id.
    pub fn of_recorded(id: &str) -> (Self, &str) {
        for c in [Self::Sha256, Self::Crc64Nvme] {
            if let Some(bare) = c.tag().and_then(|t| id.strip_prefix(t)) {
                return (c, bare);
            }
        }
        (Self::Off, id)
    }
}

impl fmt::Display for UploadChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha256 => "sha256",
            Self::Crc64Nvme => "crc64nvme",
            Self::Off => "none",
        })
    }
}

/// `AmazonS3Builder::from_env` without `AWS_CHECKSUM_ALGORITHM` and
/// `AWS_UNSIGNED_PAYLOAD`: the checksum of uploads is `upload-checksum`'s
/// alone, so that the algorithm a recorded upload id names is the one its
/// parts were sent with, and whether bodies are signed is
/// `signed-payload`'s (never unsigned without a checksum).
pub(crate) fn s3_builder_from_env() -> AmazonS3Builder {
    let mut b = AmazonS3Builder::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if !k.starts_with("AWS_") {
            continue;
        }
        match k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            Ok(AmazonS3ConfigKey::Checksum | AmazonS3ConfigKey::UnsignedPayload) | Err(_) => {}
            Ok(key) => b = b.with_config(key, v),
        }
    }
    b
}

/// An S3 store's multipart API, each upload's requests sent with the
/// checksum it was created with (see the module).
pub(crate) struct S3Multipart {
    /// The checksum of new uploads.
    checksum: UploadChecksum,
    /// The store's builder without a checksum, for clients with another.
    builder: AmazonS3Builder,
    /// One client per checksum, built when first needed.
    clients: Mutex<HashMap<UploadChecksum, Arc<AmazonS3>>>,
}

impl fmt::Debug for S3Multipart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Multipart")
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

impl S3Multipart {
    /// `store`: the store built from `builder` with `checksum`.
    pub(crate) fn new(
        checksum: UploadChecksum,
        builder: AmazonS3Builder,
        store: Arc<AmazonS3>,
    ) -> Self {
        Self {
            checksum,
            builder,
            clients: Mutex::new(HashMap::from([(checksum, store)])),
        }
    }

    /// The client sending `checksum`.
    fn client(&self, checksum: UploadChecksum) -> object_store::Result<Arc<AmazonS3>> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&checksum) {
            return Ok(Arc::clone(c));
        }
        let b = self.builder.clone();
        // Without a checksum the signed payload hash is the body's only
        // check: such an upload is always signed.
        let b = match checksum.algorithm() {
            Some(a) => b.with_checksum_algorithm(a),
            None => b.with_unsigned_payload(false),
        };
        let c = Arc::new(b.build()?);
        clients.insert(checksum, Arc::clone(&c));
        Ok(c)
    }
}

#[async_trait::async_trait]
impl MultipartStore for S3Multipart {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        self.create_multipart_opts(path, PutMultipartOptions::default())
            .await
    }

    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<MultipartId> {
        let id = self
            .client(self.checksum)?
            .create_multipart_opts(path, opts)
            .await?;
        Ok(self.checksum.record_id(&id))
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        let (checksum, bare) = UploadChecksum::of_recorded(id);
        self.client(checksum)?
            .put_part(path, &bare.to_owned(), part_idx, data)
            .await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        let (checksum, bare) = UploadChecksum::of_recorded(id);
        self.client(checksum)?
            .complete_multipart(path, &bare.to_owned(), parts)
            .await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        let (checksum, bare) = UploadChecksum::of_recorded(id);
        self.client(checksum)?
            .abort_multipart(path, &bare.to_owned())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_id_names_its_checksum_and_bare_ids_have_none() {
        for c in [
            UploadChecksum::Sha256,
            UploadChecksum::Crc64Nvme,
            UploadChecksum::Off,
        ] {
            let id = c.record_id("2~Abc.def_ghi-J");
            assert_eq!(UploadChecksum::of_recorded(&id), (c, "2~Abc.def_ghi-J"));
        }
        // Ids recorded before upload checksums: sent without one.
        assert_eq!(
            UploadChecksum::of_recorded("VXBsb2FkIElE"),
            (UploadChecksum::Off, "VXBsb2FkIElE")
        );
        assert_eq!(UploadChecksum::Sha256.record_id("x"), "sha256:x");
        assert_eq!(UploadChecksum::default().to_string(), "sha256");
        for c in [
            UploadChecksum::Sha256,
            UploadChecksum::Crc64Nvme,
            UploadChecksum::Off,
        ] {
            assert_eq!(UploadChecksum::try_from(c.to_string()), Ok(c));
        }
        assert!(UploadChecksum::try_from("SHA256".to_owned()).is_err());
    }
}
