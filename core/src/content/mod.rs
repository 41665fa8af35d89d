//! Layer 0: what bytes are. BLAKE3 hashes, content-defined chunks
//! (FastCDC), and the part-wise BLAKE3 that lets a multipart upload be
//! hashed one part at a time and resumed. Knows no store and no manifest.

pub mod chunk;
pub(crate) mod digest;
pub mod hash;
pub mod parthash;
