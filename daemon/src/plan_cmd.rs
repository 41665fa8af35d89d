//! `passeur plan`: one listing of the source, nothing read or written;
//! what the migration holds, costs, takes and will trip over.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use passeur_config::SyncConfig;
use passeur_core::plan::blockers::TargetRules;
use passeur_core::plan::estimate::{self, Assumptions, Estimate};
use passeur_core::plan::inventory::{About, Flavor, Inventory, Scope, Skipped};
use passeur_core::plan::{Census, CensusOptions, Listed, Survey};
use passeur_core::stores::limits::{PartPolicy, Provider};
use passeur_core::stores::rawlist::RawEntry;
use passeur_core::stores::{LocalDir, Store, StoreKind};
use serde::Serialize;

use crate::cli::PlanArgs;
use crate::{exit, fail};

/// The JSON report (`--json`, and what the HTML page shows).
#[derive(Debug, Serialize)]
pub struct PlanReport {
    /// Format version.
    pub passeur_plan: u32,
    /// Source URL.
    pub source: String,
    /// Target URL, when given.
    pub target: Option<String>,
    /// When the listing ended, or when the inventory report was taken
    /// (none when the report does not say).
    pub listed_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub listing_seconds: f64,
    /// The target's largest object, when a target was given.
    pub target_max_object: Option<u64>,
    /// Whether user metadata was listed (Azure) and checked.
    pub metadata_checked: bool,
    /// What the listing held.
    pub survey: Survey,
    /// Time and money.
    pub estimate: Estimate,
    /// The inventory report read instead of a listing (`--inventory`).
    pub inventory: Option<InventoryRead>,
    /// What the figures could not see.
    pub notes: Vec<String>,
}

/// An inventory report the plan read, and what it skipped.
#[derive(Debug, Serialize)]
pub struct InventoryRead {
    /// What the report was.
    #[serde(flatten)]
    pub about: About,
    /// Rows read and not taken, by reason.
    pub skipped: Skipped,
}

/// Run `passeur plan`; its exit code.
pub(crate) async fn plan(args: PlanArgs) -> u8 {
    let cfg = match &args.config {
        Some(p) => match SyncConfig::load(p) {
            Ok(c) => c,
            Err(e) => return fail(exit::CONFIG, &e.to_string()),
        },
        None => SyncConfig::default(),
    };
    let assumptions = match assumptions(&args) {
        Ok(a) => a,
        Err(e) => return fail(exit::USAGE, &e),
    };
    // From an inventory the source is not listed (nor opened: no
    // credentials needed); its URL says whose report to expect.
    let scope = match &args.inventory {
        None => None,
        Some(_) => match Scope::of_url(&args.source) {
            Some(s) => Some(s),
            None => {
                return fail(
                    exit::USAGE,
                    "--inventory needs an s3:// or az:// --source: the bucket or container the report is of",
                );
            }
        },
    };
    let source = match &scope {
        Some(_) => None,
        None => match Store::open(&args.source, &cfg.source.to_options(), LocalDir::MustExist) {
            Ok(s) => Some(s),
            Err(e) => return fail(exit::for_error(&e), &format!("source: {e}")),
        },
    };
    let source_kind = match (&source, &scope) {
        (Some(s), _) => s.kind,
        (None, Some((Flavor::Azure, _))) => StoreKind::Azure,
        (None, _) => StoreKind::S3,
    };
    let target = match &args.target {
        None => None,
        Some(url) => match Store::open(url, &cfg.target.to_options(), LocalDir::EmptyIfMissing) {
            Ok(t) => Some(t),
            Err(e) => return fail(exit::for_error(&e), &format!("target: {e}")),
        },
    };
    let policy = target
        .as_ref()
        .map_or_else(|| PartPolicy::for_provider(Provider::Generic), |t| t.policy);
    let rules = target.as_ref().map(|t| TargetRules::new(t.kind, &t.policy));
    let target_max_object = rules.as_ref().map(|r| r.max_object);
    let census = Census::new(CensusOptions {
        target: rules,
        policy,
        examples: args.examples,
        top: args.top,
        unordered: args.inventory.is_some(),
    });
    let started = Instant::now();
    let bar = progress_bar(args.json);
    let (census, inventory, mut notes, carries_metadata) = match (&args.inventory, scope, &source) {
        (Some(path), Some((flavor, scope)), _) => {
            match from_inventory(path, flavor, scope, census, bar.clone()).await {
                Ok((census, read, notes, metadata)) => (census, Some(read), notes, metadata),
                Err(e) => {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    return fail(exit::TROUBLE, &format!("--inventory {e}; no plan"));
                }
            }
        }
        (_, _, Some(source)) => match listing(source, census, bar.as_ref()).await {
            Ok(c) => (c, None, Vec::new(), source_kind == StoreKind::Azure),
            Err((objects, e)) => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                return fail(
                    exit::TROUBLE,
                    &format!(
                        "listing {} failed after {objects} objects: {e}; no plan",
                        args.source
                    ),
                );
            }
        },
        _ => return fail(exit::SOFTWARE, "plan: neither a listing nor an inventory"),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let metadata_checked = source_kind == StoreKind::Azure && carries_metadata;
    let survey = census.finish();
    let est = estimate::estimate(survey.objects, survey.bytes, survey.requests, &assumptions);
    if !metadata_checked {
        notes.push(
            "user metadata not checked: this source's listing (or report) does not carry it"
                .to_owned(),
        );
    }
    if args.target.is_none() {
        notes.push(
            "no --target: its limits (object size, key length, metadata) were not checked"
                .to_owned(),
        );
    }
    if source_kind != StoreKind::Azure {
        notes.push("access tiers, blob types, snapshots: Azure sources only".to_owned());
    }
    if let Some(inv) = &inventory {
        notes.push(format!(
            "read from an inventory report taken {}, not a listing: objects written since are not counted, and inventories are not atomic snapshots{}",
            inv.about
                .taken_at
                .map_or_else(|| "at an unknown time".to_owned(), |t| format!("at {}", t.format("%Y-%m-%d %H:%M UTC"))),
            if inv.about.flavor == Flavor::Azure {
                " (Azure may list a blob twice)"
            } else {
                ""
            }
        ));
    }
    let report = PlanReport {
        passeur_plan: 1,
        source: args.source.clone(),
        target: args.target.clone(),
        listed_at: match &inventory {
            Some(i) => i.about.taken_at,
            None => Some(Utc::now()),
        },
        listing_seconds: started.elapsed().as_secs_f64(),
        target_max_object,
        metadata_checked,
        survey,
        estimate: est,
        inventory,
        notes,
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => j,
            Err(e) => return fail(exit::SOFTWARE, &format!("cannot write the report: {e}")),
        }
    } else {
        crate::plan_show::human(&report)
    };
    if let Some(path) = &args.html
        && let Err(e) = std::fs::write(path, crate::plan_show::html(&report))
    {
        return fail(exit::TROUBLE, &format!("--html {}: {e}", path.display()));
    }
    println!("{}", text.trim_end());
    if args.fail_on_blockers && !report.survey.blockers.is_empty() {
        return exit::INCOMPLETE;
    }
    exit::OK
}

