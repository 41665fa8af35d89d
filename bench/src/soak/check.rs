//! The soak's independent checks, with the faults off and without passeur:
//! both stores listed and every object read whole and hashed with BLAKE3
//! by object_store clients of their own; multipart uploads left open at
//! the target read from s3s-fs's data directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt};
use passeur_tests::netfault::{Kind as Fault, NetFaults};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Key → (size, BLAKE3 of the bytes read).
pub type Digests = BTreeMap<String, (u64, blake3::Hash)>;

/// List `store` and hash every object it lists.
pub async fn digests(store: &dyn ObjectStore) -> Result<Digests> {
    let keys: Vec<OsPath> = store
        .list(None)
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .context("list")?;
    futures::stream::iter(keys)
        .map(|k| async move {
            let bytes = store
                .get(&k)
                .await
                .with_context(|| format!("get {k}"))?
                .bytes()
                .await
                .with_context(|| format!("read {k}"))?;
            anyhow::Ok((
                k.as_ref().to_owned(),
                (bytes.len() as u64, blake3::hash(&bytes)),
            ))
        })
        .buffer_unordered(8)
        .try_collect()
        .await
}

/// Source against target.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Objects at the source.
    pub source: usize,
    /// Objects at the target.
    pub target: usize,
    /// Bytes at the source.
    pub bytes: u64,
    /// Keys at the source, not at the target.
    pub missing: Vec<String>,
    /// Keys at the target, not at the source.
    pub extra: Vec<String>,
    /// Keys at both whose size or BLAKE3 differ.
    pub differ: Vec<String>,
}

impl Comparison {
    /// Same keys, same bytes.
    pub fn equal(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.differ.is_empty()
    }
}

/// Compare the two sides' digests.
pub fn compare(source: &Digests, target: &Digests) -> Comparison {
    let mut c = Comparison {
        source: source.len(),
        target: target.len(),
        bytes: source.values().map(|(size, _)| size).sum(),
        ..Comparison::default()
    };
    for (k, v) in source {
        match target.get(k) {
            None => c.missing.push(k.clone()),
            Some(t) if t != v => c.differ.push(k.clone()),
            Some(_) => {}
        }
    }
    c.extra = target
        .keys()
        .filter(|k| !source.contains_key(*k))
        .cloned()
        .collect();
    c
}

/// A multipart upload open at the target.
#[derive(Debug)]
pub struct OpenUpload {
    /// Its object key (from s3s-fs's metadata file; empty if none).
    pub key: String,
    /// Its upload id.
    pub id: String,
    /// When s3s-fs created it.
    pub created: SystemTime,
    /// Why it is open, if an injected fault explains it.
    pub explained: Option<String>,
}

/// Uploads open in `bucket` of the s3s-fs whose data directory is `root`:
/// s3s-fs writes `.upload-ID.json` at CreateMultipartUpload and removes it
/// at completion or abort (and keeps the key in
/// `.bucket-B64.object-B64.upload-ID.metadata.json`).
pub fn open_uploads(root: &Path, bucket: &str) -> Result<Vec<OpenUpload>> {
    let mut ids = Vec::new();
    let mut keys = BTreeMap::new();
    for e in std::fs::read_dir(root).with_context(|| format!("read {}", root.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name
            .strip_prefix(".upload-")
            .and_then(|r| r.strip_suffix(".json"))
        {
            ids.push((id.to_owned(), e.metadata()?.modified()?));
        } else if let Some(rest) = name
            .strip_prefix(".bucket-")
            .and_then(|r| r.strip_suffix(".metadata.json"))
            && let Some((b, rest)) = rest.split_once(".object-")
            && let Some((k, id)) = rest.split_once(".upload-")
            && b64url(b).as_deref() == Some(bucket.as_bytes())
            && let Some(key) = b64url(k).and_then(|k| String::from_utf8(k).ok())
        {
            keys.insert(id.to_owned(), key);
        }
    }
    Ok(ids
        .into_iter()
        .map(|(id, created)| OpenUpload {
            key: keys.get(&id).cloned().unwrap_or_default(),
            id,
            created,
            explained: None,
        })
        .collect())
}

/// One pass's window and the target's fault schedule in it.
#[derive(Debug)]
pub struct Window {
    /// Pass number.
    pub pass: u64,
    /// When its process was started and when it ended.
    pub from: SystemTime,
    /// When it ended.
    pub to: SystemTime,
}

/// How object_store writes a key into an S3 request path.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Whether an injected fault explains `u`: a CreateMultipartUpload the
/// server carried out whose answer the proxy cut (reset or truncated), so
/// that passeur never learnt the upload id. The faults follow from the
/// seed and the request, so the schedule of the pass that was running
/// when s3s-fs created the upload (`schedule(pass)`, a fresh copy) is
/// asked again for that request, for its first few sightings (a retry, an
/// object started over).
pub fn explain(
    u: &OpenUpload,
    bucket: &str,
    windows: &[Window],
    schedule: impl Fn(u64) -> NetFaults,
) -> Option<String> {
    let w = windows
        .iter()
        .find(|w| w.from <= u.created && u.created <= w.to)?;
    if u.key.is_empty() {
        return None;
    }
    let target = format!("/{bucket}/{}?uploads=", utf8_percent_encode(&u.key, PATH));
    let faults = schedule(w.pass);
    (1..=6).find_map(|n| match faults.decide("POST", &target, None) {
        Some(k @ (Fault::ResetResponse | Fault::Truncate)) => Some(format!(
            "pass {}: CreateMultipartUpload answer cut ({k:?}, sighting {n})",
            w.pass
        )),
        _ => None,
    })
}

/// Decode unpadded URL-safe base64 (s3s-fs's names of metadata files).
fn b64url(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | u32::from(val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).ok()?);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_names_decode() {
        assert_eq!(b64url("ZHN0").as_deref(), Some(&b"dst"[..]));
        assert_eq!(b64url("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(b64url("YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(b64url("a2V5cy9hK2I_").as_deref(), Some(&b"keys/a+b?"[..]));
    }
}
