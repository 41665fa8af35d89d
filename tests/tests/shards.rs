//! Shards (`--shard K/N`): four instances with their own state
//! directories replicate one Azurite container to moto; together they read
//! every object once and write it once, as one instance does, and the
//! target holds every byte. Going from 4 to 8 shards re-reads only the
//! keys of the virtual shards that changed owner and writes none of them
//! again; shards whose state directories are lost write only what differs
//! at the target. Counted by metering proxies in front of both servers,
//! and read back from the target.

use std::collections::BTreeSet;

use anyhow::{Result, ensure};
use passeur_core::base::shard::{owner, virtual_shard};
use passeur_core::manifest::Manifest;
use passeur_tests::dataset::{self, Checks, Obj};
use passeur_tests::job::{Cost, StoreJob};
use passeur_tests::meter::Meter;
use passeur_tests::passeur;
use passeur_tests::servers::{Kind, Server};

/// A job from the metered source to the metered target, as shard `k/n`
/// (none: unsharded).
fn job(
    src: &Server,
    sm: &Meter,
    dst: &Server,
    dm: &Meter,
    shard: Option<&str>,
) -> Result<StoreJob> {
    let j = StoreJob::through(
        src,
        &sm.endpoint,
        dst,
        &dm.endpoint,
        "part-size = \"5MiB\"\n",
        16,
    )?;
    Ok(match shard {
        Some(s) => j.with_args(&["--shard", s]),
        None => j,
    })
}

fn manifest_keys(job: &StoreJob) -> Result<BTreeSet<String>> {
    let m = Manifest::open(&job.state)?;
    m.objects().map(|r| Ok(r?.0)).collect()
}

/// Every key recorded by exactly one of `shards` (shard k of their
/// number): its owner; `total` keys in all.
fn each_key_recorded_by_its_owner(shards: &[StoreJob], total: usize) -> Result<()> {
    let n = u16::try_from(shards.len())?;
    let mut seen = BTreeSet::new();
    for (k, j) in (0u16..).zip(shards) {
        for key in manifest_keys(j)? {
            ensure!(
                owner(virtual_shard(&key), n) == k,
                "shard {k}/{n} records {key:?}, not its own"
            );
            ensure!(seen.insert(key.clone()), "{key:?} recorded twice");
        }
    }
    ensure!(
        seen.len() == total,
        "{} of {total} keys recorded",
        seen.len()
    );
    Ok(())
}

