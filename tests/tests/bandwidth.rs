//! The bandwidth cap paces every source read, whatever the object's shape
//! and whatever the target, and never changes what is uploaded.
//!
//! A metering proxy in front of the source counts the object bytes it
//! serves, independently of passeur; each run must take at least the time
//! the cap allows for them (one second of burst, then the cap; 20 % of
//! slack). Lower bounds only: a busy machine makes a run slower, never
//! faster than its cap allows. The objects are read back from the target
//! with an independent client (or the file system) and compared with the
//! source, bytes and BLAKE3.
//!
//! Shapes: empty, small (one PUT), exactly one part, three parts and five
//! bytes (the last part unaligned). Targets: moto (resumable uploads, 5 MiB
//! parts), a local directory and Azurite (one-process multipart uploads,
//! 1 MiB parts, so many parts upload while the next is read), and a
//! resumable upload continued after a SIGKILL.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path as OsPath;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};
use rand::{Rng, SeedableRng, rngs::StdRng};

const MIB: u64 = 1024 * 1024;
/// The cap: 3 MiB/s.
const CAP: u64 = 3 * MIB;
const MIB_USIZE: usize = 1024 * 1024;

/// `[target]` and `[transfer]` lines of every run: parts of `part_mib`
/// MiB, multipart above 512 KiB, four parts in flight (parts upload while
/// the next is read), the cap.
fn extra(part_mib: usize) -> String {
    format!(
        "part-size = \"{part_mib}MiB\"\nmin-part = \"{part_mib}MiB\"\nmultipart-threshold = \"512KiB\"\n\
         [transfer]\nparts-in-flight = 4\nbandwidth-limit = \"3MiB\"\n"
    )
}

fn random(rng: &mut StdRng, key: &str, len: usize) -> Obj {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Obj {
        key: key.into(),
        data: Bytes::from(v),
        content_type: None,
        meta: Vec::new(),
    }
}

/// Every shape of object for parts of `part_mib` MiB, about 20 MiB in all:
/// with small parts, one more object of many parts (15 and 5 bytes).
fn shapes(seed: u64, part_mib: usize) -> Vec<Obj> {
    let mut rng = StdRng::seed_from_u64(seed);
    let part = part_mib * MIB_USIZE;
    let mut objs = vec![
        random(&mut rng, "shapes/empty.bin", 0),
        random(&mut rng, "shapes/small.bin", 200 * 1024 + 3),
        random(&mut rng, "shapes/one-part.bin", part),
        random(&mut rng, "shapes/unaligned.bin", 3 * part + 5),
    ];
    if part_mib < 5 {
        objs.push(random(&mut rng, "shapes/many-parts.bin", 15 * part + 5));
    }
    objs
}

/// The run read `bytes` (counted by the proxy) in `took`: no faster than
/// the cap allows.
fn check_pace(what: &str, bytes: u64, took: Duration, meter: &Meter) -> Result<()> {
    let floor = Duration::from_secs_f64(bytes.saturating_sub(CAP) as f64 / CAP as f64 * 0.8);
    let window = meter.window().unwrap_or_default();
    eprintln!(
        "{what}: {bytes} bytes read in {took:.2?} ({:.2} MiB/s; at the source from first to last byte {window:.2?}, {:.2} MiB/s); cap 3 MiB/s, floor {floor:.2?}",
        bytes as f64 / MIB as f64 / took.as_secs_f64(),
        bytes as f64 / MIB as f64 / window.as_secs_f64().max(1e-3),
    );
    ensure!(
        took >= floor,
        "{what}: {bytes} bytes read in {took:.2?}, faster than a 3 MiB/s cap allows (at least {floor:.2?})"
    );
    Ok(())
}

/// Where the objects go.
enum Target<'a> {
    Store(&'a Server),
    Dir(&'a Path),
}

impl Target<'_> {
    /// The object at `key`, read back independently of passeur.
    async fn read(&self, key: &str) -> Result<Bytes> {
        match self {
            Target::Store(s) => Ok(s
                .client("dst")?
                .get(&OsPath::parse(key)?)
                .await
                .with_context(|| format!("get {key}"))?
                .bytes()
                .await?),
            Target::Dir(d) => Ok(std::fs::read(d.join(key))
                .with_context(|| format!("read {key}"))?
                .into()),
        }
    }
}

/// The target holds exactly `objs`: same bytes, same BLAKE3.
async fn check_target(what: &str, target: &Target<'_>, objs: &[Obj]) -> Result<()> {
    if let Target::Store(s) = target {
        let keys = dataset::keys(s.client("dst")?.as_ref()).await?;
        let mut want: Vec<String> = objs.iter().map(|o| o.key.clone()).collect();
        want.sort();
        ensure!(keys == want, "{what}: target keys {keys:?}, want {want:?}");
    }
    for o in objs {
        let got = target.read(&o.key).await?;
        ensure!(
            blake3::hash(&got) == blake3::hash(&o.data),
            "{what}: {}: BLAKE3 {} ({} bytes) at the target, {} ({} bytes) at the source",
            o.key,
            blake3::hash(&got),
            got.len(),
            blake3::hash(&o.data),
            o.data.len()
        );
        ensure!(got == o.data, "{what}: {}: bytes differ", o.key);
    }
    Ok(())
}

/// A moto source holding `objs`, behind a metering proxy.
async fn source(objs: &[Obj]) -> Result<(Server, Meter)> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    dataset::seed(moto.client("src")?.as_ref(), objs).await?;
    let meter = Meter::start(&moto.endpoint)?;
    Ok((moto, meter))
}

