//! A MariaDB server to hold Azurite's blob metadata (benchmarks at 10⁶
//! blobs). Azurite's default metadata store (LokiJS) answers a blob lookup
//! and a listing under any prefix by scanning every blob of the account:
//! seeding slows down as the container grows and stalls near 430,000
//! blobs on a 2-core machine, and each probe of a container costs a scan
//! of all of it. Over SQL (Azurite's `AZURITE_DB`) both use an index, as
//! Azure's own service does.
//!
//! Started like the other servers: 127.0.0.1, a free port, its own data
//! directory, killed by PID on drop. Needs `mariadb-server` (the
//! benchmark scripts install it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::servers::{free_port, wait_ready};

/// A running MariaDB with one empty database `azurite`; killed on drop.
#[derive(Debug)]
pub struct MariaDb {
    child: Child,
    /// `mysql://root@127.0.0.1:PORT/azurite`, for `AZURITE_DB`.
    pub url: String,
    _data: tempfile::TempDir,
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on PATH, else in the system directories Debian installs
/// MariaDB's server into (not on a normal user's PATH).
fn binary(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found: install mariadb-server"))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl MariaDb {
    /// Initialise a data directory and start the server on it.
    pub fn start() -> Result<Self> {
        let data = tempfile::tempdir()?;
        let dir = data.path().join("db");
        let socket = data.path().join("sock");
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
            .trim()
            .to_owned();
        run(
            Command::new(binary("mariadb-install-db")?)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", dir.display()))
                .args([
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    &format!("--user={user}"),
                ]),
            "mariadb-install-db",
        )?;
        let port = free_port()?;
        let mut child = Command::new(binary("mariadbd")?)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.display()))
            .arg(format!("--socket={}", socket.display()))
            .args([
                &format!("--port={port}"),
                "--bind-address=127.0.0.1",
                &format!("--user={user}"),
                "--skip-grant-tables",
                "--skip-log-bin",
                // A benchmark's scratch metadata: no fsync per commit.
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--innodb-buffer-pool-size=2G",
                "--max-connections=1000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start mariadbd")?;
        if let Err(e) = wait_ready(port, &mut child, "mariadbd") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let db = Self {
            child,
            url: format!("mysql://root@127.0.0.1:{port}/azurite"),
            _data: data,
        };
        run(
            Command::new(binary("mariadb")?)
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-e", "CREATE DATABASE azurite"]),
            "mariadb",
        )?;
        Ok(db)
    }
}
