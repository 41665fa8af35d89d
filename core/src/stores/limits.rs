//! What a target allows: its provider's multipart limits and the part
//! policy configured for it. Cutting one object into parts by this policy
//! is `transfer::plan`.

use serde::{Deserialize, Serialize};

use crate::base::error::Error;

pub(crate) const KIB: u64 = 1024;
pub(crate) const MIB: u64 = 1024 * KIB;
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
}

pub(crate) fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}
