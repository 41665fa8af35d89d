//! `passeur run` following the Azure change feed: with full passes an
//! hour apart, a blob written at the source after the first full pass
//! reaches the target through a change pass (`changes-interval = "1s"`)
//! once the feed records it, and `status` and `/metrics` report the change
//! lag. Azurite has no change feed: the test writes the feed files.

use std::process::Stdio;
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

#[tokio::test(flavor = "multi_thread")]
async fn the_service_replicates_what_the_feed_names_between_full_passes() -> Result<()> {
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
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut child = passeur_command(&["run", "--config", &cfg_s])?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = async {
        wait_until("the first full pass", Duration::from_secs(60), || {
            Ok(status_json(&cfg_s)?[0]["last_pass"]["complete"] == true)
        })?;
        ensure!(std::fs::read(dst.join("a.txt"))? == b"first");
        let cursor: Cursor = Manifest::open_read_only(&state.join("j"))?
            .feed_cursor()?
            .context("the full pass anchors the feed")?;
        let h = DateTime::from_timestamp_millis(cursor.segment_ms).context("cursor")?;

        // A write at the source, and the feed's record of it.
        src.put(
            &OsPath::parse("b/é b.txt")?,
            PutPayload::from_static(b"second"),
        )
        .await?;
        feed.hour(
            h,
            &[vec![vec![vec![ev("BlobCreated", "b/é b.txt", 1, h, 1)]]]],
            &[],
        )
        .await?;
        feed.consumable_until(h + Hours::hours(1)).await?;
        let target = dst.join("b").join("é b.txt");
        wait_until("the change at the target", Duration::from_secs(30), || {
            Ok(std::fs::read(&target).is_ok_and(|b| b == b"second"))
        })?;
        let mut job = serde_json::Value::Null;
        wait_until("the change pass in status", Duration::from_secs(10), || {
            job = status_json(&cfg_s)?[0].clone();
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
        let human = passeur(&["status", "--config", &cfg_s], &[])?;
        ensure!(
            human.stdout.contains("change feed: change lag")
                && human.stdout.contains("last change pass: complete"),
            "{}",
            human.stdout
        );
        let metrics = http_get(&addr, "/metrics")?;
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
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait()?;
    result?;
    ensure!(exit.code() == Some(0), "exit {exit}");
    Ok(())
}
