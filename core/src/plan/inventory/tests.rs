//! Inventory reports as the clouds document them, written here byte by
//! byte; Parquet reports (written by pyarrow) are read in the integration
//! suite (tests/tests/plan_inventory.rs).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn gz(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).expect("in memory");
    e.finish().expect("in memory")
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a file")).expect("test dir");
    std::fs::write(path, bytes).expect("test dir");
}

const SCHEMA: &str =
    "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";

/// An S3 report tree under `root`: data files with `rows`, the manifest
/// (with sizes and MD5s) and its checksum file; the manifest's path.
fn s3_report(root: &Path, files: &[&str]) -> PathBuf {
    let mut listed = Vec::new();
    for (i, rows) in files.iter().enumerate() {
        let key = format!("inv/src/cfg/data/{i}.csv.gz");
        let data = gz(rows);
        put(&root.join(&key), &data);
        listed.push(serde_json::json!({"key": key, "size": data.len(), "MD5checksum": hex(&Md5::digest(&data))}));
    }
    let manifest = serde_json::json!({
        "sourceBucket": "src", "destinationBucket": "arn:aws:s3:::inv", "version": "2016-11-30",
        "creationTimestamp": "1764558000000", "fileFormat": "CSV", "fileSchema": SCHEMA, "files": listed,
    });
    let text = serde_json::to_vec_pretty(&manifest).expect("json");
    let path = root.join("inv/src/cfg/2025-12-01T03-00Z/manifest.json");
    put(&path, &text);
    put(
        &path.with_file_name("manifest.checksum"),
        format!("{}\n", hex(&Md5::digest(&text))).as_bytes(),
    );
    path
}

fn all(inv: &mut Inventory) -> Result<Vec<Listed>, InventoryError> {
    let mut out = Vec::new();
    while let Some(e) = inv.next_entry() {
        out.push(e?);
    }
    Ok(out)
}

fn scope(bucket: &str, prefix: &str) -> Scope {
    Scope {
        bucket: bucket.into(),
        prefix: prefix.into(),
    }
}

#[test]
fn an_s3_csv_report_reads_with_decoded_keys_and_skips_what_is_not_an_object() {
    let dir = tempfile::tempdir().expect("tmp");
    let row = |key: &str, marker: bool, size: &str, class: &str| {
        format!(
            "\"src\",\"{key}\",\"\",\"true\",\"{marker}\",\"{size}\",\"2025-11-30T10:00:00.000Z\",\"0cc175b9c0f1b6a831c399e269772661\",\"{class}\"\n"
        )
    };
    let one = [
        row("a+b/c%2Bd%3De", false, "1", "STANDARD"),
        row("%C3%A9t%C3%A9/100%25", false, "0", "GLACIER"),
        row("gone", true, "", ""),
        "\n".to_owned(),
    ]
    .concat();
    let two = [
        row("a+b/x", false, "5", "DEEP_ARCHIVE"),
        "\"other\",\"k\",\"\",\"true\",\"false\",\"1\",\"2025-11-30T10:00:00.000Z\",\"\",\"STANDARD\"\n".to_owned(),
    ]
    .concat();
    let manifest = s3_report(dir.path(), &[&one, &two]);
    let mut inv = Inventory::open(&manifest, Flavor::S3, scope("src", "")).expect("opens");
    let got = all(&mut inv).expect("reads");
    let keys: Vec<(&str, u64)> = got.iter().map(|e| (e.key.as_str(), e.size)).collect();
    assert_eq!(keys, [("a b/c+d=e", 1), ("été/100%", 0), ("a b/x", 5)]);
    assert_eq!(got[1].details.class.as_deref(), Some("GLACIER"));
    assert!(got[1].archived() && got[2].archived() && !got[0].archived());
    assert_eq!(
        got[0].etag.as_deref(),
        Some("0cc175b9c0f1b6a831c399e269772661")
    );
    assert_eq!(
        got[0].last_modified.to_rfc3339(),
        "2025-11-30T10:00:00+00:00"
    );
    assert_eq!(inv.skipped().delete_markers, 1);
    assert_eq!(inv.skipped().other_bucket, 1);
    assert_eq!(inv.about().files, 2);
    assert_eq!(
        inv.about().taken_at.map(|t| t.timestamp_millis()),
        Some(1_764_558_000_000)
    );

    // A prefix scopes the report, keys become relative to it.
    let mut inv = Inventory::open(&manifest, Flavor::S3, scope("src", "a b")).expect("opens");
    let keys: Vec<String> = all(&mut inv)
        .expect("reads")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["c+d=e", "x"]);
    assert_eq!(inv.skipped().outside_prefix, 2); // "été/100%" and the delete marker "gone"
}

