//! [`NvmeTier`]: the [`Tier`] implementation, its shared state and the read path.
//!
//! Reads run on the caller's task: an index lookup under a shard read lock, a `Bytes` slice of
//! the segment mapping, an xxh3 checksum (when verification is on) and a key comparison. They
//! take no lock the writer holds across IO and never wait for a sync. Writes are encoded on
//! the caller's task and handed to the writer thread (`writer.rs`); the caller awaits the
//! acknowledgement without blocking the executor.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    ops::Range,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use bytes::Bytes;
use cache_core::{
    Clock, Entry, EntryMeta, Error, ErrorKind, EvictionSink, Key, Namespace, NamespaceId,
    PutOutcome, Record, RecordFormat, RecordHead, RecordHeader, Rejection, Result, StatsSnapshot,
    Tier, TierStats, Timestamp, Usage, Verify, async_trait, check_range, check_record_key,
    slice_range,
};
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::{Semaphore, oneshot};

use crate::{
    builder::{Durability, NvmeTierBuilder},
    error::{NvmeError, TIER},
    format::SEGMENT_HEADER_LEN,
    idle::IdleTimes,
    index::{Index, MAX_RECORD_LEN, Slot, locate},
    parts::{self, Parts},
    pending::Pending,
    segment::{DirectPiece, Segment},
    writer::{Op, Queue, Reply},
};

/// `put_many` queues its records to the writer in chunks of about this many bytes.
const PUT_MANY_CHUNK: usize = 1 << 20;

/// How the tier was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Whether a snapshot from a clean close was used (otherwise the segments were scanned).
    pub from_snapshot: bool,
    /// Segments found.
    pub segments: u64,
    /// Live entries after recovery.
    pub entries: u64,
    /// Records the scan found corrupt (skipped).
    pub corrupt_records: u64,
    /// Damaged records the scan found past the last sync point of their segment: writes a
    /// crash or power cut interrupted before any barrier acknowledged them (skipped, not
    /// counted as corrupt; the key keeps its older version).
    pub torn_records: u64,
    /// Segment files that did not validate and were removed.
    pub bad_segments: u64,
    /// Wall time of the recovery, microseconds.
    pub micros: u64,
}

