//! `passeur run`: the service. Jobs run one pass after another, each
//! waiting its interval between passes; a job that follows a change feed
//! runs a change pass every `changes-interval` between its full passes. SIGTERM/SIGINT stop it (uploads
//! pause at a part boundary; exit 0 within `stop-timeout`; a second signal
//! exits at once); SIGHUP reads the configuration again and swaps it in
//! between passes, or keeps the running one if the new file is invalid.
//! Everything runs on this one task: nothing is spawned, so nothing is left
//! behind on exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use passeur_config::ConfigError;
use passeur_config::daemon::DaemonConfig;
use passeur_core::base::stats::Stats;
use passeur_core::sync::changes::{ChangesSummary, run_changes};
use passeur_core::sync::{Event, PassSummary, run_pass};

use crate::board::Board;
use crate::exit;
use crate::jobs::{Job, open_jobs, show_jobs};
use crate::notify::Notifier;
use crate::serve::StatusServer;
use crate::signals::Request;

fn log_config_error(e: &ConfigError) {
    match e {
        ConfigError::Invalid { path, errors } => {
            for line in errors {
                tracing::error!("{}: {line}", path.display());
            }
        }
        other => tracing::error!("{other}"),
    }
}

fn summary_line(name: &str, s: &PassSummary, took: Duration) -> String {
    let st = &s.stats;
    format!(
        "job {name}: pass {} in {:.1}s: {} listed, {} copied, {} unchanged, {} deduplicated, {} deleted, {} failed, {} paused; {} bytes written",
        if s.complete() {
            "complete"
        } else {
            "incomplete"
        },
        took.as_secs_f64(),
        st.listed,
        st.copied,
        st.unchanged,
        st.deduplicated,
        st.deleted,
        st.failed,
        st.paused,
        st.bytes_written
    ) + &if st.adopted > 0 {
        format!(
            "; {} found at the target already (recorded, not written)",
            st.adopted
        )
    } else {
        String::new()
    }
}

/// What the loop waits for between and during passes.
enum Wake {
    Request(Option<Request>),
    Watchdog,
    Due,
}

async fn next_wake(
    requests: &mut (impl Stream<Item = Request> + Unpin),
    watchdog: &mut Option<tokio::time::Interval>,
    until: Option<Instant>,
) -> Wake {
    let sleep = async {
        match until {
            Some(t) => tokio::time::sleep_until(t.into()).await,
            None => std::future::pending().await,
        }
    };
    let tick = async {
        match watchdog {
            Some(w) => {
                w.tick().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = requests.next() => Wake::Request(r),
        () = tick => Wake::Watchdog,
        () = sleep => Wake::Due,
    }
}

/// Run the service until `requests` asks it to stop (or ends); returns the
/// exit code. The requests come from signals in the binary (see
/// [`crate::signals`]); anything that yields them can drive the service.
pub async fn run(
    path: PathBuf,
    mut cfg: DaemonConfig,
    requests: impl Stream<Item = Request>,
) -> u8 {
    let notifier = Notifier::from_env();
    let mut requests = Box::pin(requests);
    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);
    let mut jobs = match open_jobs(&cfg).await {
        Ok(j) => j,
        Err((code, msg)) => {
            tracing::error!("{msg}");
            return code;
        }
    };
    let board = Board::default();
    show_jobs(&board, &jobs);
    let server = match cfg.metrics_address {
        Some(addr) => match StatusServer::start(addr, board.clone()).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("cannot serve status on {addr}: {e}");
                return exit::UNAVAILABLE;
            }
        },
        None => None,
    };
    tracing::info!(jobs = jobs.len(), config = %path.display(), "passeur running");
    notifier.ready(&format!("{} jobs ready", jobs.len()));
    let mut pending_reload: Option<DaemonConfig> = None;
    let code = 'service: loop {
        // Between passes: apply a reload, then run every due job in order.
        if let Some(new) = pending_reload.take() {
            drop(jobs);
            match open_jobs(&new).await {
                Ok(j) => {
                    jobs = j;
                    if new.metrics_address != cfg.metrics_address {
                        tracing::warn!("metrics-address changes take effect at the next start");
                    }
                    cfg = new;
                    show_jobs(&board, &jobs);
                    tracing::info!(
                        event = "reload",
                        outcome = "applied",
                        jobs = jobs.len(),
                        "configuration reloaded"
                    );
                }
                Err((_, msg)) => {
                    tracing::error!("reload failed, keeping the running configuration: {msg}");
                    jobs = match open_jobs(&cfg).await {
                        Ok(j) => j,
                        Err((code, msg)) => {
                            tracing::error!("{msg}");
                            break 'service code;
                        }
                    };
                }
            }
            notifier.ready(&format!("{} jobs ready", jobs.len()));
        }
        for job in &mut jobs {
            let now = Instant::now();
            let kind = if job.next <= now {
                PassKind::Full
            } else if job.feed.is_some() && job.next_changes <= now {
                PassKind::Changes
            } else {
                continue;
            };
            let end = run_one(
                job,
                kind,
                &board,
                &notifier,
                &mut requests,
                &mut watchdog,
                &cfg,
                &path,
                &mut pending_reload,
            )
            .await;
            if let PassEnd::Stopped(code) = end {
                break 'service code;
            }
        }
        let until = jobs
            .iter()
            .map(|j| match j.feed {
                Some(_) => j.next.min(j.next_changes),
                None => j.next,
            })
            .min();
        let status = match until {
            Some(t) => format!(
                "idle; next pass in {}s",
                t.saturating_duration_since(Instant::now()).as_secs()
            ),
            None => "idle".to_owned(),
        };
        notifier.status(&status);
        loop {
            match next_wake(&mut requests, &mut watchdog, until).await {
                Wake::Due => break,
                Wake::Watchdog => notifier.watchdog(),
                Wake::Request(Some(Request::Reload)) => {
                    if let Some(new) = reload(&path, &notifier) {
                        pending_reload = Some(new);
                        break;
                    }
                }
                Wake::Request(Some(Request::Stop | Request::Quit) | None) => {
                    notifier.stopping();
                    tracing::info!("stopped between passes");
                    break 'service exit::OK;
                }
            }
        }
    };
    if let Some(s) = server {
        s.shutdown().await;
    }
    code
}

