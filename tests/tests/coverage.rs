//! Every pass that says "complete" looked at every source key while it ran
//! (issue: no false success). A pass stopped mid-listing leaves a
//! checkpoint; what follows must still read changes made before it:
//! `cutover` lists from the first key, a resumed `sync` wraps around to the
//! keys before its checkpoint. A listing that fails leaves no checkpoint
//! that later passes would fail at. Deletes follow only a listing of the
//! whole key space by the pass itself. Every assertion on the target reads
//! it back independently (bytes and BLAKE3).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_tests::dataset::{self, Obj};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur};
use rand::{Rng, SeedableRng, rngs::StdRng};

const OBJECT_EVENT: &str = "object";

fn objects(seed: u64, n: usize) -> Vec<Obj> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut v = vec![0u8; rng.random_range(100..3000)];
            rng.fill(&mut v[..]);
            Obj {
                key: format!("k{i:04}"),
                data: Bytes::from(v),
                content_type: None,
                meta: vec![],
            }
        })
        .collect()
}

async fn put(store: &dyn ObjectStore, key: &str, data: &[u8]) -> Result<()> {
    store
        .put(&OsPath::parse(key)?, PutPayload::from(data.to_vec()))
        .await?;
    Ok(())
}

/// BLAKE3 of an object read back from `store`, `None` if absent.
async fn b3(store: &dyn ObjectStore, key: &str) -> Result<Option<blake3::Hash>> {
    match store.get(&OsPath::parse(key)?).await {
        Ok(g) => Ok(Some(blake3::hash(&g.bytes().await?))),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An Azurite source (behind a metering proxy that slows every request, so
/// a pass can be stopped in its middle) and a moto target: the mission's
/// path.
struct Rig {
    azurite: Server,
    moto: Server,
    meter: Meter,
    job: StoreJob,
}

impl Rig {
    async fn new(objs: &[Obj], args: &[&str]) -> Result<Self> {
        let azurite = Server::start(Kind::Azurite)?;
        azurite.create_bucket("src")?;
        dataset::seed(azurite.client("src")?.as_ref(), objs).await?;
        let moto = Server::start(Kind::Moto)?;
        moto.create_bucket("dst")?;
        let meter = Meter::start(&azurite.endpoint)?;
        let job = StoreJob::new(&azurite, &meter.endpoint, &moto, "", 2)?.with_args(args);
        Ok(Self {
            azurite,
            moto,
            meter,
            job,
        })
    }

    /// Run a pass and stop it with SIGINT after `after` objects finished.
    fn stopped_pass(&self, after: usize) -> Result<Run> {
        self.meter.delay(15);
        let run = self.job.run_and_signal_after(OBJECT_EVENT, after, "INT")?;
        self.meter.delay(0);
        ensure!(
            run.code == 130,
            "stopped pass: exit {}\n{}",
            run.code,
            run.stdout
        );
        let copied = run.stat("copied")?;
        ensure!(
            copied >= after as u64 && run.summary()?["summary"]["interrupted"] == true,
            "the pass was not stopped in its middle: {}",
            run.stdout
        );
        Ok(run)
    }

    /// A service configuration naming the same job (state `<work>/state`).
    fn service_config(&self) -> Result<PathBuf> {
        let path = self.job.work.path().join("service.toml");
        std::fs::write(
            &path,
            format!(
                "state-dir = \"{}\"\n[[job]]\nname = \"state\"\n[job.source]\nurl = \"{}\"\n{}[job.target]\nurl = \"{}\"\n{}",
                self.job.work.path().display(),
                self.azurite.url("src"),
                self.azurite
                    .config()
                    .replace(&self.azurite.endpoint, &self.meter.endpoint),
                self.moto.url("dst"),
                self.moto.config()
            ),
        )?;
        Ok(path)
    }
}

fn cutover(cfg: &Path, report: &Path) -> Result<(Run, serde_json::Value)> {
    let (c, r) = (cfg.to_string_lossy(), report.to_string_lossy());
    let run = passeur(&["cutover", "--config", &c, "--report", &r], &[])?;
    let json = serde_json::from_str(
        &std::fs::read_to_string(report)
            .with_context(|| format!("no report: {}\n{}", run.stderr, run.stdout))?,
    )?;
    Ok((run, json))
}

/// Finding 1: freeze writes, stop the service mid-pass, `passeur cutover`.
/// An overwrite and a new key before the checkpoint must reach the target.
#[tokio::test(flavor = "multi_thread")]
async fn cutover_after_a_stopped_pass_reads_the_keys_before_its_checkpoint() -> Result<()> {
    let objs = objects(101, 300);
    let rig = Rig::new(&objs, &[]).await?;
    let stopped = rig.stopped_pass(120)?;
    let src = rig.azurite.client("src")?;
    let (new_first, new_key) = (
        b"k0000 overwritten after the stop".to_vec(),
        b"new".to_vec(),
    );
    put(src.as_ref(), "k0000", &new_first).await?;
    put(src.as_ref(), "k0000a", &new_key).await?;

    let report = rig.job.work.path().join("report.json");
    let (run, json) = cutover(&rig.service_config()?, &report)?;
    let dst = rig.moto.client("dst")?;
    let first = b3(dst.as_ref(), "k0000").await?;
    let added = b3(dst.as_ref(), "k0000a").await?;
    eprintln!(
        "stopped after {} copied; cutover exit {}: {}",
        stopped.stat("copied")?,
        run.code,
        run.stdout.lines().next().unwrap_or_default()
    );
    ensure!(
        first == Some(blake3::hash(&new_first)),
        "k0000 at the target is stale after cutover (exit {}):\n{}",
        run.code,
        run.stdout
    );
    ensure!(
        added == Some(blake3::hash(&new_key)),
        "k0000a missing at the target after cutover (exit {})",
        run.code
    );
    for o in &objs[1..] {
        ensure!(
            b3(dst.as_ref(), &o.key).await? == Some(blake3::hash(&o.data)),
            "{} differs at the target",
            o.key
        );
    }
    ensure!(
        run.code == 0,
        "exit {}\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    ensure!(json["verified"] == true, "{json}");
    ensure!(
        json["final_pass"]["listing"] == "complete"
            && json["final_pass"]["summary"]["resumed_after"].is_null(),
        "the report must say the final pass listed from the first key: {}",
        json["final_pass"]
    );
    Ok(())
}

/// Finding 1, `sync`: a pass continuing a stopped one lists after its
/// checkpoint, then wraps around; it is complete only then.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_sync_wraps_around_to_the_keys_before_its_checkpoint() -> Result<()> {
    let objs = objects(102, 300);
    let rig = Rig::new(&objs, &[]).await?;
    rig.stopped_pass(120)?;
    let src = rig.azurite.client("src")?;
    let changed = b"k0001 overwritten after the stop".to_vec();
    put(src.as_ref(), "k0001", &changed).await?;

    let run = rig.job.run()?;
    let s = run.summary()?;
    ensure!(
        s["summary"]["resumed_after"].is_string(),
        "the pass should have continued after a checkpoint: {s}"
    );
    let dst = rig.moto.client("dst")?;
    ensure!(
        b3(dst.as_ref(), "k0001").await? == Some(blake3::hash(&changed)),
        "k0001 at the target is stale after a resumed pass that exited {}: {s}",
        run.code
    );
    ensure!(
        run.code == 0 && s["complete"] == true,
        "exit {}: {s}",
        run.code
    );
    Ok(())
}

/// Finding 7: a pass continuing a stopped one, over a source that now lists
/// nothing, must refuse to delete (the guard counts the whole key space).
#[tokio::test(flavor = "multi_thread")]
async fn deletes_after_a_resumed_pass_still_refuse_an_empty_source() -> Result<()> {
    let objs = objects(103, 200);
    let rig = Rig::new(&objs, &["--delete", "--max-delete-fraction", "0.6"]).await?;
    let first = rig.job.run()?;
    ensure!(first.code == 0, "{}\n{}", first.stdout, first.stderr);
    // Change every object so that the next pass has work, stop it midway.
    let src = rig.azurite.client("src")?;
    for o in &objs {
        put(src.as_ref(), &o.key, &[&o.data[..], b"v2"].concat()).await?;
    }
    rig.stopped_pass(100)?;
    for o in &objs {
        src.delete(&OsPath::parse(&o.key)?).await?;
    }
    let run = rig.job.run()?;
    let dst = rig.moto.client("dst")?;
    let left = dataset::keys(dst.as_ref()).await?.len();
    eprintln!(
        "after the source was emptied: exit {}, {} objects left at the target, summary {}",
        run.code,
        left,
        run.summary()?["summary"]["deletes_refused"]
    );
    ensure!(
        left == objs.len(),
        "{} of {} objects deleted at the target although the source listed nothing",
        objs.len() - left,
        objs.len()
    );
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stdout);
    let why = run.summary()?["summary"]["deletes_refused"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(why.contains("listed no objects"), "{why}");
    Ok(())
}

/// Finding 4, deletes: a delete the target refuses is a named failure
/// (exit 1); the other deletes and the replication of other keys go on, and
/// the next pass tries it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_delete_fails_alone_and_is_tried_again() -> Result<()> {
    let objs = objects(104, 20);
    let src_server = Server::start(Kind::Moto)?;
    src_server.create_bucket("src")?;
    src_server.create_bucket("dst")?;
    let src = src_server.client("src")?;
    dataset::seed(src.as_ref(), &objs).await?;
    let meter = Meter::start(&src_server.endpoint)?;
    let job = StoreJob::through(
        &src_server,
        &src_server.endpoint,
        &src_server,
        &meter.endpoint,
        "",
        4,
    )?
    .with_args(&["--delete", "--max-delete-fraction", "1"]);
    let first = job.run()?;
    ensure!(first.code == 0, "{}", first.stdout);
    for k in ["k0003", "k0007"] {
        src.delete(&OsPath::parse(k)?).await?;
    }
    put(src.as_ref(), "k0100", b"added").await?;
    meter.refuse_deletes_of(Some("k0003"));
    let second = job.run()?;
    let dst = src_server.client("dst")?;
    ensure!(
        b3(dst.as_ref(), "k0007").await?.is_none(),
        "k0007 not deleted"
    );
    ensure!(
        b3(dst.as_ref(), "k0003").await? == Some(blake3::hash(&objs[3].data)),
        "k0003 must still be at the target: {}",
        second.stdout
    );
    ensure!(
        b3(dst.as_ref(), "k0100").await? == Some(blake3::hash(b"added")),
        "k0100 not replicated"
    );
    ensure!(second.code == 1, "exit {}: {}", second.code, second.stdout);
    let failed: Vec<String> = second.summary()?["summary"]["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["key"].as_str().map(str::to_owned))
        .collect();
    ensure!(failed == ["k0003"], "failures {failed:?}");
    meter.refuse_deletes_of(None);
    let third = job.run()?;
    ensure!(third.code == 0, "{}", third.stdout);
    ensure!(
        b3(dst.as_ref(), "k0003").await?.is_none(),
        "k0003 not deleted once the target allowed it"
    );
    Ok(())
}

/// Deletes after a pass that continued a stopped one and wrapped around:
/// keys gone from the source on both sides of the checkpoint are deleted
/// at the target, and nothing else is.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrapped_around_pass_deletes_on_both_sides_of_its_checkpoint() -> Result<()> {
    let objs = objects(105, 200);
    let rig = Rig::new(&objs, &["--delete"]).await?;
    let first = rig.job.run()?;
    ensure!(first.code == 0, "{}", first.stdout);
    let src = rig.azurite.client("src")?;
    let v2 = |o: &Obj| [&o.data[..], b"v2"].concat();
    for o in &objs {
        put(src.as_ref(), &o.key, &v2(o)).await?;
    }
    rig.stopped_pass(100)?;
    for k in ["k0010", "k0150"] {
        src.delete(&OsPath::parse(k)?).await?;
    }
    let run = rig.job.run()?;
    let s = run.summary()?;
    ensure!(
        s["summary"]["resumed_after"].is_string() && run.code == 0,
        "exit {}: {s}",
        run.code
    );
    let dst = rig.moto.client("dst")?;
    for o in &objs {
        let want = match o.key.as_str() {
            "k0010" | "k0150" => None,
            _ => Some(blake3::hash(&v2(o))),
        };
        ensure!(
            b3(dst.as_ref(), &o.key).await? == want,
            "{} at the target: want {want:?}",
            o.key
        );
    }
    ensure!(run.stat("deleted")? == 2, "{s}");
    Ok(())
}

/// An Azure listing starts with a page of 1,000 names, so copies begin
/// before the server has built a full page of 5,000 (about 1 s on
/// Azurite); the pages after it are full, and no key is lost or listed
/// twice at the seams. Counted by the metering proxy, read back from the
/// target (bytes of every key, nothing else there).
#[tokio::test(flavor = "multi_thread")]
async fn an_azure_listing_starts_with_a_short_page_and_misses_no_key() -> Result<()> {
    let objs = objects(106, 7_200);
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("src")?;
    dataset::seed(azurite.client("src")?.as_ref(), &objs).await?;
    let meter = Meter::start(&azurite.endpoint)?;
    let source_cfg = azurite.config().replace(&azurite.endpoint, &meter.endpoint);
    let job = passeur_tests::LocalTargetJob::new(&azurite.url("src"), &source_cfg, 64)?;
    let run = job.run()?;
    ensure!(
        run.code == 0,
        "exit {}\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    // The pass's own listing; not the probe's (object_store lists the
    // `.passeur-probe/` prefix).
    let mut listings = meter.listings();
    listings.retain(|l| !l.contains("passeur-probe"));
    let firsts: Vec<&String> = listings.iter().filter(|l| !l.contains("marker=")).collect();
    ensure!(
        firsts.len() == 1 && firsts[0].contains("maxresults=1000"),
        "the listing must start with one page of 1,000 names: {listings:?}"
    );
    ensure!(
        listings.len() == 3 && listings[1..].iter().all(|l| !l.contains("maxresults")),
        "7,200 names must be listed in pages of 1,000, 5,000 and 1,200: {listings:?}"
    );
    let dst = object_store::local::LocalFileSystem::new_with_prefix(&job.dst)?;
    dataset::verify(&dst, &objs, dataset::Checks::BYTES, None).await
}
