//! The manifest: every RocksDB key of the state directory lives here.
//!
//! Column families (all keys and values documented in ARCHITECTURE.md):
//! - `meta`: `schema_version` → u32 BE.
//! - `objects`: relative object key (UTF-8) → [`ObjectRecord`].
//! - `chunklists`: content BLAKE3 (32 B) → postcard `Vec<ChunkRef>`, for
//!   content of two chunks or more (fewer: derived from the record).
//! - `chunks`: chunk BLAKE3 (32 B) → size u32 LE ‖ refs i64 LE (merge: add).
//! - `content`: content BLAKE3 (32 B) ‖ size u64 BE → object key holding it.
//! - `content_head`: size u64 BE ‖ first chunk BLAKE3 → content BLAKE3, to
//!   find dedup candidates for large objects before their hash is known
//!   (objects of two chunks or more; one chunk: the chunk is the content).
//! - `merkle_leaf`, `merkle_node`, `merkle_dirty`: see [`merkle`].
//! - `uploads`, `upload_parts`: resumable multipart uploads, see [`uploads`].
//! - `delete_candidates`: keys the listing no longer shows (`missing.rs`).
//! - `counters`: `objects` → i64 LE, the exact number of records (merge: add).

pub mod diff;
mod index;
pub mod merkle;
mod meta;
mod missing;
mod pending;
pub mod records;
mod shard;
mod unverified;
pub mod uploads;
mod verified;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch};

use crate::base::error::Error;
use crate::content::chunk::ChunkRef;
use crate::content::hash::Hash;
pub use meta::{LastCompletePass, LastPass};
pub use pending::Pending;
pub use records::{ObjectRecord, ObjectState, SourceVersion, normalize_etag};
pub use shard::{Merged, merge, shard_of};
pub use unverified::LastVerified;
pub use uploads::{PartDone, PartHash, UploadHead};
pub use verified::{DeepVerified, FoundTree};

/// Version of the on-disk layout this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// RocksDB's block cache, which the memtables are charged to as well.
const CACHE_BYTES: usize = 48 << 20;
/// All memtables together: a flush starts when they pass this.
const MEMTABLE_BYTES: usize = 24 << 20;

const CF_META: &str = "meta";
const CF_OBJECTS: &str = "objects";
const CF_CHUNKLISTS: &str = "chunklists";
const CF_CHUNKS: &str = "chunks";
const CF_CONTENT: &str = "content";
const CF_CONTENT_HEAD: &str = "content_head";
const CF_MERKLE_LEAF: &str = "merkle_leaf";
const CF_MERKLE_NODE: &str = "merkle_node";
const CF_MERKLE_DIRTY: &str = "merkle_dirty";
const CF_UPLOADS: &str = "uploads";
const CF_UPLOAD_PARTS: &str = "upload_parts";
const CF_UPLOAD_STARTS: &str = "upload_starts";
const CF_DELETE_CANDIDATES: &str = "delete_candidates";
const CF_DEEP_VERIFIED: &str = "deep_verified";
const CF_VERIFY_LEAF: &str = "verify_leaf";
const CF_LISTED: &str = "listed";
const CF_COUNTERS: &str = "counters";
const CF_CHANGES_PENDING: &str = "changes_pending";
const CF_UNVERIFIED: &str = "unverified";
const ALL_CFS: [&str; 19] = [
    CF_META,
    CF_OBJECTS,
    CF_CHUNKLISTS,
    CF_CHUNKS,
    CF_CONTENT,
    CF_CONTENT_HEAD,
    CF_MERKLE_LEAF,
    CF_MERKLE_NODE,
    CF_MERKLE_DIRTY,
    CF_UPLOADS,
    CF_UPLOAD_PARTS,
    CF_UPLOAD_STARTS,
    CF_DELETE_CANDIDATES,
    CF_DEEP_VERIFIED,
    CF_VERIFY_LEAF,
    CF_LISTED,
    CF_COUNTERS,
    CF_CHANGES_PENDING,
    CF_UNVERIFIED,
];
/// `counters` key: records in `objects`, kept in the same batches.
const COUNT_OBJECTS: &[u8] = b"objects";
const KEY_SCHEMA: &[u8] = b"schema_version";
const KEY_SOURCE: &[u8] = b"source_url";
const KEY_TARGET: &[u8] = b"target_url";
const KEY_CHUNKING: &[u8] = b"chunking";
const KEY_LISTING_CHECKPOINT: &[u8] = b"listing_checkpoint";
const KEY_LISTING_CUTS: &[u8] = b"listing_cuts";
const KEY_FEED_CURSOR: &[u8] = b"feed_cursor";
const KEY_LAST_VERIFIED: &[u8] = b"last_verified";
const KEY_FEED_COVERED: &[u8] = b"feed_covered";
const KEY_LAST_COMPLETE_PASS: &[u8] = b"last_complete_pass";
const KEY_LAST_PASS: &[u8] = b"last_pass";
const KEY_SHARD: &[u8] = b"shard";
const KEY_SHARD_RANGES: &[u8] = b"shard_ranges";

