//! Real servers for the integration suite. Each is started on 127.0.0.1 at
//! a free port with its own data directory, and killed by PID on drop.
//! Their binaries come from scripts/setup.sh (paths in PASSEUR_* variables
//! or in the cache's `servers/env` file).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;

/// Credentials of the S3 test servers.
pub const S3_KEY: &str = "testing";
/// Secret of the S3 test servers.
pub const S3_SECRET: &str = "testing";

/// Kinds of server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Azure Blob emulator.
    Azurite,
    /// moto S3.
    Moto,
    /// s3s-fs S3 over a directory.
    S3sFs,
}

/// One object as the server's own SDK read it back
/// (`tests/support/sdk.py`): its raw key, the bytes read and their MD5.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SdkObject {
    /// The key as listed, byte for byte.
    pub key: String,
    /// Bytes read.
    pub size: u64,
    /// MD5 of the bytes read (lowercase hex).
    pub md5: String,
}

/// Where Azurite keeps its blob metadata.
enum Meta {
    /// LokiJS, saved to its data directory.
    Disk,
    /// LokiJS, in memory only.
    Memory,
    /// A SQL database (`AZURITE_DB`).
    Sql(String),
}

/// A running server; killed on drop.
#[derive(Debug)]
pub struct Server {
    /// What it is.
    pub kind: Kind,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    /// Its data directory.
    pub data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tool scripts/setup.sh installed (`PASSEUR_PYTHON`, …): the
/// variable if set, else what servers/env says.
pub fn tool(var: &str) -> Result<PathBuf> {
    if let Ok(v) = std::env::var(var) {
        return Ok(PathBuf::from(v));
    }
    let cache = std::env::var("PASSEUR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/passeur")
        });
    let env = std::fs::read_to_string(cache.join("servers/env"))
        .context("test servers not installed: run scripts/setup.sh (or scripts/test.sh)")?;
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .map(PathBuf::from)
        .with_context(|| format!("{var} missing from servers/env: rerun scripts/setup.sh"))
}

/// A port nobody listens on right now, and never handed out before by this
/// process: tests of one binary start servers in parallel, and the kernel
/// may give a port just released by one of them to the next (then two
/// servers race for it and one test talks to the other's server).
pub fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    bail!("no free port found")
}

pub(crate) fn wait_ready(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited during start-up: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on port {port} within 60 s")
}

impl Server {
    /// Start a server of `kind`; on a port lost to another socket before
    /// the server bound it, try again on another.
    pub fn start(kind: Kind) -> Result<Self> {
        Self::start_with(kind, false)
    }

    /// As [`Server::start`]; with `in_memory`, Azurite keeps its metadata
    /// in memory only: on disk it is one JSON document rewritten every few
    /// seconds, and seeding the 10⁶ blobs of a benchmark slows to a few
    /// hundred a second. Other kinds ignore it.
    pub fn start_with(kind: Kind, in_memory: bool) -> Result<Self> {
        Self::start_retrying(kind, &if in_memory { Meta::Memory } else { Meta::Disk })
    }

    /// Azurite with its blob metadata in `db` (see [`crate::mariadb`]);
    /// the blobs' bytes stay in its data directory.
    pub fn start_azurite_over(db: &crate::mariadb::MariaDb) -> Result<Self> {
        Self::start_retrying(Kind::Azurite, &Meta::Sql(db.url.clone()))
    }