/// Read the configuration again; `None` (logged) when it is invalid.
fn reload(path: &Path, notifier: &Notifier) -> Option<DaemonConfig> {
    notifier.reloading();
    match DaemonConfig::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            log_config_error(&e);
            tracing::error!(
                event = "reload",
                outcome = "refused",
                "reload refused: the running configuration stays"
            );
            notifier.ready("reload refused; running configuration kept");
            None
        }
    }
}

enum PassEnd {
    Done,
    Stopped(u8),
}

/// Which pass a job runs now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PassKind {
    /// Lists the whole source.
    Full,
    /// Reads the change feed.
    Changes,
}

/// What a pass of either kind returned.
enum Ran {
    Full(Result<PassSummary, passeur_core::Error>),
    Changes(Result<ChangesSummary, passeur_core::Error>),
}

#[allow(
    clippy::too_many_arguments,
    reason = "the service loop's state, passed down"
)]
async fn run_one(
    job: &mut Job,
    kind: PassKind,
    board: &Board,
    notifier: &Notifier,
    requests: &mut (impl Stream<Item = Request> + Unpin),
    watchdog: &mut Option<tokio::time::Interval>,
    cfg: &DaemonConfig,
    path: &Path,
    pending_reload: &mut Option<DaemonConfig>,
) -> PassEnd {
    let name = job.cfg.name.clone();
    if kind == PassKind::Full {
        job.passes += 1;
        notifier.status(&format!("job {name}: pass {} running", job.passes));
    } else {
        notifier.status(&format!("job {name}: change pass running"));
    }
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    board.pass_started(&name, Arc::clone(&stats));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let on_event = |e: &Event| {
        if let Event::Part(p) = e {
            tracing::debug!(event = "part", job = %name, key = %p.key, part = p.part, size = p.size, "part recorded");
        }
    };
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    let (source, target, manifest) = (
        job.source.clone(),
        job.target.clone(),
        Arc::clone(&job.manifest),
    );
    let pass: std::pin::Pin<Box<dyn std::future::Future<Output = Ran> + Send + '_>> =
        match (kind, &job.feed) {
            (PassKind::Changes, Some(feed)) => Box::pin(async {
                Ran::Changes(
                    run_changes(
                        source,
                        target,
                        manifest,
                        &job.opts,
                        feed,
                        Arc::clone(&stats),
                        on_event,
                        shutdown,
                    )
                    .await,
                )
            }),
            _ => Box::pin(async {
                Ran::Full(
                    run_pass(
                        source,
                        target,
                        manifest,
                        &job.opts,
                        Arc::clone(&stats),
                        on_event,
                        shutdown,
                    )
                    .await,
                )
            }),
        };
    let mut pass = pass;
    let mut deadline: Option<Instant> = None;
    let result = loop {
        let wake = tokio::select! {
            r = &mut pass => break r,
            w = next_wake(requests, watchdog, deadline) => w,
        };
        match wake {
            Wake::Watchdog => notifier.watchdog(),
            Wake::Request(Some(Request::Reload)) => {
                if let Some(new) = reload(path, notifier) {
                    tracing::info!("new configuration takes effect after this pass");
                    *pending_reload = Some(new);
                }
            }
            Wake::Request(Some(Request::Stop)) => {
                notifier.stopping();
                tracing::info!(
                    timeout_s = cfg.stop_timeout.0.as_secs(),
                    "stopping: uploads pause at their next part boundary"
                );
                let _ = stop_tx.send(true);
                deadline = Some(Instant::now() + cfg.stop_timeout.0);
            }
            Wake::Request(Some(Request::Quit) | None) => {
                tracing::warn!(
                    "second stop request: exiting now; parts in flight are copied again next time"
                );
                return PassEnd::Stopped(exit::INTERRUPTED);
            }
            Wake::Due => {
                tracing::warn!(
                    "stop-timeout reached: exiting; parts in flight are copied again next time"
                );
                return PassEnd::Stopped(exit::OK);
            }
        }
    };
    drop(pass);
    let took = started.elapsed();
    job.next_changes = Instant::now() + job.cfg.changes_interval.0;
    let result = match result {
        Ran::Full(r) => r,
        Ran::Changes(r) => {
            changes_ended(job, board, notifier, r, took);
            return if deadline.is_some() {
                PassEnd::Stopped(exit::OK)
            } else {
                PassEnd::Done
            };
        }
    };
    job.next = Instant::now() + job.cfg.interval.0;
    let next = SystemTime::now() + job.cfg.interval.0;
    match result {
        Ok(summary) => {
            board.pass_finished(&name, &summary, next);
            let line = summary_line(&name, &summary, took);
            let s = &summary.stats;
            tracing::info!(
                event = "pass",
                job = %name,
                pass = job.passes,
                complete = summary.complete(),
                copied = s.copied,
                paused = s.paused,
                failed = s.failed,
                bytes_written = s.bytes_written,
                "{line}"
            );
            for f in summary.failures.iter().take(20) {
                tracing::warn!(job = %name, key = %f.key, kind = f.kind.as_str(), reason = %f.reason, "object failed");
            }
            if let Some(why) = &summary.deletes_refused {
                tracing::warn!(job = %name, "deletes refused: {why}");
            }
            notifier.status(&line);
        }
        Err(e) => {
            // Stores or state dir failing mid-service: report, retry at the
            // next interval (the service never gives up on its own).
            board.pass_failed(&name, next);
            tracing::error!(job = %name, error = %e, "pass failed; retrying after the interval");
            notifier.status(&format!("job {name}: pass failed: {e}"));
        }
    }
    if deadline.is_some() {
        return PassEnd::Stopped(exit::OK);
    }
    PassEnd::Done
}