#[test]
fn a_damaged_incomplete_or_foreign_s3_report_is_refused_before_any_row() {
    let dir = tempfile::tempdir().expect("tmp");
    let manifest = s3_report(
        dir.path(),
        &[
            "\"src\",\"k\",\"\",\"true\",\"false\",\"1\",\"2025-11-30T10:00:00.000Z\",\"\",\"STANDARD\"\n",
        ],
    );
    let err = |m: &Path, b: &str| {
        Inventory::open(m, Flavor::S3, scope(b, ""))
            .expect_err("refused")
            .to_string()
    };
    assert!(err(&manifest, "another").contains("an inventory of bucket \"src\""));
    assert!(Inventory::open(&manifest, Flavor::Azure, scope("src", "")).is_err());

    // A data file cut short: its size no longer matches.
    let data = dir.path().join("inv/src/cfg/data/0.csv.gz");
    let bytes = std::fs::read(&data).expect("written");
    std::fs::write(&data, &bytes[..bytes.len() - 1]).expect("cut");
    assert!(
        err(&manifest, "src").contains("an incomplete copy"),
        "{}",
        err(&manifest, "src")
    );
    // Same size, other bytes: the MD5 says so.
    let mut other = bytes.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    std::fs::write(&data, &other).expect("altered");
    assert!(err(&manifest, "src").contains("damaged or another file"));
    std::fs::write(&data, &bytes).expect("restored");
    assert!(Inventory::open(&manifest, Flavor::S3, scope("src", "")).is_ok());
    // The manifest edited after its checksum was written.
    let text = std::fs::read_to_string(&manifest).expect("written");
    std::fs::write(&manifest, text.replace("1764558000000", "1764558000001")).expect("edited");
    assert!(err(&manifest, "src").contains("the manifest changed or is damaged"));
    std::fs::write(&manifest, &text).expect("restored");
    // A missing data file, an ORC report, a path out of the tree.
    std::fs::remove_file(&data).expect("removed");
    assert!(err(&manifest, "src").contains("not found near the manifest"));
    let _ = std::fs::remove_file(manifest.with_file_name("manifest.checksum"));
    for (from, to) in [
        ("\"CSV\"", "\"ORC\""),
        ("inv/src/cfg/data/0.csv.gz", "../../../../etc/passwd"),
    ] {
        std::fs::write(&manifest, text.replace(from, to)).expect("edited");
        let e = err(&manifest, "src");
        assert!(e.contains("ORC") || e.contains("is no file key"), "{e}");
    }
}

const AZ_HEADER: &str = "Name,Creation-Time,Last-Modified,Content-Length,Content-MD5,BlobType,AccessTier,ArchiveStatus,Snapshot,VersionId,IsCurrentVersion,Metadata,hdi_isfolder,Deleted\r\n";

/// A row; `flags`: (hdi_isfolder, Deleted).
fn az_row(
    name: &str,
    len: u64,
    ty: &str,
    tier: &str,
    snap: &str,
    meta: &str,
    flags: (bool, bool),
) -> String {
    format!(
        "{name},2025-01-01T00:00:00.0000000Z,2025-11-30T10:00:00.1234567Z,{len},kAFQmDzST7DWlj99KOF/cg==,{ty},{tier},Null,{snap},Null,Null,{meta},{},{}\r\n",
        flags.0, flags.1
    )
}

