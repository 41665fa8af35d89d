//! Checksums a source publishes for a whole object, and the running MD5
//! that checks the bytes read against one.
//!
//! S3 publishes the MD5 of an object written in one PUT as its ETag;
//! Azure keeps a blob's Content-MD5 (set by Put Blob, or by the client of
//! Put Block List) and answers every GET with it. Objects are read in
//! order, whole or in ranged parts, so one MD5 runs over the bytes as they
//! pass; its state after each part is recorded with the part
//! ([`Md5Run::state`]), and a resumed upload goes on from the state of its
//! last part before the first missing one ([`Md5Run::resume`]).

use md5::Digest;
use md5::digest::common::hazmat::{SerializableState, SerializedState};

use crate::base::error::Error;

/// A whole-object checksum published by the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    /// Where it comes from, for messages ("MD5 ETag", "Content-MD5").
    pub(crate) what: &'static str,
    /// The MD5 of the object's bytes.
    pub(crate) md5: [u8; 16],
}

impl Published {
    /// An S3 ETag that is a plain MD5 (32 hex digits, quoted or not; the
    /// ETag of an object uploaded in parts has a `-N` suffix and is not).
    pub(crate) fn from_etag(etag: &str) -> Option<Self> {
        let hex = etag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        let mut md5 = [0u8; 16];
        for (i, b) in md5.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self {
            what: "MD5 ETag",
            md5,
        })
    }
}

/// The MD5 of the bytes read so far, in order (boxed: it lives across
/// the awaits of every transfer future).
#[derive(Clone, Default)]
pub(crate) struct Md5Run(Box<md5::Md5>);

impl Md5Run {
    /// Feed the next bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The state after the bytes fed so far, to record.
    pub(crate) fn state(&self) -> Vec<u8> {
        self.0.serialize().to_vec()
    }

    /// Go on from a recorded state; `None` if it is not one.
    pub(crate) fn resume(state: &[u8]) -> Option<Self> {
        let state = SerializedState::<md5::Md5>::try_from(state).ok()?;
        md5::Md5::deserialize(&state)
            .ok()
            .map(|m| Self(Box::new(m)))
    }

    /// The bytes fed must hash to `published`.
    pub(crate) fn check(self, published: &Published) -> Result<(), Error> {
        let read: [u8; 16] = self.0.finalize().into();
        if read == published.md5 {
            return Ok(());
        }
        Err(Error::SourceIntegrity {
            what: published.what,
            published: hex(&published.md5),
            read: hex(&read),
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_hashes_as_one_run() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = Published {
            what: "test",
            md5: md5::Md5::digest(&data).into(),
        };
        // Cut anywhere, aligned or not: the recorded state carries the tail.
        for cut in [0, 1, 63, 64, 65, 4096, 150_001, data.len()] {
            let mut a = Md5Run::default();
            a.update(&data[..cut]);
            let mut b = Md5Run::resume(&a.state()).expect("state");
            b.update(&data[cut..]);
            b.check(&whole).expect("same MD5");
        }
        assert!(Md5Run::resume(b"short").is_none());
    }

    #[test]
    fn altered_bytes_fail_and_name_both_sums() {
        let published = Published::from_etag("\"900150983cd24fb0d6963f7d28e17f72\"").expect("md5");
        let mut ok = Md5Run::default();
        ok.update(b"abc");
        ok.check(&published).expect("md5 of abc");
        let mut bad = Md5Run::default();
        bad.update(b"abd");
        let e = bad.check(&published).expect_err("altered").to_string();
        assert!(e.contains("900150983cd24fb0d6963f7d28e17f72"), "{e}");
        assert!(Published::from_etag("\"d41d8cd98f00b204e9800998ecf8427e-2\"").is_none());
        assert!(Published::from_etag("0x8D9C2A1B2C3D4E5").is_none());
    }
}
