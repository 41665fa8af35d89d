//! Inventory reports instead of a listing: an AWS S3 Inventory
//! (`manifest.json` with CSV or Parquet data files) or an Azure Blob
//! Inventory (`<rule>-manifest.json`, or one CSV / Parquet data file),
//! read from local files one row at a time. Each row becomes a
//! [`Listed`] entry of the source in scope; what is skipped is counted.
//!
//! Inventories are not atomic snapshots (both clouds say so), and
//! Azure's may repeat a blob: the plan says it read a report, of when.

mod manifest;
mod table;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Listed;
use crate::stores::rawlist::Details;
use table::{Cell, Columns, Table};

/// Why an inventory cannot be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not what an inventory holds.
    #[error("{}: {what}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// One row cannot be taken.
    #[error("{}: row {row}: {what}", path.display())]
    Row {
        /// The data file.
        path: PathBuf,
        /// Row number, from 1 (a CSV header is row 1).
        row: u64,
        /// What is wrong.
        what: String,
    },
}

impl InventoryError {
    fn format(path: &Path, what: impl Into<String>) -> Self {
        Self::Format {
            path: path.to_owned(),
            what: what.into(),
        }
    }
}

/// Whose inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// AWS S3 Inventory.
    S3,
    /// Azure Blob Inventory.
    Azure,
}

/// How a data file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated (S3: gzip, no header; Azure: a header row).
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// What part of the inventory the plan covers: the source URL's bucket
/// (or container) and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Bucket or container.
    pub bucket: String,
    /// Key prefix without its trailing `/` ("" for all).
    pub prefix: String,
}

impl Scope {
    /// The scope of an `s3://` or `az://` (`azure://`) URL.
    pub fn of_url(url: &str) -> Option<(Flavor, Self)> {
        let (scheme, rest) = url.split_once("://")?;
        let flavor = match scheme {
            "s3" => Flavor::S3,
            "az" | "azure" => Flavor::Azure,
            _ => return None,
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| {
            (
                flavor,
                Self {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_matches('/').to_owned(),
                },
            )
        })
    }

    /// The key relative to the scope, if it is in it.
    fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }
}

/// Rows read and not taken, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Rows of another bucket or container.
    pub other_bucket: u64,
    /// Rows outside the source URL's prefix.
    pub outside_prefix: u64,
    /// S3 delete markers.
    pub delete_markers: u64,
    /// Azure soft-deleted blobs.
    pub deleted: u64,
    /// Azure directory entries (`hdi_isfolder`, accounts with a
    /// hierarchical namespace).
    pub folders: u64,
}

/// What the report was.
#[derive(Debug, Clone, Serialize)]
pub struct About {
    /// The file given.
    pub path: String,
    /// Whose.
    pub flavor: Flavor,
    /// Its data files' format.
    pub format: Format,
    /// When the inventory run started (from its manifest).
    pub taken_at: Option<DateTime<Utc>>,
    /// Data files read.
    pub files: usize,
    /// Their bytes.
    pub file_bytes: u64,
}

/// One data file to read.
#[derive(Debug, Clone)]
struct DataFile {
    path: PathBuf,
    format: Format,
    /// Column names of a CSV without a header row (S3's, from its
    /// manifest).
    schema: Option<std::sync::Arc<[String]>>,
}

/// An inventory, opened and checked (manifest status, data files'
/// sizes and MD5s), read one row at a time.
#[derive(Debug)]
pub struct Inventory {
    about: About,
    scope: Scope,
    files: std::vec::IntoIter<DataFile>,
    table: Option<(Table, Columns)>,
    skipped: Skipped,
    notes: std::collections::BTreeSet<String>,
    /// Every data file opened has a Metadata column.
    metadata: bool,
    /// Entries given.
    taken: u64,
    /// A few of the other buckets or containers seen.
    others: std::collections::BTreeSet<String>,
}

