//! Reading the feed container through object_store, from a cursor: the
//! consumable segments in hour order, each shard's chunk files in number
//! order, each chunk from the block after the last one read.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::segments::{FeedMeta, SEGMENTS_JSON, SEGMENTS_PREFIX, Segment, chunk_number};
use super::{Event, read_chunk, segments::segment_hour};
use crate::base::error::{Error, store_err};

/// Where reading stopped: the segment being read and, per shard, the
/// chunk file and the offset of its next unread block. Kept in the
/// manifest; a crash re-reads at most the blocks after it (events are
/// hints: reading one twice costs a HEAD). Stored by
/// [`Manifest::set_feed_cursor`](crate::manifest::Manifest::set_feed_cursor).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Begin of the segment being read (ms since the epoch).
    pub segment_ms: i64,
    /// Per shard, in the segment's order.
    pub shards: Vec<ShardPos>,
}

/// One shard's position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPos {
    /// Chunk file number (`00003.avro` → 3).
    pub chunk: u32,
    /// Offset of the next block to read in it (0: its first block).
    pub offset: u64,
}

/// What one poll read.
#[derive(Debug, Default)]
pub struct Polled {
    /// The events, control records left out, segment by segment.
    pub events: Vec<Event>,
    /// Control records skipped.
    pub controls: usize,
    /// Where the next poll starts.
    pub cursor: Cursor,
    /// Every event before this has been read, unless `limited`:
    /// `lastConsumable`, or the begin of an earlier hour not closed yet.
    pub consumable_until: DateTime<Utc>,
    /// The limit stopped the poll: there is more to read now.
    pub limited: bool,
}

/// The `$blobchangefeed` container of an account.
pub struct FeedReader {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for FeedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedReader")
            .field("store", &self.store.to_string())
            .finish()
    }
}

/// A feed file or the feed container not found is the feed's problem (not
/// enabled on the account, or a file removed under the reader), named;
/// other store errors are the store's.
fn absent(path: &str, e: object_store::Error, op: &'static str) -> Error {
    // A listing of a container that does not exist is not a NotFound in
    // object_store's Azure client: only Azure's error code tells.
    let no_container = crate::base::error::error_chain(&e)
        .to_ascii_lowercase()
        .contains("containernotfound");
    let not_found = matches!(e, object_store::Error::NotFound { .. });
    if no_container || (not_found && path == SEGMENTS_JSON) {
        feed_err(
            path,
            "not found: is the change feed enabled on the source account? (Azure creates $blobchangefeed and meta/segments.json once it is)",
        )
    } else if not_found {
        feed_err(path, "not found: removed while being read (retention?)")
    } else {
        store_err(op, e)
    }
}

