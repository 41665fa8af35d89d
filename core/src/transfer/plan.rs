//! Planning one object: one PUT or a multipart upload, with a part size
//! that follows the object's size and the target's limits (so a 100 GB
//! object lands on a 1,000-part provider without tuning), and the memory
//! the transfer may hold while it runs.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::base::error::Error;
use crate::stores::limits::{KIB, MIB, PartPolicy, round_up};
use crate::transfer::ctx::Ctx;

/// How one object will be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One PUT of the whole object.
    Single,
    /// A multipart upload.
    Multipart(Parts),
}

/// How an object of `size` bytes is cut into parts of `part_size` bytes
/// (the last may be shorter; an empty object is one empty part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    /// The object's size.
    pub size: u64,
    /// Size of every part but the last; a multiple of 1 KiB.
    pub part_size: u64,
}

impl Parts {
    /// Number of parts.
    pub fn count(&self) -> u64 {
        self.size.div_ceil(self.part_size.max(1)).max(1)
    }

    /// Size of part `index`.
    pub fn len(&self, index: u64) -> u64 {
        let r = self.range(index);
        r.end - r.start
    }

    /// Byte range of part `index`.
    pub fn range(&self, index: u64) -> Range<u64> {
        let start = index * self.part_size;
        start..(start + self.part_size).min(self.size)
    }
}

impl Plan {
    /// Plan the upload of an object of `size` bytes under `policy`.
    pub fn new(policy: &PartPolicy, size: u64) -> Result<Plan, Error> {
        if size <= policy.multipart_threshold {
            return Ok(Plan::Single);
        }
        let l = &policy.limits;
        let needed = size.div_ceil(l.max_parts);
        let mut part_size = round_up(policy.part_size.max(needed).max(l.min_part), KIB);
        // Prefer whole MiB when growing past the preferred size.
        if part_size > policy.part_size {
            let mib = round_up(part_size, MIB);
            if mib <= l.max_part {
                part_size = mib;
            }
        }
        if part_size > l.max_part {
            return Err(Error::TooLarge {
                size,
                max_parts: l.max_parts,
                max_part: l.max_part,
            });
        }
        Ok(Plan::Multipart(Parts { size, part_size }))
    }
}

impl Ctx {
    /// Plan an object of `size` bytes and reserve the memory it needs:
    /// the whole object for a single PUT, `parts in flight + 1` parts for a
    /// multipart upload, with parts in flight lowered to fit the budget.
    pub(crate) async fn reserve(
        &self,
        size: u64,
    ) -> Result<(Plan, usize, OwnedSemaphorePermit), Error> {
        let plan = Plan::new(&self.target.policy, size)?;
        let (in_flight, need) = match plan {
            Plan::Single => (0, size),
            Plan::Multipart(parts) => self.parts_budget(parts.part_size),
        };
        Ok((plan, in_flight, self.budget(need).await?))
    }

    /// Parts in flight for parts of `part_size` bytes, lowered to fit the
    /// memory budget, and the bytes to reserve for them.
    pub(crate) fn parts_budget(&self, part_size: u64) -> (usize, u64) {
        let budget = u64::from(self.memory_mib) * MIB;
        let fit = (budget / part_size.max(1)).saturating_sub(1).max(1);
        let n = (self.parts_in_flight.max(1) as u64).min(fit);
        (usize::try_from(n).unwrap_or(1), part_size * (n + 1))
    }

    /// Reserve `bytes` of the memory budget (at most all of it).
    pub(crate) async fn budget(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Error> {
        let want = u32::try_from(bytes.div_ceil(MIB).max(1))
            .unwrap_or(u32::MAX)
            .min(self.memory_mib);
        Arc::clone(&self.memory)
            .acquire_many_owned(want)
            .await
            .map_err(|_| Error::ShuttingDown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::limits::Provider;

    const GIB: u64 = 1024 * MIB;

    fn parts(p: &PartPolicy, size: u64) -> Parts {
        match Plan::new(p, size) {
            Ok(Plan::Multipart(parts)) => parts,
            other => panic!("multipart expected for {size}: {other:?}"),
        }
    }

    #[test]
    fn hundred_gb_fits_scaleway_without_tuning() {
        let p = PartPolicy::for_provider(Provider::Scaleway);
        p.validate().expect("valid");
        let size = 100_000_000_000;
        let got = parts(&p, size);
        assert!(got.count() <= 1000, "{} parts", got.count());
        assert!((5_000_000..=5_000_000_000).contains(&got.part_size));
        assert_eq!(got.part_size % 1024, 0);
        assert_eq!(got.range(got.count() - 1).end, size);
    }

    #[test]
    fn threshold_boundaries() {
        let p = PartPolicy::for_provider(Provider::Aws);
        let t = p.multipart_threshold;
        assert_eq!(Plan::new(&p, 0).ok(), Some(Plan::Single));
        assert_eq!(Plan::new(&p, t).ok(), Some(Plan::Single));
        let got = parts(&p, t + 1);
        assert_eq!((got.part_size, got.count()), (p.part_size, 2));
        assert_eq!(got.range(1), t..t + 1);
    }

    #[test]
    fn too_large_is_an_error_and_azure_allows_huge_objects() {
        let mut p = PartPolicy::for_provider(Provider::Scaleway);
        p.limits.max_parts = 2;
        assert!(matches!(
            Plan::new(&p, 20_000_000_000),
            Err(Error::TooLarge { max_parts: 2, .. })
        ));
        let az = PartPolicy::for_provider(Provider::Azure);
        assert!(Plan::new(&az, 100 * 1024 * GIB).is_ok());
    }

    #[test]
    fn low_max_parts_grows_part_size_in_whole_mib() {
        let mut p = PartPolicy::for_provider(Provider::Generic);
        p.part_size = 5 * MIB;
        p.multipart_threshold = 5 * MIB;
        p.limits.max_parts = 4;
        let got = parts(&p, 30 * MIB);
        assert_eq!((got.part_size, got.count()), (8 * MIB, 4));
    }

    #[test]
    fn ranges_cover_the_object_once() {
        let p = Parts {
            size: 10 * MIB + 7,
            part_size: 5 * MIB,
        };
        assert_eq!(p.count(), 3);
        let mut at = 0;
        for i in 0..p.count() {
            let r = p.range(i);
            assert_eq!(r.start, at);
            at = r.end;
        }
        assert_eq!(at, p.size);
        let empty = Parts {
            size: 0,
            part_size: 5 * MIB,
        };
        assert_eq!((empty.count(), empty.range(0)), (1, 0..0));
    }
}
