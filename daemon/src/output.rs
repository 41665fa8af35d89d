//! Progress and summaries: a progress bar on a terminal, plain or JSON
//! lines otherwise. Progress goes to stderr, the summary to stdout.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use passeur_core::base::stats::{Snapshot, Stats};
use passeur_core::sync::changes::ChangesSummary;
use passeur_core::sync::{Event, PassSummary};
use passeur_core::transfer::Outcome;

use crate::cli::Output;

/// Resolved output mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bar.
    Bar,
    /// Plain lines.
    Plain,
    /// JSON lines.
    Json,
}

impl Mode {
    /// Choose from the flag and whether stderr is a terminal.
    pub fn resolve(o: Output) -> Self {
        match o {
            Output::Json => Mode::Json,
            Output::Plain => Mode::Plain,
            Output::Auto if std::io::stderr().is_terminal() => Mode::Bar,
            Output::Auto => Mode::Plain,
        }
    }
}

fn progress_line(s: &Snapshot, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = s.bytes_read as f64 / secs;
    let eta = if s.listing_done && rate > 0.0 {
        let left = s.listed_bytes.saturating_sub(s.done_bytes) as f64;
        format!("{}s", (left / rate).ceil())
    } else {
        "?".into()
    };
    format!(
        "objects {}/{}{} · {} read · {} written · {}/s · ETA {eta}",
        s.finished(),
        s.listed,
        if s.listing_done { "" } else { "+" },
        HumanBytes(s.bytes_read),
        HumanBytes(s.bytes_written),
        HumanBytes(rate as u64),
    )
}

/// JSON event lines held before they are written: one write per
/// [`EVENTS_HELD`] bytes or per [`Reporter::FLUSH_EVERY`], not one per
/// object (over 10⁶ small files, a write per line was a tenth of the
/// pass's CPU).
const EVENTS_HELD: usize = 64 * 1024;

/// One object's JSON line (fields in the order `serde_json::json!` sorts
/// them, as before it was a struct).
#[derive(serde::Serialize)]
struct ObjectLine<'a> {
    event: &'static str,
    key: &'a str,
    outcome: &'static str,
    reason: Option<&'a String>,
    size: u64,
}

/// One recorded part's JSON line.
#[derive(serde::Serialize)]
struct PartLine<'a> {
    event: &'static str,
    key: &'a str,
    part: u32,
    size: u64,
}

/// Prints progress while a pass runs.
#[derive(Debug)]
pub struct Reporter {
    mode: Mode,
    stats: Arc<Stats>,
    started: Instant,
    bar: Option<ProgressBar>,
    /// JSON event lines not yet written to stderr.
    events: Mutex<Vec<u8>>,
}

