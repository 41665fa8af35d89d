//! The configuration of `passeur run`: global settings and `[[job]]`s, each
//! a source, a target and how to replicate between them. Parsing stops at
//! the first malformed value (with its line and column); the checks after
//! parsing report every problem at once, each naming its job and key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use passeur_core::base::filter::KeyFilter;
use passeur_core::base::shard::{self, Shard};
use passeur_core::feed::ChangeSource;
use passeur_core::stores::{LocalDir, Store};
use passeur_core::sync::PassOptions;
use passeur_core::sync::deletes::{DeletePolicy, check_trash_prefix};
use serde::Deserialize;
use toml::Spanned;

use crate::{ChunkingSection, ConfigError, Human, StoreSection, TransferSection, line_col};

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise (journald).
    #[default]
    Auto,
    /// Always human-readable.
    Human,
    /// Always one JSON object per line.
    Json,
}

/// `[job.delete]`: deletes at the target (off by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeleteSection {
    /// Delete at the target what the source no longer has.
    pub enabled: bool,
    /// Refuse a pass that would delete more than this fraction (0–1).
    pub max_fraction: f64,
    /// Move deleted objects under this target prefix instead.
    pub trash_prefix: Option<String>,
}

impl Default for DeleteSection {
    fn default() -> Self {
        let d = DeletePolicy::default();
        Self {
            enabled: d.enabled,
            max_fraction: d.max_fraction,
            trash_prefix: d.trash_prefix,
        }
    }
}

/// One `[[job]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobConfig {
    /// Unique name; also the name of the job's state directory.
    pub name: String,
    /// Where objects are read: `url` and the store's options.
    pub source: StoreSection,
    /// Where objects are written: `url` and the store's options.
    pub target: StoreSection,
    /// Keys to replicate (globs relative to the source URL; none: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Keys to leave out, even if included.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `"K/N"`: this instance replicates shard K (from 0) of N, each with
    /// its own state directory; K may be `ordinal`, the number ending the
    /// host name (a StatefulSet's pod). None: every key.
    #[serde(default)]
    pub shard: Option<String>,
    /// With `shard`: a file of the key ranges the shards divide the key
    /// space into (`passeur manifest ranges`); each shard then lists only
    /// its range. None: keys are hashed to shards.
    #[serde(default)]
    pub shard_ranges: Option<PathBuf>,
    /// Pause between the end of a pass and the start of the next.
    #[serde(default = "default_interval")]
    pub interval: Human,
    /// Chunking parameters.
    #[serde(default)]
    pub chunking: ChunkingSection,
    /// Concurrency and memory.
    #[serde(default)]
    pub transfer: TransferSection,
    /// Deletes at the target.
    #[serde(default)]
    pub delete: DeleteSection,
    /// A change source read between full passes (Azure sources:
    /// `"azure-change-feed"`); none: full passes only.
    #[serde(default)]
    pub changes: Option<ChangeFeed>,
    /// How often the change source is read between full passes (then
    /// `interval` can be hours).
    #[serde(default = "default_changes_interval")]
    pub changes_interval: Human,
}

/// Change sources a job can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeFeed {
    /// The Azure Blob change feed of the source's account.
    AzureChangeFeed,
}

fn default_changes_interval() -> Human {
    Human(Duration::from_secs(60))
}

fn default_interval() -> Human {
    Human(Duration::from_secs(300))
}

fn default_stop_timeout() -> Human {
    Human(Duration::from_secs(30))
}

/// The whole file of `passeur run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// Each job keeps its manifest in `STATE_DIR/NAME`.
    pub state_dir: PathBuf,
    /// Log format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// How long a stop request may take: uploads pause at their next part
    /// boundary; after this, passeur exits anyway (nothing recorded is lost).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Human,
    /// Where `passeur run` serves `/status` (for `passeur status`) and
    /// `/metrics` (Prometheus); keep it on loopback. None: not served.
    #[serde(default)]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// The jobs, run in this order each cycle.
    #[serde(rename = "job", default)]
    pub jobs: Vec<Spanned<JobConfig>>,
}

impl JobConfig {
    /// Options of this job's passes.
    pub fn pass_options(&self) -> Result<PassOptions, String> {
        Ok(PassOptions {
            filter: KeyFilter::new(&self.include, &self.exclude)
                .map_err(|e| e.to_string())?
                .with_shard(self.shard().map_err(|e| e.to_string())?),
            deletes: DeletePolicy {
                enabled: self.delete.enabled,
                max_fraction: self.delete.max_fraction,
                trash_prefix: self.delete.trash_prefix.clone(),
            },
            ..self.transfer.pass_options(&self.chunking)?
        })
    }

