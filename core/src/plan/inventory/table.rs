//! One data file of an inventory, row by row, as cells named by their
//! columns: CSV (plain or gzip; S3's without a header, its columns from
//! the manifest) or Parquet.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, reader::RowIter};

use super::{DataFile, Flavor, Format, InventoryError};

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Null,
    Text(String),
    Int(i64),
    Millis(i64),
    Bool(bool),
}

impl Cell {
    /// Null, or empty text.
    pub(super) fn is_missing(&self) -> bool {
        match self {
            Self::Null => true,
            Self::Text(t) => t.is_empty(),
            _ => false,
        }
    }

    /// Azure's word for no value.
    pub(super) fn is_null_word(&self) -> bool {
        matches!(self, Self::Text(t) if t == "Null")
    }

    pub(super) fn text(&self) -> Option<String> {
        match self {
            Self::Text(t) => Some(t.clone()),
            Self::Int(i) => Some(i.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Millis(_) | Self::Null => None,
        }
    }

    pub(super) fn count(&self) -> Option<u64> {
        match self {
            Self::Int(i) => u64::try_from(*i).ok(),
            Self::Text(t) => t.trim().parse().ok(),
            _ => None,
        }
    }

    pub(super) fn flag(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::Text(t) if t.eq_ignore_ascii_case("true") => Some(true),
            Self::Text(t) if t.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// A time: milliseconds since 1970, RFC 3339, or RFC 1123.
    pub(super) fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Millis(ms) | Self::Int(ms) => DateTime::from_timestamp_millis(*ms),
            Self::Text(t) => DateTime::parse_from_rfc3339(t.trim())
                .or_else(|_| DateTime::parse_from_rfc2822(t.trim()))
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        }
    }
}

/// Where each field is, by column number.
#[derive(Debug, Clone, Default)]
pub(super) struct Columns {
    pub key: usize,
    pub size: usize,
    pub modified: usize,
    pub bucket: Option<usize>,
    pub etag: Option<usize>,
    pub md5: Option<usize>,
    pub class: Option<usize>,
    pub archive_status: Option<usize>,
    pub tiering: Option<usize>,
    pub blob_type: Option<usize>,
    pub snapshot: Option<usize>,
    pub version: Option<usize>,
    pub current: Option<usize>,
    pub delete_marker: Option<usize>,
    pub deleted: Option<usize>,
    pub folder: Option<usize>,
    pub metadata: Option<usize>,
    /// S3 Inventory CSV keys are URL-encoded.
    pub encoded_keys: bool,
}

