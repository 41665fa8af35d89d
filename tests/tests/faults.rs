//! Network faults, seeded: a proxy in front of the source and one in front
//! of the target break a share of the requests (resets in the middle of a
//! request or an answer, stalls past the client's timeout, answers cut
//! short under their Content-Length, 500 / 503 / 429 with the store's own
//! error body). passeur runs pass after pass until one exits 0, within a
//! bound; then, with the faults off, the target is read back independently
//! and compared with the source byte for byte, no multipart upload is left
//! open (moto), and `passeur verify --deep` exits 0 with equal roots.
//!
//! Every scenario prints its seed; `PASSEUR_FAULT_SEED=N` runs it again
//! with that seed (which requests break follows from the seed and the
//! requests, not from their order: see `passeur_tests::netfault`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::netfault::{Dialect, Kind as Fault, NetFaults};
use passeur_tests::servers::{Kind, Server};

/// Where the faults are.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
    Both,
}

struct Scenario {
    name: &'static str,
    seed: u64,
    source: Kind,
    target: Kind,
    side: Side,
    /// Share of requests broken on each faulty side.
    rate: f64,
    faults: &'static [Fault],
    /// Small objects besides the object shapes (empty, one part ±1 byte,
    /// unaligned multipart, awkward keys).
    small: usize,
    /// Passes allowed before one must exit 0.
    max_passes: usize,
    /// Objects above this size are left out of the dataset.
    max_size: usize,
}

impl Scenario {
    fn new(name: &'static str, seed: u64, source: Kind, target: Kind) -> Self {
        Self {
            name,
            seed,
            source,
            target,
            side: Side::Both,
            rate: 0.1,
            faults: &Fault::ALL,
            small: 60,
            max_passes: 6,
            max_size: 20 << 20,
        }
    }

    fn on(mut self, side: Side, rate: f64, faults: &'static [Fault]) -> Self {
        self.side = side;
        self.rate = rate;
        self.faults = faults;
        self
    }
}

fn dialect(k: Kind) -> Dialect {
    match k {
        Kind::Azurite => Dialect::Azure,
        Kind::Moto | Kind::S3sFs => Dialect::S3,
    }
}

