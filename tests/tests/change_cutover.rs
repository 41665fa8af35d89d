//! `cutover --changes` and `verify --changes` (Azurite → s3s-fs): after a
//! full cutover, an incremental one replicates what the change feed named
//! up to the freeze and verifies only the keys changed since, saying what
//! it relied on; it refuses a feed with a hole, a feed that has not passed
//! the freeze, and a job never verified whole. Every replica is compared
//! with the source by bytes read back with the test's own clients.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Duration as Hours, Utc};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_core::feed::Cursor;
use passeur_core::manifest::Manifest;
use passeur_tests::feedgen::{FeedWriter, ev};
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur};
use serde_json::Value;

struct Rig {
    az: Server,
    _s3: Server,
    work: tempfile::TempDir,
    cfg: PathBuf,
    /// The same job as `passeur sync` options.
    sync_cfg: PathBuf,
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    feed: FeedWriter,
    /// Proxies passeur talks to the source and the target through, when
    /// the test counts what it asks them.
    meters: Option<(Meter, Meter)>,
}

impl Rig {
    fn start() -> Result<Self> {
        Self::start_with(false)
    }

    /// With `metered`, passeur reaches both stores through a [`Meter`].
    fn start_with(metered: bool) -> Result<Self> {
        let az = Server::start(Kind::Azurite)?;
        az.create_bucket("src")?;
        az.create_bucket("$blobchangefeed")?;
        let s3 = Server::start(Kind::S3sFs)?;
        s3.create_bucket("dst")?;
        let meters = if metered {
            Some((Meter::start(&az.endpoint)?, Meter::start(&s3.endpoint)?))
        } else {
            None
        };
        let (az_config, s3_config) = match &meters {
            Some((a, s)) => (
                az.config().replace(&az.endpoint, &a.endpoint),
                s3.config().replace(&s3.endpoint, &s.endpoint),
            ),
            None => (az.config(), s3.config()),
        };
        let work = tempfile::tempdir()?;
        let cfg = work.path().join("p.toml");
        std::fs::write(
            &cfg,
            format!(
                "state-dir = \"{}\"\n[[job]]\nname = \"j\"\nchanges = \"azure-change-feed\"\n[job.source]\nurl = \"az://src\"\n{}[job.target]\nurl = \"s3://dst\"\n{}part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n[job.delete]\nenabled = true\nmax-fraction = 0.5\n",
                work.path().join("state").display(),
                az_config,
                s3_config
            ),
        )?;
        let sync_cfg = work.path().join("sync.toml");
        std::fs::write(
            &sync_cfg,
            format!(
                "[source]\n{}[target]\n{}part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n",
                az_config, s3_config
            ),
        )?;
        Ok(Self {
            sync_cfg,
            src: az.client("src")?,
            dst: s3.client("dst")?,
            feed: FeedWriter::new(az.client("$blobchangefeed")?)?,
            az,
            _s3: s3,
            work,
            cfg,
            meters,
        })
    }

    /// `passeur COMMAND --config … --report … ARGS`: the run and its report.
    fn run(&self, command: &str, args: &[&str]) -> Result<(Run, Value)> {
        let report = self.work.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let (c, r) = (self.cfg.to_string_lossy(), report.to_string_lossy());
        let mut all = vec![command, "--config", &c, "--report", &r];
        all.extend_from_slice(args);
        let run = passeur(&all, &[])?;
        let json = std::fs::read_to_string(&report)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        Ok((run, json))
    }

    /// A change pass of the job between two cutovers (`passeur sync
    /// --changes` on its state directory).
    fn sync_changes(&self) -> Result<Run> {
        let state = self.work.path().join("state/j");
        let (st, c) = (state.to_string_lossy(), self.sync_cfg.to_string_lossy());
        passeur(
            &[
                "sync",
                "--source",
                "az://src",
                "--target",
                "s3://dst",
                "--state",
                &st,
                "--config",
                &c,
                "--changes",
                "azure-change-feed",
                "--delete",
                "--max-delete-fraction",
                "0.5",
                "--output",
                "json",
            ],
            &[],
        )
    }