fn db_err(e: rocksdb::Error) -> Error {
    Error::Db { source: e }
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, Error> {
    db.cf_handle(name)
        .ok_or_else(|| Error::Corrupt(format!("column family {name} missing")))
}

/// What committing one object changed in the chunk index.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    /// Bytes of chunks the index had never seen.
    pub new_chunk_bytes: u64,
}

/// A target object that may hold the same content as one being read.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Key at the target holding the content.
    pub holder: String,
    /// Its whole-content BLAKE3.
    pub content: Hash,
    /// Its chunk list, to compare chunk by chunk while reading.
    pub chunks: Vec<ChunkRef>,
}

/// The open state directory.
#[derive(Debug)]
pub struct Manifest {
    db: DB,
    path: PathBuf,
    read_only: bool,
    /// Merkle buckets already marked dirty ([`merkle::Marked`]).
    marked: merkle::Marked,
}

impl Manifest {
    /// Open (creating if needed) the state directory. Refuses a directory
    /// written by another schema version and one used by another process.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, false)
    }

    /// Open an existing state directory to read only, even while a running
    /// passeur holds it (the view is the one on disk at open time).
    pub fn open_read_only(path: &Path) -> Result<Self, Error> {
        if !path.join("CURRENT").is_file() {
            return Err(Error::StateDir {
                path: path.to_owned(),
                detail: "no passeur state here".into(),
            });
        }
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, read_only: bool) -> Result<Self, Error> {
        let state_err = |detail: String| Error::StateDir {
            path: path.to_owned(),
            detail,
        };
        if path.exists() && !path.is_dir() {
            return Err(state_err("exists and is not a directory".into()));
        }
        if !read_only {
            std::fs::create_dir_all(path).map_err(|e| state_err(format!("cannot create: {e}")))?;
            let probe = path.join(".write-probe");
            std::fs::write(&probe, b"")
                .and_then(|()| std::fs::remove_file(&probe))
                .map_err(|e| state_err(format!("not writable: {e}")))?;
        }

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        // A crash may leave a torn record at the end of the write-ahead
        // log, which recovery drops (rule 3 says what that can lose);
        // damage before the end is refused, never silently skipped along
        // with every record after it (RocksDB's default).
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        // RocksDB's memory has one bound whatever the number of objects:
        // the memtables of all column families (flushed when they pass
        // 24 MiB together) are charged to the one 48 MiB LRU cache that
        // also holds data, index and filter blocks.
        let cache = rocksdb::Cache::new_lru_cache(CACHE_BYTES);
        opts.set_write_buffer_manager(
            &rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(
                MEMTABLE_BYTES,
                false,
                cache.clone(),
            ),
        );
        // Open every column family present too, so that a directory written
        // by another version opens far enough to report its schema version.
        let mut names: Vec<String> = if read_only {
            Vec::new()
        } else {
            ALL_CFS.iter().map(|s| (*s).to_owned()).collect()
        };
        for existing in DB::list_cf(&opts, path).unwrap_or_default() {
            if !names.contains(&existing) {
                names.push(existing);
            }
        }
        let cfs = names.into_iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_write_buffer_size(MEMTABLE_BYTES / 4);
            // A Bloom filter over each memtable's whole keys: most lookups
            // of a first pass are of keys not recorded yet (the object, its
            // content, its chunks), and without it each one walked the
            // skip list of up to 6 MiB of entries.
            o.set_memtable_prefix_bloom_ratio(0.05);
            o.set_memtable_whole_key_filtering(true);
            // Indexes and Bloom filters are cut into 4 KiB partitions that
            // live in the cache like data blocks; only their small top
            // level stays pinned. Whole-file index and filter blocks (MiBs
            // at 10^6 keys) were evicted by data blocks and read, checked
            // and decompressed again by every lookup.
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_bloom_filter(10.0, false);
            table.set_partition_filters(true);
            table.set_metadata_block_size(4096);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_top_level_index_and_filter(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            o.set_block_based_table_factory(&table);
            if name == CF_CHUNKS {
                o.set_merge_operator_associative("chunk_refs", records::merge_chunk_refs);
                // A popular chunk (zero blocks, shared headers, many equal
                // objects) gets one merge operand per reference; reads would
                // walk them all. Fold them into a value every 64.
                o.set_max_successive_merges(64);
            }
            if name == CF_COUNTERS {
                o.set_merge_operator_associative("counter_add", merge_counter);
            }
            ColumnFamilyDescriptor::new(name, o)
        });
        let opened = if read_only {
            DB::open_cf_descriptors_read_only(&opts, path, cfs, false)
        } else {
            DB::open_cf_descriptors(&opts, path, cfs)
        };
        let db = opened.map_err(|e| {
            // RocksDB reports its LOCK file held by another process only as
            // an I/O error's text: this is the one place that reads it.
            if e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("lock file") {
                Error::StateInUse {
                    path: path.to_path_buf(),
                }
            } else {
                state_err(format!(
                    "cannot open: {}",
                    crate::base::error::one_line(e.as_ref())
                ))
            }
        })?;
        let me = Self {
            db,
            path: path.to_owned(),
            read_only,
            marked: merkle::Marked::new(),
        };
        match me.schema_version()? {
            None if read_only => return Err(state_err("no passeur state here".into())),
            None => me.set_schema_version(SCHEMA_VERSION)?,
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(Error::SchemaMismatch {
                    path: path.to_owned(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        }
        if !read_only {
            me.init_object_count()?;
        }
        Ok(me)
    }

    /// Count the records once if the counter is absent (a directory written
    /// before it existed); from then on every batch that adds or removes a
    /// record adjusts it.
    fn init_object_count(&self) -> Result<(), Error> {
        let counters = cf(&self.db, CF_COUNTERS)?;
        if self
            .db
            .get_cf(counters, COUNT_OBJECTS)
            .map_err(db_err)?
            .is_some()
        {
            return Ok(());
        }
        let mut n: i64 = 0;
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_OBJECTS)?, IteratorMode::Start)
        {
            item.map_err(db_err)?;
            n += 1;
        }
        self.db
            .put_cf(counters, COUNT_OBJECTS, n.to_le_bytes())
            .map_err(db_err)
    }

    /// Exactly how many objects the manifest records.
    pub fn object_count(&self) -> Result<u64, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_COUNTERS)?, COUNT_OBJECTS)
            .map_err(db_err)?;
        match v {
            Some(v) => Ok(u64::try_from(parse_counter(&v)).unwrap_or(0)),
            // Read-only view of a directory written before the counter.
            None => Ok(self.objects().count() as u64),
        }
    }

    /// The directory this manifest lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of one object.
    pub fn object(&self, key: &str) -> Result<Option<ObjectRecord>, Error> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_OBJECTS)?, key.as_bytes())
            .map_err(db_err)?;
        v.map(|v| records::decode(&v).map_err(|e| Error::Corrupt(format!("object {key:?}: {e}"))))
            .transpose()
    }

    /// All object records in key order (streamed from disk).
    pub fn objects(&self) -> impl Iterator<Item = Result<(String, ObjectRecord), Error>> + '_ {
        let iter = cf(&self.db, CF_OBJECTS).map(|c| self.db.iterator_cf(c, IteratorMode::Start));
        let (ok, err) = match iter {
            Ok(i) => (Some(i), None),
            Err(e) => (None, Some(Err(e))),
        };
        err.into_iter().chain(ok.into_iter().flatten().map(|item| {
            let (k, v) = item.map_err(db_err)?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let rec = records::decode(&v).map_err(|e| Error::Corrupt(format!("{key:?}: {e}")))?;
            Ok((key, rec))
        }))
    }

    /// Record one replicated object in a single atomic batch: its record, its
    /// chunk list, chunk reference counts, the content index and its Merkle
    /// leaf.
    pub fn commit_object(
        &self,
        key: &str,
        rec: &ObjectRecord,
        chunks: &[ChunkRef],
    ) -> Result<CommitStats, Error> {
        let _leaves = self.marked.shared();
        let (batch, stats, bucket) = self.stage_object(key, rec, chunks)?;
        self.db.write(batch).map_err(db_err)?;
        self.marked.set(bucket);
        Ok(stats)
    }

    fn stage_object(
        &self,
        key: &str,
        rec: &ObjectRecord,
        chunks: &[ChunkRef],
    ) -> Result<(WriteBatch, CommitStats, u16), Error> {
        let db = &self.db;
        let mut batch = WriteBatch::default();
        let mut stats = CommitStats::default();
        let old = self.object(key)?;
        if old.is_none() {
            batch.merge_cf(cf(db, CF_COUNTERS)?, COUNT_OBJECTS, 1i64.to_le_bytes());
        }
        // The same content cut into another number of chunks (another part
        // size) is a new list too: a list of one chunk is derived from the
        // record's count, so the count must follow the references.
        if old.as_ref().map(|o| (o.blake3, o.chunks)) != Some((rec.blake3, rec.chunks)) {
            if let Some(old) = &old {
                for c in self.chunk_list(old)?.unwrap_or_default() {
                    batch.merge_cf(
                        cf(db, CF_CHUNKS)?,
                        c.hash.as_bytes(),
                        records::chunk_value(c.len, -1),
                    );
                }
            }
            let chunks_cf = cf(db, CF_CHUNKS)?;
            let mut seen = HashSet::new();
            for c in chunks {
                if seen.insert(c.hash) {
                    let known = db
                        .get_cf(chunks_cf, c.hash.as_bytes())
                        .map_err(db_err)?
                        .and_then(|v| records::parse_chunk_value(&v))
                        .is_some_and(|(_, refs)| refs > 0);
                    if !known {
                        stats.new_chunk_bytes += u64::from(c.len);
                    }
                }
                batch.merge_cf(chunks_cf, c.hash.as_bytes(), records::chunk_value(c.len, 1));
            }
            // One chunk or none: the list follows from the record
            // ([`Manifest::chunk_list`]).
            if chunks.len() > 1 {
                batch.put_cf(
                    cf(db, CF_CHUNKLISTS)?,
                    rec.blake3.as_bytes(),
                    records::encode(&chunks),
                );
            }
        }
        batch.put_cf(cf(db, CF_OBJECTS)?, key.as_bytes(), records::encode(rec));
        batch.put_cf(
            cf(db, CF_CONTENT)?,
            content_key(&rec.blake3, rec.source.size),
            key.as_bytes(),
        );
        // One chunk: its hash is the content's, which large-object dedup
        // looks up directly ([`Manifest::large_candidate`]).
        if let (Some(first), true) = (chunks.first(), chunks.len() > 1) {
            batch.put_cf(
                cf(db, CF_CONTENT_HEAD)?,
                head_key(rec.source.size, &first.hash),
                rec.blake3.as_bytes(),
            );
        }
        let bucket = merkle::stage_leaf(
            db,
            &mut batch,
            key,
            rec.source.size,
            &rec.blake3,
            &self.marked,
        );
        Ok((batch, stats, bucket))
    }

    /// Forget an object (used when it is deleted from the target).
    pub fn remove_object(&self, key: &str) -> Result<(), Error> {
        let db = &self.db;
        let _leaves = self.marked.shared();
        let mut batch = WriteBatch::default();
        if let Some(old) = self.object(key)? {
            batch.merge_cf(cf(db, CF_COUNTERS)?, COUNT_OBJECTS, (-1i64).to_le_bytes());
            for c in self.chunk_list(&old)?.unwrap_or_default() {
                batch.merge_cf(
                    cf(db, CF_CHUNKS)?,
                    c.hash.as_bytes(),
                    records::chunk_value(c.len, -1),
                );
            }
        }
        batch.delete_cf(cf(db, CF_OBJECTS)?, key.as_bytes());
        merkle::stage_remove(db, &mut batch, key);
        db.write(batch).map_err(db_err)
    }

    /// Bring the Merkle tree up to date and return the dataset root.
    pub fn merkle_root(&self) -> Result<Hash, Error> {
        merkle::recompute(&self.db, &self.marked)
    }

    /// A Merkle node (level 0 root, 1, or 2 bucket); call after
    /// [`Manifest::merkle_root`].
    pub fn merkle_node(&self, level: u8, index: u16) -> Result<Hash, Error> {
        merkle::node(&self.db, level, index)
    }

    /// Make everything written so far durable (fsync the WAL).
    pub fn sync(&self) -> Result<(), Error> {
        self.db.flush_wal(true).map_err(db_err)
    }

    /// Make everything written so far durable and move the memtables to
    /// table files (end of a pass): the next open replays no write-ahead
    /// log, which after a first pass over 10⁶ objects is most of a no-op
    /// pass's start.
    pub fn settle(&self) -> Result<(), Error> {
        self.sync()?;
        let cfs = ALL_CFS
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .collect::<Vec<_>>();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .map_err(db_err)
    }
}

fn parse_counter(v: &[u8]) -> i64 {
    <[u8; 8]>::try_from(v).map_or(0, i64::from_le_bytes)
}

/// Merge operator of `counters`: values and operands are i64 LE deltas.
fn merge_counter(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut n = existing.map_or(0, parse_counter);
    for op in operands {
        n = n.saturating_add(parse_counter(op));
    }
    Some(n.to_le_bytes().to_vec())
}

fn head_key(size: u64, first: &Hash) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&size.to_be_bytes());
    k[8..].copy_from_slice(first.as_bytes());
    k
}

fn content_key(content: &Hash, size: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(content.as_bytes());
    k[32..].copy_from_slice(&size.to_be_bytes());
    k
}

#[cfg(test)]
mod tests;
