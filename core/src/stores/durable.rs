//! A local directory as a store: opened ([`open`]), written
//! ([`Durability::put`]), and its files made durable before the manifest
//! records them (ARCHITECTURE.md, rule 1).
//!
//! On the local filesystems whose `syncfs(2)` writes back every dirty
//! inode and directory entry and then flushes the device (ext2/3/4, XFS,
//! Btrfs, F2FS, ZFS, tmpfs), objects that finish together share one
//! `syncfs` of the target's filesystem — a group commit: each object takes
//! a ticket once its file is written; one object at a time leads, notes the
//! last ticket given out, syncs, and every object whose ticket it covered
//! returns without a system call of its own. No timer: an object that
//! finishes alone waits for one `syncfs`, and while one runs the next
//! group gathers. A million tiny files need a few thousand syncs instead
//! of two million `fsync`s (their directory's blocks rewritten each time).
//!
//! Anywhere else (network and FUSE filesystems, other systems), each file
//! and its directory are fsynced by path, as before.
//!
//! A failed `syncfs` fails every object it covered, and every object after
//! it on this store: Linux reports a writeback error to each open file
//! once, so a later `syncfs` that succeeds proves nothing about files
//! written before it. The next pass opens the store afresh and copies the
//! unrecorded objects again.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, GetResultPayload, ObjectStore, PutMode, PutOptions, PutPayload,
    PutResult,
};

use crate::base::error::Error;
use crate::stores::dirlist::DirLister;
use crate::stores::fileio::{self, FileIo};

/// How a local directory's written files are made durable.
#[derive(Debug)]
pub struct Durability {
    fs: Arc<LocalFileSystem>,
    group: Option<Group>,
    /// New files are written through unnamed files ([`super::unnamed`])
    /// until this filesystem is found unable to.
    unnamed: AtomicBool,
    /// The directory's own walk ([`super::dirlist`]).
    lister: DirLister,
    /// Threads for small file calls ([`super::fileio`]).
    io: FileIo,
}

/// The group commit's state: tickets handed out, and the `syncfs` leader's
/// lock over what is synced.
#[derive(Debug)]
struct Group {
    root: Arc<std::fs::File>,
    issued: AtomicU64,
    synced: tokio::sync::Mutex<Synced>,
}

#[derive(Debug, Default)]
struct Synced {
    /// Every ticket up to this one is covered by a `syncfs` that finished.
    through: u64,
    /// A `syncfs` failed: what it said (every later object fails too).
    failed: Option<String>,
}

impl Durability {
    /// Durability for files written under `root` through `fs`: grouped
    /// where `root`'s filesystem allows it, per file otherwise. Fails if
    /// `root` cannot be resolved to walk it.
    pub fn new(fs: Arc<LocalFileSystem>, root: &FsPath) -> std::io::Result<Self> {
        let dir = std::fs::File::open(root).ok();
        let local = dir.as_ref().is_some_and(on_local_disk);
        let group = dir
            .filter(|_| local && kernel_reports_errors())
            .map(|f| Group {
                root: Arc::new(f),
                issued: AtomicU64::new(0),
                synced: tokio::sync::Mutex::new(Synced::default()),
            });
        Ok(Self {
            fs,
            group,
            unnamed: AtomicBool::new(true),
            lister: DirLister::new(root)?,
            io: FileIo::new(fileio::threads_for(local))?,
        })
    }

    /// The directory's own walk, listing what object_store lists.
    pub fn lister(&self) -> &DirLister {
        &self.lister
    }