/// State shared by the tier handle, the writer thread and the syncer thread.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) capacity: u64,
    pub(crate) segment_size: u64,
    pub(crate) durability: Durability,
    pub(crate) verify: Verify,
    /// How `put` compresses and seals values and how hits open them
    /// ([`NvmeTierBuilder::compression`], [`NvmeTierBuilder::encryption`]).
    pub(crate) format: RecordFormat,
    pub(crate) reinsert_hits: bool,
    /// Hits read with `O_DIRECT` ([`NvmeTierBuilder::direct_reads`]): new segments open a
    /// descriptor for it.
    pub(crate) direct_reads: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) index: Index,
    /// Live segments by id, oldest first.
    pub(crate) segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    /// Newest clear position per namespace.
    pub(crate) markers: RwLock<HashMap<NamespaceId, u64>>,
    pub(crate) any_markers: AtomicBool,
    pub(crate) bytes_used: AtomicU64,
    pub(crate) stats: TierStats,
    pub(crate) closed: AtomicBool,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) queue_cv: Condvar,
    /// Set (after the push) whenever ops are queued: the idle writer polls it without the lock.
    pub(crate) queued: AtomicBool,
    /// Held for a whole sync pass, so a barrier waits for a concurrent periodic pass.
    pub(crate) sync_lock: Mutex<()>,
    /// Sealed segments not yet synced.
    pub(crate) unsynced: Mutex<Vec<Arc<Segment>>>,
    /// The segment being appended to.
    pub(crate) active: Mutex<Option<Arc<Segment>>>,
    /// Names were created or removed since the last directory sync.
    pub(crate) dir_dirty: AtomicBool,
    pub(crate) reinserted: AtomicU64,
    pub(crate) recovery: Mutex<RecoveryReport>,
    /// Records accepted but not yet written (see `pending.rs`).
    pub(crate) pending: Pending,
    /// Room in the pending buffer, in bytes.
    pub(crate) room: Semaphore,
    /// The pending buffer's size, in bytes (the most one record may hold of it).
    pub(crate) max_pending: u32,
    /// Writes that failed after their put had returned `Stored`.
    pub(crate) write_errors: AtomicU64,
    /// The first such failure since the last barrier; the next barrier returns it.
    pub(crate) deferred_error: Mutex<Option<Error>>,
    /// Where reclaimed live entries go.
    pub(crate) sink: RwLock<Option<Arc<dyn EvictionSink>>>,
    /// Each entry's last access, with a time-to-idle ([`NvmeTierBuilder::time_to_idle`]).
    pub(crate) idle: Option<IdleTimes>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("dir", &self.dir)
            .field("capacity", &self.capacity)
            .field("segment_size", &self.segment_size)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Syncs every dirty segment and, if names changed, the directory.
    pub(crate) fn sync_all(&self) -> Result<(), NvmeError> {
        let _pass = self.sync_lock.lock();
        crate::io::pass_begin(&self.dir);
        self.sync_pass()?;
        crate::io::pass_end(&self.dir);
        Ok(())
    }

    fn sync_pass(&self) -> Result<(), NvmeError> {
        let pending = std::mem::take(&mut *self.unsynced.lock());
        for (i, seg) in pending.iter().enumerate() {
            if let Err(e) = seg.sync_if_dirty() {
                self.unsynced.lock().extend(pending[i..].iter().cloned());
                return Err(e);
            }
        }
        let active = self.active.lock().clone();
        if let Some(seg) = active {
            seg.sync_if_dirty()?;
        }
        if self.dir_dirty.swap(false, Ordering::AcqRel)
            && let Err(e) = crate::namespace::sync_dir(&self.dir)
        {
            self.dir_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    /// Whether (shard, tag) has been idle for the time-to-idle (never without one).
    pub(crate) fn is_idle(&self, shard: usize, tag: u32, now: Timestamp) -> bool {
        self.idle.as_ref().is_some_and(|idle| idle.is_idle(shard, tag, now))
    }

    /// Records an access of (shard, tag) now, before a put makes its record visible.
    fn touch(&self, shard: usize, tag: u32, now: Timestamp) {
        if let Some(idle) = &self.idle {
            let held = |t| self.pending.contains(shard, t) || self.index.get(shard, t).is_some();
            idle.touch(shard, tag, now, self.index.len(), held);
        }
    }

    /// A read of (shard, tag) now: `false` if it was idle, otherwise its idle time restarts.
    fn read_idle(&self, shard: usize, tag: u32, now: Timestamp) -> bool {
        self.idle.as_ref().is_none_or(|idle| idle.read(shard, tag, now))
    }

    /// Whether a record of `namespace` at `lsn` was cleared.
    pub(crate) fn cleared(&self, namespace: &NamespaceId, lsn: u64) -> bool {
        self.any_markers.load(Ordering::Acquire)
            && self.markers.read().get(namespace).is_some_and(|m| lsn < *m)
    }

    /// Hands ops to the writer.
    pub(crate) fn submit(&self, ops: impl IntoIterator<Item = Op>) {
        let mut q = self.queue.lock();
        q.ops.extend(ops);
        drop(q);
        self.queued.store(true, Ordering::Release);
        self.queue_cv.notify_one();
    }

    /// Enters early-acknowledged puts into the pending buffer and queues them, under one
    /// queue lock so both see the same order.
    pub(crate) fn submit_staged(&self, puts: impl IntoIterator<Item = StagedPut>) {
        let mut q = self.queue.lock();
        for p in puts {
            let seq = self.pending.insert(p.shard, p.tag, p.record.clone());
            q.ops.push(Op::Put {
                shard: p.shard,
                tag: p.tag,
                record: p.record,
                reply: Reply::Staged { seq, room: p.room },
            });
        }
        drop(q);
        self.queued.store(true, Ordering::Release);
        self.queue_cv.notify_one();
    }

    /// Enters a removal's tombstone into the pending buffer and queues the removal, under the
    /// queue lock (see [`Shared::submit_staged`]).
    pub(crate) fn submit_staged_remove(&self, shard: usize, tag: u32, tombstone: Bytes, room: u32) {
        let mut q = self.queue.lock();
        let seq = self.pending.insert(shard, tag, Parts::whole(tombstone.clone()));
        let reply = Reply::Staged { seq, room };
        q.ops.push(Op::Remove { shard, tag, tombstone, force: false, reply });
        drop(q);
        self.queued.store(true, Ordering::Release);
        self.queue_cv.notify_one();
    }

    /// Records the failure of a write whose put already returned: counted, logged, and kept
    /// for the next barrier.
    pub(crate) fn defer_error(&self, e: Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        self.stats.error(&e);
        tracing::error!(error = %e, "a write accepted earlier failed; the next flush reports it");
        self.deferred_error.lock().get_or_insert(e);
    }
}

/// A put that returns before the writer wrote it.
pub(crate) struct StagedPut {
    pub(crate) shard: usize,
    pub(crate) tag: u32,
    pub(crate) record: Parts,
    /// Pending-buffer bytes it holds.
    pub(crate) room: u32,
}

/// What the pending buffer and the index say about a key being read.
enum Found {
    /// Answered without the segments: a miss, or a hit in the pending buffer.
    Done(Option<Record>),
    /// The index points at a record.
    Slot { shard: usize, tag: u32, slot: Slot },
}

/// Where a slot's bytes come from.
enum Source {
    /// Its segment was reclaimed.
    Gone,
    /// A slice of the mapping (`None`: the slot does not fit the segment).
    Mapped(Option<Bytes>),
    /// A direct read of this segment.
    Direct(Arc<Segment>),
}

impl Source {
    /// The bytes, read on the calling thread: `None` if the segment is gone, `Some(None)` if
    /// the slot does not fit it.
    fn read(self, slot: Slot) -> Result<Option<Option<Bytes>>, NvmeError> {
        match self {
            Source::Gone => Ok(None),
            Source::Mapped(bytes) => Ok(Some(bytes)),
            Source::Direct(seg) => seg.read_record_direct(slot).map(Some),
        }
    }
}

/// Runs a device read (`O_DIRECT`) on tokio's blocking pool, so readers waiting for the device
/// do not hold the async workers; inline outside a runtime.
async fn device_read<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, NvmeError> + Send + 'static,
) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(read()?);
    }
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, TIER, format!("the read task failed: {e}")))?
        .map_err(Error::from)
}

