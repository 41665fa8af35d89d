//! The bytes of a GET answer, as a stream. object_store hands a local
//! file's answer out as the open file and, asked for a stream, reads it
//! 8 KiB per blocking call: a 256 MiB object costs 32,768 hand-offs to the
//! blocking pool and as many `read` calls, most of a local copy's system
//! time. Here a local file is read in pieces of [`LOCAL_READ`] through
//! tokio's file (one blocking call per piece); other stores' answers are
//! already streams and pass through.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::{GetResult, GetResultPayload};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Bytes read from a local file per blocking call.
pub const LOCAL_READ: usize = 1 << 20;

/// The bytes of `got`, in order.
pub fn body(got: GetResult) -> BoxStream<'static, Result<Bytes, object_store::Error>> {
    match got.payload {
        GetResultPayload::File(file, path) => local(file, path, got.range),
        GetResultPayload::Stream(s) => s,
    }
}

/// `range` of an open local file, [`LOCAL_READ`] bytes at a time.
fn local(
    file: std::fs::File,
    path: PathBuf,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, object_store::Error>> {
    let open = async move {
        let mut f = tokio::fs::File::from_std(file);
        f.seek(SeekFrom::Start(range.start)).await?;
        let len = range.end.saturating_sub(range.start);
        Ok::<_, std::io::Error>(ReaderStream::with_capacity(f.take(len), LOCAL_READ))
    };
    futures::stream::once(open)
        .try_flatten()
        .map_err(move |e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::new(
                e.kind(),
                format!("read {}: {e}", path.display()),
            )),
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
