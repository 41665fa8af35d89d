//! The reader against change-feed files Azure itself wrote (recorded by
//! the Azure SDKs' test suites; `testdata/azure-change-feed/SOURCES.md`).
//! Expected values were read with another decoder (fastavro).

use std::path::PathBuf;

use super::segments::{FeedMeta, Segment, segment_hour};
use super::*;

/// The crate's directory where the tests run (cargo sets it): a build
/// reused from a checkout elsewhere keeps the compile-time path.
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn fixture(rel: &str) -> Vec<u8> {
    let p = crate_dir().join("testdata/azure-change-feed").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const HOUR: &str = "v5-2022-11-28/log";

#[test]
fn every_event_of_an_hour_written_by_azure_is_decoded() {
    let mut names = Vec::new();
    let mut controls = 0;
    for shard in ["00", "01", "02"] {
        let bytes = fixture(&format!("{HOUR}/{shard}/2022/11/28/2100/00000.avro"));
        let r = read_chunk(&bytes, 0, usize::MAX).expect("decodes");
        assert!(r.has_header);
        assert_eq!(r.next, bytes.len(), "shard {shard}: read to its end");
        controls += r.controls;
        for e in &r.events {
            assert_eq!(e.kind, Kind::Created);
            assert_eq!(e.api, "PutBlob");
            assert_eq!(e.container, "test");
            assert_eq!(e.size, 11);
            assert_eq!(e.sequencer.len(), 48);
            assert!(e.etag.starts_with("0x8DAD1899"), "{}", e.etag);
            assert!(e.concerns("test") && !e.concerns("other"));
            names.push(e.blob.clone());
        }
    }
    assert_eq!(controls, 4, "the control records are counted and left out");
    names.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("testfile{i}")).collect();
    want.sort();
    assert_eq!(names, want, "each blob once, shards disjoint");
}

#[test]
fn one_event_reads_as_fastavro_reads_it() {
    let bytes = fixture(&format!("{HOUR}/00/2022/11/28/2100/00000.avro"));
    let r = read_chunk(&bytes, 0, usize::MAX).expect("test fixture");
    assert_eq!(r.events.len(), 7);
    let e = &r.events[0];
    assert_eq!(e.blob, "testfile2");
    assert_eq!(e.etag, "0x8DAD189932FF141");
    assert_eq!(
        e.sequencer,
        "000000000000000000000000000002AB000000000000002d"
    );
    assert_eq!(e.time, "2022-11-28T21:43:23.6463937Z");
    assert_eq!(r.events[6].blob, "testfile18");
}

#[test]
fn a_chunk_resumes_at_a_block_and_waits_for_an_append_in_progress() {
    // Shard 02: blocks at 2712 (8 records: 7 blobs, 1 control), 7940 (2
    // controls), 9199 (1 control); 9,900 bytes.
    let bytes = fixture(&format!("{HOUR}/02/2022/11/28/2100/00000.avro"));
    let all = read_chunk(&bytes, 0, usize::MAX).expect("test fixture");
    assert_eq!((all.events.len(), all.controls), (7, 4));

    let later = read_chunk(&bytes, 7940, usize::MAX).expect("test fixture");
    assert_eq!(
        (later.events.len(), later.controls, later.next),
        (0, 3, 9900)
    );

    // The chunk as read while its third block was being appended.
    let cut = read_chunk(&bytes[..9199 + 30], 0, usize::MAX).expect("test fixture");
    assert_eq!((cut.events.len(), cut.controls, cut.next), (7, 3, 9199));
    // Then as read after the append: only the new block.
    let rest = read_chunk(&bytes, cut.next, usize::MAX).expect("test fixture");
    assert_eq!((rest.events.len(), rest.controls, rest.next), (0, 1, 9900));

    // A limit stops after the block that reaches it.
    let one = read_chunk(&bytes, 0, 1).expect("test fixture");
    assert_eq!((one.events.len(), one.controls, one.next), (7, 1, 7940));

    // Only the header so far (a chunk just created), or not even that.
    let head = read_chunk(&bytes[..2712], 0, usize::MAX).expect("test fixture");
    assert!(head.has_header && head.events.is_empty());
    assert_eq!(head.next, 2712);
    assert!(
        !read_chunk(&bytes[..100], 0, usize::MAX)
            .expect("test fixture")
            .has_header
    );
}

