//! The `--html` page in a real browser: it parses, fetches nothing, shows
//! the report's figures, and draws its charts.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use passeur_tests::browser;
use serde_json::Value;

/// The text of the element with `id` in the browser's DOM.
fn by_id<'a>(dom: &'a str, id: &str) -> Result<&'a str> {
    let open = format!("id=\"{id}\">");
    let at = dom
        .find(&open)
        .with_context(|| format!("no #{id} in the page"))?
        + open.len();
    let end = dom[at..].find('<').context("unclosed element")?;
    Ok(&dom[at..at + end])
}

fn number(shown: &str) -> Result<u64> {
    shown
        .replace(',', "")
        .parse()
        .with_context(|| format!("{shown:?} is no number"))
}

/// Text of the cells of the table row that opens at `row`.
fn cells(row: &str) -> Vec<String> {
    let row = &row[..row.find("</tr>").unwrap_or(row.len())];
    row.split("<td")
        .skip(1)
        .map(|c| {
            let body = &c[c.find('>').map_or(0, |i| i + 1)..];
            body[..body.find("</td>").unwrap_or(body.len())].to_owned()
        })
        .collect()
}

/// The shown texts of the bars in the SVG chart that follows `heading`.
fn bar_texts(dom: &str, heading: &str) -> Result<Vec<String>> {
    let at = dom
        .find(heading)
        .with_context(|| format!("no {heading:?} heading"))?;
    let svg = &dom[at..];
    let svg = &svg[svg.find("<svg").context("no chart")?..];
    let svg = &svg[..svg.find("</svg>").context("unclosed chart")?];
    Ok(svg
        .split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').map_or(0, |i| i + 1)..];
            body[..body.find("</text>").unwrap_or(body.len())].to_owned()
        })
        .collect())
}

/// Checks the page at `page` against `report` (the same run's `--json`),
/// and leaves a screenshot at `shot`.
pub fn check(page: &Path, report: &Value, shot: &Path) -> Result<()> {
    let html = std::fs::read_to_string(page)?;
    let svg_ns = html.matches("http://www.w3.org/2000/svg").count();
    ensure!(
        html.matches("http://").count() == svg_ns
            && !html.contains("https://")
            && !html.contains(" src=")
            && !html.contains("<link")
            && !html.contains("url("),
        "the page names something to fetch"
    );

    let dom = browser::dump_dom(page)?;
    let s = &report["survey"];
    let e = &report["estimate"];
    for (id, want) in [
        ("objects", &s["objects"]),
        ("bytes", &s["bytes"]),
        ("dup-objects", &s["duplicates"]["objects"]),
        ("dup-bytes", &s["duplicates"]["bytes"]),
        ("reads", &e["requests"]["reads"]),
        ("writes", &e["requests"]["writes"]),
    ] {
        let shown = number(by_id(&dom, id)?)?;
        ensure!(*want == shown, "#{id} shows {shown}, the JSON says {want}");
    }

    let open = "<script type=\"application/json\" id=\"plan\">";
    let at = dom.find(open).context("no embedded JSON")? + open.len();
    let end = dom[at..].find("</script>").context("unclosed JSON")?;
    let embedded: Value = serde_json::from_str(&dom[at..at + end])?;
    ensure!(embedded == *report, "the page's JSON is not the report");

    // Histogram: one bar per bucket, in order, showing its object count.
    let shown = bar_texts(&dom, "<h2>Sizes</h2>")?;
    let buckets = s["histogram"].as_array().context("histogram")?;
    ensure!(
        shown.len() == 2 * buckets.len(),
        "{} bars for {} buckets",
        shown.len() / 2,
        buckets.len()
    );
    for (b, text) in buckets.iter().zip(shown.iter().skip(1).step_by(2)) {
        let n = text.split(' ').next().map(number).transpose()?;
        ensure!(
            n.as_ref() == b["objects"].as_u64().as_ref(),
            "bar {text:?} for {b}"
        );
    }

    // Blockers: a row per kind with its objects and bytes.
    let blockers = s["blockers"].as_array().context("blockers")?;
    let rows: Vec<&str> = dom
        .split("<tr class=\"warn\" data-kind=\"")
        .skip(1)
        .collect();
    ensure!(
        rows.len() == blockers.len(),
        "{} blocker rows for {}",
        rows.len(),
        blockers.len()
    );
    for (b, row) in blockers.iter().zip(&rows) {
        let c = cells(row);
        ensure!(c.len() == 4, "blocker row {row:?}");
        ensure!(
            Some(c[0].as_str()) == b["kind"].as_str()
                && Some(number(&c[1])?) == b["objects"].as_u64()
                && Some(number(&c[2])?) == b["bytes"].as_u64(),
            "blocker row {c:?} for {b}"
        );
    }

    // Rendered: the bars are drawn (the longest bar of a chart is 380
    // × 16 pixels in the bars' colour) and the page is not blank.
    let image = browser::screenshot(page, shot, 1000, 1400)?;
    let bar = image.count([0x3b, 0x6e, 0xa5]);
    ensure!(bar >= 380 * 16, "{bar} bar pixels in the screenshot");
    ensure!(image.inked() > bar, "nothing but bars drawn");
    Ok(())
}
