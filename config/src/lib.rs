//! passeur-config: the TOML configuration, parsed once into typed values.
//!
//! Sizes take human units ("8MiB", "5MB", or a plain number of bytes);
//! durations take humantime strings ("30s", "2m"). Unknown keys are errors.
//! Secrets (S3 secret keys, Azure account keys) may live here, in a file
//! only the service user reads, or in the standard environment variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

use passeur_core::content::chunk::ChunkParams;
use passeur_core::stores::checksum::UploadChecksum;
use passeur_core::stores::limits::Provider;
use passeur_core::stores::{Secret, StoreOptions};
use passeur_core::sync::PassOptions;
use serde::Deserialize;

pub mod daemon;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is not valid configuration; the message names line, column
    /// and key.
    #[error("{}: {message}", path.display())]
    Parse {
        /// File.
        path: PathBuf,
        /// Location and problem, one line.
        message: String,
    },
    /// The file parses but describes something passeur cannot run; every
    /// problem found, one line each.
    #[error("{}: {}", path.display(), errors.join(&format!("\n{}: ", path.display())))]
    Invalid {
        /// File.
        path: PathBuf,
        /// One line per problem, each naming line, column, job and key.
        errors: Vec<String>,
    },
}

/// A byte size: an integer or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SizeRepr")]
pub struct Size(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Int(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for Size {
    type Error = String;
    fn try_from(r: SizeRepr) -> Result<Self, String> {
        match r {
            SizeRepr::Int(n) => Ok(Size(n)),
            SizeRepr::Text(s) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| Size(b.as_u64()))
                .map_err(|e| format!("invalid size {s:?}: {e}")),
        }
    }
}

/// A duration written like "30s" or "2m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Human(pub Duration);

impl TryFrom<String> for Human {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Human)
            .map_err(|e| format!("invalid duration {s:?}: {e}"))
    }
}

/// `[source]` / `[target]`: options of one store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreSection {
    /// Store URL (`passeur run` jobs; `passeur sync` takes it on the
    /// command line).
    pub url: Option<String>,
    /// Multipart limits preset: aws, scaleway, azure, gcs, generic.
    pub provider: Option<Provider>,
    /// Custom endpoint URL.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// S3 path-style requests.
    pub path_style: Option<bool>,
    /// Allow http:// endpoints.
    pub allow_http: bool,
    /// Azure: Azurite emulator.
    pub emulator: bool,
    /// S3 access key id.
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    pub secret_access_key: Option<Secret>,
    /// Azure account name.
    pub account: Option<String>,
    /// Azure account key.
    pub access_key: Option<Secret>,
    /// Retries per request.
    pub max_retries: Option<usize>,
    /// Stop retrying a request after this long.
    pub retry_timeout: Option<Human>,
    /// TCP connect timeout.
    pub connect_timeout: Option<Human>,
    /// Longest wait for bytes from the store (an answer, the next read).
    pub request_timeout: Option<Human>,
    /// Check objects read against the MD5 the source publishes (an S3
    /// ETag that is a plain MD5, an Azure blob's Content-MD5; default on).
    pub check_md5: Option<bool>,
    /// Preferred part size.
    pub part_size: Option<Size>,
    /// Most parts per object.
    pub max_parts: Option<u64>,
    /// Smallest non-last part.
    pub min_part: Option<Size>,
    /// Largest part.
    pub max_part: Option<Size>,
    /// Objects up to this size use a single PUT.
    pub multipart_threshold: Option<Size>,
    /// Cap on HTTP requests per second to this store (retries included).
    pub max_requests_per_second: Option<std::num::NonZeroU32>,
    /// Checksum every upload body carries (S3 targets): sha256, crc64nvme
    /// or none. Unset: sha256, and a single PUT of an object whose source
    /// publishes its MD5 carries that MD5 instead (Content-MD5, unsigned).
    pub upload_checksum: Option<UploadChecksum>,
    /// Sign each upload body's SHA-256 (S3 targets; default true). Set,
    /// like `upload_checksum`, it turns the Content-MD5 PUTs off.
    pub signed_payload: Option<bool>,
}

impl StoreSection {
    /// The core's view of these options.
    pub fn to_options(&self) -> StoreOptions {
        StoreOptions {
            provider: self.provider,
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            allow_http: self.allow_http,
            emulator: self.emulator,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            account: self.account.clone(),
            access_key: self.access_key.clone(),
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout.map(|h| h.0),
            connect_timeout: self.connect_timeout.map(|h| h.0),
            request_timeout: self.request_timeout.map(|h| h.0),
            check_md5: self.check_md5,
            part_size: self.part_size.map(|s| s.0),
            max_parts: self.max_parts,
            min_part: self.min_part.map(|s| s.0),
            max_part: self.max_part.map(|s| s.0),
            multipart_threshold: self.multipart_threshold.map(|s| s.0),
            max_requests_per_second: self.max_requests_per_second.map(|n| n.get()),
            upload_checksum: self.upload_checksum,
            signed_payload: self.signed_payload,
        }
    }
}

/// `[chunking]`: FastCDC sizes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChunkingSection {
    /// Smallest chunk.
    pub min: Size,
    /// Average chunk.
    pub avg: Size,
    /// Largest chunk.
    pub max: Size,
}

impl Default for ChunkingSection {
    fn default() -> Self {
        let d = ChunkParams::default();
        Self {
            min: Size(d.min.into()),
            avg: Size(d.avg.into()),
            max: Size(d.max.into()),
        }
    }
}

