//! `cutover --changes`: the final pass as the job's change feed up to the
//! freeze time, plus the keys pending from earlier change passes. The
//! feed's `lastConsumable` must first pass the freeze (Azure moves it once
//! an hour): every change made before the freeze is then readable.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use passeur_core::base::stats::Stats;
use passeur_core::feed::ChangeSource;
use passeur_core::sync::changes::{ChangesSummary, run_changes};
use serde::Serialize;

use crate::exit;
use crate::jobs::Opened;

/// The final change pass as the report shows it.
#[derive(Debug, Serialize)]
pub(crate) struct FinalChanges {
    pub seconds: f64,
    /// Every change made at the source before this instant must be at the
    /// target (RFC 3339): when the command started.
    pub freeze: String,
    /// Seconds waited for the feed's lastConsumable to pass the freeze.
    pub waited_s: f64,
    /// The feed was read past the freeze: every change it recorded before
    /// the freeze was looked at.
    pub read_to_freeze: bool,
    /// Nothing failed or pending, the feed read past the freeze.
    pub complete: bool,
    pub summary: ChangesSummary,
}

/// How often the feed's `lastConsumable` is read while waiting.
const WAIT_STEP: Duration = Duration::from_secs(15);

/// Wait for the feed to pass `freeze`, then run the change pass; `Err` is
/// the exit code, its line already printed.
pub(crate) async fn run_final_changes(
    opened: &Opened,
    job: &str,
    freeze: SystemTime,
    wait: Duration,
) -> Result<FinalChanges, u8> {
    let t = Instant::now();
    let url = opened.cfg.source.url.as_deref().unwrap_or_default();
    let feed = ChangeSource::open(url, &opened.cfg.source.to_options())
        .map_err(|e| crate::fail(exit::for_error(&e), &format!("change feed: {e}")))?;
    let freeze_utc = chrono::DateTime::<chrono::Utc>::from(freeze);
    let mut said = false;
    loop {
        let meta = feed
            .reader
            .meta()
            .await
            .map_err(|e| crate::fail(exit::for_error(&e), &format!("change feed: {e}")))?;
        if meta.last_consumable >= freeze_utc {
            break;
        }
        if t.elapsed() >= wait {
            return Err(crate::fail(
                exit::INCOMPLETE,
                &format!(
                    "the change feed's lastConsumable ({}) has not passed the freeze ({freeze_utc}) after {}: changes made before the freeze may not be readable yet; wait longer (--wait) or run a full cutover",
                    meta.last_consumable,
                    humantime::format_duration(Duration::from_secs(t.elapsed().as_secs()))
                ),
            ));
        }
        if !said {
            eprintln!(
                "passeur: waiting for the change feed to pass the freeze ({freeze_utc}; it is at {})...",
                meta.last_consumable
            );
            said = true;
        }
        tokio::time::sleep(WAIT_STEP.min(wait.saturating_sub(t.elapsed()))).await;
    }
    let waited_s = t.elapsed().as_secs_f64();
    eprintln!("passeur: final change pass of job {job:?}...");
    let (mut requests, handle) = crate::signals::requests().map_err(|e| {
        crate::fail(
            exit::SOFTWARE,
            &format!("cannot install signal handlers: {e}"),
        )
    })?;
    let r = run_changes(
        opened.source.clone(),
        opened.target.clone(),
        Arc::clone(&opened.manifest),
        &opened.opts,
        &feed,
        Arc::new(Stats::default()),
        |_| {},
        async move {
            let _ = requests.next().await;
        },
    )
    .await;
    handle.close();
    match r {
        Ok(summary) if summary.interrupted => Err(crate::fail(
            exit::INTERRUPTED,
            "interrupted during the final change pass; nothing verified",
        )),
        Ok(summary) => {
            // lastConsumable passed the freeze, but an hour before it that
            // Azure has not closed is not read: the pass says how far it got.
            let read_to_freeze = summary
                .consumable_until
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= freeze_utc);
            Ok(FinalChanges {
                seconds: t.elapsed().as_secs_f64(),
                freeze: freeze_utc.to_rfc3339(),
                waited_s,
                read_to_freeze,
                complete: summary.complete() && read_to_freeze,
                summary,
            })
        }
        Err(e) => Err(crate::fail(
            exit::for_error(&e),
            &format!("final change pass: {e}"),
        )),
    }
}
