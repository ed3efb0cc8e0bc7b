//! Tests of the record format: round trips, every validation failure, and arbitrary input.

use proptest::prelude::*;

use super::*;
use crate::{COMPRESS_MIN_VALUE, ErrorKind};

fn sample() -> (Key, Entry) {
    let key = Key::new("llm/responses", "prompt-42").unwrap();
    let entry = Entry::new(Bytes::from_static(b"the answer is 42"))
        .with_created_at(Timestamp::from_millis(1_700_000_000_000))
        .with_expiry(Timestamp::from_millis(1_700_000_060_000))
        .with_version(7);
    (key, entry)
}

#[test]
fn round_trip_keeps_everything() {
    let (key, entry) = sample();
    let bytes = Record::encode(&key, &entry);
    assert_eq!(bytes.len(), Record::encoded_len(&key, entry.value.len()));
    let rec = Record::decode(bytes.clone()).unwrap();
    assert_eq!(rec.to_entry(), entry);
    assert!(rec.matches(&key));
    assert_eq!(rec.key().unwrap(), key);
    assert!(!rec.is_tombstone());
    // The value is a slice of the record: same memory, no copy.
    assert_eq!(rec.value().as_ptr(), bytes[bytes.len() - entry.value.len()..].as_ptr());
}

#[test]
fn tombstone_round_trip() {
    let (key, _) = sample();
    let rec = Record::decode(Record::encode_tombstone(&key, Timestamp::from_millis(9))).unwrap();
    assert!(rec.is_tombstone());
    assert!(rec.value().is_empty());
    assert_eq!(rec.meta().created_at, Timestamp::from_millis(9));
}

#[test]
fn header_layout_is_little_endian_and_stable() {
    let (key, entry) = sample();
    let bytes = Record::encode(&key, &entry);
    assert_eq!(&bytes[0..4], b"TCRD");
    assert_eq!(&bytes[4..6], &[1, 0]);
    let h = RecordHeader::parse(&bytes).unwrap();
    assert_eq!(h.namespace_len, 13);
    assert_eq!(h.key_len, 9);
    assert_eq!(h.value_len, 16);
    assert_eq!(h.total_len(), Some(bytes.len() as u64));
}

/// Flips every bit of `bytes`, one at a time, and checks each flip is a corruption.
#[track_caller]
fn assert_every_flip_detected(bytes: &Bytes, what: &str) {
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.to_vec();
            b[i] ^= 1 << bit;
            let err = Record::decode(b.into()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupted, "{what}: byte {i} bit {bit}");
        }
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let (key, entry) = sample();
    assert_every_flip_detected(&Record::encode(&key, &entry), "raw");
}

#[test]
fn truncation_and_trailing_garbage_are_corrupted() {
    let (key, entry) = sample();
    let bytes = Record::encode(&key, &entry);
    for len in 0..bytes.len() {
        assert_eq!(Record::decode(bytes.slice(..len)).unwrap_err().kind(), ErrorKind::Corrupted);
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(Record::decode(longer.into()).unwrap_err().kind(), ErrorKind::Corrupted);
}

#[test]
fn structure_only_skips_payload_hash_but_not_bounds() {
    let (key, entry) = sample();
    let mut b = Record::encode(&key, &entry).to_vec();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    assert!(Record::decode_with(b.clone().into(), Verify::StructureOnly).is_ok());
    assert!(Record::decode_with(Bytes::from(b[..10].to_vec()), Verify::StructureOnly).is_err());
}

#[test]
fn expiry_at_epoch_stays_an_expiry() {
    let key = Key::new("ns", "k").unwrap();
    let entry = Entry::new("v").with_expiry(Timestamp::ZERO);
    let rec = Record::decode(Record::encode(&key, &entry)).unwrap();
    assert!(rec.meta().is_expired(Timestamp::from_millis(1)));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::decode(bytes.clone().into());
        let _ = RecordHeader::parse(&bytes);
    }

    #[test]
    fn arbitrary_mutation_of_a_valid_record_never_yields_a_wrong_value(
        idx in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        value in proptest::collection::vec(any::<u8>(), 0..256),
        len in COMPRESS_MIN_VALUE..2000,
        which in 0usize..4,
    ) {
        // Raw records of arbitrary values, and compressed records (version 3) of each codec.
        let key = Key::new("ns", "k").unwrap();
        let (entry, compression) = match which {
            0 => (Entry::new(value), Compression::None),
            i => (Entry::new(compressible(len)), CODECS[i - 1]),
        };
        let mut b = Record::encode_with(&key, &entry, compression).to_vec();
        let i = idx.index(b.len());
        let changed = b[i] != byte;
        b[i] = byte;
        match Record::decode(b.into()) {
            Ok(rec) => { prop_assert!(!changed); prop_assert_eq!(rec.to_entry(), entry); }
            Err(e) => { prop_assert!(changed); prop_assert_eq!(e.kind(), ErrorKind::Corrupted); }
        }
    }

    #[test]
    fn round_trip_any_entry(
        ns in "[a-z/:.]{1,40}",
        k in proptest::collection::vec(any::<u8>(), 0..64),
        v in proptest::collection::vec(any::<u8>(), 0..1024),
        created in any::<u64>(),
        exp in proptest::option::of(1u64..),
        version in proptest::option::of(any::<u64>()),
    ) {
        let key = Key::new(&ns, k).unwrap();
        let mut entry = Entry::new(v).with_created_at(Timestamp::from_millis(created));
        entry.meta.expires_at = exp.map(Timestamp::from_millis);
        entry.meta.version = version;
        let rec = Record::decode(Record::encode(&key, &entry)).unwrap();
        prop_assert_eq!(rec.to_entry(), entry);
        prop_assert!(rec.matches(&key));
    }
}

