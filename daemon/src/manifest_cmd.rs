//! `passeur manifest export` and `passeur manifest diff`: the manifest in
//! forms standard tools read, and the keys two manifests disagree on.
//! State directories are opened read-only, so both work while the service
//! runs. Exit 0 (diff: same), 1 (diff: different), 2 could not run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use passeur_core::manifest::diff::{DiffKind, diff};
use passeur_core::manifest::{Manifest, ObjectRecord};
use serde::{Deserialize, Serialize};

use crate::cli::{DiffArgs, ExportArgs, ExportFormat};

/// Exit codes of these commands, as `diff(1)`'s: the table in `exit.rs`,
/// where 0 means same (or exported) and 1 that the manifests differ.
const SAME: u8 = crate::exit::OK;
const DIFFERENT: u8 = crate::exit::INCOMPLETE;

/// One exported object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Row {
    key: String,
    size: u64,
    blake3: String,
    source_etag: Option<String>,
    target_etag: Option<String>,
}

impl Row {
    /// The exported row of one record.
    pub(crate) fn of(key: String, rec: ObjectRecord) -> Self {
        Row {
            key,
            size: rec.source.size,
            blake3: rec.blake3.to_hex(),
            source_etag: rec.source.etag,
            target_etag: rec.target_etag,
        }
    }
}

fn could_not_run(msg: &str) -> u8 {
    crate::fail(crate::exit::TROUBLE, msg)
}

/// A key as `b3sum` writes it: names holding a backslash or a newline are
/// escaped and the line starts with a backslash.
fn b3sum_line(hex: &str, key: &str) -> String {
    if key.contains(['\\', '\n', '\r']) {
        let k = key
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{hex}  {k}")
    } else {
        format!("{hex}  {key}")
    }
}

/// `passeur manifest export`.
pub fn export(args: &ExportArgs) -> u8 {
    match write_export(args) {
        Ok(()) => SAME,
        Err(e) => could_not_run(&e),
    }
}

fn write_export(args: &ExportArgs) -> Result<(), String> {
    let manifest = Manifest::open_read_only(&args.state).map_err(|e| e.to_string())?;
    let rows = manifest.objects().map(|item| {
        item.map(|(key, rec)| Row::of(key, rec))
            .map_err(|e| e.to_string())
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| format!("writing: {e}");
    match args.format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for row in rows {
                w.serialize(row?).map_err(|e| format!("csv: {e}"))?;
            }
            w.flush().map_err(io)?;
        }
        ExportFormat::Jsonl => {
            for row in rows {
                let j = serde_json::to_string(&row?).map_err(|e| e.to_string())?;
                writeln!(out, "{j}").map_err(io)?;
            }
            out.flush().map_err(io)?;
        }
        ExportFormat::B3sum => {
            for row in rows {
                let row = row?;
                writeln!(out, "{}", b3sum_line(&row.blake3, &row.key)).map_err(io)?;
            }
            out.flush().map_err(io)?;
        }
    }
    Ok(())
}

/// A manifest to compare: a state directory, or the rows of an export.
enum Side {
    State(Manifest),
    Rows(Vec<Row>),
}

fn load(path: &Path) -> Result<Side, String> {
    if path.is_dir() {
        return Manifest::open_read_only(path)
            .map(Side::State)
            .map_err(|e| e.to_string());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::new(file);
    let head = String::from_utf8_lossy(
        reader
            .fill_buf()
            .map_err(|e| format!("{}: {e}", path.display()))?,
    )
    .into_owned();
    let first = head.bytes().next();
    let b3sum_like = head
        .lines()
        .next()
        .is_some_and(|l| l.trim_start_matches('\\').get(64..66) == Some("  "));
    if b3sum_like {
        return Err(format!(
            "{}: a b3sum export has no sizes; compare jsonl or csv exports",
            path.display()
        ));
    }
    let rows: Vec<Row> = if first == Some(b'{') {
        reader
            .lines()
            .enumerate()
            .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .map(|(i, l)| {
                let l = l.map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&l)
                    .map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))
            })
            .collect::<Result<_, _>>()?
    } else {
        csv::Reader::from_reader(reader)
            .deserialize()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| format!("{}: record {}: {e}", path.display(), i + 1)))
            .collect::<Result<_, _>>()?
    };
    Ok(Side::Rows(rows))
}

fn rows_of(side: Side) -> Result<BTreeMap<String, (u64, String)>, String> {
    match side {
        Side::Rows(rows) => {
            let mut out = BTreeMap::new();
            for r in rows {
                if out.insert(r.key.clone(), (r.size, r.blake3)).is_some() {
                    return Err(format!("key {:?} appears twice in an export", r.key));
                }
            }
            Ok(out)
        }
        Side::State(m) => m
            .objects()
            .map(|i| {
                i.map(|(k, r)| (k, (r.source.size, r.blake3.to_hex())))
                    .map_err(|e| e.to_string())
            })
            .collect(),
    }
}

/// `passeur manifest diff`.
pub fn diff_command(args: &DiffArgs) -> u8 {
    let (a, b) = match (load(&args.a), load(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return could_not_run(&e),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    let mut print = |key: &str, kind: DiffKind| -> std::io::Result<()> {
        count += 1;
        if args.json {
            let v = serde_json::json!({ "key": key, "kind": kind });
            writeln!(out, "{v}")
        } else {
            let k = match kind {
                DiffKind::OnlyInA => "only-in-a",
                DiffKind::OnlyInB => "only-in-b",
                DiffKind::Differs => "differs",
            };
            writeln!(out, "{k}\t{key}")
        }
    };
    let result: Result<String, String> = match (a, b) {
        (Side::State(a), Side::State(b)) => diff(&a, &b, |k, kind| {
            print(k, kind).map_err(|source| passeur_core::Error::Io {
                what: "write the diff".into(),
                source,
            })
        })
        .map(|s| {
            format!(
                "{} of 256 level-1 nodes and {} of 65,536 buckets differed",
                s.nodes_compared, s.buckets_compared
            )
        })
        .map_err(|e| e.to_string()),
        (a, b) => (|| {
            let (a, b) = (rows_of(a)?, rows_of(b)?);
            let mut ib = b.iter().peekable();
            for (k, va) in &a {
                while let Some((kb, _)) = ib.next_if(|(kb, _)| *kb < k) {
                    print(kb, DiffKind::OnlyInB).map_err(|e| e.to_string())?;
                }
                match ib.next_if(|(kb, _)| *kb == k) {
                    Some((_, vb)) if vb != va => print(k, DiffKind::Differs),
                    Some(_) => Ok(()),
                    None => print(k, DiffKind::OnlyInA),
                }
                .map_err(|e| e.to_string())?;
            }
            for (kb, _) in ib {
                print(kb, DiffKind::OnlyInB).map_err(|e| e.to_string())?;
            }
            Ok(format!("compared {} and {} keys", a.len(), b.len()))
        })(),
    };
    if let Err(e) = out.flush() {
        return could_not_run(&format!("writing: {e}"));
    }
    match result {
        Err(e) => could_not_run(&e),
        Ok(how) => {
            eprintln!("passeur: {count} keys differ ({how})");
            if count > 0 { DIFFERENT } else { SAME }
        }
    }
}
