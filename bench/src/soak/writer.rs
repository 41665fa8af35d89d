//! The soak's live writer: a task that changes the source directly on the
//! server (not through the faulty proxy) at a steady seeded pace while
//! passes run — new objects, overwrites, deletes and renames, now and then
//! an object above the multipart threshold — until it is told to stop. Its
//! sequence of changes follows from the seed alone; when each lands
//! relative to a pass follows the clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Mixed into the run's seed for the writer's own draws.
const SALT: u64 = 0x77_72_69_74_65_72;
/// Above this many source bytes, the writer deletes a large object.
const BUDGET: u64 = 200 << 20;
/// Below this many source objects, the writer does not delete.
const MIN_OBJECTS: usize = 50;

/// What the writer has done so far (read while it runs).
#[derive(Debug, Default)]
pub struct Counts {
    /// New keys put.
    pub puts: AtomicU64,
    /// Existing keys put again with other bytes.
    pub overwrites: AtomicU64,
    /// Keys deleted.
    pub deletes: AtomicU64,
    /// Keys renamed (copy, then delete of the old key).
    pub renames: AtomicU64,
    /// Of the puts and overwrites, objects above the multipart threshold.
    pub large: AtomicU64,
    /// Changes the source refused (the writer goes on).
    pub errors: AtomicU64,
}

/// The writer's view of the source when it stopped: key → size.
pub type Model = BTreeMap<String, u64>;

/// A running writer; stopped (and its task joined) by [`Writer::finish`],
/// stopped on drop otherwise.
#[derive(Debug)]
pub struct Writer {
    /// What it has done so far.
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<Model>>,
}

impl Writer {
    /// Start writing to `store` on `rt`; `model` is what the source holds.
    pub fn start(rt: &Runtime, store: Arc<dyn ObjectStore>, seed: u64, model: Model) -> Self {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let task = rt.spawn(run(
            store,
            StdRng::seed_from_u64(seed ^ SALT),
            model,
            Arc::clone(&counts),
            Arc::clone(&stop),
        ));
        Self {
            counts,
            stop,
            task: Some(task),
        }
    }

    /// Stop after the change in progress and wait for the task: the model
    /// of the source it leaves.
    pub fn finish(mut self, rt: &Runtime) -> Result<Model> {
        self.stop.store(true, Relaxed);
        let task = self.task.take().context("writer already finished")?;
        rt.block_on(task).context("writer task")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A body: mostly small (some empty), one in 30 between 6 and 12 MiB (more
/// than one 5 MiB part).
fn body(rng: &mut StdRng) -> Bytes {
    let len = if rng.random_ratio(1, 30) {
        rng.random_range(6 << 20..12 << 20)
    } else if rng.random_ratio(1, 20) {
        0
    } else {
        rng.random_range(1..32 * 1024)
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

/// A new key: mostly plain, one in four with `+`, `%41`, `=`, spaces or
/// non-ASCII letters.
fn new_key(rng: &mut StdRng, n: u64) -> String {
    match rng.random_range(0..20) {
        0 => format!("live/odd/a+b {n}.txt"),
        1 => format!("live/odd/percent%41-{n}.dat"),
        2 => format!("live/odd/k=v/n={n}.json"),
        3 => format!("live/odd/ünïcödé ファイル {n}.txt"),
        4 => format!("live/odd/mixed +%41= é {n}.bin"),
        _ => format!("live/{:02}/obj-{n:06}.dat", n % 16),
    }
}

/// The last segment of a key.
fn leaf(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

async fn run(
    store: Arc<dyn ObjectStore>,
    mut rng: StdRng,
    mut model: Model,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) -> Model {
    let mut n: u64 = 0;
    while !stop.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..450))).await;
        if stop.load(Relaxed) {
            break;
        }
        n += 1;
        let total: u64 = model.values().sum();
        let keys: Vec<&String> = model.keys().collect();
        let pick = if keys.is_empty() {
            String::new()
        } else {
            keys[rng.random_range(0..keys.len())].clone()
        };
        let mut op = rng.random_range(0..10);
        if pick.is_empty() {
            op = 0;
        } else if total > BUDGET {
            op = 6;
        } else if model.len() <= MIN_OBJECTS && (6..8).contains(&op) {
            op = 0;
        }
        let r = match op {
            // A new key.
            0..=2 => {
                let key = new_key(&mut rng, n);
                let data = body(&mut rng);
                put(store.as_ref(), &key, &data, &counts).await.map(|()| {
                    counts.puts.fetch_add(1, Relaxed);
                    model.insert(key, data.len() as u64);
                })
            }
            // Other bytes under an existing key.
            3..=5 => {
                let data = body(&mut rng);
                put(store.as_ref(), &pick, &data, &counts).await.map(|()| {
                    counts.overwrites.fetch_add(1, Relaxed);
                    model.insert(pick.clone(), data.len() as u64);
                })
            }
            // A delete; over the budget, of the largest object.
            6 | 7 => {
                let victim = if total > BUDGET {
                    model
                        .iter()
                        .max_by_key(|(_, size)| **size)
                        .map_or(pick, |(k, _)| k.clone())
                } else {
                    pick
                };
                delete(store.as_ref(), &victim).await.map(|()| {
                    counts.deletes.fetch_add(1, Relaxed);
                    model.remove(&victim);
                })
            }
            // A rename: the bytes move to a new key.
            _ => {
                let to = format!("live/renamed/{n:06}-{}", leaf(&pick));
                rename(store.as_ref(), &pick, &to).await.map(|()| {
                    counts.renames.fetch_add(1, Relaxed);
                    if let Some(size) = model.remove(&pick) {
                        model.insert(to, size);
                    }
                })
            }
        };
        if let Err(e) = r
            && counts.errors.fetch_add(1, Relaxed) < 5
        {
            eprintln!("soak: writer: {e:#}");
        }
    }
    model
}

async fn put(store: &dyn ObjectStore, key: &str, data: &Bytes, counts: &Counts) -> Result<()> {
    store
        .put(&OsPath::parse(key)?, PutPayload::from(data.clone()))
        .await
        .with_context(|| format!("put {key}"))?;
    if data.len() > 5 << 20 {
        counts.large.fetch_add(1, Relaxed);
    }
    Ok(())
}

async fn delete(store: &dyn ObjectStore, key: &str) -> Result<()> {
    store
        .delete(&OsPath::parse(key)?)
        .await
        .with_context(|| format!("delete {key}"))
}

async fn rename(store: &dyn ObjectStore, from: &str, to: &str) -> Result<()> {
    store
        .rename(&OsPath::parse(from)?, &OsPath::parse(to)?)
        .await
        .with_context(|| format!("rename {from} to {to}"))
}
