//! Deletes at the target: off by default; with `--delete`, objects gone from
//! the source are deleted (or moved under a trash prefix) after a complete
//! listing; refused when the source lists nothing or when more than the
//! allowed fraction would go.

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt};
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

    // Trash prefix: moved, bytes kept.
    delete_at(src.as_ref(), &keys(3..5)).await?;
    let trash = sync(&["--delete", "--trash-prefix", "trash"])?;
    ensure!(
        trash.code == 0 && trash.stat("deleted")? == 2,
        "{}",
        trash.stdout
    );
    let now = at_target().await?;
    let mut want = keys(5..N);
    want.extend(keys(3..5).iter().map(|k| format!("trash/{k}")));
    want.sort();
    ensure!(now == want, "after trash: {now:?}");
    let kept = dst
        .get(&OsPath::parse("trash/d/004")?)
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
