//! Durable state of resumable multipart uploads (column families `uploads`
//! and `upload_parts`). Every transition is one synced write: an upload
//! started (its id and the source version it copies), a part confirmed by
//! the target (its part id, BLAKE3 subtrees and chunk list), and the upload
//! finished (deleted in the same batch that commits the object record).
//!
//! Creating an upload is preceded by a synced `upload_starts` record (the
//! key and the time): a run stopped after the target created the upload
//! and before its id was recorded leaves that record, by which the next
//! run finds the upload at the target and aborts it. Recording the id
//! removes it in the same batch.

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::{CF_UPLOAD_PARTS, CF_UPLOAD_STARTS, CF_UPLOADS, Manifest, cf, db_err, records};
use crate::base::error::Error;
use crate::content::chunk::ChunkRef;
use crate::content::hash::Hash;
use crate::content::parthash::Subtree;
pub use records::SourceVersion;

/// An upload in progress at the target (`uploads`: object key → this).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadHead {
    /// The target's multipart upload id.
    pub upload_id: String,
    /// The source version being copied; parts of any other version are
    /// never added to this upload.
    pub source: SourceVersion,
    /// The source ETag exactly as the source sent it, for If-Match on the
    /// ranged reads of a resume.
    pub if_match: Option<String>,
    /// Part size (every part but the last; a multiple of 1 KiB).
    pub part_size: u64,
    /// Digest of the attributes the upload was created with.
    pub attrs_digest: Hash,
    /// When the upload was created, milliseconds since the Unix epoch.
    pub started_ms: i64,
}

impl UploadHead {
    /// Number of parts of the object.
    pub fn parts(&self) -> u64 {
        self.source.size.div_ceil(self.part_size.max(1)).max(1)
    }

    /// Byte range `[start, end)` of part `index`.
    pub fn range(&self, index: u64) -> (u64, u64) {
        let start = index * self.part_size;
        (start, (start + self.part_size).min(self.source.size))
    }
}

/// How a finished part contributes to the whole-object BLAKE3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartHash {
    /// The part is the whole object: its BLAKE3.
    Whole(Hash),
    /// Chaining values of the part's aligned subtrees (see `parthash`).
    Subtrees(Vec<Subtree>),
}

/// A part the target confirmed (`upload_parts`: key ‖ index → this).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDone {
    /// The target's id of the part (S3: its ETag).
    pub part_id: String,
    /// Its share of the whole-object hash.
    pub hash: PartHash,
    /// Its content-defined chunks (parts are chunked independently).
    pub chunks: Vec<ChunkRef>,
    /// The state of the MD5 over the object's bytes up to the end of this
    /// part, when the source publishes an MD5 the object is checked
    /// against (see `content::published`); a resume goes on from it.
    pub md5_after: Option<Vec<u8>>,
}

/// [`PartDone`] as format-1 records hold it (before `md5_after`).
#[derive(Deserialize)]
struct PartDoneV1 {
    part_id: String,
    hash: PartHash,
    chunks: Vec<ChunkRef>,
}

impl From<PartDoneV1> for PartDone {
    fn from(p: PartDoneV1) -> Self {
        Self {
            part_id: p.part_id,
            hash: p.hash,
            chunks: p.chunks,
            md5_after: None,
        }
    }
}

