//! Object attributes that travel with the bytes: Content-Type and the other
//! standard headers, user metadata (Azure `x-ms-meta-*` ↔ S3 `x-amz-meta-*`,
//! both `Attribute::Metadata` in object_store), and the source's
//! last-modified time as `mtime` metadata in rclone's format.

use object_store::{Attribute, AttributeValue, Attributes};

use crate::content::hash::Hash;

/// Metadata key carrying the source's last-modified time, seconds since the
/// Unix epoch with a fraction (what rclone writes and reads).
pub const MTIME_KEY: &str = "mtime";

/// The attributes to write at the target for a source object.
///
/// `source_attrs`: what the source returned; `guess_type`: when the source
/// has no Content-Type (local files), guess one from the key's extension.
pub fn for_target(
    source_attrs: &Attributes,
    key: &str,
    last_modified_ms: i64,
    guess_type: bool,
) -> Attributes {
    let mut out = Attributes::new();
    for (k, v) in source_attrs {
        match k {
            // Storage class is a property of the target's configuration.
            Attribute::StorageClass => {}
            other => {
                out.insert(other.clone(), v.clone());
            }
        }
    }
    if guess_type
        && out.get(&Attribute::ContentType).is_none()
        && let Some(m) = mime_guess::from_path(key).first()
    {
        out.insert(
            Attribute::ContentType,
            AttributeValue::from(m.essence_str().to_owned()),
        );
    }
    let meta = Attribute::Metadata(MTIME_KEY.into());
    if out.get(&meta).is_none() {
        let secs = last_modified_ms.div_euclid(1000);
        let millis = last_modified_ms.rem_euclid(1000);
        out.insert(meta, AttributeValue::from(format!("{secs}.{millis:03}")));
    }
    out
}

/// Whether a source's attributes carry their own `mtime` metadata (an
/// object written by rclone, or by a user): it travels as it is, and is
/// the object's as much as its Content-Type.
pub fn own_mtime(source_attrs: &Attributes) -> bool {
    source_attrs
        .get(&Attribute::Metadata(MTIME_KEY.into()))
        .is_some()
}

/// A digest of an attribute set, independent of insertion order. The
/// `mtime` passeur wrote from the source's last-modified is left out
/// (`own_mtime` false): objects with equal content and equal other
/// attributes are dedup candidates even when written at different times,
/// and a server-side copy carries the holder's `mtime` (see
/// ARCHITECTURE.md). An `mtime` of the source's own is in it: a copy from
/// a holder with another would lose it.
pub fn digest(attrs: &Attributes, own_mtime: bool) -> Hash {
    let mut items: Vec<(String, String)> = attrs
        .iter()
        .filter(|(k, _)| own_mtime || !matches!(k, Attribute::Metadata(m) if m == MTIME_KEY))
        .map(|(k, v)| (name(k), v.as_ref().to_owned()))
        .collect();
    items.sort();
    let mut h = blake3::Hasher::new_derive_key("passeur 2026-11 attributes v1");
    for (k, v) in items {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    h.finalize().into()
}

/// Whether attributes found at the target (a HEAD) are those a record's
/// digest names. The target cannot tell whose its `mtime` is, so both
/// digests are tried: one with its `mtime` and one without cannot be
/// equal (one item set holds an `mtime`, the other none).
pub fn matches(found: &Attributes, want: &Hash) -> bool {
    digest(found, false) == *want || digest(found, true) == *want
}

fn name(a: &Attribute) -> String {
    match a {
        Attribute::ContentDisposition => "content-disposition".into(),
        Attribute::ContentEncoding => "content-encoding".into(),
        Attribute::ContentLanguage => "content-language".into(),
        Attribute::ContentType => "content-type".into(),
        Attribute::CacheControl => "cache-control".into(),
        Attribute::StorageClass => "storage-class".into(),
        Attribute::Metadata(k) => format!("meta:{k}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_source_attributes_and_adds_mtime() {
        let mut src = Attributes::new();
        src.insert(Attribute::ContentType, "text/csv".into());
        src.insert(Attribute::Metadata("owner".into()), "ops".into());
        src.insert(Attribute::StorageClass, "COOL".into());
        let out = for_target(&src, "a.bin", 1_600_000_000_123, true);
        assert_eq!(
            out.get(&Attribute::ContentType).map(|v| v.as_ref()),
            Some("text/csv")
        );
        assert_eq!(
            out.get(&Attribute::Metadata("owner".into()))
                .map(|v| v.as_ref()),
            Some("ops")
        );
        assert_eq!(
            out.get(&Attribute::Metadata(MTIME_KEY.into()))
                .map(|v| v.as_ref()),
            Some("1600000000.123")
        );
        assert!(out.get(&Attribute::StorageClass).is_none());
    }

    #[test]
    fn guesses_type_for_local_files_and_digest_is_order_free() {
        let out = for_target(&Attributes::new(), "dir/page.html", 0, true);
        assert_eq!(
            out.get(&Attribute::ContentType).map(|v| v.as_ref()),
            Some("text/html")
        );
        let mut a = Attributes::new();
        a.insert(Attribute::ContentType, "x".into());
        a.insert(Attribute::CacheControl, "y".into());
        let mut b = Attributes::new();
        b.insert(Attribute::CacheControl, "y".into());
        b.insert(Attribute::ContentType, "x".into());
        assert_eq!(digest(&a, false), digest(&b, false));
        b.insert(Attribute::ContentType, "z".into());
        assert_ne!(digest(&a, false), digest(&b, false));
        let mut c = a.clone();
        c.insert(Attribute::Metadata(MTIME_KEY.into()), "1.000".into());
        assert_eq!(
            digest(&a, false),
            digest(&c, false),
            "passeur's mtime does not block dedup"
        );
    }

    #[test]
    fn a_sources_own_mtime_is_its_attribute() {
        let mut src = Attributes::new();
        src.insert(Attribute::ContentType, "text/plain".into());
        let written = for_target(&src, "k", 5_000, false);
        let mut own = src.clone();
        own.insert(Attribute::Metadata(MTIME_KEY.into()), "7.5".into());
        assert!(!own_mtime(&src) && own_mtime(&own));
        let (d_written, d_own) = (digest(&written, false), digest(&own, true));
        assert_ne!(d_written, d_own, "another object's mtime is not this one's");
        let mut other = own.clone();
        other.insert(Attribute::Metadata(MTIME_KEY.into()), "8.5".into());
        assert_ne!(digest(&other, true), d_own);
        // What a HEAD finds matches the digest it was written under, and
        // no other.
        assert!(matches(&written, &d_written) && matches(&own, &d_own));
        assert!(!matches(&other, &d_own) && !matches(&src, &d_own));
        let mut html = written.clone();
        html.insert(Attribute::ContentType, "text/html".into());
        assert!(!matches(&html, &d_written));
    }
}
