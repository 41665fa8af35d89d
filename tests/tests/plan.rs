//! `passeur plan` against datasets built by the servers' own SDKs: every
//! figure and every blocker equals what the test put there, computed here
//! from the test's own list of objects.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use passeur_tests::passeur;
use passeur_tests::servers::{Kind, Server, spec, with};
use serde_json::{Value, json};

#[path = "plan/page.rs"]
mod page;

const MIB: u64 = 1024 * 1024;

/// Objects and bytes of the current objects in `specs`.
fn totals(specs: &[Value]) -> (u64, u64) {
    let sizes: Vec<u64> = specs.iter().filter_map(|s| s["size"].as_u64()).collect();
    (sizes.len() as u64, sizes.iter().sum())
}

/// (largest size of the bucket, objects, bytes) by powers of two.
fn histogram(specs: &[Value]) -> BTreeMap<u64, (u64, u64)> {
    let mut h = BTreeMap::new();
    for s in specs {
        let size = s["size"].as_u64().unwrap_or_default();
        let top = if size == 0 {
            0
        } else {
            size.next_power_of_two()
        };
        let e = h.entry(top).or_insert((0, 0));
        e.0 += 1;
        e.1 += size;
    }
    h
}

/// Objects and bytes under each prefix of `depth` `/`-separated segments.
fn prefixes(specs: &[Value], depth: usize) -> BTreeMap<String, (u64, u64)> {
    let mut p = BTreeMap::new();
    for s in specs {
        let key = s["key"].as_str().unwrap_or_default();
        let size = s["size"].as_u64().unwrap_or_default();
        let cuts: Vec<usize> = key.match_indices('/').map(|(i, _)| i).collect();
        if let Some(&i) = cuts.get(depth - 1) {
            let e = p.entry(key[..=i].to_owned()).or_insert((0, 0));
            e.0 += 1;
            e.1 += size;
        }
    }
    p
}

fn plan(args: &[&str]) -> Result<(i32, Value, String)> {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let run = passeur(&all, &[])?;
    let v = serde_json::from_str(&run.stdout)
        .with_context(|| format!("exit {}: {} {}", run.code, run.stdout, run.stderr))?;
    Ok((run.code, v, run.stderr))
}

fn check_common(report: &Value, specs: &[Value]) -> Result<()> {
    let s = &report["survey"];
    let (objects, bytes) = totals(specs);
    ensure!(
        s["objects"] == objects && s["bytes"] == bytes,
        "totals: {s}"
    );
    let got: BTreeMap<u64, (u64, u64)> = s["histogram"]
        .as_array()
        .context("histogram")?
        .iter()
        .map(|b| {
            let max = b["max"].as_u64().unwrap_or_default();
            let min = b["min"].as_u64().unwrap_or_default();
            assert!(min == max || min == max / 2 + 1, "bucket {b}");
            (
                max,
                (
                    b["objects"].as_u64().unwrap_or_default(),
                    b["bytes"].as_u64().unwrap_or_default(),
                ),
            )
        })
        .collect();
    ensure!(
        got == histogram(specs),
        "histogram {got:?} != {:?}",
        histogram(specs)
    );
    for (i, depth) in [1, 2].into_iter().enumerate() {
        let p = &s["prefixes"][i];
        ensure!(p["depth"] == depth && p["exact"] == true, "prefixes {p}");
        let want = prefixes(specs, depth);
        let got: BTreeMap<String, (u64, u64)> = p["top"]
            .as_array()
            .context("top")?
            .iter()
            .map(|t| {
                (
                    t["prefix"].as_str().unwrap_or_default().to_owned(),
                    (
                        t["objects"].as_u64().unwrap_or_default(),
                        t["bytes"].as_u64().unwrap_or_default(),
                    ),
                )
            })
            .collect();
        ensure!(got == want, "depth {depth}: {got:?} != {want:?}");
        ensure!(
            p["prefixes"] == want.len() as u64,
            "depth {depth} count {p}"
        );
    }
    Ok(())
}

