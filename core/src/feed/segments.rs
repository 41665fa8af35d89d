//! The feed's index: `meta/segments.json` says up to when the feed may be
//! consumed (`lastConsumable`); one `idx/segments/YYYY/MM/DD/hhmm/meta.json`
//! per hour lists the hour's shards (`chunkFilePaths`, prefixes of
//! `log/NN/YYYY/MM/DD/hhmm/` holding `00000.avro`, `00001.avro`, …).
//! A segment is consumable once its hour has begun before
//! `lastConsumable` and it is `Finalized`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

/// The container Azure writes the feed to.
pub const FEED_CONTAINER: &str = "$blobchangefeed";
/// Where `lastConsumable` is.
pub const SEGMENTS_JSON: &str = "meta/segments.json";
/// Prefix of the segment manifests.
pub const SEGMENTS_PREFIX: &str = "idx/segments/";

/// `meta/segments.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedMeta {
    /// Events of segments that begin before this are all written.
    pub last_consumable: DateTime<Utc>,
}

/// Whether Azure is still writing a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Status {
    /// Closed: its chunk files will not grow.
    Finalized,
    /// Still written (the hour in progress).
    Publishing,
    /// Anything else, by name: never taken as finished.
    #[serde(other)]
    Other,
}

/// One hour's `meta.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// Start of the hour.
    pub begin: DateTime<Utc>,
    /// Its length (3,600 s).
    pub interval_secs: u64,
    /// Closed or still written.
    pub status: Status,
    /// One prefix per shard, with the container's name in front.
    pub chunk_file_paths: Vec<String>,
}

impl FeedMeta {
    /// `meta/segments.json`'s bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a feed manifest: {e}"))
    }
}

impl Segment {
    /// A `meta.json`'s bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let s: Self =
            serde_json::from_slice(bytes).map_err(|e| format!("not a segment manifest: {e}"))?;
        if s.interval_secs == 0 {
            return Err("segment of 0 seconds".into());
        }
        Ok(s)
    }

    /// Its shards' prefixes inside the feed container (Azure writes them
    /// with the container's name in front).
    pub fn shard_prefixes(&self) -> Vec<String> {
        self.chunk_file_paths
            .iter()
            .map(|p| {
                let p = p.strip_prefix(FEED_CONTAINER).unwrap_or(p);
                let p = p.trim_start_matches('/');
                if p.ends_with('/') {
                    p.to_owned()
                } else {
                    format!("{p}/")
                }
            })
            .collect()
    }

    /// Whether every event of the segment can be read: closed, and begun
    /// before `last_consumable`.
    pub fn consumable(&self, last_consumable: DateTime<Utc>) -> bool {
        self.status == Status::Finalized && self.begin < last_consumable
    }
}

/// The hour a segment manifest's path names
/// (`idx/segments/2022/11/28/2100/meta.json` → 2022-11-28T21:00Z); `None`
/// for anything else under the prefix (Azure keeps an `idx/segments/1601/`
/// placeholder).
pub fn segment_hour(path: &str) -> Option<DateTime<Utc>> {
    let rest = path.strip_prefix(SEGMENTS_PREFIX)?;
    let stamp = rest.strip_suffix("/meta.json")?;
    let t = NaiveDateTime::parse_from_str(&format!("{stamp}00"), "%Y/%m/%d/%H%M%S").ok()?;
    let t = t.and_utc();
    (t.timestamp() > 0).then_some(t)
}

/// The chunk number of a chunk file's path (`…/00012.avro` → 12).
pub fn chunk_number(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    let digits = name.strip_suffix(".avro")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_hour_and_chunk() {
        let t = segment_hour("idx/segments/2022/11/28/2100/meta.json").expect("test fixture");
        assert_eq!(t.to_rfc3339(), "2022-11-28T21:00:00+00:00");
        assert_eq!(segment_hour("idx/segments/1601/01/01/0000/meta.json"), None);
        assert_eq!(
            segment_hour("idx/segments/2022/11/28/2100/other.json"),
            None
        );
        assert_eq!(segment_hour("idx/segments/2022/13/28/2100/meta.json"), None);
        assert_eq!(chunk_number("log/00/2022/11/28/2100/00012.avro"), Some(12));
        assert_eq!(chunk_number("log/00/2022/11/28/2100/x.avro"), None);
        assert_eq!(chunk_number("log/00/2022/11/28/2100/00012.avro.tmp"), None);
    }

    #[test]
    fn a_publishing_segment_or_one_past_last_consumable_is_not_consumable() {
        let meta = FeedMeta::parse(
            br#"{"version":0,"lastConsumable":"2022-11-28T22:00:00.000Z","storageDiagnostics":{}}"#,
        )
        .expect("test fixture");
        let seg = |status: &str, hour: u32| {
            Segment::parse(
                format!(
                    r#"{{"version":0,"begin":"2022-11-28T{hour}:00:00.000Z","intervalSecs":3600,"status":"{status}","config":{{}},"chunkFilePaths":["$blobchangefeed/log/00/2022/11/28/2100/","log/01/x"]}}"#
                )
                .as_bytes(),
            )
            .expect("test fixture")
        };
        assert!(seg("Finalized", 21).consumable(meta.last_consumable));
        assert!(!seg("Publishing", 21).consumable(meta.last_consumable));
        assert!(!seg("Finalized", 22).consumable(meta.last_consumable));
        assert!(!seg("Resting", 21).consumable(meta.last_consumable));
        assert_eq!(
            seg("Finalized", 21).shard_prefixes(),
            ["log/00/2022/11/28/2100/", "log/01/x/"]
        );
        assert!(Segment::parse(b"{}").is_err());
    }
}
