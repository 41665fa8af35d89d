//! Keys real buckets contain that object_store's paths cannot represent.

use anyhow::{Result, ensure};
use object_store::path::Path as OsPath;
use object_store::{ObjectStoreExt, PutPayload};
use passeur_tests::LocalTargetJob;
use passeur_tests::dataset::{self, Obj, numbered};
use passeur_tests::servers::{Kind, Server};

fn obj(key: &str, data: &'static [u8]) -> Obj {
    Obj {
        key: key.into(),
        data: bytes::Bytes::from_static(data),
        content_type: None,
        meta: vec![],
    }
}

/// Every key of `keys` is among the run's failures.
fn ensure_failed(run: &passeur_tests::Run, keys: &[&str], what: &str) -> Result<()> {
    let f = failures(run)?;
    for key in keys {
        ensure!(
            f.iter().any(|(k, _)| k == key),
            "{what}: {key} not failed by name: {f:?}"
        );
    }
    Ok(())
}

/// The failures of a run's summary as (key, reason).
fn failures(run: &passeur_tests::Run) -> Result<Vec<(String, String)>> {
    Ok(run.summary()?["summary"]["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["key"].as_str().unwrap_or_default().to_owned(),
                        f["reason"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Zero-byte `dir/` markers are keys object_store cannot read: each is
/// failed by its own name (exit 1), never counted as vanished with exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn directory_markers_are_failed_by_name_not_vanished() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    dataset::seed(
        moto.client("src")?.as_ref(),
        &[obj("folder/in.txt", b"inside"), obj("top.txt", b"top")],
    )
    .await?;
    // Zero-byte `dir/` markers, as consoles and some tools create them.
    moto.put_raw_keys("src", &["folder/", "empty-dir/"])?;
    let job = LocalTargetJob::new(&moto.url("src"), &moto.config(), 8)?;
    let (run, dst) = (job.run()?, &job.dst);
    ensure!(std::fs::read(dst.join("folder/in.txt"))? == b"inside");
    ensure!(std::fs::read(dst.join("top.txt"))? == b"top");
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stdout);
    let f = failures(&run)?;
    for key in ["folder/", "empty-dir/"] {
        ensure!(
            f.iter()
                .any(|(k, r)| k == key && r.contains("cannot be carried")),
            "{key} not failed by name: {f:?}"
        );
    }
    ensure!(run.stat("vanished")? == 0 && run.stat("failed")? == 2);
    // The markers were listed too: the counts add up.
    run.outcomes_add_up()?;
    // Left out by the filters, they are not the job's: excluded, exit 0.
    let out = job
        .command()?
        .args(["--exclude", "folder/", "--exclude", "empty-dir/"])
        .output()?;
    let again = passeur_tests::Run::from_output(out);
    ensure!(
        again.code == 0 && again.stat("excluded")? == 2 && again.stat("failed")? == 0,
        "excluded markers: exit {}: {}",
        again.code,
        again.stdout
    );
    again.outcomes_add_up()?;
    Ok(())
}

/// Finding 2: `photos/` with bytes is listed by object_store as `photos`,
/// after `photos.zip`; `x/` as `x`. Neither may be counted as vanished or
/// replaced by other bytes, and a listing that went backwards must never
/// drive deletes: `photos.zip` stays at the target pass after pass.
#[tokio::test(flavor = "multi_thread")]
async fn keys_object_store_rewrites_fail_by_name_and_delete_nothing() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    dataset::seed(
        moto.client("src")?.as_ref(),
        &[
            obj("photos.zip", b"zip bytes"),
            obj("photos/a.jpg", b"jpeg bytes"),
            obj("y", b"why"),
        ],
    )
    .await?;
    moto.put_raw("src", "photos/", "a folder object with bytes")?;
    moto.put_raw("src", "x/", "x slash bytes")?;
    let job = passeur_tests::job::StoreJob::new(&moto, &moto.endpoint, &moto, "", 4)?.with_args(&[
        "--delete",
        "--max-delete-fraction",
        "1",
    ]);
    let dst = moto.client("dst")?;
    for pass in 1..=2 {
        let run = job.run()?;
        for (key, data) in [
            ("photos.zip", &b"zip bytes"[..]),
            ("photos/a.jpg", b"jpeg bytes"),
            ("y", b"why"),
        ] {
            let got = dst.get(&OsPath::parse(key)?).await;
            let got = match got {
                Ok(g) => g.bytes().await?,
                Err(e) => {
                    anyhow::bail!("pass {pass}: {key} lost at the target: {e}\n{}", run.stdout)
                }
            };
            ensure!(
                blake3::hash(&got) == blake3::hash(data),
                "pass {pass}: {key} differs at the target"
            );
        }
        ensure!(
            dst.head(&OsPath::parse("x")?).await.is_err(),
            "pass {pass}: x/ was written as x"
        );
        ensure!(
            run.code == 1,
            "pass {pass}: exit {}: {}",
            run.code,
            run.stdout
        );
        let f = failures(&run)?;
        ensure!(
            f.iter().any(|(k, _)| k == "photos/") && f.iter().any(|(k, _)| k == "x/"),
            "pass {pass}: photos/ and x/ must be failed by their own names: {f:?}"
        );
        ensure!(run.stat("vanished")? == 0 && run.stat("deleted")? == 0);
    }
    Ok(())
}

