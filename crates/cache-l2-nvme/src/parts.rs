//! A record encoded in parts, so a value is written to the segment from the caller's own
//! buffer instead of being copied into an encoded record first.
//!
//! [`encode`] takes cache-core's [`Record::encode_parts_with`]: the head (header, metadata,
//! namespace, key), the caller's value buffer (or its compressed copy), and for a large value
//! the chunk table (docs/format.md). The bytes written are exactly those of
//! `Record::encode_with` (a test checks it), but a raw value is read once (for the checksums)
//! and copied once (into the page cache).

pub(crate) use cache_core::RecordParts as Parts;
use cache_core::{Entry, Key, RecordFormat, Result};

/// Values shorter than this are encoded into one buffer (the split saves nothing there).
const SPLIT_MIN: usize = 512;

/// Encodes `entry` under `key`; the same bytes as [`Record::encode_with`]. A record held whole
/// (a value below [`SPLIT_MIN`]) has an empty `value` and `tail`; only a version-2 record (a
/// large value) has a `tail`, its chunk table.
pub(crate) fn encode(key: &Key, entry: &Entry, format: &RecordFormat) -> Result<Parts> {
    if entry.value.len() < SPLIT_MIN {
        return format.encode(key, entry).map(Parts::whole);
    }
    format.encode_parts(key, entry)
}

#[cfg(test)]
mod tests {
    use cache_core::{Compression, Record, Timestamp, Verify};

    use super::*;

    #[test]
    fn split_encoding_writes_the_bytes_of_record_encode() {
        let key = Key::new("parts", "some-key").unwrap();
        for len in [0usize, 1, 511, 512, 4096, 65_536, 100_003, 256 << 10, (1 << 20) + 3] {
            for (expires, version) in [(None, None), (Some(1_900_000_000_000), Some(42))] {
                let mut entry = Entry::new((0..len).map(|i| (i * 31) as u8).collect::<Vec<_>>());
                entry.meta.created_at = Timestamp::from_millis(1_750_000_000_000);
                entry.meta.expires_at = expires.map(Timestamp::from_millis);
                entry.meta.version = version;
                for compression in [Compression::None, Compression::Lz4, Compression::zstd()] {
                    let format = RecordFormat::new().with_compression(compression);
                    let parts = encode(&key, &entry, &format).unwrap();
                    let whole = Record::encode_with(&key, &entry, compression);
                    assert_eq!(parts.len(), whole.len());
                    assert_eq!(parts.to_bytes(), whole, "value of {len} bytes, {compression}");
                    let record = Record::decode_with(parts.to_bytes(), Verify::Checksum).unwrap();
                    assert_eq!(record.to_entry(), entry);
                    // The value repeats every 256 bytes, so each length listed from 511 bytes
                    // up to the chunked threshold compresses.
                    let compressed = compression != Compression::None
                        && (cache_core::COMPRESS_MIN_VALUE..cache_core::CHUNKED_MIN_VALUE)
                            .contains(&len);
                    assert_eq!(record.codec().is_some(), compressed, "{len} {compression}");
                }
            }
        }
    }
}
