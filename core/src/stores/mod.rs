//! Store URLs → `Arc<dyn ObjectStore>` scoped to the URL's prefix, with the
//! target's part policy. Credentials come from the environment (the standard
//! AWS_* / AZURE_* / GOOGLE_* variables object_store reads) or from options
//! loaded from a config file; never from the command line, never printed.

pub mod body;
mod build;
pub mod checksum;
pub mod dirlist;
pub mod durable;
pub mod fileio;
pub mod limits;
pub mod probe;
pub mod rawlist;
pub mod throttle;
mod unnamed;
pub mod window;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, PutOptions, PutPayload, PutResult};
use serde::Deserialize;

use crate::base::error::Error;
use crate::stores::checksum::UploadChecksum;
pub use crate::stores::dirlist::Staging;
use crate::stores::durable::Durability;
pub use crate::stores::durable::LocalDir;
use crate::stores::limits::{PartPolicy, Provider};
use crate::stores::rawlist::RawLister;
use crate::stores::throttle::{Connector, Pressure};

pub use build::DEFAULT_REQUEST_TIMEOUT;
use build::{azure, client, policy, retry, s3};

/// A secret string: deserializes normally, never shows in Debug output.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Options of one store; every field optional, environment fills the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreOptions {
    /// Multipart limits preset.
    pub provider: Option<Provider>,
    /// Custom endpoint (S3-compatible providers, Azurite, …).
    pub endpoint: Option<String>,
    /// Region (S3).
    pub region: Option<String>,
    /// Path-style requests instead of virtual-hosted (S3).
    pub path_style: Option<bool>,
    /// Allow plain HTTP endpoints (off unless asked).
    pub allow_http: bool,
    /// Azure: talk to the Azurite emulator with its well-known account.
    pub emulator: bool,
    /// S3 access key id.
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    pub secret_access_key: Option<Secret>,
    /// Azure storage account.
    pub account: Option<String>,
    /// Azure storage account key.
    pub access_key: Option<Secret>,
    /// Retries of one request (object_store default 10).
    pub max_retries: Option<usize>,
    /// Give up retrying a request after this long (default 3 min).
    pub retry_timeout: Option<Duration>,
    /// TCP connect timeout.
    pub connect_timeout: Option<Duration>,
    /// The longest wait for bytes from the store (default 30 s): for the
    /// answer to a request, its body sent, and between two reads of an
    /// answer's body. A slow transfer that keeps moving is never cut.
    pub request_timeout: Option<Duration>,
    /// Check objects read against the MD5 the source publishes (S3 MD5
    /// ETag, Azure Content-MD5; default on).
    pub check_md5: Option<bool>,
    /// Overrides of the provider's part policy.
    pub part_size: Option<u64>,
    /// Override: most parts per object.
    pub max_parts: Option<u64>,
    /// Override: smallest non-last part.
    pub min_part: Option<u64>,
    /// Override: largest part.
    pub max_part: Option<u64>,
    /// Override: objects up to this size use one PUT.
    pub multipart_threshold: Option<u64>,
    /// Cap on HTTP requests per second to this store (retries included).
    pub max_requests_per_second: Option<u32>,
    /// The checksum every upload body carries (S3). Unset: SHA-256, or the
    /// source's MD5 on a single PUT when it has one (`rawlist/put.rs`).
    pub upload_checksum: Option<UploadChecksum>,
    /// Sign each upload body's SHA-256 (S3, SigV4; default on). Off, the
    /// body is sent as `UNSIGNED-PAYLOAD` and the upload checksum alone
    /// covers it (see [`checksum`]).
    pub signed_payload: Option<bool>,
}

/// What kind of store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Local directory.
    Local,
    /// S3 or S3-compatible.
    S3,
    /// Azure Blob Storage.
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

