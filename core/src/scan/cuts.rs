//! Where the next listings cut the key space: every n-th key a complete
//! listing passed ([`CutSampler`]), kept in the manifest's `meta`, so that
//! the ranges between cuts ([`crate::scan::listing`]) hold about
//! [`MIN_RANGE`] keys each at any dataset size.

/// Fewest keys between two cuts.
pub const MIN_RANGE: usize = 10_000;
/// Most cuts a listing keeps (beyond, ranges grow past [`MIN_RANGE`]).
pub const MAX_CUTS: u64 = 262_144;

/// Samples every n-th key of a listing: the next passes' cuts.
#[derive(Debug)]
pub struct CutSampler {
    every: u64,
    seen: u64,
    cuts: Vec<String>,
    max_cuts: u64,
}

impl CutSampler {
    /// For a listing of about `expected` keys: ranges of [`MIN_RANGE`]
    /// keys, at most about [`MAX_CUTS`] of them.
    pub fn new(expected: u64) -> Self {
        Self {
            every: (MIN_RANGE as u64).max(expected / MAX_CUTS),
            seen: 0,
            cuts: Vec::new(),
            max_cuts: MAX_CUTS,
        }
    }

    /// A key the listing produced (in order). Past [`MAX_CUTS`] cuts, every
    /// other one is dropped and the interval doubles (the first listing of
    /// a job does not know how many keys it will see).
    pub fn see(&mut self, key: &str) {
        self.seen += 1;
        if self.seen.is_multiple_of(self.every) {
            self.cuts.push(key.to_owned());
            if self.cuts.len() as u64 >= self.max_cuts {
                let mut i = 0;
                self.cuts.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
                self.every *= 2;
            }
        }
    }

    /// The cuts, once the listing is complete.
    pub fn take_cuts(&mut self) -> Vec<String> {
        std::mem::take(&mut self.cuts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_keeps_every_nth_key_within_bounds() {
        let mut s = CutSampler::new(0);
        for i in 0..35_000 {
            s.see(&format!("k{i:06}"));
        }
        assert_eq!(s.take_cuts(), ["k009999", "k019999", "k029999"]);
        // 10⁹ expected keys: ranges of 10,000 keys still (100,000 cuts);
        // 10¹⁰: at most MAX_CUTS of them.
        assert_eq!(CutSampler::new(1_000_000_000).every, 10_000);
        assert_eq!(CutSampler::new(10_000_000_000).every, 38_146);
        // A first listing (nothing expected) keeps fewer than MAX_CUTS,
        // thinned evenly as it goes.
        let max = 64;
        let mut s = CutSampler::new(0);
        s.max_cuts = max;
        let n = max * MIN_RANGE as u64 * 3;
        for i in 0..n {
            s.see(&format!("k{i:012}"));
        }
        let cuts = s.take_cuts();
        assert!(
            (cuts.len() as u64) < max && cuts.len() as u64 > max / 4,
            "{}",
            cuts.len()
        );
        assert_eq!(cuts[0], format!("k{:012}", 4 * MIN_RANGE - 1));
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
    }
}
