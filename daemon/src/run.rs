//! `passeur run`: the service. Jobs run one pass after another, each
//! waiting its interval between passes. SIGTERM/SIGINT stop it (uploads
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
use passeur_config::daemon::{DaemonConfig, JobConfig};
use passeur_core::base::stats::Stats;
use passeur_core::manifest::Manifest;
use passeur_core::stores::{LocalDir, Store};
use passeur_core::sync::{Event, PassOptions, PassSummary, run_pass};

use crate::board::Board;
use crate::exit;
use crate::notify::Notifier;
use crate::serve::StatusServer;
use crate::signals::Request;

/// A job ready to run.
struct Job {
    cfg: JobConfig,
    source: Store,
    target: Store,
    manifest: Arc<Manifest>,
    opts: PassOptions,
    next: Instant,
    passes: u64,
}

/// Why opening the jobs failed: exit code and one line.
pub(crate) type Fatal = (u8, String);

/// A job's stores (probed), state directory and pass options.
pub(crate) struct Opened {
    pub cfg: JobConfig,
    pub source: Store,
    pub target: Store,
    pub manifest: Arc<Manifest>,
    pub opts: PassOptions,
}

/// Open one job of the file: stores (probed) and state directory; with
/// `snapshot`, a state directory another process holds opens read-only.
pub(crate) async fn open_job(
    cfg: &DaemonConfig,
    c: &JobConfig,
    snapshot: bool,
) -> Result<Opened, Fatal> {
    let name = c.name.clone();
    let open = |url: &Option<String>, o: &passeur_config::StoreSection, dir| {
        Store::open(url.as_deref().unwrap_or_default(), &o.to_options(), dir)
            .map_err(|e| (exit::for_error(&e), format!("job {name:?}: {e}")))
    };
    let source = open(&c.source.url, &c.source, LocalDir::MustExist)?;
    let target = open(&c.target.url, &c.target, LocalDir::Create)?;
    let opts = c
        .pass_options()
        .map_err(|e| (exit::CONFIG, format!("job {name:?}: {e}")))?;
    let state = c.state(&cfg.state_dir);
    let manifest = match Manifest::open(&state) {
        Err(passeur_core::Error::StateInUse { .. }) if snapshot => {
            tracing::warn!(job = %name, "the state directory is in use: verifying a read-only snapshot");
            Manifest::open_read_only(&state)
        }
        other => other,
    }
    .map_err(|e| (exit::for_error(&e), format!("job {name:?}: {e}")))?;
    for store in [&source, &target] {
        store
            .probe()
            .await
            .map_err(|e| (exit::for_error(&e), format!("job {name:?}: {e}")))?;
    }
    Ok(Opened {
        cfg: c.clone(),
        source,
        target,
        manifest: Arc::new(manifest),
        opts,
    })
}

async fn open_jobs(cfg: &DaemonConfig) -> Result<Vec<Job>, Fatal> {
    let mut jobs = Vec::new();
    for spanned in &cfg.jobs {
        let o = open_job(cfg, spanned.get_ref(), false).await?;
        jobs.push(Job {
            cfg: o.cfg,
            source: o.source,
            target: o.target,
            manifest: o.manifest,
            opts: o.opts,
            next: Instant::now(),
            passes: 0,
        });
    }
    Ok(jobs)
}

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
    )
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
    board.set_jobs(&job_names(&jobs));
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
                    board.set_jobs(&job_names(&jobs));
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
            if job.next > Instant::now() {
                continue;
            }
            let end = run_one(
                job,
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
        let until = jobs.iter().map(|j| j.next).min();
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

fn job_names(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(|j| j.cfg.name.clone()).collect()
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

#[allow(
    clippy::too_many_arguments,
    reason = "the service loop's state, passed down"
)]
async fn run_one(
    job: &mut Job,
    board: &Board,
    notifier: &Notifier,
    requests: &mut (impl Stream<Item = Request> + Unpin),
    watchdog: &mut Option<tokio::time::Interval>,
    cfg: &DaemonConfig,
    path: &Path,
    pending_reload: &mut Option<DaemonConfig>,
) -> PassEnd {
    job.passes += 1;
    let name = job.cfg.name.clone();
    notifier.status(&format!("job {name}: pass {} running", job.passes));
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    board.pass_started(&name, Arc::clone(&stats));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let pass = run_pass(
        job.source.clone(),
        job.target.clone(),
        Arc::clone(&job.manifest),
        &job.opts,
        Arc::clone(&stats),
        |e| {
            if let Event::Part(p) = e {
                tracing::debug!(event = "part", job = %name, key = %p.key, part = p.part, size = p.size, "part recorded");
            }
        },
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    );
    let mut pass = std::pin::pin!(pass);
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
    let took = started.elapsed();
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
