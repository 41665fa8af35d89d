//! What will fail: objects a migration cannot move as they are, found from
//! listing metadata alone, each rule with its count, bytes and example
//! keys.

use std::collections::BTreeMap;

use object_store::path::Path;
use serde::Serialize;

use super::Listed;
use crate::stores::StoreKind;

/// Kinds of blockers, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockerKind {
    /// Archive tier (Azure) or Glacier / Deep Archive class (S3): cannot
    /// be read until rehydrated or restored (hours, billed).
    Archived,
    /// Azure append blob: no S3 equivalent; copied as an ordinary object
    /// (its content as of the read), appends after it need another pass.
    AppendBlob,
    /// Azure page blob (disks): no S3 equivalent; read whole, sparse
    /// ranges included.
    PageBlob,
    /// Blob snapshots: not replicated (only current blobs are).
    Snapshot,
    /// Earlier versions of objects: not replicated.
    Version,
    /// Larger than the target's largest object (its parts limit).
    TooLarge,
    /// A key longer than the target allows.
    KeyTooLong,
    /// A key object_store's paths cannot carry exactly (an empty, `.` or
    /// `..` segment, a leading or trailing `/`): passeur names it and
    /// does not copy it.
    KeyUncarriable,
    /// User metadata the target refuses (names, total size), or a local
    /// directory target, which keeps none.
    Metadata,
}

impl BlockerKind {
    /// One line saying what it means for the migration.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Archived => "archive tier: unreadable until rehydrated (hours, billed)",
            Self::AppendBlob => "append blobs: no S3 equivalent, copied as plain objects",
            Self::PageBlob => "page blobs: no S3 equivalent, read whole (sparse ranges too)",
            Self::Snapshot => "blob snapshots: not replicated",
            Self::Version => "earlier versions: not replicated",
            Self::TooLarge => "larger than the target's largest object",
            Self::KeyTooLong => "keys longer than the target allows",
            Self::KeyUncarriable => "keys passeur cannot carry (empty, . or .. segments, edge /)",
            Self::Metadata => "user metadata the target refuses or drops",
        }
    }
}

/// One kind of blocker found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// What.
    pub kind: BlockerKind,
    /// What it means.
    pub meaning: &'static str,
    /// Objects (or snapshots, versions) affected.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Up to the asked number of their keys, the first in key order (a
    /// snapshot's or version's key followed by `@` and its id).
    pub examples: Vec<String>,
}

/// What the target allows, for the rules.
#[derive(Debug, Clone)]
pub struct TargetRules {
    /// Its kind.
    pub kind: StoreKind,
    /// Its largest object: parts × part size of its provider preset or
    /// configuration, within the provider's own cap.
    pub max_object: u64,
}

/// S3's largest object (5 TiB), whatever the parts allow.
const S3_MAX_OBJECT: u64 = 5 << 40;
/// S3's longest key (UTF-8 bytes); Azure's is 1,024 characters.
const MAX_KEY: usize = 1024;
/// S3's user metadata, names and values (bytes).
const S3_MAX_METADATA: usize = 2048;
/// Azure's metadata, names and values (bytes).
const AZURE_MAX_METADATA: usize = 8192;
/// A local file name's longest segment (bytes).
const NAME_MAX: usize = 255;

impl TargetRules {
    /// The rules of a store of `kind` cut into parts by `policy`.
    pub fn new(kind: StoreKind, policy: &crate::stores::limits::PartPolicy) -> Self {
        let parts = policy
            .limits
            .max_parts
            .saturating_mul(policy.limits.max_part);
        let max_object = match kind {
            StoreKind::S3 | StoreKind::Gcs => parts.min(S3_MAX_OBJECT),
            StoreKind::Azure | StoreKind::Local => parts,
        };
        Self { kind, max_object }
    }

    fn key_too_long(&self, key: &str) -> bool {
        match self.kind {
            StoreKind::S3 | StoreKind::Gcs => key.len() > MAX_KEY,
            StoreKind::Azure => key.chars().count() > MAX_KEY,
            StoreKind::Local => key.split('/').any(|s| s.len() > NAME_MAX),
        }
    }

    fn refuses_metadata(&self, meta: &[(String, String)]) -> bool {
        if meta.is_empty() {
            return false;
        }
        let total: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
        match self.kind {
            StoreKind::Local => true,
            StoreKind::S3 | StoreKind::Gcs => {
                total > S3_MAX_METADATA
                    || meta.iter().any(|(k, v)| {
                        !k.bytes().all(is_token_byte)
                            || !v.bytes().all(|b| (0x20..0x7f).contains(&b))
                    })
            }
            StoreKind::Azure => {
                total > AZURE_MAX_METADATA || meta.iter().any(|(k, _)| !is_identifier(k))
            }
        }
    }
}