#[test]
fn a_schema_version_4_chunk_decodes_with_its_own_schema() {
    let bytes = fixture("v4-2020-07-31/log/00/2020/07/31/1900/00000.avro");
    let r = read_chunk(&bytes, 0, usize::MAX).expect("decodes");
    assert_eq!((r.events.len(), r.controls, r.next), (70, 0, 46_407));
    let count = |k: Kind| r.events.iter().filter(|e| e.kind == k).count();
    assert_eq!(count(Kind::Created), 28);
    assert_eq!(count(Kind::SnapshotCreated), 21);
    assert_eq!(count(Kind::PropertiesUpdated), 21);
    assert!(
        r.events
            .iter()
            .filter(|e| e.kind == Kind::PropertiesUpdated)
            .all(|e| e.api == "SetBlobMetadata")
    );
    let first = &r.events[0];
    assert_eq!(first.container, "changefeed-test");
    assert_eq!(first.blob, "blob-86cced49-4ece-430a-bed6-c7093c6dc51c");
    assert_eq!((first.etag.as_str(), first.size), ("0x8D83583ECA4585D", 49));
    assert_eq!(
        first.sequencer,
        "00000000000000000000000000004077000000000022eee4"
    );
    let last = &r.events[69];
    assert_eq!(last.container, "azure-webjobs-hosts");
    assert_eq!(
        last.blob,
        "timers/changefeedgenerator2020073011454/ChangefeedGenerator.Function1.Run/status"
    );
    // Six blocks: 20 records at 2434, then 10 each from 14972.
    let one = read_chunk(&bytes, 0, 1).expect("decodes");
    assert_eq!((one.events.len(), one.next), (20, 14_972));
    let v4 = Segment::parse(&fixture(
        "v4-2020-07-31/idx/segments/2020/07/31/1900/meta.json",
    ))
    .expect("parses");
    assert_eq!(v4.shard_prefixes(), ["log/00/2020/07/31/1900/"]);
}

