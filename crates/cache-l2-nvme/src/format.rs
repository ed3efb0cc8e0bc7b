//! On-disk layouts owned by this crate: the segment header, the index snapshot and the
//! namespace-clear log, with their version and checksums (described byte by byte in FORMAT.md).
//!
//! Every integer is little-endian. Every structure carries a magic, a version and an xxh3-64
//! checksum; a decoder returns `None` (or an error) for anything that does not validate, and
//! never panics or reads out of bounds, whatever the input.

use cache_core::{HEADER_LEN, NamespaceId, RECORD_MAGIC, Record, RecordHeader, Verify};
use xxhash_rust::xxh3::xxh3_64;

/// The on-disk format version of snapshots and the namespace log. A build reads only files of
/// its own version: a snapshot of another version is ignored (the segments are scanned), and a
/// namespace log of another version is refused at open with a clear error.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// The segment format version this build writes: version 2 adds sync points (see
/// [`SyncPoint`]). Segments of version 1 are still read (with version 1's recovery rules);
/// any other version is refused at open with a clear error.
pub(crate) const SEGMENT_VERSION: u16 = 2;
/// The first segment version, still read: no sync points.
pub(crate) const SEGMENT_VERSION_1: u16 = 1;

/// Magic of a segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"TCNVSEG\0";
/// Length of the segment header; records start at this offset.
pub(crate) const SEGMENT_HEADER_LEN: usize = 64;
/// Magic of the index snapshot.
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"TCNVSNAP";
/// Length of the snapshot header.
pub(crate) const SNAPSHOT_HEADER_LEN: usize = 64;
/// Length of one snapshot index entry: tag, segment, offset, length-and-hit-bit.
pub(crate) const SNAPSHOT_ENTRY_LEN: usize = 16;
/// Magic of the namespace-clear log.
pub(crate) const NSLOG_MAGIC: [u8; 8] = *b"TCNVNSLG";
/// Length of the namespace-clear log header.
pub(crate) const NSLOG_HEADER_LEN: usize = 16;
/// Length of one namespace-clear marker.
pub(crate) const NSLOG_ENTRY_LEN: usize = 40;

/// File name of the index snapshot.
pub(crate) const SNAPSHOT_FILE: &str = "index.snap";
/// File name of the namespace-clear log.
pub(crate) const NSLOG_FILE: &str = "namespaces.log";
/// File name of the directory lock.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Suffix of segment files (`<16 hex digits of the id>.seg`).
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";

/// A log position: `segment id << 32 | byte offset`. Later writes have larger positions.
pub(crate) fn lsn(segment: u32, offset: u32) -> u64 {
    (u64::from(segment) << 32) | u64::from(offset)
}

/// The file name of segment `id`.
pub(crate) fn segment_file_name(id: u32) -> String {
    format!("{:016x}{SEGMENT_SUFFIX}", u64::from(id))
}

/// Parses a segment file name back into its id.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::try_from(u64::from_str_radix(hex, 16).ok()?).ok()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The segment format version ([`SEGMENT_VERSION`] for segments this build creates).
    pub(crate) version: u16,
    /// The segment id (also its name and its place in the log order).
    pub(crate) id: u32,
    /// The size the file was created with, header included.
    pub(crate) size: u64,
    /// Creation time, milliseconds since the Unix epoch (informational).
    pub(crate) created_at_ms: u64,
}

impl SegmentHeader {
    /// Encodes the 64-byte header.
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        // 12..16: flags, zero.
        b[16..24].copy_from_slice(&u64::from(self.id).to_le_bytes());
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_at_ms.to_le_bytes());
        // 40..56: reserved, zero.
        let sum = xxh3_64(&b[..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and validates a header from the start of `b`.
    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err("file is shorter than a segment header");
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        if xxh3_64(&b[..56]) != u64_at(b, 56) {
            return Err("segment header checksum mismatch");
        }
        let version = u16_at(b, 8);
        if version != SEGMENT_VERSION && version != SEGMENT_VERSION_1 {
            return Err("unsupported segment format version");
        }
        if usize::from(u16_at(b, 10)) != SEGMENT_HEADER_LEN || u32_at(b, 12) != 0 {
            return Err("unknown segment header layout or flags");
        }
        let id = u32::try_from(u64_at(b, 16)).map_err(|_| "segment id out of range")?;
        let size = u64_at(b, 24);
        if size < SEGMENT_HEADER_LEN as u64 || size > u64::from(u32::MAX) {
            return Err("segment size out of range");
        }
        Ok(SegmentHeader { version, id, size, created_at_ms: u64_at(b, 32) })
    }
}