/// `Last-Modified`, `LastModifiedDate`, `last_modified_date` alike (and
/// a first column after a byte-order mark).
fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' ' | '\u{feff}'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl Columns {
    fn of(
        names: &[String],
        flavor: Flavor,
        format: Format,
        path: &Path,
    ) -> Result<Self, InventoryError> {
        let names: Vec<String> = names.iter().map(|n| norm(n)).collect();
        let find = |want: &[&str]| names.iter().position(|n| want.contains(&n.as_str()));
        let need = |want: &[&str], shown: &str| {
            find(want).ok_or_else(|| {
                InventoryError::format(
                    path,
                    format!(
                        "no {shown} column: the plan needs it (columns: {})",
                        names.join(", ")
                    ),
                )
            })
        };
        let key = match flavor {
            Flavor::S3 => need(&["key"], "Key")?,
            Flavor::Azure => need(&["name"], "Name")?,
        };
        Ok(Self {
            key,
            size: need(&["size", "contentlength"], "Size / Content-Length")?,
            modified: need(
                &["lastmodifieddate", "lastmodified"],
                "LastModifiedDate / Last-Modified",
            )?,
            bucket: find(&["bucket"]),
            etag: find(&["etag"]),
            md5: find(&["contentmd5"]),
            class: find(&["storageclass", "accesstier"]),
            archive_status: find(&["archivestatus"]),
            tiering: find(&["intelligenttieringaccesstier"]),
            blob_type: find(&["blobtype"]),
            snapshot: find(&["snapshot"]),
            version: find(&["versionid"]),
            current: find(&["islatest", "iscurrentversion"]),
            delete_marker: find(&["isdeletemarker"]),
            deleted: find(&["deleted"]),
            folder: find(&["hdiisfolder"]),
            metadata: find(&["metadata"]),
            encoded_keys: flavor == Flavor::S3 && format == Format::Csv,
        })
    }

    /// The checks this report's columns cannot feed.
    pub(super) fn unseen(&self, flavor: Flavor) -> Vec<String> {
        let mut out = Vec::new();
        let mut lacks = |col: Option<usize>, what: &str| {
            if col.is_none() {
                out.push(format!("the inventory has no {what}"));
            }
        };
        match flavor {
            Flavor::S3 => {
                lacks(self.class, "StorageClass column: Glacier objects not found");
                lacks(self.etag, "ETag column: duplicates not estimated");
            }
            Flavor::Azure => {
                lacks(
                    self.class,
                    "AccessTier column: archive-tier blobs not found",
                );
                lacks(
                    self.blob_type,
                    "BlobType column: append and page blobs not found",
                );
                lacks(self.md5, "Content-MD5 column: duplicates not estimated");
                lacks(self.metadata, "Metadata column: metadata not checked");
            }
        }
        out
    }
}

/// Whose inventory a Parquet file is, by its columns.
pub(super) fn parquet_flavor(path: &Path) -> Result<Flavor, InventoryError> {
    let names = parquet_names(&parquet_reader(path)?);
    if names.iter().any(|n| norm(n) == "key") {
        Ok(Flavor::S3)
    } else if names.iter().any(|n| norm(n) == "name") {
        Ok(Flavor::Azure)
    } else {
        Err(InventoryError::format(
            path,
            format!(
                "neither a key nor a Name column (columns: {})",
                names.join(", ")
            ),
        ))
    }
}

fn parquet_reader(path: &Path) -> Result<SerializedFileReader<File>, InventoryError> {
    let f = File::open(path).map_err(|source| InventoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    SerializedFileReader::new(f).map_err(|e| {
        InventoryError::format(path, format!("not a Parquet file passeur can read: {e}"))
    })
}

fn parquet_names(reader: &SerializedFileReader<File>) -> Vec<String> {
    reader
        .metadata()
        .file_metadata()
        .schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect()
}

enum Rows {
    Csv(csv::Reader<Box<dyn Read + Send>>, csv::StringRecord),
    Parquet(RowIter<'static>),
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Csv(..) => "Csv",
            Self::Parquet(_) => "Parquet",
        })
    }
}

/// An open data file.
#[derive(Debug)]
pub(super) struct Table {
    path: PathBuf,
    rows: Rows,
    row: u64,
    /// Fields of every CSV row (the header's or the schema's count).
    width: usize,
}

