//! Change passes (`passeur sync --changes azure-change-feed`) from Azurite
//! to s3s-fs. Azurite has no change feed: the test makes real changes at
//! the source and writes the feed files Azure would (and some it would
//! not: a missed event, a duplicated one, events out of order across
//! shards, a hole in a shard) into Azurite's `$blobchangefeed`. Every
//! assertion reads the target back with its own client and compares bytes
//! with the source's.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_core::feed::Cursor;
use passeur_core::manifest::Manifest;
use passeur_tests::Run;
use passeur_tests::feedgen::{FeedWriter, ev};
use passeur_tests::job::StoreJob;
use passeur_tests::servers::{Kind, Server};

const MIB: usize = 1 << 20;

/// Key shapes Azure accepts that object_store encodes in requests.
const ODD: [&str; 7] = [
    "sp ace+plus.txt",
    "é/ü.txt",
    "pct%41.txt",
    "tilde~(1)!'.txt",
    "q?mark=1&x.txt",
    "hash#frag.txt",
    "del me é+%.txt",
];

struct Rig {
    azurite: Server,
    _target: Server,
    job: StoreJob,
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    feed: FeedWriter,
}

impl Rig {
    fn start() -> Result<Self> {
        let azurite = Server::start(Kind::Azurite)?;
        azurite.create_bucket("src")?;
        azurite.create_bucket("$blobchangefeed")?;
        let target = Server::start(Kind::S3sFs)?;
        target.create_bucket("dst")?;
        let job = StoreJob::new(
            &azurite,
            &azurite.endpoint,
            &target,
            "part-size = \"5MiB\"\nmultipart-threshold = \"5MiB\"\n",
            8,
        )?
        .with_args(&[
            "--delete",
            "--max-delete-fraction",
            "1",
            "--exclude",
            "skip/**",
        ]);
        Ok(Self {
            src: azurite.client("src")?,
            dst: target.client("dst")?,
            feed: FeedWriter::new(azurite.client("$blobchangefeed")?)?,
            azurite,
            _target: target,
            job,
        })
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.src
            .put(&OsPath::parse(key)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.src.delete(&OsPath::parse(key)?).await?;
        Ok(())
    }

    fn full_pass(&self) -> Result<Run> {
        self.job.run()
    }

    fn change_pass(&self) -> Result<Run> {
        let mut cmd = self.job.command()?;
        cmd.args(["--changes", "azure-change-feed"]);
        Ok(Run::from_output(cmd.output()?))
    }

    /// The feed cursor in the job's state directory, read on its own.
    fn cursor(&self) -> Result<Cursor> {
        Manifest::open_read_only(&self.job.state)?
            .feed_cursor()?
            .context("no feed cursor after a full pass")
    }

    /// Every object of the target, read with the test's own client:
    /// key → BLAKE3 of its bytes.
    async fn target_objects(&self) -> Result<BTreeMap<String, String>> {
        read_all(self.dst.as_ref()).await
    }

    /// The same for the source, without the keys the job leaves out.
    async fn source_objects(&self) -> Result<BTreeMap<String, String>> {
        let mut all = read_all(self.src.as_ref()).await?;
        all.retain(|k, _| !k.starts_with("skip/"));
        Ok(all)
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
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn begin_of(c: &Cursor) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(c.segment_ms).context("cursor time")
}

fn report(r: &Run) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        r.code, r.stdout, r.stderr
    )
}