/// Report a change pass's end. A feed the cursor cannot follow (a gap, a
/// damaged file) brings the full pass forward once: only it can repair
/// what the feed lost (and a complete one moves the cursor past a gap);
/// while the feed stays blocked, full passes keep their interval.
fn changes_ended(
    job: &mut Job,
    board: &Board,
    notifier: &Notifier,
    result: Result<ChangesSummary, passeur_core::Error>,
    took: Duration,
) {
    let name = &job.cfg.name;
    let next = SystemTime::now() + job.cfg.changes_interval.0;
    match result {
        Ok(s) => {
            job.feed_blocked = false;
            board.changes_finished(name, &s, next);
            let st = &s.stats;
            let line = format!(
                "job {name}: change pass {} in {:.1}s: {} events, {} keys, {} copied, {} unchanged, {} deleted, {} failed, {} pending; every change before {} at the target",
                if s.complete() {
                    "complete"
                } else {
                    "incomplete"
                },
                took.as_secs_f64(),
                s.events,
                s.keys,
                st.copied,
                st.unchanged,
                st.deleted,
                st.failed,
                s.pending,
                s.consumable_until.as_deref().unwrap_or("(nothing read)"),
            );
            tracing::info!(
                event = "changes",
                job = %name,
                complete = s.complete(),
                events = s.events,
                copied = st.copied,
                failed = st.failed,
                pending = s.pending,
                "{line}"
            );
            for f in s.failures.iter().take(20) {
                tracing::warn!(job = %name, key = %f.key, kind = f.kind.as_str(), reason = %f.reason, "object failed");
            }
            if let Some(why) = &s.deletes_refused {
                tracing::warn!(job = %name, "deletes refused: {why}");
            }
            notifier.status(&line);
        }
        Err(e) => {
            board.changes_failed(name, &e.to_string(), next);
            if matches!(e, passeur_core::Error::ChangeFeed { .. }) && !job.feed_blocked {
                tracing::error!(job = %name, error = %e, "the change feed cannot be followed: running a full pass now");
                job.feed_blocked = true;
                job.next = Instant::now();
            } else {
                tracing::error!(job = %name, error = %e, "change pass failed; retrying after changes-interval");
            }
            notifier.status(&format!("job {name}: change pass failed: {e}"));
        }
    }
}
