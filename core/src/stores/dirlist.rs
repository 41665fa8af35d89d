//! Listing a local directory: what object_store's `LocalFileSystem::list`
//! lists — the same files, keys, sizes, times and ETags (the manifest
//! compares them with the ones it recorded) — for one `stat` per file
//! instead of three, walked on a thread of its own a few thousand entries
//! ahead of the pass.
//!
//! object_store walks with `walkdir` (following links) and, for every
//! entry, `lstat`s it (a broken link is skipped), `stat`s it (`is_file`)
//! and `stat`s it once more for its metadata, each by its full path; and
//! it walks 1,024 entries at a time only when the pass has taken the
//! previous ones, so a no-op pass over 10⁶ files waited for the walk and
//! the walk for the pass. Here the walk's own file type (the directory
//! entry's, or the link target's where walkdir followed a link) skips
//! directories without a system call, a file's one `stat` gives what the
//! listing reports, and batches go through a bounded channel.
//!
//! Kept from object_store, exactly: keys made by its own steps (file URL,
//! the root's URL path stripped, `Path::from_url_path`), files and links
//! that vanish during the walk skipped, the ETag
//! `"{inode:x}-{mtime µs:x}-{size:x}"`. Tests compare the two listings on
//! odd trees.
//!
//! Not kept: object_store's listing leaves out files named like its own
//! staging files (`name#123`) — a source's `invoice#1234` was never copied
//! and the pass still exited 0; a source's listing here lists them
//! ([`Staging::List`]; object_store's read refuses them, so each fails by
//! name), a target's leaves them out as before ([`Staging::Skip`]). And
//! object_store's listing ends at its first error, so one file
//! whose name a `Path` cannot carry (a newline, bytes that are not UTF-8)
//! or one unreadable directory hid every file the walk would have found
//! after it, every pass. Here such a name is an error naming the file
//! ([`unnamable`]; the pass fails it by name and copies the rest), and a walk error
//! (an unreadable directory, a link loop, a file that cannot be `stat`ed
//! — object_store left those out silently — or a modification time beyond
//! what chrono holds, where object_store panicked) is an error item after
//! which the walk goes on (the pass still reports its listing failed).
//! A broken link and a file that is not a regular one (a FIFO, a socket, a
//! device) are passed over as object_store does, with a warning naming
//! each (object_store said nothing).

use std::path::{Path as FsPath, PathBuf};

use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use tokio::sync::mpsc;
use url::Url;

/// How listing errors name the store (as object_store's own do).
const STORE: &str = "LocalFileSystem";

/// The walk's batches, as the listing receives them.
type Batches = mpsc::Receiver<Vec<object_store::Result<ObjectMeta>>>;

/// Entries sent to the pass at once.
const BATCH: usize = 1024;
/// Batches waiting in the channel (with the one being filled and the one
/// being consumed: about 4,000 entries ahead of the pass).
const AHEAD: usize = 2;

