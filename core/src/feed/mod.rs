//! The Azure Blob change feed as a source of changed keys (issue 14).
//!
//! Azure records every create, overwrite, property change and delete of
//! an account in the `$blobchangefeed` container: hourly segments
//! ([`segments`]) of per-shard Avro chunk files ([`avro`]) of events
//! ([`event`]). passeur takes an event as a hint, never as the truth: the
//! key it names is looked at again at the source (HEAD) and replicated or
//! deleted as a pass would, so duplicated events and events out of order
//! across shards cannot make a replica wrong, and the periodic full pass
//! still catches what the feed missed.
//!
//! A shard is read block by block; a cursor is the chunk file and the
//! offset of the next block, so a chunk still being appended to is read
//! again from where the last complete block ended.

pub mod avro;
pub mod event;
pub mod reader;
pub mod segments;
pub mod source;

pub use event::{Event, Kind};
pub use reader::{Cursor, FeedReader, Polled, ShardPos};
pub use source::ChangeSource;

/// What one read of a chunk file found from some block on.
#[derive(Debug, Default)]
pub struct ChunkRead {
    /// The events, in file order (control records left out).
    pub events: Vec<Event>,
    /// How many control records were skipped.
    pub controls: usize,
    /// Offset of the next block not read yet: the cursor to keep.
    pub next: usize,
    /// Whether the header was complete (a chunk just created may hold
    /// nothing yet).
    pub has_header: bool,
}

/// The events of a chunk file `bytes` (read from its first byte) in the
/// blocks from offset `from` (0: from the first block) up to the last
/// complete one, or up to the block that brings them to `limit` events.
pub fn read_chunk(bytes: &[u8], from: usize, limit: usize) -> Result<ChunkRead, avro::Damage> {
    if from > bytes.len() {
        // Blocks already read are gone: rewritten or truncated.
        return Err(format!(
            "{} bytes, shorter than the {from} already read: rewritten or truncated",
            bytes.len()
        ));
    }
    let Some(header) = avro::Header::parse(bytes)? else {
        return Ok(ChunkRead::default());
    };
    let mut out = ChunkRead {
        next: from.max(header.len),
        has_header: true,
        ..ChunkRead::default()
    };
    while out.events.len() < limit
        && let avro::Next::Block(block) = header.block_at(bytes, out.next)?
    {
        for record in header.records(&block)? {
            let e = Event::from_record(&record)
                .map_err(|e| format!("block at offset {}: {e}", block.offset))?;
            if e.kind == Kind::Control {
                out.controls += 1;
            } else {
                out.events.push(e);
            }
        }
        out.next = block.end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