/// Magic of a sync point.
pub(crate) const SYNC_POINT_MAGIC: [u8; 4] = *b"TCSP";
/// Length of a sync point.
pub(crate) const SYNC_POINT_LEN: usize = 32;

/// A sync point (segment version 2): written by the writer after a completed `fdatasync` of
/// `segment`, it says that every byte of that segment below `end` was durable when it was
/// written. It is appended between records (in any segment, usually the active one) and is
/// itself durable only after the next sync; recovery takes, per segment, the largest `end`
/// any valid sync point names. A corrupt record below that end is damage of synced data (its
/// key is dropped); one above it may be a write a power cut interrupted (its key keeps the
/// older version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncPoint {
    /// The segment whose prefix was synced.
    pub(crate) segment: u32,
    /// The end of the synced prefix (a byte offset in that segment).
    pub(crate) end: u32,
}

impl SyncPoint {
    /// Encodes the 32-byte sync point.
    pub(crate) fn encode(&self) -> [u8; SYNC_POINT_LEN] {
        let mut b = [0u8; SYNC_POINT_LEN];
        b[0..4].copy_from_slice(&SYNC_POINT_MAGIC);
        // 4..8: reserved, zero.
        b[8..16].copy_from_slice(&u64::from(self.segment).to_le_bytes());
        b[16..24].copy_from_slice(&u64::from(self.end).to_le_bytes());
        let sum = xxh3_64(&b[..24]);
        b[24..32].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and validates a sync point at the start of `b`.
    pub(crate) fn decode(b: &[u8]) -> Option<SyncPoint> {
        if b.len() < SYNC_POINT_LEN
            || b[0..4] != SYNC_POINT_MAGIC
            || u32_at(b, 4) != 0
            || xxh3_64(&b[..24]) != u64_at(b, 24)
        {
            return None;
        }
        let segment = u32::try_from(u64_at(b, 8)).ok()?;
        let end = u32::try_from(u64_at(b, 16)).ok()?;
        (end as usize >= SEGMENT_HEADER_LEN).then_some(SyncPoint { segment, end })
    }
}

/// What a scan found at one position of a segment.
#[derive(Debug)]
pub(crate) enum ScanItem {
    /// A valid record of `len` bytes.
    Record {
        /// The decoded record (a zero-copy slice of the segment).
        record: Record,
    },
    /// The header parses and fits but the record does not validate (payload corruption):
    /// the scan may continue after `len` bytes.
    Corrupt {
        /// The record length the header claims.
        len: u64,
    },
    /// A valid sync point (segment version 2 only; [`scan_item`] returns it).
    SyncPoint(SyncPoint),
    /// No record header here: zeros (the end of the written part), a torn tail or a garbled
    /// header; [`resync`] tells which and where the scan may go on.
    End,
}

/// Reads the item at `offset` of a segment of format `version`: a sync point (version 2), or
/// what [`scan_at`] finds.
pub(crate) fn scan_item(
    data: &bytes::Bytes,
    offset: usize,
    verify: Verify,
    version: u16,
) -> ScanItem {
    if version >= SEGMENT_VERSION
        && let Some(sp) = data.get(offset..).and_then(SyncPoint::decode)
    {
        return ScanItem::SyncPoint(sp);
    }
    scan_at(data, offset, verify)
}

/// Reads the item at `offset` of `data` (the segment's bytes, header included).
pub(crate) fn scan_at(data: &bytes::Bytes, offset: usize, verify: Verify) -> ScanItem {
    let Some(rest) = data.get(offset..) else { return ScanItem::End };
    if rest.len() < HEADER_LEN {
        return ScanItem::End;
    }
    let Ok(header) = RecordHeader::parse(rest) else { return ScanItem::End };
    let Some(total) = header.total_len() else { return ScanItem::End };
    if total > rest.len() as u64 {
        return ScanItem::End;
    }
    let total_usize = total as usize;
    // Sealed records are validated without their keys: the log's structure does not need them.
    match Record::decode_unopened(data.slice(offset..offset + total_usize), verify) {
        Ok(record) => ScanItem::Record { record },
        Err(_) => ScanItem::Corrupt { len: total },
    }
}

/// What follows a position where [`scan_at`] found no record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resync {
    /// Zeros (never written) or too few bytes for a header: the log of this segment ends.
    End,
    /// Garbled bytes, then a valid record at this offset: only the damaged record is lost.
    Skip(usize),
    /// Garbled bytes and no valid record after them.
    GarbageToEnd,
}

