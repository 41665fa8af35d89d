//! A pass killed (SIGKILL) during the listing of 25,000 keys resumes near
//! where it stopped: the restart lists the keys after its checkpoint first,
//! then wraps around to the keys before it (a pass is complete only once it
//! has looked at every key), reads none of the objects finished before the
//! kill again, and the target ends complete.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use passeur_tests::LocalTargetJob;
use passeur_tests::servers::{Kind, Server};

const KEYS: usize = 25_000;

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn killed_listing_resumes_near_where_it_stopped() -> Result<()> {
    let s3s = Server::start(Kind::S3sFs)?;
    // s3s-fs serves a directory tree: write the 25,000 objects as files.
    let bucket = s3s.data.path().join("src");
    for i in 0..KEYS {
        let dir = bucket.join(format!("d{:02}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(dir.join(format!("k{i:05}")), format!("object {i}\n"))?;
    }
    let job = LocalTargetJob::new(&s3s.url("src"), &s3s.config(), 64)?;
    let dst = &job.dst;

    // First run: SIGKILL once a fifth of the objects have arrived.
    let mut child = job
        .command()?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("first run ended before the kill: {status}");
        }
        if count_files(dst) >= KEYS / 5 {
            break;
        }
        ensure!(Instant::now() < deadline, "first run too slow");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    let done_before = count_files(dst);

    // Restart: continues after the saved watermark (written about once a
    // second), then around to it; what the killed run finished is unchanged.
    let run = job.run()?;
    ensure!(
        run.code == 0,
        "restart failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    let summary = run.summary()?;
    let resumed = summary["summary"]["resumed_after"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        !resumed.is_empty(),
        "restart did not resume: {}",
        run.stdout
    );
    let listed = run.stat("listed")? as usize;
    let (copied, unchanged, adopted) = (
        run.stat("copied")? as usize,
        run.stat("unchanged")? as usize,
        run.stat("adopted")? as usize,
    );
    eprintln!(
        "killed after {done_before} objects; restart resumed after {resumed:?}, listed {listed} of {KEYS} keys, copied {copied}, {unchanged} unchanged, {adopted} adopted"
    );
    ensure!(
        listed == KEYS && summary["complete"] == true,
        "the restart must list the whole key space: {listed} of {KEYS}"
    );
    // Objects written but not yet recorded at the kill (at most the 64 in
    // flight) are found at the target and compared (adopted), never
    // written twice; the rest is copied once (the slack: staging files of
    // the objects in flight, counted at the kill).
    ensure!(
        copied <= KEYS - done_before + 64 && adopted <= 64 && copied + unchanged + adopted == KEYS,
        "restart copied {copied} ({unchanged} unchanged, {adopted} adopted) after {done_before} were done"
    );
    // Every object is at the target with its bytes.
    ensure!(
        count_files(dst) == KEYS,
        "target has {} files",
        count_files(dst)
    );
    for i in (0..KEYS).step_by(997) {
        let p = dst.join(format!("d{:02}/k{i:05}", i / 1000));
        ensure!(
            std::fs::read_to_string(&p)? == format!("object {i}\n"),
            "{} differs",
            p.display()
        );
    }

    // A complete listing from the first key saves where to cut the next
    // one; the next pass lists those key ranges in parallel and must see
    // every key exactly once, in order (all unchanged).
    for pass in ["full listing", "parallel listing"] {
        let t = std::time::Instant::now();
        let run = job.run()?;
        ensure!(run.code == 0, "{pass}: {}", run.stderr);
        let (listed, unchanged) = (run.stat("listed")?, run.stat("unchanged")?);
        eprintln!(
            "{pass}: {listed} listed, {unchanged} unchanged in {:?}",
            t.elapsed()
        );
        ensure!(
            listed == KEYS as u64 && unchanged == KEYS as u64,
            "{pass}: {listed} listed, {unchanged} unchanged of {KEYS}"
        );
    }
    Ok(())
}
