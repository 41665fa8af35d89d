//! SIGINT: the pass stops taking objects, finishes those in progress, prints
//! its summary and exits 130; the next run continues after the checkpoint.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Result, ensure};
use bytes::Bytes;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur_command};

const N: usize = 1500;

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_cleanly_and_the_next_run_continues() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    let objs: Vec<Obj> = (0..N)
        .map(|i| Obj {
            key: format!("k/{i:05}"),
            data: Bytes::from(format!("object {i}")),
            content_type: None,
            meta: vec![],
        })
        .collect();
    dataset::seed(moto.client("src")?.as_ref(), &objs).await?;
    let work = tempfile::tempdir()?;
    let cfg = work.path().join("c.toml");
    std::fs::write(&cfg, format!("[source]\n{}", moto.config()))?;
    let dst = work.path().join("dst");
    let (state, cfg_s, dst_s) = (
        work.path().join("state").to_string_lossy().into_owned(),
        cfg.to_string_lossy().into_owned(),
        dst.to_string_lossy().into_owned(),
    );
    let url = moto.url("src");
    let args = [
        "sync",
        "--source",
        &url,
        "--target",
        &dst_s,
        "--state",
        &state,
        "--config",
        &cfg_s,
        "--output",
        "json",
        "--concurrency",
        "2",
    ];
    let child = passeur_command(&args)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Let it copy for a while (the checkpoint is saved about once a second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()?;
    ensure!(status.success(), "kill -INT failed");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let first = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    ensure!(first.code == 130, "exit {}: {}", first.code, first.stderr);
    let summary = first.summary()?;
    ensure!(
        summary["summary"]["interrupted"] == true,
        "{}",
        first.stdout
    );
    let copied = first.stat("copied")?;
    ensure!(
        copied > 0 && copied < N as u64,
        "copied {copied} before the stop"
    );
    ensure!(
        first.stat("failed")? == 0,
        "objects in progress must finish, not fail"
    );

    let out = passeur_command(&args)?.output()?;
    let second = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    ensure!(second.code == 0, "{}\n{}", second.stdout, second.stderr);
    ensure!(
        second.summary()?["summary"]["resumed_after"].is_string(),
        "second run did not resume: {}",
        second.stdout
    );
    ensure!(
        second.stat("listed")? < N as u64,
        "second run listed everything"
    );
    for o in &objs {
        ensure!(
            std::fs::read(dst.join(&o.key))? == o.data,
            "{} differs",
            o.key
        );
    }
    Ok(())
}