#[tokio::test]
async fn a_change_pass_replicates_what_the_feed_names_and_only_that() -> Result<()> {
    let rig = Rig::start()?;
    for (key, data) in [
        ("keep.txt", bytes(1, 100)),
        ("gone.txt", bytes(2, 100)),
        ("over.bin", bytes(3, 3000)),
        ("flop.txt", bytes(4, 10)),
    ] {
        rig.put(key, data).await?;
    }
    for (i, key) in ODD.iter().enumerate() {
        rig.put(key, bytes(100 + i as u8, 7)).await?;
    }
    let r = rig.full_pass()?;
    ensure!(r.code == 0, "first full pass: {}", report(&r));
    let start = rig.cursor()?;
    ensure!(start.shards.is_empty(), "anchored at an hour: {start:?}");
    let h = begin_of(&start)?;
    let now = Utc::now();
    ensure!(
        h <= now && now - h < chrono::Duration::minutes(66),
        "the cursor {h} is the hour of the pass ({now})"
    );

    // Changes at the source: new objects of every shape, an overwrite,
    // deletes, a key left out by the filters, and one the feed will miss.
    let multi = bytes(5, 2 * 5 * MIB + 3);
    rig.put("new/empty", Vec::new()).await?;
    rig.put("new/small", bytes(6, 1000)).await?;
    rig.put("new/multi.bin", multi.clone()).await?;
    rig.put("over.bin", bytes(7, 5000)).await?;
    rig.put("flip.txt", bytes(8, 20)).await?;
    rig.put("skip/x", bytes(9, 5)).await?;
    rig.put("unnamed.txt", bytes(10, 5)).await?;
    rig.delete("gone.txt").await?;
    rig.delete("flop.txt").await?;
    // Keys of every shape, changed (the last one deleted): a HEAD that
    // named another key would copy nothing, or delete a live object.
    let (last, changed) = ODD.split_last().context("keys")?;
    for (i, key) in changed.iter().enumerate() {
        rig.put(key, bytes(200 + i as u8, 9)).await?;
    }
    rig.delete(last).await?;

    // What the feed says, read shard 0 first: a delete of flip.txt before
    // its create in shard 1 with a later sequencer (flip.txt is at the
    // source: it is copied), and a delete of flop.txt before its create in
    // shard 1 (flop.txt is gone from the source: it is deleted at the
    // target); new/small twice; a blob of another container; a control
    // record; nothing about unnamed.txt.
    let shard0 = vec![
        vec![
            vec![
                ev("BlobCreated", "new/empty", 1, h, 1),
                ev("BlobCreated", "new/small", 2, h, 1),
            ],
            vec![
                ev("BlobCreated", "skip/x", 3, h, 2),
                ev("BlobCreated", "other:zzz", 4, h, 2),
            ],
        ],
        vec![vec![
            ev("BlobDeleted", "flip.txt", 5, h, 3),
            ev("BlobCreated", "new/small", 6, h, 3),
            ev("BlobDeleted", "flop.txt", 7, h, 3),
        ]],
    ];
    let shard1 = vec![
        vec![vec![
            ev("BlobCreated", "new/multi.bin", 8, h, 4),
            ev("BlobCreated", "over.bin", 9, h, 4),
            ev("BlobCreated", "flip.txt", 10, h, 4),
        ]],
        vec![vec![
            ev("Control", "", 11, h, 5),
            ev("BlobDeleted", "gone.txt", 12, h, 5),
            ev("BlobCreated", "flop.txt", 13, h, 5),
        ]],
    ];
    let shard2 = vec![vec![
        changed
            .iter()
            .enumerate()
            .map(|(i, k)| ev("BlobCreated", k, 20 + i as u64, h, 6))
            .chain([ev("BlobDeleted", last, 40, h, 6)])
            .collect(),
    ]];
    rig.feed.hour(h, &[shard0, shard1, shard2], &[]).await?;
    rig.feed
        .consumable_until(h + chrono::Duration::hours(1))
        .await?;

    let r = rig.change_pass()?;
    ensure!(r.code == 0, "change pass: {}", report(&r));
    let source = rig.source_objects().await?;
    let target = rig.target_objects().await?;
    let mut want = source.clone();
    want.remove("unnamed.txt");
    ensure!(
        target == want,
        "the target holds what the feed named, at the source's bytes:\n target {target:?}\n want   {want:?}"
    );
    ensure!(
        target.get("new/multi.bin") == Some(&blake3::hash(&multi).to_hex().to_string()),
        "the multipart object"
    );

    // Read to its end: the next change pass finds nothing.
    let moved = rig.cursor()?;
    ensure!(
        moved.segment_ms == start.segment_ms + 3_600_000 && moved.shards.is_empty(),
        "the cursor moves past the hour read: {moved:?}"
    );
    let r = rig.change_pass()?;
    ensure!(r.code == 0, "second change pass: {}", report(&r));
    ensure!(
        r.stat("copied")? == 0 && r.summary()?["summary"]["events"] == 0,
        "{}",
        report(&r)
    );

    // The full pass is the truth: it finds what the feed missed.
    let r = rig.full_pass()?;
    ensure!(r.code == 0, "full pass: {}", report(&r));
    let target = rig.target_objects().await?;
    ensure!(
        target == source,
        "after the full pass:\n target {target:?}\n source {source:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_key_that_fails_stays_pending_and_a_hole_in_the_feed_is_refused() -> Result<()> {
    let rig = Rig::start()?;
    rig.put("a.txt", bytes(1, 10)).await?;
    let r = rig.full_pass()?;
    ensure!(r.code == 0, "first full pass: {}", report(&r));
    let h = begin_of(&rig.cursor()?)?;

    // A blob name object_store cannot carry unchanged, and a plain one.
    rig.azurite.put_raw("src", "odd//name", "x")?;
    rig.put("b.txt", bytes(2, 10)).await?;
    rig.feed
        .hour(
            h,
            &[vec![vec![vec![
                ev("BlobCreated", "odd//name", 1, h, 1),
                ev("BlobCreated", "b.txt", 2, h, 1),
            ]]]],
            &[],
        )
        .await?;
    rig.feed
        .consumable_until(h + chrono::Duration::hours(1))
        .await?;
    let r = rig.change_pass()?;
    ensure!(
        r.code == 1 && r.stdout.contains("odd//name"),
        "a key that cannot be carried fails by name: {}",
        report(&r)
    );
    let s = r.summary()?;
    ensure!(s["summary"]["pending"] == 1, "{}", report(&r));
    ensure!(
        rig.target_objects().await?.contains_key("b.txt"),
        "the other key went on"
    );
    // The next change pass tries the pending key again, and only it.
    let r = rig.change_pass()?;
    let s = r.summary()?;
    ensure!(
        r.code == 1 && s["summary"]["keys"] == 1 && s["summary"]["pending"] == 1,
        "{}",
        report(&r)
    );

    // The next hour has a hole in its shard (chunk 1 missing): refused
    // loudly, nothing of it replicated, the cursor unmoved.
    let h1 = h + chrono::Duration::hours(1);
    let before = rig.cursor()?;
    rig.put("c.txt", bytes(3, 10)).await?;
    rig.put("d.txt", bytes(4, 10)).await?;
    rig.feed
        .hour(
            h1,
            &[vec![
                vec![vec![ev("BlobCreated", "c.txt", 3, h1, 1)]],
                vec![vec![ev("BlobCreated", "d.txt", 4, h1, 2)]],
            ]],
            &[1],
        )
        .await?;
    rig.feed
        .consumable_until(h1 + chrono::Duration::hours(1))
        .await?;
    let r = rig.change_pass()?;
    ensure!(
        r.code == 1 && r.stderr.contains("chunk file 2 where 1 was expected"),
        "a hole is refused by name: {}",
        report(&r)
    );
    let target = rig.target_objects().await?;
    ensure!(
        !target.contains_key("c.txt") && !target.contains_key("d.txt"),
        "nothing after the hole: {target:?}"
    );
    ensure!(rig.cursor()? == before, "the cursor did not move");

    // A full pass repairs the target (it still names the key it cannot
    // carry, so it is not complete).
    let r = rig.full_pass()?;
    ensure!(
        r.code == 1 && r.stdout.contains("odd//name"),
        "{}",
        report(&r)
    );
    // (The source holds a key object_store cannot list: it is read key
    // by key.)
    let target = rig.target_objects().await?;
    for key in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        let got = rig.src.get(&OsPath::parse(key)?).await?.bytes().await?;
        ensure!(
            target.get(key) == Some(&blake3::hash(&got).to_hex().to_string()),
            "{key}: target {target:?}"
        );
    }
    Ok(())
}

