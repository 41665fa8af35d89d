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
    // Large (multipart) objects: one original, one exact duplicate, and one
    // of the same size and first chunk that differs in its last byte (a
    // dedup candidate that must diverge and be uploaded).
    let mut big = vec![0u8; 12 * 1024 * 1024];
    rng.fill(&mut big[..]);
    let mut near = big.clone();
    if let Some(last) = near.last_mut() {
        *last ^= 1;
    }
    let big = Bytes::from(big);
    let large = |key: &str, data: Bytes| Obj {
        key: key.into(),
        data,
        content_type: None,
        meta: vec![],
    };
    objs.push(large("c/large-original", big.clone()));
    objs.push(large("d/large-duplicate", big.clone()));
    objs.push(large("e/large-near-duplicate", Bytes::from(near)));
    dataset::seed(moto.client("src")?.as_ref(), &objs).await?;
    let unique: u64 =
        objs[..100].iter().map(|o| o.data.len() as u64).sum::<u64>() + 2 * big.len() as u64;
    let dup: u64 = objs[100..125]
        .iter()
        .map(|o| o.data.len() as u64)
        .sum::<u64>()
        + big.len() as u64;

    let work = tempfile::tempdir()?;
    let cfg_path = work.path().join("c.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[source]\n{0}\n[target]\n{0}part-size = \"5MiB\"\n",
            moto.config()
        ),
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
    ensure!(run.stat("deduplicated")? == 26, "{}", run.stdout);
    ensure!(
        run.stat("bytes_written")? == unique,
        "uploaded {} want {unique}",
        run.stat("bytes_written")?
    );
    ensure!(run.stat("bytes_saved")? == dup);
    // The near duplicate is read twice (once compared, once uploaded).
    let total = unique + dup;
    let read = run.stat("bytes_read")?;
    ensure!(
        read > total && read <= total + big.len() as u64,
        "read {read} of {total}"
    );
    // Chunk-level: the near duplicate shares all chunks but its last.
    let ratio = run.summary()?["dedup_ratio"].as_f64().unwrap_or(0.0);
    ensure!(ratio > total as f64 / unique as f64, "ratio {ratio}");
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
