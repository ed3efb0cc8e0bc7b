//! [`RecordFormat`]: how a tier writes its records (compressed, sealed) and reads them back.

use std::{fmt, ops::Range, sync::Arc};

use bytes::Bytes;

use super::{Record, RecordParts, Verify, verify_chunks, verify_head, write_sealed};
use crate::{
    compression::Compression,
    encryption::{KeyProvider, SEAL_OVERHEAD},
    entry::Entry,
    error::Result,
    key::Key,
};

/// How a persistent tier encodes the records it writes and which records it can read: its
/// [`Compression`] and, for encryption at rest, its [`KeyProvider`].
///
/// The default compresses nothing and seals nothing; it reads every record but sealed ones.
/// With a key provider, the records of every namespace it has a key for are sealed (format
/// version 4), and reading them back needs that provider: a sealed record that does not open,
/// or a plaintext record in a namespace the provider seals, does not decode.
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Compression, DerivedKeys, EncryptionKey, Entry, Key, KeyId, RecordFormat};
///
/// let keys = DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([3; 32]));
/// let format = RecordFormat::new().with_compression(Compression::Lz4).with_keys(Arc::new(keys));
/// let key = Key::new("agent-memory", "session-9")?;
/// let notes = "the user prefers short answers; ".repeat(20);
/// let record = format.encode(&key, &Entry::new(notes.clone()))?;
/// let decoded = format.decode(record.clone())?;
/// assert!(decoded.is_sealed());
/// assert_eq!(decoded.value(), notes.as_bytes());
/// assert!(record.len() < notes.len()); // compressed before it was sealed
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct RecordFormat {
    compression: Compression,
    keys: Option<Arc<dyn KeyProvider>>,
}

impl fmt::Debug for RecordFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordFormat")
            .field("compression", &self.compression)
            .field("keys", &self.keys.as_ref().map(|_| "<key provider>"))
            .finish()
    }
}

impl RecordFormat {
    /// Raw values, nothing sealed.
    pub fn new() -> RecordFormat {
        RecordFormat::default()
    }

    /// Compresses values as `compression` says (before sealing them, for a sealed namespace).
    #[must_use]
    pub fn with_compression(mut self, compression: Compression) -> RecordFormat {
        self.compression = compression;
        self
    }

    /// Seals the records of every namespace `keys` has a key for, and opens them with it.
    #[must_use]
    pub fn with_keys(mut self, keys: Arc<dyn KeyProvider>) -> RecordFormat {
        self.keys = Some(keys);
        self
    }

    /// The compression setting.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Whether records of `key`'s namespace are sealed by this format.
    pub fn seals(&self, key: &Key) -> bool {
        self.sealing(key.namespace().as_str())
    }

    fn sealing(&self, namespace: &str) -> bool {
        self.keys.as_ref().is_some_and(|k| k.sealing_key(namespace).is_some())
    }

    /// The most bytes a record of `key` with a value of `value_len` bytes takes in this format
    /// (a sealed one has a key id, a nonce and a tag and no chunk table): what a tier checks
    /// against its size limits before encoding.
    pub fn encoded_len(&self, key: &Key, value_len: usize) -> usize {
        let raw = Record::encoded_len(key, value_len);
        if self.seals(key) {
            raw.max(Record::encoded_len(key, 0) + value_len + SEAL_OVERHEAD)
        } else {
            raw
        }
    }

    /// Encodes `entry` under `key`: sealed if the namespace is, compressed when that pays.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) for a value of 4 GiB or more in a
    /// sealed namespace; [`ErrorKind::Internal`](crate::ErrorKind::Internal) if the random
    /// source for the nonce fails. An unsealed record never fails.
    pub fn encode(&self, key: &Key, entry: &Entry) -> Result<Bytes> {
        let sealing = self.keys.as_ref().and_then(|k| k.sealing_key(key.namespace().as_str()));
        let Some((id, secret)) = sealing else {
            return Ok(Record::encode_with(key, entry, self.compression));
        };
        let packed = self.compression.compress(&entry.value);
        let (codec, inner) = match &packed {
            Some((codec, packed)) => (Some(*codec), &packed[..]),
            None => (None, &entry.value[..]),
        };
        let mut out = Vec::with_capacity(Record::encoded_len(key, 0) + inner.len() + SEAL_OVERHEAD);
        write_sealed(key, &entry.meta, codec, inner, entry.value.len(), (id, &secret), &mut out)?;
        Ok(out.into())
    }

    /// As [`RecordFormat::encode`], in three parts (see [`Record::encode_parts`]); a sealed
    /// record is one part (its value is a new buffer anyway).
    ///
    /// # Errors
    /// As [`RecordFormat::encode`].
    pub fn encode_parts(&self, key: &Key, entry: &Entry) -> Result<RecordParts> {
        if self.seals(key) {
            return self.encode(key, entry).map(RecordParts::whole);
        }
        Ok(Record::encode_parts_with(key, entry, self.compression))
    }

    /// Decodes and verifies a record that occupies exactly `bytes` (see [`Record::decode`]),
    /// opening a sealed value with this format's keys.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted) on any validation failure, for a
    /// sealed record that does not open (no key provider, no key of its id, a wrong key, a
    /// changed byte) and for a plaintext record in a namespace this format seals.
    pub fn decode(&self, bytes: Bytes) -> Result<Record> {
        self.decode_with(bytes, Verify::Checksum)
    }

    /// As [`RecordFormat::decode`], verifying as `verify` says (a sealed value is authenticated
    /// by its cipher either way).
    ///
    /// # Errors
    /// As [`RecordFormat::decode`].
    pub fn decode_with(&self, bytes: Bytes, verify: Verify) -> Result<Record> {
        let header = Record::checked_header(&bytes)?;
        if verify == Verify::Checksum {
            verify_head(&bytes, &header)?;
            verify_chunks(&bytes, &header, 0..header.value_len)?;
        }
        Record::finish_decode(bytes, header, self.keys.as_deref())
    }

    /// As [`Record::decode_for_range`], opening a sealed value with this format's keys (a
    /// sealed record is verified and opened whole).
    ///
    /// # Errors
    /// As [`RecordFormat::decode`].
    pub fn decode_for_range(&self, bytes: Bytes, range: &Range<u64>) -> Result<Record> {
        let header = Record::checked_header(&bytes)?;
        verify_head(&bytes, &header)?;
        let (start, end) = (range.start.min(header.value_len), range.end.min(header.value_len));
        verify_chunks(&bytes, &header, start..end.max(start))?;
        Record::finish_decode(bytes, header, self.keys.as_deref())
    }

    /// Whether `record` (from another tier) may be stored as it is, so that this format reads
    /// it back: a sealed record only if this format has the key it names, a plaintext one only
    /// in a namespace this format does not seal. Any other record is to be re-encoded from its
    /// entry (its value is plaintext once decoded).
    pub fn stores_as_is(&self, record: &Record) -> bool {
        match (record.key_id(), &self.keys) {
            (Some(id), Some(keys)) => keys.opening_key(record.namespace(), id).is_some(),
            (Some(_), None) => false,
            (None, _) => !self.sealing(record.namespace()),
        }
    }
}
