//! Objects a store refuses to read, or a target refuses to hold, fail by
//! name with the kind an operator can act on — never as a race
//! (`precondition`) or a passing fault (`transient`, retried in vain); what
//! a local source holds that is no object is passed over by name.

use anyhow::{Result, ensure};
use object_store::ObjectStoreExt;
use object_store::path::Path as OsPath;
use passeur_tests::job::StoreJob;
use passeur_tests::servers::{Kind, Server, spec, with};
use serde_json::{Value, json};

/// The failures of a run's summary.
fn failures(run: &passeur_tests::Run) -> Result<Vec<Value>> {
    Ok(run.summary()?["summary"]["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// A blob in Azure's Archive tier answers a read with 409 BlobArchived,
/// which object_store reports as "already exists": the key fails as
/// permanent, saying it must be rehydrated; its neighbour is copied.
#[tokio::test(flavor = "multi_thread")]
async fn an_archived_blob_fails_as_permanent_naming_the_tier() -> Result<()> {
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("src")?;
    azurite.sdk_build(
        "src",
        &[
            with(
                spec("cold/archived.bin", 5000, 'c'),
                "tier",
                json!("Archive"),
            ),
            spec("warm/plain.bin", 3000, 'w'),
        ],
    )?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let job = StoreJob::new(&azurite, &azurite.endpoint, &moto, "", 4)?;
    let run = job.run()?;
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stdout);
    let got = moto
        .client("dst")?
        .get(&OsPath::parse("warm/plain.bin")?)
        .await?
        .bytes()
        .await?;
    ensure!(
        got == vec![b'w'; 3000],
        "the neighbour was not copied whole"
    );
    let f = failures(&run)?;
    ensure!(
        f.len() == 1
            && f[0]["key"] == "cold/archived.bin"
            && f[0]["kind"] == "permanent"
            && f[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Archive tier")),
        "want cold/archived.bin failed as permanent, naming the Archive tier: {f:?}"
    );
    Ok(())
}

/// S3 holds `coll` and `coll/b` side by side; a directory cannot: one of
/// the two fails as permanent (a file or a directory in the way, which no
/// retry moves), named, and the other arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_a_local_target_cannot_hold_fails_as_permanent() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.sdk_build("src", &[spec("coll", 10, 'f'), spec("coll/b", 20, 'd')])?;
    let job = passeur_tests::LocalTargetJob::new(&moto.url("src"), &moto.config(), 1)?;
    let run = job.run()?;
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stdout);
    let f = failures(&run)?;
    ensure!(
        f.len() == 1 && f[0]["kind"] == "permanent",
        "want one of coll, coll/b failed as permanent: {f:?}"
    );
    let (failed, other, want) = if f[0]["key"] == "coll" {
        ("coll", "coll/b", vec![b'd'; 20])
    } else {
        ("coll/b", "coll", vec![b'f'; 10])
    };
    ensure!(
        std::fs::read(job.dst.join(other))? == want,
        "{other} did not arrive whole ({failed} failed)"
    );
    Ok(())
}

/// A local source's broken symbolic link and FIFO hold no bytes to copy:
/// the pass copies the files beside them and exits 0, and a warning names
/// each (they stay, pass after pass: their owner may want to know).
#[test]
fn a_broken_link_and_a_fifo_at_a_local_source_are_named_and_passed_over() -> Result<()> {
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("d"))?;
    std::fs::write(src.join("d/file"), b"bytes")?;
    std::os::unix::fs::symlink(work.path().join("nowhere"), src.join("d/dangling"))?;
    let fifo = std::process::Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()?;
    ensure!(fifo.success(), "mkfifo");
    let (s, d, st) = (
        src.to_string_lossy().into_owned(),
        work.path().join("dst").to_string_lossy().into_owned(),
        work.path().join("state").to_string_lossy().into_owned(),
    );
    let run = passeur_tests::passeur(
        &[
            "sync", "--source", &s, "--target", &d, "--state", &st, "--output", "json",
        ],
        &[],
    )?;
    ensure!(run.code == 0, "exit {}: {}", run.code, run.stderr);
    ensure!(
        std::fs::read(work.path().join("dst/d/file"))? == b"bytes",
        "the file beside them did not arrive"
    );
    ensure!(
        run.stat("listed")? == 1 && run.stat("copied")? == 1,
        "{}",
        run.stdout
    );
    for (name, why) in [
        ("d/dangling", "symbolic link to nothing"),
        ("pipe", "not a regular file"),
    ] {
        ensure!(
            run.stderr
                .lines()
                .any(|l| l.contains(why) && l.contains(name)),
            "{name} not named ({why}): {}",
            run.stderr
        );
    }
    Ok(())
}