fn feed_err(path: &str, detail: impl Into<String>) -> Error {
    Error::ChangeFeed {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

impl FeedReader {
    /// A reader of the feed held by `store` (the `$blobchangefeed`
    /// container, or any copy of its layout).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    async fn get(&self, path: &str) -> Result<bytes::Bytes, Error> {
        let loc = Path::from(path);
        let got = self
            .store
            .get(&loc)
            .await
            .map_err(|e| absent(path, e, "read change feed"))?;
        got.bytes()
            .await
            .map_err(|e| absent(path, e, "read change feed"))
    }

    /// `meta/segments.json`.
    pub async fn meta(&self) -> Result<FeedMeta, Error> {
        let b = self.get(SEGMENTS_JSON).await?;
        FeedMeta::parse(&b).map_err(|d| feed_err(SEGMENTS_JSON, d))
    }

    /// The objects under `prefix` whose path `name` reads, with it.
    async fn named<T: Send>(
        &self,
        prefix: &str,
        name: fn(&str) -> Option<T>,
    ) -> Result<Vec<(T, String)>, Error> {
        let prefix = Path::from(prefix.trim_end_matches('/'));
        self.store
            .list(Some(&prefix))
            .map_err(|e| absent(prefix.as_ref(), e, "list change feed"))
            .try_filter_map(|m| async move {
                let p = m.location.to_string();
                Ok(name(&p).map(|t| (t, p)))
            })
            .try_collect()
            .await
    }

    /// Every segment manifest that begins at or after `from`, in hour
    /// order, with its path.
    pub async fn segments(
        &self,
        from: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, String)>, Error> {
        let mut found = self.named(SEGMENTS_PREFIX, segment_hour).await?;
        found.retain(|(t, _)| *t >= from);
        found.sort();
        Ok(found)
    }

    /// Refuse a cursor the feed no longer reaches: Azure deletes segments
    /// older than the feed's retention, oldest first, so the feed still
    /// holds every change after `cursor` only if it holds a segment that
    /// begins at or before it (the cursor's own segment, when the cursor
    /// is inside one). Otherwise changes in between may be lost — retention
    /// passed the cursor, or the feed was enabled after the full pass that
    /// anchored it started — and only a complete full pass (which moves
    /// the cursor past them) makes the feed usable again.
    pub async fn check_reach(&self, cursor: &Cursor) -> Result<(), Error> {
        let at = DateTime::<Utc>::from_timestamp_millis(cursor.segment_ms)
            .ok_or_else(|| feed_err(SEGMENTS_PREFIX, "cursor out of range"))?;
        let mut found = self.named(SEGMENTS_PREFIX, segment_hour).await?;
        // Azure keeps an empty placeholder hour at 1601-01-01 (the Windows
        // epoch): it says nothing about what retention removed.
        found.retain(|(t, _)| t.year() > 1601);
        let oldest = found.iter().map(|(t, _)| *t).min();
        let reached = if cursor.shards.is_empty() {
            oldest.is_some_and(|t| t <= at)
        } else {
            found.iter().any(|(t, _)| *t == at)
        };
        if reached {
            return Ok(());
        }
        let held = match oldest {
            Some(t) => format!("its oldest segment begins at {t}"),
            None => "it holds no segment".to_owned(),
        };
        Err(feed_err(
            SEGMENTS_PREFIX,
            format!(
                "gap: the cursor is at {at} and {held}: changes in between may be lost (retention passed the cursor, or the feed was enabled after the last complete full pass started); a complete full pass moves the cursor past the gap"
            ),
        ))
    }

    /// A shard's chunk files in number order, refused when the numbers
    /// have a hole (a chunk file missing: events lost).
    pub async fn chunks(&self, shard: &str) -> Result<Vec<(u32, String)>, Error> {
        let mut found = self.named(shard, chunk_number).await?;
        found.sort();
        for (i, (n, p)) in found.iter().enumerate() {
            if u64::from(*n) != i as u64 {
                return Err(feed_err(
                    p,
                    format!("chunk file {n} where {i} was expected: a chunk file is missing"),
                ));
            }
        }
        Ok(found)
    }

    /// Read from `cursor` up to `lastConsumable` (the segments begun
    /// before it and closed; it stops at the first one that is not), or
    /// until the block that brings the events to `limit`: the returned
    /// cursor then points inside the segment.
    pub async fn poll(&self, cursor: &Cursor, limit: usize) -> Result<Polled, Error> {
        let meta = self.meta().await?;
        let from = DateTime::<Utc>::from_timestamp_millis(cursor.segment_ms)
            .ok_or_else(|| feed_err(SEGMENTS_JSON, "cursor out of range"))?;
        let mut out = Polled {
            cursor: cursor.clone(),
            consumable_until: meta.last_consumable,
            ..Polled::default()
        };
        for (begin, path) in self.segments(from).await? {
            let seg = Segment::parse(&self.get(&path).await?).map_err(|d| feed_err(&path, d))?;
            if seg.begin != begin {
                return Err(feed_err(
                    &path,
                    format!("begins at {}, its path says {begin}", seg.begin),
                ));
            }
            if !seg.consumable(meta.last_consumable) {
                // Not closed yet (or past lastConsumable): nothing from its
                // begin on was read, whatever lastConsumable says.
                out.consumable_until = out.consumable_until.min(begin);
                break;
            }
            let shards = seg.shard_prefixes();
            if out.cursor.segment_ms != begin.timestamp_millis() {
                out.cursor = Cursor {
                    segment_ms: begin.timestamp_millis(),
                    shards: Vec::new(),
                };
            }
            out.cursor.shards.resize(shards.len(), ShardPos::default());
            for (i, shard) in shards.iter().enumerate() {
                let mut at = out.cursor.shards[i].clone();
                let full = self.read_shard(shard, &mut at, limit, &mut out).await?;
                out.cursor.shards[i] = at;
                if !full {
                    out.limited = true;
                    return Ok(out);
                }
            }
            // Closed and read to its end: the cursor moves past it.
            let secs = i64::try_from(seg.interval_secs).unwrap_or(3600);
            out.cursor = Cursor {
                segment_ms: (begin + chrono::Duration::seconds(secs)).timestamp_millis(),
                shards: Vec::new(),
            };
        }
        Ok(out)
    }

    /// Reads a shard from `at` into `out`; `false` when `limit` stopped it
    /// before its end.
    async fn read_shard(
        &self,
        shard: &str,
        at: &mut ShardPos,
        limit: usize,
        out: &mut Polled,
    ) -> Result<bool, Error> {
        for (n, path) in self.chunks(shard).await? {
            if n < at.chunk {
                continue;
            }
            if out.events.len() >= limit {
                return Ok(false);
            }
            let bytes = self.get(&path).await?;
            let from = if n == at.chunk { at.offset } else { 0 };
            let from = usize::try_from(from).unwrap_or(usize::MAX);
            let room = limit - out.events.len();
            let r = read_chunk(&bytes, from, room).map_err(|d| feed_err(&path, d))?;
            let stopped = out.events.len() + r.events.len() >= limit && r.next < bytes.len();
            if r.next < bytes.len() && !stopped {
                // A closed segment's chunk is whole: bytes after its last
                // complete block are damage.
                return Err(feed_err(
                    &path,
                    format!(
                        "{} bytes after the last complete block, at offset {}",
                        bytes.len() - r.next,
                        r.next
                    ),
                ));
            }
            out.events.extend(r.events);
            out.controls += r.controls;
            *at = ShardPos {
                chunk: n,
                offset: r.next as u64,
            };
            if stopped {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