    /// The job's shard, if it is sharded.
    pub fn shard(&self) -> Result<Option<Shard>, passeur_core::base::error::Error> {
        shard::configured(
            self.shard.as_deref(),
            self.shard_ranges.as_deref(),
            shard::hostname,
        )
    }

    /// The job's state directory under `state_dir`.
    pub fn state(&self, state_dir: &Path) -> PathBuf {
        state_dir.join(&self.name)
    }
}

impl DaemonConfig {
    /// Parse and check TOML text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: DaemonConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: crate::one_line_toml_error(&e, text),
        })?;
        let errors = cfg.problems(text);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                errors,
            })
        }
    }

    /// Read, parse and check a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&crate::read(path)?, path)
    }

    /// Every problem, one line each.
    fn problems(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.jobs.is_empty() {
            out.push("no [[job]]: nothing to replicate".to_owned());
        }
        let mut names = HashSet::new();
        for spanned in &self.jobs {
            let (line, col) = line_col(text, spanned.span().start);
            let job = spanned.get_ref();
            let mut say = |what: String| {
                out.push(format!(
                    "line {line}, column {col}: job {:?}: {what}",
                    job.name
                ));
            };
            let valid_name = !job.name.is_empty()
                && job
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !job.name.starts_with('.');
            if !valid_name {
                say("name: use letters, digits, '-', '_' or '.' (it names the job's state directory)".into());
            }
            if !names.insert(job.name.clone()) {
                say("name: duplicate job name".into());
            }
            for (side, store) in [("source", &job.source), ("target", &job.target)] {
                let Some(url) = &store.url else {
                    say(format!("{side}.url: missing"));
                    continue;
                };
                match Store::open(url, &store.to_options(), LocalDir::EmptyIfMissing) {
                    Ok(s) => {
                        if side == "target"
                            && s.policy.multipart_threshold > job.transfer.memory_budget.0
                        {
                            say(format!(
                                "transfer.memory-budget ({} bytes) is below target.multipart-threshold ({} bytes)",
                                job.transfer.memory_budget.0, s.policy.multipart_threshold
                            ));
                        }
                    }
                    Err(e) => say(format!("{side}: {e}")),
                }
            }
            if job.source.url.is_some() && job.source.url == job.target.url {
                say("source and target are the same URL".into());
            }
            if job.interval.0 < Duration::from_secs(1) {
                say("interval: at least 1s".into());
            }
            if job.changes.is_some() {
                if job.changes_interval.0 < Duration::from_secs(1) {
                    say("changes-interval: at least 1s".into());
                }
                if let Some(url) = &job.source.url
                    && let Err(e) = ChangeSource::open(url, &job.source.to_options())
                {
                    say(e.to_string());
                }
            }
            if let Err(e) = job.chunking.params() {
                say(format!("chunking: {e}"));
            }
            if job.transfer.bandwidth_limit.is_some_and(|b| b.0 == 0) {
                say("transfer.bandwidth-limit: must be above 0".into());
            }
            match KeyFilter::new(&job.include, &job.exclude) {
                Err(e) => say(e.to_string()),
                Ok(filter) => {
                    if let Some(t) = &job.delete.trash_prefix
                        && let Err(e) = check_trash_prefix(t, &filter)
                    {
                        say(format!("delete.trash-prefix: {e}"));
                    }
                }
            }
            if let Err(e) = job.shard() {
                say(e.to_string());
            }
            if !(0.0..=1.0).contains(&job.delete.max_fraction) {
                say("delete.max-fraction: between 0 and 1".into());
            }
        }
        out
    }
}

