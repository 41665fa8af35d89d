//! `passeur demo`: the embedded default job. Generates a deterministic sample
//! dataset in a local directory (small files, a few multipart-sized ones,
//! duplicates, awkward keys) and replicates it to another local directory.

use std::path::Path;

use anyhow::Context;

use crate::cli::{DemoArgs, Output, SyncArgs};
use crate::{exit, fail};

/// Deterministic bytes: BLAKE3 in XOF mode keyed by a label.
fn sample(label: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key("passeur demo data")
        .update(label.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Create the sample dataset under `dir` unless it is already there.
pub fn create_dataset(dir: &Path) -> anyhow::Result<(usize, u64)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..200 {
        files.push((
            format!("small/{:03}/object-{i}.txt", i % 10),
            sample(&format!("s{i}"), 1000 + i * 37),
        ));
    }
    for i in 0..3 {
        files.push((
            format!("large/blob-{i}.bin"),
            sample(&format!("l{i}"), 24 * 1024 * 1024 + i * 4097),
        ));
    }
    // Duplicate content under other keys: arrives by server-side copy.
    for i in 0..20 {
        files.push((
            format!("copies/object-{i}.txt"),
            sample(&format!("s{i}"), 1000 + i * 37),
        ));
    }
    files.push((
        "odd keys/with space + plus = equals %.txt".into(),
        b"hello".to_vec(),
    ));
    files.push((
        "odd keys/unicodé/ファイル.json".into(),
        b"{\"ok\":true}".to_vec(),
    ));
    files.push(("empty.bin".into(), Vec::new()));
    let mut bytes = 0;
    for (key, data) in &files {
        let path = dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        if !path.exists() {
            std::fs::write(&path, data).with_context(|| format!("write {}", path.display()))?;
        }
        bytes += data.len() as u64;
    }
    Ok((files.len(), bytes))
}

/// Run `passeur demo`: the sample dataset, then two passes over it.
pub(crate) async fn run_demo(args: DemoArgs) -> u8 {
    let src = args.dir.join("source");
    let (n, bytes) = match create_dataset(&src) {
        Ok(v) => v,
        Err(e) => return fail(exit::SOFTWARE, &format!("{e:#}")),
    };
    println!(
        "sample dataset: {n} objects, {bytes} bytes in {}",
        src.display()
    );
    let mut code = exit::OK;
    for round in [
        "first pass (copies everything)",
        "second pass (nothing changed)",
    ] {
        println!("== {round}");
        code = crate::sync_cmd::sync(SyncArgs {
            source: src.to_string_lossy().into_owned(),
            target: args.dir.join("target").to_string_lossy().into_owned(),
            state: args.dir.join("state"),
            config: None,
            dry_run: false,
            concurrency: None,
            bandwidth_limit: None,
            listing_concurrency: None,
            include: Vec::new(),
            exclude: Vec::new(),
            shard: None,
            shard_ranges: None,
            delete: false,
            max_delete_fraction: 0.1,
            trash_prefix: None,
            changes: None,
            output: Output::Auto,
        })
        .await;
        if code != exit::OK {
            break;
        }
    }
    code
}
