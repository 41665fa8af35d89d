//! Deletes at the target: off by default; with `--delete`, objects gone from
//! the source are deleted (or moved under a trash prefix) after a complete
//! listing; refused when the source lists nothing or when more than the
//! allowed fraction would go.

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_tests::dataset::{self, Obj};
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur};

const N: usize = 50;

async fn delete_at(store: &dyn ObjectStore, keys: &[String]) -> Result<()> {
    for k in keys {
        store.delete(&OsPath::parse(k)?).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_follow_the_source_within_the_guards() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    let objs: Vec<Obj> = (0..N)
        .map(|i| Obj {
            key: format!("d/{i:03}"),
            data: Bytes::from(format!("object {i}")),
            content_type: None,
            meta: vec![],
        })
        .collect();
    let (src, dst) = (moto.client("src")?, moto.client("dst")?);
    dataset::seed(src.as_ref(), &objs).await?;
    let work = tempfile::tempdir()?;
    let cfg = work.path().join("c.toml");
    std::fs::write(&cfg, format!("[source]\n{0}[target]\n{0}", moto.config()))?;
    let state = work.path().join("state").to_string_lossy().into_owned();
    let cfg = cfg.to_string_lossy().into_owned();
    let sync = |extra: &[&str]| -> Result<Run> {
        let mut args = vec![
            "sync", "--source", "s3://src", "--target", "s3://dst", "--state", &state, "--config",
            &cfg, "--output", "json",
        ];
        args.extend_from_slice(extra);
        passeur(&args, &[])
    };
    let keys = |r: std::ops::Range<usize>| r.map(|i| format!("d/{i:03}")).collect::<Vec<_>>();
    let at_target = || async { dataset::keys(dst.as_ref()).await };

    let first = sync(&["--delete"])?;
    ensure!(first.code == 0, "{}\n{}", first.stdout, first.stderr);
    ensure!(at_target().await?.len() == N);

    // Deletes off (the default): nothing is deleted at the target.
    delete_at(src.as_ref(), &keys(0..3)).await?;
    let off = sync(&[])?;
    ensure!(off.code == 0 && off.stat("deleted")? == 0, "{}", off.stdout);
    ensure!(at_target().await?.len() == N, "deleted without --delete");

    // On: the three go, the rest stays.
    let on = sync(&["--delete"])?;
    ensure!(on.code == 0, "{}\n{}", on.stdout, on.stderr);
    ensure!(on.stat("deleted")? == 3, "{}", on.stdout);
    ensure!(at_target().await? == keys(3..N), "target after deletes");

    // Trash prefix (left out of the job): moved under one folder named by
    // the pass's deletion time, bytes kept.
    delete_at(src.as_ref(), &keys(3..5)).await?;
    let trash = sync(&[
        "--delete",
        "--trash-prefix",
        "trash",
        "--exclude",
        "trash/**",
    ])?;
    ensure!(
        trash.code == 0 && trash.stat("deleted")? == 2,
        "{}",
        trash.stdout
    );
    let now = at_target().await?;
    let trashed: Vec<&String> = now.iter().filter(|k| k.starts_with("trash/")).collect();
    let stamp = trashed
        .first()
        .and_then(|k| k.split('/').nth(1))
        .unwrap_or_default()
        .to_owned();
    ensure!(
        stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
        "trash folder {stamp:?}"
    );
    let mut want = keys(5..N);
    want.extend(keys(3..5).iter().map(|k| format!("trash/{stamp}/{k}")));
    want.sort();
    ensure!(now == want, "after trash: {now:?}");
    let kept = dst
        .get(&OsPath::parse(format!("trash/{stamp}/d/004"))?)
        .await?
        .bytes()
        .await?;
    ensure!(kept.as_ref() == b"object 4", "trash copy differs");

    // More than 10 % at once: refused, nothing deleted, exit 1.
    delete_at(src.as_ref(), &keys(5..15)).await?;
    let many = sync(&["--delete"])?;
    let refused = many.summary()?["summary"]["deletes_refused"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        many.code == 1 && refused.contains("max-delete-fraction") && many.stat("deleted")? == 0,
        "{}",
        many.stdout
    );
    ensure!(
        at_target().await?.len() == now.len(),
        "refused pass deleted"
    );
    // A higher limit lets them go.
    let allowed = sync(&["--delete", "--max-delete-fraction", "0.5"])?;
    ensure!(
        allowed.code == 0 && allowed.stat("deleted")? == 10,
        "{}",
        allowed.stdout
    );

    // The source emptied: refused.
    delete_at(src.as_ref(), &keys(15..N)).await?;
    let empty = sync(&["--delete", "--max-delete-fraction", "1"])?;
    let refused = empty.summary()?["summary"]["deletes_refused"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        empty.code == 1 && refused.contains("listed no objects"),
        "{}",
        empty.stdout
    );
    ensure!(
        at_target()
            .await?
            .iter()
            .filter(|k| k.starts_with("d/"))
            .count()
            == N - 15,
        "emptied source deleted the replica"
    );
    Ok(())
}

/// A local-directory source lists in no order: its deletes go by mark and
/// sweep, with the same guards.
#[test]
fn local_directory_source_deletes_by_mark_and_sweep() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    for i in 0..30 {
        let p = src.join(format!("d{}/f{i:02}", i % 3));
        std::fs::create_dir_all(p.parent().unwrap_or(&src))?;
        std::fs::write(p, format!("file {i}"))?;
    }
    let (s, d) = (src.to_string_lossy(), dst.to_string_lossy());
    let state = work.path().join("state").to_string_lossy().into_owned();
    let sync = || {
        passeur(
            &[
                "sync", "--source", &s, "--target", &d, "--state", &state, "--output", "json",
                "--delete",
            ],
            &[],
        )
    };
    let first = sync()?;
    ensure!(
        first.code == 0 && first.stat("copied")? == 30,
        "{}",
        first.stderr
    );
    std::fs::remove_file(src.join("d1/f01"))?;
    std::fs::remove_file(src.join("d2/f29"))?;
    let second = sync()?;
    ensure!(second.code == 0, "{}\n{}", second.stdout, second.stderr);
    ensure!(second.stat("deleted")? == 2, "{}", second.stdout);
    ensure!(
        !dst.join("d1/f01").exists() && !dst.join("d2/f29").exists(),
        "deleted at the source, still at the target"
    );
    ensure!(dst.join("d1/f04").exists(), "a listed file was deleted");
    // Unchanged source: nothing more goes.
    let third = sync()?;
    ensure!(
        third.code == 0 && third.stat("deleted")? == 0,
        "{}",
        third.stdout
    );
    // Emptied: refused, the replica stays.
    std::fs::remove_dir_all(&src)?;
    std::fs::create_dir_all(&src)?;
    let empty = sync()?;
    ensure!(
        empty.code == 1 && empty.stat("deleted")? == 0,
        "{}",
        empty.stdout
    );
    ensure!(
        dst.join("d1/f04").exists(),
        "emptied source deleted the replica"
    );
    Ok(())
}

