//! `passeur cutover` and `passeur verify`: an optional final pass, then
//! verification of the job's target against its manifest, a human summary
//! and a JSON report an auditor can keep. Exit 0 verified, 1 mismatches
//! (or a final pass that left work undone); a command that could not run
//! exits with the code of what stopped it (the table in `exit.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use passeur_config::daemon::DaemonConfig;
use passeur_core::base::shard::Shard;
use passeur_core::base::stats::Stats;
use passeur_core::sync::{PassSummary, run_pass};
use passeur_core::verify::{MismatchKind, VerifyOptions, VerifyReport, verify, verify_changed};
use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::cutover_changes::{FinalChanges, run_final_changes};
use crate::exit;
use crate::jobs::{Opened, open_job};
use crate::manifest_state::ManifestState;

/// Exit codes of these two commands: the table in `exit.rs`, where 0 means
/// VERIFIED and 1 that the target differs or the final pass left work.
const VERIFIED: u8 = exit::OK;
const MISMATCHES: u8 = exit::INCOMPLETE;

/// The final pass as the report shows it.
#[derive(Debug, Serialize)]
struct FinalPass {
    seconds: f64,
    /// How the final pass listed the source: `complete` (every key from the
    /// first to the last, whatever checkpoint an interrupted pass left),
    /// `incomplete` (a listing error or a key out of order), or `resumed`
    /// (never: the final pass does not continue a checkpoint).
    listing: &'static str,
    complete: bool,
    summary: PassSummary,
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    passeur_version: &'static str,
    job: String,
    source: String,
    target: String,
    started: String,
    ended: String,
    verified: bool,
    /// `K/N` when the job is one shard of a dataset: only its keys were
    /// replicated and verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<String>,
    /// `full`: the final pass listed the whole source and verification
    /// the whole target; `changes`: the final pass read the change feed
    /// and verification looked at the keys changed since the last one.
    kind: &'static str,
    /// What an incremental cutover or verification took on trust.
    relied_on: Vec<String>,
    final_pass: Option<FinalPass>,
    final_changes: Option<FinalChanges>,
    /// What the manifest held of the source when verification ran:
    /// `verified` compares the target with the manifest, no further.
    manifest: ManifestState,
    /// With --repair: keys whose records were forgotten (cutover: copied
    /// again by a second final pass, then verified again).
    repaired: Vec<String>,
    /// Of those, keys forgotten because they hold the same content as a
    /// damaged or missing one (possibly server-side copies of it).
    repaired_same_content: Vec<String>,
    verification: VerifyReport,
}

/// Print why the command could not run; its exit code.
fn could_not_run(code: u8, msg: &str) -> u8 {
    crate::fail(code, msg)
}

/// The final pass; `Err` is the exit code, its line already printed.
async fn run_final_pass(opened: &Opened, job: &str) -> Result<FinalPass, u8> {
    eprintln!("passeur: final pass of job {job:?}...");
    let t = Instant::now();
    let (mut requests, handle) = crate::signals::requests().map_err(|e| {
        could_not_run(
            exit::SOFTWARE,
            &format!("cannot install signal handlers: {e}"),
        )
    })?;
    // The final pass lists every key from the first: a checkpoint left by a
    // stopped service must not let changes before it go unread.
    let opts = passeur_core::sync::PassOptions {
        resume_listing: false,
        ..opened.opts.clone()
    };
    let r = run_pass(
        opened.source.clone(),
        opened.target.clone(),
        Arc::clone(&opened.manifest),
        &opts,
        Arc::new(Stats::default()),
        |_| {},
        async move {
            let _ = requests.next().await;
        },
    )
    .await;
    handle.close();
    match r {
        Ok(summary) if summary.interrupted => Err(could_not_run(
            exit::INTERRUPTED,
            "interrupted during the final pass; nothing verified",
        )),
        Ok(summary) => Ok(FinalPass {
            seconds: t.elapsed().as_secs_f64(),
            listing: match (&summary.resumed_after, summary.listing_complete) {
                (Some(_), _) => "resumed",
                (None, true) => "complete",
                (None, false) => "incomplete",
            },
            complete: summary.complete(),
            summary,
        }),
        Err(e) => Err(could_not_run(
            exit::for_error(&e),
            &format!("final pass: {e}"),
        )),
    }
}

/// The verification (of the changed keys only, with `changes`); `Err` is
/// the exit code, its line already printed.
async fn run_verify(
    opened: &Opened,
    opts: &VerifyOptions,
    changes: bool,
) -> Result<VerifyReport, u8> {
    eprintln!(
        "passeur: verifying {} ({}{})...",
        opened.target.url,
        if opts.deep { "deep" } else { "fast" },
        if changes { ", changed keys only" } else { "" }
    );
    let r = if changes {
        verify_changed(&opened.target, &opened.manifest, opts).await
    } else {
        verify(&opened.target, &opened.manifest, opts).await
    };
    r.map_err(|e| could_not_run(exit::for_error(&e), &format!("verification: {e}")))
}