    /// Write `key` whole: through an unnamed file linked under its name
    /// when the name is new (one directory operation, nothing visible
    /// before it is complete), else object_store's staging file and
    /// rename. Durable only once [`Durability::make_durable`] returns.
    pub async fn put(
        &self,
        key: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let plain = matches!(opts.mode, PutMode::Overwrite) && opts.attributes.is_empty();
        if plain && self.unnamed.load(Relaxed) {
            let path = self.fs.path_to_filesystem(key)?;
            let body = payload.clone();
            let write = move || super::unnamed::write(&path, &body);
            let r = if payload.content_length() as u64 <= fileio::SMALL_FILE {
                self.io.run(write).await.map_err(generic)?
            } else {
                tokio::task::spawn_blocking(write)
                    .await
                    .map_err(|e| object_store::Error::JoinError { source: e })?
            }
            .map_err(generic)?;
            match r {
                super::unnamed::Unnamed::Written(e_tag) => {
                    return Ok(PutResult {
                        e_tag: Some(e_tag),
                        version: None,
                        extensions: Default::default(),
                    });
                }
                super::unnamed::Unnamed::Exists => {}
                super::unnamed::Unnamed::Unsupported => self.unnamed.store(false, Relaxed),
            }
        }
        self.fs.put_opts(key, payload, opts).await
    }

    /// `key` whole, opened and read in one call on the store's own
    /// threads: object_store's `get` (run there, off the runtime, it does
    /// its work inline: the same checks, metadata and errors), then the
    /// file's bytes if they are at most `up_to` (more: the answer is
    /// handed back open, for [`super::body`] to read in pieces). For files
    /// listed at most [`fileio::SMALL_FILE`] bytes.
    pub async fn get_whole(&self, key: &Path, up_to: u64) -> object_store::Result<GetResult> {
        let (fs, key) = (Arc::clone(&self.fs), key.clone());
        self.io
            .run(move || {
                let got = futures::executor::block_on(fs.get_opts(&key, GetOptions::default()))?;
                if got.meta.size > up_to {
                    return Ok(got);
                }
                let GetResultPayload::File(file, path) = got.payload else {
                    return Ok(got);
                };
                let len = usize::try_from(got.meta.size).map_err(generic)?;
                let bytes = super::body::read_piece(&file, None, len)
                    .map_err(|e| super::body::local_err(&path, e))?;
                Ok(GetResult {
                    payload: GetResultPayload::Stream(
                        futures::stream::once(async move { Ok(bytes) }).boxed(),
                    ),
                    ..got
                })
            })
            .await
            .map_err(generic)?
    }

    /// Whether objects share one `syncfs` (else each file is fsynced).
    pub fn grouped(&self) -> bool {
        self.group.is_some()
    }

    /// Make `key`, just written, durable with its directory entry.
    pub async fn make_durable(&self, key: &Path) -> Result<(), Error> {
        let Some(g) = &self.group else {
            let file = self.fs.path_to_filesystem(key).map_err(Error::Store)?;
            return tokio::task::spawn_blocking(move || fsync_with_dir(&file))
                .await
                .map_err(|_| Error::ShuttingDown)?
                .map_err(|source| Error::Io {
                    what: format!("fsync {key}"),
                    source,
                });
        };
        // The file is written: every `syncfs` that starts from now on
        // covers it.
        let ticket = g.issued.fetch_add(1, SeqCst) + 1;
        let mut synced = g.synced.lock().await;
        if synced.through >= ticket {
            return Ok(());
        }
        if synced.failed.is_none() {
            let upto = g.issued.load(SeqCst);
            let root = Arc::clone(&g.root);
            let r = tokio::task::spawn_blocking(move || syncfs(&root))
                .await
                .map_err(|_| Error::ShuttingDown)?;
            match r {
                Ok(()) => {
                    synced.through = upto;
                    return Ok(());
                }
                Err(e) => synced.failed = Some(e.to_string()),
            }
        }
        Err(Error::Io {
            what: format!("sync the filesystem holding {key}"),
            source: std::io::Error::other(synced.failed.clone().unwrap_or_default()),
        })
    }
}