    fn cursor_hour(&self) -> Result<DateTime<Utc>> {
        let c: Cursor = Manifest::open_read_only(&self.work.path().join("state/j"))?
            .feed_cursor()?
            .context("no feed cursor")?;
        DateTime::from_timestamp_millis(c.segment_ms).context("cursor")
    }

    async fn put_owned(&self, key: String, bytes: Vec<u8>) -> Result<()> {
        self.put(&key, bytes).await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.src
            .put(&OsPath::parse(key)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }
}

async fn read_all(store: &dyn ObjectStore) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for key in passeur_tests::dataset::keys(store).await? {
        let bytes = store.get(&OsPath::parse(&key)?).await?.bytes().await?;
        out.insert(key, blake3::hash(&bytes).to_hex().to_string());
    }
    Ok(out)
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        r.code, r.stdout, r.stderr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incremental_cutover_covers_the_changes_and_says_what_it_relied_on() -> Result<()> {
    let rig = Rig::start()?;
    for i in 0..40u8 {
        rig.put(&format!("data/{i:02}.bin"), bytes(i, 500 + usize::from(i)))
            .await?;
    }
    rig.put("big.bin", bytes(99, 11 << 20)).await?;

    // Never verified whole: --changes has nothing to rely on.
    let (r, _) = rig.run("cutover", &["--changes"])?;
    ensure!(
        r.code == 78 && r.stderr.contains("no verification of the whole target"),
        "{}",
        show(&r)
    );
    let (r, rep) = rig.run("cutover", &[])?;
    ensure!(r.code == 0 && rep["kind"] == "full", "{}", show(&r));
    let h = rig.cursor_hour()?;

    // Changes: two new objects, an overwrite (multipart), a delete; the
    // feed names them all in a closed hour.
    rig.put("new/a.txt", bytes(1, 10)).await?;
    rig.put("new/b c+d.txt", Vec::new()).await?;
    rig.put("big.bin", bytes(7, (10 << 20) + 3)).await?;
    rig.src.delete(&OsPath::parse("data/05.bin")?).await?;
    rig.feed
        .hour(
            h,
            &[
                vec![vec![vec![
                    ev("BlobCreated", "new/a.txt", 1, h, 1),
                    ev("BlobCreated", "big.bin", 2, h, 2),
                ]]],
                vec![vec![vec![
                    ev("BlobCreated", "new/b c+d.txt", 3, h, 1),
                    ev("BlobDeleted", "data/05.bin", 4, h, 3),
                ]]],
            ],
            &[],
        )
        .await?;

    // The feed has not passed the freeze: refused after the wait.
    rig.feed.consumable_until(h).await?;
    let (r, _) = rig.run("cutover", &["--changes", "--wait", "1s"])?;
    ensure!(
        r.code == 1 && r.stderr.contains("has not passed the freeze"),
        "{}",
        show(&r)
    );

    rig.feed
        .consumable_until(Utc::now() + Hours::hours(1))
        .await?;
    let (r, rep) = rig.run("cutover", &["--changes"])?;
    ensure!(r.code == 0 && rep["verified"] == true, "{}", show(&r));
    ensure!(rep["kind"] == "changes", "{rep}");
    ensure!(rep["final_changes"]["summary"]["keys"] == 4, "{rep}");
    let v = &rep["verification"];
    ensure!(
        v["incremental"]["keys_checked"] == 4 && v["manifest_root"] == v["found_root"],
        "{v}"
    );
    let relied = rep["relied_on"].to_string();
    ensure!(
        relied.contains("change feed") && relied.contains("not looked at again"),
        "{relied}"
    );
    ensure!(
        r.stdout.contains("(incremental: changes only): VERIFIED"),
        "{}",
        r.stdout
    );
    let (source, target) = (
        read_all(rig.src.as_ref()).await?,
        read_all(rig.dst.as_ref()).await?,
    );
    ensure!(source == target, "target {target:?}\nsource {source:?}");

    // Nothing changed since: an incremental cutover looks at nothing and
    // still verifies (its basis is the last one).
    let (r, rep) = rig.run("cutover", &["--changes"])?;
    ensure!(
        r.code == 0 && rep["verification"]["incremental"]["keys_checked"] == 0,
        "{}",
        show(&r)
    );

    // What an incremental run relies on: an object it did not change,
    // damaged at the target behind its back, is not looked at (the report
    // says so); the full verification finds it.
    rig.dst
        .put(
            &OsPath::parse("data/10.bin")?,
            PutPayload::from_static(b"tampered"),
        )
        .await?;
    let (r, _) = rig.run("cutover", &["--changes"])?;
    ensure!(r.code == 0, "{}", show(&r));
    let (r, rep) = rig.run("verify", &[])?;
    ensure!(
        r.code == 1
            && rep["verification"]["mismatches"]
                .to_string()
                .contains("data/10.bin"),
        "the full verification finds it: {}",
        show(&r)
    );

    // A key changed since the last verification, damaged at the target
    // after its change pass: the incremental verification names it.
    rig.put("new/a.txt", bytes(2, 12)).await?;
    let h1 = h + Hours::hours(1);
    rig.feed
        .hour(
            h1,
            &[vec![vec![vec![ev("BlobCreated", "new/a.txt", 5, h1, 1)]]]],
            &[],
        )
        .await?;
    rig.feed
        .consumable_until(Utc::now() + Hours::hours(2))
        .await?;
    let sync = rig.sync_changes()?;
    ensure!(sync.code == 0, "{}", show(&sync));
    rig.dst
        .put(
            &OsPath::parse("new/a.txt")?,
            PutPayload::from_static(b"tampered"),
        )
        .await?;
    let (r, rep) = rig.run("verify", &["--changes"])?;
    let named = rep["verification"]["mismatches"].to_string();
    ensure!(
        r.code == 1 && named.contains("new/a.txt") && !named.contains("data/10.bin"),
        "{}",
        show(&r)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incremental_cutover_refuses_a_feed_it_could_not_read_to_the_freeze() -> Result<()> {
    let rig = Rig::start()?;
    rig.put("a.txt", bytes(1, 10)).await?;
    let (r, _) = rig.run("cutover", &[])?;
    ensure!(r.code == 0, "{}", show(&r));
    let h = rig.cursor_hour()?;
    rig.put("b.txt", bytes(2, 10)).await?;
    rig.put("c.txt", bytes(3, 10)).await?;
    rig.feed
        .consumable_until(Utc::now() + Hours::hours(1))
        .await?;
    // An hour that lastConsumable covers but Azure has not closed: not
    // read, so the cutover cannot vouch for the changes in it.
    rig.feed
        .hour_with(
            h,
            &[vec![vec![vec![ev("BlobCreated", "b.txt", 1, h, 1)]]]],
            &[],
            "Publishing",
        )
        .await?;
    let (r, rep) = rig.run("cutover", &["--changes"])?;
    ensure!(
        r.code == 1 && rep["verified"] == false && r.stdout.contains("NOT read to the freeze"),
        "an unread hour before the freeze is not VERIFIED: {}",
        show(&r)
    );
    rig.feed
        .hour(
            h,
            &[vec![
                vec![vec![ev("BlobCreated", "b.txt", 1, h, 1)]],
                vec![vec![ev("BlobCreated", "c.txt", 2, h, 2)]],
            ]],
            &[1],
        )
        .await?;
    let (r, rep) = rig.run("cutover", &["--changes"])?;
    ensure!(
        r.code == 1 && r.stderr.contains("missing") && rep.is_null(),
        "refused before verifying anything: {}",
        show(&r)
    );
    // The full cutover is the way on.
    let (r, rep) = rig.run("cutover", &[])?;
    ensure!(r.code == 0 && rep["kind"] == "full", "{}", show(&r));
    let target = read_all(rig.dst.as_ref()).await?;
    ensure!(target == read_all(rig.src.as_ref()).await?, "{target:?}");
    Ok(())
}

/// The incremental cutover relies on a complete full pass having anchored
/// the feed: a key the first full pass failed to copy (and that changes no
/// more) is in neither the feed nor the manifest, and a verification of
/// the target against the manifest cannot see it missing.
#[tokio::test(flavor = "multi_thread")]
async fn an_incremental_cutover_needs_a_complete_full_pass_before_it() -> Result<()> {
    let rig = Rig::start()?;
    rig.put("a.txt", bytes(1, 10)).await?;
    rig.az.put_raw("src", "odd//name", "x")?;
    let (r, rep) = rig.run("cutover", &[])?;
    ensure!(
        r.code == 1 && rep["verification"]["mismatch_count"] == 0,
        "the final pass fails the key, the target equals the manifest: {}",
        show(&r)
    );
    // A feed on for hours, with nothing after the cursor.
    rig.feed
        .hour(Utc::now() - Hours::hours(3), &[], &[])
        .await?;
    rig.feed
        .consumable_until(Utc::now() + Hours::hours(1))
        .await?;
    let (r, _) = rig.run("cutover", &["--changes"])?;
    ensure!(
        r.code == 78 && r.stderr.contains("no complete full pass"),
        "refused: {}",
        show(&r)
    );
    Ok(())
}

/// What an incremental cutover asks the stores grows with what changed,
/// not with the dataset: after a full cutover of more flat keys than one
/// listing page holds, `cutover --changes` of one changed key lists
/// neither the source's nor the target's objects (at most one listing of
/// each, under a prefix: the probe), and the target read back equals the
/// source.
#[tokio::test(flavor = "multi_thread")]
async fn an_incremental_cutover_does_not_list_the_dataset() -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    const N: usize = 1_200; // more than one S3 listing page (1,000)
    let rig = Rig::start_with(true)?;
    futures::stream::iter(0..N)
        .map(|i| rig.put_owned(format!("f{i:04}.bin"), bytes(i as u8, 20 + i % 7)))
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    let (r, _) = rig.run("cutover", &[])?;
    ensure!(r.code == 0, "{}", show(&r));
    let h = rig.cursor_hour()?;
    let (src_meter, dst_meter) = rig.meters.as_ref().context("metered")?;
    let before = (src_meter.listings().len(), dst_meter.listings().len());

    rig.put("f0007.bin", bytes(70, 33)).await?;
    rig.feed
        .hour(
            h,
            &[vec![vec![vec![ev("BlobCreated", "f0007.bin", 1, h, 1)]]]],
            &[],
        )
        .await?;
    rig.feed
        .consumable_until(Utc::now() + Hours::hours(1))
        .await?;
    let (r, rep) = rig.run("cutover", &["--changes"])?;
    ensure!(
        r.code == 0 && rep["kind"] == "changes" && rep["verified"] == true,
        "{}",
        show(&r)
    );
    let src_lists: Vec<String> = src_meter.listings()[before.0..]
        .iter()
        .filter(|l| l.contains("/src?"))
        .cloned()
        .collect();
    let dst_lists = dst_meter.listings()[before.1..].to_vec();
    for (store, lists) in [("source", &src_lists), ("target", &dst_lists)] {
        ensure!(
            lists.len() <= 1 && lists.iter().all(|l| l.contains("prefix=")),
            "the incremental cutover listed the {store}'s objects: {lists:#?}"
        );
    }
    let (source, target) = (
        read_all(rig.src.as_ref()).await?,
        read_all(rig.dst.as_ref()).await?,
    );
    ensure!(source.len() == N && source == target, "target differs");
    Ok(())
}