/// The seed: `PASSEUR_FAULT_SEED` if set, else the scenario's.
fn seed_of(default: u64) -> u64 {
    std::env::var("PASSEUR_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Client settings of both stores: a stall is given up on after 2 s (the
/// proxy stalls for 4 s), and a broken request is retried quickly.
const CLIENT: &str = "request-timeout = \"2s\"\nmax-retries = 4\nretry-timeout = \"30s\"\n";

async fn run(sc: Scenario) -> Result<()> {
    let seed = seed_of(sc.seed);
    eprintln!(
        "{}: seed {seed} (PASSEUR_FAULT_SEED={seed} to run it again)",
        sc.name
    );
    let source = Server::start(sc.source)?;
    source.create_bucket("src")?;
    let target = Server::start(sc.target)?;
    target.create_bucket("dst")?;
    let objs: Vec<Obj> = dataset::standard(seed, sc.small)
        .into_iter()
        .filter(|o| o.data.len() <= sc.max_size)
        .collect();
    dataset::seed(source.client("src")?.as_ref(), &objs).await?;
    let src_proxy = Meter::start(&source.endpoint)?;
    let dst_proxy = Meter::start(&target.endpoint)?;
    let breaks = |k: Kind, salt: u64| {
        NetFaults::new(seed ^ salt, sc.rate, sc.faults, dialect(k))
            .stall_for(Duration::from_secs(4))
    };
    let src_faults = matches!(sc.side, Side::Source | Side::Both)
        .then(|| src_proxy.break_requests(Some(breaks(sc.source, 1))))
        .flatten();
    let dst_faults = matches!(sc.side, Side::Target | Side::Both)
        .then(|| dst_proxy.break_requests(Some(breaks(sc.target, 2))))
        .flatten();
    let job = StoreJob::through(
        &source,
        &src_proxy.endpoint,
        &target,
        &dst_proxy.endpoint,
        &format!("{CLIENT}part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n"),
        8,
    )?
    .with_source_config(CLIENT)?;
    let started = Instant::now();
    let mut passes = 0;
    let last = loop {
        passes += 1;
        let r = job.run()?;
        let s = r.summary().ok();
        eprintln!(
            "{}: pass {passes}: exit {}, copied {:?}, failed {:?}, by kind {}",
            sc.name,
            r.code,
            r.stat("copied").ok(),
            r.stat("failed").ok(),
            s.as_ref()
                .map_or(String::new(), |s| s["summary"]["failed_by_kind"]
                    .to_string())
        );
        ensure!(
            !r.stderr.contains("panicked"),
            "{}: seed {seed}: panic\n{}",
            sc.name,
            r.stderr
        );
        ensure!(
            r.code == 0 || r.code == 1,
            "{}: seed {seed}: pass {passes} exit {} (only 0 or 1 may follow faults)\n{}",
            sc.name,
            r.code,
            r.stderr
        );
        if r.code == 0 || passes == sc.max_passes {
            break r;
        }
    };
    let injected =
        |f: &Option<Arc<NetFaults>>| f.as_ref().map(|f| f.injected()).unwrap_or_default();
    eprintln!(
        "{}: seed {seed}: {passes} passes in {:.1?}; injected at the source {:?}, at the target {:?}",
        sc.name,
        started.elapsed(),
        injected(&src_faults),
        injected(&dst_faults)
    );
    ensure!(
        last.code == 0,
        "{}: seed {seed}: no clean pass in {passes}\n{}",
        sc.name,
        last.stdout
    );
    let total =
        src_faults.as_ref().map_or(0, |f| f.total()) + dst_faults.as_ref().map_or(0, |f| f.total());
    ensure!(
        total > 0,
        "{}: seed {seed}: no fault was injected: the scenario tests nothing",
        sc.name
    );
    src_proxy.break_requests(None);
    dst_proxy.break_requests(None);

    // Independent checks, faults off.
    dataset::verify(target.client("dst")?.as_ref(), &objs, Checks::BYTES, None).await?;
    if sc.target == Kind::Moto {
        let open = target.open_uploads("dst")?;
        ensure!(
            open.is_empty(),
            "{}: seed {seed}: uploads left open: {open:?}",
            sc.name
        );
    }
    let (v, report) = job.verify_deep(&source, &target)?;
    ensure!(
        v.code == 0 && report["verified"] == true,
        "{}: seed {seed}: verify --deep exit {}: {}\n{}",
        sc.name,
        v.code,
        v.stdout,
        v.stderr
    );
    let ver = &report["verification"];
    ensure!(
        ver["manifest_root"] == ver["found_root"] && ver["deep_checked"] == objs.len() as u64,
        "{}: {ver}",
        sc.name
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn source_answers_cut_by_resets() -> Result<()> {
    run(
        Scenario::new("source-resets", 1201, Kind::Moto, Kind::Moto).on(
            Side::Source,
            0.2,
            &[Fault::ResetResponse],
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn target_requests_cut_by_resets() -> Result<()> {
    run(
        Scenario::new("target-resets", 1202, Kind::Moto, Kind::Moto).on(
            Side::Target,
            0.2,
            &[Fault::ResetRequest],
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn source_stalls_past_the_client_timeout() -> Result<()> {
    run(
        Scenario::new("source-stalls", 1203, Kind::Moto, Kind::Moto).on(
            Side::Source,
            0.05,
            &[Fault::Stall],
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn source_answers_truncated_under_their_length() -> Result<()> {
    run(
        Scenario::new("source-truncates", 1204, Kind::Moto, Kind::Moto).on(
            Side::Source,
            0.2,
            &[Fault::Truncate],
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn target_answers_500() -> Result<()> {
    run(
        Scenario::new("target-500", 1205, Kind::Moto, Kind::Moto).on(
            Side::Target,
            0.2,
            &[Fault::Status500],
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn source_answers_503_slow_down_and_429() -> Result<()> {
    run(
        Scenario::new("source-503-429", 1206, Kind::Moto, Kind::Moto).on(
            Side::Source,
            0.2,
            &[Fault::Status503, Fault::Status429],
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_target_breaks_every_way() -> Result<()> {
    run(
        Scenario::new("azure-target", 1207, Kind::Moto, Kind::Azurite).on(
            Side::Target,
            0.1,
            &Fault::ALL,
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_source_breaks_every_way() -> Result<()> {
    run(
        Scenario::new("azure-source", 1208, Kind::Azurite, Kind::Moto).on(
            Side::Source,
            0.1,
            &Fault::ALL,
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn s3s_fs_target_truncates_stalls_and_resets() -> Result<()> {
    run(
        Scenario::new("s3s-fs-target", 1209, Kind::Moto, Kind::S3sFs).on(
            Side::Target,
            0.1,
            &[
                Fault::Truncate,
                Fault::Stall,
                Fault::ResetRequest,
                Fault::ResetResponse,
            ],
        ),
    )
    .await
}

/// The acceptance case: 10 % of the requests broken on both sides, every
/// kind, over 2,000 small objects and the multipart shapes.
#[tokio::test(flavor = "multi_thread")]
async fn ten_percent_broken_on_both_sides_converges() -> Result<()> {
    let mut sc = Scenario::new("both-sides-10pc", 1210, Kind::Moto, Kind::S3sFs);
    sc.small = 2000;
    sc.max_passes = 8;
    run(sc).await
}

/// Bytes altered between the source and passeur, answers whole and of the
/// right length: an S3 object read in one GET is checked against its MD5
/// ETag, so an altered read fails its object (transient) instead of being
/// recorded; the next pass reads it right. (Objects read in parts have no
/// such checksum at an S3 source: `verify --deep` compares the target with
/// what passeur read, so only the independent comparison with the source
/// would see them — they are left out here.)
#[tokio::test(flavor = "multi_thread")]
async fn source_bytes_altered_on_the_way_are_caught_by_the_md5_etag() -> Result<()> {
    let mut sc = Scenario::new("source-altered", 1211, Kind::Moto, Kind::Moto).on(
        Side::Source,
        0.2,
        &[Fault::Alter],
    );
    sc.max_size = 1 << 20;
    run(sc).await
}