fn assumptions(args: &PlanArgs) -> Result<Assumptions, String> {
    let opt =
        |s: &Option<String>, f: fn(&str) -> Result<f64, String>| s.as_deref().map(f).transpose();
    let seconds_to_deadline = match &args.deadline {
        None => None,
        Some(d) => {
            let when = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                .or_else(|_| DateTime::parse_from_rfc3339(d).map(|t| t.with_timezone(&Utc)))
                .map_err(|_| {
                    format!("--deadline {d:?}: expected YYYY-MM-DD or an RFC 3339 time")
                })?;
            Some((when - Utc::now()).num_seconds() as f64)
        }
    };
    if !(args.objects_per_second > 0.0 && args.objects_per_second.is_finite()) {
        return Err("--objects-per-second must be above 0".into());
    }
    Ok(Assumptions {
        bandwidth: opt(&args.bandwidth, estimate::parse_bandwidth)?,
        objects_per_second: args.objects_per_second,
        egress_per_byte: opt(&args.egress_price, estimate::parse_egress_price)?,
        write_price: opt(&args.request_price, estimate::parse_request_price)?,
        read_price: opt(&args.read_price, estimate::parse_request_price)?,
        seconds_to_deadline,
    })
}

/// The listing, entry by entry, into the census; on failure the objects
/// counted and why.
async fn listing(
    source: &Store,
    mut census: Census,
    bar: Option<&ProgressBar>,
) -> Result<Census, (u64, String)> {
    let mut listing = entries(source);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            next = listing.next() => match next {
                Some(Ok(e)) => census.add(&e),
                Some(Err(e)) => return Err((census.objects(), e)),
                None => return Ok(census),
            },
            _ = ticker.tick() => if let Some(b) = bar {
                b.set_message(format!("{} objects, {}", census.objects(), HumanBytes(census.bytes())));
            },
        }
    }
}

/// The inventory report's rows in scope, into the census (files are read
/// on a blocking thread, owned and awaited here).
async fn from_inventory(
    path: &std::path::Path,
    flavor: Flavor,
    scope: Scope,
    mut census: Census,
    bar: Option<ProgressBar>,
) -> Result<(Census, InventoryRead, Vec<String>, bool), String> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let mut inv = Inventory::open(&path, flavor, scope).map_err(|e| e.to_string())?;
        let mut n = 0u64;
        while let Some(e) = inv.next_entry() {
            census.add(&e.map_err(|e| e.to_string())?);
            n += 1;
            if n.is_multiple_of(65_536)
                && let Some(b) = &bar
            {
                b.set_message(format!(
                    "{} objects, {}",
                    census.objects(),
                    HumanBytes(census.bytes())
                ));
            }
        }
        inv.check_scope().map_err(|e| e.to_string())?;
        let notes: Vec<String> = inv.notes().map(str::to_owned).collect();
        let read = InventoryRead {
            about: inv.about().clone(),
            skipped: inv.skipped().clone(),
        };
        Ok::<_, String>((census, read, notes, inv.carries_metadata()))
    });
    read.await.map_err(|e| format!("reading stopped: {e}"))?
}

fn progress_bar(json: bool) -> Option<ProgressBar> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} listing: {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// The source's entries with all their listing says: the store's own list
/// requests for S3 and Azure (tiers, types, snapshots, metadata), a local
/// directory's own walk, else object_store's listing.
fn entries(source: &Store) -> BoxStream<'static, Result<Listed, String>> {
    match &source.raw {
        Some(raw) => std::sync::Arc::new(raw.with_details())
            .list_after(None)
            .map(|r| r.map(listed).map_err(|e| e.to_string()))
            .boxed(),
        None => source
            .list_all(passeur_core::stores::Staging::List)
            .map(|r| {
                r.map(|m| {
                    let mut l = Listed::new(m.location.to_string(), m.size, m.last_modified);
                    l.etag = m.e_tag;
                    l
                })
                .map_err(|e| e.to_string())
            })
            .boxed(),
    }
}

fn listed(e: RawEntry) -> Listed {
    let mut l = Listed::new(e.key, e.size, e.last_modified);
    l.etag = e.etag;
    l.details = e.details.map(|d| *d).unwrap_or_default();
    l
}