#[test]
fn archived_metadata_layout_is_pinned() {
    // docs/format.md documents these 25 bytes; a change here is a format change.
    let meta = EntryMeta {
        created_at: Timestamp::from_millis(0x0102_0304_0506_0708),
        expires_at: Some(Timestamp::from_millis(0x1112_1314_1516_1718)),
        version: Some(0x2122_2324_2526_2728),
    };
    let archived = archived_meta(&meta);
    let expected: [u8; 25] = [
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // created_at_ms, u64 LE
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, // expires_at_ms, u64 LE
        0x01, // version tag: 1 = present
        0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21, // version, u64 LE
    ];
    assert_eq!(archived.as_slice(), &expected[..]);
    assert_eq!(meta_len(), 25);
    let none = archived_meta(&EntryMeta::default());
    assert_eq!(none.len(), 25);
    assert_eq!(none[16], 0, "version tag 0 = absent");
}

fn large(len: usize) -> (Key, Entry) {
    let key = Key::new("kv/blocks", "layer-3/chunk-9").unwrap();
    let value: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
    (key, Entry::new(value).with_created_at(Timestamp::from_millis(1_700_000_000_000)))
}

#[test]
fn values_from_the_threshold_up_get_a_chunk_table() {
    for len in [CHUNKED_MIN_VALUE - 1, CHUNKED_MIN_VALUE, CHUNKED_MIN_VALUE + 1, 5 << 20] {
        let (key, entry) = large(len);
        let bytes = Record::encode(&key, &entry);
        assert_eq!(bytes.len(), Record::encoded_len(&key, len), "{len}");
        let h = RecordHeader::parse(&bytes).unwrap();
        let chunked = len >= CHUNKED_MIN_VALUE;
        assert_eq!(h.version, if chunked { 2 } else { 1 }, "{len}");
        assert_eq!(&bytes[4..6], &h.version.to_le_bytes());
        let chunks = if chunked { len.div_ceil(1 << CHUNK_SHIFT) } else { 0 };
        assert_eq!(h.chunks(), chunks as u64);
        assert_eq!(h.chunk_shift, if chunked { CHUNK_SHIFT } else { 0 });
        assert_eq!(h.total_len(), Some(bytes.len() as u64));
        let rec = Record::decode(bytes.clone()).unwrap();
        assert_eq!(rec.to_entry(), entry);
        // The value is a slice of the record, followed by the table of one xxh3 per chunk.
        let at = h.value_offset() as usize;
        assert_eq!(rec.value().as_ptr(), bytes[at..].as_ptr());
        for (i, chunk) in entry.value.chunks(1 << CHUNK_SHIFT).enumerate().take(chunks) {
            let t = at + len + i * 8;
            assert_eq!(bytes[t..t + 8], xxhash_rust::xxh3::xxh3_64(chunk).to_le_bytes());
        }
        // The three parts are the same bytes.
        let parts = Record::encode_parts(&key, &entry);
        assert_eq!(parts.to_bytes(), bytes);
        assert_eq!(parts.value.as_ptr(), entry.value.as_ptr(), "the value is not copied");
        assert_eq!(parts.tail.len(), chunks * 8);
    }
}