/// The trash keeps every deleted version: a key deleted, recreated and
/// deleted again leaves two trashed objects, each with its bytes; a trash
/// prefix the job would replicate into is refused with one line.
#[tokio::test(flavor = "multi_thread")]
async fn trash_keeps_every_deleted_version() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    let (src, dst) = (moto.client("src")?, moto.client("dst")?);
    let put = |key: &str, data: &'static [u8]| {
        let src = std::sync::Arc::clone(&src);
        let key = key.to_owned();
        async move {
            src.put(&OsPath::parse(&key)?, PutPayload::from_static(data))
                .await?;
            anyhow::Ok(())
        }
    };
    for i in 0..4 {
        put(&format!("keep/{i}"), b"kept").await?;
    }
    put("x", b"first version of x").await?;
    // A source key under the trash prefix: never replicated into the trash.
    put(".trash/x", b"a source key named like trash").await?;
    let work = tempfile::tempdir()?;
    let cfg = work.path().join("c.toml");
    std::fs::write(&cfg, format!("[source]\n{0}[target]\n{0}", moto.config()))?;
    let state = work.path().join("state").to_string_lossy().into_owned();
    let cfg = cfg.to_string_lossy().into_owned();
    let sync = |extra: &[&str]| -> Result<Run> {
        let mut args = vec![
            "sync",
            "--source",
            "s3://src",
            "--target",
            "s3://dst",
            "--state",
            &state,
            "--config",
            &cfg,
            "--output",
            "json",
            "--delete",
            "--max-delete-fraction",
            "1",
            "--trash-prefix",
            ".trash",
        ];
        args.extend_from_slice(extra);
        passeur(&args, &[])
    };
    let mut problems = Vec::new();

    // The job would replicate `.trash/x` into its own trash: refused, one line.
    let overlap = sync(&[])?;
    if overlap.code != 78 || overlap.stderr.trim().lines().count() != 1 {
        problems.push(format!(
            "sync with a trash prefix the job replicates into: exit {} (want 78), stderr {:?}",
            overlap.code, overlap.stderr
        ));
    }
    let excluded = ["--exclude", ".trash/**"];
    let first = sync(&excluded)?;
    ensure!(first.code == 0, "{}\n{}", first.stdout, first.stderr);

    // Delete x, pass; recreate it with other bytes, pass; delete it again, pass.
    src.delete(&OsPath::parse("x")?).await?;
    let gone = sync(&excluded)?;
    ensure!(
        gone.code == 0 && gone.stat("deleted")? == 1,
        "{}\n{}",
        gone.stdout,
        gone.stderr
    );
    put("x", b"second version of x").await?;
    let back = sync(&excluded)?;
    ensure!(
        back.code == 0 && back.stat("copied")? == 1,
        "{}",
        back.stdout
    );
    src.delete(&OsPath::parse("x")?).await?;
    let again = sync(&excluded)?;
    ensure!(
        again.code == 0 && again.stat("deleted")? == 1,
        "{}\n{}",
        again.stdout,
        again.stderr
    );

    // Independent read: both versions are in the trash with their bytes,
    // and nothing else is (the source's `.trash/x` was not replicated).
    let mut trashed = Vec::new();
    for key in dataset::keys(dst.as_ref()).await? {
        if key.starts_with(".trash/") {
            let bytes = dst.get(&OsPath::parse(&key)?).await?.bytes().await?;
            trashed.push((key, blake3::hash(&bytes)));
        }
    }
    let mut want = vec![
        blake3::hash(b"first version of x"),
        blake3::hash(b"second version of x"),
    ];
    want.sort_by_key(|h| *h.as_bytes());
    let mut got: Vec<blake3::Hash> = trashed.iter().map(|(_, h)| *h).collect();
    got.sort_by_key(|h| *h.as_bytes());
    if got != want {
        problems.push(format!(
            "trash holds {trashed:?}; want the two versions of x"
        ));
    }
    ensure!(
        !dataset::keys(dst.as_ref()).await?.contains(&"x".to_owned()),
        "x still at the target"
    );

    // `config check`: the same overlap in a service job, one line, exit 78;
    // excluded, it is fine.
    let job = |exclude: &str| {
        format!(
            "state-dir = \"{}\"\n[[job]]\nname = \"j\"\n{exclude}[job.source]\nurl = \"s3://src\"\n{1}[job.target]\nurl = \"s3://dst\"\n{1}[job.delete]\nenabled = true\ntrash-prefix = \".trash\"\n",
            work.path().join("svc").display(),
            moto.config()
        )
    };
    let svc = work.path().join("svc.toml");
    let svc_s = svc.to_string_lossy().into_owned();
    std::fs::write(&svc, job(""))?;
    let check = passeur(&["config", "check", &svc_s], &[])?;
    if check.code != 78
        || check.stderr.trim().lines().count() != 1
        || !check.stderr.contains("trash-prefix")
    {
        problems.push(format!(
            "config check of an overlapping trash prefix: exit {}, stderr {:?}",
            check.code, check.stderr
        ));
    }
    std::fs::write(&svc, job("exclude = [\".trash/**\"]\n"))?;
    let check = passeur(&["config", "check", &svc_s], &[])?;
    ensure!(check.code == 0, "excluded trash refused: {}", check.stderr);
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
