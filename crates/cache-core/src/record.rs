//! The record format shared by every persistent tier (NVMe, RocksDB, object storage).
//!
//! A record is one contiguous byte string: a 40-byte little-endian header, rkyv-archived
//! metadata, the namespace, the key and the value, and for a value of at least
//! [`CHUNKED_MIN_VALUE`] bytes (format version 2) a table of one xxh3-64 per 64 KiB chunk of
//! the value. It moves between tiers as bytes and is never re-encoded; a hit is a
//! [`Bytes::slice`] of the record. A tier may store values compressed (format version 3, see
//! [`Compression`]); such a record says which codec wrote it, and its hit decodes into a new
//! buffer. The layout is documented byte by byte in `docs/format.md`.
//!
//! Decoding checks bounds, version, flags, lengths, the checksums and the rkyv archive; any
//! failure is [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted), never a panic. The chunk
//! table lets a reader of part of a large value verify only the chunks it reads
//! ([`Record::decode_for_range`]).

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::{
    clock::Timestamp,
    compression::{Codec, Compression},
    encryption::{self, KeyProvider, SEAL_OVERHEAD},
    entry::{Entry, EntryMeta},
    error::{Error, Result},
    key::{Key, MAX_KEY_LEN, MAX_NAMESPACE_LEN, Namespace},
};

