//! What file the user gave: an S3 Inventory `manifest.json`, an Azure
//! Blob Inventory `<rule>-manifest.json`, or one data file. A manifest's
//! data files are found where a copy of the report tree puts them (the
//! manifest's directory or one above it, by the tail of their key), and
//! checked against it: sizes, MD5s (S3), the manifest's own checksum file,
//! and the run's status (Azure) — a partial download or a run still
//! under way is refused, never read as a smaller store.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde_json::Value;

use super::{DataFile, Flavor, Format, InventoryError, table};

/// What an inventory file led to.
#[derive(Debug)]
pub(super) struct Found {
    pub flavor: Flavor,
    /// The bucket the report is of (S3 manifests).
    pub bucket: Option<String>,
    pub taken_at: Option<DateTime<Utc>>,
    pub files: Vec<DataFile>,
    pub file_bytes: u64,
    /// What the report leaves out, said in the plan.
    pub notes: Vec<String>,
    /// An Azure rule's filters, checked against the source's scope.
    pub filters: Option<Value>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InventoryError + '_ {
    move |source| InventoryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads what `path` is.
pub(super) fn open(path: &Path) -> Result<Found, InventoryError> {
    // A data file can be gigabytes: only its first bytes say what it is.
    let mut head = Vec::with_capacity(1024);
    std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_end(&mut head))
        .map_err(io(path))?;
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    let lone = |flavor, format| Found {
        flavor,
        bucket: None,
        taken_at: None,
        files: vec![DataFile {
            path: path.to_owned(),
            format,
            schema: None,
        }],
        file_bytes: len,
        notes: vec![LONE_FILE.to_owned()],
        filters: None,
    };
    if head.starts_with(b"PAR1") {
        return Ok(lone(table::parquet_flavor(path)?, Format::Parquet));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(InventoryError::format(
            path,
            "a gzip CSV data file of an S3 Inventory: give its manifest.json, which names its columns",
        ));
    }
    let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head);
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Only Azure writes CSV with a header row; the table refuses a
        // CSV without one.
        return Ok(lone(Flavor::Azure, Format::Csv));
    }
    let text = std::fs::read(path).map_err(io(path))?;
    let json = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text);
    let v: Value = serde_json::from_slice(json)
        .map_err(|e| InventoryError::format(path, format!("not a manifest: {e}")))?;
    if v.get("fileFormat").is_some() {
        s3(path, &text, &v)
    } else if v.get("destinationContainer").is_some() || v.get("ruleDefinition").is_some() {
        azure(path, &text, &v)
    } else {
        Err(InventoryError::format(
            path,
            "JSON, but neither an S3 Inventory manifest (fileFormat, files) nor an Azure Blob Inventory manifest (destinationContainer, ruleDefinition)",
        ))
    }
}

fn field<'v>(path: &Path, v: &'v Value, name: &str) -> Result<&'v Value, InventoryError> {
    v.get(name)
        .ok_or_else(|| InventoryError::format(path, format!("manifest has no {name:?}")))
}

fn s3(path: &Path, text: &[u8], v: &Value) -> Result<Found, InventoryError> {
    check_sum_file(path, &path.with_file_name("manifest.checksum"), text)?;
    let format = match field(path, v, "fileFormat")?.as_str() {
        Some(f) if f.eq_ignore_ascii_case("csv") => Format::Csv,
        Some(f) if f.eq_ignore_ascii_case("parquet") => Format::Parquet,
        other => {
            return Err(InventoryError::format(
                path,
                format!(
                    "fileFormat {other:?}: passeur reads CSV and Parquet inventories (configure one of those)"
                ),
            ));
        }
    };
    let schema: Option<Arc<[String]>> = match format {
        Format::Csv => Some(
            field(path, v, "fileSchema")?
                .as_str()
                .ok_or_else(|| InventoryError::format(path, "fileSchema is not a string"))?
                .split(',')
                .map(|c| c.trim().to_owned())
                .collect(),
        ),
        // Parquet files carry their schema (and AWS words the
        // manifest's copy in more than one style).
        Format::Parquet => None,
    };
    let taken_at = v
        .get("creationTimestamp")
        .and_then(|t| match t {
            Value::String(s) => s.parse::<i64>().ok(),
            other => other.as_i64(),
        })
        .and_then(DateTime::from_timestamp_millis);
    let mut files = Vec::new();
    let mut file_bytes = 0;
    for f in field(path, v, "files")?.as_array().into_iter().flatten() {
        let key = f.get("key").and_then(Value::as_str).unwrap_or_default();
        let at = locate(path, key)?;
        let (Some(size), Some(md5)) = (
            f.get("size").and_then(Value::as_u64),
            f.get("MD5checksum").and_then(Value::as_str),
        ) else {
            return Err(InventoryError::format(
                path,
                format!("data file {key:?}: no size or MD5checksum to check it by"),
            ));
        };
        file_bytes += check_file(path, &at, Some(size), Some(md5))?;
        files.push(DataFile {
            path: at,
            format,
            schema: schema.clone(),
        });
    }
    if files.is_empty() {
        return Err(InventoryError::format(
            path,
            "the manifest lists no data files",
        ));
    }
    Ok(Found {
        notes: vec![
            "an S3 Inventory configuration can filter by prefix and its manifest does not say: the plan covers what the report lists".to_owned(),
        ],
        filters: None,
        flavor: Flavor::S3,
        bucket: v
            .get("sourceBucket")
            .and_then(Value::as_str)
            .map(str::to_owned),
        taken_at,
        files,
        file_bytes,
    })
}