/// (kind, objects, bytes, examples) of the report's blockers.
fn blockers(report: &Value) -> Vec<(String, u64, u64, Vec<String>)> {
    report["survey"]["blockers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["kind"].as_str().unwrap_or_default().to_owned(),
                b["objects"].as_u64().unwrap_or_default(),
                b["bytes"].as_u64().unwrap_or_default(),
                b["examples"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|k| k.as_str().unwrap_or_default().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_plan_counts_what_the_test_put() -> Result<()> {
    let az = Server::start(Kind::Azurite)?;
    az.create_bucket("plan")?;
    let long_key = "é".repeat(600); // 600 characters, 1,200 bytes
    let specs = vec![
        spec("docs/2024/a.pdf", 3000, 'a'),
        spec("docs/2024/b.pdf", 3000, 'a'),
        spec("docs/2025/c.pdf", 3000, 'a'),
        spec("docs/2025/d.txt", 100, 'd'),
        spec("docs/empty", 0, 'z'),
        spec("images/x/1.png", 70_000, 'i'),
        spec("images/x/2.png", 70_000, 'j'),
        with(spec("images/cold.tif", 5000, 'c'), "tier", json!("Archive")),
        with(spec("logs/app.log", 1234, 'l'), "append", json!(true)),
        with(spec("snap/base.bin", 4000, 's'), "snapshots", json!(2)),
        spec("m//x", 3, 'm'),
        spec(&long_key, 4, 'e'),
        spec("big/over.bin", 10 * MIB + 1, 'b'),
        spec("big/ok.bin", 6 * MIB, 'o'),
        with(
            spec("meta/heavy", 10, 'h'),
            "metadata",
            json!({"note": "x".repeat(2100)}),
        ),
        with(
            spec("meta/light", 10, 'h'),
            "metadata",
            json!({"owner": "ops"}),
        ),
        spec("top.txt", 7, 't'),
    ];
    az.sdk_build("plan", &specs)?;
    // The target: an S3 bucket whose preset allows 2 parts of 5 MiB, so
    // its largest object is 10 MiB.
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("plan.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\n{}\n[target]\nprovider = \"aws\"\nmax-parts = 2\nmax-part = \"5MiB\"\npart-size = \"5MiB\"\n",
            az.config()
        ),
    )?;
    let cfg = cfg.to_string_lossy().into_owned();
    let html = dir.path().join("plan.html");
    let (code, report, stderr) = plan(&[
        "--html",
        html.to_str().context("utf-8 path")?,
        "--source",
        &az.url("plan"),
        "--target",
        "s3://somewhere",
        "--config",
        &cfg,
        "--bandwidth",
        "8Mbit/s",
        "--egress-price",
        "1/GB",
        "--request-price",
        "1/1000",
    ])?;
    ensure!(code == 0, "exit {code}: {stderr}");
    check_common(&report, &specs)?;
    ensure!(
        report["target_max_object"] == 10 * MIB,
        "{}",
        report["target_max_object"]
    );
    // Duplicates: a×3000 three times, h×10 twice; the append blob has no
    // Content-MD5.
    let d = &report["survey"]["duplicates"];
    ensure!(
        d["objects"] == 3 && d["bytes"] == 6010 && d["exact"] == true,
        "dups {d}"
    );
    ensure!(
        d["unknown_objects"] == 1 && d["unknown_bytes"] == 1234,
        "unknown {d}"
    );
    let b = blockers(&report);
    let kinds: Vec<(&str, u64, u64)> = b.iter().map(|b| (b.0.as_str(), b.1, b.2)).collect();
    ensure!(
        kinds
            == [
                ("archived", 1, 5000),
                ("append-blob", 1, 1234),
                ("snapshot", 2, 8000),
                ("too-large", 1, 10 * MIB + 1),
                ("key-too-long", 1, 4),
                ("key-uncarriable", 1, 3),
                ("metadata", 1, 10),
            ],
        "blockers {kinds:?}"
    );
    ensure!(
        b[0].3 == ["images/cold.tif"] && b[1].3 == ["logs/app.log"],
        "{b:?}"
    );
    ensure!(
        b[2].3.len() == 2 && b[2].3.iter().all(|k| k.starts_with("snap/base.bin@")),
        "snapshots {:?}",
        b[2].3
    );
    ensure!(
        b[3].3 == ["big/over.bin"] && b[4].3 == [long_key.clone()],
        "{b:?}"
    );
    ensure!(b[5].3 == ["m//x"] && b[6].3 == ["meta/heavy"], "{b:?}");
    // Requests: one read and one write per object up to 5 MiB; the 6 MiB
    // one in 2 parts (2 ranged reads; create, 2 parts, complete); the
    // over-size one never.
    let (objects, bytes) = totals(&specs);
    let small = objects - 2;
    let e = &report["estimate"];
    ensure!(
        e["requests"]["reads"] == small + 2 && e["requests"]["writes"] == small + 4,
        "requests {e}"
    );
    // 8 Mbit/s is 1,000,000 bytes a second; 1 per GB; 1 per 1,000 writes.
    let t = e["transfer_seconds"].as_f64().unwrap_or_default();
    ensure!((t - bytes as f64 / 1e6).abs() < 1e-6, "transfer {t}");
    let egress = e["egress_cost"].as_f64().unwrap_or_default();
    ensure!(
        (egress - bytes as f64 / 1e9).abs() < 1e-9,
        "egress {egress}"
    );
    let req = e["request_cost"].as_f64().unwrap_or_default();
    ensure!(
        (req - (small + 4) as f64 / 1000.0).abs() < 1e-9,
        "requests {req}"
    );
    ensure!(report["metadata_checked"] == true, "{report}");
    // The same run's page, in a real browser.
    page::check(&html, &report, &dir.path().join("plan.png"))?;

    // --fail-on-blockers: the same plan, exit 1.
    let run = passeur(
        &[
            "plan",
            "--source",
            &az.url("plan"),
            "--config",
            &cfg,
            "--fail-on-blockers",
        ],
        &[],
    )?;
    ensure!(run.code == 1, "exit {}: {}", run.code, run.stderr);
    ensure!(run.stdout.contains("archive tier"), "{}", run.stdout);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_plan_counts_classes_etags_and_odd_keys() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("plans3")?;
    let specs = vec![
        spec("a/1", 100, 'a'),
        spec("a/2", 100, 'a'),
        with(spec("b/cold", 200, 'c'), "class", json!("GLACIER")),
        with(spec("b/deep", 300, 'd'), "class", json!("DEEP_ARCHIVE")),
        with(spec("c/mp", 12 * MIB, 'm'), "parts", json!(2)),
        spec("m//x", 3, 'x'),
        spec("top", 0, 't'),
    ];
    moto.sdk_build("plans3", &specs)?;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("plan.toml");
    std::fs::write(&cfg, format!("[source]\n{}", moto.config()))?;
    let cfg = cfg.to_string_lossy().into_owned();
    let (code, report, stderr) = plan(&["--source", &moto.url("plans3"), "--config", &cfg])?;
    ensure!(code == 0, "exit {code}: {stderr}");
    check_common(&report, &specs)?;
    // a/1 and a/2 are one content; the multipart ETag is no MD5.
    let d = &report["survey"]["duplicates"];
    ensure!(d["objects"] == 1 && d["bytes"] == 100, "dups {d}");
    ensure!(
        d["unknown_objects"] == 1 && d["unknown_bytes"] == 12 * MIB,
        "unknown {d}"
    );
    let b = blockers(&report);
    ensure!(
        b == [
            (
                "archived".to_owned(),
                2,
                500,
                vec!["b/cold".to_owned(), "b/deep".to_owned()]
            ),
            ("key-uncarriable".to_owned(), 1, 3, vec!["m//x".to_owned()]),
        ],
        "blockers {b:?}"
    );
    ensure!(report["metadata_checked"] == false, "{report}");
    // No --target: the plan says its rules were not applied.
    ensure!(
        report["notes"].as_array().is_some_and(|n| n
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.starts_with("no --target")))),
        "{}",
        report["notes"]
    );
    Ok(())
}

