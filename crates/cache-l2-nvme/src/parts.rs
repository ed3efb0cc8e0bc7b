//! A record encoded in two parts, so a value is written to the segment from the caller's own
//! buffer instead of being copied into an encoded record first.
//!
//! The cache-core record is `header ‖ metadata ‖ namespace ‖ key ‖ value`, with an xxh3-64
//! checksum of header bytes 0..32 followed by everything after the header (docs/format.md).
//! [`Parts::encode`] builds the first four fields (the head) with cache-core's encoder for an
//! empty value, then sets the value length and recomputes the checksum over the head and the
//! caller's value: the bytes written are exactly those of `Record::encode` (a test checks it),
//! but the value is read once (for the checksum) and copied once (into the page cache).

use bytes::Bytes;
use cache_core::{Entry, HEADER_LEN, Key, Record};
use xxhash_rust::xxh3::Xxh3;

/// Values shorter than this are encoded into one buffer (the split saves nothing there).
const SPLIT_MIN: usize = 512;

/// An encoded record: `head` followed by `value`. A record held whole has an empty `value`.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    /// The record up to the value (or the whole record).
    pub(crate) head: Bytes,
    /// The value, the caller's buffer (or empty).
    pub(crate) value: Bytes,
}

impl Parts {
    /// A record that is already one buffer.
    pub(crate) fn whole(record: Bytes) -> Parts {
        Parts { head: record, value: Bytes::new() }
    }

    /// Encodes `entry` under `key`; the same bytes as [`Record::encode`].
    pub(crate) fn encode(key: &Key, entry: &Entry) -> Parts {
        if entry.value.len() < SPLIT_MIN {
            return Parts::whole(Record::encode(key, entry));
        }
        let head_only = Entry { value: Bytes::new(), meta: entry.meta };
        let mut head = Vec::with_capacity(Record::encoded_len(key, 0));
        Record::encode_into(key, &head_only, &mut head);
        head[24..32].copy_from_slice(&(entry.value.len() as u64).to_le_bytes());
        let mut sum = Xxh3::new();
        sum.update(&head[..HEADER_LEN - 8]);
        sum.update(&head[HEADER_LEN..]);
        sum.update(&entry.value);
        head[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&sum.digest().to_le_bytes());
        Parts { head: head.into(), value: entry.value.clone() }
    }

    /// Total encoded length.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.value.len()
    }

    /// The record as one buffer (a copy if it is split).
    pub(crate) fn to_bytes(&self) -> Bytes {
        if self.value.is_empty() {
            return self.head.clone();
        }
        let mut b = Vec::with_capacity(self.len());
        b.extend_from_slice(&self.head);
        b.extend_from_slice(&self.value);
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
        for len in [0usize, 1, 511, 512, 4096, 65_536, 100_003] {
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
