//! A `passeur sync` job between two object-store servers, with its config
//! and state in one temporary directory, for tests that run, kill and rerun
//! the same job.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::Run;
use crate::meter::Meter;
use crate::servers::Server;

/// One job: `src` on the source server to `dst` on the target server.
#[derive(Debug)]
pub struct StoreJob {
    /// Holds config and state.
    pub work: tempfile::TempDir,
    /// The state directory.
    pub state: PathBuf,
    args: Vec<String>,
}

impl StoreJob {
    /// `source_endpoint`: where passeur reaches the source (the server
    /// itself, or a metering proxy in front of it). `extra`: more config
    /// (`[target]` lines after the server's, then other sections).
    pub fn new(
        source: &Server,
        source_endpoint: &str,
        target: &Server,
        target_extra: &str,
        concurrency: usize,
    ) -> Result<Self> {
        Self::through(
            source,
            source_endpoint,
            target,
            &target.endpoint,
            target_extra,
            concurrency,
        )
    }

    /// As [`StoreJob::new`], reaching the target at `target_endpoint` (a
    /// proxy in front of it).
    pub fn through(
        source: &Server,
        source_endpoint: &str,
        target: &Server,
        target_endpoint: &str,
        target_extra: &str,
        concurrency: usize,
    ) -> Result<Self> {
        let work = tempfile::tempdir()?;
        let cfg = work.path().join("c.toml");
        let source_cfg = source.config().replace(&source.endpoint, source_endpoint);
        let target_cfg = target.config().replace(&target.endpoint, target_endpoint);
        std::fs::write(
            &cfg,
            format!("[source]\n{source_cfg}[target]\n{target_cfg}{target_extra}"),
        )?;
        let state = work.path().join("state");
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let args = vec![
            "sync".into(),
            "--source".into(),
            source.url("src"),
            "--target".into(),
            target.url("dst"),
            "--state".into(),
            path(&state),
            "--config".into(),
            path(&cfg),
            "--output".into(),
            "json".into(),
            "--concurrency".into(),
            concurrency.to_string(),
        ];
        Ok(Self { work, state, args })
    }

    /// More `[source]` lines for every run of this job.
    pub fn with_source_config(self, lines: &str) -> Result<Self> {
        let cfg = self.work.path().join("c.toml");
        let text = std::fs::read_to_string(&cfg)?;
        let (source, target) = text.split_once("[target]\n").context("no [target]")?;
        std::fs::write(&cfg, format!("{source}{lines}[target]\n{target}"))?;
        Ok(self)
    }

    /// `passeur verify --deep` of this job's target against its state
    /// directory, reaching both stores directly (no proxy): the run and its
    /// JSON report.
    pub fn verify_deep(
        &self,
        source: &Server,
        target: &Server,
    ) -> Result<(Run, serde_json::Value)> {
        self.verify(source, target, &["--deep"])
    }

    /// `passeur verify` with `args` (`--deep`, `--full`, `--repair`…), as
    /// [`StoreJob::verify_deep`].
    pub fn verify(
        &self,
        source: &Server,
        target: &Server,
        args: &[&str],
    ) -> Result<(Run, serde_json::Value)> {
        let cfg = self.work.path().join("verify.toml");
        let report = self.work.path().join("verify-report.json");
        std::fs::write(
            &cfg,
            format!(
                "state-dir = \"{}\"\n[[job]]\nname = \"state\"\n[job.source]\nurl = \"{}\"\n{}[job.target]\nurl = \"{}\"\n{}",
                self.work.path().display(),
                self.args[2],
                source.config(),
                self.args[4],
                target.config()
            ),
        )?;
        let (c, r) = (cfg.to_string_lossy(), report.to_string_lossy());
        // A report left by an earlier verification must not pass for this one's.
        let _ = std::fs::remove_file(&report);
        let mut all = vec!["verify", "--config", &c, "--report", &r];
        all.extend_from_slice(args);
        let run = crate::passeur(&all, &[])?;
        let json = serde_json::from_str(
            &std::fs::read_to_string(&report)
                .with_context(|| format!("no report: {}\n{}", run.stderr, run.stdout))?,
        )?;
        Ok((run, json))
    }

