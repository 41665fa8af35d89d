//! `passeur plan --inventory`: a report of the bucket in each format the
//! clouds write (S3 CSV and Parquet, Azure CSV and Parquet), made by
//! `tests/support/inventory.py` from the server's own SDK listing (and
//! Parquet written by pyarrow), gives the same survey as listing the
//! bucket; the rows a plan must skip are counted, and a report cut short
//! is refused. The listing's figures themselves are checked against the
//! test's objects in tests/tests/plan.rs.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use passeur_tests::servers::{Kind, Server, spec, with};
use passeur_tests::{passeur, passeur_command};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

fn plan(args: &[&str]) -> Result<Value> {
    // Two prefixes per depth: a prefix leaves the top while the census
    // runs, which an inventory's rows (in no order) must not miscount.
    let mut all = vec!["plan", "--json", "--top", "2"];
    all.extend_from_slice(args);
    let run = passeur(&all, &[])?;
    ensure!(run.code == 0, "exit {}: {}", run.code, run.stderr);
    serde_json::from_str(&run.stdout).with_context(|| run.stdout.clone())
}

/// `passeur plan ARGS`, which must be refused: exit 2, nothing on
/// stdout. Its stderr.
fn refused(args: &[&str]) -> Result<String> {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    let run = passeur(&all, &[])?;
    ensure!(
        run.code == 2 && run.stdout.is_empty(),
        "exit {}: {}",
        run.code,
        run.stdout
    );
    Ok(run.stderr)
}

/// The report's survey and the inventory's skipped counts.
fn survey_of(report: &Value) -> (&Value, &Value) {
    (&report["survey"], &report["inventory"]["skipped"])
}

fn check(listed: &Value, from_inventory: &Value, specs: &[Value], skipped: Value) -> Result<()> {
    let (a, _) = survey_of(listed);
    let (b, s) = survey_of(from_inventory);
    let objects = specs.len() as u64;
    let bytes: u64 = specs.iter().filter_map(|s| s["size"].as_u64()).sum();
    ensure!(b["objects"] == objects && b["bytes"] == bytes, "totals {b}");
    ensure!(a == b, "listing and inventory differ:\n{a}\n{b}");
    ensure!(*s == skipped, "skipped {s}");
    ensure!(
        from_inventory["listed_at"] == "2026-12-01T03:00:00Z",
        "{}",
        from_inventory["listed_at"]
    );
    ensure!(
        from_inventory["metadata_checked"] == listed["metadata_checked"],
        "metadata checked"
    );
    Ok(())
}

