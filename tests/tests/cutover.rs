//! Cutover and verification: a clean replica verifies (exit 0, equal
//! Merkle roots); a flipped byte, a deleted object and an extra object are
//! reported with the right kinds (exit 1); deep verification is
//! incremental; the manifest export is what `b3sum` computes on the target,
//! and `manifest diff` names exactly the keys that changed; `verify` after
//! a stopped pass says what the manifest does not hold yet.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStoreExt, PutPayload};
use passeur_tests::dataset::{self, Obj};
use passeur_tests::job::signal_after;
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, passeur, passeur_command};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;

fn objects(seed: u64) -> Vec<Obj> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut objs: Vec<Obj> = (0..40)
        .map(|i| {
            let mut v = vec![0u8; 1000 + i * 97];
            rng.fill(&mut v[..]);
            Obj {
                key: format!("d{}/file-{i:03}.bin", i % 4),
                data: Bytes::from(v),
                content_type: None,
                meta: vec![],
            }
        })
        .collect();
    // One multipart object (5 MiB parts at the S3 target).
    let mut big = vec![0u8; 11 * 1024 * 1024 + 17];
    rng.fill(&mut big[..]);
    objs.push(Obj {
        key: "large/big.bin".into(),
        data: Bytes::from(big),
        content_type: None,
        meta: vec![],
    });
    objs
}

/// A service configuration with one job from `src` to `target`.
fn config(dir: &Path, src: &Path, target_url: &str, target_section: &str) -> Result<PathBuf> {
    let path = dir.join("passeur.toml");
    std::fs::write(
        &path,
        format!(
            "state-dir = \"{}\"\n[[job]]\nname = \"j\"\n[job.source]\nurl = \"{}\"\n[job.target]\nurl = \"{target_url}\"\n{target_section}",
            dir.join("state").display(),
            src.display()
        ),
    )?;
    Ok(path)
}

fn run(cmd: &str, cfg: &Path, report: &Path, extra: &[&str]) -> Result<(Run, Value)> {
    let (c, r) = (cfg.to_string_lossy(), report.to_string_lossy());
    let mut args = vec![cmd, "--config", &c, "--job", "j", "--report", &r];
    args.extend_from_slice(extra);
    let run = passeur(&args, &[])?;
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(report)
            .with_context(|| format!("no report: {}\n{}", run.stderr, run.stdout))?,
    )?;
    Ok((run, json))
}

