//! The writer thread: batches queued operations into large sequential appends, publishes index
//! entries after the bytes are in the file, rotates and reclaims segments, and runs barriers,
//! group commit and the clean-close snapshot. The periodic syncer thread lives here too.
//!
//! One thread owns every append, so the log order is the order operations were queued. A batch
//! is everything queued when the writer wakes; its records are copied into one staging buffer
//! and written with one `pwrite` (flushed early at 1 MiB and at segment boundaries). Index
//! updates of a batch are applied, in order, right after their bytes are written, and the
//! batch's callers are acknowledged after that (and after the sync, for
//! [`Durability::EveryWrite`] and barriers).

use std::{
    fs::File,
    sync::{Arc, atomic::Ordering, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{Error, NamespaceId, Result};
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::{
    builder::Durability,
    error::NvmeError,
    format::{NsMarker, SEGMENT_HEADER_LEN, SYNC_POINT_LEN, SyncPoint, lsn},
    index::{MAX_SEGMENT_SPAN, Slot},
    namespace::NsLog,
    parts::Parts,
    segment::Segment,
    tier::Shared,
};

/// The acknowledgement channel of one write operation.
pub(crate) type Ack = oneshot::Sender<Result<()>>;

/// Who hears how a `Put` or `Remove` ended.
pub(crate) enum Reply {
    /// The caller waits for this acknowledgement.
    Ack(Ack),
    /// Acknowledged early: the record was entered in the pending buffer as version `seq`,
    /// holding `room` bytes of it. The writer drops it from the buffer once the index points at
    /// the disk copy, gives the room back, and keeps a failure for the next barrier.
    Staged { seq: u64, room: u32 },
    /// Nobody: a tombstone the tier writes on its own (after finding a corrupt record).
    Nobody,
}

/// A request to the writer thread.
pub(crate) enum Op {
    /// Append `record` and point the index at it.
    Put { shard: usize, tag: u32, record: Parts, reply: Reply },
    /// Append a tombstone (if the key may be on disk, or always with `force`) and drop the
    /// index entry. A staged removal has its tombstone in the pending buffer, so reads miss at
    /// once.
    Remove { shard: usize, tag: u32, tombstone: Bytes, force: bool, reply: Reply },
    /// Mark a namespace cleared at the current log position.
    Clear { namespace: NamespaceId, ack: Ack },
    /// Make everything acknowledged so far durable.
    Barrier { ack: Ack },
    /// Acknowledge once everything queued before it is written (not synced).
    Written { ack: Ack },
    /// Barrier, snapshot, stop.
    Close { ack: Ack },
}

/// The writer's inbox.
#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) ops: Vec<Op>,
    /// Set when the tier is dropped without `close`.
    pub(crate) shutdown: bool,
}

/// How long the idle writer keeps looking for work before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(50);
/// Staged bytes are written once they reach this size.
const STAGING_LIMIT: usize = 1 << 20;
/// Records this large are written straight from their buffer, not copied into the staging one.
const DIRECT_WRITE: usize = 32 << 10;

/// An index update waiting for its bytes to reach the file.
#[derive(Debug, Clone, Copy)]
enum IndexOp {
    Insert { shard: usize, tag: u32, slot: Slot },
    Remove { shard: usize, tag: u32 },
}

struct Active {
    seg: Arc<Segment>,
    /// Next append offset (staged bytes included).
    write_off: u64,
    /// Offset where the staging buffer starts.
    staged_from: u64,
}

/// Stops the syncer thread.
#[derive(Default)]
pub(crate) struct SyncerStop {
    stop: Mutex<bool>,
    cv: Condvar,
}

/// Records handed back by reclaim for reinsertion: (shard, tag, record, hit count to keep).
pub(crate) type Reinsert = Vec<(usize, u32, Bytes, u8)>;

/// State owned by the writer thread.
pub(crate) struct Writer {
    pub(crate) sh: Arc<Shared>,
    active: Option<Active>,
    staging: Vec<u8>,
    staged: Vec<(Option<usize>, IndexOp)>,
    pub(crate) next_segment: u32,
    pub(crate) nslog: NsLog,
    /// Held for the writer's lifetime: the directory lock.
    pub(crate) lock: Option<File>,
    syncer: Option<(Arc<SyncerStop>, JoinHandle<()>)>,
    /// Takes reclaimed (already unlinked) segments and drops them off the writer thread:
    /// closing and unmapping the last handle frees the file's page cache, which takes
    /// milliseconds for a large segment.
    reaper: Option<(mpsc::Sender<Arc<Segment>>, JoinHandle<()>)>,
    /// Per-op error of the current batch.
    errors: Vec<Option<Error>>,
    /// Open deleted the snapshot and the deletion is not yet synced: nothing may be written
    /// until it is.
    snapshot_unsynced: bool,
    /// Segments this run wrote whose synced prefix may still grow, each with the end of the
    /// prefix a sync point already names (see [`Writer::note_sync_points`]).
    noted: Vec<(Arc<Segment>, u64)>,
}

impl Writer {
    pub(crate) fn new(
        sh: Arc<Shared>,
        next_segment: u32,
        nslog: NsLog,
        lock: File,
        snapshot_unsynced: bool,
    ) -> Writer {
        Writer {
            sh,
            active: None,
            staging: Vec::with_capacity(STAGING_LIMIT + 4096),
            staged: Vec::new(),
            next_segment,
            nslog,
            lock: Some(lock),
            syncer: None,
            reaper: None,
            errors: Vec::new(),
            snapshot_unsynced,
            noted: Vec::new(),
        }
    }

    /// Starts the writer (and, for periodic durability, the syncer) thread.
    pub(crate) fn spawn(mut self) -> std::io::Result<JoinHandle<()>> {
        if let Durability::Periodic(every) = self.sh.durability {
            let stop = Arc::new(SyncerStop::default());
            let sh = self.sh.clone();
            let s = stop.clone();
            let h = std::thread::Builder::new()
                .name("nvme-syncer".into())
                .spawn(move || syncer(&sh, &s, every))?;
            self.syncer = Some((stop, h));
        }
        let (tx, rx) = mpsc::channel::<Arc<Segment>>();
        let reaper = std::thread::Builder::new().name("nvme-reaper".into()).spawn(move || {
            // Each segment is dropped as it arrives.
            for seg in rx {
                drop(seg);
            }
        })?;
        self.reaper = Some((tx, reaper));
        std::thread::Builder::new().name("nvme-writer".into()).spawn(move || self.run())
    }

    fn stop_syncer(&mut self) {
        if let Some((stop, h)) = self.syncer.take() {
            *stop.stop.lock() = true;
            stop.cv.notify_all();
            let _ = h.join();
        }
    }

    /// Makes open's deletion of the snapshot durable, if that is still to do.
    fn sync_snapshot_removal(&mut self) -> Result<(), Error> {
        if self.snapshot_unsynced {
            crate::namespace::sync_dir(&self.sh.dir).map_err(|e| {
                tracing::error!(error = %e, "cannot sync the snapshot's removal; nothing is written");
                Error::from(e)
            })?;
            self.snapshot_unsynced = false;
        }
        Ok(())
    }

    fn run(mut self) {
        // A reopen with a smaller budget: shrink first (once the snapshot is surely gone).
        if self.sync_snapshot_removal().is_ok()
            && let Err(e) = self.make_room(0, false)
        {
            tracing::error!(error = %e, "cannot reclaim segments over the budget");
        }
        loop {
            let (ops, shutdown) = {
                let mut q = self.sh.queue.lock();
                if q.ops.is_empty() && !q.shutdown {
                    // Puts come in runs: look again for a moment (yielding the CPU) before
                    // sleeping, so a caller rarely pays for waking this thread on another CPU.
                    drop(q);
                    let until = Instant::now() + IDLE_SPIN;
                    while !self.sh.queued.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::yield_now();
                    }
                    q = self.sh.queue.lock();
                }
                while q.ops.is_empty() && !q.shutdown {
                    self.sh.queue_cv.wait(&mut q);
                }
                self.sh.queued.store(false, Ordering::Release);
                (std::mem::take(&mut q.ops), q.shutdown)
            };
            if ops.is_empty() && shutdown {
                if let Err(e) = self.finish(false) {
                    tracing::error!(error = %e, "writing out at shutdown failed");
                }
                return;
            }
            if self.batch(ops) {
                return;
            }
        }
    }

    /// Runs one batch; returns true if the tier closed.
    fn batch(&mut self, mut ops: Vec<Op>) -> bool {
        self.errors.clear();
        self.errors.resize(ops.len(), None);
        let mut need_sync = self.sh.durability == Durability::EveryWrite;
        let mut close = None;
        let blocked = self.sync_snapshot_removal().err();
        for (i, op) in ops.iter_mut().enumerate() {
            if let Some(e) = &blocked {
                // Until the snapshot's removal is durable, every op fails (a close still stops).
                if matches!(op, Op::Close { .. }) && close.is_none() {
                    close = Some(i);
                }
                self.errors[i] = Some(e.clone());
                continue;
            }
            if close.is_some() {
                self.errors[i] = Some(Error::closed(crate::error::TIER));
                continue;
            }
            let result = match op {
                Op::Put { shard, tag, record, .. } => {
                    let (shard, tag, record) = (*shard, *tag, record.clone());
                    self.append(&record, Some((i, shard, tag)))
                }
                Op::Remove { shard, tag, tombstone, force, .. } => {
                    let (shard, tag, tombstone, force) = (*shard, *tag, tombstone.clone(), *force);
                    self.remove(shard, tag, &tombstone, force, i)
                }
                Op::Clear { namespace, .. } => {
                    let ns = *namespace;
                    self.clear(ns)
                }
                Op::Barrier { .. } => {
                    need_sync = true;
                    Ok(())
                }
                Op::Written { .. } => Ok(()),
                Op::Close { .. } => {
                    close = Some(i);
                    Ok(())
                }
            };
            if let Err(e) = result {
                // A failed put or remove forgets the key in memory: an older version must not
                // be served in place of a write that was accepted.
                if let Op::Put { shard, tag, .. } | Op::Remove { shard, tag, .. } = op {
                    self.sh.index.remove(*shard, *tag);
                }
                self.errors[i].get_or_insert(e.into());
            }
        }
        if let Err(e) = self.flush_staging() {
            tracing::error!(error = %e, "append failed");
        }
        if need_sync {
            match self.sh.sync_all() {
                // Name the synced prefix right away (a page-cache write; the next sync makes it
                // durable), so a crash after the barrier finds it.
                Ok(()) => self.write_sync_points(),
                Err(e) => {
                    let e: Error = e.into();
                    for slot in &mut self.errors {
                        slot.get_or_insert_with(|| e.clone());
                    }
                }
            }
        }
        if let Some(i) = close {
            let result = self.finish(true);
            if let Err(e) = result {
                self.errors[i].get_or_insert(e.into());
            }
        }
        // Every index update of the batch is published: drop the staged records from the
        // pending buffer, give their room back, and keep the failures of early-acknowledged
        // puts for the next barrier.
        let mut room = 0usize;
        for (i, op) in ops.iter().enumerate() {
            if let Op::Put { shard, tag, reply: Reply::Staged { seq, room: r }, .. }
            | Op::Remove { shard, tag, reply: Reply::Staged { seq, room: r }, .. } = op
            {
                let read_while_pending = self.sh.pending.remove_if(*shard, *tag, *seq);
                if read_while_pending
                    && self.sh.reinsert_hits
                    && let Some(slot) = self.sh.index.get(*shard, *tag)
                {
                    // The record was read before it reached the index: a hit all the same.
                    self.sh.index.mark_hit(*shard, *tag, slot);
                }
                room += *r as usize;
                if let Some(e) = self.errors[i].take() {
                    self.sh.defer_error(e);
                }
            }
        }
        if room > 0 {
            self.sh.room.add_permits(room);
        }
        for (i, op) in ops.iter().enumerate() {
            if matches!(op, Op::Barrier { .. } | Op::Close { .. })
                && let Some(e) = self.sh.deferred_error.lock().take()
            {
                self.errors[i].get_or_insert(e);
            }
        }
        for (i, op) in ops.into_iter().enumerate() {
            let result = match self.errors[i].take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
            let ack = match op {
                Op::Clear { ack, .. }
                | Op::Barrier { ack }
                | Op::Written { ack }
                | Op::Close { ack } => Some(ack),
                Op::Put { reply, .. } | Op::Remove { reply, .. } => match reply {
                    Reply::Ack(ack) => Some(ack),
                    Reply::Staged { .. } | Reply::Nobody => None,
                },
            };
            if let Some(ack) = ack {
                let _ = ack.send(result);
            }
        }
        if close.is_some() {
            // Anything queued after the close is refused (its ack is dropped: `Closed`).
            self.sh.queue.lock().ops.clear();
        }
        close.is_some()
    }

    /// Writes staged bytes and publishes their index updates.
    fn flush_staging(&mut self) -> Result<(), NvmeError> {
        if self.staging.is_empty() {
            for (_, op) in self.staged.drain(..) {
                apply(&self.sh, op);
            }
            return Ok(());
        }
        let Some(active) = &mut self.active else {
            unreachable!("bytes are only staged into an active segment")
        };
        match active.seg.write_at(&self.staging, active.staged_from) {
            Ok(()) => {
                active.staged_from = active.write_off;
                self.staging.clear();
                for (_, op) in self.staged.drain(..) {
                    apply(&self.sh, op);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "segment append failed; abandoning the segment");
                let err: Error = clone_err(&e);
                for (who, op) in self.staged.drain(..) {
                    // The bytes may not be in the file: forget the key rather than serve an
                    // older version in place of a write that was accepted.
                    let (IndexOp::Insert { shard, tag, .. } | IndexOp::Remove { shard, tag }) = op;
                    self.sh.index.remove(shard, tag);
                    if let Some(i) = who {
                        self.errors[i].get_or_insert_with(|| err.clone());
                    }
                }
                self.staging.clear();
                // The region may be partly written: never append there again.
                self.seal_active();
                Err(e)
            }
        }
    }

    /// Stages `record`; `who` is (op index, shard, tag), or `None` with a tag for reinsertion.
    fn append(
        &mut self,
        record: &Parts,
        who: Option<(usize, usize, u32)>,
    ) -> Result<(), NvmeError> {
        self.note_sync_points();
        let len = record.len() as u64;
        if len > self.sh.segment_size - SEGMENT_HEADER_LEN as u64 {
            return self.append_dedicated(record, who);
        }
        let fits = self.active.as_ref().is_some_and(|a| a.write_off + len <= a.seg.size);
        if !fits {
            self.flush_staging()?;
            self.seal_active();
            self.open_segment(self.sh.segment_size, self.sh.reinsert_hits)?;
        }
        if record.len() >= DIRECT_WRITE {
            // Large records skip the staging copy: write what is staged, then the record itself
            // (its head and the caller's value buffer, in one `pwritev`).
            self.flush_staging()?;
            let active = self.active.as_mut().expect("an active segment");
            let offset = active.write_off;
            if let Err(e) = active.seg.write_parts_at(record, offset) {
                self.seal_active();
                return Err(e);
            }
            active.write_off += len;
            active.staged_from = active.write_off;
            if let Some((_, shard, tag)) = who {
                let slot = Slot::new(active.seg.id, offset as u32, len as u32);
                apply(&self.sh, IndexOp::Insert { shard, tag, slot });
            }
            return Ok(());
        }
        // Only records of at least `DIRECT_WRITE` bytes have a chunk table.
        debug_assert!(record.tail.is_empty());
        self.stage(
            &record.head,
            &record.value,
            who.map(|(i, _, _)| i),
            who.map(|(_, s, t)| (s, t, 0)),
        );
        if self.staging.len() >= STAGING_LIMIT {
            self.flush_staging()?;
        }
        Ok(())
    }

    fn stage(
        &mut self,
        head: &[u8],
        value: &[u8],
        op: Option<usize>,
        target: Option<(usize, u32, u8)>,
    ) {
        let active = self.active.as_mut().expect("an active segment");
        let offset = active.write_off as u32;
        let len = head.len() + value.len();
        self.staging.extend_from_slice(head);
        self.staging.extend_from_slice(value);
        active.write_off += len as u64;
        if let Some((shard, tag, hits)) = target {
            let slot = Slot { hits, ..Slot::new(active.seg.id, offset, len as u32) };
            self.staged.push((op, IndexOp::Insert { shard, tag, slot }));
        }
    }

    /// Stages a sync point for every segment whose synced prefix grew since a sync point last
    /// named it, ahead of the next record, so recovery can tell the synced part of a segment
    /// (where damage is bit rot, and the damaged key is dropped) from the part a power cut may
    /// have left half written (where a torn record keeps the key's older version). A sync point
    /// costs no `fdatasync` of its own: it is written with the next records and made durable by
    /// the next sync. If the active segment has no room for them, the next segment gets them.
    fn note_sync_points(&mut self) {
        let Some((active_id, from, size)) =
            self.active.as_ref().map(|a| (a.seg.id, a.write_off, a.seg.size))
        else {
            return;
        };
        let mut points = Vec::new();
        for (seg, noted) in &self.noted {
            let synced = seg.synced.load(Ordering::Acquire);
            if synced > *noted {
                points.push(SyncPoint { segment: seg.id, end: synced as u32 });
            }
        }
        if !points.is_empty() {
            if from + (points.len() * SYNC_POINT_LEN) as u64 > size {
                return;
            }
            for p in &points {
                self.stage(&p.encode(), &[], None, None);
            }
            for (seg, noted) in &mut self.noted {
                if let Some(p) = points.iter().find(|p| p.segment == seg.id) {
                    // When the named prefix ends where these sync points start, a later sync
                    // that covers only them needs no sync point of its own.
                    *noted = if seg.id == active_id && u64::from(p.end) == from {
                        from + (points.len() * SYNC_POINT_LEN) as u64
                    } else {
                        u64::from(p.end)
                    };
                }
            }
        }
        // Forget segments that will get nothing more to name: sealed and fully named, or gone.
        let live = self.sh.segments.read();
        self.noted.retain(|(seg, noted)| {
            live.contains_key(&seg.id)
                && (seg.id == active_id || *noted < seg.written.load(Ordering::Acquire))
        });
    }

    /// Writes the sync points [`Writer::note_sync_points`] stages, now. A failure is logged
    /// only: what the sync points would name is durable already.
    fn write_sync_points(&mut self) {
        self.note_sync_points();
        if let Err(e) = self.flush_staging() {
            tracing::warn!(error = %e, "cannot write a sync point");
        }
    }

    /// A record larger than a segment gets a segment of its own.
    fn append_dedicated(
        &mut self,
        record: &Parts,
        who: Option<(usize, usize, u32)>,
    ) -> Result<(), NvmeError> {
        self.flush_staging()?;
        self.seal_active();
        let size = (SEGMENT_HEADER_LEN as u64 + record.len() as u64).div_ceil(4096) * 4096;
        if size > self.sh.capacity {
            return Err(NvmeError::TooLarge {
                len: record.len() as u64,
                why: format!("its segment would exceed the budget of {}", self.sh.capacity),
            });
        }
        let seg = self.create_segment(size, false)?.0;
        seg.write_parts_at(record, SEGMENT_HEADER_LEN as u64)?;
        if let Some((_, shard, tag)) = who {
            let slot = Slot::new(seg.id, SEGMENT_HEADER_LEN as u32, record.len() as u32);
            apply(&self.sh, IndexOp::Insert { shard, tag, slot });
        }
        self.sh.unsynced.lock().push(seg);
        Ok(())
    }

    fn remove(
        &mut self,
        shard: usize,
        tag: u32,
        tombstone: &Bytes,
        force: bool,
        i: usize,
    ) -> Result<(), NvmeError> {
        let staged_insert = self.staged.iter().any(
            |(_, op)| matches!(op, IndexOp::Insert { shard: s, tag: t, .. } if *s == shard && *t == tag),
        );
        if force || staged_insert || self.sh.index.get(shard, tag).is_some() {
            self.note_sync_points();
            // The tombstone is written without an index entry of its own.
            let len = tombstone.len() as u64;
            let fits = self.active.as_ref().is_some_and(|a| a.write_off + len <= a.seg.size);
            if !fits {
                self.flush_staging()?;
                self.seal_active();
                self.open_segment(self.sh.segment_size, self.sh.reinsert_hits)?;
            }
            self.stage(tombstone, &[], Some(i), None);
        }
        self.staged.push((Some(i), IndexOp::Remove { shard, tag }));
        Ok(())
    }

    fn clear(&mut self, namespace: NamespaceId) -> Result<(), NvmeError> {
        self.flush_staging()?;
        let at = match &self.active {
            Some(a) => lsn(a.seg.id, a.write_off as u32),
            None => lsn(self.next_segment, 0),
        };
        let now = self.sh.clock.now().as_millis();
        self.nslog.append(NsMarker { namespace, lsn: at, cleared_at_ms: now })?;
        let mut markers = self.sh.markers.write();
        let m = markers.entry(namespace).or_insert(0);
        *m = (*m).max(at);
        self.sh.any_markers.store(true, Ordering::Release);
        Ok(())
    }

    /// Moves the active segment to the unsynced list.
    fn seal_active(&mut self) {
        if let Some(a) = self.active.take() {
            a.seg.drop_cached_pages();
            self.sh.unsynced.lock().push(a.seg);
            *self.sh.active.lock() = None;
        }
    }

    /// Opens a new active segment, reinserting hit entries from what was reclaimed for it.
    fn open_segment(&mut self, size: u64, reinsert: bool) -> Result<(), NvmeError> {
        let (seg, candidates) = self.create_segment(size, reinsert)?;
        *self.sh.active.lock() = Some(seg.clone());
        self.active = Some(Active {
            seg,
            write_off: SEGMENT_HEADER_LEN as u64,
            staged_from: SEGMENT_HEADER_LEN as u64,
        });
        // Up to 90 % of the new segment: reinserted entries keep their hit count less one, so
        // one hit since written buys one more lap and three buy three, and at least a tenth of
        // the segment stays for new writes.
        let budget = size - size / 10;
        let mut used = 0u64;
        let mut reinserted = 0u64;
        let sink = self.sh.sink.read().clone();
        for (shard, tag, record, hits) in candidates {
            let len = record.len() as u64;
            if used + len > budget {
                self.sh.stats.evict(1);
                // Not reinserted after all: it leaves the tier like any other live entry.
                if let Some(sink) = &sink
                    && let Ok(r) =
                        self.sh.format.decode_with(record, cache_core::Verify::StructureOnly)
                {
                    crate::reclaim::hand_to_sink(sink.as_ref(), &r);
                }
                continue;
            }
            used += len;
            reinserted += 1;
            self.stage(&record, &[], None, Some((shard, tag, hits)));
        }
        self.sh.reinserted.fetch_add(reinserted, Ordering::Relaxed);
        Ok(())
    }

    /// Reclaims until `size` more bytes fit, then creates and registers a segment.
    fn create_segment(
        &mut self,
        size: u64,
        reinsert: bool,
    ) -> Result<(Arc<Segment>, Reinsert), NvmeError> {
        let candidates = self.make_room(size, reinsert)?;
        let id = self.next_segment;
        if id == u32::MAX {
            return Err(NvmeError::Config("segment ids are exhausted".into()));
        }
        self.next_segment += 1;
        let seg = Segment::create(&self.sh.dir, id, size, self.sh.clock.now().as_millis())?;
        let seg = Arc::new(if self.sh.direct_reads { seg.with_direct_reads()? } else { seg });
        self.noted.push((seg.clone(), SEGMENT_HEADER_LEN as u64));
        {
            let mut segments = self.sh.segments.write();
            segments.insert(id, seg.clone());
            if segments.len() == 1 {
                self.sh.index.set_oldest(id);
            }
        }
        self.sh.bytes_used.fetch_add(size, Ordering::Relaxed);
        self.sh.dir_dirty.store(true, Ordering::Release);
        Ok((seg, candidates))
    }

    /// FIFO reclaim of the oldest segments until `size` more bytes fit in the budget.
    fn make_room(&mut self, size: u64, reinsert: bool) -> Result<Reinsert, NvmeError> {
        let mut out = Vec::new();
        loop {
            let over_budget = self.sh.bytes_used.load(Ordering::Relaxed) + size > self.sh.capacity;
            let oldest = self.sh.segments.read().keys().next().copied();
            // Live ids must span fewer than `MAX_SEGMENT_SPAN` values (the index keeps 16 bits).
            let span_too_wide =
                oldest.is_some_and(|o| self.next_segment.wrapping_sub(o) >= MAX_SEGMENT_SPAN - 1);
            if !over_budget && !span_too_wide {
                break;
            }
            let victim = {
                let segs = self.sh.segments.read();
                let active = self.active.as_ref().map(|a| a.seg.id);
                segs.values().find(|s| Some(s.id) != active).cloned()
            };
            let Some(victim) = victim else { break };
            crate::reclaim::reclaim(&self.sh, &victim, reinsert, &mut out);
            if let Some((tx, _)) = &self.reaper {
                let _ = tx.send(victim);
            }
        }
        Ok(out)
    }

    /// Stops: on a clean close, syncs everything and writes the index snapshot.
    fn finish(&mut self, clean: bool) -> Result<(), NvmeError> {
        let mut staged = self.flush_staging();
        if clean {
            // Sync, then name what the sync covered (and sync that), so a scan after a lost
            // snapshot knows every segment's synced end.
            staged = staged.and_then(|()| self.sh.sync_all()).and_then(|()| {
                self.write_sync_points();
                self.sh.sync_all()
            });
        } else if staged.is_ok() {
            self.write_sync_points();
        }
        self.seal_active();
        self.stop_syncer();
        if let Some((tx, h)) = self.reaper.take() {
            drop(tx);
            let _ = h.join();
        }
        let result = if clean {
            staged.and_then(|()| crate::snapshot::write(&self.sh, u64::from(self.next_segment)))
        } else {
            staged
        };
        self.lock = None;
        result
    }
}

fn apply(sh: &Shared, op: IndexOp) {
    match op {
        IndexOp::Insert { shard, tag, slot } => sh.index.insert(shard, tag, slot),
        IndexOp::Remove { shard, tag } => {
            sh.index.remove(shard, tag);
        }
    }
}

fn clone_err(e: &NvmeError) -> Error {
    // `NvmeError` holds an `io::Error` (not `Clone`); rebuild it with the same kind and text.
    Error::new(
        match e {
            NvmeError::TooLarge { .. } | NvmeError::Config(_) => cache_core::ErrorKind::Invalid,
            _ => cache_core::ErrorKind::Io,
        },
        crate::error::TIER,
        format!(
            "{e}: {}",
            std::error::Error::source(e).map(ToString::to_string).unwrap_or_default()
        ),
    )
}

fn syncer(sh: &Shared, stop: &SyncerStop, every: Duration) {
    loop {
        {
            let mut s = stop.stop.lock();
            if *s {
                return;
            }
            stop.cv.wait_for(&mut s, every);
            if *s {
                return;
            }
        }
        if let Err(e) = sh.sync_all() {
            tracing::error!(error = %e, "periodic sync failed");
        }
    }
}
