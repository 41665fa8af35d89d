//! Azure change-feed files for tests, in Azure's layout and schema: the
//! writer schema and a template record come from a chunk file Azure wrote
//! (`core/testdata/azure-change-feed`), events are that record with their
//! own subject, type, API, ETag, length, sequencer and time, one Avro block
//! per inner list. Azurite has no change feed; tests put these files in its
//! `$blobchangefeed` container next to the blob changes they describe.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use apache_avro::types::Value;
use apache_avro::{Schema, Writer};
use chrono::{DateTime, Datelike, Timelike, Utc};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use passeur_core::feed::avro::Header;

/// One change to describe.
#[derive(Debug, Clone)]
pub struct Change {
    /// `BlobCreated`, `BlobDeleted`, `BlobPropertiesUpdated`, `Control`…
    pub event: &'static str,
    /// `PutBlob`, `DeleteBlob`, `SetBlobMetadata`, `ControlEvent`…
    pub api: &'static str,
    /// Container of the blob.
    pub container: String,
    /// The blob's name.
    pub blob: String,
    /// Its ETag after the change, unquoted.
    pub etag: String,
    /// Its length after the change.
    pub size: i64,
    /// Azure's per-blob order (48 hex digits).
    pub sequencer: String,
    /// When (ISO 8601).
    pub time: String,
}

/// Writes chunk files and index files.
#[derive(Debug)]
pub struct FeedFiles {
    schema: Schema,
    /// The schema of the records' `data` field (its `api` enum).
    data_schema: Schema,
    template: Vec<(String, Value)>,
}

fn set(fields: &mut [(String, Value)], name: &str, value: Value) -> Result<()> {
    let slot = fields
        .iter_mut()
        .find(|(n, _)| n == name)
        .with_context(|| format!("no field {name}"))?;
    slot.1 = value;
    Ok(())
}

fn record_fields(schema: &Schema) -> Result<&[apache_avro::schema::RecordField]> {
    match schema {
        Schema::Record(r) => Ok(&r.fields),
        _ => bail!("not a record schema"),
    }
}

/// `symbol` of the enum field `name` of `schema`, as a value.
fn symbol(schema: &Schema, name: &str, symbol: &str) -> Result<Value> {
    let field = record_fields(schema)?
        .iter()
        .find(|f| f.name == name)
        .with_context(|| format!("no field {name}"))?;
    let Schema::Enum(e) = &field.schema else {
        bail!("{name} is not an enum");
    };
    let i = e
        .symbols
        .iter()
        .position(|s| s == symbol)
        .with_context(|| format!("{symbol} is not a {name}"))?;
    Ok(Value::Enum(u32::try_from(i)?, symbol.to_owned()))
}

impl FeedFiles {
    /// With the schema (version 5) and first record of a recorded chunk.
    pub fn new() -> Result<Self> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
            "../core/testdata/azure-change-feed/v5-2022-11-28/log/00/2022/11/28/2100/00000.avro",
        );
        let bytes = std::fs::read(&p).with_context(|| p.display().to_string())?;
        let header = Header::parse(&bytes)
            .map_err(anyhow::Error::msg)?
            .context("recorded chunk has no header")?;
        let passeur_core::feed::avro::Next::Block(block) = header
            .block_at(&bytes, header.len)
            .map_err(anyhow::Error::msg)?
        else {
            bail!("recorded chunk has no block");
        };
        let records = header.records(&block).map_err(anyhow::Error::msg)?;
        let Some(Value::Record(template)) = records.into_iter().next() else {
            bail!("recorded chunk's first record is not a record");
        };
        let data_schema = record_fields(&header.schema)?
            .iter()
            .find(|f| f.name == "data")
            .context("no data")?
            .schema
            .clone();
        Ok(Self {
            schema: header.schema,
            data_schema,
            template,
        })
    }

    fn record(&self, c: &Change) -> Result<Value> {
        let mut fields = self.template.clone();
        set(
            &mut fields,
            "subject",
            Value::String(format!(
                "/blobServices/default/containers/{}/blobs/{}",
                c.container, c.blob
            )),
        )?;
        set(
            &mut fields,
            "eventType",
            symbol(&self.schema, "eventType", c.event)?,
        )?;
        set(&mut fields, "eventTime", Value::String(c.time.clone()))?;
        let data = fields
            .iter_mut()
            .find(|(n, _)| n == "data")
            .context("no data")?;
        let Value::Record(d) = &mut data.1 else {
            bail!("data is not a record");
        };
        set(d, "api", symbol(&self.data_schema, "api", c.api)?)?;
        set(d, "etag", Value::String(c.etag.clone()))?;
        set(d, "contentLength", Value::Long(c.size))?;
        set(d, "sequencer", Value::String(c.sequencer.clone()))?;
        Ok(Value::Record(fields))
    }

    /// A chunk file: one Avro block per inner list.
    pub fn chunk(&self, blocks: &[Vec<Change>]) -> Result<Vec<u8>> {
        let mut w = Writer::new(&self.schema, Vec::new())?;
        for block in blocks {
            for c in block {
                w.append_value(self.record(c)?)?;
            }
            w.flush()?;
        }
        Ok(w.into_inner()?)
    }

    /// `meta/segments.json`.
    pub fn segments_json(last_consumable: &str) -> String {
        format!(r#"{{"version":0,"lastConsumable":"{last_consumable}","storageDiagnostics":{{}}}}"#)
    }

    /// An hour's `meta.json` (`begin` as `2022-11-28T21:00:00.000Z`).
    pub fn segment_json(begin: &str, status: &str, shards: &[String]) -> String {
        let paths: Vec<String> = shards
            .iter()
            .map(|s| format!("\"$blobchangefeed/{s}\""))
            .collect();
        format!(
            r#"{{"version":0,"begin":"{begin}","intervalSecs":3600,"status":"{status}","config":{{"version":1,"numShards":{},"recordsFormat":"avro","formatSchemaVersion":5}},"chunkFilePaths":[{}]}}"#,
            shards.len(),
            paths.join(",")
        )
    }
}