fn report(server: &Server, bucket: &str, out: &Path, format: &str) -> Result<String> {
    server.sdk_inventory(bucket, out, format)
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_inventories_plan_as_the_listing_does() -> Result<()> {
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("invs3")?;
    let specs = vec![
        spec("a/1", 100, 'a'),
        spec("a/2", 100, 'a'),
        spec("a b/c+d=e", 10, 'p'),
        spec("été/100%", 20, 'u'),
        with(spec("b/cold", 200, 'c'), "class", json!("GLACIER")),
        with(spec("b/deep", 300, 'd'), "class", json!("DEEP_ARCHIVE")),
        with(spec("c/mp", 12 * MIB, 'm'), "parts", json!(2)),
        spec("m//x", 3, 'x'),
        spec("top", 0, 't'),
    ];
    moto.sdk_build("invs3", &specs)?;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("plan.toml");
    std::fs::write(&cfg, format!("[source]\n{}", moto.config()))?;
    let cfg = cfg.to_string_lossy().into_owned();
    let url = moto.url("invs3");
    let listed = plan(&["--source", &url, "--config", &cfg, "--target", "s3://t"])?;
    let skipped = json!({"other_bucket": 1, "outside_prefix": 0, "delete_markers": 1, "deleted": 0, "folders": 0});
    for format in ["csv", "parquet"] {
        let out = dir.path().join(format);
        let manifest = report(&moto, "invs3", &out, format)?;
        // No --config: the report is read, the bucket never asked.
        let inv = plan(&[
            "--source",
            "s3://invs3",
            "--inventory",
            &manifest,
            "--target",
            "s3://t",
        ])?;
        check(&listed, &inv, &specs, skipped.clone()).with_context(|| format.to_owned())?;
        ensure!(
            inv["inventory"]["format"] == format && inv["inventory"]["files"] == 2,
            "{}",
            inv["inventory"]
        );
    }

    // From the manifest's own directory, by a relative path: the data
    // files are one directory up.
    let manifest = report(&moto, "invs3", &dir.path().join("here"), "csv")?;
    let here = Path::new(&manifest).parent().context("report tree")?;
    let out = passeur_command(&[
        "plan",
        "--json",
        "--source",
        "s3://invs3",
        "--inventory",
        "manifest.json",
    ])?
    .current_dir(here)
    .output()?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
    ensure!(v["survey"]["objects"] == specs.len(), "{}", v["survey"]);

    // A prefix scopes the report; a data file cut short is refused.
    let manifest = report(&moto, "invs3", &dir.path().join("again"), "csv")?;
    let inv = plan(&["--source", "s3://invs3/a b", "--inventory", &manifest])?;
    ensure!(
        inv["survey"]["objects"] == 1 && inv["survey"]["bytes"] == 10,
        "{}",
        inv["survey"]
    );
    let data = Path::new(&manifest)
        .parent()
        .and_then(Path::parent)
        .context("report tree")?
        .join("data/part-1.csv.gz");
    let bytes = std::fs::read(&data)?;
    std::fs::write(&data, &bytes[..bytes.len() / 2])?;
    let stderr = refused(&["--source", "s3://invs3", "--inventory", &manifest])?;
    ensure!(
        stderr.trim().lines().count() == 1
            && stderr.contains("part-1.csv.gz")
            && stderr.contains("incomplete copy"),
        "{}",
        stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_inventories_plan_as_the_listing_does() -> Result<()> {
    let az = Server::start(Kind::Azurite)?;
    az.create_bucket("invaz")?;
    let specs = vec![
        spec("docs/2024/a.pdf", 3000, 'a'),
        spec("docs/2025/b.pdf", 3000, 'a'),
        spec("docs/empty", 0, 'z'),
        with(spec("images/cold.tif", 5000, 'c'), "tier", json!("Archive")),
        with(spec("logs/app.log", 1234, 'l'), "append", json!(true)),
        with(spec("snap/base.bin", 4000, 's'), "snapshots", json!(2)),
        spec("m//x", 3, 'm'),
        with(
            spec("meta/heavy", 10, 'h'),
            "metadata",
            json!({"note": "x".repeat(2100)}),
        ),
        with(
            spec("meta/light", 10, 'h'),
            "metadata",
            json!({"owner": "ops, dev"}),
        ),
        spec("top.txt", 7, 't'),
    ];
    az.sdk_build("invaz", &specs)?;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("plan.toml");
    std::fs::write(&cfg, format!("[source]\n{}", az.config()))?;
    let cfg = cfg.to_string_lossy().into_owned();
    let listed = plan(&[
        "--source",
        &az.url("invaz"),
        "--config",
        &cfg,
        "--target",
        "s3://t",
    ])?;
    let kinds: Vec<&str> = listed["survey"]["blockers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["kind"].as_str())
        .collect();
    ensure!(
        kinds
            == [
                "archived",
                "append-blob",
                "snapshot",
                "key-uncarriable",
                "metadata"
            ],
        "{kinds:?}"
    );
    let skipped = json!({"other_bucket": 1, "outside_prefix": 0, "delete_markers": 0, "deleted": 1, "folders": 1});
    for format in ["csv", "parquet"] {
        let out = dir.path().join(format);
        let manifest = report(&az, "invaz", &out, format)?;
        let inv = plan(&[
            "--source",
            "az://invaz",
            "--inventory",
            &manifest,
            "--target",
            "s3://t",
        ])?;
        check(&listed, &inv, &specs, skipped.clone()).with_context(|| format.to_owned())?;
    }

    // A run still under way is refused by name.
    let manifest = report(&az, "invaz", &dir.path().join("pending"), "csv")?;
    let text = std::fs::read_to_string(&manifest)?;
    std::fs::write(&manifest, text.replace("\"Succeeded\"", "\"Pending\""))?;
    let stderr = refused(&["--source", "az://invaz", "--inventory", &manifest])?;
    ensure!(stderr.contains("\"Pending\""), "{}", stderr);
    // A container mistyped: no row in scope is no empty container.
    let manifest = report(&az, "invaz", &dir.path().join("typo"), "csv")?;
    let stderr = refused(&["--source", "az://invax", "--inventory", &manifest])?;
    ensure!(stderr.contains("no row is of \"invax\""), "{}", stderr);
    // A local source cannot be planned from an inventory.
    let stderr = refused(&[
        "--source",
        dir.path().to_str().context("utf-8")?,
        "--inventory",
        &manifest,
    ])?;
    ensure!(
        stderr.contains("needs an s3:// or az:// --source"),
        "{stderr}"
    );
    Ok(())
}