/// What to do when a local directory named by a URL does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalDir {
    /// Refuse (sources).
    MustExist,
    /// Create it (targets).
    Create,
    /// Treat it as empty without creating it (dry-run targets).
    EmptyIfMissing,
}

/// A local directory store and the name it goes by: its canonical path,
/// so that `dir` and `./dir` are the same job for the state directory.
pub(super) type Local = (Arc<dyn ObjectStore>, Option<Arc<Durability>>, String);

/// Open the local directory `p` as a store, with its durability (none for
/// a dry run's missing target, read as empty).
pub(super) fn open(p: &FsPath, dir: LocalDir) -> Result<Local, Error> {
    let shown = p.to_string_lossy().into_owned();
    if dir == LocalDir::EmptyIfMissing && !p.exists() {
        return Ok((Arc::new(object_store::memory::InMemory::new()), None, shown));
    }
    if dir == LocalDir::Create {
        std::fs::create_dir_all(p).map_err(|e| Error::InvalidUrl {
            url: shown.clone(),
            reason: format!("cannot create directory: {e}"),
        })?;
    } else if !p.is_dir() {
        return Err(Error::MissingContainer { store: shown });
    }
    let name = std::fs::canonicalize(p).map_or(shown.clone(), |c| c.to_string_lossy().into_owned());
    let fs = Arc::new(
        LocalFileSystem::new_with_prefix(p).map_err(|e| Error::InvalidUrl {
            url: shown,
            reason: crate::base::error::error_chain(&e),
        })?,
    );
    let durable = Durability::new(Arc::clone(&fs), p).map_err(|e| Error::InvalidUrl {
        url: name.clone(),
        reason: format!("cannot open the directory: {e}"),
    })?;
    Ok((fs as Arc<dyn ObjectStore>, Some(Arc::new(durable)), name))
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    }
}

fn fsync_with_dir(file: &PathBuf) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn syncfs(root: &std::fs::File) -> std::io::Result<()> {
    rustix::fs::syncfs(root).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_root: &std::fs::File) -> std::io::Result<()> {
    Err(std::io::Error::other("syncfs is Linux-only"))
}

/// Whether `root`'s filesystem is a local one whose `syncfs` is known to
/// make every file and directory entry written on it durable (ext2/3/4,
/// XFS, Btrfs, F2FS, ZFS, tmpfs).
#[cfg(target_os = "linux")]
fn on_local_disk(root: &std::fs::File) -> bool {
    const EXT: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const F2FS: i64 = 0xF2F5_2010;
    const ZFS: i64 = 0x2FC1_2FC1;
    const TMPFS: i64 = 0x0102_1994;
    let Ok(st) = rustix::fs::fstatfs(root) else {
        return false;
    };
    #[allow(clippy::unnecessary_cast, clippy::cast_lossless)]
    let kind = st.f_type as i64;
    [EXT, XFS, BTRFS, F2FS, ZFS, TMPFS].contains(&kind)
}

#[cfg(not(target_os = "linux"))]
fn on_local_disk(_root: &std::fs::File) -> bool {
    false
}

/// No `syncfs` elsewhere.
#[cfg(not(target_os = "linux"))]
fn kernel_reports_errors() -> bool {
    false
}