/// An Azure report tree: one run directory with a data file and its
/// manifest; the manifest's path.
fn az_report(root: &Path, status: &str, rows: &str) -> PathBuf {
    let run = "2025/12/01/03-00-00/r1";
    let data = root.join(run).join("r1_1000000_0.csv");
    let body = format!("{AZ_HEADER}{rows}");
    put(&data, body.as_bytes());
    let manifest = serde_json::json!({
        "destinationContainer": "inv", "endpoint": "https://acct.blob.core.windows.net",
        "files": [{"blob": format!("{run}/r1_1000000_0.csv"), "size": body.len()}],
        "inventoryStartTime": "2025-12-01T03:00:00Z", "inventoryCompletionTime": "2025-12-01T03:04:00Z",
        "ruleDefinition": {"format": "csv", "objectType": "blob", "schemaFields": ["Name"]},
        "ruleName": "r1", "status": status, "version": "1.0",
    });
    let path = root.join(run).join("r1-manifest.json");
    put(&path, &serde_json::to_vec_pretty(&manifest).expect("json"));
    path
}

#[test]
fn an_azure_csv_report_reads_tiers_types_snapshots_and_metadata() {
    let dir = tempfile::tempdir().expect("tmp");
    let rows = [
        az_row(
            "data/docs/a.pdf",
            3000,
            "BlockBlob",
            "Hot",
            "",
            "",
            (false, false),
        ),
        az_row(
            "data/cold.tif",
            5000,
            "BlockBlob",
            "Archive",
            "Null",
            r#""{""owner"":""ops"",""n"":""a,b""}""#,
            (false, false),
        ),
        az_row(
            "data/logs/app.log",
            1234,
            "AppendBlob",
            "",
            "",
            "",
            (false, false),
        ),
        az_row(
            "data/snap.bin",
            4000,
            "BlockBlob",
            "Hot",
            "2025-11-30T11:00:00.0000000Z",
            "",
            (false, false),
        ),
        az_row("data/dir", 0, "BlockBlob", "", "", "", (true, false)),
        az_row("data/gone", 9, "BlockBlob", "Hot", "", "", (false, true)),
        az_row("other/x", 1, "BlockBlob", "Hot", "", "", (false, false)),
        // A key holding "Null" is a key.
        az_row("data/Null", 2, "BlockBlob", "Hot", "", "", (false, false)),
    ]
    .concat();
    let manifest = az_report(dir.path(), "Succeeded", &rows);
    let mut inv = Inventory::open(&manifest, Flavor::Azure, scope("data", "")).expect("opens");
    let got = all(&mut inv).expect("reads");
    let keys: Vec<&str> = got.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["docs/a.pdf", "cold.tif", "logs/app.log", "snap.bin", "Null"]
    );
    assert!(got[1].archived());
    assert_eq!(
        got[1].details.metadata.as_deref(),
        Some(
            &[
                ("n".to_owned(), "a,b".to_owned()),
                ("owner".to_owned(), "ops".to_owned())
            ][..]
        )
    );
    assert_eq!(got[0].details.metadata.as_deref(), Some(&[][..]));
    assert_eq!(got[2].details.blob_type.as_deref(), Some("AppendBlob"));
    assert_eq!(
        got[3].details.snapshot.as_deref(),
        Some("2025-11-30T11:00:00.0000000Z")
    );
    assert!(got[1].details.snapshot.is_none() && got[1].details.version.is_none());
    assert_eq!(
        got[0].details.content_md5.as_deref(),
        Some("kAFQmDzST7DWlj99KOF/cg==")
    );
    assert_eq!(got[0].last_modified.timestamp_subsec_millis(), 123);
    let s = inv.skipped();
    assert_eq!((s.folders, s.deleted, s.other_bucket), (1, 1, 1));
    // Every column is there; the manifest names no filters.
    let notes: Vec<&str> = inv.notes().collect();
    assert!(
        notes.len() == 1 && notes[0].contains("states no rule filters"),
        "{notes:?}"
    );

    // The data file alone (it has a header) reads the same.
    let data = manifest.with_file_name("r1_1000000_0.csv");
    let mut alone = Inventory::open(&data, Flavor::Azure, scope("data", "")).expect("opens");
    assert_eq!(all(&mut alone).expect("reads").len(), 5);
    // A byte-order mark before the header is no part of "Name".
    let text = std::fs::read(&data).expect("written");
    std::fs::write(&data, [&b"\xef\xbb\xbf"[..], &text].concat()).expect("rewritten");
    let mut bom = Inventory::open(&data, Flavor::Azure, scope("data", "")).expect("opens");
    assert_eq!(all(&mut bom).expect("reads").len(), 5);
}

