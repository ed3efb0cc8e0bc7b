//! Entry points for fuzzing and property tests of the on-disk decoders (not a stable API).
//!
//! Each function feeds arbitrary bytes to one decoder and returns what it accepted; none may
//! panic or read out of bounds, whatever the input.

use bytes::Bytes;

use crate::format::{SEGMENT_VERSION, SegmentHeader, Snapshot, decode_nslog, scan_segment};

/// Decodes `data` as a whole segment image; returns the number of valid records found.
pub fn decode_segment(data: &[u8]) -> Option<usize> {
    let bytes = Bytes::copy_from_slice(data);
    let (_, records) = scan_segment(&bytes).ok()?;
    for r in &records {
        // Touch every accessor a hit uses.
        let _ = (r.value().len(), r.meta(), r.key_bytes().len(), r.namespace().len());
    }
    Some(records.len())
}

/// Decodes `data` as a segment header; returns the segment id.
pub fn decode_segment_header(data: &[u8]) -> Option<u32> {
    SegmentHeader::decode(data).ok().map(|h| h.id)
}

/// Decodes `data` as an index snapshot; returns the entry count.
pub fn decode_snapshot(data: &[u8]) -> Option<usize> {
    Snapshot::decode(data).ok().map(|s| s.entries.len())
}

/// Decodes `data` as a namespace-clear log; returns the marker count.
pub fn decode_namespace_log(data: &[u8]) -> Option<usize> {
    decode_nslog(data).ok().map(|m| m.len())
}

/// A valid segment image holding `records` (encoded records), for seeding fuzzers.
pub fn segment_image(id: u32, size: u64, records: &[Bytes]) -> Vec<u8> {
    let mut out =
        SegmentHeader { version: SEGMENT_VERSION, id, size, created_at_ms: 0 }.encode().to_vec();
    for r in records {
        out.extend_from_slice(r);
    }
    out.resize(usize::try_from(size).unwrap_or(usize::MAX).max(out.len()), 0);
    out
}
