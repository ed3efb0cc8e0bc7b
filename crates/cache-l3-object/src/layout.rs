//! Where objects live and what their bytes are: `{prefix}/{namespace id}/{fan-out}/{key hash}`,
//! each object one cache-core record.
//!
//! User strings never become path components: a namespace is its 32-hex-digit identifier and a
//! key is the 64-hex-digit BLAKE3 hash of namespace and key. The fan-out component is the first
//! byte of the key hash (two hex digits), which spreads keys over 256 sub-prefixes per namespace
//! (S3 partitions request rates by prefix; directories on a local filesystem stay small).
//!
//! Records are written in pieces so a value is never copied on `put`: a small head (header,
//! metadata, namespace, key), the value itself (or its compressed copy), and for a large value
//! its chunk table ([`Record::encode_parts_with`]). The bytes are exactly those of
//! [`Record::encode_with`] (a test checks this). A record of a namespace the tier seals
//! (encryption at rest, [`RecordFormat::encode_parts`](cache_core::RecordFormat::encode_parts))
//! is one piece: sealing writes the value into a new buffer anyway. Such a record has no chunk
//! table however large its value, so its head says version 4 and a ranged read takes it whole.

use cache_core::{
    EntryMeta, Error, Key, KeyHash, Namespace, NamespaceId, Record, RecordHeader, Result,
};
use object_store::path::Path;

use crate::tier::TIER;

/// The sub-prefix under the tier's prefix used for start-up probes. It is not 32 hex digits, so
/// it can never be a namespace identifier.
const PROBE_DIR: &str = "_probe";

/// Builds object paths under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The prefix as given (normalized, without leading or trailing `/`), or empty.
    prefix: String,
}

impl Layout {
    /// A layout under `prefix` (`""` for the root of the bucket or directory).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) if `prefix` is not a valid object
    /// path (empty segments, `.` or `..`, control characters).
    pub(crate) fn new(prefix: &str) -> Result<Layout> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Layout { prefix: String::new() });
        }
        let parsed = Path::parse(trimmed).map_err(|e| {
            Error::invalid(TIER, format!("the prefix {trimmed:?} is not a valid object path"))
                .with_source(e)
        })?;
        if parsed.as_ref() != trimmed {
            return Err(Error::invalid(
                TIER,
                format!("the prefix {trimmed:?} is not a valid object path"),
            ));
        }
        Ok(Layout { prefix: parsed.as_ref().to_owned() })
    }

    /// The prefix (no leading or trailing `/`; empty for none).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn join(&self, rest: &str) -> Path {
        // Every component is hex or a fixed ASCII word, so this never needs escaping.
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// The object holding `key`.
    pub(crate) fn object(&self, key: &Key) -> Path {
        self.object_of(key.namespace().id(), key.hash())
    }

    /// The object holding the key with this namespace identifier and hash.
    ///
    /// Built in one allocation with the hex written in place: this runs on every request, and
    /// `Path::from` would split the string again and percent-encode each part.
    pub(crate) fn object_of(&self, ns: NamespaceId, hash: &KeyHash) -> Path {
        let mut s = String::with_capacity(self.prefix.len() + 1 + 32 + 1 + 2 + 1 + 64);
        if !self.prefix.is_empty() {
            s.push_str(&self.prefix);
            s.push('/');
        }
        push_hex(&mut s, &ns.0);
        s.push('/');
        push_hex(&mut s, &hash.0[..1]);
        s.push('/');
        push_hex(&mut s, &hash.0);
        // The prefix was validated by `Layout::new` and the rest is hex, so `parse` (a check and
        // one copy) accepts it; `Path::from` (split, percent-encode, join) is the fallback that
        // never runs.
        Path::parse(&s).unwrap_or_else(|_| Path::from(s))
    }

    /// The prefix holding every object of `namespace`.
    pub(crate) fn namespace(&self, namespace: &Namespace) -> Path {
        self.join(&namespace.id().to_hex())
    }

    /// A start-up probe object named `name`.
    pub(crate) fn probe(&self, name: &str) -> Path {
        self.join(&format!("{PROBE_DIR}/{name}"))
    }

    /// The prefix of start-up probes.
    pub(crate) fn probe_dir(&self) -> Path {
        self.join(PROBE_DIR)
    }
}

/// Appends the lowercase hex of `bytes`.
fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// What the head of a stored record says, read without downloading the value.
#[derive(Debug, Clone)]
pub(crate) struct RecordHead {
    /// The metadata.
    pub(crate) meta: EntryMeta,
    /// Where the value starts in the object.
    pub(crate) value_offset: u64,
    /// The value's length as stored (compressed, for a compressed record; with the key id,
    /// nonce and tag, for a sealed one).
    pub(crate) value_len: u64,
    /// The record's header: its format version (sealed or not), codec and chunk table.
    pub(crate) header: RecordHeader,
}

/// The length of the head of any record for `key`: where its value starts.
pub(crate) fn head_len(key: &Key) -> u64 {
    Record::encoded_len(key, 0) as u64
}

