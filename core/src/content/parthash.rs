//! Whole-object BLAKE3 from independently hashed parts, for resumable
//! transfers: each part (starting on a 1 KiB boundary) is hashed as the
//! aligned BLAKE3 subtrees it covers; their chaining values are stored with
//! the part, and the root is merged from all parts at completion. The
//! result is exactly `blake3::hash` of the whole object — what `b3sum`
//! prints — without re-reading finished parts.
//!
//! Shape rules (BLAKE3 paper §2.1; blake3 `hazmat`): a subtree starting at
//! offset `o` (a multiple of 1 KiB) holds at most `max_subtree_len(o)` bytes
//! and a power-of-two number of chunks, except the object's final subtree,
//! which holds whatever remains. Merging follows the reference hasher:
//! before a subtree starting at chunk `c` is pushed, the stack is merged
//! down to `popcount(c)` entries; at the end it is folded right to left and
//! the last merge is the root.

use blake3::hazmat::{
    HasherExt, Mode, max_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};
use serde::{Deserialize, Serialize};

use crate::content::hash::Hash;

const CHUNK: u64 = blake3::CHUNK_LEN as u64;

/// The chaining value of one aligned subtree of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtree {
    /// First byte, a multiple of 1 KiB.
    pub offset: u64,
    /// Bytes covered.
    pub len: u64,
    /// Non-root chaining value.
    pub cv: [u8; 32],
}

pub use crate::base::error::PartHashError;

fn largest_pow2_chunks_at_most(bytes: u64) -> u64 {
    let chunks = bytes / CHUNK;
    if chunks == 0 {
        0
    } else {
        (1u64 << (63 - chunks.leading_zeros())) * CHUNK
    }
}

/// Length of the subtree that starts at `offset` within a part ending at
/// `end` of an object of `object_len` bytes.
fn piece_len(offset: u64, end: u64, object_len: u64) -> u64 {
    let remaining = end - offset;
    let max = max_subtree_len(offset).unwrap_or(u64::MAX);
    if end == object_len && max >= remaining {
        // The object's final subtree: everything left.
        return remaining;
    }
    let p = largest_pow2_chunks_at_most(remaining.min(max));
    if p == 0 { remaining } else { p }
}

/// Hashes one part `[start, end)` of an object as aligned subtrees.
#[derive(Debug)]
pub struct PartHasher {
    object_len: u64,
    end: u64,
    offset: u64,
    current: Option<(u64, u64, blake3::Hasher, u64)>,
    pieces: Vec<Subtree>,
}

impl PartHasher {
    /// A hasher for bytes `[start, end)` of an object of `object_len` bytes.
    /// `start` must be a multiple of 1 KiB, `end` too unless it is the end
    /// of the object, and the part must not be the whole object (hash that
    /// with `blake3::hash`).
    pub fn new(object_len: u64, start: u64, end: u64) -> Result<Self, PartHashError> {
        if !start.is_multiple_of(CHUNK) || (!end.is_multiple_of(CHUNK) && end != object_len) {
            return Err(PartHashError(format!(
                "part [{start}, {end}) is not aligned to 1 KiB"
            )));
        }
        if start >= end || end > object_len || (start == 0 && end == object_len) {
            return Err(PartHashError(format!(
                "part [{start}, {end}) of {object_len} bytes"
            )));
        }
        Ok(Self {
            object_len,
            end,
            offset: start,
            current: None,
            pieces: Vec::new(),
        })
    }

    /// Feed the part's next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.offset < self.end {
            let (start, len, hasher, filled) = self.current.get_or_insert_with(|| {
                let len = piece_len(self.offset, self.end, self.object_len);
                let mut h = blake3::Hasher::new();
                h.set_input_offset(self.offset);
                (self.offset, len, h, 0)
            });
            let take =
                usize::try_from((*len - *filled).min(data.len() as u64)).unwrap_or(data.len());
            hasher.update(&data[..take]);
            *filled += take as u64;
            self.offset += take as u64;
            data = &data[take..];
            if *filled == *len {
                let piece = Subtree {
                    offset: *start,
                    len: *len,
                    cv: hasher.finalize_non_root(),
                };
                self.pieces.push(piece);
                self.current = None;
            }
        }
    }

    /// The part's subtrees; fails unless exactly `end - start` bytes came.
    pub fn finish(self) -> Result<Vec<Subtree>, PartHashError> {
        if self.offset != self.end || self.current.is_some() {
            return Err(PartHashError(format!(
                "part ended at byte {} instead of {}",
                self.offset, self.end
            )));
        }
        Ok(self.pieces)
    }
}

