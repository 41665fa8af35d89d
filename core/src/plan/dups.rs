//! Duplicate content estimated from listing metadata alone (size and the
//! MD5 a store publishes: an Azure blob's Content-MD5, an S3 ETag that is
//! a plain MD5), in bounded memory. Up to [`CAPACITY`] distinct contents
//! the count is exact; past it only contents whose fingerprint falls in a
//! halving share of the hash space are kept (distinct sampling), and the
//! duplicates are that share's, scaled up: an estimate, and said so.

use std::collections::HashMap;

use serde::Serialize;

/// Distinct contents kept before sampling starts (about 24 bytes each).
pub const CAPACITY: usize = 1 << 20;

/// What server-side dedup would save.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicates {
    /// Objects whose content another listed object already has.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Distinct contents among the objects with a listed MD5.
    pub distinct: u64,
    /// Objects listed without an MD5 (multipart ETags, blobs without
    /// Content-MD5): not counted either way.
    pub unknown_objects: u64,
    /// Their bytes.
    pub unknown_bytes: u64,
    /// True when every content was counted; false when the figures are
    /// scaled up from the share `1 / sample_divisor` of the hash space.
    pub exact: bool,
    /// The figures count one content in this many (1 when exact).
    pub sample_divisor: u64,
}

/// Counts contents as objects stream by.
#[derive(Debug)]
pub struct DupCounter {
    /// Fingerprint → (objects seen with it, its size).
    seen: HashMap<u64, (u32, u64)>,
    /// Keep fingerprints whose top `level` bits are zero.
    level: u32,
    capacity: usize,
    unknown: (u64, u64),
}

impl Default for DupCounter {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl DupCounter {
    /// A counter exact up to `capacity` distinct contents.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            level: 0,
            capacity: capacity.max(1),
            unknown: (0, 0),
        }
    }

    /// One listed object; `md5` is its published MD5, when there is one.
    pub fn add(&mut self, size: u64, md5: Option<[u8; 16]>) {
        let Some(md5) = md5 else {
            self.unknown.0 += 1;
            self.unknown.1 += size;
            return;
        };
        let mut h = blake3::Hasher::new();
        h.update(&size.to_le_bytes());
        h.update(&md5);
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&h.finalize().as_bytes()[..8]);
        let fp = u64::from_le_bytes(fp);
        if !self.kept(fp) {
            return;
        }
        self.seen
            .entry(fp)
            .and_modify(|e| e.0 = e.0.saturating_add(1))
            .or_insert((1, size));
        while self.seen.len() > self.capacity && self.level < 63 {
            self.level += 1;
            let level = self.level;
            self.seen.retain(|fp, _| fp.leading_zeros() >= level);
        }
    }

    fn kept(&self, fp: u64) -> bool {
        fp.leading_zeros() >= self.level
    }

    /// The figures so far.
    pub fn finish(&self) -> Duplicates {
        let scale = 1u64 << self.level;
        let (mut objects, mut bytes) = (0u64, 0u64);
        for (count, size) in self.seen.values() {
            let extra = u64::from(count.saturating_sub(1));
            objects += extra;
            bytes = bytes.saturating_add(extra.saturating_mul(*size));
        }
        Duplicates {
            objects: objects.saturating_mul(scale),
            bytes: bytes.saturating_mul(scale),
            distinct: (self.seen.len() as u64).saturating_mul(scale),
            unknown_objects: self.unknown.0,
            unknown_bytes: self.unknown.1,
            exact: self.level == 0,
            sample_divisor: scale,
        }
    }
}

/// The MD5 an S3 ETag states, when it is one: 32 hex digits, quoted or
/// not (a multipart ETag ends in `-N`; an SSE-KMS one is no MD5 either,
/// but a listing cannot tell it from one).
pub fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim_matches('"');
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An Azure Content-MD5 (base64 of 16 bytes).
pub fn md5_of_base64(b64: &str) -> Option<[u8; 16]> {
    use base64::Engine as _;
    let v = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5(n: u64) -> Option<[u8; 16]> {
        let mut m = [0u8; 16];
        m[..8].copy_from_slice(&n.to_le_bytes());
        Some(m)
    }

    #[test]
    fn exact_below_capacity() {
        let mut d = DupCounter::default();
        d.add(10, md5(1));
        d.add(10, md5(1));
        d.add(10, md5(1));
        d.add(20, md5(1)); // same MD5, another size: another content
        d.add(7, None);
        let f = d.finish();
        assert_eq!((f.objects, f.bytes, f.distinct), (2, 20, 2));
        assert_eq!((f.unknown_objects, f.unknown_bytes), (1, 7));
        assert!(f.exact);
    }

    #[test]
    fn sampled_past_capacity_and_close() {
        // 200,000 contents, each listed twice; exact would need 200,000
        // entries, the counter keeps 4,096.
        let mut d = DupCounter::with_capacity(4096);
        for _ in 0..2 {
            for n in 0..200_000u64 {
                d.add(1000, md5(n));
            }
        }
        let f = d.finish();
        assert!(!f.exact);
        assert!(f.sample_divisor >= 64);
        let err = (f.objects as f64 - 200_000.0).abs() / 200_000.0;
        assert!(err < 0.1, "estimated {} duplicates of 200,000", f.objects);
        assert_eq!(f.bytes, f.objects * 1000);
    }

    #[test]
    fn etags_and_content_md5() {
        assert_eq!(
            md5_of_etag("\"0123456789abcdef0123456789ABCDEF\""),
            Some([
                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef
            ])
        );
        assert_eq!(md5_of_etag("\"0123456789abcdef0123456789abcdef-2\""), None);
        assert_eq!(md5_of_etag("0x8D"), None);
        assert_eq!(
            md5_of_base64("1B2M2Y8AsgTpgAmY7PhCfg=="),
            md5_of_etag("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(md5_of_base64("AAAA"), None);
    }
}