#[test]
fn damage_inside_a_chunk_is_refused_by_offset() {
    let mut bytes = fixture(&format!("{HOUR}/01/2022/11/28/2100/00000.avro"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // the block's sync marker
    let e = read_chunk(&bytes, 0, usize::MAX).expect_err("damaged marker");
    assert!(e.contains("sync marker") && e.contains("offset"), "{e}");

    let mut bytes = fixture(&format!("{HOUR}/01/2022/11/28/2100/00000.avro"));
    bytes[0] = b'X';
    assert!(
        read_chunk(&bytes, 0, usize::MAX)
            .expect_err("refused")
            .contains("magic")
    );
}

#[test]
fn a_chunk_shorter_than_the_cursor_is_refused() {
    // Rewritten or truncated since the cursor passed its blocks: events
    // may be lost, never "nothing new".
    let bytes = fixture(&format!("{HOUR}/02/2022/11/28/2100/00000.avro"));
    let e = read_chunk(&bytes[..7940], 9199, usize::MAX).expect_err("shorter than the cursor");
    assert!(e.contains("7940 bytes") && e.contains("9199"), "{e}");
    let e = read_chunk(&bytes[..100], 2712, usize::MAX).expect_err("header gone too");
    assert!(e.contains("100 bytes"), "{e}");
    // At its very end: nothing new, not damage.
    let end = read_chunk(&bytes, bytes.len(), usize::MAX).expect("at the end");
    assert_eq!((end.events.len(), end.next), (0, bytes.len()));
}

#[test]
fn the_index_files_azure_wrote_parse() {
    let seg = Segment::parse(&fixture(
        "v5-2022-11-28/idx/segments/2022/11/28/2100/meta.json",
    ))
    .expect("test fixture");
    assert_eq!(seg.status, segments::Status::Publishing);
    assert_eq!(
        seg.shard_prefixes(),
        [
            "log/00/2022/11/28/2100/",
            "log/01/2022/11/28/2100/",
            "log/02/2022/11/28/2100/"
        ]
    );
    assert_eq!(
        Some(seg.begin),
        segment_hour("idx/segments/2022/11/28/2100/meta.json")
    );

    let old = Segment::parse(&fixture(
        "v1-2020-06-01/idx/segments/2020/01/16/2100/meta.json",
    ))
    .expect("test fixture");
    assert_eq!(old.status, segments::Status::Finalized);
    assert_eq!(old.shard_prefixes().len(), 1);
    for dir in ["v1-2020-06-01", "v4-2020-07-31"] {
        let meta =
            FeedMeta::parse(&fixture(&format!("{dir}/meta/segments.json"))).expect("test fixture");
        assert!(old.consumable(meta.last_consumable), "{dir}");
    }
}

/// The recorded hour as a feed container in a directory, closed and
/// consumable (the recording caught it `Publishing`; the test closes it
/// as Azure does an hour later).
fn feed_dir(status: &str) -> (tempfile::TempDir, FeedReader) {
    let dir = tempfile::tempdir().expect("test fixture");
    let root = crate_dir().join("testdata/azure-change-feed/v5-2022-11-28");
    for rel in [
        "log/00/2022/11/28/2100/00000.avro",
        "log/01/2022/11/28/2100/00000.avro",
        "log/02/2022/11/28/2100/00000.avro",
        "idx/segments/2022/11/28/2100/meta.json",
    ] {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().expect("test fixture")).expect("test fixture");
        let mut bytes = std::fs::read(root.join(rel)).expect("test fixture");
        if rel.ends_with("meta.json") {
            let text = String::from_utf8(bytes).expect("test fixture");
            bytes = text
                .replace("\"Publishing\"", &format!("\"{status}\""))
                .into_bytes();
        }
        std::fs::write(to, bytes).expect("test fixture");
    }
    // An empty placeholder hour, as Azure keeps one.
    let placeholder = dir.path().join("idx/segments/1601/01/01/0000/meta.json");
    std::fs::create_dir_all(placeholder.parent().expect("test fixture")).expect("test fixture");
    std::fs::write(placeholder, b"{}").expect("test fixture");
    std::fs::create_dir_all(dir.path().join("meta")).expect("test fixture");
    std::fs::write(
        dir.path().join("meta/segments.json"),
        br#"{"version":0,"lastConsumable":"2022-11-28T22:00:00.000Z"}"#,
    )
    .expect("test fixture");
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("test fixture");
    (dir, FeedReader::new(std::sync::Arc::new(store)))
}

fn at_hour(h: u32) -> Cursor {
    let t = chrono::NaiveDate::from_ymd_opt(2022, 11, 28)
        .expect("test fixture")
        .and_hms_opt(h, 0, 0)
        .expect("test fixture")
        .and_utc();
    Cursor {
        segment_ms: t.timestamp_millis(),
        shards: Vec::new(),
    }
}

async fn poll_all(feed: &FeedReader, from: &Cursor) -> Polled {
    feed.poll(from, usize::MAX).await.expect("test fixture")
}

#[tokio::test]
async fn a_poll_reads_a_closed_hour_and_moves_past_it() {
    let (_dir, feed) = feed_dir("Finalized");
    let p = poll_all(&feed, &at_hour(0)).await;
    assert_eq!((p.events.len(), p.controls), (20, 4));
    assert_eq!(p.cursor, at_hour(22));
    let again = poll_all(&feed, &p.cursor).await;
    assert!(again.events.is_empty());
    assert_eq!(again.cursor, at_hour(22));
}

#[tokio::test]
async fn a_poll_with_a_limit_resumes_where_it_stopped_without_loss() {
    let (_dir, feed) = feed_dir("Finalized");
    let first = feed.poll(&at_hour(21), 5).await.expect("test fixture");
    assert_eq!(
        first.events.len(),
        7,
        "stops after the block that reached 5"
    );
    assert_eq!(first.cursor.segment_ms, at_hour(21).segment_ms);
    assert_eq!(
        first.cursor.shards[0],
        ShardPos {
            chunk: 0,
            offset: 7275
        }
    );
    let rest = poll_all(&feed, &first.cursor).await;
    let mut names: Vec<String> = first
        .events
        .iter()
        .chain(&rest.events)
        .map(|e| e.blob.clone())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20);
    assert_eq!(
        first.events.len() + rest.events.len(),
        20,
        "nothing read twice"
    );
    assert_eq!(rest.cursor, at_hour(22));
}

