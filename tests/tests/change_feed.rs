//! The change-feed reader against a real Azure Blob API (Azurite): the
//! files Azure wrote for one hour (recorded by the Azure SDKs' tests,
//! `core/testdata/azure-change-feed`) are put in Azurite's
//! `$blobchangefeed` container at their own paths, and passeur reads them
//! through the store it opens for `az://$blobchangefeed` — the container
//! name with its `$`, listings by prefix, whole-chunk GETs. The events are
//! compared with what another decoder (fastavro) read from the same files.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use object_store::path::Path as OsPath;
use object_store::{ObjectStoreExt, PutPayload};
use passeur_core::feed::{Cursor, FeedReader, Kind as EventKind};
use passeur_core::stores::{LocalDir, Store};
use passeur_tests::servers::{Kind, Server};

const HOUR: &str = "v5-2022-11-28";
const FILES: [&str; 4] = [
    "log/00/2022/11/28/2100/00000.avro",
    "log/01/2022/11/28/2100/00000.avro",
    "log/02/2022/11/28/2100/00000.avro",
    "idx/segments/2022/11/28/2100/meta.json",
];

fn recorded(rel: &str) -> Result<Vec<u8>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/testdata/azure-change-feed")
        .join(HOUR)
        .join(rel);
    std::fs::read(&p).with_context(|| p.display().to_string())
}

fn hour_ms(h: u32) -> i64 {
    // 2022-11-28T00:00:00Z, then `h` hours.
    1_669_593_600_000 + i64::from(h) * 3_600_000
}

#[tokio::test]
async fn the_recorded_feed_is_read_out_of_azurites_blobchangefeed_container() -> Result<()> {
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("$blobchangefeed")?;
    let seed = azurite.client("$blobchangefeed")?;
    for rel in FILES {
        let mut bytes = recorded(rel)?;
        if rel.ends_with("meta.json") {
            // Recorded while Azure was still writing the hour; closed as
            // Azure closes it once the hour is over.
            let text = String::from_utf8(bytes)?;
            bytes = text.replace("\"Publishing\"", "\"Finalized\"").into_bytes();
        }
        seed.put(&OsPath::from(rel), PutPayload::from(bytes))
            .await?;
    }
    let segments = br#"{"version":0,"lastConsumable":"2022-11-28T22:00:00.000Z"}"#;
    seed.put(
        &OsPath::from("meta/segments.json"),
        PutPayload::from_static(segments),
    )
    .await?;

    let store = Store::open(
        &azurite.url("$blobchangefeed"),
        &azurite.store_options(),
        LocalDir::MustExist,
    )?;
    let feed = FeedReader::new(store.inner.clone());
    let start = Cursor {
        segment_ms: hour_ms(21),
        shards: Vec::new(),
    };
    let polled = feed.poll(&start, usize::MAX).await?;
    ensure!(polled.controls == 4, "control records: {}", polled.controls);
    let mut names: Vec<&str> = polled.events.iter().map(|e| e.blob.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<String> = (0..20).map(|i| format!("testfile{i}")).collect();
    want.sort();
    ensure!(names == want, "blobs named by the feed: {names:?}");
    ensure!(
        polled
            .events
            .iter()
            .all(|e| e.kind == EventKind::Created && e.container == "test" && e.size == 11),
        "events: {:?}",
        polled.events
    );
    let two = polled
        .events
        .iter()
        .find(|e| e.blob == "testfile2")
        .context("testfile2")?;
    ensure!(two.etag == "0x8DAD189932FF141", "etag {}", two.etag);
    ensure!(
        polled.cursor.segment_ms == hour_ms(22),
        "cursor {:?}",
        polled.cursor
    );

    // Read in pieces: the same events, none twice.
    let first = feed.poll(&start, 5).await?;
    let rest = feed.poll(&first.cursor, usize::MAX).await?;
    ensure!(
        first.events.len() + rest.events.len() == 20 && first.events.len() < 20,
        "{} then {}",
        first.events.len(),
        rest.events.len()
    );
    Ok(())
}