/// `syncfs` returns writeback errors from Linux 5.8 on.
#[cfg(target_os = "linux")]
fn kernel_reports_errors() -> bool {
    let release = rustix::system::uname();
    let release = release.release().to_string_lossy();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    matches!((nums.next(), nums.next()), (Some(a), Some(b)) if (a, b) >= (5, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_objects_share_few_syncs_and_every_one_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let d = Arc::new(Durability::new(Arc::clone(&fs), dir.path()).expect("durability"));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let d = Arc::clone(&d);
            std::fs::write(dir.path().join(format!("f{i}")), b"x").expect("write");
            tasks.spawn(async move { d.make_durable(&Path::from(format!("f{i}"))).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("join").expect("durable");
        }
        if let Some(g) = &d.group {
            assert_eq!(g.issued.load(SeqCst), 64);
            assert_eq!(g.synced.lock().await.through, 64);
        }
    }

    #[test]
    fn a_missing_file_fails_by_name_when_fsynced_per_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let d = Durability {
            fs,
            group: None,
            unnamed: AtomicBool::new(true),
            lister: DirLister::new(dir.path()).expect("lister"),
            io: FileIo::new(1).expect("pool"),
        };
        let rt = tokio::runtime::Runtime::new().expect("rt");
        let e = rt
            .block_on(d.make_durable(&Path::from("gone")))
            .expect_err("missing");
        assert!(e.to_string().contains("gone"), "{e}");
    }

    /// A file read whole in one call answers as object_store's own `get`:
    /// the same bytes, metadata and range; the same errors for a missing
    /// key, a directory and a name object_store refuses; a file larger
    /// than asked is handed back open and still reads whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_read_whole_answers_as_object_stores_get() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let d = Durability::new(Arc::clone(&fs), dir.path()).expect("durability");
        std::fs::create_dir_all(dir.path().join("a/sub")).expect("dirs");
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for (name, bytes) in [("a/f", &body[..]), ("a/empty", &b""[..]), ("a/b c%d", b"x")] {
            let file = fs.path_to_filesystem(&Path::from(name)).expect("path");
            std::fs::write(file, bytes).expect("write");
        }
        for (name, up_to) in [
            ("a/f", 100_000),
            ("a/f", 99_999),
            ("a/empty", 0),
            ("a/b c%d", 1),
        ] {
            let key = Path::from(name);
            let ours = d.get_whole(&key, up_to).await.expect("ours");
            let theirs = fs.get(&key).await.expect("theirs");
            assert_eq!(ours.meta, theirs.meta, "{name}");
            assert_eq!(ours.range, theirs.range, "{name}");
            let whole = matches!(ours.payload, GetResultPayload::Stream(_));
            assert_eq!(whole, ours.meta.size <= up_to, "{name} up to {up_to}");
            let pieces: Vec<bytes::Bytes> =
                futures::TryStreamExt::try_collect(super::super::body::body(ours))
                    .await
                    .expect("read ours");
            assert_eq!(
                pieces.concat(),
                theirs.bytes().await.expect("read theirs").to_vec(),
                "{name}"
            );
        }
        let gone = d.get_whole(&Path::from("a/none"), 10).await;
        assert!(
            matches!(gone, Err(object_store::Error::NotFound { .. })),
            "{gone:?}"
        );
        let a_dir = d.get_whole(&Path::from("a/sub"), 10).await;
        assert!(
            matches!(a_dir, Err(object_store::Error::NotFound { .. })),
            "{a_dir:?}"
        );
        std::fs::write(dir.path().join("a/g#12"), b"y").expect("write");
        let staging = d.get_whole(&Path::from("a/g#12"), 10).await;
        let theirs = fs.get(&Path::from("a/g#12")).await;
        assert!(staging.is_err() && theirs.is_err(), "{staging:?}");
    }

    #[tokio::test]
    async fn a_new_object_and_its_replacement_read_back_with_their_etags() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let d = Durability::new(Arc::clone(&fs), dir.path()).expect("durability");
        let key = Path::from("x/y");
        for body in [&b"first"[..], b"second, longer", b""] {
            let put = d
                .put(&key, PutPayload::from_static(body), PutOptions::default())
                .await
                .expect("put");
            d.make_durable(&key).await.expect("durable");
            let got = fs.get(&key).await.expect("get");
            assert_eq!(put.e_tag, got.meta.e_tag);
            assert_eq!(&got.bytes().await.expect("bytes")[..], body);
        }
        let names = std::fs::read_dir(dir.path().join("x"))
            .expect("dir")
            .count();
        assert_eq!(names, 1, "no staging file left beside the object");
    }
}
