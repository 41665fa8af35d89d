//! A stop request (SIGINT) during multipart uploads: each upload pauses at
//! its next part boundary with its parts recorded, the pass exits 130
//! without failures, and the next run continues the uploads — no part the
//! first run uploaded is uploaded again.

use anyhow::{Result, ensure};
use bytes::Bytes;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

const PART: usize = 5 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn stop_pauses_uploads_and_the_next_run_continues_them() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(44);
    let mut objs = Vec::new();
    for (i, len) in [(0, 9 * PART + 11), (1, 8 * PART + 5)] {
        let mut v = vec![0u8; len];
        rng.fill(&mut v[..]);
        objs.push(Obj {
            key: format!("big/{i}.bin"),
            data: Bytes::from(v),
            content_type: None,
            meta: Vec::new(),
        });
    }
    let total: u64 = objs.iter().map(|o| o.data.len() as u64).sum();
    let s3s = Server::start(Kind::S3sFs)?;
    dataset::write_dir(&s3s.data.path().join("src"), &objs)?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let job = StoreJob::new(
        &s3s,
        &s3s.endpoint,
        &moto,
        "part-size = \"5MiB\"\n[transfer]\nparts-in-flight = 1\n",
        2,
    )?;

    let first = job.run_and_signal(3, "INT")?;
    ensure!(first.code == 130, "exit {}: {}", first.code, first.stderr);
    let paused = first.stat("paused")?;
    ensure!(
        paused == 2 && first.stat("failed")? == 0,
        "paused {paused}: {}",
        first.stdout
    );
    ensure!(
        moto.open_uploads("dst")?.len() == 2,
        "paused uploads stay open for the next run"
    );

    let second = job.run()?;
    ensure!(second.code == 0, "{}\n{}", second.stdout, second.stderr);
    let (w1, w2) = (first.stat("bytes_written")?, second.stat("bytes_written")?);
    let resumed = second.stat("bytes_resumed")?;
    eprintln!(
        "first run wrote {w1} bytes and paused {paused} uploads; second continued {} uploads ({resumed} bytes not read again) and wrote {w2}; dataset {total}",
        second.stat("uploads_resumed")?
    );
    ensure!(second.stat("uploads_resumed")? == 2, "{}", second.stdout);
    // The continued uploads are counted once, not again as unchanged when
    // the listing comes to their keys.
    second.outcomes_add_up()?;
    ensure!(
        w1 + w2 == total && resumed == w1,
        "bytes written {w1} + {w2} != {total}, or resumed {resumed} != {w1}: a part was uploaded twice"
    );
    dataset::verify(
        moto.client("dst")?.as_ref(),
        &objs,
        Checks::BYTES,
        Some(&job.state),
    )
    .await?;
    ensure!(moto.open_uploads("dst")?.is_empty(), "uploads left open");
    Ok(())
}
