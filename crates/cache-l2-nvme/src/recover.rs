//! Opening a directory: lock, find segments, load the namespace log, then either load the
//! snapshot of a clean close or rebuild the index by scanning every segment.
//!
//! The scan visits segments oldest first and records in log order; each record is validated
//! (header, bounds, checksum, metadata archive). A put inserts, a tombstone or an expired record
//! removes, a record older than its namespace's clear marker is ignored. A segment's scan stops
//! at the first position that holds zeros instead of a record header (the end of what was
//! written). A record whose header is sound but whose checksum fails is skipped by its length,
//! and the key it names is dropped from the index, so an older version cannot come back in its
//! place — unless no valid record follows it in its segment: then it is the torn tail of a
//! write a crash interrupted (never acknowledged by a barrier), and the key keeps its older,
//! acknowledged version. The writer never appends to a recovered segment, so the torn record
//! stays the tail of its segment on every later scan. A garbled header (non-zero bytes that are not a valid header) is resynchronised: the
//! scan searches forward for the next offset where a whole record validates (magic, header and
//! checksum) and goes on from there, so only the damaged record is lost; its key is unknown, so
//! if it held the newest version of a key, an older version of that key can come back.

use std::{
    collections::{BTreeMap, HashMap},
    fs::OpenOptions,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    time::Instant,
};

use bytes::Bytes;
use cache_core::{HEADER_LEN, Namespace, RecordFormat, RecordHeader, TierStats, Verify};
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::Semaphore;

use crate::{
    builder::NvmeTierBuilder,
    error::{NvmeError, io_err},
    format::{
        LOCK_FILE, Resync, SEGMENT_HEADER_LEN, SEGMENT_VERSION, SYNC_POINT_LEN, ScanItem, lsn,
        parse_segment_file_name, resync, scan_item,
    },
    idle::IdleTimes,
    index::{Index, MAX_RECORD_LEN, OFFSET_LIMIT, Slot, locate},
    namespace::NsLog,
    pending::Pending,
    segment::Segment,
    snapshot,
    tier::{NvmeTier, RecoveryReport, Shared},
    writer::{Queue, Writer},
};