/// The four bytes every record starts with.
pub const RECORD_MAGIC: [u8; 4] = *b"TCRD";
/// The record format version this build writes for values below [`CHUNKED_MIN_VALUE`].
pub const RECORD_VERSION: u16 = 1;
/// The record format version with a chunk table, written for values of at least
/// [`CHUNKED_MIN_VALUE`] bytes. This build reads both versions.
pub const RECORD_VERSION_CHUNKED: u16 = 2;
/// The record format version of a compressed value: version 1's layout, with the value's
/// decoded length where version 1 has reserved bytes. This build reads it and writes it for a
/// tier configured with a [`Compression`].
pub const RECORD_VERSION_COMPRESSED: u16 = 3;
/// The record format version of a value sealed at rest (see [`KeyProvider`]): version 1's
/// layout, with the value's plaintext length where version 1 has reserved bytes and the value
/// (LZ4- or zstd-compressed first, if the flags say so) sealed by XChaCha20-Poly1305. This build
/// reads it with the key that sealed it and writes it for a namespace a tier's key provider seals.
pub const RECORD_VERSION_SEALED: u16 = 4;
/// Values of at least this many bytes are written as [`RECORD_VERSION_CHUNKED`] records.
pub const CHUNKED_MIN_VALUE: usize = 256 * 1024;
/// log2 of the chunk size this build writes: 64 KiB.
pub const CHUNK_SHIFT: u32 = 16;
/// The chunk sizes a version-2 record may declare: 4 KiB to 1 GiB.
const CHUNK_SHIFTS: std::ops::RangeInclusive<u32> = 12..=30;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Flag bit: the record is a tombstone (a removal marker with no value).
pub const FLAG_TOMBSTONE: u16 = 1;
/// Flag bit: the value is an LZ4 block (format versions 3 and 4).
pub const FLAG_LZ4: u16 = 1 << 1;
/// Flag bit: the value is a Zstandard frame (format versions 3 and 4).
pub const FLAG_ZSTD: u16 = 1 << 2;
const CODEC_FLAGS: u16 = FLAG_LZ4 | FLAG_ZSTD;
const KNOWN_FLAGS: u16 = FLAG_TOMBSTONE | CODEC_FLAGS;
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
    /// The format version: [`RECORD_VERSION`], [`RECORD_VERSION_CHUNKED`] or
    /// [`RECORD_VERSION_COMPRESSED`].
    pub version: u16,
    /// Flag bits ([`FLAG_TOMBSTONE`], [`FLAG_LZ4`], [`FLAG_ZSTD`]).
    pub flags: u16,
    /// Length of the archived metadata.
    pub meta_len: u32,
    /// Length of the namespace.
    pub namespace_len: u32,
    /// Length of the key.
    pub key_len: u32,
    /// Length of the value as stored (compressed, in version 3).
    pub value_len: u64,
    /// Length of the value once decoded: `value_len`, except in version 3.
    pub decoded_len: u64,
    /// The codec of a version-3 record's value; `None` for a raw value.
    pub codec: Option<Codec>,
    /// log2 of the chunk size of a version-2 record's chunk table; 0 otherwise.
    pub chunk_shift: u32,
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
        if !matches!(
            version,
            RECORD_VERSION
                | RECORD_VERSION_CHUNKED
                | RECORD_VERSION_COMPRESSED
                | RECORD_VERSION_SEALED
        ) {
            return Err(corrupt(format!("unknown record format version {version}")));
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt(format!("unknown record flags {flags:#06x}")));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let compressed = version == RECORD_VERSION_COMPRESSED;
        let sealed = version == RECORD_VERSION_SEALED;
        let codec = match flags & CODEC_FLAGS {
            0 if !compressed => None,
            FLAG_LZ4 if compressed || sealed => Some(Codec::Lz4),
            FLAG_ZSTD if compressed || sealed => Some(Codec::Zstd),
            _ => {
                return Err(corrupt(format!(
                    "codec flags {flags:#06x} in a version {version} record"
                )));
            }
        };
        let value_len = u64_at(24);
        let header = RecordHeader {
            version,
            flags,
            meta_len: u32_at(8),
            namespace_len: u32_at(12),
            key_len: u32_at(16),
            value_len,
            decoded_len: if compressed || sealed { u64::from(u32_at(20)) } else { value_len },
            codec,
            chunk_shift: if version == RECORD_VERSION_CHUNKED { u32_at(20) } else { 0 },
            checksum: u64_at(32),
        };
        if version == RECORD_VERSION && u32_at(20) != 0 {
            return Err(corrupt("reserved header bytes are not zero"));
        }
        if compressed {
            if flags & FLAG_TOMBSTONE != 0 {
                return Err(corrupt("a compressed tombstone"));
            }
            // The writer compresses only values below the chunked threshold and only when that
            // shrinks them, which also bounds what a hostile header can make a reader allocate.
            if header.decoded_len >= CHUNKED_MIN_VALUE as u64
                || header.value_len >= header.decoded_len
            {
                return Err(corrupt(format!(
                    "a compressed value of {} bytes that decodes to {}",
                    header.value_len, header.decoded_len
                )));
            }
        }
        if sealed {
            if flags & FLAG_TOMBSTONE != 0 {
                return Err(corrupt("a sealed tombstone"));
            }
            // The plaintext (compressed or not) is the sealed value less the key id, nonce and tag.
            let inner = header.value_len.checked_sub(SEAL_OVERHEAD as u64);
            let fits = match (inner, codec) {
                (None, _) => false,
                (Some(inner), None) => inner == header.decoded_len,
                (Some(inner), Some(_)) => {
                    header.decoded_len < CHUNKED_MIN_VALUE as u64 && inner < header.decoded_len
                }
            };
            if !fits {
                return Err(corrupt(format!(
                    "a sealed value of {} bytes that opens to {}",
                    header.value_len, header.decoded_len
                )));
            }
        }
        if version == RECORD_VERSION_CHUNKED {
            if !CHUNK_SHIFTS.contains(&header.chunk_shift) {
                return Err(corrupt(format!("chunk size 2^{} out of range", header.chunk_shift)));
            }
            if flags & FLAG_TOMBSTONE != 0 {
                return Err(corrupt("a tombstone with a chunk table"));
            }
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

    /// Total length of the record (header and chunk table included), or `None` if it would
    /// overflow.
    pub fn total_len(&self) -> Option<u64> {
        self.value_offset().checked_add(self.value_len)?.checked_add(self.chunks().checked_mul(8)?)
    }

    /// Where the value starts: the length of the header, metadata, namespace and key.
    pub fn value_offset(&self) -> u64 {
        HEADER_LEN as u64
            + u64::from(self.meta_len)
            + u64::from(self.namespace_len)
            + u64::from(self.key_len)
    }

    /// The number of chunks in a version-2 record's table (0 in version 1).
    pub fn chunks(&self) -> u64 {
        if self.version == RECORD_VERSION_CHUNKED {
            self.value_len.div_ceil(1 << self.chunk_shift)
        } else {
            0
        }
    }

    /// The whole chunks of a version-2 record's value around value bytes `range` (clamped to
    /// the value): the index of the first and the byte range they span, which ends at a chunk
    /// boundary or at the value's end. An empty range spans no chunk. What a reader of part of
    /// the value fetches and hands to [`RecordHead::verify_piece`].
    pub fn chunks_around(&self, range: &std::ops::Range<u64>) -> (u64, std::ops::Range<u64>) {
        let chunk = 1u64 << self.chunk_shift;
        let start = range.start.min(self.value_len);
        let end = range.end.min(self.value_len).max(start);
        let first = start / chunk;
        let span_end = if start == end {
            first * chunk
        } else {
            end.div_ceil(chunk).saturating_mul(chunk).min(self.value_len)
        };
        (first, first * chunk..span_end)
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }

    /// Whether the value is sealed (format version 4): it opens only with its namespace's key.
    pub fn is_sealed(&self) -> bool {
        self.version == RECORD_VERSION_SEALED
    }
}

