//! A new object written to a local directory in one directory operation.
//!
//! object_store's local `put` writes a staging file `name#N` next to the
//! object and renames it: two directory operations under the directory's
//! lock, which every writer into that directory contends for. In a
//! directory of 10⁵–10⁶ entries on ext4 those creates were the slow part
//! of a first pass over tiny files (4 % of them over 1 ms, median 6 ms,
//! bench/README.md, Performance). Here the bytes go to an unnamed file
//! (`O_TMPFILE`, no directory entry) that is linked under its name once
//! complete: one directory operation, and nothing visible before then — a
//! crash leaves no staging file behind, only an unlinked inode the
//! filesystem frees.
//!
//! Only for a name that does not exist yet: `linkat` does not replace, so
//! an overwrite (and any filesystem without `O_TMPFILE`, or a system
//! without `/proc`) goes object_store's way. The ETag is object_store's
//! own scheme for local files (inode, modification time, size), so that a
//! listing or a HEAD later finds the ETag recorded; a test holds the two
//! to the same answer.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path as FsPath;

use object_store::PutPayload;
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

/// What writing through an unnamed file came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unnamed {
    /// Written and linked under its name, with this ETag.
    Written(String),
    /// The name exists: write it the other way (a replacement).
    Exists,
    /// This filesystem or system cannot: write this and every later
    /// object the other way.
    Unsupported,
}

/// Write `payload` to the new file `path` (blocking: call it on the
/// blocking pool). Missing parent directories are created, as
/// object_store does.
pub(crate) fn write(path: &FsPath, payload: &PutPayload) -> std::io::Result<Unnamed> {
    let Some(dir) = path.parent() else {
        return Ok(Unnamed::Unsupported);
    };
    let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o666);
    let fd = match rustix::fs::openat(CWD, dir, flags, mode) {
        Err(Errno::NOENT) => {
            std::fs::create_dir_all(dir)?;
            rustix::fs::openat(CWD, dir, flags, mode)
        }
        r => r,
    };
    let fd = match fd {
        Ok(fd) => fd,
        // No O_TMPFILE here (the filesystem, or a kernel before 3.11 that
        // reads the flag as O_DIRECTORY).
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => return Ok(Unnamed::Unsupported),
        Err(e) => return Err(e.into()),
    };
    let mut file = std::fs::File::from(fd);
    for piece in payload.iter() {
        file.write_all(piece)?;
    }
    let e_tag = super::dirlist::etag(&file.metadata()?);
    let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, by_fd.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(Unnamed::Written(e_tag)),
        Err(Errno::EXIST) => Ok(Unnamed::Exists),
        // No /proc to name the file by.
        Err(Errno::NOENT) if !FsPath::new("/proc/self/fd").is_dir() => Ok(Unnamed::Unsupported),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;

    fn payload(parts: &[&[u8]]) -> PutPayload {
        parts
            .iter()
            .map(|p| bytes::Bytes::copy_from_slice(p))
            .collect()
    }

    #[tokio::test]
    async fn a_new_name_is_written_whole_with_object_stores_etag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = LocalFileSystem::new_with_prefix(dir.path()).expect("fs");
        let key = Path::from("a/b c/d%e");
        let path = fs.path_to_filesystem(&key).expect("path");
        let body = payload(&[b"hello ", b"", b"world"]);
        let r = write(&path, &body).expect("write");
        // Read back through object_store itself: the same bytes, the same
        // ETag a listing and a HEAD give, and no staging file beside it.
        let got = fs.get(&key).await.expect("get");
        let meta = got.meta.clone();
        assert_eq!(&got.bytes().await.expect("bytes")[..], b"hello world");
        assert_eq!(r, Unnamed::Written(meta.e_tag.expect("etag")));
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn an_empty_object_is_a_file_of_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty");
        assert!(matches!(
            write(&path, &payload(&[])),
            Ok(Unnamed::Written(_))
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"");
    }

    #[test]
    fn an_existing_name_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        std::fs::write(&path, b"old").expect("seed");
        assert_eq!(
            write(&path, &payload(&[b"new"])).expect("write"),
            Unnamed::Exists
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
