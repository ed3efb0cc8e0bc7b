//! The record format shared by every persistent tier (NVMe, RocksDB, object storage).
//!
//! A record is one contiguous byte string: a 40-byte little-endian header, rkyv-archived
//! metadata, the namespace, the key and the value. It moves between tiers as bytes and is never
//! re-encoded; the value is the record's tail, so a hit is a [`Bytes::slice`] of the record.
//! The layout is documented byte by byte in `docs/format.md`.
//!
//! Decoding checks bounds, version, flags, lengths, the xxh3-64 checksum and the rkyv archive;
//! any failure is [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted), never a panic.

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::{
    clock::Timestamp,
    entry::{Entry, EntryMeta},
    error::{Error, Result},
    key::{Key, MAX_KEY_LEN, MAX_NAMESPACE_LEN, Namespace},
};

/// The four bytes every record starts with.
pub const RECORD_MAGIC: [u8; 4] = *b"TCRD";
/// The record format version this build writes and reads.
pub const RECORD_VERSION: u16 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Flag bit: the record is a tombstone (a removal marker with no value).
pub const FLAG_TOMBSTONE: u16 = 1;
const KNOWN_FLAGS: u16 = FLAG_TOMBSTONE;
/// Upper bound on the archived metadata length accepted by the decoder.
const MAX_META_LEN: usize = 256;

const TIER: &str = "record";

/// Metadata as archived with rkyv inside a record. `expires_at_ms == 0` means no expiry.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
struct RecordMeta {
    created_at_ms: u64,
    expires_at_ms: u64,
    version: Option<u64>,
}

impl From<&EntryMeta> for RecordMeta {
    fn from(m: &EntryMeta) -> RecordMeta {
        RecordMeta {
            created_at_ms: m.created_at.as_millis(),
            // An expiry at the epoch is already expired: store it as 1 ms so it stays an expiry.
            expires_at_ms: m.expires_at.map_or(0, |t| t.as_millis().max(1)),
            version: m.version,
        }
    }
}

/// The parsed fixed header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Flag bits ([`FLAG_TOMBSTONE`]).
    pub flags: u16,
    /// Length of the archived metadata.
    pub meta_len: u32,
    /// Length of the namespace.
    pub namespace_len: u32,
    /// Length of the key.
    pub key_len: u32,
    /// Length of the value.
    pub value_len: u64,
    /// The stored checksum.
    pub checksum: u64,
}

impl RecordHeader {
    /// Parses and bounds-checks a header from the first [`HEADER_LEN`] bytes of `bytes`.
    ///
    /// This does not verify the checksum; use it to learn a record's length while scanning.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) for a short buffer, bad magic,
    /// unknown version or flags, or lengths beyond the format's limits.
    pub fn parse(bytes: &[u8]) -> Result<RecordHeader> {
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "record of {} bytes is shorter than its header",
                bytes.len()
            )));
        }
        if bytes[0..4] != RECORD_MAGIC {
            return Err(corrupt("bad record magic"));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != RECORD_VERSION {
            return Err(corrupt(format!("unknown record format version {version}")));
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt(format!("unknown record flags {flags:#06x}")));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let header = RecordHeader {
            flags,
            meta_len: u32_at(8),
            namespace_len: u32_at(12),
            key_len: u32_at(16),
            value_len: u64_at(24),
            checksum: u64_at(32),
        };
        if u32_at(20) != 0 {
            return Err(corrupt("reserved header bytes are not zero"));
        }
        if header.meta_len as usize > MAX_META_LEN
            || header.namespace_len as usize > MAX_NAMESPACE_LEN
            || header.key_len as usize > MAX_KEY_LEN
        {
            return Err(corrupt("record header lengths exceed the format's limits"));
        }
        if flags & FLAG_TOMBSTONE != 0 && header.value_len != 0 {
            return Err(corrupt("tombstone with a value"));
        }
        if header.total_len().is_none() {
            return Err(corrupt("record length overflows"));
        }
        Ok(header)
    }

    /// Total length of the record (header included), or `None` if it would overflow.
    pub fn total_len(&self) -> Option<u64> {
        (HEADER_LEN as u64)
            .checked_add(u64::from(self.meta_len))?
            .checked_add(u64::from(self.namespace_len))?
            .checked_add(u64::from(self.key_len))?
            .checked_add(self.value_len)
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }
}

/// Whether [`Record::decode`] verifies the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Hash the whole record and compare with the stored checksum (the default everywhere).
    Checksum,
    /// Check structure only (header, bounds, metadata archive); trust the payload bytes.
    StructureOnly,
}

/// A validated record. Cheap to clone; its value is a zero-copy slice of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    bytes: Bytes,
    header: RecordHeader,
    meta: EntryMeta,
}

impl Record {
    /// Encodes `entry` under `key` as a new record.
    pub fn encode(key: &Key, entry: &Entry) -> Bytes {
        let mut out = Vec::with_capacity(Record::encoded_len(key, entry.value.len()));
        Record::encode_into(key, entry, &mut out);
        out.into()
    }

    /// Encodes a tombstone for `key` written at `at`.
    pub fn encode_tombstone(key: &Key, at: Timestamp) -> Bytes {
        let meta = EntryMeta { created_at: at, expires_at: None, version: None };
        let mut out = Vec::with_capacity(Record::encoded_len(key, 0));
        write(key, &meta, &[], FLAG_TOMBSTONE, &mut out);
        out.into()
    }

