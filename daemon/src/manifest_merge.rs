//! `passeur manifest merge`: the manifests of every shard of one dataset
//! as the dataset's one Merkle root (equal to the root an unsharded
//! manifest of the same objects has) and, on request, one export in key
//! order. State directories are opened read-only. Exit 0 merged, 2 could
//! not run (the reason names the state directory or the missing shard).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use passeur_core::base::shard::Shard;
use passeur_core::manifest::{Manifest, ObjectRecord, merge, shard_of};

use crate::cli::MergeArgs;
use crate::manifest_cmd::Row;

/// `passeur manifest merge`.
pub fn merge_command(args: &MergeArgs) -> u8 {
    match run(args) {
        Ok(()) => crate::exit::OK,
        Err(e) => crate::fail(crate::exit::TROUBLE, &e),
    }
}

fn run(args: &MergeArgs) -> Result<(), String> {
    let manifests = args
        .states
        .iter()
        .map(|p| Manifest::open_read_only(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge(&manifests).map_err(|e| e.to_string())?;
    if let Some(path) = &args.export {
        let shards = manifests
            .iter()
            .map(shard_of)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        export(&manifests, &shards, path)?;
    }
    if args.json {
        let v = serde_json::json!({
            "root": merged.root.to_hex(),
            "shards": merged.shards,
            "objects": merged.objects,
        });
        println!("{v}");
    } else {
        println!(
            "dataset of {} shards: {} objects, Merkle root {}",
            merged.shards,
            merged.objects,
            merged.root.to_hex()
        );
    }
    Ok(())
}

/// Every shard's own records, merged in key order, one JSON line each.
fn export(manifests: &[Manifest], shards: &[Shard], path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut iters: Vec<_> = manifests.iter().map(Manifest::objects).collect();
    // The next row of each shard, and a heap of their keys.
    let mut pending: Vec<Option<Row>> = vec![None; manifests.len()];
    let mut heads = BinaryHeap::new();
    for i in 0..manifests.len() {
        advance(&mut iters[i], &shards[i], i, &mut pending, &mut heads)?;
    }
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    while let Some(Reverse((_, i))) = heads.pop() {
        if let Some(row) = pending[i].take() {
            let line = serde_json::to_string(&row).map_err(|e| e.to_string())?;
            writeln!(out, "{line}").map_err(io)?;
        }
        advance(&mut iters[i], &shards[i], i, &mut pending, &mut heads)?;
    }
    out.flush().map_err(io)
}

/// Move shard `i` to its next record of a key it owns (a record of a key
/// it no longer owns is another shard's).
fn advance(
    iter: &mut impl Iterator<Item = Result<(String, ObjectRecord), passeur_core::base::error::Error>>,
    shard: &Shard,
    i: usize,
    pending: &mut [Option<Row>],
    heads: &mut BinaryHeap<Reverse<(String, usize)>>,
) -> Result<(), String> {
    for item in iter.by_ref() {
        let (key, rec) = item.map_err(|e| e.to_string())?;
        if shard.owns(&key) {
            heads.push(Reverse((key.clone(), i)));
            pending[i] = Some(Row::of(key, rec));
            break;
        }
    }
    Ok(())
}
