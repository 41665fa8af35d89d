//! What `bench-perf` writes and reads around the timed runs: the
//! workloads' bytes, seeding Azurite, the independent read-back of a
//! target, and the wrappers of a timed command (the servers' CPU line,
//! `perf record`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use passeur_bench::measure::{Cost, wrap};

/// Key → (size, BLAKE3) of what a target must hold.
pub type Expect = BTreeMap<String, (u64, [u8; 32])>;

/// Deterministic bytes of object `i` of a workload.
pub fn bytes(seed: &str, i: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Note `b` as what `key` must hold.
pub fn expect_of(e: &mut Expect, key: &str, b: &[u8]) {
    e.insert(
        key.to_owned(),
        (b.len() as u64, *blake3::hash(b).as_bytes()),
    );
}

/// One line on stderr per timed run: the program, wall seconds, and the
/// CPU seconds of each server meanwhile.
pub fn tracing_line(c: &Command, cost: &Cost, s3: f64, az: f64) {
    let prog = Path::new(c.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let window = match cost.window {
        0 => String::new(),
        n => format!("; its window reached {n} objects"),
    };
    eprintln!(
        "  {prog}: {:.2} s, {:.2} CPU-s; s3s-fs {s3:.2} CPU-s, Azurite {az:.2} CPU-s, their busiest thread {:.2} CPU-s ({:.0} % of the run); machine {:.0} % busy{window}",
        cost.wall,
        cost.cpu,
        cost.server_thread,
        cost.server_thread / cost.wall.max(1e-9) * 100.0,
        cost.busy * 100.0
    );
}

/// With `BENCH_PROFILE=DIR`, `c` runs under `perf record` (call graphs,
/// one file per run in DIR, named after the state directory's run).
pub fn profiled(c: Command, state: &Path) -> Command {
    let Some(dir) = std::env::var_os("BENCH_PROFILE") else {
        return c;
    };
    let name = state.file_name().unwrap_or_default().to_string_lossy();
    let mut p = Command::new("perf");
    p.args(["record", "-F", "499", "-g", "-o"])
        .arg(Path::new(&dir).join(format!("{name}.data")))
        .arg("--");
    wrap(&mut p, &c);
    p
}

pub async fn put(store: &dyn ObjectStore, key: &str, b: &[u8]) -> Result<()> {
    let path = ObjPath::parse(key)?;
    if b.len() <= 8 << 20 {
        store.put(&path, PutPayload::from(b.to_vec())).await?;
        return Ok(());
    }
    let mut w = WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await?, 8 << 20);
    w.write(b);
    w.finish().await?;
    Ok(())
}

pub async fn read_store(store: &dyn ObjectStore, full: bool) -> Result<Expect> {
    let mut got = Expect::new();
    let mut list = store.list(None);
    let mut metas = Vec::new();
    while let Some(m) = list.next().await {
        metas.push(m?);
    }
    let reads = futures::stream::iter(metas).map(|m| async move {
        let hash = if full {
            let b = store.get(&m.location).await?.bytes().await?;
            ensure!(b.len() as u64 == m.size, "{}: short read", m.location);
            *blake3::hash(&b).as_bytes()
        } else {
            [0; 32]
        };
        Ok::<_, anyhow::Error>((m.location.to_string(), (m.size, hash)))
    });
    let mut reads = reads.buffer_unordered(16);
    while let Some(r) = reads.next().await {
        let (k, v) = r?;
        got.insert(k, v);
    }
    Ok(got)
}

pub fn read_dir(root: &Path, full: bool) -> Result<Expect> {
    let mut got = Expect::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
                continue;
            }
            let key = p
                .strip_prefix(root)?
                .to_str()
                .context("non-UTF-8 path")?
                .to_owned();
            let (size, hash) = if full {
                let b = std::fs::read(&p)?;
                (b.len() as u64, *blake3::hash(&b).as_bytes())
            } else {
                (e.metadata()?.len(), [0; 32])
            };
            got.insert(key, (size, hash));
        }
    }
    Ok(got)
}
