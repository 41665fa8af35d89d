//! The `passeur` command: parses the command line, wires the core, maps
//! outcomes to exit codes. All replication logic lives in passeur-core;
//! `main.rs` only calls [`main`]. A library so that tests can drive the
//! service ([`run::run`]) in-process with a stream of [`signals::Request`]s.

#![allow(
    clippy::print_stdout,
    reason = "the command prints its results on stdout"
)]

mod board;
mod cli;
mod config_cmd;
mod cutover;
mod cutover_changes;
mod cutover_merge;
mod demo;
pub mod exit;
mod jobs;
mod manifest_cmd;
mod manifest_merge;
mod manifest_ranges;
mod manifest_state;
mod notify;
mod output;
mod plan_cmd;
mod plan_show;
pub mod run;
mod serve;
pub mod signals;
mod status;
mod sync_cmd;

use std::process::ExitCode;

use clap::Parser;
use passeur_config::daemon::{DaemonConfig, LogFormat};
use std::io::IsTerminal;

use cli::{Cli, Command, Output};

/// Run the command line's command; its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = match &cli.command {
        Command::Config(c) => return ExitCode::from(config_cmd::config_command(c)),
        Command::Generate(g) => return ExitCode::from(config_cmd::generate(g)),
        Command::Manifest(cli::ManifestCommand::Export(a)) => {
            return ExitCode::from(manifest_cmd::export(a));
        }
        Command::Manifest(cli::ManifestCommand::Diff(a)) => {
            return ExitCode::from(manifest_cmd::diff_command(a));
        }
        Command::Manifest(cli::ManifestCommand::Merge(a)) => {
            return ExitCode::from(manifest_merge::merge_command(a));
        }
        Command::Manifest(cli::ManifestCommand::Ranges(a)) => {
            return ExitCode::from(manifest_ranges::command(a));
        }
        Command::Cutover(cli::CutoverArgs {
            merge: Some(cli::CutoverCommand::Merge(m)),
            ..
        }) => return ExitCode::from(cutover_merge::command(m)),
        Command::Cutover(_) | Command::Verify(_) => false,
        Command::Sync(a) => a.output == Output::Json,
        Command::Run(_) | Command::Status(_) => false,
        Command::Demo(_) | Command::Plan(_) => false,
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
    // The command runs as a task of the runtime, not on this thread:
    // `block_on`'s future is polled here, and every wake-up of the pass
    // that drives the copies (an object done) cost a futex wake and two
    // context switches (a quarter of a first pass's switches over 10⁵
    // tiny files, `perf record -e context-switches`).
    let command = async move {
        match cli.command {
            Command::Sync(args) => sync_cmd::sync(args).await,
            Command::Demo(args) => demo::run_demo(args).await,
            Command::Plan(args) => plan_cmd::plan(args).await,
            Command::Run(_) => match service {
                Some((path, cfg)) => match signals::service_requests() {
                    Ok((requests, handle)) => {
                        let code = run::run(path, cfg, requests).await;
                        handle.close();
                        code
                    }
                    Err(e) => fail(
                        exit::SOFTWARE,
                        &format!("cannot install signal handlers: {e}"),
                    ),
                },
                None => exit::SOFTWARE,
            },
            Command::Status(args) => status::show(&args).await,
            // `cutover merge` returned above.
            Command::Cutover(c) => cutover::command(c.args, true).await,
            Command::Verify(args) => cutover::command(args, false).await,
            Command::Config(_) | Command::Generate(_) | Command::Manifest(_) => exit::SOFTWARE,
        }
    };
    let code = runtime.block_on(async {
        // A panic was printed by the panic hook as it happened.
        tokio::spawn(command).await.unwrap_or(exit::SOFTWARE)
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