/// The NVMe tier. Build it with [`NvmeTierBuilder`].
pub struct NvmeTier {
    pub(crate) shared: Arc<Shared>,
    pub(crate) writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for NvmeTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvmeTier").field("shared", &self.shared).finish()
    }
}

async fn wait(rx: oneshot::Receiver<Result<()>>) -> Result<()> {
    match rx.await {
        Ok(r) => r,
        Err(_) => Err(Error::closed(TIER)),
    }
}

impl NvmeTier {
    /// A builder for a tier in `dir` (created if missing) holding at most `capacity_bytes` of
    /// segment files: [`NvmeTierBuilder::new`], named like `RocksTier::builder` and
    /// `MemoryTier::builder`. Finish it with [`open`](NvmeTierBuilder::open).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// use cache_l2_nvme::NvmeTier;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTier::builder(dir.path(), 64 << 20).open().await?;
    /// # cache_core::Tier::close(&tier).await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(dir: impl Into<PathBuf>, capacity_bytes: u64) -> NvmeTierBuilder {
        NvmeTierBuilder::new(dir, capacity_bytes)
    }

    pub(crate) fn open(builder: NvmeTierBuilder) -> Result<NvmeTier> {
        let name = builder.name;
        crate::recover::open(builder).map_err(|e| Error::from(e).renamed(TIER, name))
    }

    /// The directory the tier lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The segment size in use (derived from the configuration and the budget).
    pub fn segment_size(&self) -> u64 {
        self.shared.segment_size
    }

    /// How the tier was opened: snapshot or scan, entries, corrupt records, time taken.
    pub fn recovery_report(&self) -> RecoveryReport {
        *self.shared.recovery.lock()
    }

    /// Estimated heap bytes of the in-memory index (see the `reopen_and_memory` example for a
    /// measurement through the allocator).
    /// With a time-to-idle, this includes the table of last access times.
    pub fn index_memory_bytes(&self) -> u64 {
        self.shared.index.memory_bytes()
            + self.shared.idle.as_ref().map_or(0, IdleTimes::memory_bytes)
    }

    /// Entries reinserted at reclaim because they were hit.
    pub fn reinserted(&self) -> u64 {
        self.shared.reinserted.load(Ordering::Relaxed)
    }

    fn check_open(&self) -> Result<()> {
        cache_core::check_open(self.name(), &self.shared.closed)
    }

    fn fail<T>(&self, e: Error) -> Result<T> {
        self.shared.stats.track(Err(e))
    }

    /// The largest record this tier accepts.
    fn max_record(&self) -> u64 {
        let by_budget =
            (self.shared.capacity / 4096 * 4096).saturating_sub(SEGMENT_HEADER_LEN as u64);
        by_budget.min(u64::from(MAX_RECORD_LEN))
    }

    fn check_size(&self, len: u64) -> Result<()> {
        let max = self.max_record();
        if len > max {
            return Err(NvmeError::TooLarge {
                len,
                why: format!("the limit for a budget of {} bytes is {max}", self.shared.capacity),
            }
            .into());
        }
        Ok(())
    }

    /// The read path shared by `get`, `get_record` and `get_range`: a validated record or a
    /// miss. With `range`, only the chunks of the value it covers are verified (a version-2
    /// record; see [`Record::decode_for_range`]), so only that part of the result may be read.
    /// A direct read of the device runs on tokio's blocking pool (inline outside a runtime),
    /// so readers waiting for the device do not hold the async workers.
    async fn lookup(&self, key: &Key, range: Option<&Range<u64>>) -> Result<Option<Record>> {
        let (shard, tag, slot) = match self.find(key)? {
            Found::Done(record) => return Ok(record),
            Found::Slot { shard, tag, slot } => (shard, tag, slot),
        };
        let bytes = self.read(slot).await?;
        Ok(self.validate(key, shard, tag, slot, bytes, range))
    }

    /// `slot`'s bytes: `None` if its segment is gone, `Some(None)` if the slot does not fit it.
    async fn read(&self, slot: Slot) -> Result<Option<Option<Bytes>>> {
        Ok(match self.source(slot) {
            Source::Direct(seg) => Some(device_read(move || seg.read_record_direct(slot)).await?),
            source => source.read(slot)?,
        })
    }

    /// `slot`'s record read whole and checked for a read of `range` of `key`'s value.
    async fn read_range(
        &self,
        key: &Key,
        (shard, tag, slot): (usize, u32, Slot),
        range: &Range<u64>,
    ) -> Result<Option<Bytes>> {
        let bytes = self.read(slot).await?;
        let record = self.validate(key, shard, tag, slot, bytes, Some(range));
        Ok(record.map(|r| slice_range(&r.value(), range)))
    }

    /// The first half of a read: the pending buffer and the index.
    fn find(&self, key: &Key) -> Result<Found> {
        self.check_open()?;
        let sh = &*self.shared;
        let (shard, tag) = locate(key.hash());
        if let Some(bytes) = sh.pending.read(shard, tag) {
            return Ok(Found::Done(self.pending_hit(key, (shard, tag), bytes)));
        }
        let Some(slot) = sh.index.get(shard, tag) else {
            sh.stats.miss();
            return Ok(Found::Done(None));
        };
        if sh.cleared(&key.namespace().id(), slot.lsn()) {
            sh.index.remove_if(shard, tag, slot);
            sh.stats.miss();
            return Ok(Found::Done(None));
        }
        Ok(Found::Slot { shard, tag, slot })
    }

    /// The second half of a read: the record's bytes (`None`: its segment is gone; `Some(None)`:
    /// the slot does not fit it) checked, counted and marked hit.
    fn validate(
        &self,
        key: &Key,
        shard: usize,
        tag: u32,
        slot: Slot,
        bytes: Option<Option<Bytes>>,
        range: Option<&Range<u64>>,
    ) -> Option<Record> {
        let sh = &*self.shared;
        let Some(bytes) = bytes else {
            sh.stats.miss();
            return None;
        };
        let decode = |b: Bytes| match (sh.verify, range) {
            (Verify::Checksum, Some(range)) => sh.format.decode_for_range(b, range),
            (verify, _) => sh.format.decode_with(b, verify),
        };
        let record = bytes.ok_or(()).and_then(|b| decode(b).map_err(|_| ()));
        let Ok(record) = record else {
            self.corrupt_read(key, shard, tag, slot);
            return None;
        };
        let live = !record.is_tombstone() && record.matches(key);
        self.accept(shard, tag, slot, live, record.meta()).then_some(record)
    }

    /// Counts a read whose record failed its checks as a corruption and a miss, and drops the
    /// key (with a tombstone, so a restart's scan cannot bring back an older version).
    fn corrupt_read(&self, key: &Key, shard: usize, tag: u32, slot: Slot) {
        let sh = &*self.shared;
        sh.stats.corrupt();
        sh.stats.miss();
        if sh.index.remove_if(shard, tag, slot) {
            sh.submit([Op::Remove {
                shard,
                tag,
                tombstone: Record::encode_tombstone(key, sh.clock.now()),
                force: true,
                reply: Reply::Nobody,
            }]);
        }
        tracing::warn!(
            segment = slot.segment,
            offset = slot.offset,
            "corrupt record read as a miss"
        );
    }

    /// The end of a read whose record checked out: a hit if it is `live` (not a tombstone, the
    /// key's own) and unexpired, counted and marked; otherwise a miss (an expired entry leaves
    /// the index).
    fn accept(&self, shard: usize, tag: u32, slot: Slot, live: bool, meta: &EntryMeta) -> bool {
        let sh = &*self.shared;
        if !live {
            sh.stats.miss();
            return false;
        }
        let now = sh.clock.now();
        // An idle entry leaves the index only: the log reclaims its record in turn (see
        // `NvmeTierBuilder::time_to_idle` for what a restart before that does).
        if meta.is_expired(now) || !sh.read_idle(shard, tag, now) {
            if sh.index.remove_if(shard, tag, slot) {
                sh.stats.expire();
            }
            sh.stats.miss();
            return false;
        }
        if sh.reinsert_hits && slot.hits < crate::index::MAX_HITS {
            sh.index.mark_hit(shard, tag, slot);
        }
        sh.stats.hit();
        true
    }

    /// A range read with direct reads: of a version-2 record, only its head, its chunk table
    /// and the blocks of the chunks around `range` are read from the device (a 4 KiB range of
    /// a 64 MiB value reads about 72 KiB, not 64 MiB); any other record is read whole.
    async fn get_range_direct(&self, key: &Key, range: &Range<u64>) -> Result<Option<Bytes>> {
        let (shard, tag, slot) = match self.find(key)? {
            Found::Done(record) => return Ok(record.map(|r| slice_range(&r.value(), range))),
            Found::Slot { shard, tag, slot } => (shard, tag, slot),
        };
        let Source::Direct(seg) = self.source(slot) else {
            return self.read_range(key, (shard, tag, slot), range).await;
        };
        let (owned_key, wanted) = (key.clone(), range.clone());
        match device_read(move || seg.read_piece_direct(slot, &owned_key, &wanted)).await? {
            DirectPiece::Whole => self.read_range(key, (shard, tag, slot), range).await,
            DirectPiece::NotInSegment | DirectPiece::Corrupt => {
                self.corrupt_read(key, shard, tag, slot);
                Ok(None)
            }
            DirectPiece::Piece { live, meta, value } => {
                Ok(self.accept(shard, tag, slot, live, &meta).then_some(value))
            }
        }
    }

    /// Where `slot`'s bytes come from.
    fn source(&self, slot: Slot) -> Source {
        let segments = self.shared.segments.read();
        let Some(seg) = segments.get(&slot.segment) else { return Source::Gone };
        if seg.direct.is_some() {
            // A device read: not under the lock the writer takes to add and drop segments.
            Source::Direct(seg.clone())
        } else {
            Source::Mapped(slot.range_in(&seg.data).map(|range| seg.data.slice(range)))
        }
    }

    /// Whether `key` has a live entry, from the pending buffer or the index and the record's
    /// header: the value's checksum is not computed and no hit or miss is counted. A record
    /// whose header does not validate counts as present, so a removal still covers it.
    async fn probe(&self, key: &Key) -> Result<bool> {
        self.check_open()?;
        let sh = &*self.shared;
        let now = sh.clock.now();
        // The head alone decides: a compressed value is not decoded for a probe.
        let live = |head: &[u8]| {
            RecordHead::parse(head).map_or(true, |h| {
                !h.header().is_tombstone() && h.matches(key) && !h.meta().is_expired(now)
            })
        };
        let (shard, tag) = locate(key.hash());
        if let Some(parts) = sh.pending.get(shard, tag) {
            return Ok(live(&parts.head) && !sh.is_idle(shard, tag, now));
        }
        let Some(slot) = sh.index.get(shard, tag) else { return Ok(false) };
        if sh.cleared(&key.namespace().id(), slot.lsn()) || sh.is_idle(shard, tag, now) {
            return Ok(false);
        }
        let Some(bytes) = self.read(slot).await? else { return Ok(false) };
        Ok(bytes.is_none_or(|b| live(&b)))
    }

    /// A read served from the pending buffer (a record this process encoded moments ago).
    fn pending_hit(&self, key: &Key, (shard, tag): (usize, u32), parts: Parts) -> Option<Record> {
        let bytes = parts.to_bytes();
        let sh = &*self.shared;
        let now = sh.clock.now();
        let record = sh
            .format
            .decode_with(bytes, Verify::StructureOnly)
            .ok()
            .filter(|r| !r.is_tombstone() && r.matches(key) && !r.meta().is_expired(now));
        // An idle record still pending is written as queued; its time stays idle, so the
        // first read from the index drops it.
        let record = record.filter(|_| {
            let fresh = sh.read_idle(shard, tag, now);
            if !fresh {
                sh.stats.expire();
            }
            fresh
        });
        match record {
            Some(r) => {
                sh.stats.hit();
                Some(r)
            }
            None => {
                sh.stats.miss();
                None
            }
        }
    }

    /// Whether puts return before the writer wrote their record (all levels but
    /// [`Durability::EveryWrite`]).
    fn early_ack(&self) -> bool {
        self.shared.durability != Durability::EveryWrite
    }

    /// The pending-buffer bytes a record of `len` bytes holds.
    fn room_for(&self, len: usize) -> u32 {
        u32::try_from(len).unwrap_or(u32::MAX).clamp(1, self.shared.max_pending)
    }

    /// Waits for `room` bytes of the pending buffer.
    async fn reserve(&self, room: u32) -> Result<()> {
        match self.shared.room.acquire_many(room).await {
            Ok(permit) => {
                // Given back by the writer once the record is written.
                permit.forget();
                Ok(())
            }
            Err(_) => Err(Error::closed(TIER)),
        }
    }

    /// Hands an encoded record to the writer: staged and returned at once, or (for
    /// [`Durability::EveryWrite`]) acknowledged after the write and its sync.
    async fn store(&self, key: &Key, record: Parts) -> Result<()> {
        let (shard, tag) = locate(key.hash());
        if self.early_ack() {
            let room = self.room_for(record.len());
            self.reserve(room).await?;
            self.shared.submit_staged([StagedPut { shard, tag, record, room }]);
            Ok(())
        } else {
            let (ack, rx) = oneshot::channel();
            self.shared.submit([Op::Put { shard, tag, record, reply: Reply::Ack(ack) }]);
            wait(rx).await
        }
    }

    /// Whether (shard, tag) is pending or indexed: whether a removal has anything to cover.
    /// Pending first: the writer publishes a record's index entry before it drops the record
    /// from the pending buffer, so a key cannot slip between the two checks.
    fn held(&self, shard: usize, tag: u32) -> bool {
        self.shared.pending.contains(shard, tag) || self.shared.index.get(shard, tag).is_some()
    }

    /// Removes `key` because a put replacing it was rejected as already expired.
    fn drop_stale(&self, key: &Key) -> Option<oneshot::Receiver<Result<()>>> {
        let (shard, tag) = locate(key.hash());
        if !self.held(shard, tag) {
            return None;
        }
        Some(self.submit_remove(key, shard, tag))
    }

    /// Waits until every write queued before the call is in the segment files: handed to the
    /// kernel, readable after a process crash, but not synced (use
    /// [`flush`](Tier::flush) for that). With [`Durability::None`] and
    /// [`Durability::Periodic`], `put` returns before the writer thread wrote the record;
    /// this includes the writer's work (benchmarks use it).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed).
    pub async fn wait_written(&self) -> Result<()> {
        self.check_open()?;
        let (ack, rx) = oneshot::channel();
        self.shared.submit([Op::Written { ack }]);
        wait(rx).await
    }

    /// Writes that failed after their `put` had returned `Stored` (each is also counted in the
    /// stats as an error, logged, and returned by the next [`flush`](Tier::flush)).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Records accepted by `put` and not yet written by the writer thread.
    pub fn pending_writes(&self) -> usize {
        self.shared.pending.len()
    }

    /// Queues a tombstone for `key` and the removal of its index entry.
    fn submit_remove(&self, key: &Key, shard: usize, tag: u32) -> oneshot::Receiver<Result<()>> {
        let (ack, rx) = oneshot::channel();
        self.shared.submit([Op::Remove {
            shard,
            tag,
            tombstone: Record::encode_tombstone(key, self.shared.clock.now()),
            force: false,
            reply: Reply::Ack(ack),
        }]);
        rx
    }

    /// Removes `key` without waiting for the writer: its tombstone goes into the pending buffer
    /// (reads miss from now on) and to the writer's queue, like a staged put. A key neither
    /// indexed nor pending has nothing on disk a tombstone must cover, and is not queued.
    async fn remove_staged(&self, key: &Key, shard: usize, tag: u32) -> Result<()> {
        if !self.held(shard, tag) {
            return Ok(());
        }
        let tombstone = Record::encode_tombstone(key, self.shared.clock.now());
        let room = self.room_for(tombstone.len());
        self.reserve(room).await?;
        self.shared.submit_staged_remove(shard, tag, tombstone, room);
        Ok(())
    }

    /// Prepares one put: stamps, checks expiry and size, encodes.
    fn prepare(&self, key: &Key, mut entry: Entry) -> Result<Option<Parts>> {
        let now = self.shared.clock.now();
        entry.meta.stamp(now);
        if entry.is_expired(now) {
            return Ok(None);
        }
        self.check_size(self.shared.format.encoded_len(key, entry.value.len()) as u64)?;
        let record = parts::encode(key, &entry, &self.shared.format)?;
        let (shard, tag) = locate(key.hash());
        self.shared.touch(shard, tag, now);
        Ok(Some(record))
    }

    async fn put_inner(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        self.check_open()?;
        match self.prepare(&key, entry)? {
            None => {
                self.shared.stats.reject();
                if let Some(rx) = self.drop_stale(&key) {
                    wait(rx).await?;
                }
                Ok(PutOutcome::Rejected(Rejection::Expired))
            }
            Some(record) => {
                self.store(&key, record).await?;
                self.shared.stats.insert();
                Ok(PutOutcome::Stored)
            }
        }
    }

    /// `put_many` with early acknowledgement: records are staged in chunks of about 1 MiB, so
    /// the writer writes one chunk while this task encodes the next.
    async fn put_many_staged(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        let mut outcomes = Vec::with_capacity(items.len());
        let mut chunk: Vec<StagedPut> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut stale = Vec::new();
        for (key, entry) in items {
            let record = match self.prepare(&key, entry) {
                Ok(Some(record)) => record,
                Ok(None) => {
                    self.shared.stats.reject();
                    stale.push(key);
                    outcomes.push(PutOutcome::Rejected(Rejection::Expired));
                    continue;
                }
                Err(e) => {
                    // What was accepted so far is still written.
                    self.shared.submit_staged(chunk);
                    return Err(e);
                }
            };
            let (shard, tag) = locate(key.hash());
            let room = self.room_for(record.len());
            match self.shared.room.try_acquire_many(room) {
                Ok(permit) => permit.forget(),
                Err(_) => {
                    // The buffer is full (or closed): hand over what is held, then wait.
                    self.shared.submit_staged(std::mem::take(&mut chunk));
                    chunk_bytes = 0;
                    self.reserve(room).await?;
                }
            }
            chunk_bytes += record.len();
            chunk.push(StagedPut { shard, tag, record, room });
            self.shared.stats.insert();
            outcomes.push(PutOutcome::Stored);
            if chunk_bytes >= PUT_MANY_CHUNK {
                self.shared.submit_staged(std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
        }
        self.shared.submit_staged(chunk);
        for key in stale {
            if let Some(rx) = self.drop_stale(&key) {
                wait(rx).await?;
            }
        }
        Ok(outcomes)
    }

    /// `put_many` for [`Durability::EveryWrite`]: queued in chunks of about 1 MiB, each
    /// acknowledged after its write and sync; at most two chunks are in memory at once.
    async fn put_many_acked(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        let mut outcomes = Vec::with_capacity(items.len());
        let mut ops = Vec::new();
        let mut waits = Vec::new();
        let mut previous: Vec<oneshot::Receiver<Result<()>>> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut stale = Vec::new();
        for (key, entry) in items {
            if chunk_bytes >= PUT_MANY_CHUNK {
                self.shared.submit(std::mem::take(&mut ops));
                chunk_bytes = 0;
                for rx in std::mem::replace(&mut previous, std::mem::take(&mut waits)) {
                    wait(rx).await?;
                    self.shared.stats.insert();
                }
            }
            match self.prepare(&key, entry)? {
                None => {
                    self.shared.stats.reject();
                    stale.push(key);
                    outcomes.push(PutOutcome::Rejected(Rejection::Expired));
                }
                Some(record) => {
                    let (shard, tag) = locate(key.hash());
                    let (ack, rx) = oneshot::channel();
                    chunk_bytes += record.len();
                    ops.push(Op::Put { shard, tag, record, reply: Reply::Ack(ack) });
                    waits.push(rx);
                    outcomes.push(PutOutcome::Stored);
                }
            }
        }
        self.shared.submit(ops);
        for rx in previous.into_iter().chain(waits) {
            wait(rx).await?;
            self.shared.stats.insert();
        }
        for key in stale {
            if let Some(rx) = self.drop_stale(&key) {
                wait(rx).await?;
            }
        }
        Ok(outcomes)
    }

    async fn barrier(&self, close: bool) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        self.shared.submit([if close { Op::Close { ack } } else { Op::Barrier { ack } }]);
        wait(rx).await
    }
}