/// A key left pending by a failed change pass, then filtered out (or given
/// to another shard) is no longer the job's: the next change pass drops
/// it instead of trying it again.
#[tokio::test]
async fn a_pending_key_the_filter_no_longer_accepts_is_dropped() -> Result<()> {
    let rig = Rig::start()?;
    rig.put("a.txt", bytes(1, 10)).await?;
    let r = rig.full_pass()?;
    ensure!(r.code == 0, "first full pass: {}", report(&r));
    let h = begin_of(&rig.cursor()?)?;
    rig.azurite.put_raw("src", "odd//name", "x")?;
    rig.feed
        .hour(
            h,
            &[vec![vec![vec![ev("BlobCreated", "odd//name", 1, h, 1)]]]],
            &[],
        )
        .await?;
    rig.feed
        .consumable_until(h + chrono::Duration::hours(1))
        .await?;
    let r = rig.change_pass()?;
    ensure!(
        r.code == 1 && r.summary()?["summary"]["pending"] == 1,
        "{}",
        report(&r)
    );
    // The job now leaves `odd/**` out.
    let excluded = || -> Result<Run> {
        let mut cmd = rig.job.command()?;
        cmd.args(["--changes", "azure-change-feed", "--exclude", "odd/**"]);
        Ok(Run::from_output(cmd.output()?))
    };
    for round in 0..2 {
        let r = excluded()?;
        let s = r.summary()?;
        ensure!(
            r.code == 0 && s["summary"]["pending"] == 0 && s["summary"]["keys"] == 0,
            "round {round}: the filtered-out key was tried again: {}",
            report(&r)
        );
    }
    ensure!(
        Manifest::open_read_only(&rig.job.state)?
            .pending_keys()?
            .is_empty(),
        "the dropped key is still recorded as pending"
    );
    Ok(())
}

#[tokio::test]
async fn a_source_account_without_a_change_feed_is_named_in_one_line() -> Result<()> {
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("src")?;
    let target = Server::start(Kind::S3sFs)?;
    target.create_bucket("dst")?;
    let job = StoreJob::new(&azurite, &azurite.endpoint, &target, "", 4)?;
    let r = job.run()?;
    ensure!(r.code == 0, "full pass: {}", report(&r));
    let mut cmd = job.command()?;
    cmd.args(["--changes", "azure-change-feed"]);
    let r = Run::from_output(cmd.output()?);
    ensure!(
        r.code == 1
            && r.stderr.lines().count() == 1
            && r.stderr.contains("is the change feed enabled"),
        "{}",
        report(&r)
    );
    Ok(())
}
