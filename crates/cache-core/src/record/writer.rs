//! [`RecordWriter`]: encodes a raw record whose value arrives in pieces, so a value that streams
//! in is never held whole by the encoder.

use bytes::Bytes;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::{
    CHUNK_SHIFT, CHUNKED_MIN_VALUE, HEADER_LEN, RECORD_VERSION, RECORD_VERSION_CHUNKED, Record,
    push_head,
};
use crate::{
    entry::EntryMeta,
    error::{Error, Result},
    key::Key,
};

const TIER: &str = "record";
const CHUNK: usize = 1 << CHUNK_SHIFT;

/// Encodes the raw record of a value of a length known in advance, fed piece by piece.
///
/// The bytes it produces are [`Record::encode`]'s for the same key, metadata and value: the
/// head ([`RecordWriter::head`], with its checksum still zero), then the value exactly as it was
/// pushed, then the tail that [`RecordWriter::finish`] returns with the finished head (the chunk
/// table of a version-2 record, or nothing). The writer keeps only the head, one running hash
/// and the table (8 bytes per 64 KiB of value): the caller decides where the value's bytes go,
/// for example straight into the parts of a multipart upload.
///
/// The checksum sits in the head but is known only at the end, so a writer that sends the head
/// before the value must patch bytes `32..40` of it afterwards (`docs/format.md`).
///
/// ```
/// use cache_core::{Entry, EntryMeta, Key, Record, RecordWriter};
///
/// let key = Key::new("blobs", "k").unwrap();
/// let meta = EntryMeta::default();
/// let value = vec![7u8; 300_000];
/// let mut writer = RecordWriter::new(&key, &meta, value.len() as u64);
/// for piece in value.chunks(100_000) {
///     writer.push(piece).unwrap();
/// }
/// let (head, tail) = writer.finish().unwrap();
/// let streamed = [&head[..], &value[..], &tail[..]].concat();
/// let whole = Record::encode(&key, &Entry { value: value.into(), meta });
/// assert_eq!(streamed, whole);
/// ```
pub struct RecordWriter {
    head: Vec<u8>,
    value_len: u64,
    written: u64,
    /// Version 1: the record checksum, fed the head and then the value. Version 2: the current
    /// chunk's hash.
    hash: Xxh3,
    chunked: bool,
    chunk_fill: usize,
    table: Vec<u8>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("head_len", &self.head.len())
            .field("value_len", &self.value_len)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl RecordWriter {
    /// A writer for the record of `value_len` bytes under `key` with `meta` (stored as given:
    /// stamp a creation time first if it should have one). A value of [`CHUNKED_MIN_VALUE`]
    /// bytes or more gets format version 2, a smaller one version 1, as [`Record::encode`].
    pub fn new(key: &Key, meta: &EntryMeta, value_len: u64) -> RecordWriter {
        let chunked = value_len >= CHUNKED_MIN_VALUE as u64;
        let (version, shift) =
            if chunked { (RECORD_VERSION_CHUNKED, CHUNK_SHIFT) } else { (RECORD_VERSION, 0) };
        let mut head = Vec::with_capacity(Record::encoded_len(key, 0));
        push_head(key, meta, version, 0, shift, value_len, &mut head);
        let mut hash = Xxh3::new();
        let mut table = Vec::new();
        if chunked {
            table.reserve_exact((value_len.div_ceil(CHUNK as u64) * 8) as usize);
        } else {
            hash.update(&head[..HEADER_LEN - 8]);
            hash.update(&head[HEADER_LEN..]);
        }
        RecordWriter { head, value_len, written: 0, hash, chunked, chunk_fill: 0, table }
    }

    /// The record's head: header (checksum zero until [`RecordWriter::finish`]), metadata,
    /// namespace and key. The value starts right after it.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The length of the whole record.
    pub fn encoded_len(&self) -> u64 {
        self.head.len() as u64 + self.value_len + self.tail_len()
    }

    /// The length of the tail [`RecordWriter::finish`] returns.
    pub fn tail_len(&self) -> u64 {
        if self.chunked { self.value_len.div_ceil(CHUNK as u64) * 8 } else { 0 }
    }

    /// The value bytes pushed so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Feeds the next bytes of the value.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) if they run past the declared length;
    /// the writer is then unusable.
    pub fn push(&mut self, mut piece: &[u8]) -> Result<()> {
        if piece.len() as u64 > self.value_len - self.written {
            return Err(Error::invalid(
                TIER,
                format!("the value runs past its declared length of {} bytes", self.value_len),
            ));
        }
        self.written += piece.len() as u64;
        if !self.chunked {
            self.hash.update(piece);
            return Ok(());
        }
        while !piece.is_empty() {
            if self.chunk_fill == 0 && piece.len() >= CHUNK {
                // A whole chunk in one piece: hash it in one call.
                let (chunk, rest) = piece.split_at(CHUNK);
                self.table.extend_from_slice(&xxh3_64(chunk).to_le_bytes());
                piece = rest;
                continue;
            }
            let take = (CHUNK - self.chunk_fill).min(piece.len());
            self.hash.update(&piece[..take]);
            self.chunk_fill += take;
            piece = &piece[take..];
            if self.chunk_fill == CHUNK {
                self.end_chunk();
            }
        }
        Ok(())
    }

    fn end_chunk(&mut self) {
        self.table.extend_from_slice(&self.hash.digest().to_le_bytes());
        self.hash.reset();
        self.chunk_fill = 0;
    }

    /// Ends the record: the head with its checksum, and the tail that follows the value.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) if fewer bytes than the declared
    /// length were pushed.
    pub fn finish(mut self) -> Result<(Bytes, Bytes)> {
        if self.written != self.value_len {
            return Err(Error::invalid(
                TIER,
                format!(
                    "the value ended after {} of its declared {} bytes",
                    self.written, self.value_len
                ),
            ));
        }
        let checksum = if self.chunked {
            if self.chunk_fill > 0 {
                self.end_chunk();
            }
            let mut h = Xxh3::new();
            h.update(&self.head[..HEADER_LEN - 8]);
            h.update(&self.head[HEADER_LEN..]);
            h.update(&self.table);
            h.digest()
        } else {
            self.hash.digest()
        };
        self.head[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&checksum.to_le_bytes());
        Ok((self.head.into(), self.table.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Timestamp};

    fn streamed(key: &Key, meta: &EntryMeta, value: &[u8], piece: usize) -> Vec<u8> {
        let mut w = RecordWriter::new(key, meta, value.len() as u64);
        assert_eq!(w.head().len(), Record::encoded_len(key, 0));
        for p in value.chunks(piece.max(1)) {
            w.push(p).unwrap();
        }
        let len = w.encoded_len();
        let (head, tail) = w.finish().unwrap();
        let out = [&head[..], value, &tail[..]].concat();
        assert_eq!(out.len() as u64, len);
        out
    }

    #[test]
    fn streamed_records_equal_whole_ones_at_every_piece_size() {
        let key = Key::new("ns", "key").unwrap();
        let meta = EntryMeta {
            created_at: Timestamp::from_millis(1_000),
            expires_at: Some(Timestamp::from_millis(9_000)),
            version: Some(3),
        };
        for len in [0, 1, 4096, CHUNKED_MIN_VALUE - 1, CHUNKED_MIN_VALUE, 3 * CHUNK + 17] {
            let value: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let whole = Record::encode(&key, &Entry { value: value.clone().into(), meta });
            for piece in [1 << 10, CHUNK - 1, CHUNK, CHUNK + 1, 1 << 20] {
                if len > 100_000 && piece < CHUNK - 1 {
                    continue;
                }
                assert_eq!(
                    streamed(&key, &meta, &value, piece),
                    whole[..],
                    "len {len} piece {piece}"
                );
            }
            Record::decode(whole).unwrap();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any split of a value into pieces, mixing small and large ones across chunk
        /// boundaries, encodes to `Record::encode`'s bytes.
        #[test]
        fn any_split_encodes_the_same_record(
            len in 0usize..(5 * CHUNK + 100),
            cuts in proptest::collection::vec(0usize..(5 * CHUNK + 100), 0..12),
        ) {
            let key = Key::new("ns", "split").unwrap();
            let meta = EntryMeta::default();
            let value: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(len)).collect();
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            let mut w = RecordWriter::new(&key, &meta, len as u64);
            for pair in cuts.windows(2) {
                w.push(&value[pair[0]..pair[1]]).unwrap();
            }
            let (head, tail) = w.finish().unwrap();
            let whole = Record::encode(&key, &Entry { value: value.clone().into(), meta });
            proptest::prop_assert!([&head[..], &value[..], &tail[..]].concat() == whole[..]);
        }
    }

    #[test]
    fn a_value_longer_or_shorter_than_declared_is_refused() {
        let key = Key::new("ns", "key").unwrap();
        let meta = EntryMeta::default();
        let mut w = RecordWriter::new(&key, &meta, 10);
        w.push(&[0; 6]).unwrap();
        let err = w.push(&[0; 5]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{err}");
        let mut w = RecordWriter::new(&key, &meta, 10);
        w.push(&[0; 9]).unwrap();
        let err = w.finish().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains("after 9 of its declared 10"), "{err}");
    }
}