    /// More `passeur sync` arguments for every run of this job.
    #[must_use]
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Set `passeur sync` argument `name` to `value` for the next runs
    /// (added when absent).
    pub fn set_arg(&mut self, name: &str, value: &str) {
        match self.args.iter().position(|a| a == name) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_owned(),
            _ => self.args.extend([name.to_owned(), value.to_owned()]),
        }
    }

    /// The `passeur sync` command of this job.
    pub fn command(&self) -> Result<Command> {
        crate::command_of(&self.args)
    }

    /// Run the job to the end.
    pub fn run(&self) -> Result<Run> {
        Ok(Run::from_output(self.command()?.output()?))
    }

    /// Run the job to exit 0 (`what` names it in the error); what it cost,
    /// counted by the metering proxies in front of its source and target.
    pub fn run_metered(&self, src: &Meter, dst: &Meter, what: &str) -> Result<Cost> {
        let (r0, u0) = (src.object_bytes(), dst.counts.uploads.load(Relaxed));
        let out = self.run()?;
        anyhow::ensure!(
            out.code == 0,
            "{what}: exit {}\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        Ok(Cost {
            read: src.object_bytes() - r0,
            uploads: dst.counts.uploads.load(Relaxed) - u0,
            listed: out.stat("listed")? + out.stat("excluded")?,
        })
    }

    /// Run the job and SIGKILL it `extra` after its `parts`-th recorded
    /// multipart part (the `part` event of its JSON output). Returns
    /// whether it was killed (false: it ended first).
    pub fn run_and_kill(&self, parts: usize, extra: Duration) -> Result<bool> {
        self.run_and_kill_when(parts, || {
            std::thread::sleep(extra);
            Ok(())
        })
    }

    /// Run the job and SIGKILL it once `ready` returns after its
    /// `parts`-th recorded multipart part (`ready` waits for a condition
    /// the test can see, such as a request held by a [`crate::meter::Meter`]).
    /// Returns whether it was killed (false: it ended first).
    pub fn run_and_kill_when(
        &self,
        parts: usize,
        ready: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        let mut child = self
            .command()?
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
        if wait_for_events(&mut stderr, "part", parts)? {
            let waited = ready();
            let finished = child.try_wait()?;
            if let Some(s) = finished {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
                eprintln!("ended before the kill: {s}: {rest}");
            }
            let finished = finished.is_some();
            child.kill()?;
            child.wait()?;
            waited?;
            return Ok(!finished);
        }
        let status = child.wait()?;
        eprintln!("run ended by itself: {status}");
        Ok(false)
    }

    /// Run the job, send it `signal` (`"INT"`, `"TERM"`) after its
    /// `parts`-th recorded part, and wait for it to exit.
    pub fn run_and_signal(&self, parts: usize, signal: &str) -> Result<Run> {
        self.run_and_signal_after("part", parts, signal)
    }

    /// Run the job, send it `signal` once its JSON output has shown
    /// `count` events named `event` (`"object"`: objects finished;
    /// `"part"`: parts recorded), and wait for it to exit.
    pub fn run_and_signal_after(&self, event: &str, count: usize, signal: &str) -> Result<Run> {
        signal_after(self.command()?, event, count, signal)
    }
}

/// Run `cmd` (a job with JSON output), send it `signal` (`"INT"`, `"TERM"`)
/// once its output has shown `count` events named `event`, and wait for
/// it to exit. The run's output is whole, as [`Run`] holds it.
pub fn signal_after(mut cmd: Command, event: &str, count: usize, signal: &str) -> Result<Run> {
    let event = event.to_owned();
    let mut child = cmd
        .env("PASSEUR_LOG", "passeur_core=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s).map(|_| s)
    });
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let err = std::thread::spawn(move || {
        let mut all = String::new();
        let mut seen = 0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if is_event(&line, &event) {
                seen += 1;
                if seen == count {
                    let _ = tx.send(());
                }
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv().is_ok() {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
    }
    let status = child.wait()?;
    Ok(Run {
        code: status.code().unwrap_or(-1),
        stdout: out
            .join()
            .map_err(|_| anyhow::anyhow!("stdout reader panicked"))??,
        stderr: err
            .join()
            .map_err(|_| anyhow::anyhow!("stderr reader panicked"))?,
    })
}

/// Whether `line` is a JSON event named `event`.
fn is_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == event)
}

/// Read output lines until the `count`-th JSON event named `event`;
/// false at EOF.
fn wait_for_events(stderr: &mut impl BufRead, event: &str, count: usize) -> Result<bool> {
    let mut seen = 0;
    for line in stderr.lines() {
        if is_event(&line?, event) {
            seen += 1;
            if seen == count {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// What one run cost, counted by metering proxies and its summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Object bytes read from the source.
    pub read: u64,
    /// Requests that carried object bytes to the target.
    pub uploads: u64,
    /// Names the listing returned: kept, and skipped as other shards'.
    pub listed: u64,
}