/// A store ready to use, scoped to its URL's prefix.
#[derive(Debug, Clone)]
pub struct Store {
    /// The URL, for messages (never holds credentials).
    pub url: String,
    /// Kind of backend.
    pub kind: StoreKind,
    /// The store, keys relative to the URL's prefix.
    pub inner: Arc<dyn ObjectStore>,
    /// How objects written here are cut into parts.
    pub policy: PartPolicy,
    /// The low-level multipart API, when the store has one that keeps
    /// object attributes: uploads through it survive restarts.
    pub multipart: Option<Multipart>,
    /// Throttling answers this store gave (object stores; local directories
    /// never throttle).
    pub pressure: Arc<Pressure>,
    /// Whether listing after a key is done by the server (S3 start-after,
    /// GCS startOffset, Azure startFrom; not Azurite, which object_store
    /// filters client-side): parallel range listing pays off.
    pub seeks: bool,
    /// A local directory's files are made durable before they are
    /// recorded.
    pub local: Option<Arc<Durability>>,
    /// The store's own list requests (S3, Azure): keys byte for byte.
    pub raw: Option<Arc<RawLister>>,
    /// Objects read are checked against the MD5 the store publishes: an
    /// S3 ETag that is a plain MD5 (objects not uploaded in parts), an
    /// Azure blob's Content-MD5 (`check-md5`, default on; off for buckets
    /// encrypted with SSE-KMS or SSE-C, whose ETags are not MD5s).
    pub check_md5: bool,
    /// When this store (and its clones) last answered a probe.
    pub probed: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// A store's low-level multipart API (upload ids and part ids that a new
/// process can continue with), addressed with the store's relative keys.
#[derive(Clone)]
pub struct Multipart {
    store: Arc<dyn MultipartStore>,
    prefix: Option<Path>,
}

impl fmt::Debug for Multipart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multipart")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Multipart {
    /// The API itself.
    pub fn api(&self) -> &dyn MultipartStore {
        self.store.as_ref()
    }

    /// The full path of a key relative to the store URL.
    pub fn path(&self, loc: &Path) -> Path {
        match &self.prefix {
            None => loc.clone(),
            Some(p) => Path::from_iter(p.parts().chain(loc.parts())),
        }
    }
}

impl Store {
    /// Whether listings come in key order (so a listing can resume after a
    /// key). Local directories list in directory order.
    pub fn lists_in_order(&self) -> bool {
        self.kind != StoreKind::Local
    }

    /// Every object: a local directory's own walk ([`dirlist`], in walk
    /// order), else object_store's listing. `staging`: what to do with a
    /// local file named like object_store's staging files (`name#123`).
    pub fn list_all(
        &self,
        staging: Staging,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        match &self.local {
            Some(d) => d.lister().list(staging),
            None => self.inner.list(None),
        }
    }

    /// Whether object attributes (Content-Type, metadata…) can be stored.
    pub fn supports_attributes(&self) -> bool {
        self.kind != StoreKind::Local
    }

    /// A store around any object_store implementation (object_store's
    /// `InMemory`, a wrapper that injects faults…), behaving as an object
    /// store: it lists in key order and keeps attributes. `multipart`: its
    /// low-level multipart API, for uploads that survive restarts. For
    /// running the engine in-process; the binary opens stores by URL.
    pub fn in_process(
        name: &str,
        inner: Arc<dyn ObjectStore>,
        policy: PartPolicy,
        multipart: Option<Arc<dyn MultipartStore>>,
    ) -> Self {
        Self {
            url: name.to_owned(),
            kind: StoreKind::S3,
            inner,
            policy,
            multipart: multipart.map(|store| Multipart {
                store,
                prefix: None,
            }),
            pressure: Arc::default(),
            seeks: false,
            check_md5: false,
            local: None,
            raw: None,
            probed: Arc::default(),
        }
    }