/// Opens the tier described by `b`.
pub(crate) fn open(b: NvmeTierBuilder) -> Result<NvmeTier, NvmeError> {
    let started = Instant::now();
    let segment_size = b.effective_segment_size()?;
    let dir = b.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| io_err("create the cache directory", &dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io_err("create the lock file", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(NvmeError::Locked { path: dir.clone() });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path, e)),
    }

    if b.direct_reads {
        // Refuse a filesystem without O_DIRECT now, not at the first segment.
        crate::segment::open_direct(&lock_path)?;
    }

    // Find segments; clear leftovers of interrupted temporary writes.
    let mut report = RecoveryReport::default();
    let mut segments = BTreeMap::new();
    let listing = std::fs::read_dir(&dir).map_err(|e| io_err("list", &dir, e))?;
    for item in listing {
        let item = item.map_err(|e| io_err("list", &dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = item.path();
        if name.ends_with(".tmp") {
            let _ = crate::io::unlink(&path);
            continue;
        }
        let Some(id) = parse_segment_file_name(name) else { continue };
        let opened = Segment::open_existing(&path, id);
        let opened =
            if b.direct_reads { opened.and_then(Segment::with_direct_reads) } else { opened };
        match opened {
            Ok(seg) => {
                segments.insert(id, Arc::new(seg));
            }
            Err(NvmeError::BadFile { reason, .. }) if reason.contains("version") => {
                return Err(NvmeError::BadFile { path, reason });
            }
            Err(NvmeError::BadFile { reason, .. }) => {
                // A segment whose header never made it to disk holds nothing acknowledged by
                // a barrier (the header is written and synced before any record); a garbled
                // one cannot be read. Either way its entries are misses.
                tracing::warn!(path = %path.display(), %reason, "removing an unreadable segment");
                report.bad_segments += 1;
                crate::io::unlink(&path).map_err(|e| io_err("remove", &path, e))?;
            }
            Err(e) => return Err(e),
        }
    }
    report.segments = segments.len() as u64;

    let (nslog, markers) = NsLog::open(&dir)?;
    let stats = TierStats::named(crate::error::TIER, b.name);
    let index = Index::new();
    let mut next_segment: u64 = segments.keys().next_back().map_or(0, |id| u64::from(*id) + 1);
    for m in markers.values() {
        next_segment = next_segment.max((m >> 32) + 1);
    }

    // From here on the tier may write: the snapshot must not outlive this run. It is mapped,
    // then unlinked (the mapping stays valid); the writer syncs the directory before its first
    // write, so open does not wait for that sync.
    let mapped = snapshot::map(&dir);
    let removed = snapshot::remove(&dir)?;
    let loaded = match &mapped {
        Ok(Some(bytes)) => snapshot::load(bytes, &segments, &index).map(Some),
        Ok(None) => Ok(None),
        Err(reason) => Err(reason.clone()),
    };
    drop(mapped);
    match loaded {
        Ok(Some(next)) => {
            next_segment = next_segment.max(next);
            report.from_snapshot = true;
        }
        Ok(None) => scan(&segments, &markers, &index, &b, &mut report),
        Err(reason) => {
            tracing::warn!(%reason, "ignoring the index snapshot; scanning segments");
            scan(&segments, &markers, &index, &b, &mut report);
        }
    }
    let next_segment = u32::try_from(next_segment)
        .map_err(|_| NvmeError::Config("segment ids are exhausted".into()))?;
    index.set_oldest(segments.keys().next().copied().unwrap_or(next_segment));

    report.entries = index.len();
    report.micros = started.elapsed().as_micros() as u64;
    let bytes_used = segments.values().map(|s| s.size).sum();
    let any_markers = !markers.is_empty();
    // What was recovered starts its idle time now.
    let idle = b.idle.map(|idle| {
        let times = IdleTimes::new(idle);
        let opened = b.clock.now();
        for shard in 0..crate::format::SHARDS {
            times.start_all(shard, index.tags(shard), opened);
        }
        times
    });
    let shared = Arc::new(Shared {
        dir,
        capacity: b.capacity,
        segment_size,
        durability: b.durability,
        verify: if b.verify_on_read { Verify::Checksum } else { Verify::StructureOnly },
        format: {
            let format = RecordFormat::new().with_compression(b.compression);
            match &b.encryption {
                Some(keys) => format.with_keys(keys.clone()),
                None => format,
            }
        },
        reinsert_hits: b.reinsert_hits,
        direct_reads: b.direct_reads,
        clock: b.clock.clone(),
        index,
        segments: RwLock::new(segments),
        markers: RwLock::new(markers),
        any_markers: AtomicBool::new(any_markers),
        bytes_used: AtomicU64::new(bytes_used),
        stats,
        closed: AtomicBool::new(false),
        queue: Mutex::new(Queue::default()),
        queue_cv: Condvar::new(),
        queued: AtomicBool::new(false),
        sync_lock: Mutex::new(()),
        unsynced: Mutex::new(Vec::new()),
        active: Mutex::new(None),
        dir_dirty: AtomicBool::new(false),
        reinserted: AtomicU64::new(0),
        recovery: Mutex::new(report),
        pending: Pending::new(),
        room: Semaphore::new(b.effective_max_pending() as usize),
        max_pending: b.effective_max_pending(),
        write_errors: AtomicU64::new(0),
        deferred_error: Mutex::new(None),
        sink: RwLock::new(None),
        idle,
    });
    for _ in 0..report.corrupt_records {
        shared.stats.corrupt();
    }
    let writer = Writer::new(shared.clone(), next_segment, nslog, lock, removed)
        .spawn()
        .map_err(|e| io_err("start the writer thread for", &shared.dir, e))?;
    tracing::info!(
        dir = %shared.dir.display(),
        snapshot = report.from_snapshot,
        entries = report.entries,
        micros = report.micros,
        "nvme tier opened"
    );
    Ok(NvmeTier { shared, writer: Mutex::new(Some(writer)) })
}

/// A corrupt record or garbled header met in a segment of version 2, judged once every sync
/// point is known.
struct Suspect {
    segment: u32,
    offset: usize,
    /// The key the record names (shard, tag), if its header, namespace and key parse.
    key: Option<(usize, u32)>,
}

/// Rebuilds the index from the segments.
///
/// Segments of version 1 follow version 1's rule: a corrupt record drops its key unless no
/// valid record follows it in its segment (a torn tail). Segments of version 2 carry sync
/// points, so damage is judged by where it is: below the synced end of its segment (the
/// largest end any sync point names) it is damage of synced data, counted, and the key is
/// dropped unless a later record of it was found; above it, it is a write a power cut or a
/// crash interrupted, which no barrier acknowledged, so the key keeps its older version and
/// the scan goes on (a disk may have written back later sectors of the same unsynced batch).
fn scan(
    segments: &BTreeMap<u32, Arc<Segment>>,
    markers: &HashMap<cache_core::NamespaceId, u64>,
    index: &Index,
    b: &NvmeTierBuilder,
    report: &mut RecoveryReport,
) {
    let now = b.clock.now();
    let mut namespaces: HashMap<Box<str>, Namespace> = HashMap::new();
    let mut ns_of = |name: &str| -> Option<Namespace> {
        if let Some(ns) = namespaces.get(name) {
            return Some(ns.clone());
        }
        let ns = Namespace::new(name).ok()?;
        namespaces.insert(name.into(), ns.clone());
        Some(ns)
    };
    let mut synced: HashMap<u32, u32> = HashMap::new();
    let mut suspects: Vec<Suspect> = Vec::new();
    for seg in segments.values() {
        let data = &seg.data;
        let v2 = seg.version >= SEGMENT_VERSION;
        let mut at = SEGMENT_HEADER_LEN;
        loop {
            match scan_item(data, at, Verify::Checksum, seg.version) {
                ScanItem::Record { record } => {
                    let len = record.as_bytes().len();
                    if len as u64 > u64::from(MAX_RECORD_LEN)
                        || at as u64 >= u64::from(OFFSET_LIMIT)
                    {
                        break;
                    }
                    let Some(ns) = ns_of(record.namespace()) else { break };
                    let Ok(key) = ns.key(Bytes::copy_from_slice(record.key_bytes())) else {
                        break;
                    };
                    let (shard, tag) = locate(key.hash());
                    let pos = lsn(seg.id, at as u32);
                    let cleared = markers.get(&ns.id()).is_some_and(|m| pos < *m);
                    if cleared || record.is_tombstone() || record.meta().is_expired(now) {
                        index.remove(shard, tag);
                    } else {
                        index.insert(shard, tag, Slot::new(seg.id, at as u32, len as u32));
                    }
                    at += len;
                }
                ScanItem::SyncPoint(sp) => {
                    let end = synced.entry(sp.segment).or_insert(0);
                    *end = (*end).max(sp.end);
                    at += SYNC_POINT_LEN;
                }
                ScanItem::Corrupt { len } => {
                    let next = at.saturating_add(len as usize);
                    if v2 {
                        let key = named_key(data, at, &mut ns_of);
                        suspects.push(Suspect { segment: seg.id, offset: at, key });
                        at = next;
                        continue;
                    }
                    if nothing_valid_after(data, next, seg.version) {
                        // A torn tail: the write a crash interrupted, never acknowledged by a
                        // barrier. The key keeps the version it had before (a later scan sees
                        // the same tail: the writer never appends to a recovered segment).
                        tracing::debug!(segment = seg.id, offset = at, "torn record at the tail");
                        break;
                    }
                    report.corrupt_records += 1;
                    if let Some((shard, tag)) = named_key(data, at, &mut ns_of) {
                        index.remove(shard, tag);
                    }
                    at = next;
                }
                ScanItem::End => match resync(data, at, seg.version) {
                    Resync::End => break,
                    Resync::Skip(next) => {
                        // A garbled header: only this record is lost (its key is unknown, so
                        // an older version of it may come back; see FORMAT.md).
                        if v2 {
                            suspects.push(Suspect { segment: seg.id, offset: at, key: None });
                        } else {
                            report.corrupt_records += 1;
                            tracing::warn!(
                                segment = seg.id,
                                offset = at,
                                resumed_at = next,
                                "skipped a garbled record"
                            );
                        }
                        at = next;
                    }
                    Resync::GarbageToEnd => {
                        if v2 {
                            suspects.push(Suspect { segment: seg.id, offset: at, key: None });
                        } else {
                            report.corrupt_records += 1;
                        }
                        break;
                    }
                },
            }
        }
    }
    for s in suspects {
        let synced_end = synced.get(&s.segment).copied().unwrap_or(0) as usize;
        if s.offset >= synced_end {
            // Above every sync point of its segment: an interrupted, unacknowledged write.
            report.torn_records += 1;
            tracing::debug!(segment = s.segment, offset = s.offset, "torn unsynced record");
            continue;
        }
        report.corrupt_records += 1;
        tracing::warn!(segment = s.segment, offset = s.offset, "skipped a corrupt synced record");
        if let Some((shard, tag)) = s.key {
            // The damaged record may have been the key's newest version: drop what an earlier
            // record established, keep what a later one did.
            let pos = lsn(s.segment, s.offset as u32);
            if let Some(slot) = index.get(shard, tag)
                && slot.lsn() < pos
            {
                index.remove(shard, tag);
            }
        }
    }
}

/// Whether no valid record follows `from` in a segment's `data`: a corrupt record before such a
/// position is the torn end of what was written, not damage in the middle of the log.
fn nothing_valid_after(data: &Bytes, mut from: usize, version: u16) -> bool {
    loop {
        if from >= data.len() {
            return true;
        }
        match scan_item(data, from, Verify::Checksum, version) {
            ScanItem::Record { .. } | ScanItem::SyncPoint(_) => return false,
            ScanItem::Corrupt { len } => from = from.saturating_add((len as usize).max(1)),
            ScanItem::End => return !matches!(resync(data, from, version), Resync::Skip(_)),
        }
    }
}

/// The index place (shard, tag) of the key a corrupt record names, if its namespace and key
/// still parse.
fn named_key(
    data: &Bytes,
    at: usize,
    ns_of: &mut impl FnMut(&str) -> Option<Namespace>,
) -> Option<(usize, u32)> {
    let h = RecordHeader::parse(data.get(at..)?).ok()?;
    let ns_start = at.checked_add(HEADER_LEN)?.checked_add(h.meta_len as usize)?;
    let key_start = ns_start.checked_add(h.namespace_len as usize)?;
    let key_end = key_start.checked_add(h.key_len as usize)?;
    let name = data.get(ns_start..key_start).and_then(|b| std::str::from_utf8(b).ok())?;
    let key_bytes = data.get(key_start..key_end)?;
    let key = ns_of(name)?.key(Bytes::copy_from_slice(key_bytes)).ok()?;
    Some(locate(key.hash()))
}