/// What an incremental cutover or verification took on trust.
fn relied_on(
    changes: Option<&FinalChanges>,
    v: &VerifyReport,
    shard: Option<&Shard>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = shard {
        let part = match s.span() {
            Some((after, until)) => format!(
                "the keys after {} up to and including {} (ranges {})",
                after.map_or("the first".to_owned(), |a| format!("{a:?}")),
                until.map_or("the last".to_owned(), |u| format!("{u:?}")),
                s.ranges().map(|r| r.digest()).unwrap_or_default()
            ),
            None => format!(
                "{} of {} virtual shards",
                s.virtual_count(),
                passeur_core::base::shard::VIRTUAL
            ),
        };
        out.push(format!(
            "this job is shard {s} of the dataset: only its keys ({part}) were replicated and verified; the other shards' keys are each shard's own cutover"
        ));
    }
    if let Some(c) = changes {
        out.push(format!(
            "the Azure change feed recorded every change made at the source before the freeze ({}); it was read up to {} with no gap detected, and keys it did not name were not looked at",
            c.freeze,
            c.summary.consumable_until.as_deref().unwrap_or("-")
        ));
    }
    if let Some(i) = &v.incremental {
        out.push(format!(
            "the {}{} verification of {} found the whole target equal (root {}); objects passeur has not written or deleted since were not looked at again (a change made at the target by another client is not seen)",
            if i.basis_deep { "deep" } else { "fast" },
            if i.basis_incremental { ", itself incremental," } else { "" },
            i.basis_at,
            i.basis_root
        ));
    }
    out
}