    /// Appends the record for `entry` under `key` to `out`.
    pub fn encode_into(key: &Key, entry: &Entry, out: &mut Vec<u8>) {
        write(key, &entry.meta, &entry.value, 0, out);
    }

    /// The encoded length of a record for `key` with a value of `value_len` bytes.
    pub fn encoded_len(key: &Key, value_len: usize) -> usize {
        HEADER_LEN + meta_len() + key.namespace().as_str().len() + key.key_bytes().len() + value_len
    }

    /// Decodes and validates a record that occupies exactly `bytes`, verifying the checksum.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) on any validation failure.
    pub fn decode(bytes: Bytes) -> Result<Record> {
        Record::decode_with(bytes, Verify::Checksum)
    }

    /// Decodes a record that occupies exactly `bytes`, verifying as `verify` says.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) on any validation failure.
    pub fn decode_with(bytes: Bytes, verify: Verify) -> Result<Record> {
        let header = RecordHeader::parse(&bytes)?;
        let total = header.total_len().expect("checked by parse");
        if total != bytes.len() as u64 {
            return Err(corrupt(format!(
                "record header says {total} bytes but {} are present",
                bytes.len()
            )));
        }
        if verify == Verify::Checksum {
            let actual = checksum(&bytes[..HEADER_LEN - 8], &bytes[HEADER_LEN..]);
            if actual != header.checksum {
                return Err(corrupt("record checksum mismatch"));
            }
        }
        let meta_end = HEADER_LEN + header.meta_len as usize;
        let archived =
            rkyv::access::<ArchivedRecordMeta, rkyv::rancor::Error>(&bytes[HEADER_LEN..meta_end])
                .map_err(|e| corrupt(format!("record metadata does not validate: {e}")))?;
        let meta = EntryMeta {
            created_at: Timestamp::from_millis(archived.created_at_ms.to_native()),
            expires_at: match archived.expires_at_ms.to_native() {
                0 => None,
                ms => Some(Timestamp::from_millis(ms)),
            },
            version: archived.version.as_ref().map(|v| v.to_native()),
        };
        let ns_end = meta_end + header.namespace_len as usize;
        if std::str::from_utf8(&bytes[meta_end..ns_end]).is_err() {
            return Err(corrupt("record namespace is not UTF-8"));
        }
        Ok(Record { bytes, header, meta })
    }

    /// The whole encoded record.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole encoded record, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The parsed header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The metadata.
    pub fn meta(&self) -> &EntryMeta {
        &self.meta
    }

    /// Whether this record is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.header.is_tombstone()
    }

    fn ns_range(&self) -> std::ops::Range<usize> {
        let start = HEADER_LEN + self.header.meta_len as usize;
        start..start + self.header.namespace_len as usize
    }

    fn key_range(&self) -> std::ops::Range<usize> {
        let start = self.ns_range().end;
        start..start + self.header.key_len as usize
    }

    /// The namespace string stored in the record.
    pub fn namespace(&self) -> &str {
        std::str::from_utf8(&self.bytes[self.ns_range()]).expect("validated by decode")
    }

    /// The key bytes stored in the record.
    pub fn key_bytes(&self) -> &[u8] {
        &self.bytes[self.key_range()]
    }

    /// The value: a zero-copy slice of the record.
    pub fn value(&self) -> Bytes {
        self.bytes.slice(self.key_range().end..)
    }

    /// Whether this record stores `key` (namespace and key bytes equal).
    pub fn matches(&self, key: &Key) -> bool {
        self.namespace() == key.namespace().as_str() && self.key_bytes() == &key.key_bytes()[..]
    }

    /// Rebuilds the [`Key`] stored in the record.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) if the stored namespace is not valid.
    pub fn key(&self) -> Result<Key> {
        Namespace::new(self.namespace())
            .and_then(|ns| ns.key(self.bytes.slice(self.key_range())))
            .map_err(|e| corrupt(format!("record holds an invalid key: {}", e.message())))
    }

    /// The entry stored in the record (its value is a zero-copy slice).
    pub fn to_entry(&self) -> Entry {
        Entry { value: self.value(), meta: self.meta }
    }
}

fn corrupt(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::corrupted(TIER, message)
}

fn archived_meta(meta: &EntryMeta) -> rkyv::util::AlignedVec {
    rkyv::to_bytes::<rkyv::rancor::Error>(&RecordMeta::from(meta))
        .expect("serializing plain integers cannot fail")
}

fn meta_len() -> usize {
    static LEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LEN.get_or_init(|| archived_meta(&EntryMeta::default()).len())
}

fn checksum(header_without_checksum: &[u8], body: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(header_without_checksum);
    h.update(body);
    h.digest()
}

fn write(key: &Key, meta: &EntryMeta, value: &[u8], flags: u16, out: &mut Vec<u8>) {
    let meta = archived_meta(meta);
    debug_assert_eq!(meta.len(), meta_len());
    let ns = key.namespace().as_str().as_bytes();
    let k = &key.key_bytes()[..];
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(ns.len() as u32).to_le_bytes());
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(ns);
    out.extend_from_slice(k);
    out.extend_from_slice(value);
    let sum = checksum(&out[start..start + HEADER_LEN - 8], &out[start + HEADER_LEN..]);
    out[start + HEADER_LEN - 8..start + HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
}

#[cfg(test)]
mod tests;
