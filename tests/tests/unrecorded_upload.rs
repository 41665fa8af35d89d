//! A run killed after the target created a multipart upload and before
//! passeur recorded its id (the moment a random kill met in CI once) must
//! not leave that upload open for ever: the next run finds it by its key
//! and aborts it, and copies the object. A proxy in front of the target
//! holds the answer to CreateMultipartUpload — the server has created the
//! upload, passeur does not know its id yet — and the run is killed then.
//! Checked with an independent client (boto3's ListMultipartUploads) and
//! independent reads of the target (bytes, BLAKE3). Other clients'
//! uploads stay open: of other keys (one of them a key the object's key is
//! a prefix of), and of the same key once it holds a part.
//!
//! The same when the create's answer is lost and object_store sends it
//! again: the server then holds two uploads, one recorded; the other is
//! aborted once the object is copied, in the same run.
//!
//! Under a prefix of the target's URL the upload is looked for, listed,
//! and aborted at the object's own path (the proxy sees every request
//! naming an upload), and another client's upload of the same key without
//! the prefix stays open.
//!
//! A target that will not list uploads (s3s-fs answers 501) gets a warning
//! naming the key, and the run goes on.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use passeur_tests::Run;
use passeur_tests::dataset::{self, Checks, Obj, PART};
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::netfault::percent_decode;
use passeur_tests::servers::{Kind, Server};

/// A key with a space, a `+`, a `%` and non-ASCII letters.
const KEY: &str = "big/été +%41 x.bin";

fn objects() -> Vec<Obj> {
    vec![
        Obj::random(KEY, 2 * PART + 7, 61),
        Obj::random("empty", 0, 62),
        Obj::random("small/a.txt", 1000, 63),
    ]
}

/// Run `job` until the target has answered its first CreateMultipartUpload
/// (the answer held by `target`), then SIGKILL it.
fn kill_after_create(job: &StoreJob, target: &Meter) -> Result<()> {
    target.hold_answers(Some(("POST", "?uploads")));
    let mut child = job
        .command()?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let held = target.wait_held_answers(1, Duration::from_secs(60));
    let ended = child.try_wait()?;
    child.kill()?;
    child.wait()?;
    target.hold_answers(None);
    held?;
    ensure!(ended.is_none(), "the run ended before the kill: {ended:?}");
    Ok(())
}

/// Run `job` again: it must succeed and leave the target holding
/// `objs`, read back from `target`'s bucket `dst`.
async fn rerun_and_verify(job: &StoreJob, target: &Server, objs: &[Obj]) -> Result<Run> {
    let run = job.run()?;
    ensure!(
        run.code == 0,
        "the next run failed (exit {}): {}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    dataset::verify(
        target.client("dst")?.as_ref(),
        objs,
        Checks::BYTES,
        Some(&job.state),
    )
    .await?;
    Ok(run)
}

/// moto holding `objs` in `src`, an empty `dst` behind a proxy, and a job
/// copying one to the other through it.
async fn moto_job(objs: &[Obj]) -> Result<(Server, Meter, StoreJob)> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    dataset::seed(moto.client("src")?.as_ref(), objs).await?;
    let target = Meter::start(&moto.endpoint)?;
    let job = StoreJob::through(
        &moto,
        &moto.endpoint,
        &moto,
        &target.endpoint,
        "part-size = \"5MiB\"\n",
        1,
    )?;
    Ok((moto, target, job))
}

/// `run` aborted `want` uploads it found unrecorded, by its own count.
fn aborted_by(run: &Run, want: u64) -> Result<()> {
    let aborted = run.stat("uploads_unrecorded_aborted")?;
    ensure!(
        aborted == want,
        "uploads_unrecorded_aborted {aborted}, want {want}: {}",
        run.stderr
    );
    Ok(())
}

