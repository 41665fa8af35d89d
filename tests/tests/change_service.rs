//! `passeur run` following the Azure change feed: with full passes an
//! hour apart, a blob written at the source after the first full pass
//! reaches the target through a change pass (`changes-interval = "1s"`)
//! once the feed records it, and `status` and `/metrics` report the change
//! lag. A restarted service goes on following the feed without a full
//! pass first. Azurite has no change feed: the test writes the feed files.

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Duration as Hours, DurationRound, Utc};
use object_store::path::Path as OsPath;
use object_store::{ObjectStoreExt, PutPayload};
use passeur_core::feed::Cursor;
use passeur_core::manifest::Manifest;
use passeur_tests::feedgen::{FeedWriter, ev};
use passeur_tests::servers::{Kind, Server, free_port};
use passeur_tests::{http_get, passeur, passeur_command, status_json, wait_until};

/// Azurite with a source container and a change feed that has been on
/// for a while, and a service configuration (full passes an hour apart,
/// change passes every second) replicating it to a local directory.
struct Setup {
    /// Kept running for the test.
    _az: Server,
    src: std::sync::Arc<dyn object_store::ObjectStore>,
    feed: FeedWriter,
    dst: std::path::PathBuf,
    state: std::path::PathBuf,
    addr: String,
    cfg: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Result<Self> {
        let az = Server::start(Kind::Azurite)?;
        az.create_bucket("src")?;
        az.create_bucket("$blobchangefeed")?;
        let src = az.client("src")?;
        let feed = FeedWriter::new(az.client("$blobchangefeed")?)?;
        src.put(&OsPath::parse("a.txt")?, PutPayload::from_static(b"first"))
            .await?;
        // A feed that has been on for a while: an older hour, nothing
        // consumable after it yet.
        let old = Utc::now().duration_trunc(Hours::hours(1))? - Hours::hours(3);
        feed.hour(old, &[], &[]).await?;
        feed.consumable_until(old + Hours::hours(1)).await?;
        let dir = tempfile::tempdir()?;
        let dst = dir.path().join("dst");
        let state = dir.path().join("state");
        let addr = format!("127.0.0.1:{}", free_port()?);
        let cfg = dir.path().join("p.toml");
        std::fs::write(
            &cfg,
            format!(
                "state-dir = \"{}\"\nmetrics-address = \"{addr}\"\n[[job]]\nname = \"j\"\ninterval = \"1h\"\nchanges = \"azure-change-feed\"\nchanges-interval = \"1s\"\n[job.source]\nurl = \"az://src\"\n{}[job.target]\nurl = \"{}\"\n",
                state.display(),
                az.config(),
                dst.display()
            ),
        )?;
        Ok(Self {
            cfg: cfg.to_string_lossy().into_owned(),
            _az: az,
            src,
            feed,
            dst,
            state,
            addr,
            _dir: dir,
        })
    }

