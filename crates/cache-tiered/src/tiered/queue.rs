//! Background writes: the demotion and write-behind queues and their workers, the eviction
//! sinks that feed demotions, and promotions.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cache_core::{
    Entry, ErrorKind, Evicted, EvictionCause, EvictionSink, Key, PutOutcome, Rejection,
};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::{
    policy::{Admission, Promotion},
    tiered::{PutReport, Shared, Slot, TierWrite, ordering::Snap},
};

/// The promotions being written into one tier, by key, with the snapshot each was taken at.
///
/// A promotion checks its snapshot, writes, and checks again, undoing the write if a foreground
/// write or removal ran in between. Until that undo is done the tier may hold the older value,
/// so `get` does not serve this tier's copy of a key while a promotion into it is no longer
/// valid: it reads the tier below instead.
#[derive(Default)]
pub(super) struct Promoting {
    len: AtomicUsize,
    shards: [Mutex<PromotingShard>; 16],
}

/// Key hash prefix → (promotion id, snapshot) of each promotion of the key in flight.
type PromotingShard = HashMap<u64, Vec<(u64, Snap)>>;

impl Promoting {
    fn shard(&self, key: &Key) -> &Mutex<PromotingShard> {
        &self.shards[(key.hash().prefix_u64() >> 60) as usize]
    }

    fn insert(&self, id: u64, key: &Key, snap: Snap) {
        self.len.fetch_add(1, Ordering::AcqRel);
        self.shard(key).lock().entry(key.hash().prefix_u64()).or_default().push((id, snap));
    }

    fn remove(&self, id: u64, key: &Key) {
        let mut shard = self.shard(key).lock();
        let prefix = key.hash().prefix_u64();
        if let Some(list) = shard.get_mut(&prefix) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                shard.remove(&prefix);
            }
        }
        self.len.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether a promotion of `key` is in flight whose snapshot `valid` rejects.
    pub(super) fn any_invalid(&self, key: &Key, valid: impl Fn(Snap) -> bool) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let shard = self.shard(key).lock();
        shard.get(&key.hash().prefix_u64()).is_some_and(|l| l.iter().any(|(_, s)| !valid(*s)))
    }
}

/// The demotions and write-behind jobs waiting in a tier's queue, by key: an evicted entry stays
/// readable until its demotion is written (or dropped), as in the flush buffers of disk caches,
/// and while a job that a later write, removal or clear overtook is landing, its snapshot tells
/// `get` not to read the tier's copy.
#[derive(Default)]
pub(super) struct Queued {
    len: AtomicUsize,
    shards: [Mutex<QueuedShard>; 16],
}

/// Key hash prefix → (job id, key, entry, snapshot taken at eviction).
type QueuedShard = HashMap<u64, (u64, Key, Entry, Snap)>;

impl Queued {
    fn shard(&self, key: &Key) -> &Mutex<QueuedShard> {
        &self.shards[(key.hash().prefix_u64() >> 60) as usize]
    }

