//! The bytes of a GET answer, as a stream. object_store hands a local
//! file's answer out as the open file and, asked for a stream, reads it
//! 8 KiB per blocking call: a 256 MiB object costs 32,768 hand-offs to the
//! blocking pool and as many `read` calls, most of a local copy's system
//! time. Here a local file is read in pieces of [`LOCAL_READ`], each in one
//! blocking call straight into the buffer handed on (the first with its
//! seek): a small file is one hand-off, and the range's length says where
//! to stop (no call to find the end). Other stores' answers are already
//! streams and pass through.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use object_store::{GetResult, GetResultPayload};

/// Bytes read from a local file per blocking call.
pub const LOCAL_READ: usize = 1 << 20;

/// The bytes of `got`, in order.
pub fn body(got: GetResult) -> BoxStream<'static, Result<Bytes, object_store::Error>> {
    match got.payload {
        GetResultPayload::File(file, path) => local(file, path, got.range),
        GetResultPayload::Stream(s) => s,
    }
}

/// Where the read of a local range stands.
struct Reading {
    file: Arc<std::fs::File>,
    /// Offset of the next piece, or `None` before the first (not sought).
    at: Option<u64>,
    end: u64,
}

/// `range` of an open local file, [`LOCAL_READ`] bytes at a time. A file
/// that ends before the range does fails (it changed while read).
fn local(
    file: std::fs::File,
    path: PathBuf,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, object_store::Error>> {
    let path = Arc::new(path);
    let start = Reading {
        file: Arc::new(file),
        at: None,
        end: range.end,
    };
    futures::stream::unfold(Some(start), move |state| {
        let path = Arc::clone(&path);
        let begin = range.start;
        async move {
            let mut r = state?;
            let from = r.at.unwrap_or(begin);
            if from >= r.end {
                return None;
            }
            let len = usize::try_from(r.end - from).map_or(LOCAL_READ, |n| n.min(LOCAL_READ));
            let (file, seek) = (Arc::clone(&r.file), r.at.is_none());
            let piece =
                tokio::task::spawn_blocking(move || read_piece(&file, seek.then_some(from), len))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match piece {
                Ok(b) => {
                    r.at = Some(from + b.len() as u64);
                    Some((Ok(b), Some(r)))
                }
                Err(e) => Some((Err(local_err(&path, e)), None)),
            }
        }
    })
    .boxed()
}

/// `len` bytes from the file's position (after seeking to `seek`), in one
/// buffer; fewer only at an error.
pub(crate) fn read_piece(
    mut file: &std::fs::File,
    seek: Option<u64>,
    len: usize,
) -> std::io::Result<Bytes> {
    if let Some(at) = seek {
        file.seek(SeekFrom::Start(at))?;
    }
    let mut buf = BytesMut::zeroed(len);
    let mut got = 0;
    while got < len {
        match file.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended {} bytes early", len - got),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze())
}

pub(crate) fn local_err(path: &std::path::Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(std::io::Error::new(
            e.kind(),
            format!("read {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn a_local_file_reads_whole_and_by_range_in_large_pieces() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let data: Vec<u8> = (0..3 * LOCAL_READ + 17).map(|i| (i % 251) as u8).collect();
        let p = Path::from("a/b.bin");
        fs.put(&p, PutPayload::from(data.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (range, want) in [
            (None, &data[..]),
            (
                Some(GetRange::Bounded(5..(2 * LOCAL_READ as u64 + 3))),
                &data[5..2 * LOCAL_READ + 3],
            ),
            (Some(GetRange::Bounded(0..1)), &data[..1]),
        ] {
            let opts = GetOptions {
                range,
                ..GetOptions::default()
            };
            let got = fs
                .get_opts(&p, opts)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let pieces: Vec<Bytes> = body(got)
                .try_collect()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(pieces.iter().all(|b| b.len() <= LOCAL_READ));
            assert!(pieces.len() <= want.len().div_ceil(LOCAL_READ) + 1);
            assert_eq!(pieces.concat(), want);
        }
    }

    #[tokio::test]
    async fn a_local_file_shorter_than_its_range_fails_by_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let p = Path::from("short.bin");
        fs.put(&p, PutPayload::from(vec![7u8; 100]))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = fs.get(&p).await.unwrap_or_else(|e| panic!("{e}"));
        // Cut short after it was opened: the range still says 100 bytes.
        std::fs::write(dir.path().join("short.bin"), [7u8; 40]).unwrap_or_else(|e| panic!("{e}"));
        let r: Result<Vec<Bytes>, _> = body(got).try_collect().await;
        let e = r.expect_err("a short file must fail").to_string();
        assert!(
            e.contains("short.bin") && e.contains("60 bytes early"),
            "{e}"
        );
    }
}
