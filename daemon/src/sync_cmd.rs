//! `passeur sync`: one pass from a source URL to a target URL, with its
//! state directory; signals stop it (first: finish what is in flight,
//! second: quit).

use std::sync::Arc;

use futures::StreamExt;
use passeur_config::SyncConfig;
use passeur_core::base::filter::KeyFilter;
use passeur_core::base::shard;
use passeur_core::base::stats::Stats;
use passeur_core::feed::ChangeSource;
use passeur_core::manifest::Manifest;
use passeur_core::stores::{LocalDir, Store};
use passeur_core::sync::changes::run_changes;
use passeur_core::sync::run_pass;

use crate::cli::SyncArgs;
use crate::output::{Mode, Reporter};
use crate::signals::Request;
use crate::{exit, fail};

/// Run `passeur sync`; its exit code.
pub(crate) async fn sync(args: SyncArgs) -> u8 {
    let cfg = match &args.config {
        Some(p) => match SyncConfig::load(p) {
            Ok(c) => c,
            Err(e) => return fail(exit::CONFIG, &e.to_string()),
        },
        None => SyncConfig::default(),
    };
    let mut opts = match cfg.pass_options(args.dry_run) {
        Ok(o) => o,
        Err(e) => return fail(exit::CONFIG, &e),
    };
    if let Some(c) = args.concurrency {
        opts.concurrency = c.max(1);
    }
    if let Some(n) = args.listing_concurrency {
        opts.listing_concurrency = n.max(1);
    }
    if args.bandwidth_limit.is_some() {
        opts.bandwidth_limit = args.bandwidth_limit;
    }
    let shard = match shard::configured(
        args.shard.as_deref(),
        args.shard_ranges.as_deref(),
        shard::hostname,
    ) {
        Ok(s) => s,
        Err(e) => return fail(exit::CONFIG, &e.to_string()),
    };
    opts.filter = match KeyFilter::new(&args.include, &args.exclude) {
        Ok(f) => f.with_shard(shard),
        Err(e) => return fail(exit::CONFIG, &e.to_string()),
    };
    if !(0.0..=1.0).contains(&args.max_delete_fraction) {
        return fail(
            exit::CONFIG,
            "--max-delete-fraction must be between 0 and 1",
        );
    }
    if let Some(t) = &args.trash_prefix
        && let Err(e) = passeur_core::sync::deletes::check_trash_prefix(t, &opts.filter)
    {
        return fail(exit::CONFIG, &format!("--trash-prefix: {e}"));
    }
    opts.deletes = passeur_core::sync::deletes::DeletePolicy {
        enabled: args.delete,
        max_fraction: args.max_delete_fraction,
        trash_prefix: args.trash_prefix.clone(),
    };
    let source = match Store::open(&args.source, &cfg.source.to_options(), LocalDir::MustExist) {
        Ok(s) => s,
        Err(e) => return fail(exit::for_error(&e), &format!("source: {e}")),
    };
    let target = match Store::open(
        &args.target,
        &cfg.target.to_options(),
        if args.dry_run {
            LocalDir::EmptyIfMissing
        } else {
            LocalDir::Create
        },
    ) {
        Ok(s) => s,
        Err(e) => return fail(exit::for_error(&e), &format!("target: {e}")),
    };
    let manifest = match Manifest::open(&args.state) {
        Ok(m) => Arc::new(m),
        Err(e) => return fail(exit::for_error(&e), &e.to_string()),
    };
    let stats = Arc::new(Stats::default());
    let reporter = Reporter::new(Mode::resolve(args.output), Arc::clone(&stats));
    let (mut requests, handle) = match crate::signals::requests() {
        Ok(r) => r,
        Err(e) => {
            return fail(
                exit::SOFTWARE,
                &format!("cannot install signal handlers: {e}"),
            );
        }
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    if args.changes.is_some() {
        let feed = match ChangeSource::open(&args.source, &cfg.source.to_options()) {
            Ok(f) => f,
            Err(e) => return fail(exit::for_error(&e), &format!("--changes: {e}")),
        };
        let pass = run_changes(
            source,
            target,
            manifest,
            &opts,
            &feed,
            Arc::clone(&stats),
            |e: &passeur_core::sync::Event| reporter.event(e),
            shutdown,
        );
        let result = drive(pass, &reporter, &stop_tx, &mut requests).await;
        handle.close();
        return match result {
            Some(Ok(summary)) => {
                reporter.changes_summary(&summary);
                ended(summary.interrupted, summary.complete())
            }
            Some(Err(e)) => fail(exit::for_error(&e), &e.to_string()),
            None => fail(
                exit::INTERRUPTED,
                "interrupted; keys in progress were not recorded and the feed cursor did not move",
            ),
        };
    }
    let pass = run_pass(
        source,
        target,
        manifest,
        &opts,
        Arc::clone(&stats),
        |e: &passeur_core::sync::Event| reporter.event(e),
        shutdown,
    );
    let result = drive(pass, &reporter, &stop_tx, &mut requests).await;
    handle.close();
    let Some(result) = result else {
        return fail(
            exit::INTERRUPTED,
            "interrupted; objects in progress were not recorded and will be copied again",
        );
    };
    match result {
        Ok(summary) => {
            reporter.summary(&summary);
            ended(summary.interrupted, summary.complete())
        }
        Err(e) => fail(exit::for_error(&e), &e.to_string()),
    }
}

/// The exit code of a pass that ran to its end or was stopped.
fn ended(interrupted: bool, complete: bool) -> u8 {
    if interrupted {
        exit::INTERRUPTED
    } else if complete {
        exit::OK
    } else {
        exit::INCOMPLETE
    }
}

/// Run `pass` to its end, printing progress; the first stop request asks
/// it to stop, the second gives up on it (`None`).
async fn drive<T>(
    pass: impl std::future::Future<Output = T>,
    reporter: &Reporter,
    stop_tx: &tokio::sync::watch::Sender<bool>,
    requests: &mut (impl futures::Stream<Item = Request> + Unpin),
) -> Option<T> {
    let mut pass = std::pin::pin!(pass);
    let mut ticker = tokio::time::interval(reporter.interval());
    ticker.tick().await;
    let mut flush = tokio::time::interval(Reporter::FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = &mut pass => return Some(r),
            _ = ticker.tick() => reporter.tick(),
            _ = flush.tick() => reporter.flush(),
            req = requests.next() => match req {
                Some(Request::Stop) => {
                    reporter.flush();
                    eprintln!("passeur: stopping after the objects in progress (signal again to quit now)");
                    let _ = stop_tx.send(true);
                }
                // `sync` does not listen for SIGHUP.
                Some(Request::Reload) => {}
                Some(Request::Quit) | None => return None,
            },
        }
    }
}