/// Finding 4: a listing that fails part-way, every time (here the store
/// refuses every request for a second page), leaves no checkpoint behind
/// the failure: the next pass lists from the first key again and reads
/// what changed there, instead of failing at once forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_listing_leaves_the_next_pass_the_whole_key_space() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    let src = moto.client("src")?;
    let objs = numbered(|i| format!("a{i:04}"), "object", 1200);
    dataset::seed(src.as_ref(), &objs).await?;
    let meter = passeur_tests::meter::Meter::start(&moto.endpoint)?;
    meter.refuse_next_pages(true);
    let cfg = moto.config().replace(&moto.endpoint, &meter.endpoint);
    let job = LocalTargetJob::new(&moto.url("src"), &cfg, 8)?;
    let first = job.run()?;
    ensure!(first.code == 1, "exit {}: {}", first.code, first.stdout);
    let copied = first.stat("copied")?;
    ensure!(
        copied >= 1000,
        "the first page should have been copied: {copied}"
    );
    src.put(
        &OsPath::parse("a0000")?,
        PutPayload::from_static(b"changed"),
    )
    .await?;
    let second = job.run()?;
    let got = std::fs::read(job.dst.join("a0000"))?;
    ensure!(
        got == b"changed",
        "a0000 stale at the target after the second pass (exit {}): {}",
        second.code,
        second.stdout
    );
    ensure!(
        second.code == 1,
        "the listing still fails: {}",
        second.stdout
    );
    ensure!(
        second.summary()?["summary"]["listing_error"].is_string(),
        "{}",
        second.stdout
    );
    // Once the store answers again, a pass lists everything: complete.
    meter.refuse_next_pages(false);
    let third = job.run()?;
    ensure!(third.code == 0, "{}", third.stdout);
    for o in &objs[1..] {
        ensure!(std::fs::read(job.dst.join(&o.key))? == o.data, "{}", o.key);
    }
    Ok(())
}

/// Finding 2: one `m//x` key (object_store rejects the listing page that
/// holds it) must not hide its neighbours: the store's own listing names
/// it as failed and every other key of the page is replicated.
#[tokio::test(flavor = "multi_thread")]
async fn an_unparseable_key_fails_alone_and_its_neighbours_are_replicated() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    let objs = numbered(|i| format!("m/{i:03}"), "neighbour", 200);
    dataset::seed(moto.client("src")?.as_ref(), &objs).await?;
    moto.put_raw_keys("src", &["m//x", "m/./y", "/lead"])?;
    let job = LocalTargetJob::new(&moto.url("src"), &moto.config(), 8)?;
    for pass in 1..=2 {
        let run = job.run()?;
        for o in &objs {
            ensure!(
                std::fs::read(job.dst.join(&o.key))? == o.data,
                "pass {pass}: {} not replicated: {}",
                o.key,
                run.stdout
            );
        }
        ensure!(run.code == 1, "pass {pass}: exit {}", run.code);
        ensure_failed(&run, &["m//x", "m/./y", "/lead"], &format!("pass {pass}"))?;
        ensure!(
            run.summary()?["summary"]["listing_error"].is_null(),
            "{}",
            run.stdout
        );
    }
    Ok(())
}

/// The mission's source: Azure blob names object_store cannot carry fail by
/// name, and their neighbours are replicated (Azurite → moto).
#[tokio::test(flavor = "multi_thread")]
async fn azure_names_object_store_cannot_carry_fail_alone() -> Result<()> {
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("src")?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let objs = numbered(|i| format!("m/{i:03}"), "neighbour", 50);
    dataset::seed(azurite.client("src")?.as_ref(), &objs).await?;
    for key in ["m//x", "folder/"] {
        azurite.put_raw("src", key, "odd bytes")?;
    }
    let job = passeur_tests::job::StoreJob::new(&azurite, &azurite.endpoint, &moto, "", 4)?;
    let run = job.run()?;
    let dst = moto.client("dst")?;
    for o in &objs {
        let got = dst.get(&OsPath::parse(&o.key)?).await?.bytes().await?;
        ensure!(
            got == o.data,
            "{} differs at the target: {}",
            o.key,
            run.stdout
        );
    }
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stdout);
    ensure_failed(&run, &["m//x", "folder/"], "Azurite")?;
    Ok(())
}

/// Keys the listing carries URL-encoded (`encoding-type=url`): spaces,
/// `+` and `%` must come back as they are, or the object is read under
/// another key, found missing and taken for vanished.
#[tokio::test(flavor = "multi_thread")]
async fn spaces_plus_and_percent_in_keys_arrive_byte_for_byte() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    let keys = [
        "a b+c",
        "plus+only",
        "sp ace/x y",
        "100%",
        "%2B literal",
        "café/é",
    ];
    for k in keys {
        moto.put_raw("src", k, &format!("bytes of {k}"))?;
    }
    let job = passeur_tests::job::StoreJob::new(&moto, &moto.endpoint, &moto, "", 4)?;
    let run = job.run()?;
    ensure!(run.code == 0, "exit {}: {}", run.code, run.stdout);
    ensure!(run.stat("vanished")? == 0, "{}", run.stdout);
    let dst = moto.client("dst")?;
    for k in keys {
        let got = dst.get(&OsPath::parse(k)?).await?.bytes().await?;
        ensure!(
            blake3::hash(&got) == blake3::hash(format!("bytes of {k}").as_bytes()),
            "{k:?} differs at the target"
        );
    }
    Ok(())
}