/// Run `cutover` (with a final pass) or `verify` (without).
pub async fn command(args: VerifyArgs, final_pass: bool) -> u8 {
    let name = if final_pass { "cutover" } else { "verify" };
    if args.sample.is_some_and(|f| !(f > 0.0 && f <= 1.0)) {
        return could_not_run(exit::USAGE, "--sample must be above 0 and at most 1");
    }
    let cfg = match DaemonConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            // One line per problem, each prefixed.
            return crate::config_errors(&e);
        }
    };
    let job = match (&args.job, cfg.jobs.as_slice()) {
        (Some(j), jobs) => jobs.iter().map(|s| s.get_ref()).find(|c| &c.name == j),
        (None, [only]) => Some(only.get_ref()),
        (None, _) => {
            return could_not_run(
                exit::USAGE,
                "the file has several jobs: name one with --job",
            );
        }
    };
    let Some(job) = job else {
        return could_not_run(
            exit::USAGE,
            &format!(
                "no job {:?} in {}",
                args.job.unwrap_or_default(),
                args.config.display()
            ),
        );
    };
    if !final_pass && !job.state(&cfg.state_dir).join("CURRENT").is_file() {
        return could_not_run(
            exit::STATE_DIR,
            &format!(
                "job {:?} has no state yet ({}): run a pass (or a cutover) first",
                job.name,
                job.state(&cfg.state_dir).display()
            ),
        );
    }
    let opened = match open_job(&cfg, job, !final_pass).await {
        Ok(o) => o,
        Err((code, msg)) => return could_not_run(code, &msg),
    };
    let started = SystemTime::now();
    let vopts = VerifyOptions {
        deep: args.deep,
        sample: args.sample,
        full: args.full,
        // A fixed number of checks at once (no adaptive window here): as
        // many as a pass starts with.
        concurrency: opened
            .opts
            .concurrency
            .min(passeur_core::stores::window::INITIAL),
        bandwidth_limit: opened.opts.bandwidth_limit,
        listing_concurrency: opened.opts.listing_concurrency,
        filter: opened.opts.filter.clone(),
        trash_prefix: job.delete.trash_prefix.clone(),
    };
    if args.repair && opened.manifest.is_read_only() {
        return could_not_run(
            exit::STATE_DIR,
            "--repair needs the state directory: stop the service first",
        );
    }
    if args.changes && final_pass && job.changes.is_none() {
        return could_not_run(
            exit::USAGE,
            &format!(
                "job {:?} follows no change feed (changes = \"azure-change-feed\"): --changes has nothing to read; run a full cutover",
                job.name
            ),
        );
    }
    if args.changes {
        match opened.manifest.last_verified() {
            Ok(Some(_)) => {}
            Ok(None) => {
                return could_not_run(
                    exit::CONFIG,
                    &format!(
                        "job {:?}: no verification of the whole target is recorded yet: run a full {name} once; --changes relies on it",
                        job.name
                    ),
                );
            }
            Err(e) => return could_not_run(exit::for_error(&e), &e.to_string()),
        }
    }
    if args.changes && final_pass {
        match opened.manifest.feed_covered() {
            Ok(true) => {}
            Ok(false) => {
                return could_not_run(
                    exit::CONFIG,
                    &format!(
                        "job {:?}: no complete full pass has run since the change feed was anchored: keys changed before it may be missing from the manifest, where neither the feed nor --changes looks; run a full cutover",
                        job.name
                    ),
                );
            }
            Err(e) => return could_not_run(exit::for_error(&e), &e.to_string()),
        }
    }
    let mut pass = None;
    let mut changes = None;
    if final_pass && args.changes {
        match run_final_changes(&opened, &job.name, started, args.wait).await {
            Ok(c) => changes = Some(c),
            Err(code) => return code,
        }
    } else if final_pass {
        match run_final_pass(&opened, &job.name).await {
            Ok(p) => pass = Some(p),
            Err(code) => return code,
        }
    }
    let mut verification = match run_verify(&opened, &vopts, args.changes).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let mut repaired = Vec::new();
    let mut repaired_same_content = Vec::new();
    if args.repair {
        // Forget what the target lost or holds wrong, and the keys holding
        // the same content (dedup copies of a damaged holder look right to
        // fast verification): a pass copies them again.
        repaired = verification
            .mismatches
            .iter()
            .filter(|m| m.kind != MismatchKind::Extra)
            .map(|m| m.key.clone())
            .collect();
        match opened.manifest.forget_damaged(&repaired) {
            Ok(same) => repaired_same_content = same,
            Err(e) => return could_not_run(exit::for_error(&e), &format!("repair: {e}")),
        }
        repaired.extend(repaired_same_content.iter().cloned());
        if !repaired.is_empty() && final_pass {
            eprintln!("passeur: {} objects to copy again...", repaired.len());
            match run_final_pass(&opened, &job.name).await {
                Ok(p) => pass = Some(p),
                Err(code) => return code,
            }
            verification = match run_verify(&opened, &vopts, false).await {
                Ok(v) => v,
                Err(code) => return code,
            };
        }
    }
    let pass_ok =
        pass.as_ref().is_none_or(|p| p.complete) && changes.as_ref().is_none_or(|c| c.complete);
    let manifest = match ManifestState::read(&opened.manifest, &opened.opts.filter) {
        Ok(m) => m,
        Err(e) => return could_not_run(exit::for_error(&e), &format!("manifest: {e}")),
    };
    let report = Report {
        command: name,
        passeur_version: env!("CARGO_PKG_VERSION"),
        job: job.name.clone(),
        source: opened.source.url.clone(),
        target: opened.target.url.clone(),
        started: humantime::format_rfc3339_seconds(started).to_string(),
        ended: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        verified: verification.verified() && pass_ok,
        shard: opened.opts.filter.shard().map(Shard::describe),
        kind: if args.changes { "changes" } else { "full" },
        relied_on: relied_on(changes.as_ref(), &verification, opened.opts.filter.shard()),
        final_pass: pass,
        final_changes: changes,
        manifest,
        repaired,
        repaired_same_content,
        verification,
    };
    let path = args.report.unwrap_or_else(|| {
        let stamp = humantime::format_rfc3339_seconds(started)
            .to_string()
            .replace(':', "");
        PathBuf::from(format!("passeur-{name}-{}-{stamp}.json", job.name))
    });
    let json = match serde_json::to_string_pretty(&report) {
        Ok(j) => j,
        Err(e) => return could_not_run(exit::SOFTWARE, &format!("report: {e}")),
    };
    if let Err(e) = std::fs::write(&path, format!("{json}\n")) {
        return could_not_run(
            exit::STATE_DIR,
            &format!("cannot write the report {}: {e}", path.display()),
        );
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", human(&report, &path));
    }
    if report.verified {
        VERIFIED
    } else {
        MISMATCHES
    }
}

