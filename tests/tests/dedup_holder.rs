//! No false success from dedup: an object already at the target (the
//! holder) is server-side copied for new keys with the same content only
//! while the target still holds what its record says. Here the holders are
//! overwritten at the target by someone else; new source keys with their
//! original bytes must arrive with those bytes, verification must not pass
//! while a holder is wrong, and `cutover --repair` must leave every key
//! right. Every check reads the target independently (BLAKE3 of the bytes).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_core::manifest::Manifest;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;

fn random(rng: &mut StdRng, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

fn obj(key: &str, data: Bytes) -> Obj {
    Obj {
        key: key.into(),
        data,
        content_type: Some("application/x-test".into()),
        meta: vec![],
    }
}

/// One job from `src` to `dst` on the same moto server (5 MiB parts).
fn config(dir: &Path, moto: &Server) -> Result<PathBuf> {
    let path = dir.join("passeur.toml");
    std::fs::write(
        &path,
        format!(
            "state-dir = \"{}\"\n[[job]]\nname = \"j\"\n[job.source]\nurl = \"{}\"\n{}[job.target]\nurl = \"{}\"\n{}part-size = \"5MiB\"\n",
            dir.join("state").display(),
            moto.url("src"),
            moto.config(),
            moto.url("dst"),
            moto.config(),
        ),
    )?;
    Ok(path)
}

/// `passeur cutover|verify` of job j, with its JSON report.
fn run(cmd: &str, cfg: &Path, dir: &Path, extra: &[&str]) -> Result<(Run, Value)> {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let (c, r) = (cfg.to_string_lossy(), report.to_string_lossy());
    let mut args = vec![cmd, "--config", &c, "--job", "j", "--report", &r];
    args.extend_from_slice(extra);
    let run = passeur(&args, &[])?;
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(&report)
            .with_context(|| format!("no report: {}\n{}", run.stderr, run.stdout))?,
    )?;
    Ok((run, json))
}

/// Keys whose bytes at the target differ from `objs` (BLAKE3, read here).
async fn wrong_at_target(dst: &dyn ObjectStore, objs: &[Obj]) -> Result<Vec<String>> {
    let mut wrong = Vec::new();
    for o in objs {
        let got = match dst.get(&OsPath::parse(&o.key)?).await {
            Ok(g) => g.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                wrong.push(format!("{} (missing)", o.key));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if blake3::hash(&got) != blake3::hash(&o.data) {
            wrong.push(o.key.clone());
        }
    }
    Ok(wrong)
}

/// Checks that do not stop the test, so one run shows every false success.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let w = what();
            eprintln!("PROBLEM: {w}");
            self.0.push(w);
        }
    }

    /// A command that claims success while the target is wrong.
    fn no_false_success(&mut self, what: &str, run: &Run, wrong: &[String]) {
        self.check(
            wrong.is_empty() || (run.code != 0 && !run.stdout.contains(": VERIFIED")),
            || {
                format!(
                    "{what} exited {} ({}) while the target holds wrong bytes for {wrong:?}",
                    run.code,
                    run.stdout.lines().next().unwrap_or("")
                )
            },
        );
    }

    fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        bail!("{} problems:\n{}", self.0.len(), self.0.join("\n"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_never_copies_a_holder_rewritten_at_the_target() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("src")?;
    moto.create_bucket("dst")?;
    let (src, dst) = (moto.client("src")?, moto.client("dst")?);
    let mut rng = StdRng::seed_from_u64(93);
    // One small holder (single PUT, dedup in transfer) and one large one
    // (multipart at the target, dedup in dedup.rs), plus an unrelated key.
    let small = random(&mut rng, 200 * 1024);
    let large = random(&mut rng, 12 * 1024 * 1024 + 5);
    let mut objs = vec![
        obj("a/small.bin", small.clone()),
        obj("a/large.bin", large.clone()),
        obj("c/other.bin", random(&mut rng, 3000)),
    ];
    dataset::seed(src.as_ref(), &objs).await?;
    let work = tempfile::tempdir()?;
    let cfg = config(work.path(), &moto)?;
    let mut problems = Problems::default();

    let (first, _) = run("cutover", &cfg, work.path(), &[])?;
    ensure!(
        first.code == 0,
        "first cutover: exit {}\n{}\n{}",
        first.code,
        first.stdout,
        first.stderr
    );

    // Someone else rewrites both holders at the target: same sizes, other
    // bytes (so sizes alone cannot tell).
    for (key, len) in [("a/small.bin", small.len()), ("a/large.bin", large.len())] {
        let other = random(&mut rng, len);
        dst.put(&OsPath::parse(key)?, PutPayload::from(other))
            .await?;
    }
    // New source keys with the holders' original bytes.
    let copies = [obj("b/small.bin", small), obj("b/large.bin", large)];
    dataset::seed(src.as_ref(), &copies).await?;
    objs.extend(copies);

    // The final pass must upload the new keys, not copy the rewritten
    // holders; verification must not pass while the holders are wrong.
    let (second, report) = run("cutover", &cfg, work.path(), &[])?;
    let wrong = wrong_at_target(dst.as_ref(), &objs).await?;
    for key in ["b/small.bin", "b/large.bin"] {
        problems.check(!wrong.iter().any(|w| w.starts_with(key)), || {
            format!(
                "{key} at the target is not the source's bytes after the pass (copied from a rewritten holder?); summary: {}",
                report["final_pass"]["summary"]["stats"]
            )
        });
    }
    problems.no_false_success("cutover after the holders were rewritten", &second, &wrong);

    // Repair: everything right at the target, and verified.
    let (fix, report) = run("cutover", &cfg, work.path(), &["--repair"])?;
    let wrong = wrong_at_target(dst.as_ref(), &objs).await?;
    problems.check(wrong.is_empty(), || {
        format!(
            "after cutover --repair (exit {}), wrong at the target: {wrong:?}; repaired {}",
            fix.code, report["repaired"]
        )
    });
    problems.no_false_success("cutover --repair", &fix, &wrong);
    problems.check(fix.code == 0, || {
        format!(
            "cutover --repair did not verify a repaired target: exit {}\n{}",
            fix.code, fix.stdout
        )
    });
    let (fast, _) = run("verify", &cfg, work.path(), &[])?;
    problems.no_false_success("verify after repair", &fast, &wrong);

    // A record without a target ETag (as dedup copies were recorded before)
    // must not verify on its size alone: rewrite c/other.bin at the target
    // with other bytes of the same size.
    {
        let state = Manifest::open(&work.path().join("state/j"))?;
        let mut rec = state.object("c/other.bin")?.context("record")?;
        let chunks = state.chunk_list(&rec)?.context("chunk list")?;
        rec.target_etag = None;
        state.commit_object("c/other.bin", &rec, &chunks)?;
    }
    let other = random(&mut rng, 3000);
    dst.put(&OsPath::parse("c/other.bin")?, PutPayload::from(other))
        .await?;
    let wrong = wrong_at_target(dst.as_ref(), &objs).await?;
    ensure!(wrong == ["c/other.bin"], "{wrong:?}");
    let (fast, _) = run("verify", &cfg, work.path(), &[])?;
    problems.no_false_success("verify of a record without a target ETag", &fast, &wrong);
    let (fix, _) = run("cutover", &cfg, work.path(), &["--repair"])?;
    let wrong = wrong_at_target(dst.as_ref(), &objs).await?;
    problems.check(wrong.is_empty() && fix.code == 0, || {
        format!(
            "cutover --repair of a record without a target ETag: exit {}, wrong {wrong:?}\n{}",
            fix.code, fix.stdout
        )
    });
    problems.finish()
}