fn azure(path: &Path, text: &[u8], v: &Value) -> Result<Found, InventoryError> {
    if let Some(name) = path.file_name().and_then(|n| n.to_str())
        && let Some(stem) = name.strip_suffix("manifest.json")
    {
        check_sum_file(
            path,
            &path.with_file_name(format!("{stem}manifest.checksum")),
            text,
        )?;
    }
    match v.get("status").and_then(Value::as_str) {
        Some("Succeeded") => {}
        other => {
            return Err(InventoryError::format(
                path,
                format!(
                    "the inventory run's status is {other:?}, not \"Succeeded\": its files are incomplete"
                ),
            ));
        }
    }
    let rule = v.get("ruleDefinition");
    if let Some(t) = rule
        .and_then(|r| r.get("objectType"))
        .and_then(Value::as_str)
        && !t.eq_ignore_ascii_case("blob")
    {
        return Err(InventoryError::format(
            path,
            format!("an inventory of {t}s, not blobs"),
        ));
    }
    let stated = rule.and_then(|r| r.get("format")).and_then(Value::as_str);
    let taken_at = v
        .get("inventoryStartTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let mut files = Vec::new();
    let mut file_bytes = 0;
    for f in field(path, v, "files")?.as_array().into_iter().flatten() {
        let key = f.get("blob").and_then(Value::as_str).unwrap_or_default();
        let at = locate(path, key)?;
        let parquet = stated.map_or(key.ends_with(".parquet"), |s| {
            s.eq_ignore_ascii_case("parquet")
        });
        let Some(size) = f.get("size").and_then(Value::as_u64) else {
            return Err(InventoryError::format(
                path,
                format!("data file {key:?}: no size to check it by"),
            ));
        };
        file_bytes += check_file(path, &at, Some(size), None)?;
        files.push(DataFile {
            path: at,
            format: if parquet {
                Format::Parquet
            } else {
                Format::Csv
            },
            schema: None,
        });
    }
    if files.is_empty() {
        return Err(InventoryError::format(
            path,
            "the manifest lists no data files",
        ));
    }
    Ok(Found {
        notes: Vec::new(),
        filters: rule.and_then(|r| r.get("filters")).cloned(),
        flavor: Flavor::Azure,
        bucket: None,
        taken_at,
        files,
        file_bytes,
    })
}

/// Where a copy of the report tree holds the data file `key` (a key in
/// the bucket or container the report was written to): under the
/// manifest's directory or one above it, by the longest tail of `key`.
fn locate(manifest: &Path, key: &str) -> Result<PathBuf, InventoryError> {
    let segs: Vec<&str> = key.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() || segs.iter().any(|s| *s == ".." || *s == ".") {
        return Err(InventoryError::format(
            manifest,
            format!("data file {key:?} is no file key"),
        ));
    }
    let abs = manifest.canonicalize().map_err(io(manifest))?;
    let dir = abs.parent().unwrap_or(Path::new("/"));
    for base in dir.ancestors().take(6) {
        for i in 0..segs.len() {
            let p = base.join(segs[i..].join("/"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(InventoryError::format(
        manifest,
        format!(
            "data file {key:?} not found near the manifest (copy the report's files with their paths)"
        ),
    ))
}

/// The data file has the size (and MD5) its manifest states; its size.
fn check_file(
    manifest: &Path,
    at: &Path,
    size: Option<u64>,
    md5: Option<&str>,
) -> Result<u64, InventoryError> {
    let len = std::fs::metadata(at).map_err(io(at))?.len();
    if let Some(want) = size
        && want != len
    {
        return Err(InventoryError::format(
            at,
            format!(
                "{len} bytes, {} says {want}: an incomplete copy?",
                manifest.display()
            ),
        ));
    }
    if let Some(want) = md5 {
        let got = md5_hex(at)?;
        if !got.eq_ignore_ascii_case(want) {
            return Err(InventoryError::format(
                at,
                format!(
                    "MD5 {got}, {} says {want}: damaged or another file",
                    manifest.display()
                ),
            ));
        }
    }
    Ok(len)
}

/// A manifest's checksum file, when present, holds its MD5 in hex.
fn check_sum_file(manifest: &Path, sum: &Path, text: &[u8]) -> Result<(), InventoryError> {
    let Ok(stated) = std::fs::read_to_string(sum) else {
        return Ok(());
    };
    let stated = stated.trim();
    if stated.len() != 32 || !stated.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(()); // not a form we know: nothing to say
    }
    let got = hex(&Md5::digest(text));
    if !got.eq_ignore_ascii_case(stated) {
        return Err(InventoryError::format(
            manifest,
            format!(
                "MD5 {got}, {} says {stated}: the manifest changed or is damaged",
                sum.display()
            ),
        ));
    }
    Ok(())
}

fn md5_hex(path: &Path) -> Result<String, InventoryError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The note of a plan from one data file given without its manifest.
const LONE_FILE: &str = "a data file without its manifest: the run's completeness, \
     the file's size and checksum, the rule's filters were not checked";

/// An Azure rule's filters against the source's scope: refused when the
/// report cannot hold every blob of the scope (a prefix match that does not
/// cover it, an excluded prefix inside it, a creation-time window, block
/// blobs left out); what it leaves out otherwise is said.
pub(super) fn azure_filters(
    path: &Path,
    filters: &Value,
    scope: &super::Scope,
) -> Result<Vec<String>, InventoryError> {
    let strings = |name: &str| -> Vec<String> {
        filters
            .get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let at = if scope.prefix.is_empty() {
        format!("{}/", scope.bucket)
    } else {
        format!("{}/{}/", scope.bucket, scope.prefix)
    };
    let refuse = |why: String| {
        Err(InventoryError::format(
            path,
            format!("the inventory rule {why}: its report does not hold every blob under {at}"),
        ))
    };
    let matches = strings("prefixMatch");
    if !matches.is_empty() && !matches.iter().any(|p| at.starts_with(p.as_str())) {
        return refuse(format!("includes only names starting with {matches:?}"));
    }
    if let Some(e) = strings("excludePrefix")
        .into_iter()
        .find(|e| e.starts_with(at.as_str()) || at.starts_with(e.as_str()))
    {
        return refuse(format!("excludes names starting with {e:?}"));
    }
    if let Some(c) = filters.get("creationTime") {
        return refuse(format!("keeps only blobs created recently ({c})"));
    }
    let mut notes = Vec::new();
    let types = strings("blobTypes");
    if !types.is_empty() {
        let has = |t: &str| types.iter().any(|x| x.eq_ignore_ascii_case(t));
        if !has("blockBlob") {
            return refuse(format!("includes only {types:?}"));
        }
        for (t, what) in [("appendBlob", "append"), ("pageBlob", "page")] {
            if !has(t) {
                notes.push(format!(
                    "the inventory rule leaves out {what} blobs: none are counted or named as blockers"
                ));
            }
        }
    }
    for (flag, what) in [
        ("includeSnapshots", "snapshots"),
        ("includeBlobVersions", "earlier versions"),
    ] {
        if filters.get(flag).and_then(Value::as_bool) != Some(true) {
            notes.push(format!(
                "the inventory rule leaves out {what} ({flag} is not true): none are counted or named as blockers"
            ));
        }
    }
    Ok(notes)
}