    /// Build a store from a URL. `dir`: what to do when a local directory
    /// does not exist.
    pub fn open(url: &str, opts: &StoreOptions, dir: LocalDir) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        type Parts = (
            StoreKind,
            Arc<dyn ObjectStore>,
            Option<Arc<dyn MultipartStore>>,
            String,
            String,
        );
        let mut local_fs = None;
        let mut raw = None;
        let pressure = Arc::new(Pressure::default());
        let connector = || Connector::new(opts.max_requests_per_second, Arc::clone(&pressure));
        let (kind, base, multipart, prefix, url): Parts = match url.split_once("://") {
            None => {
                let (store, fs, name) = durable::open(std::path::Path::new(url), dir)?;
                local_fs = fs;
                (StoreKind::Local, store, None, String::new(), name)
            }
            Some(("file", _)) => {
                let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
                let path = parsed
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute file path"))?;
                let (store, fs, name) = durable::open(&path, dir)?;
                local_fs = fs;
                (StoreKind::Local, store, None, String::new(), name)
            }
            Some((scheme @ ("s3" | "az" | "azure" | "gs"), rest)) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("missing bucket or container name"));
                }
                // Azure's MultipartStore commits the block list without
                // the object's attributes (Content-Type, metadata), so
                // Azure targets keep the in-process multipart upload.
                let (kind, store, multipart): (_, Arc<dyn ObjectStore>, _) = match scheme {
                    "s3" => {
                        let (s, mp, r) = s3(bucket, opts, connector())?;
                        raw = Some(r);
                        (
                            StoreKind::S3,
                            s as Arc<dyn ObjectStore>,
                            Some(Arc::new(mp) as Arc<dyn MultipartStore>),
                        )
                    }
                    "gs" => {
                        let s = Arc::new(
                            GoogleCloudStorageBuilder::from_env()
                                .with_bucket_name(bucket)
                                .with_retry(retry(opts))
                                .with_client_options(client(opts))
                                .with_http_connector(connector())
                                .build()
                                .map_err(|e| invalid(&crate::base::error::error_chain(&e)))?,
                        );
                        (
                            StoreKind::Gcs,
                            s.clone(),
                            Some(s as Arc<dyn MultipartStore>),
                        )
                    }
                    _ => {
                        let (s, r) = azure(bucket, opts, connector().noting_content_md5())?;
                        raw = Some(r);
                        (StoreKind::Azure, Arc::new(s), None)
                    }
                };
                let prefix = prefix.trim_matches('/').to_owned();
                (kind, store, multipart, prefix, url.to_owned())
            }
            Some((scheme, _)) => {
                return Err(invalid(&format!(
                    "unknown scheme {scheme:?} (use a path, file://, s3://, az:// or gs://)"
                )));
            }
        };
        let (inner, prefix): (Arc<dyn ObjectStore>, _) = if prefix.is_empty() {
            (base, None)
        } else {
            // The prefix is taken as written (not percent-decoded), like rclone.
            let p = Path::parse(&prefix).map_err(|e| invalid(&e.to_string()))?;
            (Arc::new(PrefixStore::new(base, p.clone())), Some(p))
        };
        let raw_prefix = prefix.as_ref().map(|p| format!("{p}/"));
        let multipart = multipart.map(|store| Multipart { store, prefix });
        let default_provider = match kind {
            StoreKind::Azure => Provider::Azure,
            StoreKind::Gcs => Provider::Gcs,
            StoreKind::S3 | StoreKind::Local => Provider::Generic,
        };
        let policy = policy(opts.provider.unwrap_or(default_provider), opts)?;
        Ok(Self {
            url,
            kind,
            inner,
            policy,
            multipart,
            pressure,
            seeks: kind != StoreKind::Local && !(kind == StoreKind::Azure && opts.emulator),
            check_md5: matches!(kind, StoreKind::S3 | StoreKind::Azure)
                && opts.check_md5.unwrap_or(true),
            local: local_fs,
            raw: raw.map(|mut r| {
                r.prefix = raw_prefix.unwrap_or_default();
                Arc::new(r)
            }),
            probed: Arc::default(),
        })
    }

    /// Write a whole object held in memory: a new file in a local
    /// directory through an unnamed file linked once complete (see
    /// [`unnamed`]), anything else with the store's own `put`.
    pub async fn put(
        &self,
        key: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        match &self.local {
            Some(d) => d.put(key, payload, opts).await,
            None => self.inner.put_opts(key, payload, opts).await,
        }
    }

    /// Make an object just written durable before it is recorded: a local
    /// directory's file and its directory entry reach the disk (see
    /// [`durable`]); object stores acknowledge only what they stored
    /// durably.
    pub async fn make_durable(&self, key: &Path) -> Result<(), Error> {
        match &self.local {
            Some(d) => d.make_durable(key).await,
            None => Ok(()),
        }
    }
}