impl Table {
    /// Opens a data file and finds its columns.
    pub(super) fn open(file: &DataFile, flavor: Flavor) -> Result<(Self, Columns), InventoryError> {
        let path = &file.path;
        let io = |source| InventoryError::Io {
            path: path.clone(),
            source,
        };
        let bad = |what: String| InventoryError::format(path, what);
        match file.format {
            Format::Parquet => {
                let reader = parquet_reader(path)?;
                let names = parquet_names(&reader);
                let cols = Columns::of(&names, flavor, Format::Parquet, path)?;
                let rows = Rows::Parquet(RowIter::from_file_into(Box::new(reader)));
                Ok((
                    Self {
                        path: path.clone(),
                        rows,
                        row: 0,
                        width: 0,
                    },
                    cols,
                ))
            }
            Format::Csv => {
                let mut f = BufReader::new(File::open(path).map_err(io)?);
                let gz = {
                    use std::io::BufRead as _;
                    f.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b])
                };
                let input: Box<dyn Read + Send> = if gz {
                    Box::new(flate2::bufread::MultiGzDecoder::new(f))
                } else {
                    Box::new(f)
                };
                let mut csv = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(input);
                let mut table = Self {
                    path: path.clone(),
                    rows: Rows::Csv(
                        csv::Reader::from_reader(Box::new(std::io::empty())),
                        csv::StringRecord::new(),
                    ),
                    row: 0,
                    width: 0,
                };
                let names: Vec<String> = match &file.schema {
                    Some(s) => s.to_vec(),
                    None => {
                        let mut header = csv::StringRecord::new();
                        match csv.read_record(&mut header) {
                            Ok(true) => {}
                            Ok(false) => return Err(bad("empty: no header row".into())),
                            Err(e) => return Err(bad(format!("header row: {e}"))),
                        }
                        table.row = 1;
                        let names: Vec<String> = header.iter().map(str::to_owned).collect();
                        if flavor == Flavor::S3 || !names.iter().any(|n| norm(n) == "name") {
                            return Err(bad(
                                "a CSV without a header row: give the inventory's manifest (manifest.json), which names its columns".into(),
                            ));
                        }
                        names
                    }
                };
                let cols = Columns::of(&names, flavor, Format::Csv, path)?;
                table.width = names.len();
                table.rows = Rows::Csv(csv, csv::StringRecord::new());
                Ok((table, cols))
            }
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The number of the row last read.
    pub(super) fn row(&self) -> u64 {
        self.row
    }

    /// The next row's cells.
    pub(super) fn next_row(&mut self) -> Option<Result<Vec<Cell>, InventoryError>> {
        let cells = match &mut self.rows {
            Rows::Csv(csv, record) => loop {
                let read = csv.read_record(record);
                self.row += 1;
                match read {
                    Ok(false) => return None,
                    Err(e) => return Some(Err(self.error(e.to_string()))),
                    // Blank lines (S3 ends some files with them).
                    Ok(true) if record.len() == 1 && record[0].is_empty() => {}
                    Ok(true) if record.len() != self.width => {
                        let what = format!(
                            "{} fields where the columns are {}",
                            record.len(),
                            self.width
                        );
                        return Some(Err(self.error(what)));
                    }
                    Ok(true) => break record.iter().map(|t| Cell::Text(t.to_owned())).collect(),
                }
            },
            Rows::Parquet(rows) => {
                let next = rows.next()?;
                self.row += 1;
                match next {
                    Err(e) => return Some(Err(self.error(e.to_string()))),
                    Ok(r) => r.get_column_iter().map(|(_, f)| cell(f)).collect(),
                }
            }
        };
        Some(Ok(cells))
    }

    fn error(&self, what: String) -> InventoryError {
        InventoryError::Row {
            path: self.path.clone(),
            row: self.row,
            what,
        }
    }
}

fn cell(f: &Field) -> Cell {
    match f {
        Field::Null => Cell::Null,
        Field::Bool(b) => Cell::Bool(*b),
        Field::Byte(i) => Cell::Int(i64::from(*i)),
        Field::Short(i) => Cell::Int(i64::from(*i)),
        Field::Int(i) => Cell::Int(i64::from(*i)),
        Field::Long(i) => Cell::Int(*i),
        Field::UByte(i) => Cell::Int(i64::from(*i)),
        Field::UShort(i) => Cell::Int(i64::from(*i)),
        Field::UInt(i) => Cell::Int(i64::from(*i)),
        Field::ULong(i) => i64::try_from(*i).map_or(Cell::Null, Cell::Int),
        Field::TimestampMillis(ms) => Cell::Millis(*ms),
        Field::TimestampMicros(us) => Cell::Millis(us.div_euclid(1000)),
        Field::Str(s) => Cell::Text(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Cell::Text(s.to_owned()),
            Err(_) => Cell::Null,
        },
        other => Cell::Text(other.to_string()),
    }
}