/// An HTTP header name's byte (RFC 9110 token).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An Azure metadata name: a C# identifier (ASCII here).
fn is_identifier(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Collects blockers as objects stream by.
#[derive(Debug)]
pub struct BlockerTally {
    target: Option<TargetRules>,
    examples: usize,
    found: BTreeMap<BlockerKind, Blocker>,
}

impl BlockerTally {
    /// Rules of `target` (none: only the source's own blockers), keeping
    /// `examples` keys of each.
    pub fn new(target: Option<TargetRules>, examples: usize) -> Self {
        Self {
            target,
            examples,
            found: BTreeMap::new(),
        }
    }

    fn hit(&mut self, kind: BlockerKind, key: &str, bytes: u64) {
        let b = self.found.entry(kind).or_insert_with(|| Blocker {
            kind,
            meaning: kind.meaning(),
            objects: 0,
            bytes: 0,
            examples: Vec::new(),
        });
        b.objects += 1;
        b.bytes = b.bytes.saturating_add(bytes);
        // The first keys in key order, whatever order the entries came in
        // (a listing's, or an inventory's, which has none).
        let full = b.examples.len() >= self.examples;
        if full && b.examples.last().is_none_or(|last| key >= last.as_str()) {
            return;
        }
        if let Err(at) = b.examples.binary_search_by(|k| k.as_str().cmp(key)) {
            b.examples.insert(at, key.to_owned());
            b.examples.truncate(self.examples);
        }
    }

    /// A snapshot or an earlier version: only that is said of it.
    pub fn add_old(&mut self, e: &Listed) {
        if let Some(s) = &e.details.snapshot {
            self.hit(BlockerKind::Snapshot, &format!("{}@{s}", e.key), e.size);
        } else {
            let v = e.details.version.as_deref().unwrap_or("?");
            self.hit(BlockerKind::Version, &format!("{}@{v}", e.key), e.size);
        }
    }

    /// A current object.
    pub fn add(&mut self, e: &Listed) {
        if e.archived() {
            self.hit(BlockerKind::Archived, &e.key, e.size);
        }
        match e.details.blob_type.as_deref() {
            Some("AppendBlob") => self.hit(BlockerKind::AppendBlob, &e.key, e.size),
            Some("PageBlob") => self.hit(BlockerKind::PageBlob, &e.key, e.size),
            _ => {}
        }
        if !matches!(Path::parse(&e.key), Ok(p) if p.as_ref() == e.key) {
            self.hit(BlockerKind::KeyUncarriable, &e.key, e.size);
        }
        let Some(t) = &self.target else { return };
        let (too_large, too_long) = (e.size > t.max_object, t.key_too_long(&e.key));
        let meta = e
            .details
            .metadata
            .as_deref()
            .is_some_and(|m| t.refuses_metadata(m));
        if too_large {
            self.hit(BlockerKind::TooLarge, &e.key, e.size);
        }
        if too_long {
            self.hit(BlockerKind::KeyTooLong, &e.key, e.size);
        }
        if meta {
            self.hit(BlockerKind::Metadata, &e.key, e.size);
        }
    }

    /// Every kind found, in report order.
    pub fn finish(self) -> Vec<Blocker> {
        self.found.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::limits::{PartPolicy, Provider};

    fn listed(key: &str, size: u64) -> Listed {
        Listed::new(key.into(), size, chrono::DateTime::UNIX_EPOCH)
    }

    #[test]
    fn each_rule_names_its_keys() {
        let mut policy = PartPolicy::for_provider(Provider::Aws);
        policy.limits.max_parts = 2;
        let rules = TargetRules::new(StoreKind::S3, &policy);
        assert_eq!(rules.max_object, 2 * 5 * 1024 * 1024 * 1024);
        let mut t = BlockerTally::new(Some(rules), 1);
        let mut arch = listed("cold/a", 3);
        arch.details.class = Some("Archive".into());
        t.add(&arch);
        let mut app = listed("log", 4);
        app.details.blob_type = Some("AppendBlob".into());
        t.add(&app);
        t.add(&listed("big", (10 << 30) | 1));
        t.add(&listed(&"k".repeat(1025), 1));
        t.add(&listed(&"é".repeat(512), 1)); // 1,024 bytes: fits
        t.add(&listed("m//x", 1));
        let mut meta = listed("meta", 1);
        meta.details.metadata = Some(vec![("owner".into(), "x".repeat(2048))]);
        t.add(&meta);
        let mut snap = listed("a", 9);
        snap.details.snapshot = Some("2026-12-01T00:00:00.0000000Z".into());
        t.add_old(&snap);
        let got: Vec<(BlockerKind, u64, u64, Vec<String>)> = t
            .finish()
            .into_iter()
            .map(|b| (b.kind, b.objects, b.bytes, b.examples))
            .collect();
        assert_eq!(
            got,
            [
                (BlockerKind::Archived, 1, 3, vec!["cold/a".into()]),
                (BlockerKind::AppendBlob, 1, 4, vec!["log".into()]),
                (
                    BlockerKind::Snapshot,
                    1,
                    9,
                    vec!["a@2026-12-01T00:00:00.0000000Z".into()]
                ),
                (BlockerKind::TooLarge, 1, (10 << 30) | 1, vec!["big".into()]),
                (BlockerKind::KeyTooLong, 1, 1, vec!["k".repeat(1025)]),
                (BlockerKind::KeyUncarriable, 1, 1, vec!["m//x".into()]),
                (BlockerKind::Metadata, 1, 1, vec!["meta".into()]),
            ]
        );
    }

    #[test]
    fn examples_are_the_first_keys_in_key_order_whatever_the_order_seen() {
        let mut t = BlockerTally::new(None, 3);
        for k in ["m//e", "m//b", "m//d", "m//a", "m//b", "m//c", "m//f"] {
            t.add(&listed(k, 1));
        }
        let b = t.finish();
        assert_eq!(b[0].objects, 7);
        assert_eq!(b[0].examples, ["m//a", "m//b", "m//c"]);
        let mut none = BlockerTally::new(None, 0);
        none.add(&listed("m//a", 1));
        assert!(none.finish()[0].examples.is_empty());
    }

    #[test]
    fn azure_counts_characters_and_wants_identifiers() {
        let rules = TargetRules::new(StoreKind::Azure, &PartPolicy::for_provider(Provider::Azure));
        assert!(!rules.key_too_long(&"é".repeat(1024)));
        assert!(rules.key_too_long(&"é".repeat(1025)));
        assert!(rules.refuses_metadata(&[("content-owner".into(), "x".into())]));
        assert!(!rules.refuses_metadata(&[("content_owner".into(), "x".into())]));
    }
}
