//! `passeur manifest ranges`: the key ranges of range shards, learned from
//! the keys state directories recorded (what the previous listing found).
//! The keys are read in order twice (count, then cut), merged across the
//! directories without holding them: memory stays flat at any count. Given
//! shards' directories, every shard must be there once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use passeur_core::base::error::Error;
use passeur_core::base::ranges::Ranges;
use passeur_core::base::shard::Shard;
use passeur_core::manifest::{Manifest, merge, shard_of};

use crate::cli::RangesArgs;

/// `passeur manifest ranges`.
pub fn command(args: &RangesArgs) -> u8 {
    match run(args) {
        Ok(()) => crate::exit::OK,
        Err(e) => crate::fail(crate::exit::TROUBLE, &e),
    }
}

fn run(args: &RangesArgs) -> Result<(), String> {
    let manifests = args
        .states
        .iter()
        .map(|p| Manifest::open_read_only(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    // A shard's directory gives the keys it owns; an unsharded one, all.
    let owners = manifests
        .iter()
        .map(|m| match m.recorded_shard() {
            Ok(Some(s)) if !s.is_empty() => shard_of(m).map(Some),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    // Every shard's directory, each once, or the ranges would be learned
    // from part of the keys (merge refuses one missing, twice or mixed).
    if owners.iter().any(Option::is_some) {
        merge(&manifests).map_err(|e| e.to_string())?;
    }
    let total = keys(&manifests, &owners).try_fold(0u64, |n, k| k.map(|_| n + 1));
    let total = total.map_err(|e| e.to_string())?;
    let (ranges, counts) =
        Ranges::learn(keys(&manifests, &owners), total, args.shards).map_err(|e| e.to_string())?;
    let learned_from = args
        .states
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let file = ranges.to_file(counts.clone(), learned_from);
    let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    write_atomically(&args.out, text.as_bytes())?;
    println!(
        "{} ranges of {total} keys (ranges {}) written to {}: keys per shard {}",
        ranges.shards(),
        ranges.digest(),
        args.out.display(),
        counts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Write `bytes` to `path` whole or not at all (a file beside it, synced,
/// then renamed over it).
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// The keys of every manifest (of a shard: those it owns), in increasing
/// order, each once.
fn keys<'a>(
    manifests: &'a [Manifest],
    owners: &'a [Option<Shard>],
) -> impl Iterator<Item = Result<String, Error>> + 'a {
    let mut iters: Vec<_> = manifests
        .iter()
        .zip(owners)
        .map(|(m, owner)| {
            m.objects().filter_map(move |r| match r {
                Ok((k, _)) if owner.as_ref().is_none_or(|s| s.owns(&k)) => Some(Ok(k)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
        })
        .collect();
    let mut heap = BinaryHeap::new();
    let mut failed = None;
    for (i, it) in iters.iter_mut().enumerate() {
        match it.next() {
            Some(Ok(k)) => heap.push(Reverse((k, i))),
            Some(Err(e)) => failed = Some(e),
            None => {}
        }
    }
    let mut last: Option<String> = None;
    std::iter::from_fn(move || {
        if let Some(e) = failed.take() {
            return Some(Err(e));
        }
        loop {
            let Reverse((key, i)) = heap.pop()?;
            match iters[i].next() {
                Some(Ok(k)) => heap.push(Reverse((k, i))),
                Some(Err(e)) => failed = Some(e),
                None => {}
            }
            // The same key in two directories (an unsharded one and a
            // shard's) counts once.
            if last.as_deref() != Some(key.as_str()) {
                last = Some(key.clone());
                return Some(Ok(key));
            }
            if let Some(e) = failed.take() {
                return Some(Err(e));
            }
        }
    })
}