#[async_trait]
impl Tier for NvmeTier {
    fn name(&self) -> &'static str {
        self.shared.stats.tier()
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        match self.lookup(key, None).await {
            Ok(r) => Ok(r.map(|r| r.to_entry())),
            Err(e) => self.fail(e),
        }
    }

    /// A zero-copy slice of the mapping (with direct reads, of the record read from the
    /// device), after verifying the record's head and chunk table and, of a value of at least
    /// [`CHUNKED_MIN_VALUE`](cache_core::CHUNKED_MIN_VALUE) bytes, only the 64 KiB chunks the
    /// range covers: a 4 KiB range of a 64 MiB value hashes 64 KiB, not 64 MiB. A smaller
    /// value has one checksum and is verified whole, as by `get`. A chunk that fails its check
    /// is a counted corruption and a miss, as in `get`; a corrupt chunk outside the range goes
    /// unnoticed until a read covers it.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        if let Err(e) = check_range(TIER, &range) {
            return self.fail(e);
        }
        if self.shared.direct_reads {
            return match self.get_range_direct(key, &range).await {
                Ok(r) => Ok(r),
                Err(e) => self.fail(e),
            };
        }
        match self.lookup(key, Some(&range)).await {
            Ok(r) => Ok(r.map(|r| slice_range(&r.value(), &range))),
            Err(e) => self.fail(e),
        }
    }

    /// From the pending buffer and the index alone: a key with a pending record other than a
    /// tombstone, or an indexed one, is removed (a tombstone, staged like a put); a key that is
    /// neither has nothing on disk to cover. No record is read from the segments, so with
    /// direct reads a tiered put costs no device read.
    async fn drop_older_copy(&self, key: &Key) -> Result<()> {
        if let Err(e) = self.check_open() {
            return self.fail(e);
        }
        let sh = &*self.shared;
        let (shard, tag) = locate(key.hash());
        let held = match sh.pending.get(shard, tag) {
            // In RAM: a pending tombstone already covers the key.
            Some(parts) => RecordHeader::parse(&parts.head).map_or(true, |h| !h.is_tombstone()),
            None => sh.index.get(shard, tag).is_some(),
        };
        if held { self.remove(key).await } else { Ok(()) }
    }

    async fn contains(&self, key: &Key) -> Result<bool> {
        match self.probe(key).await {
            Ok(r) => Ok(r),
            Err(e) => self.fail(e),
        }
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        match self.lookup(key, None).await {
            Ok(r) => Ok(r),
            Err(e) => self.fail(e),
        }
    }

    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        match self.put_inner(key, entry).await {
            Ok(o) => Ok(o),
            Err(e) => self.fail(e),
        }
    }

    async fn put_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        let result = async {
            self.check_open()?;
            check_record_key(TIER, &key, &record)?;
            if !self.shared.format.stores_as_is(&record) {
                // Plaintext for a sealed namespace, or sealed under a key this tier lacks.
                return self.put_inner(key, record.to_entry()).await;
            }
            let now = self.shared.clock.now();
            if record.meta().is_expired(now) {
                self.shared.stats.reject();
                if let Some(rx) = self.drop_stale(&key) {
                    wait(rx).await?;
                }
                return Ok(PutOutcome::Rejected(Rejection::Expired));
            }
            self.check_size(record.as_bytes().len() as u64)?;
            let (shard, tag) = locate(key.hash());
            self.shared.touch(shard, tag, now);
            self.store(&key, Parts::whole(record.into_bytes())).await?;
            self.shared.stats.insert();
            Ok(PutOutcome::Stored)
        }
        .await;
        match result {
            Ok(o) => Ok(o),
            Err(e) => self.fail(e),
        }
    }

    async fn put_many(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        let result = async {
            self.check_open()?;
            if self.early_ack() {
                self.put_many_staged(items).await
            } else {
                self.put_many_acked(items).await
            }
        }
        .await;
        match result {
            Ok(o) => Ok(o),
            Err(e) => self.fail(e),
        }
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let result = async {
            self.check_open()?;
            let (shard, tag) = locate(key.hash());
            if self.early_ack() {
                self.remove_staged(key, shard, tag).await?;
            } else {
                wait(self.submit_remove(key, shard, tag)).await?;
            }
            self.shared.stats.remove();
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        let result = async {
            self.check_open()?;
            let (ack, rx) = oneshot::channel();
            self.shared.submit([Op::Clear { namespace: namespace.id(), ack }]);
            wait(rx).await
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            bytes_used: self.shared.bytes_used.load(Ordering::Relaxed),
            capacity: Some(self.shared.capacity),
            entries: Some(self.shared.index.len()),
        }
    }

    fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(self.usage())
    }

    async fn flush(&self) -> Result<()> {
        let result = async {
            self.check_open()?;
            self.barrier(false).await
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    async fn close(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.barrier(true).await;
        self.shared.room.close();
        let handle = self.writer.lock().take();
        if let Some(h) = handle {
            // The writer has acknowledged the close and is exiting; joining is immediate.
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    fn set_eviction_sink(&self, sink: Arc<dyn EvictionSink>) -> Result<()> {
        *self.shared.sink.write() = Some(sink);
        Ok(())
    }
}

impl Drop for NvmeTier {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.room.close();
        self.shared.queue.lock().shutdown = true;
        self.shared.queue_cv.notify_all();
        if let Some(h) = self.writer.lock().take() {
            // Waits for queued writes to be written (not synced) and the lock to be released,
            // so the directory can be reopened as soon as the tier is dropped.
            let _ = h.join();
        }
    }
}
