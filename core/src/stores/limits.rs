//! Target limits and part planning: part size follows the object's size and
//! the target's limits, so a 100 GB object lands on a 1,000-part provider
//! without tuning.

use serde::{Deserialize, Serialize};

use crate::base::error::Error;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Provider presets for multipart limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// AWS S3: 10,000 parts of 5 MiB – 5 GiB.
    Aws,
    /// Scaleway Object Storage: 1,000 parts of 5 MB – 5 GB.
    Scaleway,
    /// Azure block blobs: 50,000 blocks of up to 4,000 MiB.
    Azure,
    /// Google Cloud Storage (XML multipart): as S3.
    Gcs,
    /// Anything S3-like we know nothing about: S3's published limits.
    #[default]
    Generic,
}

/// Multipart limits of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most parts one upload may have.
    pub max_parts: u64,
    /// Smallest non-last part.
    pub min_part: u64,
    /// Largest part.
    pub max_part: u64,
    /// Largest single PUT.
    pub max_single_put: u64,
}

impl Provider {
    /// The provider's published limits.
    pub fn limits(self) -> Limits {
        match self {
            Provider::Aws | Provider::Generic | Provider::Gcs => Limits {
                max_parts: 10_000,
                min_part: 5 * MIB,
                max_part: 5 * GIB,
                max_single_put: 5 * GIB,
            },
            Provider::Scaleway => Limits {
                max_parts: 1_000,
                min_part: 5_000_000,
                max_part: 5_000_000_000,
                max_single_put: 5_000_000_000,
            },
            Provider::Azure => Limits {
                max_parts: 50_000,
                min_part: KIB,
                max_part: 4000 * MIB,
                max_single_put: 5000 * MIB,
            },
        }
    }
}

/// How objects are cut into parts for one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartPolicy {
    /// The target's limits.
    pub limits: Limits,
    /// Preferred part size; grows for objects that would need too many parts.
    pub part_size: u64,
    /// Objects up to this size go in one PUT.
    pub multipart_threshold: u64,
}

/// How one object will be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One PUT of the whole object.
    Single,
    /// Multipart upload with parts of `part_size` (the last may be shorter).
    Multipart {
        /// Size of every part but the last; a multiple of 1 KiB.
        part_size: u64,
        /// Number of parts.
        parts: u64,
    },
}

impl PartPolicy {
    /// The default policy for a provider: 8 MiB parts (as the AWS CLI;
    /// what a crash can cost is the parts in flight), single PUT up to that.
    pub fn for_provider(p: Provider) -> Self {
        let limits = p.limits();
        let part_size = round_up(limits.min_part.max(8 * MIB), KIB);
        Self {
            limits,
            part_size,
            multipart_threshold: part_size,
        }
    }

    /// Check the policy is usable.
    pub fn validate(&self) -> Result<(), Error> {
        let l = &self.limits;
        let bad = |m: String| Err(Error::InvalidOption(m));
        if l.max_parts == 0 {
            return bad("max-parts must be at least 1".into());
        }
        if l.min_part > l.max_part {
            return bad(format!(
                "min-part {} exceeds max-part {}",
                l.min_part, l.max_part
            ));
        }
        if self.part_size < l.min_part || self.part_size > l.max_part {
            return bad(format!(
                "part-size {} is outside the target's {}..={} bytes",
                self.part_size, l.min_part, l.max_part
            ));
        }
        if self.multipart_threshold > l.max_single_put {
            return bad(format!(
                "multipart-threshold {} exceeds the largest single PUT {}",
                self.multipart_threshold, l.max_single_put
            ));
        }
        Ok(())
    }

    /// Plan the upload of an object of `size` bytes.
    pub fn plan(&self, size: u64) -> Result<Plan, Error> {
        if size <= self.multipart_threshold {
            return Ok(Plan::Single);
        }
        let l = &self.limits;
        let needed = size.div_ceil(l.max_parts);
        let mut part_size = round_up(self.part_size.max(needed).max(l.min_part), KIB);
        // Prefer whole MiB when growing past the preferred size.
        if part_size > self.part_size {
            let mib = round_up(part_size, MIB);
            if mib <= l.max_part {
                part_size = mib;
            }
        }
        if part_size > l.max_part {
            return Err(Error::Object(format!(
                "object of {size} bytes exceeds the target's limit of {} parts of {} bytes",
                l.max_parts, l.max_part
            )));
        }
        Ok(Plan::Multipart {
            part_size,
            parts: size.div_ceil(part_size),
        })
    }
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundred_gb_fits_scaleway_without_tuning() {
        let p = PartPolicy::for_provider(Provider::Scaleway);
        p.validate().expect("valid");
        let size = 100_000_000_000;
        match p.plan(size).expect("plan") {
            Plan::Multipart { part_size, parts } => {
                assert!(parts <= 1000, "{parts} parts");
                assert!((5_000_000..=5_000_000_000).contains(&part_size));
                assert_eq!(part_size % 1024, 0);
                assert!(part_size * parts >= size);
            }
            Plan::Single => panic!("100 GB must be multipart"),
        }
    }

    #[test]
    fn threshold_boundaries() {
        let p = PartPolicy::for_provider(Provider::Aws);
        let t = p.multipart_threshold;
        assert_eq!(p.plan(0).ok(), Some(Plan::Single));
        assert_eq!(p.plan(t).ok(), Some(Plan::Single));
        assert_eq!(
            p.plan(t + 1).ok(),
            Some(Plan::Multipart {
                part_size: p.part_size,
                parts: 2
            })
        );
    }

    #[test]
    fn too_large_is_an_error_and_azure_allows_huge_objects() {
        let mut p = PartPolicy::for_provider(Provider::Scaleway);
        p.limits.max_parts = 2;
        assert!(p.plan(20_000_000_000).is_err());
        let az = PartPolicy::for_provider(Provider::Azure);
        assert!(az.plan(100 * 1024 * GIB).is_ok());
    }

    #[test]
    fn low_max_parts_grows_part_size_in_whole_mib() {
        let mut p = PartPolicy::for_provider(Provider::Generic);
        p.part_size = 5 * MIB;
        p.multipart_threshold = 5 * MIB;
        p.limits.max_parts = 4;
        match p.plan(30 * MIB).expect("plan") {
            Plan::Multipart { part_size, parts } => {
                assert_eq!(part_size, 8 * MIB);
                assert_eq!(parts, 4);
            }
            Plan::Single => panic!("multipart expected"),
        }
    }
}