#[test]
fn an_azure_run_not_finished_or_a_row_not_understood_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let ok = az_row("data/a", 1, "BlockBlob", "Hot", "", "", (false, false));
    let pending = az_report(dir.path(), "Pending", &ok);
    let e = Inventory::open(&pending, Flavor::Azure, scope("data", "")).expect_err("refused");
    assert!(e.to_string().contains("status is Some(\"Pending\")"), "{e}");

    let dir = tempfile::tempdir().expect("tmp");
    let bad = ok.replace(",1,", ",-1,");
    let m = az_report(dir.path(), "Succeeded", &format!("{ok}{bad}"));
    let mut inv = Inventory::open(&m, Flavor::Azure, scope("data", "")).expect("opens");
    assert!(inv.next_entry().is_some_and(|e| e.is_ok()));
    let e = inv
        .next_entry()
        .expect("a row")
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("row 3") && e.contains("\"a\": size is not a byte count"),
        "{e}"
    );

    // A CSV without a header (S3's, given without its manifest).
    let lone = dir.path().join("part.csv");
    std::fs::write(&lone, "\"src\",\"k\",\"1\"\n").expect("written");
    let e = Inventory::open(&lone, Flavor::Azure, scope("data", ""))
        .and_then(|mut i| i.next_entry().transpose().map(|_| i))
        .expect_err("refused");
    assert!(
        e.to_string().contains("give the inventory's manifest"),
        "{e}"
    );
}

#[test]
fn scopes_come_from_urls() {
    assert_eq!(
        Scope::of_url("s3://b/p/q/"),
        Some((Flavor::S3, scope("b", "p/q")))
    );
    assert_eq!(
        Scope::of_url("az://c"),
        Some((Flavor::Azure, scope("c", "")))
    );
    assert_eq!(Scope::of_url("/local/dir"), None);
    assert_eq!(Scope::of_url("gs://b"), None);
    assert_eq!(decode_key("a+b%2B%E2%82%AC").as_deref(), Ok("a b+€"));
    assert!(decode_key("%FF").is_err());
}

#[test]
fn an_azure_rule_that_cannot_hold_the_whole_scope_is_refused_and_what_it_leaves_out_is_said() {
    let dir = tempfile::tempdir().expect("tmp");
    let ok = az_row("data/a/x", 1, "BlockBlob", "Hot", "", "", (false, false));
    let m = az_report(dir.path(), "Succeeded", &ok);
    let text = std::fs::read_to_string(&m).expect("written");
    let with = |filters: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["ruleDefinition"]["filters"] = filters;
        std::fs::write(&m, serde_json::to_vec(&v).expect("json")).expect("rewritten");
        Inventory::open(&m, Flavor::Azure, scope("data", "a"))
    };
    for (filters, why) in [
        (
            serde_json::json!({"prefixMatch": ["data/b", "other/"]}),
            "includes only names starting with",
        ),
        (
            serde_json::json!({"prefixMatch": ["data/a/x"]}),
            "includes only names starting with",
        ),
        (
            serde_json::json!({"excludePrefix": ["data/a/old"]}),
            "excludes names starting with \"data/a/old\"",
        ),
        (
            serde_json::json!({"excludePrefix": ["dat"]}),
            "excludes names",
        ),
        (
            serde_json::json!({"creationTime": {"lastNDays": 7}}),
            "keeps only blobs created recently",
        ),
        (
            serde_json::json!({"blobTypes": ["appendBlob"]}),
            "includes only",
        ),
    ] {
        let e = with(filters.clone()).expect_err("refused").to_string();
        assert!(
            e.contains(why) && e.contains("does not hold every blob under data/a/"),
            "{filters}: {e}"
        );
    }
    let inv = with(serde_json::json!({
        "prefixMatch": ["data/"], "excludePrefix": ["data/b"], "blobTypes": ["blockBlob", "appendBlob"],
        "includeSnapshots": true,
    }))
    .expect("covers data/a/");
    let notes: Vec<&str> = inv.notes().collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains("leaves out earlier versions")
            || notes[1].contains("leaves out earlier versions")
    );
    assert!(
        notes.iter().any(|n| n.contains("leaves out page blobs")),
        "{notes:?}"
    );
    let all_in = with(serde_json::json!({
        "blobTypes": ["blockBlob", "appendBlob", "pageBlob"], "includeSnapshots": true, "includeBlobVersions": true,
    }))
    .expect("opens");
    assert_eq!(all_in.notes().count(), 0);
}