/// Why an entry of the walk could not be listed.
#[derive(Debug, thiserror::Error)]
enum WalkError {
    #[error("cannot walk the directory: {0}")]
    Walk(#[from] walkdir::Error),
    #[error("cannot read the metadata of {path}: {source}")]
    Metadata {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a key of {0}: not an absolute path")]
    NotAbsolute(PathBuf),
    #[error("the directory walk stopped before its end")]
    Stopped,
    #[error("{path}: a modification time out of range")]
    Time { path: PathBuf },
    #[error("the file {key:?} has a name object_store cannot carry as a key ({reason})")]
    Unnamable { key: String, reason: String },
}

impl From<WalkError> for object_store::Error {
    fn from(e: WalkError) -> Self {
        Self::Generic {
            store: STORE,
            source: Box::new(e),
        }
    }
}

/// What a listing does with a file named like object_store's staging files
/// (`name#123`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging {
    /// Lists it (a source: it may be a user's file, and object_store's read
    /// refuses it, so the pass fails it by name instead of passing it by).
    List,
    /// Leaves it out (a target object_store writes to: what an interrupted
    /// replacement left, never an object).
    Skip,
}

/// A local directory's root, as object_store's `LocalFileSystem` holds it.
#[derive(Debug, Clone)]
pub struct DirLister {
    /// The canonical directory.
    root: PathBuf,
    /// Its file URL, whose path every key's URL starts with.
    url: Url,
}

impl DirLister {
    /// The lister of `dir` (canonicalized, as `LocalFileSystem` does).
    pub fn new(dir: &FsPath) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(dir)?;
        let url = Url::from_file_path(&root).map_err(|()| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an absolute path")
        })?;
        Ok(Self { root, url })
    }

    /// Every file under the root, in the order the walk finds them.
    pub fn list(&self, staging: Staging) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (rx, walker) = self.spawn_walk(staging);
        futures::stream::unfold((rx, Some(walker)), |(mut rx, mut walker)| async move {
            match rx.recv().await {
                Some(batch) => Some((batch, (rx, walker))),
                None => {
                    // The walk ended (or panicked: its last items are lost,
                    // so the listing must not end as if complete).
                    let panicked = match walker.take() {
                        Some(w) => w.await.is_err(),
                        None => false,
                    };
                    panicked.then(|| (vec![Err(WalkError::Stopped.into())], (rx, None)))
                }
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    /// The walk on a blocking thread, its batches, and its handle (the
    /// entries it visited). It ends with the walk, or at the next entry
    /// once the receiver is dropped (the channel closed): it never
    /// outlives its listing by more than one entry's work.
    fn spawn_walk(&self, staging: Staging) -> (Batches, tokio::task::JoinHandle<usize>) {
        let (tx, rx) = mpsc::channel(AHEAD);
        let me = self.clone();
        (
            rx,
            tokio::task::spawn_blocking(move || me.walk(staging, &tx)),
        )
    }

    fn walk(
        &self,
        staging: Staging,
        tx: &mpsc::Sender<Vec<object_store::Result<ObjectMeta>>>,
    ) -> usize {
        let mut batch = Vec::with_capacity(BATCH);
        let walk = walkdir::WalkDir::new(&self.root)
            .min_depth(1)
            .follow_links(true);
        let mut visited = 0;
        for entry in walk {
            if tx.is_closed() {
                return visited;
            }
            visited += 1;
            if let Some(item) = self.item(entry, staging) {
                batch.push(item);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.blocking_send(full).is_err() {
                        return visited;
                    }
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        visited
    }

    /// What one entry of the walk lists: a file, an error, or nothing.
    fn item(
        &self,
        entry: Result<walkdir::DirEntry, walkdir::Error>,
        staging: Staging,
    ) -> Option<object_store::Result<ObjectMeta>> {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if vanished(e.io_error()) => {
                // A file gone during the walk, or a link to nothing: no
                // bytes to copy either way, but a broken link stays, pass
                // after pass, and its owner may want to know.
                if let Some(p) = e.path().filter(|p| is_link(p)) {
                    tracing::warn!(path = %p.display(), "passed over: a symbolic link to nothing");
                }
                return None;
            }
            Err(e) => return Some(Err(WalkError::Walk(e).into())),
        };
        if entry.file_type().is_dir() {
            return None;
        }
        // Follows the link where walkdir followed one, else `lstat`: the
        // entry itself, which is not a link.
        let md = match entry.metadata() {
            Ok(md) => md,
            Err(e) if vanished(e.io_error()) => return None,
            Err(e) => {
                let path = entry.path().to_path_buf();
                let source = e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("link loop"));
                return Some(Err(WalkError::Metadata { path, source }.into()));
            }
        };
        if !md.is_file() {
            tracing::warn!(
                path = %entry.path().display(),
                "passed over: not a regular file (a FIFO, a socket or a device)"
            );
            return None;
        }
        let location = match self.key(entry.path()) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if staging == Staging::Skip && is_staging(&location) {
            return None;
        }
        Some(meta(&md, location).ok_or_else(|| {
            WalkError::Time {
                path: entry.path().to_path_buf(),
            }
            .into()
        }))
    }

    /// The key object_store gives the file at `path`, by its own steps; a
    /// name it cannot carry is a fault naming the file.
    fn key(&self, path: &FsPath) -> object_store::Result<Path> {
        let url =
            Url::from_file_path(path).map_err(|()| WalkError::NotAbsolute(path.to_path_buf()))?;
        let rel = url.path().strip_prefix(self.url.path()).ok_or_else(|| {
            object_store::Error::from(object_store::path::Error::PrefixMismatch {
                path: url.path().to_owned(),
                prefix: self.url.to_string(),
            })
        })?;
        Path::from_url_path(rel).map_err(|e| {
            let name = path.strip_prefix(&self.root).unwrap_or(path);
            WalkError::Unnamable {
                key: name.to_string_lossy().into_owned(),
                reason: crate::base::error::one_line(&e.to_string()),
            }
            .into()
        })
    }
}

/// The file a listing error names, with why a key cannot carry its name
/// (the pass fails it by name: `scan::listing::KeyFault::UnnamableFile`).
pub fn unnamable(e: &object_store::Error) -> Option<(&str, &str)> {
    match e {
        object_store::Error::Generic { store, source } if *store == STORE => {
            match source.downcast_ref::<WalkError>()? {
                WalkError::Unnamable { key, reason } => Some((key, reason)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `path` is a symbolic link (`lstat`: on the error path only).
fn is_link(path: &FsPath) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn vanished(e: Option<&std::io::Error>) -> bool {
    e.is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Whether object_store takes `key` for one of its staging files (a name
/// ending in `#` and digits), which its listing leaves out.
fn is_staging(key: &Path) -> bool {
    key.filename()
        .and_then(|name| name.split_once('#'))
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// The inode in the ETag, as object_store puts it there (none where the
/// system has no inodes).
#[cfg(unix)]
fn inode(md: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(md)
}

#[cfg(not(unix))]
fn inode(_md: &std::fs::Metadata) -> u64 {
    0
}

/// A file's listing entry, as object_store makes it from its metadata;
/// `None` for a modification time chrono cannot hold (beyond ±262,000
/// years: tmpfs and Btrfs take them), where object_store panics.
fn meta(md: &std::fs::Metadata, location: Path) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        location,
        last_modified: utc(md.modified().unwrap_or(std::time::UNIX_EPOCH))?,
        size: md.len(),
        e_tag: Some(etag(md)),
        version: None,
    })
}

/// object_store's ETag of a local file: inode, modification time in
/// microseconds and size, in hex, quoted (what a listing, a HEAD and a
/// write through an unnamed file all report).
pub(super) fn etag(md: &std::fs::Metadata) -> String {
    let micros = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{:x}-{micros:x}-{:x}\"", inode(md), md.len())
}

/// chrono's own conversion of a system time, without its panic.
fn utc(t: std::time::SystemTime) -> Option<DateTime<Utc>> {
    let (secs, nanos) = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    };
    DateTime::from_timestamp(secs, nanos)
}

#[cfg(all(test, unix))]
mod tests;
