//! Crash safety of multipart uploads: SIGKILL passeur at random moments
//! (seeded) while it copies large multipart objects and hundreds of small
//! ones from s3s-fs to moto, restarting each time. At the end the target
//! equals the source byte for byte, every manifest BLAKE3 equals the bytes'
//! BLAKE3, no multipart upload is left open, and the bytes read from the
//! source — counted by a metering proxy in front of it, not by passeur —
//! stay within the dataset plus what the kills may cost: per kill, the
//! objects in flight times their parts in flight.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SEED: u64 = 20_261_127;
const KILLS: usize = 10;
const PART: u64 = 5 * 1024 * 1024;
const CONCURRENCY: u64 = 4;
const PARTS_IN_FLIGHT: u64 = 1;

fn objects(rng: &mut StdRng) -> Vec<Obj> {
    let mut objs = Vec::new();
    let mut add = |key: String, len: u64, rng: &mut StdRng| {
        let mut v = vec![0u8; usize::try_from(len).unwrap_or(0)];
        rng.fill(&mut v[..]);
        objs.push(Obj {
            key,
            data: Bytes::from(v),
            content_type: None,
            meta: Vec::new(),
        });
    };
    // Eight full parts and a partial ninth: ≥ 8 parts each.
    for i in 0..6 {
        let len = 8 * PART + rng.random_range(1..PART);
        add(format!("big/object-{i}.bin"), len, rng);
    }
    for i in 0..300 {
        let len = rng.random_range(1..64 * 1024);
        add(format!("small/{:02}/s-{i:04}.dat", i % 13), len, rng);
    }
    objs
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_cost_at_most_the_parts_in_flight() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let objs = objects(&mut rng);
    let total: u64 = objs.iter().map(|o| o.data.len() as u64).sum();

    let s3s = Server::start(Kind::S3sFs)?;
    dataset::write_dir(&s3s.data.path().join("src"), &objs)?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let meter = Meter::start(&s3s.endpoint)?;

    let job = StoreJob::new(
        &s3s,
        &meter.endpoint,
        &moto,
        &format!("part-size = \"5MiB\"\n[transfer]\nparts-in-flight = {PARTS_IN_FLIGHT}\n"),
        CONCURRENCY as usize,
    )?;

    let mut kills = 0;
    while kills < KILLS {
        let parts = rng.random_range(1..=3);
        let extra = Duration::from_millis(rng.random_range(0..120));
        if !job.run_and_kill(parts, extra)? {
            bail!(
                "run {} finished before it could be killed: dataset too small",
                kills + 1
            );
        }
        kills += 1;
        eprintln!(
            "kill {kills} after {parts} parts + {extra:?}: {} bytes read so far",
            meter.object_bytes()
        );
        ensure!(
            moto.open_uploads("dst")?.len() <= CONCURRENCY as usize,
            "more uploads open than objects in flight"
        );
    }
    let last = job.run()?;
    ensure!(
        last.code == 0,
        "final run failed: {}\n{}",
        last.stdout,
        last.stderr
    );

    let read = meter.object_bytes();
    let allowed = total + KILLS as u64 * CONCURRENCY * PARTS_IN_FLIGHT * PART;
    eprintln!(
        "{KILLS} kills; dataset {total} bytes; read from the source {read} bytes ({:+} over the dataset, {:.1} MiB per kill); allowed {allowed}; final run resumed {} uploads, {} bytes not read again",
        read as i64 - total as i64,
        (read.saturating_sub(total)) as f64 / KILLS as f64 / 1048576.0,
        last.stat("uploads_resumed")?,
        last.stat("bytes_resumed")?,
    );
    dataset::verify(
        moto.client("dst")?.as_ref(),
        &objs,
        Checks::BYTES,
        Some(&job.state),
    )
    .await?;
    let open = moto.open_uploads("dst")?;
    ensure!(open.is_empty(), "multipart uploads left open: {open:?}");
    ensure!(
        read <= allowed,
        "read {read} bytes from the source, more than the dataset ({total}) + {KILLS} kills × {CONCURRENCY} objects × {PARTS_IN_FLIGHT} part × {PART}"
    );
    Ok(())
}
