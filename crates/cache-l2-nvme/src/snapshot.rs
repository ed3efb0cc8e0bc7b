//! The index snapshot written on a clean close and read (then deleted) on open.
//!
//! The snapshot lists the live segments (id and size) and every index entry. It is trusted
//! only if its checksums verify and the segment files on disk are exactly the ones it lists
//! with the sizes it lists; otherwise the segments are scanned. Open deletes it (and syncs the
//! directory) before the first write, so a later unclean run can never be read with a stale
//! snapshot.

use std::{collections::BTreeMap, io::Write, path::Path, sync::Arc};

use cache_core::HEADER_LEN;

use crate::{
    error::{NvmeError, io_err},
    format::{SEGMENT_HEADER_LEN, SNAPSHOT_FILE, Snapshot},
    index::{HIT_BIT, LEN_IN_HEADER},
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
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_err("write", &tmp, e))?;
    f.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| io_err("rename into place", &path, e))?;
    sync_dir(&sh.dir)
}

/// Reads the snapshot in `dir` if there is one and it matches `segments`; `Err` gives the
/// reason it was not used (missing, corrupt, stale).
pub(crate) fn read(
    dir: &Path,
    segments: &BTreeMap<u32, Arc<Segment>>,
) -> Result<Option<Snapshot>, String> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let snap = Snapshot::decode(&bytes).map_err(str::to_owned)?;
    if snap.segments.len() != segments.len()
        || snap.segments.iter().any(|(id, size)| segments.get(id).is_none_or(|s| s.size != *size))
    {
        return Err("the segment files differ from those the snapshot lists".into());
    }
    for e in &snap.entries {
        let Some(seg) = segments.get(&e.segment) else {
            return Err("an entry points at a missing segment".into());
        };
        let len = u64::from(e.len_hit & !HIT_BIT);
        let len = if len >= u64::from(LEN_IN_HEADER) { HEADER_LEN as u64 } else { len };
        if (e.offset as usize) < SEGMENT_HEADER_LEN
            || e.offset >= HIT_BIT
            || u64::from(e.offset) + len > seg.mapped_len() as u64
        {
            return Err("an entry points outside its segment".into());
        }
    }
    Ok(Some(snap))
}

/// Deletes the snapshot (and makes the deletion durable).
pub(crate) fn invalidate(dir: &Path) -> Result<(), NvmeError> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove the stale snapshot", &path, e)),
    }
}