/// The example `passeur config init` writes: every key, commented.
pub const EXAMPLE: &str = include_str!("../../systemd/passeur.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_valid() {
        let c = DaemonConfig::parse(EXAMPLE, Path::new("example.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.jobs.len() >= 2);
        assert_eq!(c.jobs[0].get_ref().interval.0, Duration::from_secs(600));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "state-dir = \"/s\"\n[[job]]\nname = \"a b\"\ninterval = \"10ms\"\n[job.source]\nurl = \"ftp://x\"\n[job.target]\nurl = \"s3://b\"\n[[job]]\nname = \"dup\"\n[job.source]\nurl = \"s3://b\"\n[job.target]\nurl = \"s3://b\"\n[[job]]\nname = \"dup\"\n[job.source]\nurl = \"s3://c\"\n[job.target]\nurl = \"s3://d\"\n";
        let e = DaemonConfig::parse(text, Path::new("t.toml")).expect_err("invalid");
        let ConfigError::Invalid { errors, .. } = e else {
            panic!("{e}")
        };
        let all = errors.join("\n");
        for want in [
            "line 2, column 1: job \"a b\": name",
            "interval: at least 1s",
            "source: invalid store URL \"ftp://x\"",
            "same URL",
            "duplicate job name",
        ] {
            assert!(all.contains(want), "{want:?} missing from:\n{all}");
        }
    }

    #[test]
    fn only_azure_sources_follow_a_change_feed() {
        let job = |source: &str| {
            format!(
                "state-dir = \"/s\"\n[[job]]\nname = \"j\"\nchanges = \"azure-change-feed\"\nchanges-interval = \"30s\"\n[job.source]\nurl = \"{source}\"\naccount = \"a\"\n[job.target]\nurl = \"s3://b\"\n"
            )
        };
        let c = DaemonConfig::parse(&job("az://data/p"), Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let j = c.jobs[0].get_ref();
        assert_eq!(j.changes, Some(ChangeFeed::AzureChangeFeed));
        assert_eq!(j.changes_interval.0, Duration::from_secs(30));
        let e = DaemonConfig::parse(&job("s3://a"), Path::new("t.toml")).expect_err("s3");
        assert!(
            e.to_string().contains("az://") || format!("{e:?}").contains("az://"),
            "{e:?}"
        );
        let bad = job("az://data").replace("azure-change-feed", "s3-events");
        assert!(DaemonConfig::parse(&bad, Path::new("t.toml")).is_err());
    }

    #[test]
    fn a_shard_is_checked_and_narrows_the_filter() {
        let job = |shard: &str| {
            format!(
                "state-dir = \"/s\"\n[[job]]\nname = \"j\"\nshard = \"{shard}\"\n[job.source]\nurl = \"s3://a\"\n[job.target]\nurl = \"s3://b\"\n"
            )
        };
        let c =
            DaemonConfig::parse(&job("1/4"), Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        let opts = c.jobs[0]
            .get_ref()
            .pass_options()
            .unwrap_or_else(|e| panic!("{e}"));
        let shard = opts.filter.shard().unwrap_or_else(|| panic!("no shard"));
        assert_eq!((shard.index(), shard.count()), (1, 4));
        let e = DaemonConfig::parse(&job("4/4"), Path::new("t.toml")).expect_err("4/4");
        let ConfigError::Invalid { errors, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("job \"j\": invalid option: shard \"4/4\": index 4"),
            "{errors:?}"
        );
        // Range shards: the file must exist and cut N ranges; ranges
        // without a shard are refused.
        let with_ranges = |shard: &str| {
            job(shard).replace(
                "[job.source]",
                "shard-ranges = \"/nonexistent/ranges.json\"\n[job.source]",
            )
        };
        let e = DaemonConfig::parse(&with_ranges("1/4"), Path::new("t.toml")).expect_err("file");
        assert!(
            e.to_string().contains("/nonexistent/ranges.json")
                || format!("{e:?}").contains("/nonexistent/ranges.json"),
            "{e:?}"
        );
        let no_shard = with_ranges("1/4").replace("shard = \"1/4\"\n", "");
        let e = DaemonConfig::parse(&no_shard, Path::new("t.toml")).expect_err("no shard");
        assert!(format!("{e:?}").contains("without a shard"), "{e:?}");
    }

    #[test]
    fn a_trash_prefix_must_be_left_out_of_the_job() {
        let job = |extra: &str| {
            format!(
                "state-dir = \"/s\"\n[[job]]\nname = \"j\"\n{extra}[job.source]\nurl = \"s3://a\"\n[job.target]\nurl = \"s3://b\"\n[job.delete]\nenabled = true\ntrash-prefix = \"_deleted\"\n"
            )
        };
        let e = DaemonConfig::parse(&job(""), Path::new("t.toml")).expect_err("overlap");
        let ConfigError::Invalid { errors, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("delete.trash-prefix") && errors[0].contains("\"_deleted/**\""),
            "{errors:?}"
        );
        for ok in ["exclude = [\"_deleted/**\"]\n", "include = [\"data/**\"]\n"] {
            DaemonConfig::parse(&job(ok), Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
