//! Range shards (`--shard K/N --shard-ranges FILE`): the key space cut at
//! keys learned from a previous pass (`passeur manifest ranges`), each of
//! four instances listing only its own range of an Azurite container and
//! replicating it to moto. Together they read every object once and write
//! it once, as one instance does; each lists about a quarter of the names
//! (a hash shard lists them all); the merged root equals the one
//! instance's. Counted by metering proxies in front of both servers, and
//! read back from the target.

use std::collections::BTreeSet;

use anyhow::{Result, ensure};
use passeur_core::base::ranges::Ranges;
use passeur_core::manifest::Manifest;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::{Cost, StoreJob};
use passeur_tests::meter::Meter;
use passeur_tests::passeur;
use passeur_tests::servers::{Kind, Server};

#[tokio::test(flavor = "multi_thread")]
async fn range_shards_list_only_their_range_and_copy_every_key_once() -> Result<()> {
    let objs: Vec<Obj> = dataset::standard(16, 400);
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("src")?;
    dataset::seed(azurite.client("src")?.as_ref(), &objs).await?;
    let src = Meter::start(&azurite.endpoint)?;

    // One instance: the figures four shards must add up to, and the keys
    // the ranges are learned from.
    let single = Server::start(Kind::Moto)?;
    single.create_bucket("dst")?;
    let single_meter = Meter::start(&single.endpoint)?;
    let config = "part-size = \"5MiB\"\n";
    let single_job = StoreJob::through(
        &azurite,
        &src.endpoint,
        &single,
        &single_meter.endpoint,
        config,
        16,
    )?;
    let alone = single_job.run_metered(&src, &single_meter, "one instance")?;
    ensure!(alone.listed == objs.len() as u64, "{alone:?}");

    let file = single_job.work.path().join("ranges.json");
    let (state, out) = (
        single_job.state.to_string_lossy().into_owned(),
        file.to_string_lossy().into_owned(),
    );
    let learned = passeur(
        &["manifest", "ranges", &state, "--shards", "4", "--out", &out],
        &[],
    )?;
    ensure!(
        learned.code == 0,
        "manifest ranges: exit {}\n{}",
        learned.code,
        learned.stderr
    );
    let ranges = Ranges::read(&file)?;
    ensure!(ranges.shards() == 4, "{ranges:?}");

    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let dst = Meter::start(&moto.endpoint)?;
    let mut four = Vec::new();
    let mut sum = Cost::default();
    for k in 0..4u16 {
        let j = StoreJob::through(&azurite, &src.endpoint, &moto, &dst.endpoint, config, 16)?
            .with_args(&["--shard", &format!("{k}/4"), "--shard-ranges", &out]);
        let c = j.run_metered(&src, &dst, &format!("range shard {k}/4"))?;
        let mine = objs.iter().filter(|o| ranges.owner(&o.key) == k).count() as u64;
        // Its range's names, none of the others'.
        ensure!(
            c.listed == mine && mine > 0 && mine < objs.len() as u64 / 2,
            "range shard {k}/4 listed {} names; its range holds {mine} of {}",
            c.listed,
            objs.len()
        );
        sum.read += c.read;
        sum.uploads += c.uploads;
        sum.listed += c.listed;
        four.push(j);
    }
    // Every object read once and written once, every name listed once.
    ensure!(
        sum == alone,
        "four range shards cost {sum:?}, one instance {alone:?}"
    );
    dataset::verify(moto.client("dst")?.as_ref(), &objs, Checks::BYTES, None).await?;

    // Each key recorded once, by the shard whose range holds it.
    let mut seen = BTreeSet::new();
    for (k, j) in (0u16..).zip(&four) {
        for r in Manifest::open(&j.state)?.objects() {
            let key = r?.0;
            ensure!(ranges.owner(&key) == k, "shard {k} records {key:?}");
            ensure!(seen.insert(key.clone()), "{key:?} recorded twice");
        }
    }
    ensure!(seen.len() == objs.len(), "{} keys recorded", seen.len());

    // The merged root is the one instance's.
    let mut args = vec!["manifest".to_owned(), "merge".into(), "--json".into()];
    args.extend(four.iter().map(|j| j.state.to_string_lossy().into_owned()));
    let merged = passeur(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])?;
    ensure!(merged.code == 0, "merge: {}", merged.stderr);
    let merged: serde_json::Value = serde_json::from_str(&merged.stdout)?;
    let one_root = Manifest::open(&single_job.state)?.merkle_root()?.to_hex();
    ensure!(
        merged["root"] == one_root.as_str() && merged["objects"] == objs.len(),
        "merged {merged}, one instance's root {one_root}"
    );

    // A second pass of each: nothing read or written, its range listed again.
    for (k, j) in (0u16..).zip(&four) {
        let c = j.run_metered(&src, &dst, &format!("range shard {k}/4 again"))?;
        ensure!(
            c.read == 0 && c.uploads == 0 && c.listed > 0 && c.listed < objs.len() as u64 / 2,
            "range shard {k}/4, second pass: {c:?}"
        );
    }

    // A ranges file for another count of shards is refused by name.
    let bad = StoreJob::through(&azurite, &src.endpoint, &moto, &dst.endpoint, config, 16)?
        .with_args(&["--shard", "0/3", "--shard-ranges", &out]);
    let r = bad.run()?;
    ensure!(
        r.code == 78 && r.stderr.contains("into 4 ranges, not 3"),
        "a ranges file of 4 with 0/3: exit {}: {}",
        r.code,
        r.stderr
    );
    Ok(())
}
