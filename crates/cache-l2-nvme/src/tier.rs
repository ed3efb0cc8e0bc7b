//! [`NvmeTier`]: the [`Tier`] implementation, its shared state and the read path.
//!
//! Reads run on the caller's task: an index lookup under a shard read lock, a `Bytes` slice of
//! the segment mapping, an xxh3 checksum (when verification is on) and a key comparison. They
//! take no lock the writer holds across IO and never wait for a sync. Writes are encoded on
//! the caller's task and handed to the writer thread (`flush.rs`); the caller awaits the
//! acknowledgement without blocking the executor.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use bytes::Bytes;
use cache_core::{
    Clock, Entry, Error, Key, Namespace, NamespaceId, PutOutcome, Record, Rejection, Result,
    StatsSnapshot, Tier, TierStats, Usage, Verify, async_trait, check_record_key,
};
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::oneshot;

use crate::{
    builder::{Durability, NvmeTierBuilder},
    error::{NvmeError, TIER},
    format::SEGMENT_HEADER_LEN,
    index::{Index, MAX_RECORD_LEN, locate},
    segment::Segment,
};

/// `put_many` queues its records to the writer in chunks of about this many bytes.
const PUT_MANY_CHUNK: usize = 1 << 20;

/// The acknowledgement channel of one write operation.
pub(crate) type Ack = oneshot::Sender<Result<()>>;