impl Inventory {
    /// Opens `path` (a manifest or one data file) for the `scope` of a
    /// source of `flavor`. Fails before any row is read when the report
    /// is incomplete, of another store kind or bucket, or damaged.
    pub fn open(path: &Path, flavor: Flavor, scope: Scope) -> Result<Self, InventoryError> {
        let found = manifest::open(path)?;
        if found.flavor != flavor {
            return Err(InventoryError::format(
                path,
                format!(
                    "an {:?} inventory, but the source is {:?}",
                    found.flavor, flavor
                ),
            ));
        }
        if let Some(b) = &found.bucket
            && *b != scope.bucket
        {
            return Err(InventoryError::format(
                path,
                format!(
                    "an inventory of bucket {b:?}, the source is {:?}",
                    scope.bucket
                ),
            ));
        }
        let mut notes: std::collections::BTreeSet<String> = found.notes.into_iter().collect();
        if flavor == Flavor::Azure {
            match &found.filters {
                Some(f) => notes.extend(manifest::azure_filters(path, f, &scope)?),
                None if found.taken_at.is_some() => {
                    notes.insert(
                        "the manifest states no rule filters: blob types, snapshots and versions the rule left out cannot be told".to_owned(),
                    );
                }
                None => {}
            }
        }
        let about = About {
            path: path.display().to_string(),
            flavor,
            format: found.files.first().map_or(Format::Csv, |f| f.format),
            taken_at: found.taken_at,
            files: found.files.len(),
            file_bytes: found.file_bytes,
        };
        Ok(Self {
            about,
            scope,
            files: found.files.into_iter(),
            table: None,
            skipped: Skipped::default(),
            notes,
            metadata: true,
            taken: 0,
            others: std::collections::BTreeSet::new(),
        })
    }

    /// What the report was.
    pub fn about(&self) -> &About {
        &self.about
    }

