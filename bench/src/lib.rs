//! Helpers shared by the benchmarks: rclone remotes on the test servers,
//! and seeding many small objects through the S3 API; a synthetic S3
//! bucket ([`synth`]) for more objects than the emulators can hold.

pub mod measure;
pub mod synth;
pub mod timeline;

use std::process::Command;

use anyhow::{Context, Result};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_tests::servers::{S3_KEY, S3_SECRET};

/// A benchmark setting from the environment: the number in `name`, or
/// `default` when it is unset.
pub fn env_u64(name: &str, default: u64) -> Result<u64> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.parse()
            .with_context(|| format!("{name}={v:?} is not a number"))
    })
}

/// Configure rclone remote `NAME` (upper case in the variables) as the S3
/// server at `endpoint`, through environment variables only.
pub fn rclone_remote(c: &mut Command, name: &str, endpoint: &str) {
    c.env_remove("AWS_CA_BUNDLE");
    let name = name.to_uppercase();
    for (k, v) in [
        ("TYPE", "s3"),
        ("PROVIDER", "Other"),
        ("ENDPOINT", endpoint),
        ("ACCESS_KEY_ID", S3_KEY),
        ("SECRET_ACCESS_KEY", S3_SECRET),
        ("REGION", "us-east-1"),
        ("FORCE_PATH_STYLE", "true"),
    ] {
        c.env(format!("RCLONE_CONFIG_{name}_{k}"), v);
    }
}

/// Keys of a mixed layout: date-partitioned logs, flat hashed blobs, and
/// a few per-user folders; `n` in all, sorted.
pub fn mixed_keys(n: usize) -> Vec<String> {
    let mut keys: Vec<String> = (0..n)
        .map(|i| match i % 3 {
            0 => format!(
                "logs/2024/{:02}/{:02}/event-{i:08}.json",
                i % 12 + 1,
                i % 28 + 1
            ),
            1 => format!(
                "blobs/{:016x}",
                (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ),
            _ => format!("users/u{:04}/doc-{i:08}.pdf", i % 500),
        })
        .collect();
    keys.sort();
    keys
}

/// Put `body(i)` under each key, `concurrency` at a time.
pub async fn seed(
    store: &dyn ObjectStore,
    keys: &[String],
    body: impl Fn(usize) -> Vec<u8>,
    concurrency: usize,
) -> Result<()> {
    let body = &body;
    let results: Vec<Result<()>> = futures::stream::iter(keys.iter().enumerate())
        .map(|(i, k)| async move {
            store
                .put(&Path::parse(k)?, PutPayload::from(body(i)))
                .await?;
            Ok(())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}
