//! Live counters of a pass, shared between workers and the progress display.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// Counters, updated as work happens.
#[derive(Debug, Default)]
pub struct Stats {
    /// Objects returned by the source listing.
    pub listed: AtomicU64,
    /// Bytes of the objects listed.
    pub listed_bytes: AtomicU64,
    /// 1 once the listing is complete.
    pub listing_done: AtomicU64,
    /// Objects written to the target.
    pub copied: AtomicU64,
    /// Objects already replicated.
    pub unchanged: AtomicU64,
    /// Objects materialised by server-side copy.
    pub deduplicated: AtomicU64,
    /// Objects found at the target with the source's bytes and attributes
    /// though the manifest had no record of them: recorded, not written.
    pub adopted: AtomicU64,
    /// Object bytes read back from the target to compare (adoption).
    pub bytes_compared: AtomicU64,
    /// Objects that failed.
    pub failed: AtomicU64,
    /// Objects listed but gone when read (deleted, or directory markers).
    pub vanished: AtomicU64,
    /// Dry run: objects that would be copied.
    pub would_copy: AtomicU64,
    /// Bytes of objects finished (any outcome but failure).
    pub done_bytes: AtomicU64,
    /// Object bytes read from the source.
    pub bytes_read: AtomicU64,
    /// Object bytes written to the target.
    pub bytes_written: AtomicU64,
    /// Bytes not uploaded thanks to server-side copy.
    pub bytes_saved: AtomicU64,
    /// Bytes chunked this pass.
    pub chunk_bytes: AtomicU64,
    /// Of those, bytes in chunks the index had never seen.
    pub chunk_bytes_new: AtomicU64,
    /// Multipart uploads continued from an earlier run.
    pub uploads_resumed: AtomicU64,
    /// Bytes of parts an earlier run had uploaded: neither read nor written
    /// again.
    pub bytes_resumed: AtomicU64,
    /// Multipart parts the target confirmed and the manifest recorded.
    pub parts_recorded: AtomicU64,
    /// Uploads started over because the source changed under them.
    pub uploads_restarted: AtomicU64,
    /// Multipart uploads a stopped run created at the target but never
    /// recorded, found by their key and aborted.
    pub uploads_unrecorded_aborted: AtomicU64,
    /// Uploads paused at a part boundary by a stop request; the next run
    /// continues them.
    pub paused: AtomicU64,
    /// Listed keys left out by the include / exclude patterns.
    pub excluded: AtomicU64,
    /// Objects deleted at the target because the source no longer has them.
    pub deleted: AtomicU64,
    /// Answers 429 / 503 (slow down) from either store this pass.
    pub throttled: AtomicU64,
    /// Objects allowed at once now (lowered while stores throttle).
    pub concurrency: AtomicU64,
    /// Lowest value `concurrency` reached this pass.
    pub concurrency_min: AtomicU64,
    /// Highest value `concurrency` reached this pass (how far the window
    /// grew while throughput rose).
    pub concurrency_max: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// See [`Stats::listed`].
    pub listed: u64,
    /// See [`Stats::listed_bytes`].
    pub listed_bytes: u64,
    /// See [`Stats::listing_done`].
    pub listing_done: bool,
    /// See [`Stats::copied`].
    pub copied: u64,
    /// See [`Stats::unchanged`].
    pub unchanged: u64,
    /// See [`Stats::deduplicated`].
    pub deduplicated: u64,
    /// See [`Stats::adopted`].
    pub adopted: u64,
    /// See [`Stats::bytes_compared`].
    pub bytes_compared: u64,
    /// See [`Stats::failed`].
    pub failed: u64,
    /// See [`Stats::vanished`].
    pub vanished: u64,
    /// See [`Stats::would_copy`].
    pub would_copy: u64,
    /// See [`Stats::done_bytes`].
    pub done_bytes: u64,
    /// See [`Stats::bytes_read`].
    pub bytes_read: u64,
    /// See [`Stats::bytes_written`].
    pub bytes_written: u64,
    /// See [`Stats::bytes_saved`].
    pub bytes_saved: u64,
    /// See [`Stats::chunk_bytes`].
    pub chunk_bytes: u64,
    /// See [`Stats::chunk_bytes_new`].
    pub chunk_bytes_new: u64,
    /// See [`Stats::uploads_resumed`].
    pub uploads_resumed: u64,
    /// See [`Stats::bytes_resumed`].
    pub bytes_resumed: u64,
    /// See [`Stats::parts_recorded`].
    pub parts_recorded: u64,
    /// See [`Stats::uploads_restarted`].
    pub uploads_restarted: u64,
    /// See [`Stats::uploads_unrecorded_aborted`].
    pub uploads_unrecorded_aborted: u64,
    /// See [`Stats::paused`].
    pub paused: u64,
    /// See [`Stats::excluded`].
    pub excluded: u64,
    /// See [`Stats::deleted`].
    pub deleted: u64,
    /// See [`Stats::throttled`].
    pub throttled: u64,
    /// See [`Stats::concurrency`].
    pub concurrency: u64,
    /// See [`Stats::concurrency_min`].
    pub concurrency_min: u64,
    /// See [`Stats::concurrency_max`].
    pub concurrency_max: u64,
}

impl Stats {
    /// Read every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            listed: self.listed.load(Relaxed),
            listed_bytes: self.listed_bytes.load(Relaxed),
            listing_done: self.listing_done.load(Relaxed) != 0,
            copied: self.copied.load(Relaxed),
            unchanged: self.unchanged.load(Relaxed),
            deduplicated: self.deduplicated.load(Relaxed),
            adopted: self.adopted.load(Relaxed),
            bytes_compared: self.bytes_compared.load(Relaxed),
            failed: self.failed.load(Relaxed),
            vanished: self.vanished.load(Relaxed),
            would_copy: self.would_copy.load(Relaxed),
            done_bytes: self.done_bytes.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            bytes_saved: self.bytes_saved.load(Relaxed),
            chunk_bytes: self.chunk_bytes.load(Relaxed),
            chunk_bytes_new: self.chunk_bytes_new.load(Relaxed),
            uploads_resumed: self.uploads_resumed.load(Relaxed),
            bytes_resumed: self.bytes_resumed.load(Relaxed),
            parts_recorded: self.parts_recorded.load(Relaxed),
            uploads_restarted: self.uploads_restarted.load(Relaxed),
            uploads_unrecorded_aborted: self.uploads_unrecorded_aborted.load(Relaxed),
            paused: self.paused.load(Relaxed),
            excluded: self.excluded.load(Relaxed),
            deleted: self.deleted.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            concurrency: self.concurrency.load(Relaxed),
            concurrency_min: self.concurrency_min.load(Relaxed),
            concurrency_max: self.concurrency_max.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// Objects finished, whatever the outcome.
    pub fn finished(&self) -> u64 {
        self.copied
            + self.unchanged
            + self.deduplicated
            + self.adopted
            + self.failed
            + self.vanished
            + self.would_copy
            + self.paused
    }

    /// Chunk dedup ratio: bytes chunked / bytes in new chunks (1.0 = none).
    pub fn dedup_ratio(&self) -> f64 {
        if self.chunk_bytes_new == 0 {
            1.0
        } else {
            self.chunk_bytes as f64 / self.chunk_bytes_new as f64
        }
    }
}
