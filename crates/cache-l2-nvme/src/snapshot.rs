//! The index snapshot written on a clean close and read (then deleted) on open.
//!
//! The snapshot lists the live segments (id and size) and every index entry. It is trusted
//! only if its checksums verify and the segment files on disk are exactly the ones it lists
//! with the sizes it lists, and every entry lies inside its segment; otherwise the segments are
//! scanned. Open maps it (one populated mapping, no copy), unlinks it, and parses the entries
//! straight into the index on several threads. The writer syncs the directory before its first
//! write, so a later unclean run can never be read with a stale snapshot, and open does not wait
//! for an `fsync` (which, on a busy disk, can take far longer than the load).

use std::{collections::BTreeMap, fs::File, path::Path, sync::Arc};

use memmap2::{Mmap, MmapOptions};

use cache_core::HEADER_LEN;

use crate::{
    error::{NvmeError, io_err},
    format::{SEGMENT_HEADER_LEN, SNAPSHOT_FILE, Snapshot, SnapshotView},
    index::{HIT_BIT, Index, LEN_IN_HEADER, OFFSET_LIMIT},
    io,
    namespace::sync_dir,
    segment::Segment,
    tier::Shared,
};

/// Writes the snapshot of `sh`'s index (all segments must be synced already).
pub(crate) fn write(sh: &Shared, next_segment: u64) -> Result<(), NvmeError> {
    let segments: Vec<(u32, u64)> = sh.segments.read().values().map(|s| (s.id, s.size)).collect();
    let (shard_counts, entries) = sh.index.export();
    let snap = Snapshot {
        next_segment,
        created_at_ms: sh.clock.now().as_millis(),
        segments,
        shard_counts,
        entries,
    };
    let bytes = snap.encode();
    let path = sh.dir.join(SNAPSHOT_FILE);
    let tmp = sh.dir.join(format!("{SNAPSHOT_FILE}.{}.tmp", std::process::id()));
    let f = io::create_truncate(&tmp).map_err(|e| io_err("create", &tmp, e))?;
    io::write_at(&f, &tmp, &bytes, 0).map_err(|e| io_err("write", &tmp, e))?;
    io::sync_all(&f, &tmp).map_err(|e| io_err("sync", &tmp, e))?;
    drop(f);
    io::rename(&tmp, &path).map_err(|e| io_err("rename into place", &path, e))?;
    sync_dir(&sh.dir)
}

/// Maps the snapshot in `dir`, if there is one; `Err` says why it cannot be read.
pub(crate) fn map(dir: &Path) -> Result<Option<Mmap>, String> {
    let path = dir.join(SNAPSHOT_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    // SAFETY: read-only mapping of a file only this process writes (the directory is locked),
    // and only by writing a temporary file and renaming it over this one: the mapped inode is
    // never modified. Open unlinks it while mapped, which keeps the pages valid.
    unsafe { MmapOptions::new().populate().map(&file) }
        .map(Some)
        .map_err(|e| format!("cannot map {}: {e}", path.display()))
}

/// Loads a mapped snapshot into the (empty) `index` if it verifies and matches `segments`;
/// returns its next segment id. `Err` gives the reason it was not used (corrupt, stale); the
/// index is then left empty.
pub(crate) fn load(
    bytes: &[u8],
    segments: &BTreeMap<u32, Arc<Segment>>,
    index: &Index,
) -> Result<u64, String> {
    let snap = SnapshotView::decode(bytes).map_err(str::to_owned)?;
    if snap.segments.len() != segments.len()
        || snap.segments.iter().any(|(id, size)| segments.get(id).is_none_or(|s| s.size != *size))
    {
        return Err("the segment files differ from those the snapshot lists".into());
    }
    // Readable length of each live segment, by id - first id (ids span fewer than 2^15).
    let first = segments.keys().next().copied().unwrap_or(0);
    let span = segments.keys().next_back().map_or(0, |last| (last - first) as usize + 1);
    let mut mapped = vec![0u64; span];
    for seg in segments.values() {
        mapped[(seg.id - first) as usize] = seg.mapped_len() as u64;
    }
    let valid = |segment: u32, offset: u32, len_hit: u32| {
        let Some(&seg_len) = segment.checked_sub(first).and_then(|i| mapped.get(i as usize)) else {
            return false;
        };
        let len = u64::from(len_hit & !HIT_BIT);
        let len = if len >= u64::from(LEN_IN_HEADER) { HEADER_LEN as u64 } else { len };
        (offset as usize) >= SEGMENT_HEADER_LEN
            && offset < OFFSET_LIMIT
            && u64::from(offset) + len <= seg_len
    };
    if index.load_snapshot(&snap.shard_counts, snap.entries, &valid) {
        Ok(snap.next_segment)
    } else {
        index.clear();
        Err("an entry points outside the live segments".into())
    }
}

/// Deletes the snapshot; returns whether there was one. The deletion is made durable by the
/// writer thread (a directory sync) before it writes anything, so a snapshot can never be
/// trusted after a later unclean run, and open does not wait for the sync.
pub(crate) fn remove(dir: &Path) -> Result<bool, NvmeError> {
    let path = dir.join(SNAPSHOT_FILE);
    match io::unlink(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove the stale snapshot", &path, e)),
    }
}
