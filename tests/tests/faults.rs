//! Network faults, seeded: a proxy in front of the source and one in front
//! of the target break a share of the requests (resets in the middle of a
//! request or an answer, stalls past the client's timeout, answers cut
//! short under their Content-Length, 500 / 503 / 429 with the store's own
//! error body). passeur runs pass after pass until one exits 0, within a
//! bound; then, with the faults off, the target is read back independently
//! and compared with the source byte for byte, no multipart upload is left
//! open (moto), and `passeur verify --deep` exits 0 with equal roots.
//!
//! Bytes altered on the way, from the source or to the target, and how
//! each is caught: `faults/altered.rs`.
//!
//! Every scenario prints its seed; `PASSEUR_FAULT_SEED=N` runs it again
//! with that seed (which requests break follows from the seed and the
//! requests, not from their order: see `passeur_tests::netfault`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use object_store::ObjectStoreExt;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::netfault::{Dialect, Kind as Fault, NetFaults};
use passeur_tests::servers::{Kind, Server};

#[path = "faults/altered.rs"]
mod altered;

/// What altered upload bodies may do to the target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Nothing altered is stored: the passes converge on an intact target.
    Refused,
    /// Altered bytes are stored (nothing checks them on the way): the
    /// passes may exit 0; `verify --deep` names every damaged key, then
    /// `verify --deep --repair` and one more pass heal them.
    CaughtByVerify,
}

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
    /// What altered upload bodies may leave at the target.
    damage: Damage,
    /// Every upload to the target must carry a checksum of its body.
    upload_checksums: bool,
    /// Lines added to the target's configuration.
    target_extra: &'static str,
    /// Every upload body must be so keyed by the proxy (its checksum
    /// header, ` unsigned` when sent as `UNSIGNED-PAYLOAD`).
    uploads_as: Option<&'static str>,
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
            damage: Damage::Refused,
            upload_checksums: false,
            target_extra: "",
            uploads_as: None,
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
        &format!(
            "{CLIENT}part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n{}",
            sc.target_extra
        ),
        8,
    )?
    .with_source_config(CLIENT)?;
    let uploads_before = dst_proxy.uploads();
    let started = Instant::now();
    let mut passes = 0;
    let last = loop {
        passes += 1;
        let r = job.run()?;
        let s = r.summary().ok();
        eprintln!(
            "{}: pass {passes}: exit {}, copied {:?}, failed {:?}, uploads resumed {:?}, by kind {}",
            sc.name,
            r.code,
            r.stat("copied").ok(),
            r.stat("failed").ok(),
            r.stat("uploads_resumed").ok(),
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
    let (uploads, checked) = dst_proxy.uploads();
    let (uploads, checked) = (uploads - uploads_before.0, checked - uploads_before.1);
    eprintln!(
        "{}: seed {seed}: {uploads} upload bodies to the target, {checked} with a checksum",
        sc.name
    );
    if sc.damage == Damage::CaughtByVerify {
        let altered = dst_faults
            .as_ref()
            .map(|f| f.altered_keys(&bucket_prefix(sc.target)))
            .unwrap_or_default();
        altered::heal_by_verify(&sc, seed, &job, &source, &target, &objs, &altered).await?;
    }

    // Independent checks, faults off.
    dataset::verify(target.client("dst")?.as_ref(), &objs, Checks::BYTES, None).await?;
    dataset::verify_sdk(&target.sdk_read_back("dst")?, &objs)?;
    if sc.target == Kind::Moto {
        let open = target.open_uploads("dst")?;
        ensure!(
            open.is_empty(),
            "{}: seed {seed}: uploads left open: {open:?}",
            sc.name
        );
    }
    let (v, report) = job.verify(&source, &target, &["--deep", "--full"])?;
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
    // Last, so that a run without checksums shows the independent checks first.
    ensure!(
        !sc.upload_checksums || (uploads > 0 && checked == uploads),
        "{}: seed {seed}: {} of {uploads} upload bodies went to the target without a checksum it could check",
        sc.name,
        uploads - checked
    );
    if let Some(want) = sc.uploads_as {
        let sent = dst_proxy.uploads_by_checksum();
        ensure!(
            sent.len() == 1 && sent.contains_key(want),
            "{}: upload bodies by checksum header {sent:?}, want {want} only",
            sc.name
        );
    }
    Ok(())
}

/// Where a server's request paths for bucket `dst` start.
fn bucket_prefix(k: Kind) -> String {
    match k {
        Kind::Azurite => "/devstoreaccount1/dst/".into(),
        Kind::Moto | Kind::S3sFs => "/dst/".into(),
    }
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