#[test]
fn a_range_read_verifies_the_head_the_table_and_only_the_chunks_it_covers() {
    let chunk = 1usize << CHUNK_SHIFT;
    let (key, entry) = large(4 * chunk + 100);
    let bytes = Record::encode(&key, &entry);
    let at = RecordHeader::parse(&bytes).unwrap().value_offset() as usize;
    let flip = |i: usize| {
        let mut b = bytes.to_vec();
        b[i] ^= 0x40;
        Bytes::from(b)
    };
    let in_chunk_2 = flip(at + 2 * chunk + 7);
    let r = |a: usize, b: usize| a as u64..b as u64;
    assert!(Record::decode(in_chunk_2.clone()).is_err(), "a full decode hashes every chunk");
    assert!(Record::decode_for_range(in_chunk_2.clone(), &r(0, chunk)).is_ok(), "chunk 0 only");
    assert!(Record::decode_for_range(in_chunk_2.clone(), &r(3 * chunk, 4 * chunk + 100)).is_ok());
    for bad in [r(2 * chunk, 2 * chunk + 1), r(chunk, 3 * chunk), r(2 * chunk + 7, 2 * chunk + 8)] {
        let err = Record::decode_for_range(in_chunk_2.clone(), &bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{bad:?}");
    }
    assert!(
        Record::decode_for_range(in_chunk_2.clone(), &r(chunk, 2 * chunk)).is_ok(),
        "ends before"
    );
    assert!(
        Record::decode_for_range(in_chunk_2, &r(9 * chunk, 10 * chunk)).is_ok(),
        "past the end"
    );
    // The head, the metadata, the key and the table are checked on every range read.
    let table = at + entry.value.len();
    for i in [0, 5, 20, 33, 45, at - 1, table, table + 3, bytes.len() - 1] {
        let err = Record::decode_for_range(flip(i), &r(0, 1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "byte {i}");
    }
    // A version-1 record has one checksum: a range read verifies everything.
    let (small_key, small) = sample();
    let mut b = Record::encode(&small_key, &small).to_vec();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(Record::decode_for_range(b.into(), &(0..1)).is_err());
}

#[test]
fn a_chunked_header_with_a_bad_chunk_size_or_a_tombstone_flag_is_corrupt() {
    let (key, entry) = large(CHUNKED_MIN_VALUE);
    let bytes = Record::encode(&key, &entry);
    for (at, value) in [(20, 11u32), (20, 31), (20, 0)] {
        let mut b = bytes.to_vec();
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        assert_eq!(RecordHeader::parse(&b).unwrap_err().kind(), ErrorKind::Corrupted, "{value}");
    }
    let mut b = bytes.to_vec();
    b[6] |= FLAG_TOMBSTONE as u8;
    assert_eq!(RecordHeader::parse(&b).unwrap_err().kind(), ErrorKind::Corrupted);
    let (small_key, small) = sample();
    let mut b = Record::encode(&small_key, &small).to_vec();
    b[20] = 16;
    assert!(RecordHeader::parse(&b).is_err(), "version 1 keeps the reserved bytes zero");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_mutated_chunked_record_never_yields_a_wrong_value(
        idx in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        len in CHUNKED_MIN_VALUE..CHUNKED_MIN_VALUE + 3 * (1 << CHUNK_SHIFT),
        from in 0usize..1 << 20,
        span in 0usize..100_000,
    ) {
        let (key, entry) = large(len);
        let mut b = Record::encode(&key, &entry).to_vec();
        let i = idx.index(b.len());
        let changed = b[i] != byte;
        b[i] = byte;
        let b = Bytes::from(b);
        match Record::decode(b.clone()) {
            Ok(rec) => { prop_assert!(!changed); prop_assert_eq!(rec.to_entry(), entry.clone()); }
            Err(e) => { prop_assert!(changed); prop_assert_eq!(e.kind(), ErrorKind::Corrupted); }
        }
        // A range read returns the right bytes of its range, or a corruption error.
        let range = from as u64..(from + span) as u64;
        if let Ok(rec) = Record::decode_for_range(b, &range) {
            let got = crate::slice_range(&rec.value(), &range);
            prop_assert_eq!(got, crate::slice_range(&entry.value, &range));
            prop_assert!(rec.matches(&key));
        }
    }
}

/// A JSON-like value that both codecs shrink by more than an eighth.
fn compressible(len: usize) -> Vec<u8> {
    br#"{"role":"assistant","content":"The capital of France is Paris.","tokens":17}"#
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

const CODECS: [Compression; 3] =
    [Compression::Lz4, Compression::Zstd { level: 1 }, Compression::Zstd { level: 9 }];

#[test]
fn a_compressed_record_round_trips_and_names_its_codec() {
    let (key, entry) = sample();
    let entry = Entry { value: compressible(4000).into(), ..entry };
    for compression in CODECS {
        let bytes = Record::encode_with(&key, &entry, compression);
        assert!(bytes.len() < Record::encoded_len(&key, entry.value.len()) / 2, "{compression}");
        let header = RecordHeader::parse(&bytes).unwrap();
        assert_eq!(header.version, RECORD_VERSION_COMPRESSED);
        assert_eq!(header.codec, compression.codec());
        assert_eq!(header.decoded_len, 4000);
        assert_eq!(&bytes[20..24], &4000u32.to_le_bytes(), "decoded length at bytes 20..24");
        assert_eq!(header.total_len(), Some(bytes.len() as u64));
        let rec = Record::decode(bytes.clone()).unwrap();
        assert_eq!(rec.to_entry(), entry);
        assert_eq!(rec.codec(), compression.codec());
        assert!(rec.matches(&key));
        // The parts carry the stored (compressed) bytes, so the record moves between tiers
        // without being re-encoded.
        assert_eq!(rec.parts().to_bytes(), bytes);
        assert_eq!(Record::encode_parts_with(&key, &entry, compression).to_bytes(), bytes);
        // A range read verifies the whole record and slices the decoded value.
        let ranged = Record::decode_for_range(bytes, &(100..200)).unwrap();
        assert_eq!(&ranged.value()[100..200], &entry.value[100..200]);
    }
}

#[test]
fn values_that_do_not_pay_are_stored_raw() {
    let key = Key::new("ns", "k").unwrap();
    let random = crate::compression::noise(0, 4096);
    for compression in CODECS {
        for value in [random.clone(), compressible(10), compressible(CHUNKED_MIN_VALUE)] {
            let entry = Entry::new(value);
            let raw = Record::encode(&key, &entry);
            assert!(Record::encode_with(&key, &entry, compression) == raw, "{compression}");
            let parts = Record::encode_parts_with(&key, &entry, compression);
            assert_eq!(parts.value.as_ptr(), entry.value.as_ptr(), "a raw value is not copied");
        }
    }
    let entry = Entry::new(compressible(4000));
    assert_eq!(Record::encode_with(&key, &entry, Compression::None), Record::encode(&key, &entry));
}

#[test]
fn every_single_bit_flip_of_a_compressed_record_is_detected() {
    let (key, entry) = sample();
    let entry = Entry { value: compressible(300).into(), ..entry };
    for compression in [Compression::Lz4, Compression::zstd()] {
        let bytes = Record::encode_with(&key, &entry, compression);
        assert_every_flip_detected(&bytes, &compression.to_string());
    }
}

#[test]
fn a_compressed_header_must_be_consistent() {
    let (key, entry) = sample();
    let entry = Entry { value: compressible(4000).into(), ..entry };
    let bytes = Record::encode_with(&key, &entry, Compression::Lz4);
    let stored = RecordHeader::parse(&bytes).unwrap().value_len as u32;
    let patch = |at: usize, with: &[u8]| {
        let mut b = bytes.to_vec();
        b[at..at + with.len()].copy_from_slice(with);
        RecordHeader::parse(&b)
    };
    // Both codecs, no codec, a tombstone.
    for flags in [FLAG_LZ4 | FLAG_ZSTD, 0, FLAG_LZ4 | FLAG_TOMBSTONE] {
        assert!(patch(6, &flags.to_le_bytes()).is_err(), "flags {flags:#x}");
    }
    // A decoded length at or above the chunked threshold (a decompression bomb), or not
    // longer than what is stored.
    for decoded in [CHUNKED_MIN_VALUE as u32, u32::MAX, stored, stored - 1] {
        assert!(patch(20, &decoded.to_le_bytes()).is_err(), "decoded length {decoded}");
    }
    // Codec flags on a version-1 or version-2 record.
    let raw = Record::encode(&key, &Entry::new("v"));
    let mut b = raw.to_vec();
    b[6] |= FLAG_ZSTD as u8;
    assert!(RecordHeader::parse(&b).is_err());
    let (big_key, big) = large(CHUNKED_MIN_VALUE);
    let mut b = Record::encode(&big_key, &big).to_vec();
    b[6] |= FLAG_LZ4 as u8;
    assert!(RecordHeader::parse(&b).is_err());
}

#[test]
fn a_compressed_value_that_does_not_decode_is_corrupt_even_unverified() {
    let (key, entry) = sample();
    let entry = Entry { value: compressible(4000).into(), ..entry };
    for compression in [Compression::Lz4, Compression::zstd()] {
        let bytes = Record::encode_with(&key, &entry, compression);
        let value_at = Record::encoded_len(&key, 0);
        let mut b = bytes.to_vec();
        for byte in &mut b[value_at..value_at + 8] {
            *byte ^= 0x5a;
        }
        let err = Record::decode_with(b.into(), Verify::StructureOnly);
        // Either the stream no longer decodes to the declared length, or it decodes to other
        // bytes that only the checksum would catch; never a panic.
        if let Ok(rec) = err {
            assert_ne!(rec.value(), entry.value);
        }
        // The declared length is the only bound on the output: one byte more is refused.
        let mut b = bytes.to_vec();
        let decoded = u32::from_le_bytes(b[20..24].try_into().unwrap());
        b[20..24].copy_from_slice(&(decoded + 1).to_le_bytes());
        assert_eq!(
            Record::decode_with(b.into(), Verify::StructureOnly).unwrap_err().kind(),
            ErrorKind::Corrupted,
            "{compression}"
        );
    }
}

#[test]
fn a_record_head_parses_from_a_prefix() {
    let (key, entry) = sample();
    for compression in [Compression::None, Compression::Lz4] {
        let entry = Entry { value: compressible(4000).into(), ..entry };
        let bytes = Record::encode_with(&key, &entry, compression);
        let head_len = Record::encoded_len(&key, 0);
        let head = RecordHead::parse(&bytes[..head_len]).unwrap();
        assert!(head.matches(&key));
        assert!(!head.matches(&Key::new("llm/responses", "prompt-43").unwrap()));
        assert_eq!(head.meta(), &entry.meta);
        assert_eq!(head.header().decoded_len, 4000);
        assert_eq!(
            RecordHead::parse(&bytes[..head_len - 1]).unwrap_err().kind(),
            ErrorKind::Corrupted
        );
    }
}

proptest! {
    #[test]
    fn any_entry_round_trips_under_any_compression(
        v in proptest::collection::vec(0u8..4, 0..3000),
        version in proptest::option::of(any::<u64>()),
        which in 0usize..3,
    ) {
        let key = Key::new("ns", "k").unwrap();
        let mut entry = Entry::new(v).with_created_at(Timestamp::from_millis(5));
        entry.meta.version = version;
        let bytes = Record::encode_with(&key, &entry, CODECS[which]);
        prop_assert!(bytes.len() <= Record::encoded_len(&key, entry.value.len()));
        let rec = Record::decode(bytes).unwrap();
        prop_assert_eq!(rec.to_entry(), entry);
    }
}

#[test]
fn a_piece_of_a_chunked_value_verifies_with_the_head_and_the_table_alone() {
    let (key, entry) = large(CHUNKED_MIN_VALUE + 3 * (1 << CHUNK_SHIFT) + 123);
    let bytes = Record::encode(&key, &entry);
    let at = Record::encoded_len(&key, 0);
    let len = entry.value.len();
    let table = at + len;
    let chunk = 1 << CHUNK_SHIFT;
    let check = |b: &[u8], first: u64, from: usize, to: usize| {
        RecordHead::parse(&b[..at]).and_then(|h| h.verify_piece(&b[table..], first, &b[from..to]))
    };
    let last = (len / chunk) as u64;
    for (first, from, to) in [
        (0, at, at + chunk),
        (2, at + 2 * chunk, at + 4 * chunk),
        (last, at + last as usize * chunk, table),
        (1, at + chunk, at + chunk),
    ] {
        check(&bytes, first, from, to).unwrap();
    }
    // The wrong place, a piece that stops inside a chunk, another record's table.
    assert!(check(&bytes, 1, at, at + chunk).is_err());
    assert!(check(&bytes, 0, at, at + chunk - 1).is_err());
    assert!(check(&bytes, last, at + last as usize * chunk, table - 1).is_err());
    let head = RecordHead::parse(&bytes[..at]).unwrap();
    assert!(head.verify_piece(&bytes[table + 8..], 0, &bytes[at..at + chunk]).is_err());
    // Every bit of the head, the table and the piece is covered.
    let (first, from, to) = (2u64, at + 2 * chunk, at + 3 * chunk);
    for i in (0..at).chain(table..bytes.len()).chain((from..to).step_by(997)) {
        let mut b = bytes.to_vec();
        b[i] ^= 0x10;
        assert!(check(&b, first, from, to).is_err(), "byte {i}");
    }
    // A version-1 record has no pieces.
    let small = Record::encode(&key, &Entry::new("v"));
    let head = RecordHead::parse(&small).unwrap();
    assert!(head.verify_piece(&[], 0, &[]).is_err());
}

#[test]
fn the_chunks_around_a_range_are_whole_and_clamped() {
    let (key, entry) = large(CHUNKED_MIN_VALUE + 3 * (1 << CHUNK_SHIFT) + 123);
    let header = RecordHeader::parse(&Record::encode(&key, &entry)).unwrap();
    let (chunk, len) = (1u64 << CHUNK_SHIFT, entry.value.len() as u64);
    let last = len / chunk;
    assert_eq!(header.chunks_around(&(0..1)), (0, 0..chunk));
    assert_eq!(header.chunks_around(&(chunk - 1..chunk + 1)), (0, 0..2 * chunk));
    assert_eq!(header.chunks_around(&(len - 1..len + 9)), (last, last * chunk..len));
    assert_eq!(header.chunks_around(&(5..5)), (0, 0..0), "an empty range spans nothing");
    assert_eq!(header.chunks_around(&(len + 5..len + 9)), (last, last * chunk..last * chunk));
}

// Sealed records (format version 4).

fn tenant_keys() -> Arc<NamespaceKeys> {
    let keys = NamespaceKeys::new()
        .with_key(
            &Namespace::new("llm/responses").unwrap(),
            KeyId(1),
            EncryptionKey::from_bytes([1; 32]),
        )
        .with_key(
            &Namespace::new("tenant-b").unwrap(),
            KeyId(1),
            EncryptionKey::from_bytes([2; 32]),
        );
    Arc::new(keys)
}

fn sealing(compression: Compression) -> RecordFormat {
    RecordFormat::new().with_compression(compression).with_keys(tenant_keys())
}

use std::sync::Arc;

use crate::{EncryptionKey, KeyId, NamespaceKeys};

/// Rewrites the checksum of a record after a deliberate change, as someone with write access
/// to the disk or the bucket could: what is left to catch the change is the cipher.
fn rechecksum(bytes: &mut [u8]) {
    let mut h = Xxh3::new();
    h.update(&bytes[..HEADER_LEN - 8]);
    h.update(&bytes[HEADER_LEN..]);
    bytes[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&h.digest().to_le_bytes());
}

#[test]
fn a_sealed_record_round_trips_holds_no_plaintext_and_names_its_key() {
    let (key, entry) = sample();
    let long = Entry { value: compressible(4096).into(), meta: entry.meta };
    for compression in [Compression::None, Compression::Lz4, Compression::zstd()] {
        let format = sealing(compression);
        for e in [&entry, &long] {
            let bytes = format.encode(&key, e).unwrap();
            let header = RecordHeader::parse(&bytes).unwrap();
            assert_eq!(header.version, RECORD_VERSION_SEALED);
            assert_eq!(header.decoded_len, e.value.len() as u64);
            let record = format.decode(bytes.clone()).unwrap();
            assert!(record.is_sealed());
            assert_eq!(record.to_entry(), *e, "{compression}");
            assert!(record.matches(&key));
            assert!(
                !bytes.windows(10).any(|w| e.value.windows(10).any(|v| v == w)),
                "{compression}"
            );
            // A fresh nonce per record: the same entry seals differently.
            assert_ne!(format.encode(&key, e).unwrap(), bytes);
            // Structure-only reads still authenticate what they open.
            assert_eq!(format.decode_with(bytes.clone(), Verify::StructureOnly).unwrap(), record);
            assert_eq!(format.decode_for_range(bytes, &(2..5)).unwrap(), record);
        }
        let packed = format.encode(&key, &long).unwrap();
        assert_eq!(RecordHeader::parse(&packed).unwrap().codec, compression.codec());
    }
}

#[test]
fn a_large_sealed_value_has_no_chunk_table_and_opens_whole() {
    let (_, e) = large(CHUNKED_MIN_VALUE * 2 + 5);
    let key = Key::new("tenant-b", "kv-chunk").unwrap();
    let format = sealing(Compression::Lz4);
    let bytes = format.encode(&key, &e).unwrap();
    let header = RecordHeader::parse(&bytes).unwrap();
    assert_eq!((header.version, header.chunks(), header.codec), (RECORD_VERSION_SEALED, 0, None));
    assert_eq!(bytes.len(), Record::encoded_len(&key, 0) + e.value.len() + SEAL_OVERHEAD);
    assert_eq!(format.decode(bytes).unwrap().value(), e.value);
}

#[test]
fn a_namespace_without_a_key_stays_plaintext_and_reads_everywhere() {
    let key = Key::new("public", "page").unwrap();
    let entry = Entry::new("hello");
    let bytes = sealing(Compression::None).encode(&key, &entry).unwrap();
    assert_eq!(bytes, Record::encode(&key, &entry));
    assert_eq!(Record::decode(bytes).unwrap().value(), "hello");
}

#[test]
fn a_sealed_record_without_its_key_is_corrupt_never_its_ciphertext() {
    let (key, entry) = sample();
    let bytes = sealing(Compression::None).encode(&key, &entry).unwrap();
    let wrong = NamespaceKeys::new().with_key(
        key.namespace(),
        KeyId(1),
        EncryptionKey::from_bytes([9; 32]),
    );
    let other_id = NamespaceKeys::new().with_key(
        key.namespace(),
        KeyId(2),
        EncryptionKey::from_bytes([1; 32]),
    );
    let readers = [
        RecordFormat::new(),
        RecordFormat::new().with_keys(Arc::new(NamespaceKeys::new())),
        RecordFormat::new().with_keys(Arc::new(wrong)),
        RecordFormat::new().with_keys(Arc::new(other_id)),
    ];
    for (i, reader) in readers.iter().enumerate() {
        let err = reader.decode(bytes.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "reader {i}: {err}");
    }
    assert_eq!(Record::decode(bytes).unwrap_err().kind(), ErrorKind::Corrupted);
}

#[test]
fn a_plaintext_record_in_a_sealed_namespace_is_corrupt() {
    let (key, entry) = sample();
    let planted = Record::encode(&key, &entry);
    let err = sealing(Compression::None).decode(planted).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.to_string().contains("plaintext"), "{err}");
}

#[test]
fn rotated_keys_open_the_records_sealed_before() {
    let (key, entry) = sample();
    let old = NamespaceKeys::new().with_key(
        key.namespace(),
        KeyId(1),
        EncryptionKey::from_bytes([1; 32]),
    );
    let bytes = RecordFormat::new().with_keys(Arc::new(old.clone())).encode(&key, &entry).unwrap();
    let rotated = old.with_key(key.namespace(), KeyId(2), EncryptionKey::from_bytes([5; 32]));
    let format = RecordFormat::new().with_keys(Arc::new(rotated));
    assert_eq!(format.decode(bytes).unwrap().to_entry(), entry);
    let fresh = format.encode(&key, &entry).unwrap();
    let at = Record::encoded_len(&key, 0);
    assert_eq!(fresh[at..at + 4], 2u32.to_le_bytes());
}

#[test]
fn every_single_bit_flip_of_a_sealed_record_is_detected() {
    let (key, entry) = sample();
    let format = sealing(Compression::Lz4);
    let bytes = format.encode(&key, &Entry { value: compressible(300).into(), ..entry }).unwrap();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.to_vec();
            b[i] ^= 1 << bit;
            let err = format.decode(b.clone().into()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupted, "byte {i} bit {bit}");
            if (HEADER_LEN - 8..HEADER_LEN).contains(&i) {
                continue; // the checksum itself: recomputing it undoes the flip
            }
            // With the checksum recomputed, the cipher still catches every change.
            rechecksum(&mut b);
            if let Ok(r) = format.decode(b.into()) {
                panic!("byte {i} bit {bit} opened as {:?}", r.namespace());
            }
        }
    }
}

