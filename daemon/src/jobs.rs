//! The service's jobs: each opened (stores probed, state directory held)
//! and scheduled. A job that follows a change feed keeps its full-pass
//! schedule across restarts and reloads: while the feed covers the source
//! and the last complete full pass ended less than `interval` ago, the next
//! full pass is due an interval after that one, and change passes run
//! first. Without a feed (or before a complete full pass), a job starts
//! with a full pass.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use passeur_config::daemon::{DaemonConfig, JobConfig};
use passeur_core::feed::{ChangeSource, Cursor};
use passeur_core::manifest::{LastCompletePass, Manifest};
use passeur_core::stores::{LocalDir, Store};
use passeur_core::sync::PassOptions;

use crate::board::Board;
use crate::exit;

/// A job ready to run.
pub(crate) struct Job {
    pub cfg: JobConfig,
    pub source: Store,
    pub target: Store,
    pub manifest: Arc<Manifest>,
    pub opts: PassOptions,
    /// When the next full pass is due.
    pub next: Instant,
    pub passes: u64,
    /// The change feed the job follows, and when it is read next.
    pub feed: Option<ChangeSource>,
    pub next_changes: Instant,
    /// The feed could not be followed since the last change pass that
    /// ran (one full pass is brought forward per such streak).
    pub feed_blocked: bool,
    /// The last complete full pass recorded in the state directory (start,
    /// end), before this process ran one.
    restored: Option<(SystemTime, SystemTime)>,
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

fn at_ms(ms: i64) -> SystemTime {
    let ms = u64::try_from(ms).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// When a job's first full pass is due: now, unless it follows a feed that
/// covers the source (a complete full pass since the cursor was anchored)
/// and its last complete full pass, run with the same key filter (a wider
/// one selects keys that pass never looked at), ended less than `interval`
/// ago.
fn first_full_pass(
    o: &Opened,
    follows_feed: bool,
    last: Option<LastCompletePass>,
) -> Result<(Instant, Option<(SystemTime, SystemTime)>), passeur_core::Error> {
    let now = Instant::now();
    let Some(last) = last.filter(|l| l.filter == o.opts.filter.fingerprint()) else {
        return Ok((now, None));
    };
    let restored = Some((at_ms(last.started_ms), at_ms(last.ended_ms)));
    if !follows_feed || !o.manifest.feed_covered()? || o.manifest.feed_cursor::<Cursor>()?.is_none()
    {
        return Ok((now, restored));
    }
    let due = at_ms(last.ended_ms) + o.cfg.interval.0;
    let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
    Ok((now + wait, restored))
}

pub(crate) async fn open_jobs(cfg: &DaemonConfig) -> Result<Vec<Job>, Fatal> {
    let mut jobs = Vec::new();
    for spanned in &cfg.jobs {
        let o = open_job(cfg, spanned.get_ref(), false).await?;
        let fatal =
            |e: passeur_core::Error| (exit::for_error(&e), format!("job {:?}: {e}", o.cfg.name));
        let feed = match o.cfg.changes {
            None => None,
            Some(passeur_config::daemon::ChangeFeed::AzureChangeFeed) => Some(
                ChangeSource::open(
                    o.cfg.source.url.as_deref().unwrap_or_default(),
                    &o.cfg.source.to_options(),
                )
                .map_err(fatal)?,
            ),
        };
        let last = o.manifest.last_complete_pass().map_err(fatal)?;
        let (next, restored) = first_full_pass(&o, feed.is_some(), last).map_err(fatal)?;
        if next > Instant::now() {
            tracing::info!(
                job = %o.cfg.name,
                in_s = next.saturating_duration_since(Instant::now()).as_secs(),
                "the change feed covers the source: next full pass an interval after the last complete one"
            );
        }
        jobs.push(Job {
            feed,
            next_changes: Instant::now(),
            feed_blocked: false,
            cfg: o.cfg,
            source: o.source,
            target: o.target,
            manifest: o.manifest,
            opts: o.opts,
            next,
            passes: 0,
            restored,
        });
    }
    Ok(jobs)
}

/// Tell the board which jobs run, which follow a change feed, and what the
/// state directories say of their last complete full pass.
pub(crate) fn show_jobs(board: &Board, jobs: &[Job]) {
    let names: Vec<String> = jobs.iter().map(|j| j.cfg.name.clone()).collect();
    board.set_jobs(&names);
    for j in jobs {
        if j.feed.is_some() {
            board.follows_changes(&j.cfg.name);
        }
        if let Some((started, _)) = j.restored {
            let next = SystemTime::now() + j.next.saturating_duration_since(Instant::now());
            board.restore(&j.cfg.name, started, next);
        }
    }
}
