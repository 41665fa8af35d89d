//! The core's imports point down: each folder of `core/src` may use only
//! the folders below it in the flow, and the stages inside `transfer/`
//! only the stages before them. A `use crate::…` that points up (an import
//! circle in the making) fails here, naming the file and the line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

/// The folders of `core/src`, lowest first.
const LAYERS: [&str; 10] = [
    "base", "content", "manifest", "stores", "scan", "feed", "transfer", "verify", "plan", "sync",
];

/// The stages of `transfer/`, lowest first (`mod.rs` orchestrates them all).
const STAGES: [&str; 12] = [
    "attrs", "gate", "ctx", "plan", "read", "adopt", "parts", "record", "starts", "dedup",
    "resume", "mod",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every `crate::<name>` named in `text` (imports and paths alike), with
/// its line number.
fn uses<'a>(text: &'a str, names: &'a [&'a str]) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    text.lines().enumerate().flat_map(move |(n, line)| {
        names.iter().filter_map(move |name| {
            let code = line.split("//").next().unwrap_or("");
            code.contains(&format!("crate::{name}::"))
                .then_some((n + 1, *name))
        })
    })
}

#[test]
fn core_imports_point_down() -> Result<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src)?.to_string_lossy().into_owned();
        let Some((folder, rest)) = rel.split_once('/') else {
            continue; // lib.rs
        };
        let layer = LAYERS
            .iter()
            .position(|l| *l == folder)
            .with_context(|| format!("core/src/{folder}: not in LAYERS"))?;
        let text = std::fs::read_to_string(file)?;
        for (line, used) in uses(&text, &LAYERS) {
            let to = LAYERS.iter().position(|l| *l == used).unwrap_or(0);
            if to > layer {
                wrong.push(format!("core/src/{rel}:{line} ({folder}) uses {used}"));
            }
        }
        if folder == "transfer" {
            let stage = rest.trim_end_matches(".rs");
            let me = STAGES
                .iter()
                .position(|s| *s == stage)
                .with_context(|| format!("core/src/{rel}: not in STAGES"))?;
            let names: Vec<String> = STAGES.iter().map(|s| format!("transfer::{s}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            for (line, used) in uses(&text, &names) {
                let to = names.iter().position(|s| *s == used).unwrap_or(0);
                if to > me {
                    wrong.push(format!("core/src/{rel}:{line} ({stage}) uses {used}"));
                }
            }
        }
    }
    ensure!(files.len() > 30, "read only {} files", files.len());
    ensure!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
    Ok(())
}
