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
use passeur_tests::feedgen::{Change, FeedFiles};
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

/// passeur's store for Azurite's `$blobchangefeed`, and a cursor at
/// `hour` of 2022-11-28.
fn reader_at(azurite: &Server, hour: u32) -> Result<(FeedReader, Cursor)> {
    let store = Store::open(
        &azurite.url("$blobchangefeed"),
        &azurite.store_options(),
        LocalDir::MustExist,
    )?;
    let start = Cursor {
        segment_ms: hour_ms(hour),
        shards: Vec::new(),
    };
    Ok((FeedReader::new(store.inner.clone()), start))
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

    let (feed, start) = reader_at(&azurite, 21)?;
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

fn change(event: &'static str, api: &'static str, blob: &str, seq: u64) -> Change {
    Change {
        event,
        api,
        container: "data".into(),
        blob: blob.into(),
        etag: format!("0x8DAD1899{seq:07X}"),
        size: i64::try_from(seq).unwrap_or(0) * 10,
        sequencer: format!("{:048x}", seq),
        time: format!("2022-11-29T0{}:00:{:02}.0000000Z", seq / 100, seq % 60),
    }
}

/// Feed files written in Azure's layout and schema (two closed hours of
/// two shards, several blocks, creates, a delete, a control record and an
/// hour still open) read back event for event through Azurite.
#[tokio::test]
async fn generated_feed_files_read_back_event_for_event() -> Result<()> {
    let azurite = Server::start(Kind::Azurite)?;
    azurite.create_bucket("$blobchangefeed")?;
    let seed = azurite.client("$blobchangefeed")?;
    let files = FeedFiles::new()?;
    let put = |path: String, bytes: Vec<u8>| {
        let seed = seed.clone();
        async move { seed.put(&OsPath::from(path), PutPayload::from(bytes)).await }
    };
    let mut want = Vec::new();
    for (hour, status) in [(0, "Finalized"), (1, "Finalized"), (2, "Publishing")] {
        let shards: Vec<String> = (0..2)
            .map(|s| format!("log/{s:02}/2022/11/29/0{hour}00/"))
            .collect();
        for (s, shard) in shards.iter().enumerate() {
            let base = hour * 100 + s as u64 * 10;
            let first = vec![
                change(
                    "BlobCreated",
                    "PutBlob",
                    &format!("h{hour}/s{s}/a b+c"),
                    base + 1,
                ),
                change(
                    "BlobCreated",
                    "PutBlockList",
                    &format!("h{hour}/s{s}/é"),
                    base + 2,
                ),
            ];
            let second = vec![
                change("Control", "ControlEvent", "", base + 3),
                change(
                    "BlobDeleted",
                    "DeleteBlob",
                    &format!("h{hour}/s{s}/a b+c"),
                    base + 4,
                ),
            ];
            if status == "Finalized" {
                want.extend(first.iter().chain(&second[1..]).map(|c| c.blob.clone()));
            }
            put(format!("{shard}00000.avro"), files.chunk(&[first])?).await?;
            put(format!("{shard}00001.avro"), files.chunk(&[second])?).await?;
        }
        let begin = format!("2022-11-29T0{hour}:00:00.000Z");
        put(
            format!("idx/segments/2022/11/29/0{hour}00/meta.json"),
            FeedFiles::segment_json(&begin, status, &shards).into_bytes(),
        )
        .await?;
    }
    put(
        "meta/segments.json".into(),
        FeedFiles::segments_json("2022-11-29T02:00:00.000Z").into_bytes(),
    )
    .await?;

    let (feed, start) = reader_at(&azurite, 24)?;
    let polled = feed.poll(&start, usize::MAX).await?;
    let got: Vec<String> = polled.events.iter().map(|e| e.blob.clone()).collect();
    ensure!(got == want, "events {got:?}, want {want:?}");
    ensure!(polled.controls == 4, "controls {}", polled.controls);
    let deleted = polled
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Deleted)
        .count();
    ensure!(deleted == 4, "deletes {deleted}");
    ensure!(
        polled.cursor.segment_ms == hour_ms(26) && polled.cursor.shards.is_empty(),
        "waits at the open hour: {:?}",
        polled.cursor
    );
    Ok(())
}
