//! The servers' floor on a workload: `bench-perf copy-floor` issues only
//! the requests any copier must (one listing, one GET per object and one
//! PUT, or in parts the multipart upload's requests; 256 objects at once,
//! as passeur's window reaches) and does nothing else: no hashing, no
//! checksum on the wire (unsigned payload, no Content-MD5: less for the
//! servers to check than either tool asks), no state. Its time against
//! rclone's is what the servers leave a client that spends nothing of its
//! own, in that shape; what passeur takes above it is passeur's.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use passeur_bench::measure::{Row, Runs};
use passeur_tests::servers::{azurite_builder, s3_builder};

use super::{Bench, Dst, Src};
use crate::perf_io::Expect;

/// Objects the floor copies at once (passeur's window ceiling).
const AT_ONCE: usize = 256;
/// Parts of one object in flight in the floor's multipart uploads.
const PARTS_AT_ONCE: usize = 8;

/// `bench-perf copy-floor AZURITE CONTAINER S3 BUCKET PART`: every object
/// of the Azurite container at endpoint AZURITE copied to the bucket of
/// the s3s-fs at S3: whole (PART 0), or each object over PART bytes as a
/// multipart upload of PART-byte parts.
pub fn copy_floor(args: &[String]) -> Result<()> {
    let [az, container, s3, bucket, part] = args else {
        bail!("usage: bench-perf copy-floor AZURITE CONTAINER S3 BUCKET PART");
    };
    let part: usize = part.parse().context("PART")?;
    let src: Arc<dyn ObjectStore> = Arc::new(azurite_builder(az, container).build()?);
    let dst: Arc<dyn ObjectStore> =
        Arc::new(s3_builder(s3, bucket).with_unsigned_payload(true).build()?);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        src.list(None)
            .map_err(anyhow::Error::from)
            .map_ok(|meta| {
                let (src, dst) = (Arc::clone(&src), Arc::clone(&dst));
                async move {
                    let got = src.get(&meta.location).await?;
                    if part == 0 || meta.size <= part as u64 {
                        let body = got.bytes().await?;
                        dst.put(&meta.location, PutPayload::from(body)).await?;
                        return anyhow::Ok(());
                    }
                    let upload = dst.put_multipart(&meta.location).await?;
                    let mut parts = WriteMultipart::new_with_chunk_size(upload, part);
                    let mut body = got.into_stream();
                    while let Some(bytes) = body.next().await {
                        parts.wait_for_capacity(PARTS_AT_ONCE).await?;
                        parts.write(&bytes?);
                    }
                    parts.finish().await?;
                    anyhow::Ok(())
                }
            })
            .try_buffer_unordered(AT_ONCE)
            .try_collect::<()>()
            .await
    })
}

impl Bench {
    /// `copy-floor` from `src` (an Azurite container) into a fresh copy
    /// of `dst` (an s3s-fs bucket), whole (`part` 0) or in parts of `part`
    /// bytes, timed as the tools are and read back, `self.runs` times: a
    /// row against `peer` (rclone's runs).
    pub(super) fn floor(
        &mut self,
        (row, part): (&Row, usize),
        (src, dst): (&Src, &Dst),
        peer: &Runs,
        want: &Expect,
    ) -> Result<Row> {
        let (
            Src::Azure {
                container,
                endpoint,
            },
            Dst::S3 { .. },
        ) = (src, dst)
        else {
            bail!("the floor copies from Azurite to s3s-fs only");
        };
        let (name, shape) = match part {
            0 => ("floor", "one GET and one PUT per object".to_owned()),
            p => (
                "floor-parts",
                format!("one GET per object, PUTs in {} MiB parts", p >> 20),
            ),
        };
        let mut floor = Row {
            name: format!("{}-{name}", row.name),
            what: format!("{}; the servers' floor: {shape}, nothing else", row.what),
            goal: None,
            rss_goal: None,
            passeur: Runs::default(),
            peer: peer.clone(),
            ..row.clone()
        };
        for run in 0..self.runs {
            let d = self.fresh(dst)?;
            let Dst::S3 {
                bucket,
                endpoint: to,
            } = &d
            else {
                bail!("fresh changed the target's kind")
            };
            let mut c = std::process::Command::new(std::env::current_exe()?);
            c.arg("copy-floor")
                .args([endpoint, container, to, bucket])
                .arg(part.to_string());
            let cost = self.run(&c).context("the servers' floor")?;
            self.check(&d, want, run == 0)
                .context("the floor's target")?;
            floor.passeur.0.push(cost);
            self.drop_target(&d)?;
        }
        Ok(floor)
    }
}
