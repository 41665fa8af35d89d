//! `passeur cutover merge`: four shards of one job each run their own
//! cutover (its final pass replicates the shard's keys, its verification
//! checks them); the merged verdict is DATASET VERIFIED only with every
//! shard's report present once and verified. A damaged object at the
//! target makes its shard's cutover, and so the dataset's, NOT VERIFIED;
//! a missing report makes the merge refuse.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use passeur_tests::dataset;
use passeur_tests::{Run, passeur};

/// Run shard `k` of 4's cutover of the job `src` → `dst`, its state under
/// `work/state-K`; the report's path and the run.
fn cutover(work: &Path, src: &Path, dst: &Path, k: u16) -> Result<(PathBuf, Run)> {
    let cfg = work.join(format!("shard-{k}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\n[[job]]\nname = \"archive\"\nshard = \"{k}/4\"\n[job.source]\nurl = \"{}\"\n[job.target]\nurl = \"{}\"\n",
            work.join(format!("state-{k}")).display(),
            src.display(),
            dst.display()
        ),
    )?;
    let report = work.join(format!("report-{k}.json"));
    let run = passeur(
        &[
            "cutover",
            "--config",
            &cfg.to_string_lossy(),
            "--report",
            &report.to_string_lossy(),
        ],
        &[],
    )?;
    Ok((report, run))
}

fn merge(reports: &[PathBuf], out: &Path) -> Result<Run> {
    let mut args = vec!["cutover".to_owned(), "merge".into()];
    args.extend(reports.iter().map(|p| p.to_string_lossy().into_owned()));
    args.extend(["--report".into(), out.to_string_lossy().into_owned()]);
    passeur(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

#[test]
fn four_shard_cutovers_merge_into_one_verdict_for_the_dataset() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let objs = dataset::standard(17, 60);
    dataset::write_dir(&src, &objs)?;
    let mut reports = Vec::new();
    for k in 0..4 {
        let (report, run) = cutover(work.path(), &src, &dst, k)?;
        ensure!(
            run.code == 0
                && run
                    .stdout
                    .contains(&format!("(shard {k}/4: its keys only)")),
            "shard {k}: exit {}\n{}{}",
            run.code,
            run.stdout,
            run.stderr
        );
        reports.push(report);
    }
    // Every object is at the target, byte for byte (read independently).
    let target = object_store::local::LocalFileSystem::new_with_prefix(&dst)?;
    tokio::runtime::Runtime::new()?.block_on(dataset::verify(
        &target,
        &objs,
        dataset::Checks::BYTES,
        None,
    ))?;
    let out = work.path().join("dataset.json");
    let merged = merge(&reports, &out)?;
    ensure!(
        merged.code == 0 && merged.stdout.contains("4 shards: DATASET VERIFIED"),
        "merge: exit {}\n{}{}",
        merged.code,
        merged.stdout,
        merged.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let first = &json["shard_reports"][0];
    let digest = blake3::hash(&std::fs::read(&reports[0])?)
        .to_hex()
        .to_string();
    ensure!(
        json["verified"] == true
            && first["shard"] == "0/4"
            && first["report_blake3"] == digest.as_str(),
        "dataset report: {json}"
    );

    // Three reports are not the dataset.
    let refused = merge(&reports[1..], &out)?;
    ensure!(
        refused.code == 2 && refused.stderr.contains("shard 0/4 has no report"),
        "three reports: exit {}\n{}",
        refused.code,
        refused.stderr
    );
    // Nor is one report given twice.
    let twice = [reports.clone(), vec![reports[1].clone()]].concat();
    let refused = merge(&twice, &out)?;
    ensure!(
        refused.code == 2 && refused.stderr.contains("both shard 1/4"),
        "a report twice: exit {}\n{}",
        refused.code,
        refused.stderr
    );

    // An object changed at the target behind passeur's back: its shard's
    // cutover is NOT VERIFIED, and so is the dataset.
    let key = "keys/with space.txt";
    let owner = (0..4u16)
        .find(|k| passeur_core::base::shard::Shard::new(*k, 4).is_ok_and(|s| s.owns(key)))
        .unwrap_or(0);
    std::fs::write(dst.join(key), b"changed at the target")?;
    let (report, run) = cutover(work.path(), &src, &dst, owner)?;
    ensure!(
        run.code == 1,
        "damaged shard {owner}: exit {}\n{}",
        run.code,
        run.stdout
    );
    reports[usize::from(owner)] = report;
    let merged = merge(&reports, &out)?;
    ensure!(
        merged.code == 1
            && merged
                .stdout
                .contains("NOT VERIFIED: 1 of 4 shards not verified"),
        "merge after damage: exit {}\n{}",
        merged.code,
        merged.stdout
    );
    Ok(())
}
