//! One change-feed record as passeur uses it. Azure's event schema grew
//! from version 1 to 8 (fields added, enum symbols added); fields are
//! looked up by name in each record, and an event type passeur does not
//! know is kept by name, never dropped silently.

use apache_avro::types::Value;

/// What happened to a blob, as the feed says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Written (PutBlob, PutBlockList, CopyBlob, …).
    Created,
    /// Deleted.
    Deleted,
    /// Properties or metadata set.
    PropertiesUpdated,
    /// A snapshot taken (the base blob is unchanged).
    SnapshotCreated,
    /// Access tier changed.
    TierChanged,
    /// An asynchronous operation started (a copy or a rehydration): the
    /// blob changes when it ends, with an event of its own.
    AsyncOperationInitiated,
    /// A restore point (account-level; no blob changed).
    RestorePointMarkerCreated,
    /// Azure's own bookkeeping record: never a blob change.
    Control,
    /// A type this version does not know, by name.
    Other(String),
}

impl Kind {
    fn from_name(s: &str) -> Self {
        match s {
            "BlobCreated" => Self::Created,
            "BlobDeleted" => Self::Deleted,
            "BlobPropertiesUpdated" => Self::PropertiesUpdated,
            "BlobSnapshotCreated" => Self::SnapshotCreated,
            "BlobTierChanged" => Self::TierChanged,
            "BlobAsyncOperationInitiated" => Self::AsyncOperationInitiated,
            "RestorePointMarkerCreated" => Self::RestorePointMarkerCreated,
            "Control" => Self::Control,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether the event can change what a replica must hold: the key is
    /// then looked at again. Snapshots and restore points leave the base
    /// blob as it was; an unknown type is looked at (cheap: one HEAD).
    pub fn touches_blob(&self) -> bool {
        !matches!(
            self,
            Self::SnapshotCreated | Self::RestorePointMarkerCreated | Self::Control
        )
    }
}

/// One record of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// The API call that did it (`PutBlob`, `DeleteBlob`, …).
    pub api: String,
    /// The container, from the subject (empty for control records).
    pub container: String,
    /// The blob's name, from the subject.
    pub blob: String,
    /// The blob's ETag after the change, without quotes.
    pub etag: String,
    /// Its length after the change.
    pub size: u64,
    /// Azure's per-blob order of changes (48 hex digits): ordered for one
    /// blob only, never across blobs or shards.
    pub sequencer: String,
    /// When it happened (ISO 8601, as written).
    pub time: String,
}

/// `name`'s value in a record's fields, unions unwrapped.
fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    let v = fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)?;
    match v {
        Value::Union(_, inner) => Some(inner),
        v => Some(v),
    }
}

fn text(fields: &[(String, Value)], name: &str) -> Option<String> {
    match field(fields, name)? {
        Value::String(s) | Value::Enum(_, s) => Some(s.clone()),
        _ => None,
    }
}

fn number(fields: &[(String, Value)], name: &str) -> Option<u64> {
    match field(fields, name)? {
        Value::Long(n) => u64::try_from(*n).ok(),
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// The container and blob of a subject
/// `/blobServices/default/containers/{container}/blobs/{blob}`.
fn split_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("/blobServices/default/containers/")?;
    let (container, blob) = rest.split_once("/blobs/")?;
    Some((container, blob))
}

impl Event {
    /// The event in `record`, or why it is not one.
    pub fn from_record(record: &Value) -> Result<Self, String> {
        let Value::Record(fields) = record else {
            return Err("a record that is not an Avro record".into());
        };
        let need = |name: &str| text(fields, name).ok_or_else(|| format!("no {name}"));
        let kind = Kind::from_name(&need("eventType")?);
        let subject = need("subject")?;
        let time = need("eventTime")?;
        let Some(Value::Record(data)) = field(fields, "data") else {
            return Err("no data".into());
        };
        let need_data = |name: &str| text(data, name).ok_or_else(|| format!("no data.{name}"));
        let (container, blob) = match split_subject(&subject) {
            Some((c, b)) => (c.to_owned(), b.to_owned()),
            None if kind == Kind::Control => (String::new(), String::new()),
            None => return Err(format!("subject {subject:?} names no blob")),
        };
        Ok(Self {
            kind,
            api: need_data("api")?,
            container,
            blob,
            etag: need_data("etag")?,
            size: number(data, "contentLength").ok_or("no data.contentLength")?,
            sequencer: need_data("sequencer")?,
            time,
        })
    }

    /// Whether a replica of `container` must look at this event's blob
    /// again.
    pub fn concerns(&self, container: &str) -> bool {
        self.kind.touches_blob() && self.container == container && !self.blob.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_split_at_the_first_blobs_segment_only() {
        assert_eq!(
            split_subject("/blobServices/default/containers/c/blobs/a/blobs/b.txt"),
            Some(("c", "a/blobs/b.txt"))
        );
        assert_eq!(
            split_subject("/blobServices/default/containers//blobs/"),
            Some(("", ""))
        );
        assert_eq!(split_subject("/something/else"), None);
    }

    #[test]
    fn unknown_types_are_kept_by_name_and_looked_at() {
        let k = Kind::from_name("BlobSomethingNew");
        assert_eq!(k, Kind::Other("BlobSomethingNew".into()));
        assert!(k.touches_blob());
        assert!(!Kind::Control.touches_blob());
        assert!(Kind::Deleted.touches_blob());
    }
}
