//! Command-line definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// passeur: content-addressed replication between object stores.
#[derive(Debug, Parser)]
#[command(name = "passeur", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one replication pass from SOURCE to TARGET and exit.
    Sync(SyncArgs),
    /// Replicate continuously, job after job, as the service does.
    Run(RunArgs),
    /// Show what the running service is doing (asks its metrics-address).
    Status(StatusArgs),
    /// Check or create a configuration file for `passeur run`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Replicate a generated sample dataset between two local directories.
    Demo(DemoArgs),
    /// Print shell completions or the man page.
    #[command(subcommand)]
    Generate(GenerateCommand),
}

/// `passeur run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (see `passeur config init`).
    #[arg(long, default_value = "/etc/passeur/passeur.toml")]
    pub config: PathBuf,
}

/// `passeur status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The service's configuration file (for its metrics-address).
    #[arg(long, default_value = "/etc/passeur/passeur.toml")]
    pub config: PathBuf,
    /// Print the JSON the service serves.
    #[arg(long)]
    pub json: bool,
}

/// `passeur config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE: prints every problem (file, line, column, job, key)
    /// and exits 78, or exits 0.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print a commented example configuration.
    Init,
}

/// Files generated from the command-line definition.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Shell completion script on stdout.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Man page (roff) on stdout.
    Man,
}

/// How progress and results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Progress bar on a terminal, plain lines otherwise.
    Auto,
    /// Plain text lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// `passeur sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Source URL: a directory, file://, s3://bucket/prefix, az://container/prefix, gs://bucket/prefix.
    #[arg(long)]
    pub source: String,
    /// Target URL (same forms as --source).
    #[arg(long)]
    pub target: String,
    /// State directory holding the manifest (RocksDB).
    #[arg(long)]
    pub state: PathBuf,
    /// TOML file with store options, chunking and transfer settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// List what would be copied; read and write no object.
    #[arg(long)]
    pub dry_run: bool,
    /// Objects replicated at once (overrides the config file).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Cap on source bytes read per second, e.g. "50MiB" (overrides the
    /// config file).
    #[arg(long, value_name = "SIZE", value_parser = parse_rate)]
    pub bandwidth_limit: Option<u64>,
    /// Replicate only keys matching this glob (relative to the source URL;
    /// `*` within a segment, `**` across); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out keys matching this glob, even if included; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Delete at the target what the source no longer has (object-store
    /// sources; after a complete listing).
    #[arg(long)]
    pub delete: bool,
    /// With --delete: refuse when more than this fraction of the replica
    /// would go in one pass.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    pub max_delete_fraction: f64,
    /// With --delete: move deleted objects under this target prefix.
    #[arg(long, value_name = "PREFIX")]
    pub trash_prefix: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Auto)]
    pub output: Output,
}

/// `passeur demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Working directory (source/, target/, state/ are created in it).
    #[arg(long, default_value = "passeur-demo")]
    pub dir: PathBuf,
}

/// A positive byte size with an optional unit ("50MiB", "1GB", "1048576").
fn parse_rate(s: &str) -> Result<u64, String> {
    match s.trim().parse::<bytesize::ByteSize>() {
        Ok(b) if b.as_u64() > 0 => Ok(b.as_u64()),
        Ok(_) => Err("must be above 0".into()),
        Err(e) => Err(format!("invalid size {s:?}: {e}")),
    }
}