#[test]
fn a_report_with_nothing_in_scope_a_row_of_the_wrong_width_or_an_unchecked_file_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let ok = az_row("data/a", 1, "BlockBlob", "Hot", "", "", (false, false));
    let m = az_report(dir.path(), "Succeeded", &format!("{ok}{ok}"));
    // A container name mistyped: every row skipped, and said so.
    let mut inv = Inventory::open(&m, Flavor::Azure, scope("dta", "")).expect("opens");
    assert_eq!(all(&mut inv).expect("reads").len(), 0);
    let e = inv.check_scope().expect_err("refused").to_string();
    assert!(
        e.contains("no row is of \"dta\"") && e.contains("{\"data\"}"),
        "{e}"
    );
    let mut inv = Inventory::open(&m, Flavor::Azure, scope("data", "")).expect("opens");
    assert_eq!(all(&mut inv).expect("reads").len(), 2);
    assert!(inv.check_scope().is_ok());

    // One field too many (an unquoted comma) is no row to guess at.
    let dir = tempfile::tempdir().expect("tmp");
    let wide = ok.replace("data/a,", "data/a,b,");
    let m = az_report(dir.path(), "Succeeded", &format!("{ok}{wide}"));
    let mut inv = Inventory::open(&m, Flavor::Azure, scope("data", "")).expect("opens");
    let e = all(&mut inv).expect_err("refused").to_string();
    assert!(
        e.contains("row 3: 15 fields where the columns are 14"),
        "{e}"
    );

    // An S3 manifest entry without its MD5.
    let dir = tempfile::tempdir().expect("tmp");
    let manifest = s3_report(
        dir.path(),
        &[
            "\"src\",\"k\",\"\",\"true\",\"false\",\"1\",\"2025-11-30T10:00:00.000Z\",\"\",\"STANDARD\"\n",
        ],
    );
    let _ = std::fs::remove_file(manifest.with_file_name("manifest.checksum"));
    let text = std::fs::read_to_string(&manifest).expect("written");
    std::fs::write(&manifest, text.replace("MD5checksum", "md5")).expect("edited");
    let e = Inventory::open(&manifest, Flavor::S3, scope("src", "")).expect_err("refused");
    assert!(e.to_string().contains("no size or MD5checksum"), "{e}");
    // An S3 data file given alone.
    let data = dir.path().join("inv/src/cfg/data/0.csv.gz");
    let e = Inventory::open(&data, Flavor::S3, scope("src", "")).expect_err("refused");
    assert!(e.to_string().contains("give its manifest.json"), "{e}");
}

#[test]
fn a_report_without_a_metadata_column_says_metadata_was_not_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let row = az_row("data/a", 1, "BlockBlob", "Hot", "", "", (false, false));
    let m = az_report(dir.path(), "Succeeded", &row);
    let mut inv = Inventory::open(&m, Flavor::Azure, scope("data", "")).expect("opens");
    assert_eq!(all(&mut inv).expect("reads").len(), 1);
    assert!(inv.carries_metadata());

    let data = m.with_file_name("r1_1000000_0.csv");
    let text = std::fs::read_to_string(&data).expect("written");
    let without = text
        .replace(",Metadata,", ",")
        .replace(",Null,Null,,", ",Null,Null,");
    std::fs::write(&data, &without).expect("rewritten");
    let text = std::fs::read_to_string(&m).expect("written");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["files"][0]["size"] = without.len().into();
    std::fs::write(&m, serde_json::to_vec(&v).expect("json")).expect("rewritten");
    let mut inv = Inventory::open(&m, Flavor::Azure, scope("data", "")).expect("opens");
    assert_eq!(all(&mut inv).expect("reads").len(), 1);
    assert!(!inv.carries_metadata());
    assert!(inv.notes().any(|n| n.contains("no Metadata column")));
}