/// Whether [`Record::decode`] verifies the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Hash the whole record and compare with the stored checksum (the default everywhere).
    Checksum,
    /// Check structure only (header, bounds, metadata archive, and that a compressed value
    /// decodes); trust the payload bytes.
    StructureOnly,
}

/// A validated record. Cheap to clone; its value is a zero-copy slice of its bytes, or, for a
/// compressed record, the buffer it was decoded into once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    bytes: Bytes,
    header: RecordHeader,
    meta: EntryMeta,
    value: Bytes,
}

/// The head of a record (header, metadata, namespace and key) parsed without its value, for a
/// reader that fetched only the first bytes of a record (a ranged read, a compaction filter).
///
/// The checksum covers bytes the head does not hold and is not verified; the structure, the
/// metadata archive and the namespace's UTF-8 are.
///
/// ```
/// use cache_core::{Entry, Key, Record, RecordHead};
/// let key = Key::new("docs", "readme")?;
/// let bytes = Record::encode(&key, &Entry::new("a value").with_version(3));
/// let head = RecordHead::parse(&bytes[..Record::encoded_len(&key, 0)])?;
/// assert!(head.matches(&key));
/// assert_eq!(head.meta().version, Some(3));
/// assert_eq!(head.header().value_len, 7);
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead<'a> {
    /// The head's bytes: the record's first `value_offset` bytes.
    raw: &'a [u8],
    header: RecordHeader,
    meta: EntryMeta,
    namespace: &'a str,
    key: &'a [u8],
}

impl<'a> RecordHead<'a> {
    /// Parses the head at the start of `prefix`, which holds at least the record's first
    /// [`RecordHeader::value_offset`] bytes (more are ignored).
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) for a short prefix or a head that
    /// does not validate.
    pub fn parse(prefix: &'a [u8]) -> Result<RecordHead<'a>> {
        let header = RecordHeader::parse(prefix)?;
        if (prefix.len() as u64) < header.value_offset() {
            return Err(corrupt(format!(
                "{} bytes hold no record head of {}",
                prefix.len(),
                header.value_offset()
            )));
        }
        let (meta, namespace, key) = parse_head_fields(prefix, &header)?;
        let raw = &prefix[..header.value_offset() as usize];
        Ok(RecordHead { raw, header, meta, namespace, key })
    }

    /// Verifies a piece of a version-2 record's value read without the rest of the record (an
    /// object store's ranged reads): `table` is the record's whole chunk table and `piece` the
    /// value's bytes from the start of chunk `first_chunk` to a chunk boundary or the value's
    /// end. Checks the record checksum (which covers this head and the table) and every chunk
    /// of the piece against the table.
    ///
    /// ```
    /// use cache_core::{CHUNK_SHIFT, CHUNKED_MIN_VALUE, Entry, Key, Record, RecordHead};
    /// let key = Key::new("blobs", "b")?;
    /// let value: Vec<u8> = (0..CHUNKED_MIN_VALUE * 2).map(|i| (i % 251) as u8).collect();
    /// let bytes = Record::encode(&key, &Entry::new(value.clone()));
    /// let head = RecordHead::parse(&bytes)?;
    /// let (at, chunk) = (head.header().value_offset() as usize, 1 << CHUNK_SHIFT);
    /// let table = &bytes[at + value.len()..];
    /// // Chunk 3 alone, as a ranged read would fetch it.
    /// head.verify_piece(table, 3, &bytes[at + 3 * chunk..at + 4 * chunk])?;
    /// assert!(head.verify_piece(table, 2, &bytes[at + 3 * chunk..at + 4 * chunk]).is_err());
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) if the record is not version 2,
    /// the table or the piece has the wrong length or place, or a checksum does not match.
    pub fn verify_piece(&self, table: &[u8], first_chunk: u64, piece: &[u8]) -> Result<()> {
        let h = &self.header;
        if h.version != RECORD_VERSION_CHUNKED {
            return Err(corrupt("only a version-2 record is verified in pieces"));
        }
        if table.len() as u64 != h.chunks() * 8 {
            return Err(corrupt(format!(
                "a chunk table of {} bytes where the header says {} chunks",
                table.len(),
                h.chunks()
            )));
        }
        check_checksum(h, self.raw, table)?;
        let chunk = 1u64 << h.chunk_shift;
        let from = first_chunk.saturating_mul(chunk);
        let to = from.saturating_add(piece.len() as u64);
        if to > h.value_len || (!to.is_multiple_of(chunk) && to != h.value_len) {
            return Err(corrupt(format!(
                "value bytes {from}..{to} are not whole chunks of a value of {}",
                h.value_len
            )));
        }
        check_chunks(table, first_chunk, piece, chunk as usize)
    }

    /// The parsed header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The metadata.
    pub fn meta(&self) -> &EntryMeta {
        &self.meta
    }

    /// Whether this head stores `key` (namespace and key bytes equal).
    pub fn matches(&self, key: &Key) -> bool {
        self.namespace == key.namespace().as_str() && self.key == &key.key_bytes()[..]
    }
}

