//! The Avro object container framing of change-feed chunk files, read by
//! hand so that a chunk can be resumed at a block: a header (magic, a
//! metadata map with `avro.schema` and `avro.codec`, a 16-byte sync
//! marker), then blocks (record count, byte size, the records, the sync
//! marker again). Records are decoded by `apache-avro` against the writer
//! schema of their own file's header (Azure changes the event schema
//! over the years; a chunk names its own).
//!
//! Azure writes block counts and sizes as 10-byte zero-padded varints
//! (it patches them in place in the append blob): accepted, as the Avro
//! specification's decoders do.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

const MAGIC: &[u8; 4] = b"Obj\x01";
/// The most bytes a 64-bit varint takes.
const MAX_VARINT: usize = 10;
/// A block that claims more records than this is damage, not data
/// (Azure's blocks hold tens).
const MAX_BLOCK_RECORDS: i64 = 1 << 20;

/// A chunk file's header: the writer schema and the sync marker.
#[derive(Debug)]
pub struct Header {
    /// The schema the records were written with.
    pub schema: Schema,
    /// The marker that ends the header and every block.
    pub sync: [u8; 16],
    /// Bytes of the header: the first block starts here.
    pub len: usize,
}

/// One complete block of records, still encoded.
#[derive(Debug)]
pub struct Block<'a> {
    /// Offset of the block in its file.
    pub offset: usize,
    /// Offset just past its sync marker: where the next block starts.
    pub end: usize,
    /// How many records it holds.
    pub count: usize,
    /// The records, encoded one after the other.
    pub data: &'a [u8],
}

/// What a read of the bytes at some offset found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A whole block.
    Block(Block<'a>),
    /// The bytes end here, or in the middle of a block (an append still
    /// being written, or a read that stopped short): nothing more yet.
    End,
}

/// Why a chunk file cannot be read; the caller names the file.
pub type Damage = String;

/// Zigzag varint at `at`: the value and the offset after it, `None` when
/// the bytes end first.
fn varint(bytes: &[u8], at: usize) -> Result<Option<(i64, usize)>, Damage> {
    let mut n: u64 = 0;
    for i in 0..MAX_VARINT {
        let Some(&b) = bytes.get(at + i) else {
            return Ok(None);
        };
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            #[allow(clippy::cast_possible_wrap)]
            let v = (n >> 1) as i64 ^ -((n & 1) as i64);
            return Ok(Some((v, at + i + 1)));
        }
    }
    Err(format!(
        "varint longer than {MAX_VARINT} bytes at offset {at}"
    ))
}

