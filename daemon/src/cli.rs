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
    /// Final pass of a job, then verification of its target against the
    /// manifest, with a report (exit 0 verified, 1 mismatches, 2 could not
    /// run); `cutover merge` joins the reports of a sharded job's shards.
    Cutover(CutoverArgs),
    /// Verify a job's target against the manifest, without a pass (exit 0
    /// verified, 1 mismatches, 2 could not run).
    Verify(VerifyArgs),
    /// Export a manifest, or compare two.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// What a migration holds, costs, takes and will trip over, from one
    /// listing of the source; nothing is read or written (exit 0 planned,
    /// 1 blockers found with --fail-on-blockers, 2 could not: the listing
    /// failed or an option is wrong).
    Plan(PlanArgs),
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

/// `passeur cutover`: a cutover, or `merge` of the shards' reports.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CutoverArgs {
    /// `merge`: the reports of every shard's cutover as one verdict.
    #[command(subcommand)]
    pub merge: Option<CutoverCommand>,
    /// The cutover's options.
    #[command(flatten)]
    pub args: VerifyArgs,
}

/// `passeur cutover …` subcommands.
#[derive(Debug, Subcommand)]
pub enum CutoverCommand {
    /// Join the cutover reports of every shard of one job (`shard =
    /// "K/N"`): exit 0 when every shard's report is present once and
    /// VERIFIED, 1 when one is not verified, 2 when the reports are not
    /// the whole dataset (a shard missing or twice, another job), named.
    Merge(MergeReportsArgs),
}

/// `passeur cutover merge`.
#[derive(Debug, clap::Args)]
pub struct MergeReportsArgs {
    /// The shards' JSON reports, one per shard, in any order.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Where to write the dataset's report (JSON: the verdict, each shard's
    /// verdict and the BLAKE3 of each report file, for re-checking).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the dataset's report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// `passeur cutover` / `passeur verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Configuration file of the service (`passeur run`).
    #[arg(long, default_value = "/etc/passeur/passeur.toml")]
    pub config: PathBuf,
    /// The job (may be left out when the file has one job).
    #[arg(long)]
    pub job: Option<String>,
    /// Also read the target's bytes back and recompute their BLAKE3.
    #[arg(long)]
    pub deep: bool,
    /// With --deep: read only this fraction of the objects, at random.
    #[arg(long, value_name = "FRACTION", requires = "deep")]
    pub sample: Option<f64>,
    /// With --deep: read objects verified before and unchanged since, too.
    #[arg(long, requires = "deep")]
    pub full: bool,
    /// Forget the records of missing or damaged objects so they are copied
    /// again: cutover copies them at once and verifies again; verify leaves
    /// them to the next pass. Extra objects are only reported.
    #[arg(long)]
    pub repair: bool,
    /// Where to write the JSON report (default:
    /// passeur-COMMAND-JOB-TIME.json in the current directory).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Incremental: cutover's final pass is the job's change feed up to
    /// now (the freeze) plus its pending keys, and verification looks only
    /// at the keys changed since the last verification that found the
    /// whole target equal. The report says what it relied on.
    #[arg(long, conflicts_with = "repair")]
    pub changes: bool,
    /// With cutover --changes: how long to wait for the feed's
    /// lastConsumable to pass the freeze (Azure moves it hourly).
    #[arg(long, value_name = "DURATION", default_value = "75m", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
}

/// `passeur manifest …`.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Print every object of a manifest: key, size, BLAKE3 (as b3sum
    /// prints it), source ETag, target ETag.
    Export(ExportArgs),
    /// List the keys that differ between two manifests, each a state
    /// directory or an export (jsonl or csv); exit 0 same, 1 different.
    Diff(DiffArgs),
    /// Merge the manifests of every shard of one dataset (their state
    /// directories, readable while the services run): the dataset's one
    /// Merkle root, equal to an unsharded manifest's; exit 0 merged, 2
    /// could not (a shard missing or given twice, named).
    Merge(MergeArgs),
    /// Learn the key ranges of range shards from the keys the given state
    /// directories recorded (the previous listing): N ranges of nearly
    /// equal key counts, written as a file every shard reads with
    /// `--shard-ranges` / `shard-ranges`; exit 0 written, 2 could not.
    Ranges(RangesArgs),
}

