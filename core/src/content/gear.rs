//! FastCDC 2020's cut-point search, four bytes a step: the same cut points
//! as the `fastcdc` crate's `v2020` chunker (whose gear tables and masks it
//! uses, and which the tests hold it to), found about a fifth faster.
//!
//! The crate rolls the gear hash two bytes at a time, and each step's new
//! hash waits on the previous one through a shift and two additions. Here
//! the table values of four bytes are summed first, off that chain, so the
//! hash advances by one shift and one addition per four bytes; the four
//! intermediate hashes a cut may fall on are computed beside it and tested
//! together, with one branch per step. A chunk's cut points are what a
//! manifest records, so this must never differ from the crate: the crate
//! stays the reference the tests compare against.

use std::sync::LazyLock;

use fastcdc::v2020;

use crate::content::chunk::ChunkParams;

/// The gear tables FastCDC uses when not seeded: `(gear, gear << 1)`.
type Tables = (Box<[u64; 256]>, Box<[u64; 256]>);
static TABLES: LazyLock<Tables> = LazyLock::new(|| v2020::get_gear_with_seed(0));

/// Finds chunk boundaries for one set of [`ChunkParams`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gear {
    min: usize,
    avg: usize,
    max: usize,
    /// Masks before (`small`, stricter) and after (`large`) the average
    /// size: normalization level 1, as `v2020::FastCDC::new` uses.
    mask_small: u64,
    mask_large: u64,
}

impl Gear {
    /// `p` must have passed [`ChunkParams::validate`].
    pub(crate) fn new(p: ChunkParams) -> Self {
        let bits = v2020::logarithm2(p.avg) as usize;
        Self {
            min: p.min as usize,
            avg: p.avg as usize,
            max: p.max as usize,
            mask_small: v2020::MASKS[bits + 1],
            mask_large: v2020::MASKS[bits - 1],
        }
    }

    /// The length of the chunk that starts at `source[0]` (0 only when
    /// `source` is empty).
    pub(crate) fn cut(&self, source: &[u8]) -> usize {
        let mut remaining = source.len();
        if remaining <= self.min {
            return remaining;
        }
        let mut center = self.avg;
        if remaining > self.max {
            remaining = self.max;
        } else if remaining < center {
            center = remaining;
        }
        // The crate tests byte pairs `(a, a + 1)` with `a` even, from
        // `min` rounded down to even, the small mask while `a < center`
        // (rounded down to even), the large one while `a < remaining`
        // (likewise); a byte left over at an odd end is never tested.
        let (tables, mut hash) = (&*TABLES, 0u64);
        let from = self.min & !1;
        let center = center & !1;
        if from < center
            && let Some(c) = scan(tables, source, from, center, self.mask_small, &mut hash)
        {
            return c;
        }
        let end = remaining & !1;
        let from = from.max(center);
        if from < end
            && let Some(c) = scan(tables, source, from, end, self.mask_large, &mut hash)
        {
            return c;
        }
        remaining
    }

    /// The largest chunk, in bytes.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// Roll the gear hash over the bytes `[from, to)` (both even), testing each
/// byte against `mask` (`mask << 1` at even bytes, whose table is shifted
/// too); the first byte that passes is the cut.
fn scan(
    (gear, gear_ls): &Tables,
    source: &[u8],
    from: usize,
    to: usize,
    mask: u64,
    hash: &mut u64,
) -> Option<usize> {
    let mask_ls = mask << 1;
    let quads = (to - from) / 4;
    let mut h = *hash;
    for (i, q) in source[from..from + 4 * quads].chunks_exact(4).enumerate() {
        let g0 = gear_ls[usize::from(q[0])];
        let g1 = gear[usize::from(q[1])];
        let g2 = gear_ls[usize::from(q[2])];
        let g3 = gear[usize::from(q[3])];
        let pair = g0.wrapping_add(g1);
        let a = (h << 2).wrapping_add(g0);
        let b = (h << 2).wrapping_add(pair);
        let c = (h << 4).wrapping_add((pair << 2).wrapping_add(g2));
        let d = (h << 4).wrapping_add((pair << 2).wrapping_add(g2.wrapping_add(g3)));
        if ((a & mask_ls) == 0) | ((b & mask) == 0) | ((c & mask_ls) == 0) | ((d & mask) == 0) {
            let at = from + 4 * i;
            return Some(if a & mask_ls == 0 {
                at
            } else if b & mask == 0 {
                at + 1
            } else if c & mask_ls == 0 {
                at + 2
            } else {
                at + 3
            });
        }
        h = d;
    }
    let at = from + 4 * quads;
    if at < to {
        // One pair left: `to - from` is even.
        let a = (h << 2).wrapping_add(gear_ls[usize::from(source[at])]);
        if a & mask_ls == 0 {
            return Some(at);
        }
        h = a.wrapping_add(gear[usize::from(source[at + 1])]);
        if h & mask == 0 {
            return Some(at + 1);
        }
    }
    *hash = h;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the `fastcdc` crate cuts.
    fn reference(p: ChunkParams, data: &[u8]) -> Vec<usize> {
        v2020::FastCDC::new(data, p.min, p.avg, p.max)
            .map(|c| c.length)
            .collect()
    }

    fn ours(p: ChunkParams, mut data: &[u8]) -> Vec<usize> {
        let (gear, mut out) = (Gear::new(p), Vec::new());
        while !data.is_empty() {
            let n = gear.cut(data);
            out.push(n);
            data = &data[n..];
        }
        out
    }

    /// Bytes from a seed: random, with runs of zeros when `zeros`.
    fn bytes(seed: u64, len: usize, zeros: bool) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if zeros && (i / 997) % 3 == 0 {
                    0
                } else {
                    (x >> 24) as u8
                }
            })
            .collect()
    }

    #[test]
    fn default_sizes_cut_where_fastcdc_cuts() {
        let p = ChunkParams::default();
        for (seed, len) in [
            (1, 9_000_001),
            (2, 4 << 20),
            (3, (4 << 20) + 1),
            (4, 300_000),
        ] {
            let data = bytes(seed, len, seed % 2 == 0);
            let want = reference(p, &data);
            assert!(want.len() > 1 || len < 1 << 20, "{want:?}");
            assert_eq!(ours(p, &data), want, "{len} bytes");
        }
        // Nothing ever passes the masks: every chunk is `max` long.
        let zeros = vec![0u8; 9 << 20];
        assert_eq!(ours(p, &zeros), reference(p, &zeros));
    }

    proptest! {
        #[test]
        fn cuts_where_fastcdc_cuts(
            min in 64u32..2000,
            avg_extra in 0u32..3000,
            max_extra in 0u32..6000,
            len in 0usize..40_000,
            seed in any::<u64>(),
            zeros in any::<bool>(),
        ) {
            let avg = (min + avg_extra).max(256);
            let p = ChunkParams { min, avg, max: (avg + max_extra).max(1024) };
            prop_assume!(p.validate().is_ok());
            let data = bytes(seed, len, zeros);
            prop_assert_eq!(ours(p, &data), reference(p, &data));
        }
    }
}
