//! Seeded datasets and independent verification of a replica.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as OsPath;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use passeur_core::manifest::Manifest;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Part size the S3 tests configure (moto rejects smaller non-last parts).
pub const PART: usize = 5 * 1024 * 1024;

/// One object of a dataset.
#[derive(Debug, Clone)]
pub struct Obj {
    /// Key relative to the dataset root.
    pub key: String,
    /// Content.
    pub data: Bytes,
    /// Content-Type set at the source (object stores only).
    pub content_type: Option<String>,
    /// User metadata set at the source (object stores only).
    pub meta: Vec<(String, String)>,
}

fn random(rng: &mut StdRng, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

impl Obj {
    /// An object at `key` of `len` random bytes from `seed`, without
    /// attributes.
    pub fn random(key: &str, len: usize, seed: u64) -> Self {
        Self {
            key: key.to_owned(),
            data: random(&mut StdRng::seed_from_u64(seed), len),
            content_type: None,
            meta: Vec::new(),
        }
    }
}

/// `size` bytes that depend on `key` and `generation` alone (a BLAKE3
/// chain): a new generation is new content, the same one is the same bytes.
pub fn body(key: &str, size: u64, generation: u8) -> Vec<u8> {
    let seed = blake3::hash(format!("{key}/{generation}").as_bytes());
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut block = *seed.as_bytes();
    while (out.len() as u64) < size {
        block = *blake3::hash(&block).as_bytes();
        out.extend_from_slice(&block);
    }
    out.truncate(usize::try_from(size).unwrap_or(0));
    out
}

/// The standard dataset of the acceptance criteria: empty object, part size
/// and ±1, more than 3 parts, one that needs a larger part size under
/// `max-parts = 4`, `small` small objects, and awkward keys.
pub fn standard(seed: u64, small: usize) -> Vec<Obj> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut objs = Vec::new();
    let mut add = |key: &str, data: Bytes, ct: Option<&str>| {
        objs.push(Obj {
            key: key.to_owned(),
            data,
            content_type: ct.map(str::to_owned),
            meta: vec![
                ("origin".into(), format!("seed-{seed}")),
                ("owner".into(), "health-data".into()),
            ],
        });
    };
    add("empty.bin", Bytes::new(), Some("application/octet-stream"));
    add("parts/part-minus-1.bin", random(&mut rng, PART - 1), None);
    add("parts/part-exact.bin", random(&mut rng, PART), None);
    add("parts/part-plus-1.bin", random(&mut rng, PART + 1), None);
    add(
        "parts/three-and-a-half.bin",
        random(&mut rng, PART * 7 / 2),
        None,
    );
    add(
        "parts/forces-bigger-parts.bin",
        random(&mut rng, 30 * 1024 * 1024),
        None,
    );
    add(
        "keys/with space.txt",
        random(&mut rng, 100),
        Some("text/plain"),
    );
    add(
        "keys/unicodé/ファイル.txt",
        random(&mut rng, 100),
        Some("text/plain; charset=utf-8"),
    );
    add(
        "keys/plus+sign.csv",
        random(&mut rng, 100),
        Some("text/csv"),
    );
    add("keys/percent%41.dat", random(&mut rng, 100), None);
    add(
        "keys/equals=sign.json",
        random(&mut rng, 100),
        Some("application/json"),
    );
    add(
        "keys/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n.txt",
        random(&mut rng, 100),
        None,
    );
    for i in 0..small {
        let len = rng.random_range(1..2000);
        add(
            &format!("small/{:02}/obj-{i:05}.dat", i % 37),
            random(&mut rng, len),
            None,
        );
    }
    objs
}

/// `n` small objects named `key(i)` whose bytes are `{text} {i}`.
pub fn numbered(key: impl Fn(usize) -> String, text: &str, n: usize) -> Vec<Obj> {
    (0..n)
        .map(|i| Obj {
            key: key(i),
            data: Bytes::from(format!("{text} {i}")),
            content_type: None,
            meta: vec![],
        })
        .collect()
}

/// Write a dataset as files under `dir`.
pub fn write_dir(dir: &Path, objs: &[Obj]) -> Result<()> {
    for o in objs {
        let p = dir.join(&o.key);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &o.data)?;
    }
    Ok(())
}

/// The attributes a dataset object carries at a source store.
pub fn attributes(o: &Obj) -> Attributes {
    let mut a = Attributes::new();
    if let Some(ct) = &o.content_type {
        a.insert(Attribute::ContentType, ct.clone().into());
    }
    for (k, v) in &o.meta {
        a.insert(Attribute::Metadata(k.clone().into()), v.clone().into());
    }
    a
}