/// Decides how a scan goes on at `offset` of a segment of format `version`, where
/// [`scan_item`] returned [`ScanItem::End`]: the end of the written part if the bytes there are
/// zeros, otherwise the next offset where a whole record validates (magic, header, bounds and
/// checksum) or, in version 2, a sync point validates. Items are packed back to back, so every
/// byte offset is a candidate.
pub(crate) fn resync(data: &bytes::Bytes, offset: usize, version: u16) -> Resync {
    let Some(window) = data.get(offset..offset + HEADER_LEN) else { return Resync::End };
    if window.iter().all(|b| *b == 0) {
        return Resync::End;
    }
    let sync_points = version >= SEGMENT_VERSION;
    let candidate = |w: &[u8]| w == RECORD_MAGIC || (sync_points && w == SYNC_POINT_MAGIC);
    let mut from = offset + 1;
    while let Some(found) =
        data.get(from..).and_then(|rest| rest.windows(RECORD_MAGIC.len()).position(candidate))
    {
        let at = from + found;
        if let ScanItem::Record { .. } | ScanItem::SyncPoint(_) =
            scan_item(data, at, Verify::Checksum, version)
        {
            return Resync::Skip(at);
        }
        from = at + 1;
    }
    Resync::GarbageToEnd
}

/// Decodes every record of a segment image, stopping where [`scan_item`] says the log ends.
/// Used by tests and the fuzz target; recovery uses [`scan_item`] directly.
pub(crate) fn scan_segment(data: &bytes::Bytes) -> Result<(SegmentHeader, Vec<Record>), String> {
    scan_segment_items(data).map(|(h, records, _)| (h, records))
}

/// [`scan_segment`], also returning the sync points found.
pub(crate) fn scan_segment_items(
    data: &bytes::Bytes,
) -> Result<(SegmentHeader, Vec<Record>, Vec<SyncPoint>), String> {
    let header = SegmentHeader::decode(data).map_err(str::to_owned)?;
    let end = usize::try_from(header.size).unwrap_or(usize::MAX).min(data.len());
    let data = data.slice(..end);
    let mut out = Vec::new();
    let mut points = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    loop {
        match scan_item(&data, at, Verify::Checksum, header.version) {
            ScanItem::Record { record } => {
                at += record.as_bytes().len();
                out.push(record);
            }
            ScanItem::SyncPoint(sp) => {
                at += SYNC_POINT_LEN;
                points.push(sp);
            }
            ScanItem::Corrupt { len } => at += len as usize,
            ScanItem::End => match resync(&data, at, header.version) {
                Resync::Skip(next) => at = next,
                Resync::End | Resync::GarbageToEnd => break,
            },
        }
    }
    Ok((header, out, points))
}

/// One namespace-clear marker: records of `namespace` at positions below `lsn` are absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NsMarker {
    /// The cleared namespace.
    pub(crate) namespace: NamespaceId,
    /// The log position of the clear.
    pub(crate) lsn: u64,
    /// When it was cleared (informational).
    pub(crate) cleared_at_ms: u64,
}

/// The namespace log header.
pub(crate) fn nslog_header() -> [u8; NSLOG_HEADER_LEN] {
    let mut b = [0u8; NSLOG_HEADER_LEN];
    b[0..8].copy_from_slice(&NSLOG_MAGIC);
    b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[10..12].copy_from_slice(&(NSLOG_HEADER_LEN as u16).to_le_bytes());
    b
}

