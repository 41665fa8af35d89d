//! Layer 0: values every other layer uses — the error type of the core
//! boundary, key filters, progress counters. Imports nothing of the crate.

pub mod error;
pub mod filter;
pub mod ranges;
pub mod shard;
pub mod stats;
#[cfg(test)]
pub(crate) mod testing;

/// Milliseconds since the Unix epoch (0 before it), as records store time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
