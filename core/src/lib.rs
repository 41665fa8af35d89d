//! passeur-core: the replication engine. Nothing here knows about processes,
//! signals or the command line; see ARCHITECTURE.md for the map.
//!
//! The folders follow the bytes, bottom up; a module imports only from the
//! layers below its own:
//!
//! | layer | module | holds |
//! |---|---|---|
//! | 0 | [`base`] | errors, key filters, counters |
//! | 0 | [`content`] | what bytes are: BLAKE3, content-defined chunks, part-wise hashes |
//! | 1 | [`manifest`] | the RocksDB record of what the target holds |
//! | 1 | [`stores`] | where bytes live: URL → object store, target limits, HTTP wrapper |
//! | 2 | [`scan`] | what a pass lists: ordered key ranges, checkpoints, delete candidates |
//! | 2 | [`feed`] | what the Azure change feed says changed: segments, Avro chunks, events |
//! | 3 | [`transfer`] | one object: plan → read → chunk and hash → upload or copy → record |
//! | 4 | [`verify`] | the target against the manifest |
//! | 4 | [`plan`] | a migration's census from one listing: sizes, prefixes, duplicates, blockers, estimate |
//! | 5 | [`sync`] | the pass: list → replicate with bounded concurrency → deletes |

pub mod base;
pub mod content;
pub mod feed;
pub mod manifest;
pub mod plan;
pub mod scan;
pub mod stores;
pub mod sync;
pub mod transfer;
pub mod verify;

pub use base::error::Error;
pub use content::hash::Hash;
