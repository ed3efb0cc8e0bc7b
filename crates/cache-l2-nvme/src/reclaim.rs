//! FIFO reclaim of the oldest segment, with optional hits-based reinsertion.
//!
//! Reclaim drops every index entry that points into the victim (one pass over the index in
//! memory, no disk reads), removes the segment from the table and unlinks its file. A reader
//! that already holds a slice of the victim keeps a valid mapping: the file is unlinked, never
//! truncated. With reinsertion on, entries hit since they were written are validated (checksum,
//! expiry, namespace clears) and handed back to be appended at the head of the log with their
//! hit count less one.

use std::sync::{Arc, atomic::Ordering};

use cache_core::{Evicted, EvictionCause, EvictionSink, Namespace, Record, Verify};

use crate::{segment::Segment, tier::Shared};

/// Reclaims `victim`; pushes (shard, tag, record, hit count to keep) of entries worth
/// reinserting onto `out`, and hands the other live entries to the eviction sink, if one is set.
pub(crate) fn reclaim(
    sh: &Shared,
    victim: &Arc<Segment>,
    reinsert: bool,
    out: &mut crate::writer::Reinsert,
) {
    let sink = sh.sink.read().clone();
    let (removed, live) = sh.index.drain_segment(victim.id, reinsert, sink.is_some());
    {
        let mut segments = sh.segments.write();
        segments.remove(&victim.id);
        if let Some(next) = segments.keys().next() {
            sh.index.set_oldest(*next);
        }
    }
    sh.unsynced.lock().retain(|s| s.id != victim.id);
    let now = sh.clock.now();
    let mut kept = 0u64;
    for (shard, tag, slot) in live {
        let Some(range) = slot.range_in(&victim.data) else { continue };
        let Ok(record) = sh.format.decode_with(victim.data.slice(range), Verify::Checksum) else {
            sh.stats.corrupt();
            continue;
        };
        if record.is_tombstone() {
            continue;
        }
        if record.meta().is_expired(now) || sh.is_idle(shard, tag, now) {
            sh.stats.expire();
            continue;
        }
        let Ok(ns) = Namespace::new(record.namespace()) else { continue };
        if sh.cleared(&ns.id(), slot.lsn()) {
            continue;
        }
        if reinsert && slot.hit() {
            kept += 1;
            out.push((shard, tag, record.into_bytes(), slot.hits - 1));
        } else if let Some(sink) = &sink {
            hand_to_sink(sink.as_ref(), &record);
        }
    }
    sh.stats.evict(removed - kept);
    if let Err(e) = crate::io::unlink(&victim.path) {
        tracing::warn!(path = %victim.path.display(), error = %e, "cannot unlink a reclaimed segment");
    }
    sh.bytes_used.fetch_sub(victim.size, Ordering::Relaxed);
    sh.dir_dirty.store(true, Ordering::Release);
    tracing::debug!(segment = victim.id, entries = removed, reinsert = kept, "reclaimed segment");
}

/// Hands a live entry leaving the tier for space to `sink` (its value a slice of the segment
/// mapping, which stays valid after the file is unlinked).
pub(crate) fn hand_to_sink(sink: &dyn EvictionSink, record: &Record) {
    if let Ok(key) = record.key() {
        sink.on_evict(Evicted { key, entry: record.to_entry(), cause: EvictionCause::Capacity });
    }
}
