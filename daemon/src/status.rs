//! `passeur status`: asks the running service (its metrics-address) and
//! prints one block per job, or the JSON it serves.

use std::time::{SystemTime, UNIX_EPOCH};

use passeur_config::daemon::DaemonConfig;

use crate::cli::StatusArgs;
use crate::exit;

fn ago(t: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let d = now - t;
    if d >= 0.0 {
        format!("{d:.0}s ago")
    } else {
        format!("in {:.0}s", -d)
    }
}

fn human(jobs: &serde_json::Value) -> String {
    let mut out = String::new();
    for j in jobs.as_array().into_iter().flatten() {
        let name = j["name"].as_str().unwrap_or("?");
        let lag = j["lag_s"]
            .as_f64()
            .map_or("no complete pass yet".to_owned(), |l| format!("{l:.0}s"));
        out.push_str(&format!(
            "job {name}: {}, replication lag {lag}\n",
            j["state"].as_str().unwrap_or("?")
        ));
        if let Some(c) = j.get("current").filter(|c| !c.is_null()) {
            let st = &c["stats"];
            let eta = c["eta_s"]
                .as_f64()
                .map_or("-".to_owned(), |e| format!("{e:.0}s"));
            out.push_str(&format!(
                "  running: {} listed, {} copied, {} unchanged, {} failed, {} in flight or pending; {:.1} MB/s, ETA {eta}\n",
                st["listed"], st["copied"], st["unchanged"], st["failed"], c["in_flight_or_pending"],
                c["throughput_bps"].as_f64().unwrap_or(0.0) / 1e6
            ));
        }
        if let Some(l) = j.get("last_pass").filter(|l| !l.is_null()) {
            let st = &l["stats"];
            out.push_str(&format!(
                "  last pass: {}, ended {}: {} listed, {} copied, {} deleted, {} failed\n",
                if l["complete"].as_bool() == Some(true) {
                    "complete"
                } else {
                    "INCOMPLETE"
                },
                ago(l["ended"].as_f64().unwrap_or(0.0)),
                st["listed"],
                st["copied"],
                st["deleted"],
                st["failed"]
            ));
            for f in l["failures"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "    failed: {} — {}\n",
                    f[0],
                    f[1].as_str().unwrap_or("")
                ));
            }
            if let Some(why) = l["deletes_refused"].as_str() {
                out.push_str(&format!("    deletes refused: {why}\n"));
            }
            if let Some(e) = l["listing_error"].as_str() {
                out.push_str(&format!("    listing blocked: {e}\n"));
            }
        }
        if let Some(n) = j["next_pass"].as_f64() {
            out.push_str(&format!("  next pass {}\n", ago(n)));
        }
        if let Some(c) = j.get("changes").filter(|c| !c.is_null()) {
            changes(&mut out, c);
        }
        let t = &j["totals"];
        out.push_str(&format!(
            "  since start: {} passes, {} copied, {} deleted, {} failed, {} bytes written\n",
            t["passes"], t["copied"], t["deleted"], t["failed"], t["bytes_written"]
        ));
    }
    out
}

/// The change-feed lines of a job's status.
fn changes(out: &mut String, c: &serde_json::Value) {
    let lag = c["lag_s"]
        .as_f64()
        .map_or("not known yet".to_owned(), |l| format!("{l:.0}s"));
    out.push_str(&format!(
        "  change feed: change lag {lag}, {} keys pending{}\n",
        c["pending"],
        c["oldest_pending_s"]
            .as_f64()
            .map_or(String::new(), |a| format!(" (oldest change {a:.0}s ago)"))
    ));
    if let Some(l) = c.get("last").filter(|l| !l.is_null()) {
        out.push_str(&format!(
            "  last change pass: {}, ended {}: {} events, {} keys, {} copied, {} deleted, {} failed\n",
            if l["complete"].as_bool() == Some(true) {
                "complete"
            } else {
                "INCOMPLETE"
            },
            ago(l["ended"].as_f64().unwrap_or(0.0)),
            l["events"],
            l["keys"],
            l["copied"],
            l["deleted"],
            l["failed"]
        ));
    }
    if let Some(e) = c["error"].as_str() {
        out.push_str(&format!("    change feed blocked: {e}\n"));
    }
    if let Some(n) = c["next"].as_f64() {
        out.push_str(&format!("  next change pass {}\n", ago(n)));
    }
}

/// Run `passeur status`; returns the exit code.
pub async fn show(args: &StatusArgs) -> u8 {
    let cfg = match DaemonConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => return crate::config_errors(&e),
    };
    let Some(addr) = cfg.metrics_address else {
        return crate::fail(
            exit::CONFIG,
            &format!(
                "{}: no metrics-address: the service serves no status",
                args.config.display()
            ),
        );
    };
    match crate::serve::fetch(addr, "/status").await {
        Ok(text) if args.json => {
            println!("{}", text.trim());
            exit::OK
        }
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => {
                print!("{}", human(&v));
                exit::OK
            }
            Err(e) => crate::fail(exit::SOFTWARE, &format!("{addr}: unreadable status: {e}")),
        },
        Err(e) => crate::fail(exit::UNAVAILABLE, &e),
    }
}