#[test]
fn hostile_rows_moved_resealed_or_truncated_do_not_open() {
    let (key, entry) = sample();
    let format = sealing(Compression::None);
    let bytes = format.encode(&key, &entry).unwrap();
    let value_at = Record::encoded_len(&key, 0);

    // Copied to another namespace's key, with the namespace rewritten to match.
    let moved = Key::new("tenant-b", "prompt-42").unwrap();
    let head_b = {
        let mut h = Vec::new();
        let (len, sealed_len) = (entry.value.len(), entry.value.len() + SEAL_OVERHEAD);
        push_head(
            &moved,
            &entry.meta,
            RECORD_VERSION_SEALED,
            0,
            len as u32,
            sealed_len as u64,
            &mut h,
        );
        h
    };
    let mut forged = head_b.clone();
    forged.extend_from_slice(&bytes[value_at..]);
    rechecksum(&mut forged);
    let err = format.decode(forged.into()).unwrap_err();
    assert!(err.to_string().contains("does not open"), "{err}");

    // Re-sealed under another namespace's key, keeping this record's head and key id.
    let mut resealed = bytes[..value_at].to_vec();
    let b_key = tenant_keys().opening_key("tenant-b", KeyId(1)).unwrap();
    let aad = seal_aad(&bytes[..value_at]);
    encryption::seal(&b_key, KeyId(1), &aad, &entry.value, &mut resealed).unwrap();
    rechecksum(&mut resealed);
    assert!(format.decode(resealed.into()).unwrap_err().to_string().contains("does not open"));

    // Truncated: a byte short, with the lengths and the checksum made consistent again.
    let mut short = bytes[..bytes.len() - 1].to_vec();
    let len = (entry.value.len() - 1) as u32;
    short[20..24].copy_from_slice(&len.to_le_bytes());
    short[24..32].copy_from_slice(&(u64::from(len) + SEAL_OVERHEAD as u64).to_le_bytes());
    rechecksum(&mut short);
    assert!(format.decode(short.into()).unwrap_err().to_string().contains("does not open"));

    // Shorter than a key id, a nonce and a tag: refused by the header.
    let mut stub = bytes[..value_at].to_vec();
    stub[20..24].copy_from_slice(&0u32.to_le_bytes());
    stub[24..32].copy_from_slice(&10u64.to_le_bytes());
    stub.extend_from_slice(&[0; 10]);
    rechecksum(&mut stub);
    assert!(RecordHeader::parse(&stub).is_err());
}

