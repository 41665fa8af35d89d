//! Attributes (Content-Type, user metadata) as another client sees them,
//! written and read with boto3 (`tests/support/attrs.py`), never through
//! passeur or object_store:
//! - a change of attributes alone at the source (a copy onto itself with
//!   new metadata: same bytes, same ETag, a later Last-Modified) reaches
//!   the target at the next pass;
//! - a dedup copy never gives a key another object's attributes: not a
//!   holder's whose attributes someone changed at the target, not a
//!   holder's `mtime` where the source object carries its own;
//! - a key at the target that object_store cannot address (a folder
//!   marker `x/`) is an extra key of the verification, named, exit 1 with
//!   a report — not an internal error.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use passeur_tests::servers::{Kind, Server, tool};
use passeur_tests::{Run, passeur};
use serde_json::{Value, json};

/// boto3 on `moto`: `args` after the endpoint.
fn boto(moto: &Server, args: &[&str]) -> Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/attrs.py");
    let out = Command::new(tool("PASSEUR_PYTHON")?)
        .arg(script)
        .arg(args[0])
        .arg(&moto.endpoint)
        .args(&args[1..])
        .output()?;
    if !out.status.success() {
        bail!(
            "attrs.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn put(moto: &Server, key: &str, body: &str, ctype: &str, meta: &Value) -> Result<()> {
    boto(moto, &["put", "src", key, body, ctype, &meta.to_string()]).map(drop)
}

/// (ETag, Content-Type, metadata) of `bucket`/`key`, read by boto3.
fn head(moto: &Server, bucket: &str, key: &str) -> Result<(String, Value, Value)> {
    let v: Value = serde_json::from_str(&boto(moto, &["head", bucket, key])?)?;
    Ok((
        v["etag"].as_str().unwrap_or_default().to_owned(),
        v["content_type"].clone(),
        v["metadata"].clone(),
    ))
}

/// A service config with one job `j` from moto's `src` to its `dst`.
struct Job {
    work: tempfile::TempDir,
    cfg: PathBuf,
}

impl Job {
    fn new(moto: &Server) -> Result<Self> {
        moto.create_bucket("src")?;
        moto.create_bucket("dst")?;
        let work = tempfile::tempdir()?;
        let cfg = work.path().join("passeur.toml");
        std::fs::write(
            &cfg,
            format!(
                "state-dir = \"{}\"\n[[job]]\nname = \"j\"\n[job.source]\nurl = \"{}\"\n{}[job.target]\nurl = \"{}\"\n{}",
                work.path().join("state").display(),
                moto.url("src"),
                moto.config(),
                moto.url("dst"),
                moto.config(),
            ),
        )?;
        Ok(Self { work, cfg })
    }

    /// `passeur verify|cutover` of the job: the run and its JSON report.
    fn check(&self, cmd: &str) -> Result<(Run, Value)> {
        let report = self.work.path().join(format!("{cmd}.json"));
        let (c, r) = (self.cfg.to_string_lossy(), report.to_string_lossy());
        let run = passeur(&[cmd, "--config", &c, "--job", "j", "--report", &r], &[])?;
        let text = std::fs::read_to_string(&report).with_context(|| {
            format!(
                "{cmd}: no report (exit {})\n{}\n{}",
                run.code, run.stdout, run.stderr
            )
        })?;
        Ok((run, serde_json::from_str(&text)?))
    }

    /// A cutover that must find the target equal.
    fn cutover_ok(&self, what: &str) -> Result<()> {
        let (run, _) = self.check("cutover")?;
        ensure!(
            run.code == 0,
            "{what}: cutover exit {}\n{}\n{}",
            run.code,
            run.stdout,
            run.stderr
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_of_attributes_alone_reaches_the_target() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    let job = Job::new(&moto)?;
    put(
        &moto,
        "doc.txt",
        "same bytes",
        "text/plain",
        &json!({"v": "1"}),
    )?;
    job.cutover_ok("first")?;
    // Last-Modified has whole seconds: the change lands in a later one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (etag_before, ..) = head(&moto, "src", "doc.txt")?;
    boto(
        &moto,
        &[
            "remeta",
            "src",
            "doc.txt",
            "application/json",
            r#"{"v": "2"}"#,
        ],
    )?;
    let (etag_after, ..) = head(&moto, "src", "doc.txt")?;
    ensure!(
        etag_before == etag_after,
        "the case needs an ETag that stays: {etag_before} became {etag_after}"
    );
    job.cutover_ok("after the change")?;
    let (_, ctype, meta) = head(&moto, "dst", "doc.txt")?;
    ensure!(
        ctype == "application/json" && meta["v"] == "2",
        "the target kept the old attributes: Content-Type {ctype}, metadata {meta} (source: application/json, v=2); state in {}",
        job.work.path().display()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dedup_copy_carries_the_sources_own_attributes() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    let job = Job::new(&moto)?;
    let meta = json!({"owner": "ops"});
    put(&moto, "a/holder.txt", "shared bytes", "text/plain", &meta)?;
    put(&moto, "a/altered.txt", "other shared", "text/plain", &meta)?;
    job.cutover_ok("first")?;
    // Someone else changes a holder's attributes at the target (its bytes
    // and ETag stay).
    boto(
        &moto,
        &["remeta", "dst", "a/altered.txt", "text/html", "{}"],
    )?;
    // New keys with the holders' bytes: one with equal attributes (the
    // holder at the target no longer has them), one whose source carries
    // its own `mtime` metadata (rclone writes one on every object).
    put(&moto, "b/copy.txt", "other shared", "text/plain", &meta)?;
    let own = json!({"owner": "ops", "mtime": "1234567890.5"});
    put(&moto, "b/own-mtime.txt", "shared bytes", "text/plain", &own)?;
    let (run, _) = job.check("cutover")?;
    let mut wrong = Vec::new();
    for (key, want) in [("b/copy.txt", &meta), ("b/own-mtime.txt", &own)] {
        let (_, ctype, got) = head(&moto, "dst", key)?;
        let own_keys_kept = want
            .as_object()
            .is_some_and(|w| w.iter().all(|(k, v)| got[k] == *v));
        if ctype != "text/plain" || !own_keys_kept {
            wrong.push(format!("{key}: Content-Type {ctype}, metadata {got}"));
        }
    }
    ensure!(
        wrong.is_empty(),
        "dedup gave keys another object's attributes: {wrong:?} (cutover exit {})\n{}",
        run.code,
        run.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_marker_at_the_target_is_an_extra_key() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    let job = Job::new(&moto)?;
    put(&moto, "folder/a.txt", "a", "text/plain", &json!({}))?;
    job.cutover_ok("first")?;
    moto.put_raw_keys("dst", &["folder/", "x//y"])?;
    for cmd in ["verify", "cutover"] {
        let (run, report) = job.check(cmd)?;
        let text = report.to_string();
        ensure!(
            run.code == 1 && text.contains("\"folder/\"") && text.contains("\"x//y\""),
            "{cmd}: exit {} (want 1, the two keys named as extra)\n{}\n{}\n{text}",
            run.code,
            run.stdout,
            run.stderr
        );
    }
    Ok(())
}
