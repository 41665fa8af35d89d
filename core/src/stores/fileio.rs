//! A local directory's small file operations (a small file opened and
//! read whole, a new file written and linked) run on a few threads of the
//! store's own, not on tokio's blocking pool.
//!
//! tokio's pool keeps a thread for every call that ever ran at once (64
//! objects in flight: dozens) and wakes an idle one for each call, so
//! every operation of a few microseconds cost two context switches: the
//! wake-ups were a sixth of a first pass over tiny files (`perf`, 300,000
//! files of 100 B), its system time as large as its user time. Here a
//! few threads ([`threads_for`]) take the calls from one queue: while
//! there is work they go from one call to the next without sleeping, and
//! a call is queued without waking anyone. Only files of at most
//! [`SMALL_FILE`] bytes come here; long or rare calls (`syncfs`, the
//! directory walk, larger files, synced RocksDB writes) stay on tokio's
//! pool, where they cannot hold these threads from the small ones.
//!
//! The threads belong to the pool: dropping it lets them finish what was
//! queued and joins them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

/// Threads of the pool of a directory on a local disk, whose calls take
/// microseconds of CPU: on 2 cores, a first pass over 100,000 files of
/// 100 B took the same time with 1, 2, 4 or 8 (bench/README.md,
/// Performance).
pub const LOCAL_THREADS: usize = 4;

/// Threads of the pool of a directory anywhere else (NFS, SMB, FUSE): its
/// calls wait on a server, so as many as a pass has small objects in
/// flight wait at once.
pub const REMOTE_THREADS: usize = 64;

/// The pool size for a directory on a local disk or not.
pub fn threads_for(on_local_disk: bool) -> usize {
    if on_local_disk {
        LOCAL_THREADS
    } else {
        REMOTE_THREADS
    }
}

/// The largest file read or written on the pool: a few milliseconds of
/// I/O at most, and what an object holds beyond its memory reservation
/// if its call runs after the object was dropped.
pub const SMALL_FILE: u64 = 1 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running blocking file calls in order of arrival.
#[derive(Debug)]
pub struct FileIo {
    queue: Option<crossbeam_channel::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

/// The call could not be run, or panicked (the panic was reported by the
/// panic hook as it happened).
#[derive(Debug, thiserror::Error)]
#[error("a file operation was cut short (its thread panicked or the store was closing)")]
pub struct CutShort;

impl FileIo {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut pool = Self {
            queue: Some(tx),
            threads: Vec::new(),
        };
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("passeur-file-{i}"))
                .spawn(move || {
                    // Ends once the pool is dropped and the queue is empty.
                    for job in rx {
                        job();
                    }
                })?;
            pool.threads.push(t);
        }
        Ok(pool)
    }

    /// Run `f` on one of the pool's threads. Dropping the future does not
    /// stop `f` once it has started (as with `spawn_blocking`).
    pub async fn run<T, F>(&self, f: F) -> Result<T, CutShort>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic drops `tx`: the caller gets `CutShort`, and the
            // thread lives on for the next call.
            if let Ok(v) = catch_unwind(AssertUnwindSafe(f)) {
                let _ = tx.send(v);
            }
        });
        let queue = self.queue.as_ref().ok_or(CutShort)?;
        queue.send(job).map_err(|_| CutShort)?;
        rx.await.map_err(|_| CutShort)
    }
}

impl Drop for FileIo {
    fn drop(&mut self) {
        // Closing the queue ends each thread once the calls queued are done.
        self.queue = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_call_runs_once_off_the_runtime() {
        let pool = Arc::new(FileIo::new(3).expect("pool"));
        let ran = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500usize {
            let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
            tasks.spawn(async move {
                pool.run(move || {
                    ran.fetch_add(1, SeqCst);
                    // No runtime here: object_store's local calls run
                    // inline on this thread instead of on tokio's pool.
                    assert!(tokio::runtime::Handle::try_current().is_err());
                    i * 2
                })
                .await
            });
        }
        let mut sum = 0;
        while let Some(r) = tasks.join_next().await {
            sum += r.expect("join").expect("ran");
        }
        assert_eq!(ran.load(SeqCst), 500);
        assert_eq!(sum, (0..500).map(|i| i * 2).sum::<usize>());
    }

    #[tokio::test]
    async fn a_panicking_call_fails_alone_and_the_pool_goes_on() {
        let pool = FileIo::new(1).expect("pool");
        let r: Result<(), CutShort> = pool.run(|| panic!("boom")).await;
        assert!(r.is_err());
        assert_eq!(pool.run(|| 7).await.expect("after the panic"), 7);
    }

    #[test]
    fn dropping_the_pool_runs_what_was_queued_and_joins() {
        let ran = Arc::new(AtomicUsize::new(0));
        let pool = FileIo::new(2).expect("pool");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        for _ in 0..50 {
            let ran = Arc::clone(&ran);
            // Queued, never awaited.
            let polled_once = rt.block_on(async {
                let f = pool.run(move || {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    ran.fetch_add(1, SeqCst);
                });
                futures::FutureExt::now_or_never(f).is_some()
            });
            assert!(!polled_once, "a call takes a millisecond");
        }
        drop(pool);
        assert_eq!(ran.load(SeqCst), 50);
    }
}