/// Bad input: one line naming the problem, a documented exit code, and
/// no plan printed when the listing fails.
#[test]
fn bad_input_is_refused_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().to_string_lossy().into_owned();
    let run = passeur(
        &["plan", "--source", &src, "--bandwidth", "10 furlongs"],
        &[],
    )?;
    ensure!(run.code == 2 && run.stderr.contains("furlongs"), "{run:?}");
    ensure!(run.stdout.is_empty(), "{run:?}");
    let run = passeur(&["plan", "--source", &src, "--deadline", "soon"], &[])?;
    ensure!(
        run.code == 2 && run.stderr.contains("--deadline"),
        "{run:?}"
    );
    let cfg = dir.path().join("c.toml");
    let port = passeur_tests::servers::free_port()?;
    std::fs::write(
        &cfg,
        format!(
            "[source]\nendpoint = \"http://127.0.0.1:{port}\"\nallow-http = true\npath-style = true\nregion = \"us-east-1\"\naccess-key-id = \"k\"\nsecret-access-key = \"s\"\nmax-retries = 0\nretry-timeout = \"1s\"\n"
        ),
    )?;
    let run = passeur(
        &[
            "plan",
            "--source",
            "s3://nothing",
            "--config",
            &cfg.to_string_lossy(),
        ],
        &[],
    )?;
    ensure!(run.code == 2 && run.stderr.contains("no plan"), "{run:?}");
    ensure!(
        run.stdout.is_empty(),
        "a failed listing printed a plan: {run:?}"
    );
    Ok(())
}
