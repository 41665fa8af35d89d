//! Layer 0: what bytes are. BLAKE3 hashes, content-defined chunks
//! (FastCDC), the part-wise BLAKE3 that lets a multipart upload be hashed
//! one part at a time and resumed, and the running MD5 that checks bytes
//! against a checksum the source published. Knows no store and no manifest.

pub mod chunk;
pub mod digest;
pub(crate) mod gear;
pub mod hash;
pub mod parthash;
pub(crate) mod published;