impl Reporter {
    /// A reporter over live counters.
    pub fn new(mode: Mode, stats: Arc<Stats>) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Self {
            mode,
            stats,
            started: Instant::now(),
            bar,
            events: Mutex::new(Vec::new()),
        }
    }

    /// How long a JSON event line may wait to be written.
    pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

    /// Write the JSON event lines held so far.
    pub fn flush(&self) {
        let Ok(mut held) = self.events.lock() else {
            return;
        };
        if !held.is_empty() {
            // A closed stderr is not worth a panic.
            let _ = std::io::stderr().lock().write_all(&held);
            held.clear();
        }
    }

    /// Hold one JSON event line, writing them out once enough are held.
    fn hold(&self, line: &impl serde::Serialize) {
        let Ok(mut held) = self.events.lock() else {
            return;
        };
        if serde_json::to_writer(&mut *held, line).is_ok() {
            held.push(b'\n');
        }
        if held.len() >= EVENTS_HELD {
            let _ = std::io::stderr().lock().write_all(&held);
            held.clear();
        }
    }

    /// Refresh the display; called periodically.
    pub fn tick(&self) {
        self.flush();
        let s = self.stats.snapshot();
        let line = progress_line(&s, self.started.elapsed());
        match self.mode {
            Mode::Bar => {
                if let Some(b) = &self.bar {
                    b.set_message(line);
                }
            }
            Mode::Plain => eprintln!("progress: {line}"),
            Mode::Json => {
                let v = serde_json::json!({"event": "progress", "elapsed_s": self.started.elapsed().as_secs_f64(), "stats": s});
                eprintln!("{v}");
            }
        }
    }

    /// How often [`Reporter::tick`] should run.
    pub fn interval(&self) -> Duration {
        match self.mode {
            Mode::Bar => Duration::from_millis(250),
            Mode::Plain | Mode::Json => Duration::from_secs(10),
        }
    }

    /// One object finished, or one part of a multipart upload was
    /// recorded (shown in JSON only: what a crash from now on no longer
    /// costs).
    pub fn event(&self, e: &Event) {
        let (key, size, result) = match e {
            Event::Object { key, size, result } => (key, size, result),
            Event::Part(p) => {
                if self.mode == Mode::Json {
                    self.hold(&PartLine {
                        event: "part",
                        key: &p.key,
                        part: p.part,
                        size: p.size,
                    });
                }
                return;
            }
        };
        let word = match result {
            Ok(Outcome::Unchanged) => return,
            Ok(Outcome::Copied) => "copied",
            Ok(Outcome::Deduplicated) => "deduplicated",
            Ok(Outcome::Adopted) => "adopted",
            Ok(Outcome::WouldCopy) => "would-copy",
            Ok(Outcome::Vanished) => "vanished",
            Ok(Outcome::Paused) => "paused",
            Err(_) => "failed",
        };
        let reason = result.as_ref().err();
        match self.mode {
            Mode::Json => self.hold(&ObjectLine {
                event: "object",
                key,
                outcome: word,
                reason,
                size: *size,
            }),
            Mode::Plain | Mode::Bar => {
                let line = match reason {
                    Some(r) => format!("failed: {key:?}: {r}"),
                    None if word == "would-copy" => format!("would copy: {key:?} ({size} bytes)"),
                    None => return,
                };
                match &self.bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    /// Print the final summary of a change pass to stdout.
    pub fn changes_summary(&self, s: &ChangesSummary) {
        self.flush();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        let text = match self.mode {
            Mode::Json => {
                let v = serde_json::json!({"event": "summary", "kind": "changes", "elapsed_s": elapsed.as_secs_f64(), "complete": s.complete(), "summary": s});
                format!("{v}\n")
            }
            Mode::Plain | Mode::Bar => human_changes(s, elapsed),
        };
        // A closed stdout is not worth a panic.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// Print the final summary to stdout.
    pub fn summary(&self, s: &PassSummary) {
        self.flush();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        let mut out = std::io::stdout().lock();
        let text = match self.mode {
            Mode::Json => {
                let v = serde_json::json!({"event": "summary", "elapsed_s": elapsed.as_secs_f64(), "complete": s.complete(), "dedup_ratio": s.stats.dedup_ratio(), "summary": s});
                format!("{v}\n")
            }
            Mode::Plain | Mode::Bar => human_summary(s, elapsed),
        };
        // A closed stdout is not worth a panic.
        let _ = out.write_all(text.as_bytes());
    }
}

impl Drop for Reporter {
    /// Event lines are never lost to an early return.
    fn drop(&mut self) {
        self.flush();
    }
}

/// A change pass's summary, as `summary` prints a pass's.
fn human_changes(s: &ChangesSummary, elapsed: Duration) -> String {
    let st = &s.stats;
    let status = if s.complete() {
        "complete"
    } else {
        "INCOMPLETE"
    };
    let mut t = format!(
        "change pass {status} in {:.1}s (Azure change feed; keys the feed did not name were not looked at)\n",
        elapsed.as_secs_f64()
    );
    t.push_str(&format!(
        "feed: {} events read, {}; every recorded change before {} is at the target{}\n",
        s.events,
        if s.caught_up {
            "read up to lastConsumable"
        } else {
            "NOT read to its end"
        },
        s.consumable_until.as_deref().unwrap_or("(none read)"),
        if s.pending > 0 {
            " except pending keys"
        } else {
            ""
        }
    ));
    t.push_str(&format!(
        "keys: {} looked at, {} copied, {} unchanged, {} deduplicated, {} gone from the source, {} deleted, {} failed\n",
        s.keys, st.copied, st.unchanged, st.deduplicated, s.gone, st.deleted, st.failed
    ));
    if s.pending > 0 {
        t.push_str(&format!(
            "pending: {} keys not at the target, the oldest change since {}; tried again by the next change pass\n",
            s.pending,
            s.pending_since.as_deref().unwrap_or("?")
        ));
    }
    if let Some(why) = &s.deletes_refused {
        t.push_str(&format!("deletes refused: {why}\n"));
    }
    if st.excluded > 0 {
        t.push_str(&format!(
            "excluded: {} changed keys left out by --include / --exclude\n",
            st.excluded
        ));
    }
    if st.would_copy > 0 {
        t.push_str(&format!(
            "dry run: {} objects would be copied\n",
            st.would_copy
        ));
    }
    t.push_str(&format!(
        "bytes: {} read, {} written, {} saved by server-side copy\n",
        st.bytes_read, st.bytes_written, st.bytes_saved
    ));
    t.push_str(&format!("merkle root: {}\n", s.merkle_root));
    if s.interrupted {
        t.push_str("interrupted: the feed cursor stays before the batch in progress\n");
    }
    for f in &s.failures {
        t.push_str(&format!(
            "failed ({}): {:?}: {}\n",
            f.kind.as_str(),
            f.key,
            f.reason
        ));
    }
    t
}

fn human_summary(s: &PassSummary, elapsed: Duration) -> String {
    let st = &s.stats;
    let mut t = String::new();
    let status = if s.complete() {
        "complete"
    } else {
        "INCOMPLETE"
    };
    t.push_str(&format!("pass {status} in {:.1}s\n", elapsed.as_secs_f64()));
    t.push_str(&format!(
        "objects: {} listed, {} copied, {} unchanged, {} deduplicated, {} failed\n",
        st.listed, st.copied, st.unchanged, st.deduplicated, st.failed
    ));
    if st.adopted > 0 {
        t.push_str(&format!(
            "already at the target, unrecorded: {} objects read from both sides, equal, recorded without writing\n",
            st.adopted
        ));
    }
    if let Some(k) = &s.resumed_after {
        t.push_str(&format!(
            "listing: continued after {k:?}, then around to it{}\n",
            if s.listing_complete {
                " (whole key space)"
            } else {
                ""
            }
        ));
    }
    if st.vanished > 0 {
        t.push_str(&format!(
            "vanished: {} objects were gone when read (deleted since listing)\n",
            st.vanished
        ));
    }
    if st.deleted > 0 {
        t.push_str(&format!(
            "deleted: {} objects at the target (gone from the source)\n",
            st.deleted
        ));
    }
    if let Some(why) = &s.deletes_refused {
        t.push_str(&format!("deletes refused: {why}\n"));
    }
    if st.excluded > 0 {
        t.push_str(&format!(
            "excluded: {} listed keys left out by --include / --exclude\n",
            st.excluded
        ));
    }
    if st.paused > 0 {
        t.push_str(&format!(
            "paused: {} uploads stopped at a part boundary; the next run continues them\n",
            st.paused
        ));
    }
    if st.would_copy > 0 {
        t.push_str(&format!(
            "dry run: {} objects would be copied\n",
            st.would_copy
        ));
    }
    t.push_str(&format!(
        "bytes: {} read, {} written, {} saved by server-side copy\n",
        st.bytes_read, st.bytes_written, st.bytes_saved
    ));
    if st.uploads_resumed > 0 || st.uploads_restarted > 0 {
        t.push_str(&format!(
            "resumed: {} uploads continued ({} bytes already at the target, not read again), {} started over because the source changed\n",
            st.uploads_resumed, st.bytes_resumed, st.uploads_restarted
        ));
    }
    if st.uploads_unrecorded_aborted > 0 {
        t.push_str(&format!(
            "unrecorded uploads: {} created at the target by a stopped run before their id was recorded, aborted\n",
            st.uploads_unrecorded_aborted
        ));
    }
    if st.throttled > 0 {
        t.push_str(&format!(
            "throttled: {} answers 429/503 from the stores (retried); concurrency went down to {}, now {}\n",
            st.throttled, st.concurrency_min, st.concurrency
        ));
    }
    t.push_str(&format!("chunk dedup ratio: {:.3}\n", st.dedup_ratio()));
    t.push_str(&format!("merkle root: {}\n", s.merkle_root));
    if let Some(e) = &s.listing_error {
        t.push_str(&format!("listing error: {e}\n"));
    }
    if s.interrupted {
        t.push_str("interrupted: objects not yet listed were not replicated\n");
    }
    for f in &s.failures {
        t.push_str(&format!(
            "failed ({}): {:?}: {}\n",
            f.kind.as_str(),
            f.key,
            f.reason
        ));
    }
    t
}