/// Upload a dataset with its attributes to a store.
pub async fn seed(store: &dyn ObjectStore, objs: &[Obj]) -> Result<()> {
    futures::stream::iter(objs)
        .map(|o| async move {
            let path = OsPath::parse(&o.key)?;
            let opts = PutOptions {
                attributes: attributes(o),
                ..PutOptions::default()
            };
            store
                .put_opts(&path, PutPayload::from(o.data.clone()), opts)
                .await
                .with_context(|| format!("seed {}", o.key))?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// MD5 of `bytes`, lowercase hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compare what the server's own SDK read back
/// ([`crate::servers::Server::sdk_read_back`]) with the dataset exactly:
/// the same keys (a stray or partial object fails), each with the
/// dataset's size and MD5.
pub fn verify_sdk(found: &[crate::servers::SdkObject], objs: &[Obj]) -> Result<()> {
    use crate::servers::SdkObject;
    let mut want: Vec<SdkObject> = objs
        .iter()
        .map(|o| SdkObject {
            key: o.key.clone(),
            size: o.data.len() as u64,
            md5: md5_hex(&o.data),
        })
        .collect();
    want.sort();
    let mut got = found.to_vec();
    got.sort();
    if got == want {
        return Ok(());
    }
    let extra: Vec<&SdkObject> = got.iter().filter(|o| !want.contains(o)).collect();
    let missing: Vec<&SdkObject> = want.iter().filter(|o| !got.contains(o)).collect();
    bail!(
        "the SDK read back {} objects, the dataset has {}: {} not in the dataset (first {:?}), {} not read back as they are (first {:?})",
        got.len(),
        want.len(),
        extra.len(),
        extra.first(),
        missing.len(),
        missing.first()
    )
}

/// Keys present in a store.
pub async fn keys(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let mut out: Vec<String> = store
        .list(None)
        .map(|m| m.map(|m| m.location.as_ref().to_owned()))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    out.sort();
    Ok(out)
}

/// What [`verify`] checks beyond bytes.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Content-Type and user metadata equal the source's.
    pub attributes: bool,
    /// Content-Type guessed from the extension (local source).
    pub guessed_type: bool,
}

impl Checks {
    /// Bytes (and the manifest, when given) only.
    pub const BYTES: Checks = Checks {
        attributes: false,
        guessed_type: false,
    };
}

/// Read every object back from `target` and compare with the dataset; with
/// a state dir, also check every manifest BLAKE3 against the bytes.
pub async fn verify(
    target: &dyn ObjectStore,
    objs: &[Obj],
    checks: Checks,
    state: Option<&Path>,
) -> Result<()> {
    let manifest = state.map(Manifest::open).transpose()?;
    let mut expected: Vec<String> = objs.iter().map(|o| o.key.clone()).collect();
    expected.sort();
    let listed = keys(target).await?;
    ensure!(
        listed == expected,
        "target keys differ: {} listed vs {} expected; first extra {:?}, first missing {:?}",
        listed.len(),
        expected.len(),
        listed.iter().find(|k| !expected.contains(k)),
        expected.iter().find(|k| !listed.contains(k))
    );
    let results: Vec<Result<()>> = futures::stream::iter(objs)
        .map(|o| {
            let manifest = manifest.as_ref();
            async move {
                let got = target
                    .get(&OsPath::parse(&o.key)?)
                    .await
                    .with_context(|| format!("get {}", o.key))?;
                let attrs = got.attributes.clone();
                let bytes = got.bytes().await?;
                ensure!(
                    bytes == o.data,
                    "{}: bytes differ ({} vs {} bytes)",
                    o.key,
                    bytes.len(),
                    o.data.len()
                );
                if checks.attributes {
                    let ct = attrs
                        .get(&Attribute::ContentType)
                        .map(|v| v.as_ref().to_owned());
                    if let Some(want) = &o.content_type {
                        ensure!(
                            ct.as_deref() == Some(want.as_str()),
                            "{}: content-type {ct:?}, want {want}",
                            o.key
                        );
                    }
                    for (k, v) in &o.meta {
                        let got = attrs
                            .get(&Attribute::Metadata(k.clone().into()))
                            .map(|v| v.as_ref().to_owned());
                        ensure!(
                            got.as_deref() == Some(v.as_str()),
                            "{}: metadata {k}={got:?}, want {v}",
                            o.key
                        );
                    }
                    ensure!(
                        attrs.get(&Attribute::Metadata("mtime".into())).is_some(),
                        "{}: no mtime metadata",
                        o.key
                    );
                }
                if checks.guessed_type {
                    let ct = attrs
                        .get(&Attribute::ContentType)
                        .map(|v| v.as_ref().to_owned());
                    if o.key.ends_with(".txt") {
                        ensure!(
                            ct.as_deref() == Some("text/plain"),
                            "{}: content-type {ct:?}",
                            o.key
                        );
                    }
                    ensure!(
                        attrs.get(&Attribute::Metadata("mtime".into())).is_some(),
                        "{}: no mtime metadata",
                        o.key
                    );
                }
                if let Some(m) = manifest {
                    let rec = m
                        .object(&o.key)?
                        .with_context(|| format!("{} not in manifest", o.key))?;
                    let want = blake3::hash(&bytes);
                    ensure!(
                        rec.blake3.to_hex() == want.to_hex().as_str(),
                        "{}: manifest blake3 differs",
                        o.key
                    );
                    ensure!(
                        rec.source.size == bytes.len() as u64,
                        "{}: manifest size",
                        o.key
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !errors.is_empty() {
        bail!("{} objects wrong, first: {}", errors.len(), errors[0]);
    }
    Ok(())
}
