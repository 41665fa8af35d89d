//! The `passeur` executable: parses the command line, wires the core, maps
//! outcomes to exit codes. All replication logic lives in passeur-core.

#![allow(
    clippy::print_stdout,
    reason = "the command prints its results on stdout"
)]

mod board;
mod cli;
mod cutover;
mod demo;
mod exit;
mod manifest_cmd;
mod notify;
mod output;
mod run;
mod serve;
mod signals;
mod status;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use passeur_config::SyncConfig;
use passeur_config::daemon::{DaemonConfig, LogFormat};
use passeur_core::base::stats::Stats;
use passeur_core::manifest::Manifest;
use passeur_core::stores::{LocalDir, Store};
use passeur_core::sync::run_pass;
use std::io::IsTerminal;

use cli::{Cli, Command, ConfigCommand, Output, SyncArgs};
use output::{Mode, Reporter};
use signals::Request;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = match &cli.command {
        Command::Config(c) => return ExitCode::from(config_command(c)),
        Command::Generate(g) => return ExitCode::from(generate(g)),
        Command::Manifest(cli::ManifestCommand::Export(a)) => {
            return ExitCode::from(manifest_cmd::export(a));
        }
        Command::Manifest(cli::ManifestCommand::Diff(a)) => {
            return ExitCode::from(manifest_cmd::diff_command(a));
        }
        Command::Cutover(_) | Command::Verify(_) => false,
        Command::Sync(a) => a.output == Output::Json,
        Command::Run(_) | Command::Status(_) => false,
        Command::Demo(_) => false,
    };
    // `run` sets up logging from its configuration file.
    let mut service = None;
    if let Command::Run(args) = &cli.command {
        match DaemonConfig::load(&args.config) {
            Ok(cfg) => {
                let json = match cfg.log_format {
                    LogFormat::Json => true,
                    LogFormat::Human => false,
                    LogFormat::Auto => !std::io::stderr().is_terminal(),
                };
                // The service logs each pass (info); commands only problems.
                init_tracing(json, "info");
                service = Some((args.config.clone(), cfg));
            }
            Err(e) => return ExitCode::from(config_errors(&e)),
        }
    } else {
        init_tracing(json_logs, "warn");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(exit::SOFTWARE, &format!("cannot start the runtime: {e}")).into(),
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Sync(args) => sync(args).await,
            Command::Demo(args) => run_demo(args).await,
            Command::Run(_) => match service {
                Some((path, cfg)) => run::run(path, cfg).await,
                None => exit::SOFTWARE,
            },
            Command::Status(args) => status::show(&args).await,
            Command::Cutover(args) => cutover::command(args, true).await,
            Command::Verify(args) => cutover::command(args, false).await,
            Command::Config(_) | Command::Generate(_) | Command::Manifest(_) => exit::SOFTWARE,
        }
    });
    // Do not wait for stuck blocking work on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    ExitCode::from(code)
}

fn init_tracing(json: bool, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PASSEUR_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

/// `passeur generate completions SHELL | man`.
fn generate(g: &cli::GenerateCommand) -> u8 {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    match g {
        cli::GenerateCommand::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "passeur", &mut std::io::stdout());
            exit::OK
        }
        cli::GenerateCommand::Man => {
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => fail(exit::SOFTWARE, &format!("cannot write the man page: {e}")),
            }
        }
    }
}

/// `passeur config check|init`.
fn config_command(c: &ConfigCommand) -> u8 {
    match c {
        ConfigCommand::Init => {
            print!("{}", passeur_config::daemon::EXAMPLE);
            exit::OK
        }
        ConfigCommand::Check { file } => match DaemonConfig::load(file) {
            Ok(cfg) => {
                println!("{}: ok ({} jobs)", file.display(), cfg.jobs.len());
                exit::OK
            }
            Err(e) => config_errors(&e),
        },
    }
}

/// Print every problem of a configuration, one line each; exit 78.
pub(crate) fn config_errors(e: &passeur_config::ConfigError) -> u8 {
    match e {
        passeur_config::ConfigError::Invalid { path, errors } => {
            for line in errors {
                eprintln!("passeur: error: {}: {line}", path.display());
            }
            exit::CONFIG
        }
        other => fail(exit::CONFIG, &other.to_string()),
    }
}

/// Print one line naming the problem and return its exit code.
pub(crate) fn fail(code: u8, msg: &str) -> u8 {
    eprintln!("passeur: error: {msg}");
    code
}

async fn sync(args: SyncArgs) -> u8 {
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
    opts.filter = match passeur_core::base::filter::KeyFilter::new(&args.include, &args.exclude) {
        Ok(f) => f,
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
    let (mut requests, handle) = match signals::requests() {
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
    let pass = run_pass(
        source,
        target,
        manifest,
        &opts,
        Arc::clone(&stats),
        |e: &passeur_core::sync::Event| reporter.event(e),
        shutdown,
    );
    let mut pass = std::pin::pin!(pass);
    let mut ticker = tokio::time::interval(reporter.interval());
    ticker.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut pass => break r,
            _ = ticker.tick() => reporter.tick(),
            req = requests.next() => match req {
                Some(Request::Stop) => {
                    eprintln!("passeur: stopping after the objects in progress (signal again to quit now)");
                    let _ = stop_tx.send(true);
                }
                // `sync` does not listen for SIGHUP.
                Some(Request::Reload) => {}
                Some(Request::Quit) | None => {
                    handle.close();
                    return fail(exit::INTERRUPTED, "interrupted; objects in progress were not recorded and will be copied again");
                }
            },
        }
    };
    handle.close();
    match result {
        Ok(summary) => {
            reporter.summary(&summary);
            if summary.interrupted {
                exit::INTERRUPTED
            } else if summary.complete() {
                exit::OK
            } else {
                exit::INCOMPLETE
            }
        }
        Err(e) => fail(exit::for_error(&e), &e.to_string()),
    }
}

async fn run_demo(args: cli::DemoArgs) -> u8 {
    let src = args.dir.join("source");
    let (n, bytes) = match demo::create_dataset(&src) {
        Ok(v) => v,
        Err(e) => return fail(exit::SOFTWARE, &format!("{e:#}")),
    };
    println!(
        "sample dataset: {n} objects, {bytes} bytes in {}",
        src.display()
    );
    let mut code = exit::OK;
    for round in [
        "first pass (copies everything)",
        "second pass (nothing changed)",
    ] {
        println!("== {round}");
        code = sync(SyncArgs {
            source: src.to_string_lossy().into_owned(),
            target: args.dir.join("target").to_string_lossy().into_owned(),
            state: args.dir.join("state"),
            config: None,
            dry_run: false,
            concurrency: None,
            bandwidth_limit: None,
            listing_concurrency: None,
            include: Vec::new(),
            exclude: Vec::new(),
            delete: false,
            max_delete_fraction: 0.1,
            trash_prefix: None,
            output: Output::Auto,
        })
        .await;
        if code != exit::OK {
            break;
        }
    }
    code
}