/// Writes a feed into a store (Azurite's `$blobchangefeed`).
#[derive(Debug)]
pub struct FeedWriter {
    store: Arc<dyn ObjectStore>,
    files: FeedFiles,
}

impl FeedWriter {
    /// A writer into `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Result<Self> {
        Ok(Self {
            store,
            files: FeedFiles::new()?,
        })
    }

    /// Write the closed hour beginning at `begin`: `shards[s][c]` is chunk
    /// file `c` of shard `s`, one Avro block per inner list. `skip`: chunk
    /// numbers left out (a hole).
    pub async fn hour(
        &self,
        begin: DateTime<Utc>,
        shards: &[Vec<Vec<Vec<Change>>>],
        skip: &[u32],
    ) -> Result<()> {
        self.hour_with(begin, shards, skip, "Finalized").await
    }

    /// As [`FeedWriter::hour`], the hour's manifest saying `status`
    /// (`Publishing`: Azure is still writing it).
    pub async fn hour_with(
        &self,
        begin: DateTime<Utc>,
        shards: &[Vec<Vec<Vec<Change>>>],
        skip: &[u32],
        status: &str,
    ) -> Result<()> {
        let dir = format!(
            "{:04}/{:02}/{:02}/{:02}00",
            begin.year(),
            begin.month(),
            begin.day(),
            begin.hour()
        );
        let mut prefixes = Vec::new();
        for (s, chunks) in shards.iter().enumerate() {
            let prefix = format!("log/{s:02}/{dir}/");
            let mut n = 0u32;
            for blocks in chunks {
                while skip.contains(&n) {
                    n += 1;
                }
                let path = OsPath::from(format!("{prefix}{n:05}.avro"));
                self.store
                    .put(&path, PutPayload::from(self.files.chunk(blocks)?))
                    .await?;
                n += 1;
            }
            prefixes.push(prefix);
        }
        let json = FeedFiles::segment_json(
            &begin.format("%Y-%m-%dT%H:00:00.000Z").to_string(),
            status,
            &prefixes,
        );
        self.store
            .put(
                &OsPath::from(format!("idx/segments/{dir}/meta.json")),
                PutPayload::from(json.into_bytes()),
            )
            .await?;
        Ok(())
    }

    /// `meta/segments.json` with `lastConsumable` at `t`.
    pub async fn consumable_until(&self, t: DateTime<Utc>) -> Result<()> {
        let json = FeedFiles::segments_json(&t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        self.store
            .put(
                &OsPath::from("meta/segments.json"),
                PutPayload::from(json.into_bytes()),
            )
            .await?;
        Ok(())
    }
}

/// One event in container `src` (or `container:blob`), `minute` minutes
/// into the hour `begin`, its ETag and sequencer made of `seq`.
pub fn ev(event: &'static str, blob: &str, seq: u64, begin: DateTime<Utc>, minute: i64) -> Change {
    let api = match event {
        "BlobDeleted" => "DeleteBlob",
        "Control" => "ControlEvent",
        _ => "PutBlob",
    };
    let (container, blob) = blob.split_once(':').unwrap_or(("src", blob));
    Change {
        event,
        api,
        container: container.into(),
        blob: blob.into(),
        etag: format!("0x8DAD1899{seq:07X}"),
        size: 1,
        sequencer: format!("{seq:048x}"),
        // Seven digits of fractions, as Azure writes them.
        time: format!(
            "{}0Z",
            (begin + chrono::Duration::minutes(minute)).format("%Y-%m-%dT%H:%M:%S%.6f")
        ),
    }
}
