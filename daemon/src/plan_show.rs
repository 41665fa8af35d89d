//! `passeur plan`'s report as text for a terminal and as one
//! self-contained HTML page (inline SVG charts, no script, no fetch).

use std::fmt::Write as _;

use indicatif::HumanBytes;
use passeur_core::plan::estimate::human_duration;

use crate::plan_cmd::PlanReport;

/// 1234567 → "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "not priced".to_owned(), |v| format!("{v:.2}"))
}

fn size_label(min: u64, max: u64) -> String {
    if min == max {
        bytes(min)
    } else {
        format!("{} – {}", bytes(min), bytes(max))
    }
}

/// Where the figures come from: a listing, or an inventory report and
/// what it skipped.
fn origin(r: &PlanReport) -> String {
    let Some(inv) = &r.inventory else {
        return format!("listed in {:.1} s", r.listing_seconds);
    };
    let k = &inv.skipped;
    let skipped: Vec<String> = [
        (k.other_bucket, "of other buckets or containers"),
        (k.outside_prefix, "outside the prefix"),
        (k.delete_markers, "delete markers"),
        (k.deleted, "soft-deleted"),
        (k.folders, "directory entries"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{} {what}", thousands(*n)))
    .collect();
    format!(
        "from the inventory {} of {}, {} data file(s) read in {:.1} s{}",
        inv.about.path,
        inv.about.taken_at.map_or_else(
            || "unknown date".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string()
        ),
        inv.about.files,
        r.listing_seconds,
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; rows skipped: {}", skipped.join(", "))
        }
    )
}

/// The report for a terminal.
pub(crate) fn human(r: &PlanReport) -> String {
    let s = &r.survey;
    let mut o = String::new();
    let to = r
        .target
        .as_deref()
        .map(|t| format!(" → {t}"))
        .unwrap_or_default();
    let _ = writeln!(o, "passeur plan: {}{to} ({})", r.source, origin(r));
    let _ = writeln!(o, "objects      {}", thousands(s.objects));
    let _ = writeln!(
        o,
        "bytes        {} ({} bytes)",
        bytes(s.bytes),
        thousands(s.bytes)
    );
    if let (Some(a), Some(b)) = (s.oldest, s.newest) {
        let _ = writeln!(
            o,
            "modified     {} … {}",
            a.format("%Y-%m-%d %H:%M:%S"),
            b.format("%Y-%m-%d %H:%M:%S")
        );
    }
    let _ = writeln!(
        o,
        "\nsizes                              objects            bytes"
    );
    for b in &s.histogram {
        let _ = writeln!(
            o,
            "  {:<28} {:>13} {:>16}",
            size_label(b.min, b.max),
            thousands(b.objects),
            bytes(b.bytes)
        );
    }
    for p in &s.prefixes {
        let exact = if p.exact {
            ""
        } else {
            " (listing out of order: lower bounds)"
        };
        let _ = writeln!(
            o,
            "\nlargest prefixes at depth {} ({} prefixes{exact})",
            p.depth,
            thousands(p.prefixes)
        );
        for t in &p.top {
            let _ = writeln!(
                o,
                "  {:<40} {:>13} {:>16}",
                t.prefix,
                thousands(t.objects),
                bytes(t.bytes)
            );
        }
        if p.shallower_objects > 0 {
            let _ = writeln!(
                o,
                "  {:<40} {:>13} {:>16}",
                "(in no prefix this deep)",
                thousands(p.shallower_objects),
                bytes(p.shallower_bytes)
            );
        }
    }
    let d = &s.duplicates;
    let how = if d.exact {
        "exact".to_owned()
    } else {
        format!("estimated from 1 in {} contents", d.sample_divisor)
    };
    let _ = writeln!(
        o,
        "\nduplicates   {} objects, {} that server-side dedup would not copy ({how}; from listed size + MD5)",
        thousands(d.objects),
        bytes(d.bytes)
    );
    if d.unknown_objects > 0 {
        let _ = writeln!(
            o,
            "             {} objects ({}) listed without an MD5: not counted",
            thousands(d.unknown_objects),
            bytes(d.unknown_bytes)
        );
    }
    if s.blockers.is_empty() {
        let _ = writeln!(o, "\nblockers     none found");
    } else {
        let _ = writeln!(o, "\nblockers");
    }
    for b in &s.blockers {
        let _ = writeln!(
            o,
            "  {:<15} {:>13} {:>16}  {}",
            serde_json::to_value(b.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            thousands(b.objects),
            bytes(b.bytes),
            b.meaning
        );
        for k in &b.examples {
            let _ = writeln!(o, "      {k:?}");
        }
    }
    let e = &r.estimate;
    let _ = writeln!(o, "\nestimate (one full copy)");
    let _ = writeln!(
        o,
        "  requests   {} reads at the source, {} writes at the target",
        thousands(e.requests.reads),
        thousands(e.requests.writes)
    );
    match e.transfer_seconds {
        Some(t) => {
            let _ = writeln!(
                o,
                "  bytes      {} at the given bandwidth",
                human_duration(t)
            );
        }
        None => {
            let _ = writeln!(o, "  bytes      not timed (give --bandwidth)");
        }
    }
    let _ = writeln!(
        o,
        "  objects    {} for one host at {} objects/s",
        human_duration(e.object_seconds),
        e.objects_per_second
    );
    let _ = writeln!(o, "  one host   {}", human_duration(e.one_host_seconds));
    let _ = writeln!(o, "  egress     {}", money(e.egress_cost));
    let _ = writeln!(o, "  requests   {}", money(e.request_cost));
    if let Some(h) = e.hosts_for_deadline {
        let _ = writeln!(o, "  hosts      {h} to finish by the deadline");
    }
    if let Some(n) = &e.deadline_note {
        let _ = writeln!(o, "  deadline   {n}");
    }
    for n in &r.notes {
        let _ = writeln!(o, "\nnote: {n}");
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Characters of a bar's label shown before its bar.
const LABEL_CHARS: usize = 34;

/// Horizontal bars: one row per (label, value, shown text).
fn bars(rows: &[(String, u64, String)]) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let h = 22 * rows.len() + 4;
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"{h}\" role=\"img\">"
    );
    for (i, (label, v, shown)) in rows.iter().enumerate() {
        let y = 22 * i + 2;
        let w = (*v as f64 / max as f64 * 380.0)
            .round()
            .max(if *v > 0 { 1.0 } else { 0.0 });
        // Labels end before the bars (a prefix can be 1,024 bytes long);
        // the whole one is the tooltip.
        let short: String = if label.chars().count() > LABEL_CHARS {
            label.chars().take(LABEL_CHARS - 1).chain(['…']).collect()
        } else {
            label.clone()
        };
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{}\" font-size=\"12\"><title>{}</title>{}</text><rect x=\"230\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"#3b6ea5\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 13,
            esc(label),
            esc(&short),
            236.0 + w,
            y + 13,
            esc(shown)
        );
    }
    o.push_str("</svg>");
    o
}

/// The report as one self-contained page; every figure is also in the
/// embedded JSON (`<script type="application/json" id="plan">`), which
/// no script reads: it is there for machines and for checking the page.
pub(crate) fn html(r: &PlanReport) -> String {
    let s = &r.survey;
    let json = serde_json::to_string(r)
        .unwrap_or_default()
        .replace("</", "<\\/");
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>passeur plan: {}</title><style>body{{font-family:sans-serif;margin:2em;max-width:60em}}td,th{{padding:2px 10px;text-align:right}}td:first-child,th:first-child{{text-align:left}}.warn{{color:#a33}}</style></head><body>",
        esc(&r.source)
    );
    let to = r
        .target
        .as_deref()
        .map(|t| format!(" → {}", esc(t)))
        .unwrap_or_default();
    let when = match &r.inventory {
        None => format!(
            "listed {} in {:.1} s",
            r.listed_at
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            r.listing_seconds
        ),
        Some(_) => origin(r),
    };
    let _ = write!(
        o,
        "<h1>Migration plan</h1><p>{}{to}, {}</p>",
        esc(&r.source),
        esc(&when)
    );
    let _ = write!(
        o,
        "<table><tr><th>objects</th><td id=\"objects\">{}</td></tr><tr><th>bytes</th><td id=\"bytes\">{}</td><td>{}</td></tr></table>",
        thousands(s.objects),
        thousands(s.bytes),
        bytes(s.bytes)
    );
    let _ = write!(o, "<h2>Sizes</h2>");
    let rows: Vec<_> = s
        .histogram
        .iter()
        .map(|b| {
            (
                size_label(b.min, b.max),
                b.objects,
                format!("{} objects, {}", thousands(b.objects), bytes(b.bytes)),
            )
        })
        .collect();
    o.push_str(&bars(&rows));
    for p in &s.prefixes {
        let _ = write!(
            o,
            "<h2>Largest prefixes, depth {} ({} in all{})</h2>",
            p.depth,
            thousands(p.prefixes),
            if p.exact { "" } else { ", lower bounds" }
        );
        let rows: Vec<_> = p
            .top
            .iter()
            .map(|t| {
                (
                    t.prefix.clone(),
                    t.bytes,
                    format!("{} ({} objects)", bytes(t.bytes), thousands(t.objects)),
                )
            })
            .collect();
        o.push_str(&bars(&rows));
    }
    let d = &s.duplicates;
    let _ = write!(
        o,
        "<h2>Duplicates</h2><p><span id=\"dup-objects\">{}</span> objects, <span id=\"dup-bytes\">{}</span> bytes ({}) {}; {} objects listed without an MD5.</p>",
        thousands(d.objects),
        thousands(d.bytes),
        bytes(d.bytes),
        if d.exact {
            "exact".to_owned()
        } else {
            format!("estimated from 1 in {}", d.sample_divisor)
        },
        thousands(d.unknown_objects)
    );
    let _ = write!(o, "<h2>Blockers</h2>");
    if s.blockers.is_empty() {
        o.push_str("<p>None found.</p>");
    } else {
        let rows: Vec<_> = s
            .blockers
            .iter()
            .map(|b| {
                (
                    b.meaning.split(':').next().unwrap_or(b.meaning).to_owned(),
                    b.objects,
                    format!("{} objects, {}", thousands(b.objects), bytes(b.bytes)),
                )
            })
            .collect();
        o.push_str(&bars(&rows));
        o.push_str("<table id=\"blockers\"><tr><th>blocker</th><th>objects</th><th>bytes</th><th>examples</th></tr>");
        for b in &s.blockers {
            let kind = serde_json::to_value(b.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let ex: Vec<String> = b.examples.iter().map(|k| esc(k)).collect();
            let _ = write!(
                o,
                "<tr class=\"warn\" data-kind=\"{kind}\"><td title=\"{}\">{kind}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                esc(b.meaning),
                thousands(b.objects),
                thousands(b.bytes),
                ex.join("<br>")
            );
        }
        o.push_str("</table>");
    }
    let e = &r.estimate;
    let _ = write!(
        o,
        "<h2>Estimate</h2><table><tr><th>source reads</th><td id=\"reads\">{}</td></tr><tr><th>target writes</th><td id=\"writes\">{}</td></tr><tr><th>bytes at the bandwidth</th><td>{}</td></tr><tr><th>one host</th><td>{}</td></tr><tr><th>egress</th><td>{}</td></tr><tr><th>requests</th><td>{}</td></tr><tr><th>hosts by the deadline</th><td>{}</td></tr></table>",
        thousands(e.requests.reads),
        thousands(e.requests.writes),
        e.transfer_seconds
            .map_or_else(|| "not timed".to_owned(), human_duration),
        human_duration(e.one_host_seconds),
        money(e.egress_cost),
        money(e.request_cost),
        e.hosts_for_deadline.map_or_else(
            || e.deadline_note
                .clone()
                .unwrap_or_else(|| "no deadline given".into()),
            |h| h.to_string()
        ),
    );
    for n in &r.notes {
        let _ = write!(o, "<p>Note: {}</p>", esc(n));
    }
    let _ = write!(
        o,
        "<script type=\"application/json\" id=\"plan\">{json}</script></body></html>"
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn long_labels_stop_before_their_bar_and_keep_the_whole_as_a_tooltip() {
        let long = format!("{}/", "é".repeat(600));
        let svg = bars(&[(long.clone(), 1, "1 object".into())]);
        let shown = format!("{}…", "é".repeat(LABEL_CHARS - 1));
        assert!(
            svg.contains(&format!("<title>{long}</title>{shown}</text>")),
            "{svg}"
        );
        let svg = bars(&[("a/".into(), 1, "1 object".into())]);
        assert!(svg.contains("<title>a/</title>a/</text>"), "{svg}");
    }
}