    fn start_retrying(kind: Kind, meta: &Meta) -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(kind, meta) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{kind:?} did not start")))
    }

    fn start_once(kind: Kind, meta: &Meta) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let port = free_port()?;
        let p = port.to_string();
        let d = data.path().to_string_lossy().into_owned();
        let mut cmd = match kind {
            Kind::Azurite => {
                let mut c = Command::new(tool("PASSEUR_AZURITE")?);
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &p]).args([
                    "--silent",
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                ]);
                match meta {
                    // 10⁶ blobs' metadata fills node's default heap (about
                    // 4 GiB): Azurite then only collects garbage.
                    Meta::Memory => {
                        c.arg("--inMemoryPersistence")
                            .env("NODE_OPTIONS", "--max-old-space-size=16384");
                    }
                    Meta::Disk => {
                        c.args(["--location", &d]);
                    }
                    Meta::Sql(url) => {
                        c.args(["--location", &d]).env("AZURITE_DB", url);
                    }
                }
                c
            }
            Kind::Moto => {
                let mut c = Command::new(tool("PASSEUR_MOTO")?);
                c.args(["-H", "127.0.0.1", "-p", &p]);
                c
            }
            Kind::S3sFs => {
                let mut c = Command::new(tool("PASSEUR_S3S_FS")?);
                c.args(["--host", "127.0.0.1", "--port", &p]).args([
                    "--access-key",
                    S3_KEY,
                    "--secret-key",
                    S3_SECRET,
                    &d,
                ]);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {kind:?}"))?;
        if let Err(e) = wait_ready(port, &mut child, &format!("{kind:?}")) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Self {
            kind,
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            data,
        })
    }

    /// Create a bucket or container.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        match self.kind {
            Kind::S3sFs => Ok(std::fs::create_dir_all(self.data.path().join(name))?),
            Kind::Moto | Kind::Azurite => {
                let kind = if self.kind == Kind::Moto { "s3" } else { "az" };
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/mkbucket.py");
                let out = Command::new(tool("PASSEUR_PYTHON")?)
                    .args([script, kind, &self.endpoint, name])
                    .output()?;
                if !out.status.success() {
                    bail!("create {name}: {}", String::from_utf8_lossy(&out.stderr));
                }
                Ok(())
            }
        }
    }

    /// Put empty objects under raw keys (moto only), bypassing object_store's
    /// path rules: directory markers `dir/`, empty segments `a//b`.
    pub fn put_raw_keys(&self, bucket: &str, keys: &[&str]) -> Result<()> {
        anyhow::ensure!(self.kind == Kind::Moto, "raw keys need moto");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/mkbucket.py");
        let out = Command::new(tool("PASSEUR_PYTHON")?)
            .args([script, "s3put", &self.endpoint, bucket])
            .args(keys)
            .output()?;
        if !out.status.success() {
            bail!("put raw keys: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Put one object under a raw key with `body` as its bytes (moto or
    /// Azurite), bypassing object_store's path rules (a non-empty `photos/`).
    pub fn put_raw(&self, bucket: &str, key: &str, body: &str) -> Result<()> {
        let command = match self.kind {
            Kind::Moto => "s3putbody",
            Kind::Azurite => "azput",
            Kind::S3sFs => anyhow::bail!("raw keys need moto or Azurite"),
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/mkbucket.py");
        let out = Command::new(tool("PASSEUR_PYTHON")?)
            .args([script, command, &self.endpoint, bucket, key, body])
            .output()?;
        if !out.status.success() {
            bail!("put raw {key:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Build `bucket`'s objects from `specs` ([`spec`], [`with`]) through the server's own SDK
    /// (`tests/support/planset.py`: archive tiers, append blobs,
    /// snapshots, storage classes, multipart uploads, metadata).
    pub fn sdk_build(&self, bucket: &str, specs: &[serde_json::Value]) -> Result<()> {
        use std::io::Write as _;
        let kind = match self.kind {
            Kind::Azurite => "az",
            Kind::Moto | Kind::S3sFs => "s3",
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/planset.py");
        let mut child = Command::new(tool("PASSEUR_PYTHON")?)
            .args([script, kind, &self.endpoint, bucket])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(serde_json::to_string(specs)?.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("sdk build: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// An inventory report of `bucket` as the cloud writes one (`csv` or
    /// `parquet`), made under `out` from the server's own SDK listing
    /// (`tests/support/inventory.py`); its manifest's path.
    pub fn sdk_inventory(&self, bucket: &str, out: &Path, format: &str) -> Result<String> {
        let kind = match self.kind {
            Kind::Azurite => "az",
            Kind::Moto | Kind::S3sFs => "s3",
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/inventory.py");
        let out = Command::new(tool("PASSEUR_PYTHON")?)
            .args([script, kind, &self.endpoint, bucket])
            .arg(out)
            .arg(format)
            .output()?;
        if !out.status.success() {
            bail!("sdk inventory: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Every object of `bucket`, listed and read through the server's own
    /// SDK (boto3, azure-storage-blob), not object_store.
    pub fn sdk_read_back(&self, bucket: &str) -> Result<Vec<SdkObject>> {
        let kind = match self.kind {
            Kind::Azurite => "az",
            Kind::Moto | Kind::S3sFs => "s3",
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/sdk.py");
        let out = Command::new(tool("PASSEUR_PYTHON")?)
            .args([script, kind, &self.endpoint, bucket])
            .output()?;
        if !out.status.success() {
            bail!("sdk read-back: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)?;
                Ok(SdkObject {
                    key: v["key"].as_str().context("no key")?.to_owned(),
                    size: v["size"].as_u64().context("no size")?,
                    md5: v["md5"].as_str().context("no md5")?.to_owned(),
                })
            })
            .collect()
    }

    /// Multipart uploads open in `bucket` (moto only), as "key upload-id".
    pub fn open_uploads(&self, bucket: &str) -> Result<Vec<String>> {
        self.uploads_command("s3uploads", bucket)
    }

    /// Abort every multipart upload open in `bucket` (moto only), as an
    /// `AbortIncompleteMultipartUpload` lifecycle rule does; returns them
    /// as "key upload-id".
    pub fn abort_uploads(&self, bucket: &str) -> Result<Vec<String>> {
        self.uploads_command("s3abort", bucket)
    }

    /// Start a multipart upload of `key` in `bucket` (moto only), as
    /// another client would, with one part sent if `part`; returns it as
    /// "key upload-id".
    pub fn create_upload(&self, bucket: &str, key: &str, part: bool) -> Result<Vec<String>> {
        let command = if part { "s3createpart" } else { "s3create" };
        self.uploads_command_with(command, bucket, &[key])
    }

    fn uploads_command(&self, command: &str, bucket: &str) -> Result<Vec<String>> {
        self.uploads_command_with(command, bucket, &[])
    }

    fn uploads_command_with(
        &self,
        command: &str,
        bucket: &str,
        keys: &[&str],
    ) -> Result<Vec<String>> {
        anyhow::ensure!(self.kind == Kind::Moto, "{command} needs moto");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/mkbucket.py");
        let out = Command::new(tool("PASSEUR_PYTHON")?)
            .args([script, command, &self.endpoint, bucket])
            .args(keys)
            .output()?;
        if !out.status.success() {
            bail!("{command}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// The server's process id (its CPU time is in `/proc/PID/stat`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL passeur uses for `bucket/prefix` on this server.
    pub fn url(&self, bucket_and_prefix: &str) -> String {
        match self.kind {
            Kind::Azurite => format!("az://{bucket_and_prefix}"),
            Kind::Moto | Kind::S3sFs => format!("s3://{bucket_and_prefix}"),
        }
    }

    /// The `[source]`/`[target]` config section body for this server.
    pub fn config(&self) -> String {
        match self.kind {
            Kind::Azurite => format!(
                "endpoint = \"{}\"\nemulator = true\nallow-http = true\n",
                self.endpoint
            ),
            Kind::Moto | Kind::S3sFs => format!(
                "endpoint = \"{}\"\nallow-http = true\npath-style = true\nregion = \"us-east-1\"\naccess-key-id = \"{S3_KEY}\"\nsecret-access-key = \"{S3_SECRET}\"\n",
                self.endpoint
            ),
        }
    }

    /// The store options passeur's own config would give for this server
    /// (for engine tests that open a `Store` in-process).
    pub fn store_options(&self) -> passeur_core::stores::StoreOptions {
        use passeur_core::stores::{Secret, StoreOptions};
        match self.kind {
            Kind::Azurite => StoreOptions {
                endpoint: Some(self.endpoint.clone()),
                emulator: true,
                allow_http: true,
                ..StoreOptions::default()
            },
            Kind::Moto | Kind::S3sFs => StoreOptions {
                endpoint: Some(self.endpoint.clone()),
                allow_http: true,
                path_style: Some(true),
                region: Some("us-east-1".into()),
                access_key_id: Some(S3_KEY.into()),
                secret_access_key: Some(Secret(S3_SECRET.into())),
                ..StoreOptions::default()
            },
        }
    }

    /// An independent client for reading back and seeding a bucket.
    pub fn client(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        Ok(match self.kind {
            Kind::Azurite => Arc::new(azurite_builder(&self.endpoint, bucket).build()?),
            Kind::Moto | Kind::S3sFs => Arc::new(s3_builder(&self.endpoint, bucket).build()?),
        })
    }
}

/// An object_store client of container `container` of the Azurite at
/// `endpoint` (its development account), independent of passeur's.
pub fn azurite_builder(endpoint: &str, container: &str) -> MicrosoftAzureBuilder {
    MicrosoftAzureBuilder::new()
        .with_container_name(container)
        .with_account("devstoreaccount1")
        .with_access_key(
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        )
        .with_endpoint(format!("{endpoint}/devstoreaccount1"))
        .with_allow_http(true)
}

/// An object_store client of bucket `bucket` of the S3 server (moto,
/// s3s-fs) at `endpoint`, independent of passeur's.
pub fn s3_builder(endpoint: &str, bucket: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .with_access_key_id(S3_KEY)
        .with_secret_access_key(S3_SECRET)
}

/// One object for [`Server::sdk_build`]: `size` bytes of `fill` (equal
/// fill and size are equal content).
pub fn spec(key: &str, size: u64, fill: char) -> serde_json::Value {
    serde_json::json!({"key": key, "size": size, "fill": fill.to_string()})
}

/// `spec` with one more field (`tier`, `append`, `snapshots`, `class`,
/// `parts`, `metadata`: tests/support/planset.py).
pub fn with(
    mut spec: serde_json::Value,
    field: &str,
    value: serde_json::Value,
) -> serde_json::Value {
    spec[field] = value;
    spec
}