/// `passeur manifest ranges`.
#[derive(Debug, clap::Args)]
pub struct RangesArgs {
    /// State directories holding the dataset's keys: one unsharded job's,
    /// or every shard's (each contributes the keys it owns).
    #[arg(required = true)]
    pub states: Vec<PathBuf>,
    /// How many ranges (shards).
    #[arg(long, value_name = "N")]
    pub shards: u16,
    /// Where to write the ranges file (JSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `passeur manifest merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' state directories, one per shard, in any order.
    #[arg(required = true)]
    pub states: Vec<PathBuf>,
    /// Also write the dataset's one export (JSON lines, key order, as
    /// `manifest export` prints) to this file.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `passeur manifest export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// State directory of the job (readable while the service runs).
    pub state: PathBuf,
    /// Output format; b3sum: lines `b3sum --check` reads in the target
    /// directory.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

/// Formats of `manifest export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header line.
    Csv,
    /// `HASH  KEY` lines, as b3sum prints them.
    B3sum,
}

/// `passeur manifest diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// First manifest: state directory or export file.
    pub a: PathBuf,
    /// Second manifest: state directory or export file.
    pub b: PathBuf,
    /// One JSON object per differing key.
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
    /// Most objects replicated at once: the window adapts below it
    /// (overrides the config file).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Key ranges of the source listed at once (overrides the config file;
    /// 1: one plain listing).
    #[arg(long, value_name = "N")]
    pub listing_concurrency: Option<usize>,
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
    /// Replicate only shard K (from 0) of N: "K/N", K a number or
    /// "ordinal" (the number ending the host name); each shard keeps its
    /// own state directory.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// With --shard: divide the key space by the ranges in FILE (from
    /// `passeur manifest ranges`), each shard listing only its range,
    /// instead of hashing keys to shards.
    #[arg(long, value_name = "FILE")]
    pub shard_ranges: Option<PathBuf>,
    /// Delete at the target what the source no longer has (object-store
    /// sources; after a complete listing).
    #[arg(long)]
    pub delete: bool,
    /// With --delete: refuse when more than this fraction of the replica
    /// would go in one pass.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    pub max_delete_fraction: f64,
    /// With --delete: move deleted objects to PREFIX/<UTC deletion
    /// time>/<key> at the target; PREFIX must be excluded (--exclude
    /// 'PREFIX/**').
    #[arg(long, value_name = "PREFIX")]
    pub trash_prefix: Option<String>,
    /// Instead of listing the source, replicate the keys its change feed
    /// named since the job's last pass read it (Azure sources; the job's
    /// first full pass anchors the feed). Exit 0 only when every change
    /// the feed holds up to its lastConsumable is at the target.
    #[arg(long, value_enum, value_name = "FEED")]
    pub changes: Option<Changes>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Auto)]
    pub output: Output,
}

/// Change sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Changes {
    /// The Azure Blob change feed (`$blobchangefeed`) of the source's
    /// account.
    AzureChangeFeed,
}

/// `passeur plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Source URL (as `sync --source`).
    #[arg(long)]
    pub source: String,
    /// Target URL: its kind and part limits (preset or `[target]` in
    /// --config) say what it cannot take; nothing is sent to it.
    #[arg(long)]
    pub target: Option<String>,
    /// TOML file with `[source]` / `[target]` store options (as `sync`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Read an inventory report instead of listing the source: an S3
    /// Inventory manifest.json (CSV or Parquet data files), an Azure Blob
    /// Inventory <rule>-manifest.json, or one data file (Azure CSV, or
    /// Parquet; unchecked without its manifest). The source
    /// (s3:// or az://) is not contacted; its bucket and prefix select
    /// the report's rows.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Link bandwidth for the estimate: "10Gbit/s", "800Mbps", "500MB/s".
    #[arg(long, value_name = "RATE")]
    pub bandwidth: Option<String>,
    /// Objects one host replicates per second (default: measured over
    /// links of 20–100 ms, bench/README.md).
    #[arg(long, value_name = "N", default_value_t = passeur_core::plan::estimate::OBJECTS_PER_SECOND)]
    pub objects_per_second: f64,
    /// Egress price at the source: "0.087/GB", "20/TB".
    #[arg(long, value_name = "PRICE")]
    pub egress_price: Option<String>,
    /// Price of write requests at the target: "0.005/1000", "4.5/1M".
    #[arg(long, value_name = "PRICE")]
    pub request_price: Option<String>,
    /// Price of read requests at the source: "0.0004/1000".
    #[arg(long, value_name = "PRICE")]
    pub read_price: Option<String>,
    /// Finish by this date (YYYY-MM-DD, UTC midnight, or RFC 3339): how
    /// many hosts (shards) that takes.
    #[arg(long, value_name = "DATE")]
    pub deadline: Option<String>,
    /// Example keys shown per blocker.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub examples: usize,
    /// Prefixes shown per depth.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page (charts, no
    /// network fetches).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Exit 1 when any blocker is found.
    #[arg(long)]
    pub fail_on_blockers: bool,
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