#[test]
fn a_sealed_header_must_be_consistent() {
    let (key, entry) = sample();
    let bytes = sealing(Compression::None).encode(&key, &entry).unwrap();
    for (at, bytes4) in [(6, 1u32), (6, 0b110), (20, 3)] {
        let mut b = bytes.to_vec();
        if at == 6 {
            b[6..8].copy_from_slice(&(bytes4 as u16).to_le_bytes());
        } else {
            b[at..at + 4].copy_from_slice(&bytes4.to_le_bytes());
        }
        rechecksum(&mut b);
        assert!(RecordHeader::parse(&b).is_err(), "field {at} = {bytes4}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_entry_round_trips_sealed(
        value in proptest::collection::vec(any::<u8>(), 0..2048),
        repeat in 1usize..8,
        lz4 in any::<bool>(),
    ) {
        let key = Key::new("tenant-b", "k").unwrap();
        let value: Vec<u8> = value.iter().copied().cycle().take(value.len() * repeat).collect();
        let entry = Entry::new(value);
        let compression = if lz4 { Compression::Lz4 } else { Compression::zstd() };
        let format = sealing(compression);
        let bytes = format.encode(&key, &entry).unwrap();
        prop_assert_eq!(format.decode(bytes).unwrap().to_entry(), entry);
    }
}

#[test]
fn a_scan_validates_a_sealed_record_without_its_key() {
    let (key, entry) = sample();
    let bytes = sealing(Compression::None).encode(&key, &entry).unwrap();
    let scanned = Record::decode_unopened(bytes.clone(), Verify::Checksum).unwrap();
    assert!(scanned.is_sealed() && scanned.matches(&key) && scanned.value().is_empty());
    assert_eq!(scanned.meta(), &entry.meta);
    let mut flipped = bytes.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(Record::decode_unopened(flipped.into(), Verify::Checksum).is_err());
    // A plaintext record decodes in full.
    let plain = Record::decode_unopened(Record::encode(&key, &entry), Verify::Checksum).unwrap();
    assert_eq!(plain.to_entry(), entry);
}