impl NsMarker {
    /// Encodes one 40-byte marker.
    pub(crate) fn encode(&self) -> [u8; NSLOG_ENTRY_LEN] {
        let mut b = [0u8; NSLOG_ENTRY_LEN];
        b[0..16].copy_from_slice(&self.namespace.0);
        b[16..24].copy_from_slice(&self.lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.cleared_at_ms.to_le_bytes());
        let sum = xxh3_64(&b[..32]);
        b[32..40].copy_from_slice(&sum.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<NsMarker> {
        if b.len() < NSLOG_ENTRY_LEN || xxh3_64(&b[..32]) != u64_at(b, 32) {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[..16]);
        Some(NsMarker {
            namespace: NamespaceId(id),
            lsn: u64_at(b, 16),
            cleared_at_ms: u64_at(b, 24),
        })
    }
}

/// Decodes a namespace log: the markers up to the first torn or corrupt one.
pub(crate) fn decode_nslog(b: &[u8]) -> Result<Vec<NsMarker>, &'static str> {
    if b.len() < NSLOG_HEADER_LEN {
        return Err("namespace log is shorter than its header");
    }
    if b[0..8] != NSLOG_MAGIC {
        return Err("bad namespace log magic");
    }
    if u16_at(b, 8) != FORMAT_VERSION || usize::from(u16_at(b, 10)) != NSLOG_HEADER_LEN {
        return Err("unsupported namespace log version");
    }
    Ok(b[NSLOG_HEADER_LEN..].chunks_exact(NSLOG_ENTRY_LEN).map_while(NsMarker::decode).collect())
}

/// One index entry as stored in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapEntry {
    /// Index shard (first byte of the key hash).
    pub(crate) shard: u8,
    /// Tag (bytes 1..5 of the key hash).
    pub(crate) tag: u32,
    /// Segment id.
    pub(crate) segment: u32,
    /// Offset of the record in the segment.
    pub(crate) offset: u32,
    /// Record length with the hit bit in bit 31.
    pub(crate) len_hit: u32,
}

/// The contents of an index snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Snapshot {
    /// The next segment id to create.
    pub(crate) next_segment: u64,
    /// Creation time (informational).
    pub(crate) created_at_ms: u64,
    /// Every live segment at the time of the snapshot: (id, size).
    pub(crate) segments: Vec<(u32, u64)>,
    /// Entry count of each of the 256 shards, then the entries in shard order.
    pub(crate) shard_counts: Vec<u32>,
    /// The entries, grouped by shard in shard order.
    pub(crate) entries: Vec<SnapEntry>,
}

/// Number of index shards (the first byte of the key hash picks one).
pub(crate) const SHARDS: usize = 256;

impl Snapshot {
    /// Encodes the snapshot. `entries` must be grouped by shard as `shard_counts` says.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            SNAPSHOT_HEADER_LEN
                + self.segments.len() * 16
                + SHARDS * 4
                + self.entries.len() * SNAPSHOT_ENTRY_LEN
                + 8,
        );
        b.extend_from_slice(&SNAPSHOT_MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(SNAPSHOT_HEADER_LEN as u16).to_le_bytes());
        b.extend_from_slice(&(SHARDS as u32).to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.segments.len() as u64).to_le_bytes());
        b.extend_from_slice(&self.next_segment.to_le_bytes());
        b.extend_from_slice(&self.created_at_ms.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let sum = xxh3_64(&b[..56]);
        b.extend_from_slice(&sum.to_le_bytes());
        for (id, size) in &self.segments {
            b.extend_from_slice(&u64::from(*id).to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
        }
        for c in &self.shard_counts {
            b.extend_from_slice(&c.to_le_bytes());
        }
        for e in &self.entries {
            b.extend_from_slice(&e.tag.to_le_bytes());
            b.extend_from_slice(&e.segment.to_le_bytes());
            b.extend_from_slice(&e.offset.to_le_bytes());
            b.extend_from_slice(&e.len_hit.to_le_bytes());
        }
        let sum = xxh3_64(&b[SNAPSHOT_HEADER_LEN..]);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and validates a snapshot.
    pub(crate) fn decode(b: &[u8]) -> Result<Snapshot, &'static str> {
        let view = SnapshotView::decode(b)?;
        let mut entries = Vec::with_capacity(view.entry_count());
        let mut at = 0usize;
        for (shard, c) in view.shard_counts.iter().enumerate() {
            for _ in 0..*c {
                let mut e = SnapEntry::parse(&view.entries[at..at + SNAPSHOT_ENTRY_LEN]);
                e.shard = shard as u8;
                entries.push(e);
                at += SNAPSHOT_ENTRY_LEN;
            }
        }
        Ok(Snapshot {
            next_segment: view.next_segment,
            created_at_ms: view.created_at_ms,
            segments: view.segments,
            shard_counts: view.shard_counts,
            entries,
        })
    }
}