#[tokio::test]
async fn an_hour_still_published_is_not_read() {
    let (_dir, feed) = feed_dir("Publishing");
    let p = poll_all(&feed, &at_hour(21)).await;
    assert!(p.events.is_empty());
    assert_eq!(p.cursor, at_hour(21), "the cursor waits at the open hour");
    // lastConsumable says 22:00, but the 21:00 hour was not read: the poll
    // vouches only for what came before it.
    assert_eq!(
        p.consumable_until.timestamp_millis(),
        at_hour(21).segment_ms,
        "read up to the hour it stopped at, not up to lastConsumable"
    );
}

async fn refusal(feed: &FeedReader) -> String {
    feed.poll(&at_hour(21), usize::MAX)
        .await
        .expect_err("refused")
        .to_string()
}

#[tokio::test]
async fn a_cursor_the_feed_no_longer_reaches_is_a_gap() {
    let (_dir, feed) = feed_dir("Finalized");
    // The hour held, and any boundary after it: reached.
    for h in [21, 22, 23] {
        feed.check_reach(&at_hour(h)).await.expect("reached");
    }
    // Before the oldest hour held (the 1601 placeholder does not count):
    // retention may have removed changes after the cursor.
    let e = feed
        .check_reach(&at_hour(20))
        .await
        .expect_err("gap")
        .to_string();
    assert!(
        e.contains("gap") && e.contains("2022-11-28 21:00:00"),
        "{e}"
    );
    // Inside an hour the feed does not hold.
    let mut inside = at_hour(22);
    inside.shards = vec![ShardPos::default()];
    feed.check_reach(&inside).await.expect_err("gap");
    inside.segment_ms = at_hour(21).segment_ms;
    feed.check_reach(&inside).await.expect("its own hour");
}

#[tokio::test]
async fn a_missing_chunk_file_or_a_torn_one_is_refused_by_name() {
    let (dir, feed) = feed_dir("Finalized");
    let shard = dir.path().join("log/01/2022/11/28/2100");
    std::fs::rename(shard.join("00000.avro"), shard.join("00001.avro")).expect("test fixture");
    let e = refusal(&feed).await;
    assert!(
        e.contains("log/01/2022/11/28/2100/00001.avro") && e.contains("missing"),
        "{e}"
    );

    let (dir, feed) = feed_dir("Finalized");
    let chunk = dir.path().join("log/02/2022/11/28/2100/00000.avro");
    let bytes = std::fs::read(&chunk).expect("test fixture");
    std::fs::write(&chunk, &bytes[..bytes.len() - 10]).expect("test fixture");
    let e = refusal(&feed).await;
    assert!(
        e.contains("00000.avro") && e.contains("after the last complete block"),
        "{e}"
    );
}

#[test]
fn a_cursor_survives_the_manifest() {
    let dir = tempfile::tempdir().expect("test fixture");
    let m = crate::manifest::Manifest::open(dir.path()).expect("test fixture");
    assert!(m.feed_cursor::<Cursor>().expect("test fixture").is_none());
    let c = Cursor {
        segment_ms: at_hour(21).segment_ms,
        shards: vec![
            ShardPos {
                chunk: 2,
                offset: 7940,
            },
            ShardPos::default(),
        ],
    };
    m.set_feed_cursor(&c).expect("test fixture");
    drop(m);
    let m = crate::manifest::Manifest::open(dir.path()).expect("test fixture");
    let back: Cursor = m.feed_cursor().expect("test fixture").expect("saved");
    assert_eq!(back, c);
    assert!(crate::manifest::records::decode::<Cursor>(&[9, 1, 2]).is_err());
    assert!(crate::manifest::records::decode::<Cursor>(&[]).is_err());
}

#[tokio::test]
async fn a_feed_never_written_is_named_as_such() {
    let feed = FeedReader::new(std::sync::Arc::new(object_store::memory::InMemory::new()));
    for e in [
        feed.meta().await.expect_err("no segments.json"),
        feed.poll(&at_hour(21), 10).await.expect_err("no feed"),
    ] {
        assert!(
            matches!(e, crate::base::error::Error::ChangeFeed { .. })
                && e.to_string().contains("is the change feed enabled"),
            "{e}"
        );
    }
}