/// Parses the head of the record for `key` from the first bytes of an object of `object_len`
/// bytes. The checksum covers the whole record and cannot be verified from the head alone; the
/// header's structure, the metadata archive, the stored key and the object's length are.
///
/// # Errors
/// [`ErrorKind::Corrupted`](cache_core::ErrorKind::Corrupted) when any of those do not hold.
pub(crate) fn parse_head(key: &Key, head: &[u8], object_len: u64) -> Result<RecordHead> {
    let value_offset = head_len(key);
    if (head.len() as u64) < value_offset {
        return Err(Error::corrupted(TIER, "object is shorter than its record head"));
    }
    let header = RecordHeader::parse(head)?;
    let total = header.total_len().unwrap_or(u64::MAX);
    if total != object_len {
        return Err(Error::corrupted(
            TIER,
            format!("record header says {total} bytes but the object has {object_len}"),
        ));
    }
    if header.is_tombstone() {
        return Err(Error::corrupted(TIER, "object holds a tombstone"));
    }
    // Structure and metadata; the checksum covers bytes a head does not hold.
    let parsed = cache_core::RecordHead::parse(head)?;
    if !parsed.matches(key) {
        return Err(Error::corrupted(TIER, "object holds a record of another key"));
    }
    Ok(RecordHead { meta: *parsed.meta(), value_offset, value_len: header.value_len, header })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cache_core::{Entry, ErrorKind, Timestamp};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn paths_are_hex_under_the_prefix() {
        let layout = Layout::new("/cache/l3/").unwrap();
        let key = Key::new("../../etc", "passwd").unwrap();
        let path = layout.object(&key).to_string();
        let parts: Vec<&str> = path.split('/').collect();
        assert_eq!(parts.len(), 5, "{path}");
        assert_eq!(&parts[..2], &["cache", "l3"]);
        assert_eq!(parts[2], key.namespace().id().to_hex());
        assert_eq!(parts[3], &key.hash().to_hex()[..2]);
        assert_eq!(parts[4], key.hash().to_hex());
        assert!(path.starts_with(&format!("{}/", layout.namespace(key.namespace()))));
        let encoded = Path::from_iter([
            "cache",
            "l3",
            &key.namespace().id().to_hex(),
            &key.hash().to_hex()[..2],
            &key.hash().to_hex(),
        ]);
        assert_eq!(layout.object(&key), encoded, "the fast path equals the encoded one");
        let root = Layout::new("").unwrap();
        assert_eq!(root.object(&key).parts().count(), 3);
        assert!(!layout.probe("x").to_string().contains(&key.namespace().id().to_hex()));
    }

    #[test]
    fn bad_prefixes_are_invalid() {
        for bad in ["a//b", "a/../b", "a/./b", "a\u{1}b"] {
            let err = Layout::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn split_encoding_equals_record_encode(
            ns in "[a-z:/.]{1,20}",
            k in proptest::collection::vec(any::<u8>(), 0..64),
            v in proptest::collection::vec(any::<u8>(), 0..300),
            created in 0u64..u64::MAX / 2,
            expires in proptest::option::of(1u64..u64::MAX / 2),
            version in proptest::option::of(any::<u64>()),
        ) {
            let key = Key::new(&ns, k).unwrap();
            let meta = EntryMeta {
                created_at: Timestamp::from_millis(created),
                expires_at: expires.map(Timestamp::from_millis),
                version,
            };
            let entry = Entry { value: Bytes::from(v), meta };
            let whole = Record::encode(&key, &entry);
            let split = Record::encode_parts(&key, &entry);
            let joined: Vec<u8> = split.chunks().flat_map(|c| c.to_vec()).collect();
            prop_assert_eq!(&joined[..], &whole[..]);
            prop_assert_eq!(split.len(), whole.len());
            let record = Record::decode(whole.clone()).unwrap();
            let again = record.parts();
            prop_assert_eq!(&again.head[..], &split.head[..]);
            let head = parse_head(&key, &whole, whole.len() as u64).unwrap();
            prop_assert_eq!(head.meta, *record.meta());
            prop_assert_eq!(head.value_len, entry.value.len() as u64);
            prop_assert_eq!(&whole[head.value_offset as usize..], &entry.value[..]);
        }
    }

    /// A sealed record's head parses without the key (the tier checks key and expiry from it)
    /// and says version 4 and no chunk table, even for a value past the chunked threshold.
    #[test]
    fn head_of_a_sealed_record_parses_without_the_key() {
        let key = Key::new("tenant", "k").unwrap();
        let format = cache_core::RecordFormat::new().with_keys(cache_core::testkit::suite_keys());
        for len in [0, 10, 300_000] {
            let entry = Entry::new(vec![3u8; len]).with_version(9);
            let split = format.encode_parts(&key, &entry).unwrap();
            let whole = split.to_bytes();
            let head = parse_head(&key, &whole, whole.len() as u64).unwrap();
            assert!(head.header.is_sealed() && head.header.chunks() == 0, "{len}");
            assert_eq!(head.meta.version, Some(9));
            assert_eq!(head.value_offset, head_len(&key));
            assert_eq!(head.value_len, (len + cache_core::SEAL_OVERHEAD) as u64, "{len}");
            assert!(format.encoded_len(&key, len) >= whole.len(), "{len}: an upper bound");
            assert_eq!(format.decode(whole).unwrap().value(), entry.value, "{len}");
        }
    }

    #[test]
    fn head_of_another_key_or_truncated_object_is_corrupt() {
        let key = Key::new("ns", "k").unwrap();
        let other = Key::new("ns", "j").unwrap();
        let bytes = Record::encode(&key, &Entry::new("value"));
        let len = bytes.len() as u64;
        assert_eq!(parse_head(&other, &bytes, len).unwrap_err().kind(), ErrorKind::Corrupted);
        assert_eq!(parse_head(&key, &bytes, len + 1).unwrap_err().kind(), ErrorKind::Corrupted);
        assert_eq!(parse_head(&key, &bytes[..10], len).unwrap_err().kind(), ErrorKind::Corrupted);
    }
}
