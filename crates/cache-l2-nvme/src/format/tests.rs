//! Unit tests of the on-disk layouts.

use cache_core::{Entry, Key, NamespaceId, Record};

use crate::format::*;

#[test]
fn segment_header_round_trips_and_rejects_damage() {
    let h = SegmentHeader { version: SEGMENT_VERSION, id: 7, size: 1 << 20, created_at_ms: 42 };
    let b = h.encode();
    assert_eq!(SegmentHeader::decode(&b), Ok(h));
    for i in 0..b.len() {
        let mut d = b;
        d[i] ^= 0x40;
        assert!(SegmentHeader::decode(&d).is_err(), "flip at {i} accepted");
    }
    assert!(SegmentHeader::decode(&b[..63]).is_err());
}

#[test]
fn segment_names_round_trip() {
    assert_eq!(segment_file_name(0x2a), "000000000000002a.seg");
    assert_eq!(parse_segment_file_name("000000000000002a.seg"), Some(0x2a));
    assert_eq!(parse_segment_file_name("2a.seg"), None);
    assert_eq!(parse_segment_file_name("000000010000002a.seg"), None);
    assert_eq!(parse_segment_file_name("index.snap"), None);
}

#[test]
fn scan_stops_at_zeros_and_skips_corrupt_payloads() {
    let k = Key::new("ns", "k").unwrap();
    let r1 = Record::encode(&k, &Entry::new("one"));
    let r2 = Record::encode(&k, &Entry::new("two"));
    let mut img = SegmentHeader { version: SEGMENT_VERSION, id: 1, size: 4096, created_at_ms: 0 }
        .encode()
        .to_vec();
    img.extend_from_slice(&r1);
    let at2 = img.len();
    img.extend_from_slice(&r2);
    img.resize(4096, 0);
    let (_, recs) = scan_segment(&bytes::Bytes::from(img.clone())).unwrap();
    assert_eq!(recs.len(), 2);
    // Damage the last value byte of r1: skipped, r2 still found.
    img[at2 - 1] ^= 1;
    let (_, recs) = scan_segment(&bytes::Bytes::from(img)).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].value(), "two");
}

#[test]
fn snapshot_round_trips_and_rejects_damage() {
    let mut counts = vec![0u32; SHARDS];
    counts[3] = 2;
    let entries = vec![
        SnapEntry { shard: 3, tag: 1, segment: 2, offset: 64, len_hit: 100 },
        SnapEntry { shard: 3, tag: 9, segment: 2, offset: 164, len_hit: 100 | (1 << 31) },
    ];
    let s = Snapshot {
        next_segment: 3,
        created_at_ms: 5,
        segments: vec![(2, 1 << 20)],
        shard_counts: counts,
        entries,
    };
    let b = s.encode();
    assert_eq!(Snapshot::decode(&b), Ok(s));
    for i in (0..b.len()).step_by(7) {
        let mut d = b.clone();
        d[i] ^= 0x10;
        assert!(Snapshot::decode(&d).is_err(), "flip at {i} accepted");
    }
    assert!(Snapshot::decode(&b[..b.len() - 1]).is_err());
}

#[test]
fn namespace_log_stops_at_a_torn_marker() {
    let m = NsMarker { namespace: NamespaceId([5; 16]), lsn: 77, cleared_at_ms: 1 };
    let mut b = nslog_header().to_vec();
    b.extend_from_slice(&m.encode());
    b.extend_from_slice(&m.encode()[..20]);
    assert_eq!(decode_nslog(&b).unwrap(), vec![m]);
    let mut bad = b.clone();
    bad[NSLOG_HEADER_LEN + 3] ^= 1;
    assert!(decode_nslog(&bad).unwrap().is_empty());
    assert!(decode_nslog(&b[..8]).is_err());
}