    /// Rows read and not taken.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Refuses a report of which no row was in scope while others were:
    /// a wrong bucket, container or prefix must not plan as an empty one.
    pub fn check_scope(&self) -> Result<(), InventoryError> {
        let k = &self.skipped;
        if self.taken > 0 || k.other_bucket + k.outside_prefix == 0 {
            return Ok(());
        }
        Err(InventoryError::format(
            Path::new(&self.about.path),
            format!(
                "no row is of {:?}{}: {} rows of other buckets or containers {:?}, {} outside the prefix",
                self.scope.bucket,
                if self.scope.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" under {:?}", self.scope.prefix)
                },
                k.other_bucket,
                self.others,
                k.outside_prefix
            ),
        ))
    }

    /// What the report leaves out: its rule's filters, and one line per
    /// column a check needs that the report lacks (of the data files read
    /// so far).
    pub fn notes(&self) -> impl Iterator<Item = &str> {
        self.notes.iter().map(String::as_str)
    }

    /// Whether every data file read carried user metadata (Azure's
    /// Metadata column): the metadata rules were applied to every row.
    pub fn carries_metadata(&self) -> bool {
        self.metadata
    }

    /// The next entry in scope, or the end.
    pub fn next_entry(&mut self) -> Option<Result<Listed, InventoryError>> {
        loop {
            if self.table.is_none() {
                let file = self.files.next()?;
                match Table::open(&file, self.about.flavor) {
                    Ok(t) => {
                        self.notes.extend(t.1.unseen(self.about.flavor));
                        self.metadata &= t.1.metadata.is_some();
                        self.table = Some(t);
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            let (table, cols) = self.table.as_mut()?;
            match table.next_row() {
                None => self.table = None,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(cells)) => {
                    let at = |what: String| InventoryError::Row {
                        path: table.path().to_owned(),
                        row: table.row(),
                        what,
                    };
                    match take(
                        &cells,
                        cols,
                        self.about.flavor,
                        &self.scope,
                        &mut self.skipped,
                        &mut self.others,
                    ) {
                        Ok(Some(e)) => {
                            self.taken += 1;
                            return Some(Ok(e));
                        }
                        Ok(None) => {}
                        Err(what) => return Some(Err(at(what))),
                    }
                }
            }
        }
    }
}

/// The row as an entry of the scope; `None` when skipped (and counted).
fn take(
    cells: &[Cell],
    c: &Columns,
    flavor: Flavor,
    scope: &Scope,
    skipped: &mut Skipped,
    others: &mut std::collections::BTreeSet<String>,
) -> Result<Option<Listed>, String> {
    // Azure writes "Null" where a field has no value; a key is taken as
    // written.
    let get = |i: Option<usize>| {
        i.and_then(|i| cells.get(i))
            .filter(|c| !(c.is_missing() || flavor == Flavor::Azure && c.is_null_word()))
    };
    let full = cells
        .get(c.key)
        .filter(|c| !c.is_missing())
        .and_then(Cell::text)
        .ok_or_else(|| "no key".to_owned())?;
    let key = match (flavor, c.encoded_keys) {
        (Flavor::S3, true) => decode_key(&full)?,
        _ => full,
    };
    let (bucket, key) = match flavor {
        Flavor::S3 => (get(c.bucket).and_then(Cell::text), key),
        Flavor::Azure => match key.split_once('/') {
            Some((container, blob)) => (Some(container.to_owned()), blob.to_owned()),
            None => return Err(format!("name {key:?} has no container")),
        },
    };
    if let Some(b) = bucket
        && b != scope.bucket
    {
        skipped.other_bucket += 1;
        if others.len() < 3 {
            others.insert(b);
        }
        return Ok(None);
    }
    let Some(rel) = scope.relative(&key) else {
        skipped.outside_prefix += 1;
        return Ok(None);
    };
    if get(c.delete_marker).and_then(Cell::flag) == Some(true) {
        skipped.delete_markers += 1;
        return Ok(None);
    }
    if get(c.deleted).and_then(Cell::flag) == Some(true) {
        skipped.deleted += 1;
        return Ok(None);
    }
    if get(c.folder).and_then(Cell::flag) == Some(true) {
        skipped.folders += 1;
        return Ok(None);
    }
    let size = get(Some(c.size))
        .ok_or_else(|| format!("{rel:?} has no size"))?
        .count()
        .ok_or_else(|| format!("{rel:?}: size is not a byte count"))?;
    let modified = get(Some(c.modified))
        .ok_or_else(|| format!("{rel:?} has no modification time"))?
        .time()
        .ok_or_else(|| format!("{rel:?}: modification time not understood"))?;
    let mut e = Listed::new(rel.to_owned(), size, modified);
    e.etag = get(c.etag).and_then(Cell::text);
    let mut d = Details {
        content_md5: get(c.md5).and_then(Cell::text).map(|m| md5_as_base64(&m)),
        class: get(c.class).and_then(Cell::text),
        // S3 Intelligent-Tiering's archive tiers need a restore too.
        archive_status: get(c.archive_status).and_then(Cell::text).or_else(|| {
            get(c.tiering)
                .and_then(Cell::text)
                .filter(|t| t.ends_with("ARCHIVE_ACCESS"))
        }),
        blob_type: get(c.blob_type).and_then(Cell::text),
        snapshot: get(c.snapshot).and_then(Cell::text),
        version: get(c.version).and_then(Cell::text),
        ..Details::default()
    };
    if let Some(current) = get(c.current).and_then(Cell::flag) {
        d.current = current;
    }
    if let Some(i) = c.metadata {
        d.metadata = Some(match get(Some(i)).and_then(Cell::text) {
            None => Vec::new(),
            Some(m) => {
                metadata(&m).ok_or_else(|| format!("{rel:?}: metadata {m:?} not understood"))?
            }
        });
    }
    if flavor == Flavor::Azure {
        e.etag = None; // an Azure ETag is no MD5
    }
    e.details = d;
    Ok(Some(e))
}

/// An S3 Inventory CSV key: URL-encoded with `+` for a space.
fn decode_key(k: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(&k.replace('+', " "))
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("key {k:?} does not decode to UTF-8"))
}

/// Content-MD5 as base64, whether the report wrote base64 or hex.
fn md5_as_base64(m: &str) -> String {
    let hex = m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return m.to_owned();
    }
    let bytes: Vec<u8> = (0..16)
        .filter_map(|i| u8::from_str_radix(&m[2 * i..2 * i + 2], 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Azure's Metadata column: a JSON object of names and values.
fn metadata(m: &str) -> Option<Vec<(String, String)>> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(m).ok()?;
    Some(
        v.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