/// The mismatches of a report as sorted (kind, key) pairs.
fn mismatches(report: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["verification"]["mismatches"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["kind"].as_str().unwrap_or("").to_owned(),
                        m["key"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn stat(report: &Value, name: &str) -> u64 {
    report["verification"][name].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn cutover_reports_exactly_what_was_tampered_with() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    let objs = objects(51);
    dataset::write_dir(&src, &objs)?;
    let cfg = config(
        work.path(),
        &src,
        &moto.url("dst/replica"),
        &format!("{}part-size = \"5MiB\"\n", moto.config()),
    )?;
    let report = work.path().join("report.json");
    let n = objs.len() as u64;

    // The first cutover copies everything in its final pass, then verifies.
    let (first, r) = run("cutover", &cfg, &report, &[])?;
    ensure!(
        first.code == 0,
        "clean cutover: exit {}\n{}\n{}",
        first.code,
        first.stdout,
        first.stderr
    );
    ensure!(r["verified"] == true, "{r}");
    ensure!(r["final_pass"]["summary"]["stats"]["copied"] == n, "{r}");
    let v = &r["verification"];
    ensure!(
        v["manifest_root"] == v["found_root"],
        "roots differ on a clean replica"
    );
    ensure!(
        stat(&r, "objects") == n && stat(&r, "target_objects") == n,
        "{v}"
    );
    ensure!(first.stdout.contains("VERIFIED"), "{}", first.stdout);

    // Deep on the clean replica reads everything once; the next deep run
    // skips what is unchanged since; --full reads everything again.
    let (deep, r) = run("verify", &cfg, &report, &["--deep"])?;
    ensure!(
        deep.code == 0,
        "deep verify: {}\n{}",
        deep.stdout,
        deep.stderr
    );
    ensure!(stat(&r, "deep_checked") == n, "{}", r["verification"]);
    let (_, r) = run("verify", &cfg, &report, &["--deep"])?;
    ensure!(
        stat(&r, "deep_checked") == 0 && stat(&r, "deep_skipped_unchanged") == n,
        "incremental: {}",
        r["verification"]
    );
    let (_, r) = run("verify", &cfg, &report, &["--deep", "--full"])?;
    ensure!(stat(&r, "deep_checked") == n, "full: {}", r["verification"]);

    // Tamper with the target: flip one byte, delete one, add one.
    let dst = moto.client("dst")?;
    let at = |k: &str| OsPath::from(format!("replica/{k}"));
    let flipped = &objs[5];
    let mut data = flipped.data.to_vec();
    data[500] ^= 0x01;
    dst.put(&at(&flipped.key), PutPayload::from(data)).await?;
    let deleted = &objs[9];
    dst.delete(&at(&deleted.key)).await?;
    dst.put(
        &at("d1/extra.bin"),
        PutPayload::from_static(b"not replicated"),
    )
    .await?;
    // Outside the job's prefix: not the job's business.
    dst.put(&OsPath::from("elsewhere/x"), PutPayload::from_static(b"x"))
        .await?;

    // Fast: the listing shows the deleted and the extra ones, and the
    // rewritten one by its ETag; nothing is read.
    let (fast, r) = run("verify", &cfg, &report, &[])?;
    ensure!(
        fast.code == 1,
        "fast verify: exit {}\n{}",
        fast.code,
        fast.stderr
    );
    let want = |kind: &str| {
        let mut w = vec![
            ("etag".to_owned(), flipped.key.clone()),
            ("extra".to_owned(), "d1/extra.bin".to_owned()),
            ("missing".to_owned(), deleted.key.clone()),
        ];
        w[0].0 = kind.to_owned();
        w.sort();
        w
    };
    ensure!(mismatches(&r) == want("etag"), "fast: {:?}", mismatches(&r));
    ensure!(
        r["verification"]["manifest_root"] != r["verification"]["found_root"],
        "roots equal"
    );

    // Deep cutover: exactly those three, the flipped byte as content.
    let (cut, r) = run("cutover", &cfg, &report, &["--deep"])?;
    ensure!(
        cut.code == 1,
        "deep cutover: exit {}\n{}",
        cut.code,
        cut.stderr
    );
    ensure!(
        mismatches(&r) == want("content"),
        "deep: {:?}",
        mismatches(&r)
    );
    ensure!(
        r["verified"] == false && r["final_pass"]["summary"]["stats"]["copied"] == 0,
        "{r}"
    );
    ensure!(
        cut.stdout.contains("NOT VERIFIED: 3 mismatches"),
        "{}",
        cut.stdout
    );

    // Repair: the damaged and the deleted objects are copied again and
    // verified again; the extra one is only reported.
    let (fix, r) = run("cutover", &cfg, &report, &["--repair"])?;
    ensure!(fix.code == 1, "repair: exit {}\n{}", fix.code, fix.stderr);
    let mut repaired: Vec<String> = r["repaired"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    repaired.sort();
    let mut want_repaired = vec![flipped.key.clone(), deleted.key.clone()];
    want_repaired.sort();
    ensure!(repaired == want_repaired, "repaired {repaired:?}");
    ensure!(
        mismatches(&r) == [("extra".to_owned(), "d1/extra.bin".to_owned())],
        "after repair: {:?}",
        mismatches(&r)
    );
    for o in [flipped, deleted] {
        let got = dst.get(&at(&o.key)).await?.bytes().await?;
        ensure!(got == o.data, "{}: not repaired", o.key);
    }
    dst.delete(&at("d1/extra.bin")).await?;
    let (clean, r) = run("verify", &cfg, &report, &["--deep"])?;
    ensure!(
        clean.code == 0,
        "after repair: {}\n{}",
        clean.stdout,
        clean.stderr
    );
    ensure!(
        r["verification"]["manifest_root"] == r["verification"]["found_root"],
        "{r}"
    );

    // Unknown job: one line, exit 2.
    let bad = passeur(
        &[
            "verify",
            "--config",
            &cfg.to_string_lossy(),
            "--job",
            "nope",
        ],
        &[],
    )?;
    ensure!(
        bad.code == 2 && bad.stderr.lines().count() == 1,
        "{}",
        bad.stderr
    );
    Ok(())
}

/// `manifest export` rows: key → BLAKE3 hex.
fn export(state: &Path, format: &str) -> Result<Run> {
    let run = passeur(
        &[
            "manifest",
            "export",
            &state.to_string_lossy(),
            "--format",
            format,
        ],
        &[],
    )?;
    ensure!(run.code == 0, "export {format}: {}", run.stderr);
    Ok(run)
}

#[test]
fn export_matches_the_target_bytes_and_diff_names_the_changes() -> Result<()> {
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    let dst = work.path().join("dst");
    let mut objs = objects(52);
    objs.truncate(20);
    dataset::write_dir(&src, &objs)?;
    let cfg = config(work.path(), &src, &dst.to_string_lossy(), "")?;
    let report = work.path().join("r.json");
    let (first, _) = run("cutover", &cfg, &report, &[])?;
    ensure!(first.code == 0, "{}\n{}", first.stdout, first.stderr);
    let state = work.path().join("state/j");

    // jsonl: every BLAKE3 equals the hash of the target bytes, read here.
    let rows = export(&state, "jsonl")?;
    let mut seen = 0;
    for line in rows.stdout.lines() {
        let row: Value = serde_json::from_str(line)?;
        let key = row["key"].as_str().context("key")?;
        let bytes = std::fs::read(dst.join(key))?;
        ensure!(
            row["blake3"] == blake3::hash(&bytes).to_hex().as_str(),
            "{key}: exported hash differs from the target bytes"
        );
        ensure!(row["size"] == bytes.len() as u64, "{key}: size");
        seen += 1;
    }
    ensure!(seen == objs.len(), "exported {seen} of {}", objs.len());
    // b3sum format: `b3sum --check` in the target directory agrees.
    let sums = work.path().join("sums.b3");
    std::fs::write(&sums, export(&state, "b3sum")?.stdout)?;
    let check = std::process::Command::new("b3sum")
        .arg("--check")
        .arg(&sums)
        .current_dir(&dst)
        .output()?;
    ensure!(
        check.status.success(),
        "b3sum --check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let csv = export(&state, "csv")?;
    ensure!(csv.stdout.lines().count() == objs.len() + 1, "csv rows");

    // Snapshot the state and an export, change the source, pass again.
    let before = work.path().join("state-before");
    copy_dir(&state, &before)?;
    let export_before = work.path().join("before.jsonl");
    std::fs::write(&export_before, &rows.stdout)?;
    std::fs::write(src.join(&objs[3].key), b"changed")?;
    std::fs::write(src.join(&objs[7].key), b"changed too")?;
    std::fs::write(src.join("d0/new.bin"), b"new")?;
    let (second, _) = run("cutover", &cfg, &report, &[])?;
    ensure!(second.code == 0, "{}\n{}", second.stdout, second.stderr);
    let mut want = vec![
        format!("differs\t{}", objs[3].key),
        format!("differs\t{}", objs[7].key),
        "only-in-b\td0/new.bin".to_owned(),
    ];
    want.sort();
    let export_after = work.path().join("after.csv");
    std::fs::write(&export_after, export(&state, "csv")?.stdout)?;
    for (a, b) in [(&before, &state), (&export_before, &export_after)] {
        let d = passeur(
            &[
                "manifest",
                "diff",
                &a.to_string_lossy(),
                &b.to_string_lossy(),
            ],
            &[],
        )?;
        ensure!(
            d.code == 1,
            "diff {}: exit {}: {}",
            a.display(),
            d.code,
            d.stderr
        );
        let mut got: Vec<String> = d.stdout.lines().map(str::to_owned).collect();
        got.sort();
        ensure!(got == want, "diff {}: {got:?}", a.display());
    }
    let same = passeur(
        &[
            "manifest",
            "diff",
            &state.to_string_lossy(),
            &state.to_string_lossy(),
        ],
        &[],
    )?;
    ensure!(
        same.code == 0 && same.stdout.is_empty(),
        "self diff: {}",
        same.stdout
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

/// A cutover that cannot run says why in one line and exits with the code
/// of the exit table, not a catch-all: the state directory held by another
/// process (the service left running) is 73, a source that does not exist
/// is 69.
#[test]
fn a_cutover_that_cannot_run_exits_with_the_code_of_its_cause() -> Result<()> {
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    dataset::write_dir(&src, &objects(7))?;
    let dst = work.path().join("dst");
    let cfg = config(work.path(), &src, &dst.to_string_lossy(), "")?;
    let report = work.path().join("report.json");
    let (first, _) = run("cutover", &cfg, &report, &[])?;
    ensure!(
        first.code == 0,
        "clean cutover: exit {}\n{}",
        first.code,
        first.stderr
    );

    // The service still holds the state directory.
    let held = passeur_core::manifest::Manifest::open(&work.path().join("state").join("j"))?;
    let c = cfg.to_string_lossy();
    let busy = passeur(&["cutover", "--config", &c, "--job", "j"], &[])?;
    drop(held);
    ensure!(
        busy.code == 73
            && busy.stderr.lines().count() == 1
            && busy.stderr.contains("in use by another passeur"),
        "state held: exit {}: {}",
        busy.code,
        busy.stderr
    );

    // The source directory is gone.
    std::fs::rename(&src, work.path().join("moved"))?;
    let gone = passeur(&["cutover", "--config", &c, "--job", "j"], &[])?;
    ensure!(
        gone.code == 69 && gone.stderr.lines().count() == 1,
        "source gone: exit {}: {}",
        gone.code,
        gone.stderr
    );
    Ok(())
}

/// `verify` after a pass stopped part way: the target matches the manifest
/// (exit 0), and the verdict and the report say that the manifest does not
/// hold the whole source yet, and where the stopped listing got to; after a
/// complete pass, as of which pass it holds it.
#[test]
fn verify_after_a_stopped_pass_says_the_manifest_is_not_whole() -> Result<()> {
    const N: usize = 5000;
    let work = tempfile::tempdir()?;
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let objs = dataset::numbered(|i| format!("k/{i:05}"), "object", N);
    dataset::write_dir(&src, &objs)?;
    let (s, d) = (src.to_string_lossy(), dst.to_string_lossy());
    let cfg = config(work.path(), &src, &d, "")?;
    let report = work.path().join("report.json");
    let state = work.path().join("state/j");
    let st = state.to_string_lossy();
    let sync = [
        "sync", "--source", &s, "--target", &d, "--state", &st, "--output", "json",
    ];
    let stopped = signal_after(passeur_command(&sync)?, "object", N / 50, "INT")?;
    ensure!(
        stopped.code == 130,
        "exit {}: {}",
        stopped.code,
        stopped.stderr
    );

    let (v, r) = run("verify", &cfg, &report, &[])?;
    ensure!(v.code == 0, "exit {}: {}\n{}", v.code, v.stdout, v.stderr);
    let held = stat(&r, "objects");
    ensure!(
        held > 0 && held < N as u64,
        "the stopped pass recorded {held}"
    );
    let m = &r["manifest"];
    ensure!(
        m["last_complete_pass"].is_null() && m["unfinished_pass"]["ended"].is_string(),
        "the report must say no pass completed, and that the last one ended so: {m}"
    );
    ensure!(
        v.stdout
            .contains("VERIFIED against the manifest, which does not hold the whole source yet")
            && v.stdout.contains("NO complete pass"),
        "{}",
        v.stdout
    );

    let done = passeur(&sync, &[])?;
    ensure!(done.code == 0, "{}\n{}", done.stdout, done.stderr);
    let (v, r) = run("verify", &cfg, &report, &[])?;
    ensure!(v.code == 0, "exit {}: {}\n{}", v.code, v.stdout, v.stderr);
    let m = &r["manifest"];
    ensure!(
        m["last_complete_pass"]["ended"].is_string()
            && m["unfinished_pass"].is_null()
            && m["pass_stopped_at"].is_null()
            && m["uploads_in_progress"] == 0,
        "{m}"
    );
    ensure!(stat(&r, "objects") == N as u64, "{r}");
    ensure!(
        v.stdout.contains(": VERIFIED\n") && v.stdout.contains("as of the last complete pass"),
        "{}",
        v.stdout
    );

    // A pass that completes under other filters is no unfinished pass;
    // it replaces the one record of the last complete pass, so the report
    // claims less (no complete pass under the job's filters), never more.
    let mut narrow = sync.to_vec();
    narrow.extend(["--exclude", "k/000*"]);
    let other = passeur(&narrow, &[])?;
    ensure!(other.code == 0, "{}\n{}", other.stdout, other.stderr);
    let (v, r) = run("verify", &cfg, &report, &[])?;
    ensure!(
        v.code == 0
            && r["manifest"]["unfinished_pass"].is_null()
            && r["manifest"]["last_complete_pass"].is_null()
            && !v.stdout.contains("did not"),
        "{}",
        v.stdout
    );

    // Every source file changes, and a pass is killed part way: the
    // report says that the last pass did not end.
    let changed: Vec<Obj> = objs
        .iter()
        .map(|o| Obj {
            data: Bytes::from(format!("{} changed", String::from_utf8_lossy(&o.data))),
            ..o.clone()
        })
        .collect();
    dataset::write_dir(&src, &changed)?;
    let killed = signal_after(passeur_command(&sync)?, "object", N / 50, "KILL")?;
    ensure!(killed.code == -1, "not killed: exit {}", killed.code);
    let (v, r) = run("verify", &cfg, &report, &[])?;
    let m = &r["manifest"];
    ensure!(
        m["unfinished_pass"]["started"].is_string() && m["unfinished_pass"]["ended"].is_null(),
        "{m}"
    );
    ensure!(
        v.stdout.contains("did not end") && !v.stdout.contains(": VERIFIED\n"),
        "{}",
        v.stdout
    );
    Ok(())
}