/// A length-prefixed byte string at `at`.
fn bytes_at(bytes: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Damage> {
    let Some((len, at)) = varint(bytes, at)? else {
        return Ok(None);
    };
    let len = usize::try_from(len).map_err(|_| format!("negative length at offset {at}"))?;
    Ok(bytes.get(at..at + len).map(|b| (b, at + len)))
}

impl Header {
    /// The header at the start of `bytes`; `None` when `bytes` end before
    /// it does (a chunk created and not yet written, or a short read).
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, Damage> {
        if bytes.len() < MAGIC.len() {
            return Ok(None);
        }
        if &bytes[..4] != MAGIC {
            return Err("not an Avro object container file (no Obj\\x01 magic)".into());
        }
        let mut at = MAGIC.len();
        let (mut schema, mut codec) = (None, None);
        loop {
            let Some((count, next)) = varint(bytes, at)? else {
                return Ok(None);
            };
            at = next;
            if count == 0 {
                break;
            }
            if count < 0 {
                // A negative count is followed by the block's byte size.
                let Some((_, next)) = varint(bytes, at)? else {
                    return Ok(None);
                };
                at = next;
            }
            for _ in 0..count.unsigned_abs() {
                let Some((key, next)) = bytes_at(bytes, at)? else {
                    return Ok(None);
                };
                let Some((value, next)) = bytes_at(bytes, next)? else {
                    return Ok(None);
                };
                at = next;
                match key {
                    b"avro.schema" => schema = Some(value),
                    b"avro.codec" => codec = Some(value),
                    _ => {}
                }
            }
        }
        let Some(sync) = bytes.get(at..at + 16) else {
            return Ok(None);
        };
        match codec {
            None | Some(b"null") => {}
            Some(c) => {
                return Err(format!(
                    "compressed with codec {:?}, which passeur does not read",
                    String::from_utf8_lossy(c)
                ));
            }
        }
        let schema = schema.ok_or("no avro.schema in the header")?;
        let schema = std::str::from_utf8(schema)
            .map_err(|_| "avro.schema is not UTF-8".to_owned())
            .and_then(|s| Schema::parse_str(s).map_err(|e| format!("avro.schema: {e}")))?;
        let mut marker = [0u8; 16];
        marker.copy_from_slice(sync);
        Ok(Some(Self {
            schema,
            sync: marker,
            len: at + 16,
        }))
    }

    /// The block starting at `offset` of `bytes` (the whole file read so
    /// far, from its first byte).
    pub fn block_at<'a>(&self, bytes: &'a [u8], offset: usize) -> Result<Next<'a>, Damage> {
        let Some((count, at)) = varint(bytes, offset)? else {
            return Ok(Next::End);
        };
        let Some((size, at)) = varint(bytes, at)? else {
            return Ok(Next::End);
        };
        if !(0..=MAX_BLOCK_RECORDS).contains(&count) || size < 0 {
            return Err(format!(
                "block at offset {offset} claims {count} records of {size} bytes"
            ));
        }
        let size = usize::try_from(size).map_err(|_| format!("block at {offset} too large"))?;
        let Some(data) = bytes.get(at..at + size) else {
            return Ok(Next::End);
        };
        let Some(sync) = bytes.get(at + size..at + size + 16) else {
            return Ok(Next::End);
        };
        if sync != self.sync {
            return Err(format!(
                "block at offset {offset} does not end with the file's sync marker"
            ));
        }
        Ok(Next::Block(Block {
            offset,
            end: at + size + 16,
            count: usize::try_from(count).unwrap_or(0),
            data,
        }))
    }

    /// The records of `block`, decoded with this file's writer schema.
    pub fn records(&self, block: &Block<'_>) -> Result<Vec<Value>, Damage> {
        let reader = GenericDatumReader::builder(&self.schema)
            .build()
            .map_err(|e| format!("avro.schema: {e}"))?;
        let mut data = block.data;
        let mut out = Vec::with_capacity(block.count);
        for i in 0..block.count {
            let v = reader
                .read_value(&mut data)
                .map_err(|e| format!("record {i} of the block at offset {}: {e}", block.offset))?;
            out.push(v);
        }
        if !data.is_empty() {
            return Err(format!(
                "block at offset {} has {} bytes after its {} records",
                block.offset,
                data.len(),
                block.count
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_zero_padded_to_ten_bytes_decode() {
        // Azure's block header: 7 records, 4527 bytes.
        let b = [
            0x8e, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0xde, 0xc6, 0x80, 0x80,
            0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ];
        assert_eq!(varint(&b, 0).expect("test fixture"), Some((7, 10)));
        assert_eq!(varint(&b, 10).expect("test fixture"), Some((4527, 20)));
        assert_eq!(
            varint(&b[..5], 0).expect("test fixture"),
            None,
            "cut short: not yet"
        );
        assert!(varint(&[0x80; 11], 0).is_err(), "eleven bytes: damage");
        assert_eq!(varint(&[0x01], 0).expect("test fixture"), Some((-1, 1)));
    }

    #[test]
    fn a_file_that_is_not_avro_is_refused_and_a_short_one_waits() {
        assert!(Header::parse(b"PK\x03\x04 a zip").is_err());
        assert!(Header::parse(b"Ob").expect("test fixture").is_none());
        assert!(
            Header::parse(b"Obj\x01\x04")
                .expect("test fixture")
                .is_none()
        );
    }
}
