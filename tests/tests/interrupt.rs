//! SIGINT: the pass stops taking objects, finishes those in progress, prints
//! its summary and exits 130; the next run continues after the checkpoint,
//! then wraps around to it, copying each object only once.

use anyhow::{Result, ensure};
use passeur_tests::LocalTargetJob;
use passeur_tests::dataset;
use passeur_tests::job::signal_after;
use passeur_tests::servers::{Kind, Server};

const N: usize = 1500;

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_cleanly_and_the_next_run_continues() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    let objs = dataset::numbered(|i| format!("k/{i:05}"), "object", N);
    dataset::seed(moto.client("src")?.as_ref(), &objs).await?;
    let job = LocalTargetJob::new(&moto.url("src"), &moto.config(), 2)?;
    // Stop it a third of the way in: past the first checkpoint (saved
    // about once a second, and at the stop).
    let first = tokio::task::spawn_blocking(move || {
        let cmd = job.command()?;
        signal_after(cmd, "object", N / 3, "INT").map(|r| (job, r))
    })
    .await??;
    let (job, first) = first;
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

    let second = job.run()?;
    ensure!(second.code == 0, "{}\n{}", second.stdout, second.stderr);
    ensure!(
        second.summary()?["summary"]["resumed_after"].is_string(),
        "second run did not resume: {}",
        second.stdout
    );
    let (listed, copied_again) = (second.stat("listed")?, second.stat("copied")?);
    ensure!(
        listed == N as u64 && copied + copied_again == N as u64,
        "second run listed {listed} and copied {copied_again} after {copied}"
    );
    for o in &objs {
        ensure!(
            std::fs::read(job.dst.join(&o.key))? == o.data,
            "{} differs",
            o.key
        );
    }
    Ok(())
}