impl ChunkingSection {
    /// Validated chunking parameters.
    pub fn params(&self) -> Result<ChunkParams, String> {
        let u = |s: Size, what: &str| {
            u32::try_from(s.0).map_err(|_| format!("{what} {} is too large", s.0))
        };
        let p = ChunkParams {
            min: u(self.min, "min")?,
            avg: u(self.avg, "avg")?,
            max: u(self.max, "max")?,
        };
        p.validate()?;
        Ok(p)
    }
}

/// `[transfer]`: concurrency and memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TransferSection {
    /// Objects in flight.
    pub concurrency: usize,
    /// Bytes buffered at once.
    pub memory_budget: Size,
    /// Parts uploaded at once per object.
    pub parts_in_flight: usize,
    /// Cap on source bytes read per second ("50MiB" = 50 MiB/s).
    pub bandwidth_limit: Option<Size>,
    /// Key ranges of the source listed at once.
    pub listing_concurrency: usize,
}

impl Default for TransferSection {
    fn default() -> Self {
        let d = PassOptions::default();
        Self {
            concurrency: d.concurrency,
            memory_budget: Size(d.memory_budget),
            parts_in_flight: d.parts_in_flight,
            bandwidth_limit: None,
            listing_concurrency: d.listing_concurrency,
        }
    }
}

/// The configuration of `passeur sync`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyncConfig {
    /// Options of the source store.
    pub source: StoreSection,
    /// Options of the target store.
    pub target: StoreSection,
    /// Chunking.
    pub chunking: ChunkingSection,
    /// Transfer.
    pub transfer: TransferSection,
}

impl SyncConfig {
    /// Parse TOML text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: SyncConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: one_line_toml_error(&e, text),
        })?;
        cfg.chunk_params().map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message: format!("[chunking]: {message}"),
        })?;
        for (side, s) in [("source", &cfg.source), ("target", &cfg.target)] {
            if s.url.is_some() {
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    message: format!(
                        "[{side}] url: not used by `passeur sync` (give --{side}); jobs with URLs are for `passeur run`"
                    ),
                });
            }
        }
        Ok(cfg)
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read(path)?, path)
    }

    /// Validated chunking parameters.
    pub fn chunk_params(&self) -> Result<ChunkParams, String> {
        self.chunking.params()
    }

    /// Options of a pass.
    pub fn pass_options(&self, dry_run: bool) -> Result<PassOptions, String> {
        Ok(PassOptions {
            dry_run,
            ..self.transfer.pass_options(&self.chunking)?
        })
    }
}

impl TransferSection {
    /// Options of a pass with these transfer settings and `chunking`; no
    /// filter, no deletes, not a dry run.
    pub fn pass_options(&self, chunking: &ChunkingSection) -> Result<PassOptions, String> {
        Ok(PassOptions {
            concurrency: self.concurrency.max(1),
            memory_budget: self.memory_budget.0,
            parts_in_flight: self.parts_in_flight.max(1),
            listing_concurrency: self.listing_concurrency.max(1),
            bandwidth_limit: match self.bandwidth_limit {
                Some(Size(0)) => return Err("bandwidth-limit must be above 0".into()),
                b => b.map(|s| s.0),
            },
            chunking: chunking.params()?,
            ..PassOptions::default()
        })
    }
}

/// The text of a configuration file.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// toml errors span several lines (with a source excerpt); keep line,
/// column and message on one.
fn one_line_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<SyncConfig, ConfigError> {
        SyncConfig::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn parses_units_and_presets() {
        let c = parse(
            "[target]\nprovider = \"scaleway\"\npart-size = \"8MiB\"\nmax-parts = 4\nretry-timeout = \"2s\"\n[chunking]\nmin = \"64KiB\"\navg = \"256KiB\"\nmax = 1048576\n",
        )
        .expect("valid");
        let o = c.target.to_options();
        assert_eq!(o.provider, Some(Provider::Scaleway));
        assert_eq!(o.part_size, Some(8 * 1024 * 1024));
        assert_eq!(o.max_parts, Some(4));
        assert_eq!(o.retry_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.chunk_params().expect("chunks").max, 1_048_576);
        assert_eq!(o.upload_checksum, None, "default: set by the store");
        assert_eq!(o.signed_payload, None, "default: signed, set by the store");
        let c = parse("[target]\nsigned-payload = false\n").expect("signed-payload");
        assert_eq!(c.target.to_options().signed_payload, Some(false));
        for (v, want) in [
            ("sha256", UploadChecksum::Sha256),
            ("crc64nvme", UploadChecksum::Crc64Nvme),
            ("none", UploadChecksum::Off),
        ] {
            let c = parse(&format!("[target]\nupload-checksum = \"{v}\"\n")).expect(v);
            assert_eq!(c.target.to_options().upload_checksum, Some(want));
        }
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse("[target]\nendpont = \"x\"\n").expect_err("unknown key");
        let s = e.to_string();
        assert!(
            s.contains("test.toml") && s.contains("line 2") && s.contains("endpont"),
            "{s}"
        );
        assert!(!s.contains('\n'), "one line: {s}");
        let e = parse("[target]\npart-size = \"8 parsecs\"\n").expect_err("bad unit");
        assert!(e.to_string().contains("part-size") || e.to_string().contains("invalid size"));
        let e = parse("[target]\nupload-checksum = \"md5\"\n").expect_err("bad checksum");
        let s = e.to_string();
        assert!(
            s.contains("line 2") && s.contains("upload-checksum") && s.contains("md5"),
            "{s}"
        );
        assert!(!s.contains('\n'), "one line: {s}");
        let e = parse("[chunking]\nmin = 1\n").expect_err("bad chunking");
        assert!(e.to_string().contains("chunk min"), "{e}");
    }
}