/// `passeur manifest merge --json` of `shards`' state directories, and
/// `extra` arguments.
fn merge(shards: &[StoreJob], extra: &[String]) -> Result<serde_json::Value> {
    let mut args = vec!["manifest".to_owned(), "merge".into(), "--json".into()];
    args.extend(
        shards
            .iter()
            .map(|j| j.state.to_string_lossy().into_owned()),
    );
    args.extend_from_slice(extra);
    let out = passeur(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])?;
    ensure!(out.code == 0, "merge: exit {}\n{}", out.code, out.stderr);
    Ok(serde_json::from_str(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn four_shards_copy_every_key_once_and_eight_reread_only_what_moved() -> Result<()> {
    let objs: Vec<Obj> = dataset::standard(15, 400);
    let total: u64 = objs.iter().map(|o| o.data.len() as u64).sum();
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("src")?;
    dataset::seed(azurite.client("src")?.as_ref(), &objs).await?;
    let src = Meter::start(&azurite.endpoint)?;

    // One instance, for the figures four shards must add up to.
    let single = Server::start(Kind::Moto)?;
    single.create_bucket("dst")?;
    let single_meter = Meter::start(&single.endpoint)?;
    let single_job = job(&azurite, &src, &single, &single_meter, None)?;
    let alone = single_job.run_metered(&src, &single_meter, "one instance")?;
    ensure!(
        alone.read == total,
        "one instance read {} of {total} bytes",
        alone.read
    );

    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let dst = Meter::start(&moto.endpoint)?;
    let mut four = Vec::new();
    let mut sum = Cost::default();
    for k in 0..4 {
        let j = job(&azurite, &src, &moto, &dst, Some(&format!("{k}/4")))?;
        let c = j.run_metered(&src, &dst, &format!("shard {k}/4"))?;
        sum.read += c.read;
        sum.uploads += c.uploads;
        four.push(j);
    }
    // Every object read once and written once, in all.
    ensure!(
        (sum.read, sum.uploads) == (alone.read, alone.uploads),
        "four shards cost {sum:?}, one instance {alone:?}"
    );
    dataset::verify(moto.client("dst")?.as_ref(), &objs, Checks::BYTES, None).await?;
    // Each key is in exactly one shard's manifest: its owner's.
    each_key_recorded_by_its_owner(&four, objs.len())?;
    // Merged, the four manifests are the one instance's: the same root,
    // the same export line for line.
    let export = four[0].work.path().join("merged.jsonl");
    let merged = merge(
        &four,
        &["--export".into(), export.to_string_lossy().into_owned()],
    )?;
    let one_root = Manifest::open(&single_job.state)?.merkle_root()?.to_hex();
    ensure!(
        merged["root"] == one_root.as_str() && merged["shards"] == 4,
        "merged {merged}, one instance's root {one_root}"
    );
    let one_export = passeur(
        &["manifest", "export", &single_job.state.to_string_lossy()],
        &[],
    )?;
    ensure!(
        std::fs::read_to_string(&export)? == one_export.stdout,
        "the merged export differs from the one instance's"
    );
    // Three of the four shards are not the dataset.
    let three: Vec<String> = four[..3]
        .iter()
        .map(|j| j.state.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["manifest", "merge"];
    args.extend(three.iter().map(String::as_str));
    let refused = passeur(&args, &[])?;
    ensure!(
        refused.code == 2 && refused.stderr.contains("shard 3/4 is missing"),
        "three shards merged: {} {}",
        refused.code,
        refused.stderr
    );

    // Eight shards: 0–3 keep their state, 4–7 start empty. Only keys whose
    // virtual shard changed owner are read again, each by its new owner.
    let moved: Vec<&Obj> = objs
        .iter()
        .filter(|o| {
            let v = virtual_shard(&o.key);
            owner(v, 4) != owner(v, 8)
        })
        .collect();
    ensure!(
        !moved.is_empty() && moved.len() < objs.len(),
        "{} of {} keys move: the dataset does not test a reshard",
        moved.len(),
        objs.len()
    );
    let mut eight = four;
    for k in 4..8 {
        eight.push(job(&azurite, &src, &moto, &dst, Some(&format!("{k}/8")))?);
    }
    for (k, j) in (0u16..).zip(eight.iter_mut()) {
        j.set_arg("--shard", &format!("{k}/8"));
        let c = j.run_metered(&src, &dst, &format!("shard {k}/8"))?;
        let want: u64 = moved
            .iter()
            .filter(|o| owner(virtual_shard(&o.key), 8) == k)
            .map(|o| o.data.len() as u64)
            .sum();
        ensure!(
            c.read == want,
            "shard {k}/8 read {} bytes; the keys it gained hold {want}",
            c.read
        );
        // The gained keys are at the target already (their old owner wrote
        // them): compared, recorded, not written again.
        ensure!(c.uploads == 0, "shard {k}/8 wrote {} times", c.uploads);
    }
    dataset::verify(moto.client("dst")?.as_ref(), &objs, Checks::BYTES, None).await?;
    // Each manifest now holds exactly its shard's keys: shards 0–3 forgot
    // the keys they gave away.
    each_key_recorded_by_its_owner(&eight, objs.len())?;

    let merged = merge(&eight, &[])?;
    ensure!(
        merged["root"] == one_root.as_str() && merged["objects"] == objs.len(),
        "eight shards merged {merged}, one instance's root {one_root}"
    );

    // Every state directory lost; two objects were changed at the target
    // meanwhile (same sizes, other bytes): a small one keeping its
    // attributes (the HEAD cannot tell it apart: both sides are read, the
    // bytes differ, the source is read again to write it) and one of two
    // parts written without them (the HEAD tells: its source is read once).
    // The eight shards rewrite those two and nothing else.
    let target = moto.client("dst")?;
    let mut read_twice = 0u64;
    for (key, keep_attributes) in [
        ("keys/with space.txt", true),
        ("parts/part-plus-1.bin", false),
    ] {
        let o = objs.iter().find(|o| o.key == key).expect("in the dataset");
        let other: Vec<u8> = o.data.iter().map(|b| b ^ 0x5a).collect();
        let opts = object_store::PutOptions {
            attributes: if keep_attributes {
                dataset::attributes(o)
            } else {
                object_store::Attributes::new()
            },
            ..Default::default()
        };
        target
            .put_opts(&object_store::path::Path::parse(key)?, other.into(), opts)
            .await?;
        if keep_attributes {
            read_twice += o.data.len() as u64;
        }
    }
    let mut again = Cost::default();
    for (k, j) in eight.iter().enumerate() {
        std::fs::remove_dir_all(&j.state)?;
        let c = j.run_metered(&src, &dst, &format!("shard {k}/8 without its state"))?;
        again.read += c.read;
        again.uploads += c.uploads;
    }
    // Every object read once, the changed one with its attributes once
    // more to write it; written: one PUT and two parts.
    ensure!(
        (again.read, again.uploads) == (total + read_twice, 3),
        "without state: {again:?}; expected {} bytes read and 3 uploads",
        total + read_twice
    );
    dataset::verify(target.as_ref(), &objs, Checks::BYTES, None).await?;
    Ok(())
}

#[test]
fn a_shard_that_cannot_be_is_refused_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (src, dst, state) = (
        dir.path().join("s"),
        dir.path().join("t"),
        dir.path().join("st"),
    );
    std::fs::create_dir_all(&src)?;
    for (shard, says) in [
        ("4/4", "not below the number of shards"),
        ("1/0", "1 to 1024"),
        ("one/4", "K must be a number"),
        ("3", "expected K/N"),
    ] {
        let out = passeur(
            &[
                "sync",
                "--source",
                &src.to_string_lossy(),
                "--target",
                &dst.to_string_lossy(),
                "--state",
                &state.to_string_lossy(),
                "--shard",
                shard,
            ],
            &[],
        )?;
        ensure!(
            out.code == 78 && out.stderr.contains(says) && out.stderr.trim().lines().count() == 1,
            "--shard {shard}: exit {}, {}",
            out.code,
            out.stderr
        );
        ensure!(
            !dst.exists() && !state.exists(),
            "--shard {shard}: something was created"
        );
    }
    Ok(())
}

/// A local target whose state directory was lost: every file is read
/// back and compared, none is written again (same inode, same mtime),
/// except one changed at the target, which is replaced.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_state_directory_rewrites_only_what_differs_at_a_local_target() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let objs = dataset::standard(16, 50);
    let dir = tempfile::tempdir()?;
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    dataset::write_dir(&src, &objs)?;
    let state = dir.path().join("state");
    let (s, t) = (src.to_string_lossy(), dst.to_string_lossy());
    let first = passeur_tests::sync(&s, &t, &state, None)?;
    ensure!(first.code == 0, "first: {}\n{}", first.code, first.stderr);
    let changed = dst.join("keys/plus+sign.csv");
    let len = std::fs::metadata(&changed)?.len();
    std::fs::write(&changed, vec![b'z'; usize::try_from(len)?])?;
    let stamp = |p: &std::path::Path| -> Result<(u64, i64, i64)> {
        let m = std::fs::metadata(p)?;
        Ok((m.ino(), m.mtime(), m.mtime_nsec()))
    };
    let before: Vec<_> = objs
        .iter()
        .map(|o| stamp(&dst.join(&o.key)))
        .collect::<Result<_>>()?;
    std::fs::remove_dir_all(&state)?;
    let again = passeur_tests::sync(&s, &t, &state, None)?;
    ensure!(again.code == 0, "again: {}\n{}", again.code, again.stderr);
    for (o, b) in objs.iter().zip(&before) {
        let now = stamp(&dst.join(&o.key))?;
        let rewritten = now != *b;
        ensure!(
            rewritten == (o.key == "keys/plus+sign.csv"),
            "{}: rewritten {rewritten}",
            o.key
        );
    }
    let target = object_store::local::LocalFileSystem::new_with_prefix(&dst)?;
    dataset::verify(&target, &objs, Checks::BYTES, Some(&state)).await
}