impl SnapEntry {
    /// Parses one 16-byte entry (its shard is known from its position).
    pub(crate) fn parse(b: &[u8]) -> SnapEntry {
        SnapEntry {
            shard: 0,
            tag: u32_at(b, 0),
            segment: u32_at(b, 4),
            offset: u32_at(b, 8),
            len_hit: u32_at(b, 12),
        }
    }
}

/// A validated snapshot whose entries are left in place (16 bytes each, grouped by shard), so
/// opening parses them straight into the index, on several threads, with no copy.
#[derive(Debug)]
pub(crate) struct SnapshotView<'a> {
    /// The next segment id to create.
    pub(crate) next_segment: u64,
    /// Creation time (informational).
    pub(crate) created_at_ms: u64,
    /// Every live segment at the time of the snapshot: (id, size).
    pub(crate) segments: Vec<(u32, u64)>,
    /// Entry count of each of the 256 shards.
    pub(crate) shard_counts: Vec<u32>,
    /// The entries, [`SNAPSHOT_ENTRY_LEN`] bytes each, grouped by shard in shard order.
    pub(crate) entries: &'a [u8],
}

impl<'a> SnapshotView<'a> {
    /// Validates a snapshot (magic, version, lengths, both checksums, shard counts).
    pub(crate) fn decode(b: &'a [u8]) -> Result<SnapshotView<'a>, &'static str> {
        if b.len() < SNAPSHOT_HEADER_LEN + 8 {
            return Err("snapshot is shorter than its header");
        }
        if b[0..8] != SNAPSHOT_MAGIC {
            return Err("bad snapshot magic");
        }
        if xxh3_64(&b[..56]) != u64_at(b, 56) {
            return Err("snapshot header checksum mismatch");
        }
        if u16_at(b, 8) != FORMAT_VERSION || usize::from(u16_at(b, 10)) != SNAPSHOT_HEADER_LEN {
            return Err("unsupported snapshot version");
        }
        if u32_at(b, 12) as usize != SHARDS {
            return Err("snapshot has an unexpected shard count");
        }
        let count = u64_at(b, 16);
        let seg_count = u64_at(b, 24);
        let body_len = (seg_count.checked_mul(16))
            .and_then(|s| s.checked_add(SHARDS as u64 * 4))
            .and_then(|s| s.checked_add(count.checked_mul(SNAPSHOT_ENTRY_LEN as u64)?))
            .and_then(|s| s.checked_add(SNAPSHOT_HEADER_LEN as u64 + 8))
            .ok_or("snapshot lengths overflow")?;
        if body_len != b.len() as u64 {
            return Err("snapshot length does not match its header");
        }
        let trailer = b.len() - 8;
        if xxh3_64(&b[SNAPSHOT_HEADER_LEN..trailer]) != u64_at(b, trailer) {
            return Err("snapshot checksum mismatch");
        }
        let mut at = SNAPSHOT_HEADER_LEN;
        let mut segments = Vec::with_capacity(seg_count as usize);
        for _ in 0..seg_count {
            let id =
                u32::try_from(u64_at(b, at)).map_err(|_| "snapshot segment id out of range")?;
            segments.push((id, u64_at(b, at + 8)));
            at += 16;
        }
        let mut shard_counts = Vec::with_capacity(SHARDS);
        let mut sum = 0u64;
        for _ in 0..SHARDS {
            let c = u32_at(b, at);
            sum += u64::from(c);
            shard_counts.push(c);
            at += 4;
        }
        if sum != count {
            return Err("snapshot shard counts do not add up");
        }
        Ok(SnapshotView {
            next_segment: u64_at(b, 32),
            created_at_ms: u64_at(b, 40),
            segments,
            shard_counts,
            entries: &b[at..trailer],
        })
    }

    /// Number of entries.
    pub(crate) fn entry_count(&self) -> usize {
        self.entries.len() / SNAPSHOT_ENTRY_LEN
    }
}

#[cfg(test)]
mod tests;