    fn insert(&self, id: u64, key: &Key, entry: &Entry, snap: Snap) {
        let old = self
            .shard(key)
            .lock()
            .insert(key.hash().prefix_u64(), (id, key.clone(), entry.clone(), snap));
        if old.is_none() {
            self.len.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets job `id` of `key`, unless a later demotion of the key replaced it.
    fn remove(&self, id: u64, key: &Key) {
        let mut shard = self.shard(key).lock();
        if shard.get(&key.hash().prefix_u64()).is_some_and(|q| q.0 == id) {
            shard.remove(&key.hash().prefix_u64());
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(super) fn get(&self, key: &Key) -> Option<(Entry, Snap)> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let shard = self.shard(key).lock();
        let (_, k, entry, snap) = shard.get(&key.hash().prefix_u64())?;
        (k == key).then(|| (entry.clone(), *snap))
    }
}

/// A write copied from elsewhere (a promotion, demotion or write-behind job).
pub(super) struct Job {
    key: Key,
    entry: Entry,
    snap: Snap,
    kind: JobKind,
    /// The job's entry in the target slot's [`Queued`].
    id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    Demotion,
    WriteBehind,
}

#[derive(Default)]
pub(super) struct CleanSet(Mutex<HashSet<u64>>);

impl CleanSet {
    const MAX: usize = 1 << 20;

    fn mark(&self, key: &Key) {
        let mut s = self.0.lock();
        if s.len() < CleanSet::MAX {
            s.insert(key.hash().prefix_u64());
        }
    }

    pub(super) fn unmark(&self, key: &Key) -> bool {
        self.0.lock().remove(&key.hash().prefix_u64())
    }
}

/// Tells the demotion filter what the tier below the top one evicts, when nothing is demoted
/// from it.
#[derive(Debug)]
pub(super) struct VictimSink {
    pub(super) shared: std::sync::Weak<Shared>,
}

impl EvictionSink for VictimSink {
    fn on_evict(&self, ev: Evicted) {
        if ev.cause == EvictionCause::Capacity
            && let Some(shared) = self.shared.upgrade()
            && let Some(filter) = &shared.demotion
        {
            filter.evicted_below(&ev.key);
        }
    }
}

/// Receives evictions of one tier and queues them for the tier below.
#[derive(Debug)]
pub(super) struct DemotionSink {
    pub(super) from: usize,
    pub(super) tx: Mutex<Option<mpsc::Sender<Job>>>,
    pub(super) shared: std::sync::Weak<Shared>,
}

impl EvictionSink for DemotionSink {
    fn on_evict(&self, ev: Evicted) {
        let Some(shared) = self.shared.upgrade() else { return };
        if self.from == 1
            && ev.cause == EvictionCause::Capacity
            && let Some(filter) = &shared.demotion
        {
            filter.evicted_below(&ev.key);
        }
        let to = self.from + 1;
        let slot = &shared.slots[to];
        if ev.cause == EvictionCause::Expired || ev.entry.is_expired(shared.clock.now()) {
            return;
        }
        let cleared = shared.cleared_at.lock().get(&ev.key.namespace().id()).copied();
        if cleared.is_some_and(|t| ev.entry.meta.created_at <= t) {
            return;
        }
        if shared.slots[self.from].clean.unmark(&ev.key) {
            slot.stats.demotions_skipped_clean.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.from == 0
            && let Some(filter) = &shared.demotion
        {
            let bytes = (ev.key.namespace().as_str().len()
                + ev.key.key_bytes().len()
                + ev.entry.value.len()
                + cache_core::HEADER_LEN) as u64;
            if filter.wants_size(bytes)
                && let Some(capacity) = slot.tier.usage().capacity
            {
                let top = shared.slots[0].tier.usage().capacity.unwrap_or(0);
                filter.resize(top, capacity);
            }
            if !filter.admit(&ev.key) {
                slot.stats.demotions_filtered.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let snap = shared.snap_evicted(&ev.key, &ev.entry);
        let id = shared.job_ids.fetch_add(1, Ordering::Relaxed) + 1;
        slot.queued.insert(id, &ev.key, &ev.entry, snap);
        let key = ev.key.clone();
        let job = Job { snap, key: ev.key, entry: ev.entry, kind: JobKind::Demotion, id };
        let tx = self.tx.lock().clone();
        // Counted as pending before it can be picked up, so `quiesce` never misses it.
        shared.pending.fetch_add(1, Ordering::AcqRel);
        slot.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
        match tx.map(|tx| tx.try_send(job).is_ok()) {
            Some(true) => {}
            Some(false) | None => {
                slot.queued.remove(id, &key);
                slot.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                shared.done();
                slot.stats.demotions_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    tier = slot.tier.name(),
                    "demotion queue full: evicted entry dropped"
                );
            }
        }
    }
}

impl Shared {
    pub(super) fn maybe_promote(
        self: &Arc<Self>,
        key: &Key,
        entry: &Entry,
        found_in: usize,
        snap: Snap,
    ) {
        if self.promotion.on_hit(key, entry, found_in, self.clock.now()) != Promotion::Promote {
            return;
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        let this = self.clone();
        let (key, entry) = (key.clone(), entry.clone());
        tokio::spawn(
            async move {
                this.promote(&key, entry, found_in, snap).await;
                this.done();
            }
            .instrument(tracing::debug_span!("tiered.promote")),
        );
    }

    /// A ranged hit in tier `found_in`: if the promotion policy says so, reads the whole value
    /// from that tier in the background and promotes it as a `get` would (the snapshot taken
    /// before the read still decides whether the copy may land).
    pub(super) fn maybe_promote_range(self: &Arc<Self>, key: &Key, found_in: usize, snap: Snap) {
        if self.promotion.on_range_hit(key, found_in, self.clock.now()) != Promotion::Promote {
            return;
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        let this = self.clone();
        let key = key.clone();
        tokio::spawn(
            async move {
                let slot = &this.slots[found_in];
                if let Ok(Some(entry)) = this.call(slot, slot.tier.get(&key)).await
                    && !entry.is_expired(this.clock.now())
                {
                    this.promote(&key, entry, found_in, snap).await;
                }
                this.done();
            }
            .instrument(tracing::debug_span!("tiered.promote_range")),
        );
    }

    async fn promote(&self, key: &Key, entry: Entry, found_in: usize, snap: Snap) {
        // Nearest tier first, so the value is never in a faster tier without the slower one.
        for j in (0..found_in).rev() {
            let slot = &self.slots[j];
            if self.admit(slot, key, &entry) != Admission::Admit {
                continue;
            }
            // Registered before the first check, so from the moment the write may land until
            // its undo is done, `get` knows not to trust this tier's copy if the check fails.
            let id = self.job_ids.fetch_add(1, Ordering::Relaxed) + 1;
            slot.promoting.insert(id, key, snap);
            let kept = self.promote_into(j, key, &entry, snap).await;
            slot.promoting.remove(id, key);
            if !kept {
                return;
            }
        }
    }

    /// Writes a promoted copy into tier `j`; `false` if the snapshot no longer holds (the copy
    /// was not written, or was undone).
    async fn promote_into(&self, j: usize, key: &Key, entry: &Entry, snap: Snap) -> bool {
        let slot = &self.slots[j];
        if !self.still_valid(key, snap) || self.closed.load(Ordering::Acquire) {
            return false;
        }
        if let Ok(PutOutcome::Stored) =
            self.call(slot, slot.tier.put(key.clone(), entry.clone())).await
        {
            slot.clean.mark(key);
            self.set_stale(j, key, false);
            slot.stats.promotions.fetch_add(1, Ordering::Relaxed);
            slot.stats.promotions_metric.increment(1);
            if !self.still_valid(key, snap) {
                // A write or removal raced us: our copy may be older. Undo it.
                slot.clean.unmark(key);
                let _ = self.call(slot, slot.tier.remove(key)).await;
                return false;
            }
        }
        true
    }

    pub(super) fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Queues the write-behind jobs of a finished put; a full queue turns `Deferred` into
    /// `Rejected(QueueFull)` and drops the older copy in that tier.
    pub(super) async fn enqueue_behind(&self, key: &Key, entry: &Entry, report: &mut PutReport) {
        for (i, slot) in self.slots.iter().enumerate() {
            if report.tiers[i].1 != TierWrite::Deferred {
                continue;
            }
            let snap = self.snap(key);
            let id = self.job_ids.fetch_add(1, Ordering::Relaxed) + 1;
            // Listed like a demotion until it is written and checked: if a removal or a clear
            // overtakes it while it lands, `get` must not read this tier's copy before the
            // undo (the removal leaves the tier marked clean).
            slot.queued.insert(id, key, entry, snap);
            let job = Job {
                key: key.clone(),
                entry: entry.clone(),
                snap,
                kind: JobKind::WriteBehind,
                id,
            };
            let tx = slot.behind.lock().clone();
            self.pending.fetch_add(1, Ordering::AcqRel);
            slot.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
            if tx.map(|tx| tx.try_send(job).is_ok()) != Some(true) {
                slot.queued.remove(id, key);
                slot.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                self.done();
                slot.stats.reject(Rejection::QueueFull);
                report.tiers[i].1 =
                    self.drop_stale(slot, key, TierWrite::Rejected(Rejection::QueueFull)).await;
            }
        }
    }

    pub(super) fn stop_background(&self) {
        for slot in &self.slots {
            slot.behind.lock().take();
        }
        for sink in self.sinks.lock().drain(..) {
            sink.tx.lock().take();
        }
    }
}

/// Most jobs one worker round writes with one `put_many`.
const BATCH_JOBS: usize = 128;
/// Most value bytes one worker round writes with one `put_many`.
const BATCH_BYTES: usize = 4 << 20;

/// Writes queued jobs (demotions or write-behind) into tier `to`, in order.
pub(super) async fn worker(
    shared: Arc<Shared>,
    to: usize,
    mut rx: mpsc::Receiver<Job>,
    max_attempts: u32,
    backoff: Duration,
) {
    let mut batch = Vec::with_capacity(BATCH_JOBS);
    while let Some(job) = rx.recv().await {
        // Take what else is already queued, so a backlog is written in large batches.
        let mut bytes = job.entry.value.len();
        batch.push(job);
        while batch.len() < BATCH_JOBS && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.entry.value.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let n = batch.len();
        shared.slots[to].stats.queue_depth.fetch_sub(n as u64, Ordering::Relaxed);
        let done: Vec<(u64, Key)> = batch.iter().map(|j| (j.id, j.key.clone())).collect();
        run_batch(&shared, to, &mut batch, max_attempts, backoff).await;
        batch.clear();
        for (id, key) in &done {
            shared.slots[to].queued.remove(*id, key);
        }
        for _ in 0..n {
            shared.done();
        }
    }
}

/// Whether `job` should still be written; counts why not.
fn job_wanted(shared: &Shared, slot: &Slot, job: &Job) -> bool {
    if job.entry.is_expired(shared.clock.now()) {
        return false;
    }
    // Superseded: a later write, removal or clear ran or is running.
    if !shared.still_valid(&job.key, job.snap) {
        if job.kind == JobKind::Demotion {
            slot.stats.demotions_superseded.fetch_add(1, Ordering::Relaxed);
        }
        return false;
    }
    if job.kind == JobKind::Demotion && shared.admit(slot, &job.key, &job.entry) != Admission::Admit
    {
        slot.stats.reject(Rejection::Infrequent);
        return false;
    }
    true
}

/// Bookkeeping after `job` was written with `outcome`.
async fn job_written(shared: &Shared, slot: &Slot, to: usize, job: &Job, outcome: PutOutcome) {
    if job.kind == JobKind::Demotion && outcome.is_stored() {
        slot.stats.demotions.fetch_add(1, Ordering::Relaxed);
        slot.stats.demotions_metric.increment(1);
    }
    if !shared.still_valid(&job.key, job.snap) {
        // A write or removal raced the copy: it may be older than what is current. Undo it.
        let _ = shared.call(slot, slot.tier.remove(&job.key)).await;
    } else if job.kind == JobKind::WriteBehind {
        shared.set_stale(to, &job.key, false);
    }
}

/// Writes a batch of queued jobs: one `put_many` for the ones still wanted, and one by one with
/// retries if that fails.
async fn run_batch(
    shared: &Shared,
    to: usize,
    batch: &mut Vec<Job>,
    max_attempts: u32,
    backoff: Duration,
) {
    let slot = &shared.slots[to];
    for job in batch.iter() {
        if job.snap.mid_write.is_some() {
            shared.wait_for_writes(&job.key).await;
        }
    }
    batch.retain(|job| job_wanted(shared, slot, job));
    if batch.len() > 1 {
        let items = batch.iter().map(|j| (j.key.clone(), j.entry.clone())).collect();
        if let Ok(outcomes) = shared.call(slot, slot.tier.put_many(items)).await
            && outcomes.len() == batch.len()
        {
            for (job, outcome) in batch.iter().zip(outcomes) {
                job_written(shared, slot, to, job, outcome).await;
            }
            return;
        }
        // Some entries may have been stored; writing each again below is idempotent.
    }
    for job in batch.drain(..) {
        if shared.still_valid(&job.key, job.snap) {
            write_job(shared, to, job, max_attempts, backoff).await;
        }
    }
}

/// Writes one job that [`job_wanted`] accepted, retrying with backoff.
async fn write_job(shared: &Shared, to: usize, job: Job, max_attempts: u32, backoff: Duration) {
    let slot = &shared.slots[to];
    let mut delay = backoff;
    for attempt in 1..=max_attempts {
        match shared.call(slot, slot.tier.put(job.key.clone(), job.entry.clone())).await {
            Ok(outcome) => {
                job_written(shared, slot, to, &job, outcome).await;
                return;
            }
            Err(e) if e.kind() == ErrorKind::Closed => return,
            Err(e) => {
                if attempt == max_attempts {
                    slot.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        tier = slot.tier.name(),
                        error = %e,
                        attempts = max_attempts,
                        "queued write failed; giving up"
                    );
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                if !shared.still_valid(&job.key, job.snap) {
                    return;
                }
            }
        }
    }
}