/// A record encoded in three parts, `head ‖ value ‖ tail`, so a writer can hand the caller's
/// value buffer to the disk or the network without copying it into one record buffer.
///
/// The concatenation is exactly [`Record::encode`]'s bytes. `tail` is the chunk table of a
/// version-2 record and empty otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordParts {
    /// Header, metadata, namespace and key.
    pub head: Bytes,
    /// The value (the caller's buffer).
    pub value: Bytes,
    /// The chunk table, or empty.
    pub tail: Bytes,
}

impl RecordParts {
    /// An encoded record held in one buffer (`head` is then the whole record).
    pub fn whole(record: Bytes) -> RecordParts {
        RecordParts { head: record, value: Bytes::new(), tail: Bytes::new() }
    }

    /// The three parts, for a vectored write.
    pub fn slices(&self) -> [&[u8]; 3] {
        [&self.head, &self.value, &self.tail]
    }

    /// The parts that are not empty, in order (cheap clones of the buffers).
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + use<> {
        [self.head.clone(), self.value.clone(), self.tail.clone()]
            .into_iter()
            .filter(|b| !b.is_empty())
    }

    /// The record's total length.
    pub fn len(&self) -> usize {
        self.head.len() + self.value.len() + self.tail.len()
    }

    /// Whether the record is empty (never: a record has a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record as one buffer: the head itself for a record held whole, else a copy of the
    /// parts.
    pub fn to_bytes(&self) -> Bytes {
        if self.value.is_empty() && self.tail.is_empty() {
            return self.head.clone();
        }
        let mut out = Vec::with_capacity(self.len());
        for part in self.slices() {
            out.extend_from_slice(part);
        }
        out.into()
    }
}

impl Record {
    /// Encodes `entry` under `key` as a new record, its value raw.
    pub fn encode(key: &Key, entry: &Entry) -> Bytes {
        let mut out = Vec::with_capacity(Record::encoded_len(key, entry.value.len()));
        Record::encode_into(key, entry, &mut out);
        out.into()
    }

    /// Encodes `entry` under `key` with its value compressed as `compression` says when that
    /// pays (see [`Compression`]), raw otherwise. The result is never longer than
    /// [`Record::encode`]'s.
    pub fn encode_with(key: &Key, entry: &Entry, compression: Compression) -> Bytes {
        match compression.compress(&entry.value) {
            None => Record::encode(key, entry),
            Some((codec, packed)) => {
                let mut out = Vec::with_capacity(Record::encoded_len(key, packed.len()));
                let stored = Stored::Compressed { codec, decoded_len: entry.value.len() };
                write(key, &entry.meta, &packed, 0, stored, &mut out);
                out.into()
            }
        }
    }

    /// As [`Record::encode_with`], in three parts (see [`Record::encode_parts`]); the value
    /// part is the compressed buffer, or `entry.value` itself when it is stored raw.
    pub fn encode_parts_with(key: &Key, entry: &Entry, compression: Compression) -> RecordParts {
        match compression.compress(&entry.value) {
            None => Record::encode_parts(key, entry),
            Some((codec, packed)) => {
                let mut head = Vec::with_capacity(Record::encoded_len(key, 0));
                let stored = Stored::Compressed { codec, decoded_len: entry.value.len() };
                write_head(key, &entry.meta, &packed, 0, stored, &mut head);
                RecordParts { head: head.into(), value: packed.into(), tail: Bytes::new() }
            }
        }
    }

