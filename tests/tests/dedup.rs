//! Object-level dedup: content already at the target under another key
//! arrives by server-side copy; only unique bytes are uploaded.

use anyhow::{Result, ensure};
use bytes::Bytes;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::passeur;
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_content_arrives_by_server_side_copy() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    let mut rng = StdRng::seed_from_u64(20);
    let mut objs = Vec::new();
    for i in 0..100 {
        let mut v = vec![0u8; 64 * 1024 + i];
        rng.fill(&mut v[..]);
        objs.push(Obj {
            key: format!("a/unique-{i:03}"),
            data: Bytes::from(v),
            content_type: Some("application/x-test".into()),
            meta: vec![("k".into(), "v".into())],
        });
    }
    // 20 % of the dataset repeats earlier content under later keys.
    for i in 0..25 {
        let mut d = objs[i * 3].clone();
        d.key = format!("b/duplicate-{i:03}");
        objs.push(d);
    }
    dataset::seed(moto.client("src")?.as_ref(), &objs).await?;
    let unique: u64 = objs[..100].iter().map(|o| o.data.len() as u64).sum();
    let dup: u64 = objs[100..].iter().map(|o| o.data.len() as u64).sum();

    let work = tempfile::tempdir()?;
    let cfg_path = work.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        format!("[source]\n{0}\n[target]\n{0}", moto.config()),
    )?;
    let state = work.path().join("state");
    // One object at a time, so every duplicate follows its original.
    let run = passeur(
        &[
            "sync",
            "--source",
            &moto.url("src"),
            "--target",
            &moto.url("dst"),
            "--state",
            &state.to_string_lossy(),
            "--config",
            &cfg_path.to_string_lossy(),
            "--output",
            "json",
            "--concurrency",
            "1",
        ],
        &[],
    )?;
    ensure!(run.code == 0, "{}\n{}", run.stdout, run.stderr);
    ensure!(run.stat("deduplicated")? == 25, "{}", run.stdout);
    ensure!(
        run.stat("bytes_written")? == unique,
        "uploaded {} want {unique}",
        run.stat("bytes_written")?
    );
    ensure!(run.stat("bytes_saved")? == dup);
    let ratio = run.summary()?["dedup_ratio"].as_f64().unwrap_or(0.0);
    ensure!(
        (ratio - (unique + dup) as f64 / unique as f64).abs() < 1e-9,
        "ratio {ratio}"
    );
    dataset::verify(
        moto.client("dst")?.as_ref(),
        &objs,
        Checks {
            attributes: true,
            guessed_type: false,
        },
        Some(&state),
    )
    .await
}