/// Every shape from a metered moto source to `kind` (a local directory if
/// `None`) under the cap, with parts of `part_mib` MiB.
async fn every_shape(kind: Option<Kind>, part_mib: usize, seed: u64) -> Result<()> {
    let objs = shapes(seed, part_mib);
    let total: u64 = objs.iter().map(|o| o.data.len() as u64).sum();
    let (moto, meter) = source(&objs).await?;
    let work = tempfile::tempdir()?;
    let dir = work.path().join("dst");
    let other;
    let (target, url, section) = match kind {
        None => (
            Target::Dir(&dir),
            dir.to_string_lossy().into_owned(),
            String::new(),
        ),
        Some(k) => {
            let server = if k == Kind::Moto {
                // One moto serves both buckets.
                &moto
            } else {
                other = Server::start(k)?;
                &other
            };
            server.create_bucket("dst")?;
            (Target::Store(server), server.url("dst"), server.config())
        }
    };
    let what = match kind {
        Some(k) => format!("{k:?} target, {part_mib} MiB parts"),
        None => format!("directory target, {part_mib} MiB parts"),
    };
    let source_cfg = moto.config().replace(&moto.endpoint, &meter.endpoint);
    let cfg = format!(
        "[source]\n{source_cfg}[target]\n{section}{}",
        extra(part_mib)
    );
    let t = Instant::now();
    let run = passeur_tests::sync(
        &moto.url("src"),
        &url,
        &work.path().join("state"),
        Some(&cfg),
    )?;
    let took = t.elapsed();
    ensure!(
        run.code == 0,
        "{what}: exit {}: {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let read = meter.object_bytes();
    ensure!(
        read >= total,
        "{what}: the proxy saw {read} object bytes, the source holds {total}"
    );
    check_pace(&what, read, took, &meter)?;
    check_target(&what, &target, &objs).await
}

#[tokio::test(flavor = "multi_thread")]
async fn cap_paces_every_shape_to_moto() -> Result<()> {
    // moto refuses parts under 5 MiB but the last.
    every_shape(Some(Kind::Moto), 5, 111).await
}

#[tokio::test(flavor = "multi_thread")]
async fn cap_paces_every_shape_to_a_directory() -> Result<()> {
    every_shape(None, 1, 112).await
}

#[tokio::test(flavor = "multi_thread")]
async fn cap_paces_every_shape_to_azurite() -> Result<()> {
    every_shape(Some(Kind::Azurite), 1, 113).await
}

/// A resumable upload killed after its first part and continued under the
/// cap: the resumed ranged reads are paced too.
#[tokio::test(flavor = "multi_thread")]
async fn cap_paces_a_resumed_upload() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(114);
    let objs = vec![random(&mut rng, "resume/big.bin", 4 * 5 * MIB_USIZE + 5)];
    let total = objs[0].data.len() as u64;
    let (moto, meter) = source(&objs).await?;
    moto.create_bucket("dst")?;
    let job = StoreJob::new(&moto, &meter.endpoint, &moto, &extra(5), 1)?;
    // The HEAD before completion waits: the first run cannot complete.
    meter.hold_heads(true);
    ensure!(
        job.run_and_kill(1, Duration::ZERO)?,
        "first run ended before the kill"
    );
    meter.hold_heads(false);
    // Let the killed run's last responses drain through the proxy.
    meter.wait_idle(Duration::from_secs(30))?;
    ensure!(
        moto.open_uploads("dst")?.len() == 1,
        "no upload left open by the killed run"
    );
    let before = meter.object_bytes();
    meter.reset_window();
    let t = Instant::now();
    let run = job.run()?;
    let took = t.elapsed();
    ensure!(
        run.code == 0,
        "resumed run: exit {}: {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let read = meter.object_bytes() - before;
    eprintln!(
        "resumed run: {} bytes resumed, {} uploads resumed",
        run.stat("bytes_resumed")?,
        run.stat("uploads_resumed")?
    );
    ensure!(
        read < total && read > 0,
        "resumed run read {read} of {total} bytes: not a resume"
    );
    check_pace("resumed upload", read, took, &meter)?;
    check_target("resumed upload", &Target::Store(&moto), &objs).await?;
    let open = moto.open_uploads("dst")?;
    ensure!(open.is_empty(), "uploads left open: {open:?}");
    Ok(())
}

/// A part read that the cap paces over longer than `request-timeout` keeps
/// moving, so it is not cut: a deadline on the whole request would cut it,
/// and every retry of it, and the object would never go up. One 5 MiB part
/// and a 3-byte one, read one at a time under a 1 MiB/s cap (about 4 s for
/// the first part after the burst), with a 1 s request timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_paced_read_longer_than_the_request_timeout_is_not_cut() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(115);
    let objs = vec![random(&mut rng, "slow/two-parts.bin", 5 * MIB_USIZE + 3)];
    let (moto, meter) = source(&objs).await?;
    moto.create_bucket("dst")?;
    let transfer = extra(5)
        .replace("parts-in-flight = 4", "parts-in-flight = 1")
        .replace("bandwidth-limit = \"3MiB\"", "bandwidth-limit = \"1MiB\"");
    let job = StoreJob::new(&moto, &meter.endpoint, &moto, &transfer, 1)?
        .with_source_config("request-timeout = \"1s\"\nmax-retries = 2\n")?;
    let t = Instant::now();
    let run = job.run()?;
    let took = t.elapsed();
    ensure!(
        run.code == 0,
        "exit {} after {took:.2?}: {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    ensure!(
        took >= Duration::from_secs(3),
        "took {took:.2?}: the cap did not pace the read past the timeout, the test shows nothing"
    );
    check_target("paced past the timeout", &Target::Store(&moto), &objs).await
}