/// The keys of "key upload-id" lines.
fn keys(uploads: &[String]) -> Vec<&str> {
    let mut k: Vec<&str> = uploads
        .iter()
        .map(|u| u.rsplit_once(' ').map_or(u.as_str(), |(k, _)| k))
        .collect();
    k.sort_unstable();
    k
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_created_and_never_recorded_is_aborted_by_the_next_run() -> Result<()> {
    let objs = objects();
    let (moto, target, job) = moto_job(&objs).await?;
    // Other clients' uploads: of a key KEY is a prefix of, of another
    // key, and one of KEY itself that holds a part.
    let longer = format!("{KEY}.part");
    let mut others = vec![longer.as_str(), "big/another.bin", KEY];
    others.sort_unstable();
    for k in &others {
        moto.create_upload("dst", k, *k == KEY)?;
    }

    kill_after_create(&job, &target)?;
    let open = moto.open_uploads("dst")?;
    let mut want = others.clone();
    want.push(KEY);
    want.sort_unstable();
    ensure!(
        keys(&open) == want,
        "after the kill: open uploads {open:?}, want the killed run's and the three others"
    );

    let run = rerun_and_verify(&job, &moto, &objs).await?;
    aborted_by(&run, 1)?;
    let open = moto.open_uploads("dst")?;
    ensure!(
        keys(&open) == others,
        "open uploads {open:?}: want only the other clients' {others:?}"
    );

    // Nothing left to look for: the pass after that aborts nothing.
    let again = job.run()?;
    ensure!(
        again.code == 0 && again.stat("copied")? == 0 && aborted_by(&again, 0).is_ok(),
        "the pass after: exit {}: {}",
        again.code,
        again.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_cannot_list_uploads_gets_a_warning_naming_the_key() -> Result<()> {
    let objs = objects();
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    dataset::seed(moto.client("src")?.as_ref(), &objs).await?;
    let s3s = Server::start(Kind::S3sFs)?;
    s3s.create_bucket("dst")?;
    let target = Meter::start(&s3s.endpoint)?;
    let job = StoreJob::through(
        &moto,
        &moto.endpoint,
        &s3s,
        &target.endpoint,
        "part-size = \"5MiB\"\n",
        1,
    )?;

    kill_after_create(&job, &target)?;
    let run = rerun_and_verify(&job, &s3s, &objs).await?;
    ensure!(
        run.stderr
            .lines()
            .any(|l| l.contains("will not list open multipart uploads")
                && l.contains("été +%41 x.bin")),
        "no warning naming the key: {}",
        run.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_whose_answer_was_lost_leaves_no_upload_open() -> Result<()> {
    let objs = objects();
    let (moto, target, job) = moto_job(&objs).await?;
    target.lose_answer_to("POST", "?uploads");
    let run = rerun_and_verify(&job, &moto, &objs).await?;
    ensure!(target.lost_answers() == 1, "no answer was lost");
    aborted_by(&run, 1)?;
    let open = moto.open_uploads("dst")?;
    ensure!(open.is_empty(), "uploads left open: {open:?}");
    Ok(())
}

/// A prefix of the target's URL with a space and a letter beyond ASCII.
const PREFIX: &str = "arch ive/2026-é";

/// `s` with its `%XX` escapes decoded (a request path, as the server
/// reads it).
fn decoded(s: &str) -> Result<String> {
    percent_decode(s).with_context(|| format!("{s:?} does not decode to UTF-8"))
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_target_prefix_the_unrecorded_upload_is_found_at_its_own_path() -> Result<()> {
    let objs = objects();
    let (moto, target, mut job) = moto_job(&objs).await?;
    job.set_arg("--target", &moto.url(&format!("dst/{PREFIX}")));
    let full = format!("{PREFIX}/{KEY}");
    // Another client's upload of the key without the prefix.
    moto.create_upload("dst", KEY, false)?;

    kill_after_create(&job, &target)?;
    let open = moto.open_uploads("dst")?;
    let mut want = vec![KEY, full.as_str()];
    want.sort_unstable();
    ensure!(keys(&open) == want, "after the kill: open uploads {open:?}");

    let run = job.run()?;
    ensure!(run.code == 0, "exit {}: {}", run.code, run.stderr);
    let prefixed = object_store::prefix::PrefixStore::new(
        moto.client("dst")?,
        object_store::path::Path::parse(PREFIX)?,
    );
    dataset::verify(&prefixed, &objs, Checks::BYTES, Some(&job.state)).await?;
    aborted_by(&run, 1)?;
    let open = moto.open_uploads("dst")?;
    ensure!(
        keys(&open) == [KEY],
        "open uploads {open:?}: want only the other client's, of {KEY:?}"
    );

    // Every request naming an upload of the object went to its own path:
    // the creates, the listing's prefix, ListParts and the abort.
    let calls = target.upload_calls();
    let path_of = |c: &str| -> Result<(String, String)> {
        let (method, target) = c.split_once(' ').unwrap_or((c, ""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok((format!("{method} {}", decoded(path)?), query.to_owned()))
    };
    let own = format!("/dst/{full}");
    let mut seen = std::collections::BTreeSet::new();
    for c in &calls {
        let (line, query) = path_of(c)?;
        if (line == "GET /dst" || line == "GET /dst/") && query.starts_with("uploads") {
            // A query's value: `+` is a space.
            let prefix = query
                .split('&')
                .find_map(|p| p.strip_prefix("prefix="))
                .map(|p| decoded(&p.replace('+', " ")))
                .transpose()?;
            ensure!(
                prefix.as_deref() == Some(full.as_str()),
                "ListMultipartUploads {c:?}: want the prefix {full:?}"
            );
            seen.insert("list".to_owned());
            continue;
        }
        let method = line.split(' ').next().unwrap_or_default().to_owned();
        ensure!(
            line.ends_with(&own) || !line.contains(KEY),
            "{c:?} names the object elsewhere than {own:?}"
        );
        if line.ends_with(&own) {
            let what = if query.contains("uploadId=") {
                "uploadId"
            } else {
                query.split('=').next().unwrap_or_default()
            };
            seen.insert(format!("{method} {what}"));
        }
    }
    for want in ["list", "POST uploads", "GET uploadId", "DELETE uploadId"] {
        ensure!(
            seen.contains(want),
            "no {want} request at {own:?} among {calls:?}"
        );
    }
    Ok(())
}