/// `upload_parts` key prefix of one object: key length u32 BE ‖ key, so
/// that no object's prefix is a prefix of another's.
fn parts_prefix(key: &str) -> Vec<u8> {
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(key.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn part_key(key: &str, index: u32) -> Vec<u8> {
    let mut k = parts_prefix(key);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn start_time(key: &str, v: &[u8]) -> Result<i64, Error> {
    <[u8; 8]>::try_from(v)
        .map(i64::from_be_bytes)
        .map_err(|_| Error::Corrupt(format!("upload start of {key:?}")))
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

impl Manifest {
    /// The upload in progress for `key`, if any.
    pub fn upload(&self, key: &str) -> Result<Option<UploadHead>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_UPLOADS)?, key.as_bytes())
            .map_err(db_err)?;
        v.map(|v| records::decode(&v).map_err(|e| Error::Corrupt(format!("upload {key:?}: {e}"))))
            .transpose()
    }

    /// Every upload in progress (few: at most the objects in flight when a
    /// run stopped).
    pub fn uploads(&self) -> Result<Vec<(String, UploadHead)>, Error> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_UPLOADS)?, IteratorMode::Start)
        {
            let (k, v) = item.map_err(db_err)?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let head = records::decode(&v).map_err(|e| Error::Corrupt(format!("{key:?}: {e}")))?;
            out.push((key, head));
        }
        Ok(out)
    }

    /// The parts of `key`'s upload the target has confirmed, by index.
    pub fn upload_parts(&self, key: &str) -> Result<BTreeMap<u32, PartDone>, Error> {
        let prefix = parts_prefix(key);
        let mut out = BTreeMap::new();
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_UPLOAD_PARTS)?,
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(db_err)?;
            let Some(index) = k.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let index = <[u8; 4]>::try_from(index)
                .map(u32::from_be_bytes)
                .map_err(|_| Error::Corrupt(format!("upload part key of {key:?}")))?;
            let part = records::decode_evolved::<PartDone, PartDoneV1>(&v)
                .map_err(|e| Error::Corrupt(format!("part {index} of {key:?}: {e}")))?;
            out.insert(index, part);
        }
        Ok(out)
    }

    fn stage_clear_upload(&self, batch: &mut WriteBatch, key: &str) -> Result<(), Error> {
        let prefix = parts_prefix(key);
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 5]);
        batch.delete_range_cf(cf(&self.db, CF_UPLOAD_PARTS)?, prefix, end);
        batch.delete_cf(cf(&self.db, CF_UPLOADS)?, key.as_bytes());
        Ok(())
    }

    /// An upload of `key` is about to be created: note it and the time
    /// (ms since the epoch), synced, so that one a crash leaves unrecorded
    /// at the target can be found.
    pub fn note_upload_start(&self, key: &str, at_ms: i64) -> Result<(), Error> {
        self.db
            .put_cf_opt(
                cf(&self.db, CF_UPLOAD_STARTS)?,
                key.as_bytes(),
                at_ms.to_be_bytes(),
                &synced(),
            )
            .map_err(db_err)
    }

    /// When an upload of `key` was last about to be created and not
    /// recorded since, if one was.
    pub fn upload_start(&self, key: &str) -> Result<Option<i64>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_UPLOAD_STARTS)?, key.as_bytes())
            .map_err(db_err)?;
        v.map(|v| start_time(key, &v)).transpose()
    }

    /// Every upload start not followed by a recorded upload id.
    pub fn upload_starts(&self) -> Result<Vec<(String, i64)>, Error> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_UPLOAD_STARTS)?, IteratorMode::Start)
        {
            let (k, v) = item.map_err(db_err)?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let at = start_time(&key, &v)?;
            out.push((key, at));
        }
        Ok(out)
    }

    /// Forget `key`'s upload start (what it may have left at the target is
    /// aborted, or cannot be looked for), synced.
    pub fn forget_upload_start(&self, key: &str) -> Result<(), Error> {
        self.db
            .delete_cf_opt(cf(&self.db, CF_UPLOAD_STARTS)?, key.as_bytes(), &synced())
            .map_err(db_err)
    }

    /// Record a new upload for `key` (replacing any earlier one, and its
    /// start unless `keep_start`: a create tried more than once may have
    /// left another upload), synced: from here on a crash leaves an upload
    /// this manifest knows about.
    pub fn begin_upload(
        &self,
        key: &str,
        head: &UploadHead,
        keep_start: bool,
    ) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        self.stage_clear_upload(&mut batch, key)?;
        if !keep_start {
            batch.delete_cf(cf(&self.db, CF_UPLOAD_STARTS)?, key.as_bytes());
        }
        batch.put_cf(
            cf(&self.db, CF_UPLOADS)?,
            key.as_bytes(),
            records::encode(head),
        );
        self.db.write_opt(batch, &synced()).map_err(db_err)
    }

    /// Record a part the target confirmed, synced.
    pub fn record_part(&self, key: &str, index: u32, part: &PartDone) -> Result<(), Error> {
        self.db
            .put_cf_opt(
                cf(&self.db, CF_UPLOAD_PARTS)?,
                part_key(key, index),
                records::encode_v2(part),
                &synced(),
            )
            .map_err(db_err)
    }

    /// Forget `key`'s upload (after it was aborted at the target), synced.
    pub fn drop_upload(&self, key: &str) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        self.stage_clear_upload(&mut batch, key)?;
        self.db.write_opt(batch, &synced()).map_err(db_err)
    }

    /// Commit an object whose multipart upload just completed: its record
    /// (as [`Manifest::commit_object`]) and the removal of the upload state,
    /// one synced batch.
    pub fn commit_upload(
        &self,
        key: &str,
        rec: &super::ObjectRecord,
        chunks: &[ChunkRef],
    ) -> Result<super::CommitStats, Error> {
        let _leaves = self.marked.shared();
        let (mut batch, stats, bucket) = self.stage_object(key, rec, chunks)?;
        self.stage_clear_upload(&mut batch, key)?;
        self.db.write_opt(batch, &synced()).map_err(db_err)?;
        self.marked.set(bucket);
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(size: u64) -> UploadHead {
        UploadHead {
            upload_id: "id-1".into(),
            source: SourceVersion {
                size,
                etag: Some("e".into()),
                version: None,
                last_modified_ms: 1,
            },
            if_match: Some("\"e\"".into()),
            part_size: 5 << 20,
            attrs_digest: Hash::of(b""),
            started_ms: 2,
        }
    }

    fn part(n: u8) -> PartDone {
        PartDone {
            part_id: format!("p{n}"),
            hash: PartHash::Whole(Hash::of(&[n])),
            chunks: vec![ChunkRef {
                hash: Hash::of(&[n]),
                len: 1,
            }],
            md5_after: n.is_multiple_of(2).then(|| vec![n; 89]),
        }
    }

    #[test]
    fn parts_recorded_before_md5_after_still_decode() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let m = Manifest::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        #[derive(Serialize)]
        struct V1<'a>(&'a str, &'a PartHash, &'a [ChunkRef]);
        let p = part(3);
        let old = records::encode(&V1(&p.part_id, &p.hash, &p.chunks));
        let cf = cf(&m.db, CF_UPLOAD_PARTS).unwrap_or_else(|e| panic!("{e}"));
        m.db.put_cf(cf, part_key("k", 3), old)
            .unwrap_or_else(|e| panic!("{e}"));
        let parts = m.upload_parts("k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parts.get(&3),
            Some(&PartDone {
                md5_after: None,
                ..p
            })
        );
    }

    #[test]
    fn parts_ranges_cover_the_object() {
        let h = head((5 << 20) * 2 + 7);
        assert_eq!(h.parts(), 3);
        assert_eq!(h.range(0), (0, 5 << 20));
        assert_eq!(h.range(2), (10 << 20, (10 << 20) + 7));
    }

    #[test]
    fn upload_state_round_trips_and_is_scoped_per_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let m = Manifest::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let ok = |r: Result<(), Error>| r.unwrap_or_else(|e| panic!("{e}"));
        ok(m.begin_upload("a", &head(10), false));
        ok(m.begin_upload("ab", &head(20), false));
        ok(m.record_part("a", 1, &part(1)));
        ok(m.record_part("a", 0, &part(0)));
        ok(m.record_part("ab", 0, &part(9)));
        let parts = m.upload_parts("a").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parts.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(parts.get(&1), Some(&part(1)));
        assert_eq!(m.upload("a").ok().flatten(), Some(head(10)));
        assert_eq!(m.uploads().map(|u| u.len()).ok(), Some(2));
        // A new upload of the same key starts with no parts.
        ok(m.begin_upload("a", &head(11), false));
        assert!(m.upload_parts("a").is_ok_and(|p| p.is_empty()));
        ok(m.drop_upload("a"));
        assert_eq!(m.upload("a").ok().flatten(), None);
        assert_eq!(m.upload_parts("ab").map(|p| p.len()).ok(), Some(1));
    }

    #[test]
    fn an_upload_start_lasts_until_its_id_is_recorded_or_it_is_forgotten() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let m = Manifest::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let ok = |r: Result<(), Error>| r.unwrap_or_else(|e| panic!("{e}"));
        ok(m.note_upload_start("a", 7));
        ok(m.note_upload_start("b", 8));
        assert_eq!(m.upload_start("a").ok().flatten(), Some(7));
        ok(m.begin_upload("a", &head(10), true));
        assert_eq!(m.upload_start("a").ok().flatten(), Some(7));
        ok(m.begin_upload("a", &head(10), false));
        assert_eq!(m.upload_start("a").ok().flatten(), None);
        assert_eq!(m.upload_starts().ok(), Some(vec![("b".to_owned(), 8)]));
        // Reopened: the start survives a restart.
        drop(m);
        let m = Manifest::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.upload_start("b").ok().flatten(), Some(8));
        ok(m.forget_upload_start("b"));
        assert!(m.upload_starts().is_ok_and(|s| s.is_empty()));
    }
}
