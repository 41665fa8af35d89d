//! A job's view of its account's change feed: the feed container next to
//! the job's source container, and which events name the job's keys.

use std::sync::Arc;

use object_store::ObjectStore;

use super::segments::FEED_CONTAINER;
use super::{Event, FeedReader};
use crate::base::error::Error;
use crate::stores::{LocalDir, StoreOptions};

/// The change feed of a job whose source is `az://CONTAINER/PREFIX`.
#[derive(Debug)]
pub struct ChangeSource {
    /// Reads the feed.
    pub reader: FeedReader,
    /// The job's source container.
    container: String,
    /// The job's source prefix, without slashes around it ("" for none).
    prefix: String,
}

impl ChangeSource {
    /// The feed of the account the Azure `source_url` is in, opened with
    /// the source's own options (account, credentials, endpoint). Refused
    /// for any other kind of source.
    pub fn open(source_url: &str, opts: &StoreOptions) -> Result<Self, Error> {
        let refuse = |reason: &str| Error::InvalidOption(format!("changes: {reason}"));
        let rest = source_url
            .strip_prefix("az://")
            .or_else(|| source_url.strip_prefix("azure://"))
            .ok_or_else(|| {
                refuse(&format!(
                    "the Azure change feed needs an az:// source, not {source_url:?}"
                ))
            })?;
        let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if container.is_empty() || container == FEED_CONTAINER {
            return Err(refuse(&format!(
                "no container of blobs to follow in {source_url:?}"
            )));
        }
        let feed = crate::stores::Store::open(
            &format!("az://{FEED_CONTAINER}"),
            opts,
            LocalDir::MustExist,
        )?;
        Ok(Self::new(feed.inner, container, prefix))
    }

    /// The feed held by `store` for the keys of `container` under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, container: &str, prefix: &str) -> Self {
        Self {
            reader: FeedReader::new(store),
            container: container.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// The job's key (relative to its source URL) that `event` changed,
    /// if it changed one: a blob of the job's container under its prefix,
    /// by an event that can change a blob's bytes or attributes.
    pub fn key_of<'e>(&self, event: &'e Event) -> Option<&'e str> {
        if !event.concerns(&self.container) {
            return None;
        }
        if self.prefix.is_empty() {
            return Some(&event.blob);
        }
        event
            .blob
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')
            .filter(|k| !k.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Kind;

    fn event(kind: Kind, container: &str, blob: &str) -> Event {
        Event {
            kind,
            api: "PutBlob".into(),
            container: container.into(),
            blob: blob.into(),
            etag: "0x1".into(),
            size: 1,
            sequencer: "0".into(),
            time: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn keys_are_the_blobs_of_the_container_under_the_prefix() {
        let mem = Arc::new(object_store::memory::InMemory::new());
        let whole = ChangeSource::new(mem.clone(), "data", "");
        let under = ChangeSource::new(mem, "data", "/x/y/");
        let e = event(Kind::Created, "data", "x/y/z.bin");
        assert_eq!(whole.key_of(&e), Some("x/y/z.bin"));
        assert_eq!(under.key_of(&e), Some("z.bin"));
        // Another container, a sibling prefix, the prefix itself.
        assert_eq!(under.key_of(&event(Kind::Created, "other", "x/y/z")), None);
        assert_eq!(under.key_of(&event(Kind::Created, "data", "x/yz/a")), None);
        assert_eq!(under.key_of(&event(Kind::Created, "data", "x/y/")), None);
        // Deletes are followed; snapshots change no key.
        assert_eq!(whole.key_of(&event(Kind::Deleted, "data", "a")), Some("a"));
        assert_eq!(
            whole.key_of(&event(Kind::SnapshotCreated, "data", "a")),
            None
        );
    }

    #[test]
    fn only_azure_sources_have_a_feed() {
        let opts = StoreOptions::default();
        for url in ["s3://b/p", "/tmp/x", "az://", "az://$blobchangefeed/x"] {
            let e = ChangeSource::open(url, &opts).expect_err(url);
            assert!(matches!(e, Error::InvalidOption(_)), "{url}: {e}");
        }
    }
}