    /// Encodes `entry` under `key` in three parts whose concatenation is [`Record::encode`]'s
    /// bytes; the value part is `entry.value` itself (read once for the checksums, not copied).
    pub fn encode_parts(key: &Key, entry: &Entry) -> RecordParts {
        let mut head = Vec::with_capacity(Record::encoded_len(key, 0));
        let tail = write_head(key, &entry.meta, &entry.value, 0, Stored::Raw, &mut head);
        RecordParts { head: head.into(), value: entry.value.clone(), tail: tail.into() }
    }

    /// Encodes a tombstone for `key` written at `at`.
    pub fn encode_tombstone(key: &Key, at: Timestamp) -> Bytes {
        let meta = EntryMeta { created_at: at, expires_at: None, version: None };
        let mut out = Vec::with_capacity(Record::encoded_len(key, 0));
        write(key, &meta, &[], FLAG_TOMBSTONE, Stored::Raw, &mut out);
        out.into()
    }

    /// Appends the record for `entry` under `key` to `out`.
    pub fn encode_into(key: &Key, entry: &Entry, out: &mut Vec<u8>) {
        write(key, &entry.meta, &entry.value, 0, Stored::Raw, out);
    }

    /// The encoded length of a record for `key` with a value of `value_len` bytes stored raw
    /// (the chunk table included for a value of at least [`CHUNKED_MIN_VALUE`] bytes): also the
    /// most a compressed record of such a value takes.
    pub fn encoded_len(key: &Key, value_len: usize) -> usize {
        HEADER_LEN
            + meta_len()
            + key.namespace().as_str().len()
            + key.key_bytes().len()
            + value_len
            + table_len(value_len)
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
        let header = Record::checked_header(&bytes)?;
        if verify == Verify::Checksum {
            verify_head(&bytes, &header)?;
            verify_chunks(&bytes, &header, 0..header.value_len)?;
        }
        Record::finish_decode(bytes, header, None)
    }

    /// Decodes a record that occupies exactly `bytes` as [`Record::decode_with`] does, except
    /// that a sealed value is not opened, so no key is needed: for a scan that indexes records
    /// by their heads (a log's recovery) and must tell a valid sealed record from damage
    /// without the keys. The checksum is verified as `verify` says. A sealed record decoded so
    /// has an empty value and must never be served: decode it again with its
    /// [`RecordFormat`] to read it.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) on any validation failure but a
    /// missing key.
    pub fn decode_unopened(bytes: Bytes, verify: Verify) -> Result<Record> {
        let header = Record::checked_header(&bytes)?;
        if verify == Verify::Checksum {
            verify_head(&bytes, &header)?;
            verify_chunks(&bytes, &header, 0..header.value_len)?;
        }
        if !header.is_sealed() {
            return Record::finish_decode(bytes, header, None);
        }
        let (meta, _, _) = parse_head_fields(&bytes, &header)?;
        Ok(Record { bytes, header, meta, value: Bytes::new() })
    }

