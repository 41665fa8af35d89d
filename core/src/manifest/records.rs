//! Values stored in the manifest and their encodings. Every byte format of
//! the state directory is defined in this module or in `manifest/mod.rs`.

use serde::{Deserialize, Serialize};

use crate::content::hash::Hash;

/// Where an object stands in its trip from source to target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectState {
    /// At the target, byte-identical to the recorded source version.
    Complete,
}

/// Identity of one version of a source object, as the source reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceVersion {
    /// Size in bytes.
    pub size: u64,
    /// ETag without surrounding quotes, when the store gives one.
    pub etag: Option<String>,
    /// Store-specific version id.
    pub version: Option<String>,
    /// Last-modified, milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
}

impl SourceVersion {
    /// Whether a listing entry describes this same version. ETags are compared
    /// only when both sides have one: some servers leave them out of listings.
    /// An equal ETag needs the same last-modified second too: S3 keeps an
    /// object's ETag (the MD5 of its bytes) when only its attributes change
    /// (a copy onto itself with new metadata), and only Last-Modified says
    /// so. Seconds, because a listing gives milliseconds and a HEAD whole
    /// seconds of the same time.
    pub fn same_as(&self, other: &SourceVersion) -> bool {
        if self.size != other.size {
            return false;
        }
        match (&self.etag, &other.etag) {
            (Some(a), Some(b)) => {
                a == b
                    && self.last_modified_ms.div_euclid(1000)
                        == other.last_modified_ms.div_euclid(1000)
            }
            _ => self.last_modified_ms == other.last_modified_ms,
        }
    }
}

/// Strip the quotes (and weak marker) some servers put around ETags, so that
/// listing and HEAD values compare equal.
pub fn normalize_etag(etag: Option<&str>) -> Option<String> {
    let e = etag?.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    let e = e.trim_matches('"');
    (!e.is_empty()).then(|| e.to_owned())
}

/// The manifest entry of one object (column family `objects`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Source version that was replicated.
    pub source: SourceVersion,
    /// BLAKE3 of the whole content (what `b3sum` prints).
    pub blake3: Hash,
    /// Number of content-defined chunks (the list lives in `chunklists`
    /// for two or more; one or none: derived, `Manifest::chunk_list`).
    pub chunks: u32,
    /// ETag the target returned, unquoted.
    pub target_etag: Option<String>,
    /// BLAKE3 over the attributes written with the object; server-side copy
    /// for dedup is used only between objects with equal attributes.
    pub attrs_digest: Hash,
    /// Lifecycle state.
    pub state: ObjectState,
    /// When this record was written, milliseconds since the Unix epoch.
    pub recorded_ms: i64,
}

/// Encoding of records: postcard, preceded by a one-byte format tag so the
/// layout can evolve without a schema bump for every field.
const RECORD_FORMAT: u8 = 1;

/// Encode a value for storage.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_FORMAT];
    // postcard only fails on writer errors, which a Vec does not have.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

/// Format 2: a record type that gained fields since format 1 (only
/// [`PartDone`](super::PartDone) so far, which gained `md5_after`); its
/// format-1 records still decode ([`decode_evolved`]).
const RECORD_FORMAT_2: u8 = 2;

/// Encode a value of a type that gained fields in format 2.
pub fn encode_v2<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_FORMAT_2];
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

/// Decode a value of a type that gained fields in format 2: a format-1
/// record decodes as `Old`, its layout then, and converts.
pub fn decode_evolved<'a, T, Old>(bytes: &'a [u8]) -> Result<T, String>
where
    T: Deserialize<'a>,
    Old: Deserialize<'a> + Into<T>,
{
    match bytes.split_first() {
        Some((&RECORD_FORMAT, rest)) => postcard::from_bytes::<Old>(rest)
            .map(Into::into)
            .map_err(|e| e.to_string()),
        Some((&RECORD_FORMAT_2, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((tag, _)) => Err(format!("unknown record format {tag}")),
        None => Err("empty record".into()),
    }
}

/// Decode a stored value.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&RECORD_FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((tag, _)) => Err(format!("unknown record format {tag}")),
        None => Err("empty record".into()),
    }
}

/// `chunks` column family value: chunk size (u32 LE) then reference count
/// (i64 LE). Merge operands have the same layout and carry a count delta.
pub fn chunk_value(size: u32, refs: i64) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&size.to_le_bytes());
    v[4..].copy_from_slice(&refs.to_le_bytes());
    v
}

/// Parse a `chunks` value.
pub fn parse_chunk_value(v: &[u8]) -> Option<(u32, i64)> {
    let size = u32::from_le_bytes(v.get(..4)?.try_into().ok()?);
    let refs = i64::from_le_bytes(v.get(4..12)?.try_into().ok()?);
    Some((size, refs))
}

/// Merge operator of the `chunks` column family: sums reference deltas.
pub fn merge_chunk_refs(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let (mut size, mut refs) = existing.and_then(parse_chunk_value).unwrap_or((0, 0));
    for op in operands {
        if let Some((s, d)) = parse_chunk_value(op) {
            size = s;
            refs = refs.saturating_add(d);
        }
    }
    Some(chunk_value(size, refs).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_normalize_across_servers() {
        assert_eq!(normalize_etag(Some("\"abc\"")), Some("abc".into()));
        assert_eq!(normalize_etag(Some("abc")), Some("abc".into()));
        assert_eq!(normalize_etag(Some("W/\"abc\"")), Some("abc".into()));
        assert_eq!(normalize_etag(Some("\"\"")), None);
        assert_eq!(normalize_etag(None), None);
    }

    #[test]
    fn version_comparison_falls_back_to_mtime_without_etag() {
        let a = SourceVersion {
            size: 3,
            etag: None,
            version: None,
            last_modified_ms: 10,
        };
        let mut b = a.clone();
        b.etag = Some("x".into());
        assert!(a.same_as(&b));
        b.last_modified_ms = 11;
        assert!(!a.same_as(&b));
        let mut c = b.clone();
        c.etag = Some("x".into());
        c.last_modified_ms = 999;
        assert!(b.same_as(&c), "a listing's milliseconds, a HEAD's second");
        c.last_modified_ms = 1_000;
        assert!(
            !b.same_as(&c),
            "an equal ETag in another second: the attributes changed"
        );
        c.last_modified_ms = 11;
        c.size = 4;
        assert!(!b.same_as(&c));
    }

    #[test]
    fn records_round_trip() {
        let r = ObjectRecord {
            source: SourceVersion {
                size: 1,
                etag: Some("e".into()),
                version: None,
                last_modified_ms: 5,
            },
            blake3: Hash::of(b"x"),
            chunks: 1,
            target_etag: None,
            attrs_digest: Hash::of(b""),
            state: ObjectState::Complete,
            recorded_ms: 7,
        };
        assert_eq!(decode::<ObjectRecord>(&encode(&r)), Ok(r));
        assert!(decode::<ObjectRecord>(&[9, 1, 2]).is_err());
    }
}
