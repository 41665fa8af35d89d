//! Layer 2: what a pass lists. Ordered key ranges listed in parallel, the
//! wrap-around that makes every pass cover the whole key space, the listing
//! checkpoint, and the delete candidates a listing steps over. Uses stores
//! and the manifest; knows nothing of transfers.

pub mod checkpoint;
pub(crate) mod coverage;
pub mod cuts;
pub mod listing;