    fn start(&self) -> Result<Child> {
        Ok(passeur_command(&["run", "--config", &self.cfg])?
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    }

    /// The hour the feed cursor is in.
    fn cursor_hour(&self) -> Result<DateTime<Utc>> {
        let cursor: Cursor = Manifest::open_read_only(&self.state.join("j"))?
            .feed_cursor()?
            .context("the full pass anchors the feed")?;
        DateTime::from_timestamp_millis(cursor.segment_ms).context("cursor")
    }

    /// Write `key` at the source and, with `recorded`, the feed's record
    /// of it in `hour` (sequence number `seq`).
    async fn write(
        &self,
        key: &str,
        body: &'static [u8],
        recorded: Option<(DateTime<Utc>, u64)>,
    ) -> Result<()> {
        self.src
            .put(&OsPath::parse(key)?, PutPayload::from_static(body))
            .await?;
        if let Some((h, seq)) = recorded {
            self.feed
                .hour(
                    h,
                    &[vec![vec![vec![ev("BlobCreated", key, seq, h, 1)]]]],
                    &[],
                )
                .await?;
            self.feed.consumable_until(h + Hours::hours(1)).await?;
        }
        Ok(())
    }
}

/// SIGTERM, and the exit code.
fn stop(mut child: Child) -> Result<Option<i32>> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    Ok(child.wait()?.code())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_replicates_what_the_feed_names_between_full_passes() -> Result<()> {
    let s = Setup::new().await?;
    let cfg_s = s.cfg.as_str();
    let child = s.start()?;
    let result = async {
        wait_until("the first full pass", Duration::from_secs(60), || {
            Ok(status_json(cfg_s)?[0]["last_pass"]["complete"] == true)
        })?;
        ensure!(std::fs::read(s.dst.join("a.txt"))? == b"first");
        let h = s.cursor_hour()?;

        // A write at the source, and the feed's record of it.
        s.write("b/é b.txt", b"second", Some((h, 1))).await?;
        let target = s.dst.join("b").join("é b.txt");
        wait_until("the change at the target", Duration::from_secs(30), || {
            Ok(std::fs::read(&target).is_ok_and(|b| b == b"second"))
        })?;
        let mut job = serde_json::Value::Null;
        wait_until("the change pass in status", Duration::from_secs(10), || {
            job = status_json(cfg_s)?[0].clone();
            Ok(job["changes"]["last"]["copied"] == 1)
        })?;
        ensure!(
            job["totals"]["passes"] == 1,
            "no second full pass (interval 1h): {job}"
        );
        let c = &job["changes"];
        ensure!(
            c["last"]["complete"] == true
                && c["pending"] == 0
                && c["error"].is_null()
                && c["lag_s"].as_f64().is_some_and(|l| l >= 0.0),
            "{c}"
        );
        let human = passeur(&["status", "--config", cfg_s], &[])?;
        ensure!(
            human.stdout.contains("change feed: change lag")
                && human.stdout.contains("last change pass: complete"),
            "{}",
            human.stdout
        );
        let metrics = http_get(&s.addr, "/metrics")?;
        for want in [
            "passeur_change_lag_seconds{job=\"j\"} ",
            "passeur_changes_pending{job=\"j\"} 0",
            "passeur_passes_total{job=\"j\"} 1",
        ] {
            ensure!(metrics.contains(want), "{want:?} missing:\n{metrics}");
        }
        Ok(())
    }
    .await;
    let exit = stop(child)?;
    result?;
    ensure!(exit == Some(0), "exit {exit:?}");
    Ok(())
}

/// A restart (an upgrade, a reboot of the host) does not cost a full pass
/// while the feed covers the source and the last complete one is less
/// than `interval` old: at 10⁹ objects a full pass takes hours, and the
/// change passes would wait behind it. The lag is known from the start.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_service_follows_the_feed_without_a_full_pass_first() -> Result<()> {
    let s = Setup::new().await?;
    let cfg_s = s.cfg.as_str();
    let child = s.start()?;
    let first = wait_until("the first full pass", Duration::from_secs(60), || {
        Ok(status_json(cfg_s)?[0]["last_pass"]["complete"] == true)
    });
    let exit = stop(child)?;
    first?;
    ensure!(exit == Some(0), "first run: exit {exit:?}");
    let h = s.cursor_hour()?;

    // Written while the service was down: one write the feed records, one
    // it does not (only a full pass would copy that one).
    s.write("unrecorded.txt", b"only a full pass copies this", None)
        .await?;
    s.write("b.txt", b"second", Some((h, 1))).await?;
    let child = s.start()?;
    let result = async {
        wait_until("the change at the target", Duration::from_secs(30), || {
            Ok(std::fs::read(s.dst.join("b.txt")).is_ok_and(|b| b == b"second"))
        })?;
        let mut job = serde_json::Value::Null;
        wait_until("the change pass in status", Duration::from_secs(10), || {
            job = status_json(cfg_s)?[0].clone();
            Ok(!job["changes"]["last"].is_null())
        })?;
        ensure!(
            !s.dst.join("unrecorded.txt").exists(),
            "a full pass ran at the restart"
        );
        ensure!(
            job["last_pass"].is_null() && job["totals"]["passes"] == 0,
            "no full pass since the restart: {job}"
        );
        let now = chrono::Utc::now().timestamp() as f64;
        ensure!(
            job["lag_s"].as_f64().is_some_and(|l| l >= 0.0)
                && job["next_pass"].as_f64().is_some_and(|t| t > now + 1800.0),
            "the last complete full pass is known and the next is an interval after it: {job}"
        );
        Ok(())
    }
    .await;
    let exit = stop(child)?;
    result?;
    ensure!(exit == Some(0), "exit {exit:?}");

    // Another key filter selects other keys: the last complete pass says
    // nothing of them, and the restart starts with a full pass.
    let cfg = std::fs::read_to_string(cfg_s)?.replace(
        "[job.source]",
        "exclude = [\"matches-nothing/**\"]\n[job.source]",
    );
    std::fs::write(cfg_s, cfg)?;
    let child = s.start()?;
    let result = wait_until(
        "the full pass after a filter change",
        Duration::from_secs(60),
        || {
            Ok(std::fs::read(s.dst.join("unrecorded.txt"))
                .is_ok_and(|b| b == b"only a full pass copies this"))
        },
    );
    let exit = stop(child)?;
    result?;
    ensure!(exit == Some(0), "exit {exit:?}");
    Ok(())
}
