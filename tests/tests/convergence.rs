//! Convergence: `passeur run` replicates Azurite → moto while a seeded
//! writer puts, overwrites, deletes and renames source objects. Once the
//! writer stops, within two passes the job with deletes enabled holds
//! exactly the source, byte for byte; the job with deletes off holds every
//! source object too and has deleted nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_tests::dataset;
use passeur_tests::passeur_command;
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn body(rng: &mut StdRng) -> Bytes {
    // Mostly small; now and then a multipart object (5 MiB parts).
    let len = if rng.random_ratio(1, 40) {
        rng.random_range(6 << 20..12 << 20)
    } else {
        rng.random_range(0..32 * 1024)
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

async fn put(store: &dyn ObjectStore, key: &str, data: &Bytes) -> Result<()> {
    store
        .put(&OsPath::parse(key)?, PutPayload::from(data.clone()))
        .await?;
    Ok(())
}

/// Passes `job` has reported as finished: the structured `pass` events of
/// the service's JSON log.
fn passes(log: &Mutex<Vec<String>>, job: &str) -> usize {
    let is_pass = |line: &String| {
        serde_json::from_str::<serde_json::Value>(line)
            .is_ok_and(|v| v["fields"]["event"] == "pass" && v["fields"]["job"] == job)
    };
    log.lock()
        .map(|l| l.iter().filter(|x| is_pass(x)).count())
        .unwrap_or(0)
}

/// Wait until `job` has logged `n` finished passes.
fn wait_passes(log: &Mutex<Vec<String>>, job: &str, n: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while passes(log, job) < n {
        ensure!(
            Instant::now() < deadline,
            "job {job}: {n} passes not reached"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_target_converges_on_a_changing_source() -> Result<()> {
    let az = Server::start(Kind::Azurite)?;
    az.create_bucket("src")?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("mirror")?;
    moto.create_bucket("keep")?;
    let src = az.client("src")?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut model: BTreeMap<String, Bytes> = BTreeMap::new();
    for i in 0..150 {
        let key = format!("data/{:02}/obj-{i:04}", i % 7);
        let data = body(&mut rng);
        put(src.as_ref(), &key, &data).await?;
        model.insert(key, data);
    }
    let mut ever: BTreeMap<String, Bytes> = model.clone();

    let work = tempfile::tempdir()?;
    let job = |name: &str, delete: bool| {
        format!(
            "[[job]]\nname = \"{name}\"\ninterval = \"1s\"\n[job.source]\nurl = \"az://src\"\n{}[job.target]\nurl = \"s3://{name}\"\n{}part-size = \"5MiB\"\n[job.delete]\nenabled = {delete}\nmax-fraction = 0.5\n",
            az.config(),
            moto.config()
        )
    };
    let cfg = work.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\nlog-format = \"json\"\n{}{}",
            work.path().join("state").display(),
            job("mirror", true),
            job("keep", false)
        ),
    )?;
    let mut child = passeur_command(&["run", "--config", &cfg.to_string_lossy()])?
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let log = Arc::clone(&log);
        let stderr = child.stderr.take().context("stderr")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                }
            }
        })
    };

    let result = async {
        // Both jobs hold the first state before it changes (on a loaded
        // machine a job's first pass could otherwise list after the
        // writer's deletes, and `keep` would have nothing to keep).
        for name in ["mirror", "keep"] {
            wait_passes(&log, name, 1, Duration::from_secs(180))?;
        }
        // The writer: 6 s of puts, overwrites, deletes and renames, while
        // passes run.
        let (mut puts, mut overwrites, mut deletes, mut renames) = (0, 0, 0, 0);
        let started = Instant::now();
        let mut n = 10_000;
        while started.elapsed() < Duration::from_secs(6) {
            let keys: Vec<String> = model.keys().cloned().collect();
            let pick = keys[rng.random_range(0..keys.len())].clone();
            match rng.random_range(0..4) {
                0 => {
                    n += 1;
                    let key = format!("data/new/obj-{n}");
                    let data = body(&mut rng);
                    put(src.as_ref(), &key, &data).await?;
                    ever.insert(key.clone(), data.clone());
                    model.insert(key, data);
                    puts += 1;
                }
                1 => {
                    let data = body(&mut rng);
                    put(src.as_ref(), &pick, &data).await?;
                    ever.insert(pick.clone(), data.clone());
                    model.insert(pick, data);
                    overwrites += 1;
                }
                2 if model.len() > 100 => {
                    src.delete(&OsPath::parse(&pick)?).await?;
                    model.remove(&pick);
                    deletes += 1;
                }
                _ => {
                    n += 1;
                    let to = format!("data/renamed/obj-{n}");
                    src.rename(&OsPath::parse(&pick)?, &OsPath::parse(&to)?).await?;
                    let data = model.remove(&pick).context("model")?;
                    ever.insert(to.clone(), data.clone());
                    model.insert(to, data);
                    renames += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "writer: {puts} puts, {overwrites} overwrites, {deletes} deletes, {renames} renames; source now {} objects",
            model.len()
        );
        // Within two passes after the writer stopped: the one running now
        // (it may have listed before the last changes) and the next.
        for name in ["mirror", "keep"] {
            let now = passes(&log, name);
            wait_passes(&log, name, now + 2, Duration::from_secs(180))?;
        }
        let want: Vec<String> = model.keys().cloned().collect();
        let mirror = moto.client("mirror")?;
        ensure!(
            dataset::keys(mirror.as_ref()).await? == want,
            "mirror keys differ from the source"
        );
        for (k, v) in &model {
            let got = mirror.get(&OsPath::parse(k)?).await?.bytes().await?;
            ensure!(got == *v, "mirror: {k} differs");
        }
        let keep = moto.client("keep")?;
        let kept = dataset::keys(keep.as_ref()).await?;
        for (k, v) in &model {
            let got = keep.get(&OsPath::parse(k)?).await?.bytes().await?;
            ensure!(got == *v, "keep: {k} differs");
        }
        for k in &kept {
            ensure!(ever.contains_key(k), "keep holds {k}, never written");
        }
        ensure!(
            kept.len() > want.len(),
            "keep should still hold deleted and renamed-away objects"
        );
        ensure!(moto.open_uploads("mirror")?.is_empty(), "uploads left open");
        anyhow::Ok(())
    }
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait()?;
    let _ = reader.join();
    let text = log.lock().map(|l| l.join("\n")).unwrap_or_default();
    result.with_context(|| format!("passeur log:\n{text}"))?;
    ensure!(status.code() == Some(0), "exit {status}");
    Ok(())
}
