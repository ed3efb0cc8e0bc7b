//! A record encoded in parts, so a value is written to the segment from the caller's own
//! buffer instead of being copied into an encoded record first.
//!
//! [`Parts::encode`] takes cache-core's [`Record::encode_parts`]: the head (header, metadata,
//! namespace, key), the caller's value buffer, and for a large value the chunk table
//! (docs/format.md). The bytes written are exactly those of `Record::encode` (a test checks
//! it), but the value is read once (for the checksums) and copied once (into the page cache).

use bytes::Bytes;
use cache_core::{Entry, Key, Record};

/// Values shorter than this are encoded into one buffer (the split saves nothing there).
const SPLIT_MIN: usize = 512;

/// An encoded record: `head`, `value`, `tail`. A record held whole has an empty `value` and
/// `tail`; only a version-2 record (a large value) has a `tail`, its chunk table.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    /// The record up to the value (or the whole record).
    pub(crate) head: Bytes,
    /// The value, the caller's buffer (or empty).
    pub(crate) value: Bytes,
    /// The chunk table after the value (or empty).
    pub(crate) tail: Bytes,
}

impl Parts {
    /// A record that is already one buffer.
    pub(crate) fn whole(record: Bytes) -> Parts {
        Parts { head: record, value: Bytes::new(), tail: Bytes::new() }
    }

    /// Encodes `entry` under `key`; the same bytes as [`Record::encode`].
    pub(crate) fn encode(key: &Key, entry: &Entry) -> Parts {
        if entry.value.len() < SPLIT_MIN {
            return Parts::whole(Record::encode(key, entry));
        }
        let parts = Record::encode_parts(key, entry);
        Parts { head: parts.head, value: parts.value, tail: parts.tail }
    }

    /// Total encoded length.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.value.len() + self.tail.len()
    }

    /// The three parts, for a vectored write.
    pub(crate) fn slices(&self) -> [&[u8]; 3] {
        [&self.head, &self.value, &self.tail]
    }

    /// The record as one buffer (a copy if it is split).
    pub(crate) fn to_bytes(&self) -> Bytes {
        if self.value.is_empty() && self.tail.is_empty() {
            return self.head.clone();
        }
        let mut b = Vec::with_capacity(self.len());
        for part in self.slices() {
            b.extend_from_slice(part);
        }
        b.into()
    }
}

#[cfg(test)]
mod tests {
    use cache_core::{Timestamp, Verify};

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
                let parts = Parts::encode(&key, &entry);
                let whole = Record::encode(&key, &entry);
                assert_eq!(parts.len(), whole.len());
                assert_eq!(parts.to_bytes(), whole, "value of {len} bytes");
                let record = Record::decode_with(parts.to_bytes(), Verify::Checksum).unwrap();
                assert_eq!(record.to_entry(), entry);
            }
        }
    }
}