/// A request to the writer thread.
pub(crate) enum Op {
    /// Append `record` and point the index at it.
    Put { shard: usize, tag: u32, record: Bytes, ack: Ack },
    /// Append a tombstone (if the key may be on disk, or always with `force`) and drop the
    /// index entry.
    Remove { shard: usize, tag: u32, tombstone: Bytes, force: bool, ack: Option<Ack> },
    /// Mark a namespace cleared at the current log position.
    Clear { namespace: NamespaceId, ack: Ack },
    /// Make everything acknowledged so far durable.
    Barrier { ack: Ack },
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
    pub(crate) reinsert_hits: bool,
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
        self.queue_cv.notify_one();
    }
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
    pub(crate) fn open(builder: NvmeTierBuilder) -> Result<NvmeTier> {
        crate::recover::open(builder).map_err(Error::from)
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
    pub fn index_memory_bytes(&self) -> u64 {
        self.shared.index.memory_bytes()
    }

    /// Entries reinserted at reclaim because they were hit.
    pub fn reinserted(&self) -> u64 {
        self.shared.reinserted.load(Ordering::Relaxed)
    }

    fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) { Err(Error::closed(TIER)) } else { Ok(()) }
    }

    fn fail<T>(&self, e: Error) -> Result<T> {
        self.shared.stats.error(&e);
        Err(e)
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

    /// The read path shared by `get` and `get_record`: a validated record or a miss.
    fn lookup(&self, key: &Key) -> Result<Option<Record>> {
        self.check_open()?;
        let sh = &*self.shared;
        let (shard, tag) = locate(key.hash());
        let Some(slot) = sh.index.get(shard, tag) else {
            sh.stats.miss();
            return Ok(None);
        };
        if sh.cleared(&key.namespace().id(), slot.lsn()) {
            sh.index.remove_if(shard, tag, slot);
            sh.stats.miss();
            return Ok(None);
        }
        let bytes = {
            let segments = sh.segments.read();
            let Some(seg) = segments.get(&slot.segment) else {
                drop(segments);
                sh.stats.miss();
                return Ok(None);
            };
            slot.range_in(&seg.data).map(|range| seg.data.slice(range))
        };
        let record =
            bytes.ok_or(()).and_then(|b| Record::decode_with(b, sh.verify).map_err(|_| ()));
        let record = match record {
            Ok(r) => r,
            Err(()) => {
                sh.stats.corrupt();
                sh.stats.miss();
                if sh.index.remove_if(shard, tag, slot) {
                    // Leave a tombstone so a restart's scan cannot bring back an older version.
                    sh.submit([Op::Remove {
                        shard,
                        tag,
                        tombstone: Record::encode_tombstone(key, sh.clock.now()),
                        force: true,
                        ack: None,
                    }]);
                }
                tracing::warn!(
                    segment = slot.segment,
                    offset = slot.offset,
                    "corrupt record read as a miss"
                );
                return Ok(None);
            }
        };
        if record.is_tombstone() || !record.matches(key) {
            sh.stats.miss();
            return Ok(None);
        }
        if record.meta().is_expired(sh.clock.now()) {
            if sh.index.remove_if(shard, tag, slot) {
                sh.stats.expire();
            }
            sh.stats.miss();
            return Ok(None);
        }
        if sh.reinsert_hits && !slot.hit() {
            sh.index.mark_hit(shard, tag, slot);
        }
        sh.stats.hit();
        Ok(Some(record))
    }

    /// Validates and queues a put of an encoded record; returns the ack receiver.
    fn queue_put(&self, key: &Key, record: Bytes) -> Result<oneshot::Receiver<Result<()>>> {
        let (shard, tag) = locate(key.hash());
        let (ack, rx) = oneshot::channel();
        self.shared.submit([Op::Put { shard, tag, record, ack }]);
        Ok(rx)
    }

    /// Removes `key` because a put replacing it was rejected as already expired.
    fn drop_stale(&self, key: &Key) -> Option<oneshot::Receiver<Result<()>>> {
        let (shard, tag) = locate(key.hash());
        self.shared.index.get(shard, tag)?;
        Some(self.submit_remove(key, shard, tag))
    }

    /// Queues a tombstone for `key` and the removal of its index entry.
    fn submit_remove(&self, key: &Key, shard: usize, tag: u32) -> oneshot::Receiver<Result<()>> {
        let (ack, rx) = oneshot::channel();
        self.shared.submit([Op::Remove {
            shard,
            tag,
            tombstone: Record::encode_tombstone(key, self.shared.clock.now()),
            force: false,
            ack: Some(ack),
        }]);
        rx
    }

    /// Prepares one put: stamps, checks expiry and size, encodes.
    fn prepare(&self, key: &Key, mut entry: Entry) -> Result<Option<Bytes>> {
        let now = self.shared.clock.now();
        entry.meta.stamp(now);
        if entry.is_expired(now) {
            return Ok(None);
        }
        self.check_size(Record::encoded_len(key, entry.value.len()) as u64)?;
        Ok(Some(Record::encode(key, &entry)))
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
                wait(self.queue_put(&key, record)?).await?;
                self.shared.stats.insert();
                Ok(PutOutcome::Stored)
            }
        }
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
        TIER
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        match self.lookup(key) {
            Ok(r) => Ok(r.map(|r| r.to_entry())),
            Err(e) => self.fail(e),
        }
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        match self.lookup(key) {
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
            if record.meta().is_expired(self.shared.clock.now()) {
                self.shared.stats.reject();
                if let Some(rx) = self.drop_stale(&key) {
                    wait(rx).await?;
                }
                return Ok(PutOutcome::Rejected(Rejection::Expired));
            }
            self.check_size(record.as_bytes().len() as u64)?;
            wait(self.queue_put(&key, record.into_bytes())?).await?;
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
            // Encode and queue in chunks of about 1 MiB: the writer writes one chunk while this
            // task encodes the next, and at most two chunks are in memory at once.
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
                        ops.push(Op::Put { shard, tag, record, ack });
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
            wait(self.submit_remove(key, shard, tag)).await?;
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
}

impl Drop for NvmeTier {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.queue.lock().shutdown = true;
        self.shared.queue_cv.notify_all();
        if let Some(h) = self.writer.lock().take() {
            // Waits for queued writes to be written (not synced) and the lock to be released,
            // so the directory can be reopened as soon as the tier is dropped.
            let _ = h.join();
        }
    }
}