/// s3s-fs answers `EncodingType=url` without encoding its keys. A page
/// whose keys only hold `+` and `%` (nothing no encoder would leave as it
/// is) was decoded: `a+b` listed as `a b`, `percent%41` as `percentA`, so
/// the source's keys failed as misread and the target's verification found
/// them missing. Which servers echo is now decided against the server
/// before any such key is decoded, once per store, for every range lister.
#[tokio::test(flavor = "multi_thread")]
async fn s3s_fs_keys_with_plus_and_percent_list_as_they_are() -> Result<()> {
    let s3s = Server::start(Kind::S3sFs)?;
    s3s.create_bucket("src")?;
    s3s.create_bucket("dst")?;
    // More than one page (1,000 keys), none of them giving the server away.
    let mut objs = numbered(|i| format!("live/a+b=c/{i:04}"), "plus", 1100);
    objs.push(obj("keys/percent%41.dat", b"percent"));
    objs.push(obj("keys/plain.dat", b"plain"));
    dataset::seed(s3s.client("src")?.as_ref(), &objs).await?;
    let job = passeur_tests::job::StoreJob::new(&s3s, &s3s.endpoint, &s3s, "", 8)?;
    for pass in 0..2 {
        let run = job.run()?;
        ensure!(
            run.code == 0,
            "pass {pass}: exit {}: {}",
            run.code,
            run.stdout
        );
        ensure!(run.stat("vanished")? == 0, "pass {pass}: {}", run.stdout);
    }
    let dst = s3s.client("dst")?;
    for o in &objs {
        let got = dst.get(&OsPath::parse(&o.key)?).await?.bytes().await?;
        ensure!(
            blake3::hash(&got) == blake3::hash(&o.data),
            "{:?} differs at the target",
            o.key
        );
    }
    let mut want: Vec<String> = objs.iter().map(|o| o.key.clone()).collect();
    want.sort();
    ensure!(
        dataset::keys(dst.as_ref()).await? == want,
        "target keys differ"
    );
    // Verification lists the s3s-fs target with the raw lister too.
    let (run, report) = job.verify_deep(&s3s, &s3s)?;
    ensure!(
        run.code == 0,
        "verify exit {}: {}\n{report}",
        run.code,
        run.stdout
    );
    Ok(())
}

/// A local source holding files whose names object_store cannot carry (a
/// newline, bytes that are not UTF-8, a staging-file name): each fails by
/// name, every other file arrives byte for byte, pass after pass.
/// object_store's own listing ended at the first such name and hid every
/// file walked after it, and left staging-file names out silently.
#[test]
fn local_names_object_store_cannot_carry_fail_alone() -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let src = tempfile::tempdir()?;
    let mut files = Vec::new();
    for i in 0..400 {
        let rel = format!("d{}/f{i:03}", i % 4);
        let p = src.path().join(&rel);
        std::fs::create_dir_all(p.parent().unwrap_or(src.path()))?;
        std::fs::write(&p, format!("file {i}"))?;
        files.push(rel);
    }
    std::fs::write(src.path().join("d2/new\nline"), b"n")?;
    // Named like object_store's staging files, which its listing left out:
    // the pass exited 0 without them.
    std::fs::write(src.path().join("d1/invoice#1234"), b"i")?;
    std::fs::write(
        src.path()
            .join(std::ffi::OsStr::from_bytes(b"not-utf8-\xff")),
        b"u",
    )?;
    let job = LocalTargetJob::new(&src.path().to_string_lossy(), "", 8)?;
    for pass in 1..=2 {
        let run = job.run()?;
        for rel in &files {
            let want = std::fs::read(src.path().join(rel))?;
            let got = std::fs::read(job.dst.join(rel)).unwrap_or_default();
            ensure!(
                blake3::hash(&got) == blake3::hash(&want),
                "pass {pass}: {rel} not replicated: {}",
                run.stderr
            );
        }
        ensure!(run.code == 1, "pass {pass}: exit {}", run.code);
        ensure_failed(
            &run,
            &["d2/new\nline", "not-utf8-\u{fffd}", "d1/invoice#1234"],
            &format!("pass {pass}"),
        )?;
        let copied = walk_count(&job.dst)?;
        ensure!(
            copied == files.len(),
            "pass {pass}: {copied} files at the target"
        );
    }
    Ok(())
}

/// Files under `dir`, however deep.
fn walk_count(dir: &std::path::Path) -> Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        n += if e.file_type()?.is_dir() {
            walk_count(&e.path())?
        } else {
            1
        };
    }
    Ok(n)
}