/// Merge the subtrees of every part (in any order) into the object's root.
pub fn root(mut pieces: Vec<Subtree>, object_len: u64) -> Result<Hash, PartHashError> {
    pieces.sort_by_key(|p| p.offset);
    let mut expect = 0;
    for p in &pieces {
        if p.offset != expect {
            return Err(PartHashError(format!("gap or overlap at byte {expect}")));
        }
        expect += p.len;
    }
    if expect != object_len || pieces.len() < 2 {
        return Err(PartHashError(format!(
            "subtrees cover {expect} of {object_len} bytes in {} pieces",
            pieces.len()
        )));
    }
    let mut stack: Vec<[u8; 32]> = Vec::new();
    for p in &pieces {
        let target = (p.offset / CHUNK).count_ones() as usize;
        while stack.len() > target {
            let (Some(right), Some(left)) = (stack.pop(), stack.pop()) else {
                break;
            };
            stack.push(merge_subtrees_non_root(&left, &right, Mode::Hash));
        }
        stack.push(p.cv);
    }
    let mut right = stack
        .pop()
        .ok_or_else(|| PartHashError("no subtrees".into()))?;
    while let Some(left) = stack.pop() {
        if stack.is_empty() {
            return Ok(merge_subtrees_root(&left, &right, Mode::Hash).into());
        }
        right = merge_subtrees_non_root(&left, &right, Mode::Hash);
    }
    Err(PartHashError("a single subtree cannot be the root".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hash_in_parts(data: &[u8], cuts: &[u64], feed: usize) -> Result<Hash, PartHashError> {
        let len = data.len() as u64;
        let mut bounds: Vec<u64> = cuts
            .iter()
            .map(|c| (c * CHUNK).min(len))
            .filter(|&c| c > 0 && c < len)
            .collect();
        bounds.push(0);
        bounds.push(len);
        bounds.sort_unstable();
        bounds.dedup();
        let mut pieces = Vec::new();
        // Hash the parts out of order, as parallel uploads finish.
        for w in bounds.windows(2).rev() {
            let mut h = PartHasher::new(len, w[0], w[1])?;
            for piece in data[w[0] as usize..w[1] as usize].chunks(feed.max(1)) {
                h.update(piece);
            }
            pieces.extend(h.finish()?);
        }
        root(pieces, len)
    }

    #[test]
    fn known_shapes_match_blake3() -> Result<(), PartHashError> {
        for len in [
            1025usize,
            2048,
            3000,
            4096,
            5 * 1024 + 1,
            64 * 1024,
            1_000_000,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for cuts in [vec![1], vec![3], vec![1, 2, 3], vec![5, 6, 700]] {
                let got = hash_in_parts(&data, &cuts, 777);
                if cuts.iter().all(|&c| c * CHUNK >= len as u64) {
                    assert!(got.is_err(), "one part is not mergeable");
                } else {
                    assert_eq!(got?, Hash::of(&data), "len {len} cuts {cuts:?}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_unaligned_and_short_parts() {
        assert!(PartHasher::new(10_000, 1000, 2048).is_err());
        assert!(PartHasher::new(10_000, 0, 10_000).is_err());
        let mut h = PartHasher::new(10_000, 0, 2048).expect("valid");
        h.update(&[0; 100]);
        assert!(h.finish().is_err());
    }

    proptest! {
        #[test]
        fn parts_merge_to_the_one_shot_hash(
            data in proptest::collection::vec(any::<u8>(), 1025..70_000),
            cuts in proptest::collection::vec(1u64..70, 1..8),
            feed in 1usize..5000,
        ) {
            // One part covering the whole object is hashed directly instead.
            prop_assume!(cuts.iter().any(|&c| c * CHUNK < data.len() as u64));
            prop_assert_eq!(hash_in_parts(&data, &cuts, feed).map_err(|e| TestCaseError::fail(e.to_string()))?, Hash::of(&data));
        }
    }
}
