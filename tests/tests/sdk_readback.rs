//! The second independent read-back of the fault scenarios — listing and
//! reading a bucket through the server's own SDK (`tests/support/sdk.py`)
//! — sees every key raw on each server (awkward keys included: s3s-fs
//! echoes an EncodingType it did not apply), and fails on a stray object
//! or on one whose bytes differ.

use anyhow::{Result, ensure};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use passeur_tests::dataset::{self, Obj};
use passeur_tests::servers::{Kind, Server};

fn objects() -> Vec<Obj> {
    dataset::standard(12, 5)
        .into_iter()
        .filter(|o| o.data.len() < (1 << 20))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_read_back_sees_raw_keys_and_every_difference() -> Result<()> {
    for kind in [Kind::Moto, Kind::S3sFs, Kind::Azurite] {
        let server = Server::start(kind)?;
        server.create_bucket("dst")?;
        let store = server.client("dst")?;
        let mut objs = objects();
        dataset::seed(store.as_ref(), &objs).await?;
        dataset::verify_sdk(&server.sdk_read_back("dst")?, &objs)
            .map_err(|e| e.context(format!("{kind:?}: the dataset as seeded")))?;

        // One byte changed, the length kept.
        let i = objs
            .iter()
            .position(|o| o.key.contains('+'))
            .ok_or_else(|| anyhow::anyhow!("no key with +"))?;
        let mut changed = objs[i].data.to_vec();
        changed[0] ^= 1;
        store
            .put(
                &Path::parse(&objs[i].key)?,
                PutPayload::from(changed.clone()),
            )
            .await?;
        ensure!(
            dataset::verify_sdk(&server.sdk_read_back("dst")?, &objs).is_err(),
            "{kind:?}: a changed byte went unseen"
        );
        objs[i].data = Bytes::from(changed);
        dataset::verify_sdk(&server.sdk_read_back("dst")?, &objs)?;

        // A stray object.
        store
            .put(&Path::parse("stray/x.bin")?, PutPayload::from_static(b"x"))
            .await?;
        ensure!(
            dataset::verify_sdk(&server.sdk_read_back("dst")?, &objs).is_err(),
            "{kind:?}: a stray object went unseen"
        );
    }
    Ok(())
}