    /// Decodes a record that occupies exactly `bytes` for a read of bytes `range` of its
    /// value: as [`Record::decode`], except that of a version-2 record's value only the
    /// chunks `range` covers (clamped to the value) are hashed, with the header, metadata, key
    /// and chunk table. A version-1 or version-3 record has one checksum over everything and is
    /// verified whole. The bytes outside `range` are not verified: read only `range` of the result.
    ///
    /// ```
    /// use cache_core::{CHUNKED_MIN_VALUE, Entry, Key, Record};
    /// let key = Key::new("blobs", "kv-chunk-7")?;
    /// let value: Vec<u8> = (0..CHUNKED_MIN_VALUE * 4).map(|i| i as u8).collect();
    /// let bytes = Record::encode(&key, &Entry::new(value.clone()));
    /// let record = Record::decode_for_range(bytes.clone(), &(1000..5000))?;
    /// assert_eq!(&record.value()[1000..5000], &value[1000..5000]);
    ///
    /// // A flipped byte far from the range goes unnoticed by this read, not by a full decode.
    /// let mut flipped = bytes.to_vec();
    /// let far = bytes.len() - 9 - 8 * 16; // in the value's last chunk
    /// flipped[far] ^= 1;
    /// assert!(Record::decode_for_range(flipped.clone().into(), &(1000..5000)).is_ok());
    /// assert!(Record::decode(flipped.into()).is_err());
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) on any validation failure.
    pub fn decode_for_range(bytes: Bytes, range: &std::ops::Range<u64>) -> Result<Record> {
        let header = Record::checked_header(&bytes)?;
        // In versions 1 and 3 this is the one checksum, over the whole record.
        verify_head(&bytes, &header)?;
        let (start, end) = (range.start.min(header.value_len), range.end.min(header.value_len));
        verify_chunks(&bytes, &header, start..end.max(start))?;
        Record::finish_decode(bytes, header, None)
    }

    fn checked_header(bytes: &Bytes) -> Result<RecordHeader> {
        let header = RecordHeader::parse(bytes)?;
        let total = header.total_len().expect("checked by parse");
        if total != bytes.len() as u64 {
            return Err(corrupt(format!(
                "record header says {total} bytes but {} are present",
                bytes.len()
            )));
        }
        Ok(header)
    }

    /// The checks after the checksums: the metadata archive, the namespace's UTF-8, that a
    /// sealed value opens with its namespace's key from `keys` and that a plaintext one is not
    /// in a namespace `keys` seals, and that a compressed value decodes to its declared length.
    fn finish_decode(
        bytes: Bytes,
        header: RecordHeader,
        keys: Option<&dyn KeyProvider>,
    ) -> Result<Record> {
        let (meta, namespace, _) = parse_head_fields(&bytes, &header)?;
        let start = header.value_offset() as usize;
        let stored = start..start + header.value_len as usize;
        let decode = |codec: Codec, packed: &[u8]| {
            codec.decompress(packed, header.decoded_len as usize).ok_or_else(|| {
                corrupt(format!("{codec:?} value does not decode to {} bytes", header.decoded_len))
            })
        };
        let value: Bytes = if header.is_sealed() {
            let inner = open_value(&bytes, &header, namespace, keys)?;
            match header.codec {
                None => inner.into(),
                Some(codec) => decode(codec, &inner)?.into(),
            }
        } else {
            if keys.is_some_and(|k| k.sealing_key(namespace).is_some()) {
                return Err(corrupt(format!(
                    "a plaintext record in namespace {namespace:?}, which is sealed"
                )));
            }
            match header.codec {
                None => bytes.slice(stored),
                Some(codec) => decode(codec, &bytes[stored])?.into(),
            }
        };
        Ok(Record { bytes, header, meta, value })
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

    /// Whether the value was sealed at rest (format version 4); [`Record::value`] is then the
    /// opened plaintext.
    pub fn is_sealed(&self) -> bool {
        self.header.is_sealed()
    }

    /// The key a sealed record was sealed under; `None` for a plaintext record.
    pub fn key_id(&self) -> Option<encryption::KeyId> {
        if !self.is_sealed() {
            return None;
        }
        let at = self.header.value_offset() as usize;
        encryption::sealed_key_id(&self.bytes[at..])
    }

    /// The codec of a compressed record's value; `None` for a raw value.
    pub fn codec(&self) -> Option<Codec> {
        self.header.codec
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

    /// The record split into its head, stored value (compressed, in version 3) and chunk
    /// table (zero-copy slices).
    pub fn parts(&self) -> RecordParts {
        let start = self.key_range().end;
        let value_end = start + self.header.value_len as usize;
        RecordParts {
            head: self.bytes.slice(..start),
            value: self.bytes.slice(start..value_end),
            tail: self.bytes.slice(value_end..),
        }
    }

    /// The value: a zero-copy slice of the record, or the decoded value of a compressed one.
    pub fn value(&self) -> Bytes {
        self.value.clone()
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

    /// The entry stored in the record (its value as [`Record::value`] gives it).
    pub fn to_entry(&self) -> Entry {
        Entry { value: self.value(), meta: self.meta }
    }
}

/// The metadata, namespace and key of the record whose header is `header` and whose first
/// bytes `bytes` holds (at least up to the value).
fn parse_head_fields<'a>(
    bytes: &'a [u8],
    header: &RecordHeader,
) -> Result<(EntryMeta, &'a str, &'a [u8])> {
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
    let namespace = std::str::from_utf8(&bytes[meta_end..ns_end])
        .map_err(|_| corrupt("record namespace is not UTF-8"))?;
    let key = &bytes[ns_end..ns_end + header.key_len as usize];
    Ok((meta, namespace, key))
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

/// The chunk table's length for a value of `value_len` bytes (0 below the chunked threshold).
fn table_len(value_len: usize) -> usize {
    if value_len >= CHUNKED_MIN_VALUE { value_len.div_ceil(1 << CHUNK_SHIFT) * 8 } else { 0 }
}

/// Verifies the record checksum: in versions 1 and 3 over everything after the header, in
/// version 2 over the metadata, namespace, key and chunk table.
fn verify_head(bytes: &[u8], header: &RecordHeader) -> Result<()> {
    let value_at = header.value_offset() as usize;
    if header.version == RECORD_VERSION_CHUNKED {
        let table_at = value_at + header.value_len as usize;
        check_checksum(header, &bytes[..value_at], &bytes[table_at..])
    } else {
        check_checksum(header, &bytes[..value_at], &bytes[value_at..])
    }
}

/// Compares the record checksum with the xxh3-64 of `head` (the record's first `value_offset`
/// bytes, less the checksum field) followed by `rest`: the value in versions 1 and 3, the
/// chunk table in version 2.
fn check_checksum(header: &RecordHeader, head: &[u8], rest: &[u8]) -> Result<()> {
    let mut h = Xxh3::new();
    h.update(&head[..HEADER_LEN - 8]);
    h.update(&head[HEADER_LEN..]);
    h.update(rest);
    if h.digest() != header.checksum {
        return Err(corrupt("record checksum mismatch"));
    }
    Ok(())
}

/// Verifies the chunks of a version-2 record's value that `range` (within the value) touches
/// against its chunk table; nothing to do in versions 1 and 3, whose checksum covers the value.
fn verify_chunks(bytes: &[u8], header: &RecordHeader, range: std::ops::Range<u64>) -> Result<()> {
    if header.version != RECORD_VERSION_CHUNKED || range.is_empty() {
        return Ok(());
    }
    let (first, span) = header.chunks_around(&range);
    let value_at = header.value_offset();
    let table_at = (value_at + header.value_len) as usize;
    let piece = &bytes[(value_at + span.start) as usize..(value_at + span.end) as usize];
    check_chunks(&bytes[table_at..], first, piece, 1 << header.chunk_shift)
}

/// Checks each `chunk`-byte chunk of `piece`, chunk `first` of the value onwards, against its
/// entry in `table` (the whole chunk table).
fn check_chunks(table: &[u8], first: u64, piece: &[u8], chunk: usize) -> Result<()> {
    for (i, part) in piece.chunks(chunk).enumerate() {
        let index = first as usize + i;
        let stored =
            u64::from_le_bytes(table[index * 8..index * 8 + 8].try_into().expect("8 bytes"));
        if xxhash_rust::xxh3::xxh3_64(part) != stored {
            return Err(corrupt(format!("record chunk {index} checksum mismatch")));
        }
    }
    Ok(())
}

/// How a record's value is stored.
#[derive(Clone, Copy)]
enum Stored {
    /// Raw: version 1, or version 2 from the chunked threshold up.
    Raw,
    /// Compressed by `codec` from `decoded_len` bytes: version 3.
    Compressed { codec: Codec, decoded_len: usize },
}

/// Appends the record to `out`; `value` is the stored value (compressed, if `stored` says so).
fn write(key: &Key, meta: &EntryMeta, value: &[u8], flags: u16, stored: Stored, out: &mut Vec<u8>) {
    let head_at = out.len();
    let tail = write_head(key, meta, value, flags, stored, out);
    debug_assert_eq!(out.len() - head_at, Record::encoded_len(key, 0));
    out.extend_from_slice(value);
    out.extend_from_slice(&tail);
}

/// Appends the record's head (header, metadata, namespace, key) for the stored `value` to `out`,
/// and returns its tail: the chunk table of a version-2 record, or nothing.
fn write_head(
    key: &Key,
    meta: &EntryMeta,
    value: &[u8],
    mut flags: u16,
    stored: Stored,
    out: &mut Vec<u8>,
) -> Vec<u8> {
    let chunked = matches!(stored, Stored::Raw) && value.len() >= CHUNKED_MIN_VALUE;
    // Bytes 20..24: the chunk size (version 2), the decoded length (version 3), or zero.
    let (version, shift) = match stored {
        Stored::Compressed { codec, decoded_len } => {
            debug_assert!(decoded_len < CHUNKED_MIN_VALUE && value.len() < decoded_len);
            flags |= match codec {
                Codec::Lz4 => FLAG_LZ4,
                Codec::Zstd => FLAG_ZSTD,
            };
            (RECORD_VERSION_COMPRESSED, decoded_len as u32)
        }
        Stored::Raw if chunked => (RECORD_VERSION_CHUNKED, CHUNK_SHIFT),
        Stored::Raw => (RECORD_VERSION, 0),
    };
    let start = out.len();
    push_head(key, meta, version, flags, shift, value.len() as u64, out);
    let mut h = Xxh3::new();
    h.update(&out[start..start + HEADER_LEN - 8]);
    h.update(&out[start + HEADER_LEN..]);
    let tail = if chunked {
        let table: Vec<u8> = value
            .chunks(1 << CHUNK_SHIFT)
            .flat_map(|c| xxhash_rust::xxh3::xxh3_64(c).to_le_bytes())
            .collect();
        h.update(&table);
        table
    } else {
        h.update(value);
        Vec::new()
    };
    out[start + HEADER_LEN - 8..start + HEADER_LEN].copy_from_slice(&h.digest().to_le_bytes());
    tail
}

/// The associated data a sealed value is bound to: the record's head (`head`, its first
/// `value_offset` bytes) without the checksum, which is computed after sealing.
fn seal_aad(head: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(head.len() - 8);
    aad.extend_from_slice(&head[..HEADER_LEN - 8]);
    aad.extend_from_slice(&head[HEADER_LEN..]);
    aad
}

/// Opens the sealed value of a version-4 record (header already checked) of `namespace` with
/// the key its id names: its plaintext, still compressed if the flags say so.
fn open_value(
    bytes: &[u8],
    header: &RecordHeader,
    namespace: &str,
    keys: Option<&dyn KeyProvider>,
) -> Result<Vec<u8>> {
    let at = header.value_offset() as usize;
    let sealed = &bytes[at..at + header.value_len as usize];
    let id =
        encryption::sealed_key_id(sealed).ok_or_else(|| corrupt("a sealed value too short"))?;
    let Some(keys) = keys else {
        return Err(corrupt(format!(
            "a record of namespace {namespace:?} sealed under {id}, read without a key provider"
        )));
    };
    let key = keys
        .opening_key(namespace, id)
        .ok_or_else(|| corrupt(format!("no {id} for namespace {namespace:?} to open a record")))?;
    encryption::open(&key, &seal_aad(&bytes[..at]), sealed).ok_or_else(|| {
        corrupt(format!("a record of namespace {namespace:?} does not open under its {id}"))
    })
}

/// Appends a version-4 record to `out`: `inner` (the value, compressed by `codec` if any, from
/// `decoded_len` bytes) sealed under key `id`.
#[allow(clippy::too_many_arguments)]
fn write_sealed(
    key: &Key,
    meta: &EntryMeta,
    codec: Option<Codec>,
    inner: &[u8],
    decoded_len: usize,
    (id, secret): (encryption::KeyId, &encryption::EncryptionKey),
    out: &mut Vec<u8>,
) -> Result<()> {
    let decoded = u32::try_from(decoded_len).map_err(|_| {
        Error::invalid(TIER, format!("a value of {decoded_len} bytes is too long to seal (4 GiB)"))
    })?;
    let flags = match codec {
        None => 0,
        Some(Codec::Lz4) => FLAG_LZ4,
        Some(Codec::Zstd) => FLAG_ZSTD,
    };
    let start = out.len();
    let value_len = (inner.len() + SEAL_OVERHEAD) as u64;
    push_head(key, meta, RECORD_VERSION_SEALED, flags, decoded, value_len, out);
    let aad = seal_aad(&out[start..]);
    encryption::seal(secret, id, &aad, inner, out)?;
    let mut h = Xxh3::new();
    h.update(&out[start..start + HEADER_LEN - 8]);
    h.update(&out[start + HEADER_LEN..]);
    out[start + HEADER_LEN - 8..start + HEADER_LEN].copy_from_slice(&h.digest().to_le_bytes());
    Ok(())
}

/// Appends a record's header (checksum zero), metadata, namespace and key to `out`.
fn push_head(
    key: &Key,
    meta: &EntryMeta,
    version: u16,
    flags: u16,
    word20: u32,
    value_len: u64,
    out: &mut Vec<u8>,
) {
    let meta = archived_meta(meta);
    debug_assert_eq!(meta.len(), meta_len());
    let ns = key.namespace().as_str().as_bytes();
    let k = &key.key_bytes()[..];
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(ns.len() as u32).to_le_bytes());
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(&word20.to_le_bytes());
    out.extend_from_slice(&value_len.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(ns);
    out.extend_from_slice(k);
}

mod format;
mod writer;
pub use format::RecordFormat;
pub use writer::RecordWriter;

#[cfg(test)]
mod tests;
