//! passeur-core: the replication engine. Nothing here knows about processes,
//! signals or the command line; see ARCHITECTURE.md for the map.

pub mod attrs;
pub mod checkpoint;
pub mod chunk;
mod coverage;
mod dedup;
pub mod deletes;
pub mod error;
pub mod filter;
pub mod gate;
pub mod hash;
pub mod limits;
pub mod listing;
pub mod manifest;
pub mod parthash;
pub mod rawlist;
mod read;
mod resume;
pub mod stats;
pub mod stores;
pub mod sync;
pub mod throttle;
pub mod transfer;
pub mod verify;

pub use error::Error;
pub use hash::Hash;
