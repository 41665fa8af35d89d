//! Test harness: real servers (Azurite, moto, s3s-fs) started on 127.0.0.1
//! with free ports and stopped by PID, the `passeur` binary, datasets, and
//! independent read-back helpers.

pub mod browser;
pub mod dataset;
pub mod faulty;
pub mod feedgen;
pub mod http1;
pub mod job;
pub mod mariadb;
pub mod meter;
pub mod netfault;
pub mod rig;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// Path of the `passeur` binary built with the workspace: next to the
/// running executable (benchmarks) or one level up (test binaries live in
/// `target/<profile>/deps`). `PASSEUR_BIN` overrides it, to run the tests
/// against another build (a regression test must fail on the commit before
/// its fix).
pub fn passeur_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PASSEUR_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("unexpected executable location")?;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let bin = d.join("passeur");
        if bin.is_file() {
            return Ok(bin);
        }
    }
    bail!(
        "passeur not built next to {}: run scripts/test.sh (cargo build --workspace --all-targets)",
        exe.display()
    )
}

/// Result of running `passeur`.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

impl Run {
    /// Capture a finished process.
    pub fn from_output(out: Output) -> Self {
        let Output {
            status,
            stdout,
            stderr,
        } = out;
        Self {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// The JSON summary line printed with `--output json`.
    pub fn summary(&self) -> Result<serde_json::Value> {
        for line in self.stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if v["event"] == "summary" {
                return Ok(v);
            }
        }
        bail!(
            "no summary in output:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        )
    }

    /// A counter from the summary's stats.
    pub fn stat(&self, name: &str) -> Result<u64> {
        self.summary()?["summary"]["stats"][name]
            .as_u64()
            .with_context(|| format!("no stat {name}"))
    }

    /// The summary of a pass that listed to its end adds up: every key
    /// listed ends as exactly one outcome, and no more bytes are done
    /// than were listed.
    pub fn outcomes_add_up(&self) -> Result<()> {
        const OUTCOMES: [&str; 8] = [
            "copied",
            "unchanged",
            "deduplicated",
            "adopted",
            "vanished",
            "failed",
            "paused",
            "would_copy",
        ];
        let mut sum = 0;
        for name in OUTCOMES {
            sum += self.stat(name)?;
        }
        let (listed, done, listed_bytes) = (
            self.stat("listed")?,
            self.stat("done_bytes")?,
            self.stat("listed_bytes")?,
        );
        anyhow::ensure!(
            sum == listed && done <= listed_bytes,
            "{listed} keys listed but {sum} outcomes, or {done} bytes done of {listed_bytes} listed: {}",
            self.summary()?["summary"]["stats"]
        );
        Ok(())
    }
}

/// A `passeur` command with a clean environment for store credentials.
pub fn passeur_command(args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(passeur_bin()?);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_")
            || k.starts_with("AZURE_")
            || k.starts_with("AZURITE_")
            || k.starts_with("GOOGLE_")
        {
            cmd.env_remove(k);
        }
    }
    Ok(cmd)
}

/// Run `passeur` with arguments, a clean environment for store credentials,
/// and extra environment variables.
pub fn passeur(args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
    let mut cmd = passeur_command(args)?;
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output()?;
    Ok(Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// `passeur sync … --output json` with an optional config file body.
pub fn sync(source: &str, target: &str, state: &Path, config: Option<&str>) -> Result<Run> {
    let cfg_dir = tempfile::tempdir()?;
    let cfg_path = cfg_dir.path().join("passeur.toml");
    let state = state.to_string_lossy().into_owned();
    let mut args = vec![
        "sync", "--source", source, "--target", target, "--state", &state, "--output", "json",
    ];
    let cfg_str;
    if let Some(c) = config {
        std::fs::write(&cfg_path, c)?;
        cfg_str = cfg_path.to_string_lossy().into_owned();
        args.extend(["--config", &cfg_str]);
    }
    passeur(&args, &[])
}

/// `b3sum` of a file, as the tool prints it.
pub fn b3sum(path: &Path) -> Result<String> {
    let out = Command::new("b3sum").arg("--no-names").arg(path).output()?;
    if !out.status.success() {
        bail!("b3sum failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A sync job from an object-store source to a local directory, with its
/// config file, state directory and target in one temporary directory, for
/// tests that run, kill and rerun the same job.
#[derive(Debug)]
pub struct LocalTargetJob {
    /// Holds config, state and target.
    pub work: tempfile::TempDir,
    /// The target directory.
    pub dst: PathBuf,
    args: Vec<String>,
}

impl LocalTargetJob {
    /// `source_url` with `source_config` as its `[source]` section.
    pub fn new(source_url: &str, source_config: &str, concurrency: usize) -> Result<Self> {
        let work = tempfile::tempdir()?;
        let cfg = work.path().join("c.toml");
        std::fs::write(&cfg, format!("[source]\n{source_config}"))?;
        let dst = work.path().join("dst");
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let args = vec![
            "sync".into(),
            "--source".into(),
            source_url.into(),
            "--target".into(),
            path(&dst),
            "--state".into(),
            path(&work.path().join("state")),
            "--config".into(),
            path(&cfg),
            "--output".into(),
            "json".into(),
            "--concurrency".into(),
            concurrency.to_string(),
        ];
        Ok(Self { work, dst, args })
    }

    /// The `passeur sync` command of this job.
    pub fn command(&self) -> Result<Command> {
        command_of(&self.args)
    }

    /// Run the job to the end.
    pub fn run(&self) -> Result<Run> {
        Ok(Run::from_output(self.command()?.output()?))
    }
}

/// `passeur` with owned arguments (the job helpers keep theirs).
pub fn command_of(args: &[String]) -> Result<Command> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    passeur_command(&args)
}

/// `passeur status --json` of the service running `cfg`; `Null` while it
/// does not answer (not started yet, or stopped).
pub fn status_json(cfg: &str) -> Result<serde_json::Value> {
    let run = passeur(&["status", "--config", cfg, "--json"], &[])?;
    if run.code != 0 {
        return Ok(serde_json::Value::Null);
    }
    Ok(serde_json::from_str(&run.stdout)?)
}

/// Wait until `f` answers true, checking every 50 ms; an error after
/// `limit` names `what`.
pub fn wait_until(
    what: &str,
    limit: std::time::Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while !f()? {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// One HTTP/1.1 GET of `path` at `addr`: the whole answer, head and body.
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