/// The human summary.
fn human(r: &Report, path: &std::path::Path) -> String {
    let v = &r.verification;
    let mut t = String::new();
    // A full verification stands for the source only as far as the
    // manifest holds it; a change verification says what it relied on.
    let partial = r.kind == "full" && !r.manifest.whole();
    let verdict = if r.verified && partial {
        "VERIFIED against the manifest, which does not hold the whole source yet (below)".to_owned()
    } else if r.verified {
        "VERIFIED".to_owned()
    } else {
        format!("NOT VERIFIED: {} mismatches", v.mismatch_count)
    };
    t.push_str(&format!(
        "{} of job {:?}{}{}: {verdict}\n",
        r.command,
        r.job,
        r.shard
            .as_ref()
            .map(|s| format!(" (shard {s}: its keys only)"))
            .unwrap_or_default(),
        if r.kind == "changes" {
            " (incremental: changes only)"
        } else {
            ""
        }
    ));
    t.push_str(&format!("target: {}\n", r.target));
    if r.kind == "full" && (r.command == "verify" || partial) {
        t.push_str(&r.manifest.human());
    }
    if let Some(c) = &r.final_changes {
        let s = &c.summary;
        t.push_str(&format!(
            "final change pass: {:.1}s (waited {:.0}s for the feed), freeze {}, feed read to {}: {} events, {} keys, {} copied, {} deleted, {} failed, {} pending{}\n",
            c.seconds,
            c.waited_s,
            c.freeze,
            s.consumable_until.as_deref().unwrap_or("-"),
            s.events,
            s.keys,
            s.stats.copied,
            s.stats.deleted,
            s.stats.failed,
            s.pending,
            if c.complete { "" } else { " (incomplete)" }
        ));
        if !c.read_to_freeze {
            t.push_str(
                "  the feed was NOT read to the freeze: an hour before it is not closed yet; run again later, or a full cutover\n",
            );
        }
        for f in s.failures.iter().take(20) {
            t.push_str(&format!(
                "  failed ({}): {:?}: {}\n",
                f.kind.as_str(),
                f.key,
                f.reason
            ));
        }
    }
    for why in &r.relied_on {
        t.push_str(&format!("relied on: {why}\n"));
    }
    if let Some(p) = &r.final_pass {
        let s = &p.summary.stats;
        t.push_str(&format!(
            "final pass ({} listing): {:.1}s, {} listed, {} copied, {} unchanged, {} deleted, {} failed{}\n",
            p.listing,
            p.seconds,
            s.listed,
            s.copied,
            s.unchanged,
            s.deleted,
            s.failed,
            if p.complete { "" } else { " (incomplete)" }
        ));
        for f in p.summary.failures.iter().take(20) {
            t.push_str(&format!(
                "  failed ({}): {:?}: {}\n",
                f.kind.as_str(),
                f.key,
                f.reason
            ));
        }
    }
    if !r.repaired.is_empty() {
        let how = if r.command == "cutover" {
            "copied again and verified again"
        } else {
            "forgotten: the next pass copies them again"
        };
        t.push_str(&format!("repaired: {} objects ({how})\n", r.repaired.len()));
        if !r.repaired_same_content.is_empty() {
            t.push_str(&format!(
                "  {} of them hold the same content as a damaged or missing object\n",
                r.repaired_same_content.len()
            ));
        }
    }
    if let Some(i) = &v.incremental {
        t.push_str(&format!(
            "verification of the changed keys: {} looked at, changed since {}\n",
            i.keys_checked, i.basis_at
        ));
    }
    t.push_str(&format!(
        "verification ({}): {:.1}s, {} {}objects ({} bytes) in the manifest, {} at the target\n",
        if v.deep { "deep" } else { "fast" },
        v.seconds,
        v.objects,
        if v.incremental.is_some() {
            "changed "
        } else {
            ""
        },
        v.bytes,
        v.target_objects
    ));
    if v.state_snapshot {
        t.push_str("  (read-only snapshot of a state directory in use: objects replicated since show as extra)\n");
    }
    if v.etag_unchecked > 0 {
        t.push_str(&format!(
            "  {} objects checked by size only: the target's listing gives no ETag ({})\n",
            v.etag_unchecked,
            if v.deep {
                "deep: those read back are checked by their bytes"
            } else {
                "--deep reads their bytes"
            }
        ));
    }
    if v.deep {
        t.push_str(&format!(
            "  read back: {} objects ({} bytes); skipped: {} unchanged since their last deep check, {} not in the sample\n",
            v.deep_checked, v.deep_bytes, v.deep_skipped_unchanged, v.deep_not_sampled
        ));
    }
    let same = if v.manifest_root == v.found_root {
        "equal"
    } else {
        "DIFFERENT"
    };
    t.push_str(&format!(
        "merkle root: manifest {}\n             found    {} ({same})\n",
        v.manifest_root, v.found_root
    ));
    for m in v.mismatches.iter().take(50) {
        t.push_str(&format!(
            "  {:<8} {:?}  expected {}  found {}\n",
            format!("{:?}", m.kind).to_lowercase(),
            m.key,
            m.expected.as_deref().unwrap_or("-"),
            m.found.as_deref().unwrap_or("-")
        ));
    }
    if v.mismatch_count > 50 {
        t.push_str(&format!(
            "  … {} more in the report\n",
            v.mismatch_count - 50
        ));
    }
    t.push_str(&format!("report: {}\n", path.display()));
    t
}
