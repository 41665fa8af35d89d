//! `passeur cutover merge`: the cutover reports of every shard of one job
//! as one verdict for the dataset. The dataset is VERIFIED only when each
//! shard K of N has exactly one report, every report is of the same job
//! (source, target) and says VERIFIED. The dataset's report lists each
//! shard's verdict, times and roots, and the BLAKE3 of each report file,
//! so an auditor can check that the verdict was made from those files.
//! Exit 0 verified, 1 a shard not verified, 2 the reports are not the
//! whole dataset (the reason names the file or the missing shard).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::MergeReportsArgs;
use crate::exit;

/// What a shard's report must say (fields of `cutover`'s JSON report).
#[derive(Debug, Deserialize)]
struct ShardReport {
    command: String,
    job: String,
    source: String,
    target: String,
    started: String,
    ended: String,
    verified: bool,
    kind: String,
    shard: Option<String>,
    verification: Verification,
}

#[derive(Debug, Deserialize)]
struct Verification {
    manifest_root: String,
    found_root: String,
    #[serde(default)]
    mismatch_count: u64,
}

/// One shard in the dataset's report.
#[derive(Debug, Serialize)]
struct ShardLine {
    shard: String,
    report: PathBuf,
    report_blake3: String,
    verified: bool,
    kind: String,
    started: String,
    ended: String,
    manifest_root: String,
    found_root: String,
    mismatches: u64,
}

/// The dataset's report.
#[derive(Debug, Serialize)]
struct Merged {
    command: &'static str,
    passeur_version: &'static str,
    job: String,
    source: String,
    target: String,
    shards: u16,
    verified: bool,
    /// The earliest start and the latest end among the shards' cutovers.
    started: String,
    ended: String,
    shard_reports: Vec<ShardLine>,
}

/// Run `cutover merge`; its exit code.
pub fn command(args: &MergeReportsArgs) -> u8 {
    let merged = match merge(&args.reports) {
        Ok(m) => m,
        Err(e) => return crate::fail(exit::TROUBLE, &e),
    };
    let json = match serde_json::to_string_pretty(&merged) {
        Ok(j) => j,
        Err(e) => return crate::fail(exit::SOFTWARE, &format!("report: {e}")),
    };
    if let Some(path) = &args.report
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        return crate::fail(
            exit::STATE_DIR,
            &format!("cannot write the report {}: {e}", path.display()),
        );
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", human(&merged));
    }
    if merged.verified {
        exit::OK
    } else {
        exit::INCOMPLETE
    }
}

fn read(path: &Path) -> Result<(ShardReport, String), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let report: ShardReport = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a cutover report: {e}", path.display()))?;
    Ok((report, blake3::hash(&bytes).to_hex().to_string()))
}

/// `K/N` of a report, or why it is not one shard's.
fn shard_of(path: &Path, r: &ShardReport) -> Result<(u16, u16), String> {
    let (kn, _) = cutting(path, r)?;
    kn.split_once('/')
        .and_then(|(k, n)| Some((k.parse().ok()?, n.parse().ok()?)))
        .filter(|(k, n)| k < n)
        .ok_or_else(|| format!("{}: shard {kn:?}", path.display()))
}

/// A report's shard as `K/N` and how the keys were divided (`None`:
/// hashed; a range shard's ranges digest).
fn cutting<'a>(path: &Path, r: &'a ShardReport) -> Result<(&'a str, Option<&'a str>), String> {
    let not = |why: &str| format!("{}: {why}", path.display());
    if r.command != "cutover" {
        return Err(not(&format!("a {} report, not a cutover's", r.command)));
    }
    let s = r
        .shard
        .as_deref()
        .ok_or_else(|| not("the report of an unsharded job (no shard)"))?;
    Ok(match s.split_once(" ranges ") {
        Some((kn, digest)) => (kn, Some(digest)),
        None => (s, None),
    })
}

fn merge(paths: &[PathBuf]) -> Result<Merged, String> {
    let reports = paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (first, _) = &reports[0];
    let (_, n) = shard_of(&paths[0], first)?;
    let mut seen: Vec<Option<&Path>> = vec![None; usize::from(n)];
    let mut lines = Vec::new();
    for ((r, digest), path) in reports.iter().zip(paths) {
        let (k, count) = shard_of(path, r)?;
        if cutting(path, r)?.1 != cutting(&paths[0], first)?.1 {
            return Err(format!(
                "{}: shard {:?}, the first report's is {:?}: every shard must divide the keys the same way (the same ranges file, or hashed)",
                path.display(),
                r.shard.as_deref().unwrap_or_default(),
                first.shard.as_deref().unwrap_or_default()
            ));
        }
        if count != n {
            return Err(format!(
                "{}: shard {k}/{count}, the first report is of {n} shards",
                path.display()
            ));
        }
        if (r.job.as_str(), r.source.as_str(), r.target.as_str())
            != (
                first.job.as_str(),
                first.source.as_str(),
                first.target.as_str(),
            )
        {
            return Err(format!(
                "{}: job {:?} from {} to {}, not the first report's {:?} from {} to {}",
                path.display(),
                r.job,
                r.source,
                r.target,
                first.job,
                first.source,
                first.target
            ));
        }
        if let Some(other) = seen[usize::from(k)].replace(path) {
            return Err(format!(
                "{} and {} are both shard {k}/{n}",
                other.display(),
                path.display()
            ));
        }
        lines.push(ShardLine {
            shard: format!("{k}/{n}"),
            report: path.clone(),
            report_blake3: digest.clone(),
            verified: r.verified,
            kind: r.kind.clone(),
            started: r.started.clone(),
            ended: r.ended.clone(),
            manifest_root: r.verification.manifest_root.clone(),
            found_root: r.verification.found_root.clone(),
            mismatches: r.verification.mismatch_count,
        });
    }
    if let Some(k) = seen.iter().position(Option::is_none) {
        return Err(format!(
            "shard {k}/{n} has no report: {} of {n} given; the dataset is not verified without it",
            paths.len()
        ));
    }
    lines.sort_by_key(|l| {
        l.shard
            .split_once('/')
            .and_then(|(k, _)| k.parse::<u16>().ok())
    });
    // RFC 3339 UTC times of one format order as strings.
    let started = lines
        .iter()
        .map(|l| l.started.clone())
        .min()
        .unwrap_or_default();
    let ended = lines
        .iter()
        .map(|l| l.ended.clone())
        .max()
        .unwrap_or_default();
    Ok(Merged {
        command: "cutover merge",
        passeur_version: env!("CARGO_PKG_VERSION"),
        job: first.job.clone(),
        source: first.source.clone(),
        target: first.target.clone(),
        shards: n,
        verified: lines.iter().all(|l| l.verified),
        started,
        ended,
        shard_reports: lines,
    })
}

fn human(m: &Merged) -> String {
    let not = m.shard_reports.iter().filter(|l| !l.verified).count();
    let mut t = format!(
        "cutover of job {:?}, {} shards: {}\n",
        m.job,
        m.shards,
        if m.verified {
            "DATASET VERIFIED".to_owned()
        } else {
            format!("NOT VERIFIED: {not} of {} shards not verified", m.shards)
        }
    );
    t.push_str(&format!(
        "target: {}\nfrom {} to {}\n",
        m.target, m.started, m.ended
    ));
    for l in &m.shard_reports {
        t.push_str(&format!(
            "  shard {}: {} ({}, {} mismatches) {}\n",
            l.shard,
            if l.verified {
                "VERIFIED"
            } else {
                "NOT VERIFIED"
            },
            l.kind,
            l.mismatches,
            l.report.display()
        ));
    }
    t
}
