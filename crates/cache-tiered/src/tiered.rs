//! The [`TieredCache`]: read-through over ordered tiers with promotion, demotion, write
//! policies, single-flight loads and outage tolerance.
//!
//! # Ordering against stale values
//!
//! Every key maps to one of [`STRIPES`] counters. `put`, `remove` and `clear_namespace` bump the
//! key's counter (or the global clear epoch) before they touch any tier and again after the last
//! tier, and count themselves as in flight in between. Background writes that copy a value found
//! earlier — promotions, demotions and write-behind jobs — take a snapshot of the counters before
//! the value was read, and check before and after their write that the counters are unchanged
//! and no foreground write, removal or clear is in flight: if one ran or is running, the
//! background write is skipped or undone. So an older value never overwrites a newer one and a
//! removed value is never resurrected; the price of a collision on a stripe is a miss, never a
//! wrong value. Removals go bottom-up, so a reader that still finds the value in an upper tier
//! finds it only while the removal is in progress.
//!
//! A tier may evict the very entry a put is storing (moka's admission policy turns newcomers
//! away). Its snapshot is taken while that put is in flight, so it records the entry's identity
//! ([`ident`]); the demotion goes ahead if exactly one write ran on the stripe since, and it was
//! the put of that entry. A demotion waiting in its queue is served by `get` under the same
//! check, so an evicted entry is never invisible while it moves down.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use cache_core::{
    Admission, AdmissionPolicy, Clock, Entry, Error, ErrorKind, Evicted, EvictionCause,
    EvictionSink, Key, Namespace, NamespaceId, Promotion, PromotionPolicy, PutOutcome, Rejection,
    Result, StatsSnapshot, Tier, TierStats, Timestamp, Usage,
};
use futures::{
    FutureExt,
    future::{BoxFuture, Shared as SharedFuture},
};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tracing::Instrument;

use crate::{
    builder::TieredBuilder,
    policy::{Filter, WritePolicy},
    stats::{SlotStats, TierReport, TieredStats},
};

const NAME: &str = "tiered";
/// Number of per-key ordering counters.
pub(crate) const STRIPES: usize = 1 << 14;

/// What happened to one tier during a `put`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierWrite {
    /// Written synchronously.
    Stored,
    /// Queued for write-behind.
    Deferred,
    /// Not written, for this reason (counted).
    Rejected(Rejection),
    /// This tier is not written on `put` (its policy is `OnEviction` or `Skip`); any older
    /// value it held was removed.
    Skipped,
    /// The tier failed or timed out (counted); any older value may remain there until it
    /// expires, is evicted, or is removed.
    Failed(ErrorKind),
}

/// The outcome of [`TieredCache::put_report`], tier by tier (fastest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReport {
    /// One outcome per tier, with the tier's name.
    pub tiers: Vec<(&'static str, TierWrite)>,
}

impl PutReport {
    /// `Stored` if any tier stored or queued the value, otherwise the first rejection.
    pub fn outcome(&self) -> PutOutcome {
        if self.tiers.iter().any(|(_, w)| matches!(w, TierWrite::Stored | TierWrite::Deferred)) {
            return PutOutcome::Stored;
        }
        let reason = self.tiers.iter().find_map(|(_, w)| match w {
            TierWrite::Rejected(r) => Some(*r),
            _ => None,
        });
        PutOutcome::Rejected(reason.unwrap_or(Rejection::QueueFull))
    }
}

/// A cache over an ordered list of tiers, fastest first. Cheap to clone (all clones share the
/// same cache).
///
/// Built with [`TieredCache::builder`]; see the crate docs for an example.
#[derive(Clone)]
pub struct TieredCache {
    shared: Arc<Shared>,
    /// Drops the background machinery when the last clone goes away.
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("tiers", &self.shared.slots.iter().map(|s| s.tier.name()).collect::<Vec<_>>())
            .field("strict", &self.shared.strict)
            .finish()
    }
}

pub(crate) struct Slot {
    pub(crate) tier: Arc<dyn Tier>,
    pub(crate) write: WritePolicy,
    pub(crate) admission: Vec<Arc<dyn AdmissionPolicy>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) stats: SlotStats,
    /// Keys whose copy in this tier came from a tier below and has not changed since.
    clean: CleanSet,
    behind: Mutex<Option<mpsc::Sender<Job>>>,
    /// Demotions queued for this tier and not written yet, readable by `get` in the meantime.
    queued: Queued,
    /// Promotions into this tier that are being written (or undone) right now.
    promoting: Promoting,
}

/// The promotions being written into one tier, by key, with the snapshot each was taken at.
///
/// A promotion checks its snapshot, writes, and checks again, undoing the write if a foreground
/// write or removal ran in between. Until that undo is done the tier may hold the older value,
/// so `get` does not serve this tier's copy of a key while a promotion into it is no longer
/// valid: it reads the tier below instead.
#[derive(Default)]
struct Promoting {
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
    fn any_invalid(&self, key: &Key, valid: impl Fn(Snap) -> bool) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let shard = self.shard(key).lock();
        shard.get(&key.hash().prefix_u64()).is_some_and(|l| l.iter().any(|(_, s)| !valid(*s)))
    }
}

/// The demotions waiting in a tier's queue, by key: an evicted entry stays readable until its
/// demotion is written (or dropped), as in the flush buffers of disk caches.
#[derive(Default)]
struct Queued {
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

    fn get(&self, key: &Key) -> Option<(Entry, Snap)> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let shard = self.shard(key).lock();
        let (_, k, entry, snap) = shard.get(&key.hash().prefix_u64())?;
        (k == key).then(|| (entry.clone(), *snap))
    }
}

/// The state shared by the cache handle and its background tasks.
pub(crate) struct Shared {
    pub(crate) slots: Vec<Slot>,
    clock: Arc<dyn Clock>,
    promotion: Arc<dyn PromotionPolicy>,
    strict: bool,
    stats: TierStats,
    stripes: Box<[AtomicU64]>,
    /// Source of demotion job ids.
    job_ids: AtomicU64,
    /// Per stripe: the [`ident`] of the value of the last put that began (0 after a removal).
    put_ident: Box<[AtomicU64]>,
    inflight: Box<[AtomicU32]>,
    clear_epoch: AtomicU64,
    clearing: AtomicUsize,
    /// When each namespace was last cleared: evictions of entries created no later are not
    /// demoted (an upper tier may still evict entries a clear could not reach in time).
    cleared_at: Mutex<HashMap<NamespaceId, Timestamp>>,
    flights: Mutex<HashMap<Key, Flight<Result<Option<Entry>>>>>,
    negative_ttl: Option<Duration>,
    negative: Mutex<HashMap<Key, Timestamp>>,
    pending: AtomicUsize,
    idle: Notify,
    closed: AtomicBool,
    sinks: Mutex<Vec<Arc<DemotionSink>>>,
    /// (tier, key) pairs whose copy in that tier may be older than the latest write, because a
    /// write or removal there failed. Gets ignore those copies until a later write succeeds.
    stale: Mutex<HashSet<(usize, u64)>>,
    stale_len: AtomicUsize,
    /// S3-FIFO's filter on demotions out of the top tier, if configured.
    /// The demotion filter between the top tier and the one below (`None`: demote all).
    demotion: Option<Filter>,
}

type Flight<T> = SharedFuture<BoxFuture<'static, T>>;

/// A write copied from elsewhere (a promotion, demotion or write-behind job).
struct Job {
    key: Key,
    entry: Entry,
    snap: Snap,
    kind: JobKind,
    /// For demotions: the job's entry in the target slot's [`Queued`] (0 for other jobs).
    id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    Demotion,
    WriteBehind,
}

/// The ordering counters that cover one key, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snap {
    stripe: u64,
    clear: u64,
    /// Set when the snapshot was taken while a write was in flight on the key's stripe: the
    /// identity ([`ident`]) of the value being copied, so the copy may still go ahead if that
    /// in-flight write was the put of this very value (see [`Shared::still_valid`]).
    mid_write: Option<u64>,
}

/// Identifies one put's entry: the key, the value's allocation and length, and the metadata. A
/// copy of the entry (a demoted one, say) shares the allocation, and while the copy is alive no
/// other value can reuse it; a re-put of the same `Bytes` differs in its stamped metadata unless
/// it is the same entry in effect.
fn ident(key: &Key, entry: &Entry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash().prefix_u64().hash(&mut h);
    (entry.value.as_ptr() as usize).hash(&mut h);
    entry.value.len().hash(&mut h);
    entry.meta.created_at.hash(&mut h);
    entry.meta.expires_at.hash(&mut h);
    entry.meta.version.hash(&mut h);
    h.finish() | 1
}

#[derive(Default)]
struct CleanSet(Mutex<HashSet<u64>>);

impl CleanSet {
    const MAX: usize = 1 << 20;

    fn mark(&self, key: &Key) {
        let mut s = self.0.lock();
        if s.len() < CleanSet::MAX {
            s.insert(key.hash().prefix_u64());
        }
    }

    fn unmark(&self, key: &Key) -> bool {
        self.0.lock().remove(&key.hash().prefix_u64())
    }
}

/// Tells the demotion filter what the tier below the top one evicts, when nothing is demoted
/// from it.
#[derive(Debug)]
struct VictimSink {
    shared: std::sync::Weak<Shared>,
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
struct DemotionSink {
    from: usize,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    shared: std::sync::Weak<Shared>,
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

struct Guard {
    shared: Arc<Shared>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.stop_background();
    }
}

impl TieredCache {
    /// A builder; add tiers fastest first.
    pub fn builder() -> TieredBuilder {
        TieredBuilder::default()
    }

    pub(crate) fn from_builder(b: TieredBuilder) -> Result<TieredCache> {
        let slots = b
            .tiers
            .into_iter()
            .map(|t| Slot {
                stats: SlotStats::new(t.tier.name()),
                tier: t.tier,
                write: t.write.expect("defaulted by the builder"),
                admission: t.admission,
                timeout: t.timeout,
                clean: CleanSet::default(),
                behind: Mutex::new(None),
                queued: Queued::default(),
                promoting: Promoting::default(),
            })
            .collect::<Vec<_>>();
        let demotion_capacity = slots
            .iter()
            .take(2)
            .map(|s| s.tier.usage().capacity.unwrap_or(0))
            .fold(0u64, u64::saturating_add);
        let shared = Arc::new(Shared {
            slots,
            clock: b.clock,
            promotion: b.promotion,
            strict: b.strict,
            stats: TierStats::new(NAME),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            job_ids: AtomicU64::new(0),
            put_ident: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            inflight: (0..STRIPES).map(|_| AtomicU32::new(0)).collect(),
            clear_epoch: AtomicU64::new(0),
            clearing: AtomicUsize::new(0),
            cleared_at: Mutex::default(),
            flights: Mutex::default(),
            negative_ttl: b.negative_ttl,
            negative: Mutex::default(),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            closed: AtomicBool::new(false),
            sinks: Mutex::default(),
            stale: Mutex::default(),
            stale_len: AtomicUsize::new(0),
            demotion: Filter::new(b.demotion_filter, demotion_capacity),
        });
        for (i, slot) in shared.slots.iter().enumerate() {
            if let WritePolicy::Behind { queue_len, max_attempts, backoff } = slot.write {
                let (tx, rx) = mpsc::channel(queue_len.max(1));
                *slot.behind.lock() = Some(tx);
                tokio::spawn(worker(shared.clone(), i, rx, max_attempts.max(1), backoff));
            }
            if i > 0 && slot.write == WritePolicy::OnEviction {
                let (tx, rx) = mpsc::channel(b.demotion_queue_len.max(1));
                let sink = Arc::new(DemotionSink {
                    from: i - 1,
                    tx: Mutex::new(Some(tx)),
                    shared: Arc::downgrade(&shared),
                });
                shared.slots[i - 1].tier.set_eviction_sink(sink.clone()).map_err(|e| {
                    Error::invalid(
                        NAME,
                        format!(
                            "tier {} is written on eviction, but tier {} above it cannot report evictions",
                            slot.tier.name(),
                            shared.slots[i - 1].tier.name()
                        ),
                    )
                    .with_source(e)
                })?;
                shared.sinks.lock().push(sink);
                tokio::spawn(worker(shared.clone(), i, rx, 1, Duration::ZERO));
            }
        }
        let below_demotes = shared.slots.get(2).is_some_and(|s| s.write == WritePolicy::OnEviction);
        if let (Some(filter), Some(below)) = (&shared.demotion, shared.slots.get(1))
            && filter.needs_victims()
            && !below_demotes
        {
            // The filter compares candidates with what the tier below lets go; a tier that
            // demotes further reports it through its demotion sink instead.
            let sink = Arc::new(VictimSink { shared: Arc::downgrade(&shared) });
            below.tier.set_eviction_sink(sink).map_err(|e| {
                Error::invalid(
                    NAME,
                    format!(
                        "the TinyLFU demotion filter needs tier {} to report its evictions",
                        below.tier.name()
                    ),
                )
                .with_source(e)
            })?;
        }
        Ok(TieredCache { _guard: Arc::new(Guard { shared: shared.clone() }), shared })
    }

    /// The tiers, fastest first.
    pub fn tiers(&self) -> Vec<Arc<dyn Tier>> {
        self.shared.slots.iter().map(|s| s.tier.clone()).collect()
    }

    /// Stores `entry` under `key` in every tier as its write policy says, and reports what
    /// happened in each.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`]; in strict mode, the first tier failure.
    pub async fn put_report(&self, key: Key, entry: Entry) -> Result<PutReport> {
        let span =
            tracing::debug_span!("tiered.put", ns = %key.namespace(), size = entry.value.len());
        self.shared.put(key, entry).instrument(span).await
    }

    /// Returns the entry for `key` from the first tier that has it, or runs `loader`.
    ///
    /// Concurrent callers for a key missing from every tier share one run of `loader`; its
    /// value is stored through `put`, and its error reaches every waiter and is not cached.
    /// `Ok(None)` from the loader means "no such value" and is cached for the negative TTL if
    /// one is configured.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], the loader's error, or in strict mode a tier failure.
    pub async fn get_or_load<F, Fut>(&self, key: Key, loader: F) -> Result<Option<Entry>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Entry>>> + Send + 'static,
    {
        if let Some(hit) = self.get(&key).await? {
            return Ok(Some(hit));
        }
        if self.shared.negative_ttl.is_some() {
            let now = self.shared.clock.now();
            let mut neg = self.shared.negative.lock();
            match neg.get(&key) {
                Some(&until) if until > now => return Ok(None),
                Some(_) => {
                    neg.remove(&key);
                }
                None => {}
            }
        }
        let flight = {
            let mut flights = self.shared.flights.lock();
            if let Some(f) = flights.get(&key) {
                f.clone()
            } else {
                let cache = self.clone();
                let k = key.clone();
                let fut = async move {
                    let loaded = loader().await;
                    let result = match loaded {
                        Ok(Some(entry)) => {
                            // The value is returned even if no tier accepts it.
                            let _ = cache.shared.put(k.clone(), entry.clone()).await;
                            Ok(Some(entry))
                        }
                        Ok(None) => {
                            if let Some(ttl) = cache.shared.negative_ttl {
                                let until = cache.shared.clock.now().saturating_add(ttl);
                                let mut neg = cache.shared.negative.lock();
                                if neg.len() >= 1 << 16 {
                                    neg.clear();
                                }
                                neg.insert(k.clone(), until);
                            }
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    };
                    cache.shared.flights.lock().remove(&k);
                    result
                }
                .boxed()
                .shared();
                flights.insert(key.clone(), fut.clone());
                fut
            }
        };
        flight.await
    }

    /// Waits until every queued promotion, demotion and write-behind job has finished.
    pub async fn quiesce(&self) {
        loop {
            // A `Notified` receives `notify_waiters` from the moment it is created, so the job
            // that brings `pending` to zero after the check below still wakes this wait.
            let idle = self.shared.idle.notified();
            if self.shared.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Counters of the cache and of each tier.
    pub fn tiered_stats(&self) -> TieredStats {
        let s = &self.shared;
        TieredStats {
            overall: s.stats.snapshot(self.usage()),
            tiers: s
                .slots
                .iter()
                .map(|slot| TierReport::new(slot.tier.stats(), &slot.stats))
                .collect(),
        }
    }
}

impl Shared {
    fn stripe_index(key: &Key) -> usize {
        (key.hash().prefix_u64() as usize) % STRIPES
    }

    fn stripe(&self, key: &Key) -> &AtomicU64 {
        &self.stripes[Shared::stripe_index(key)]
    }

    /// Whether a background copy taken at `snap` may still be written: nothing wrote, removed
    /// or cleared the key since, and nothing is doing so now.
    ///
    /// A snapshot taken in the middle of a write (a tier evicting the value a put is storing,
    /// e.g. an admission policy turning it away at once) is still valid when exactly that one
    /// write has finished since, and it was the put of this value: its identity is the stripe's
    /// last put identity. Anything else on the stripe in between makes the copy invalid.
    fn still_valid(&self, key: &Key, snap: Snap) -> bool {
        let idx = Shared::stripe_index(key);
        if self.clearing.load(Ordering::SeqCst) != 0
            || self.inflight[idx].load(Ordering::SeqCst) != 0
        {
            return false;
        }
        let now = self.stripes[idx].load(Ordering::SeqCst);
        let clear = self.clear_epoch.load(Ordering::SeqCst);
        if clear != snap.clear {
            return false;
        }
        match snap.mid_write {
            None => now == snap.stripe,
            Some(id) => now == snap.stripe + 1 && self.put_ident[idx].load(Ordering::SeqCst) == id,
        }
    }

    fn snap(&self, key: &Key) -> Snap {
        Snap {
            stripe: self.stripe(key).load(Ordering::SeqCst),
            clear: self.clear_epoch.load(Ordering::SeqCst),
            mid_write: None,
        }
    }

    /// Waits (up to 100 ms) until no foreground write is in flight on `key`'s stripe, so a copy
    /// whose snapshot was taken in the middle of a put can be judged once that put is over.
    async fn wait_for_writes(&self, key: &Key) {
        let idx = Shared::stripe_index(key);
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut round = 0u32;
        while self.inflight[idx].load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            if round < 16 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            round += 1;
        }
    }

    /// The snapshot for copying `entry` of `key` out of a tier that just evicted it.
    fn snap_evicted(&self, key: &Key, entry: &Entry) -> Snap {
        let idx = Shared::stripe_index(key);
        let in_flight = self.inflight[idx].load(Ordering::SeqCst) != 0;
        let mut snap = self.snap(key);
        if in_flight {
            snap.mid_write = Some(ident(key, entry));
        }
        snap
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            let err = Error::closed(NAME);
            self.stats.error(&err);
            return Err(err);
        }
        Ok(())
    }

    /// Runs one call into a tier with its timeout, counting faults.
    async fn call<T>(&self, slot: &Slot, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let result = match slot.timeout {
            None => fut.await,
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Unavailable,
                    slot.tier.name(),
                    format!("no answer within {t:?}"),
                )),
            },
        };
        if let Err(e) = &result
            && (e.kind() != ErrorKind::Closed || !self.closed.load(Ordering::Acquire))
        {
            slot.stats.fault(e);
            tracing::debug!(tier = slot.tier.name(), error = %e, "tier call failed");
        }
        result
    }

    fn admit(&self, slot: &Slot, key: &Key, entry: &Entry) -> Admission {
        let now = self.clock.now();
        for policy in &slot.admission {
            match policy.admit(key, entry, now) {
                Admission::Admit => {}
                other => return other,
            }
        }
        Admission::Admit
    }

    async fn get(self: &Arc<Self>, key: &Key) -> Result<Option<Entry>> {
        self.check_open()?;
        if let Some(filter) = &self.demotion {
            filter.requested(key);
        }
        // A RAM hit is always ready: take part in tokio's cooperative budget, so a caller that
        // loops over hits still lets the demotion and promotion tasks run.
        tokio::task::coop::consume_budget().await;
        let mut snap = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if i == 1 {
                // Taken before any lower tier is read: see the module docs.
                snap = Some(self.snap(key));
            }
            if let Some((entry, queued_snap)) = slot.queued.get(key) {
                if !self.still_valid(key, queued_snap) {
                    // A demotion that a later write or removal overtook may be landing in this
                    // tier right now, before its undo: do not read this tier's copy.
                    continue;
                }
                if !entry.is_expired(self.clock.now()) {
                    // Evicted from the tier above, on its way to this one: serve it from the
                    // queue.
                    slot.stats.served.fetch_add(1, Ordering::Relaxed);
                    slot.stats.served_from_queue.fetch_add(1, Ordering::Relaxed);
                    self.stats.hit();
                    if let Some(filter) = &self.demotion {
                        filter.outcome(true);
                    }
                    return Ok(Some(entry));
                }
            }
            // Time one get in eight per thread: two clock reads per RAM hit cost more than the
            // histogram is worth, and a sample describes the distribution as well.
            let started = sample_latency().then(Instant::now);
            let found = self.call(slot, slot.tier.get(key)).await;
            if let Some(started) = started {
                slot.stats.get_latency.record(started.elapsed());
            }
            match found {
                Ok(Some(entry)) => {
                    if entry.meta.expires_at.is_some() && entry.is_expired(self.clock.now()) {
                        continue;
                    }
                    if self.is_stale(i, key)
                        || slot.promoting.any_invalid(key, |snap| self.still_valid(key, snap))
                    {
                        continue;
                    }
                    slot.stats.served.fetch_add(1, Ordering::Relaxed);
                    self.stats.hit();
                    if let Some(filter) = &self.demotion {
                        filter.outcome(true);
                        filter.hit(i, key);
                    }
                    if let Some(snap) = snap {
                        self.maybe_promote(key, &entry, i, snap);
                    }
                    return Ok(Some(entry));
                }
                Ok(None) => {}
                Err(e) => {
                    if self.strict {
                        self.stats.error(&e);
                        return Err(e);
                    }
                }
            }
        }
        self.stats.miss();
        if let Some(filter) = &self.demotion {
            filter.outcome(false);
        }
        Ok(None)
    }

    fn maybe_promote(self: &Arc<Self>, key: &Key, entry: &Entry, found_in: usize, snap: Snap) {
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

    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Records whether tier `i` holds the latest write for `key`.
    fn set_stale(&self, i: usize, key: &Key, stale: bool) {
        if !stale && self.stale_len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut set = self.stale.lock();
        let changed = if stale {
            set.insert((i, key.hash().prefix_u64()))
        } else {
            set.remove(&(i, key.hash().prefix_u64()))
        };
        if changed {
            self.stale_len.store(set.len(), Ordering::Release);
        }
    }

    fn is_stale(&self, i: usize, key: &Key) -> bool {
        self.stale_len.load(Ordering::Acquire) > 0
            && self.stale.lock().contains(&(i, key.hash().prefix_u64()))
    }

    /// Starts a foreground write of `key`: a put of `entry`, or a removal when `None`.
    fn begin_write(&self, key: &Key, entry: Option<&Entry>) {
        let idx = Shared::stripe_index(key);
        self.inflight[idx].fetch_add(1, Ordering::SeqCst);
        self.put_ident[idx].store(entry.map_or(0, |e| ident(key, e)), Ordering::SeqCst);
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
    }

    fn end_write(&self, key: &Key) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
        self.inflight[Shared::stripe_index(key)].fetch_sub(1, Ordering::SeqCst);
    }

    async fn put(self: &Arc<Self>, key: Key, mut entry: Entry) -> Result<PutReport> {
        self.check_open()?;
        tokio::task::coop::consume_budget().await;
        let now = self.clock.now();
        entry.meta.stamp(now);
        if entry.is_expired(now) {
            // Nothing to store, but an older value must not outlive this write.
            self.remove(&key).await?;
            self.stats.reject();
            let tiers =
                self.slots.iter().map(|s| (s.tier.name(), TierWrite::Rejected(Rejection::Expired)));
            return Ok(PutReport { tiers: tiers.collect() });
        }
        self.begin_write(&key, Some(&entry));
        let mut report = PutReport { tiers: Vec::with_capacity(self.slots.len()) };
        let mut first_error = None;
        if let Some(filter) = &self.demotion {
            filter.written(&key);
        }
        for (i, slot) in self.slots.iter().enumerate() {
            slot.clean.unmark(&key);
            let outcome = self.put_one(slot, &key, &entry).await;
            // A queued or failed write leaves an older copy in this tier until the write lands.
            self.set_stale(i, &key, matches!(outcome, TierWrite::Failed(_) | TierWrite::Deferred));
            if let TierWrite::Rejected(r) = &outcome {
                slot.stats.reject(*r);
            }
            if let (TierWrite::Failed(_), None) = (&outcome, &first_error) {
                first_error = Some(slot.tier.name());
            }
            report.tiers.push((slot.tier.name(), outcome));
        }
        self.end_write(&key);
        self.enqueue_behind(&key, &entry, &mut report).await;
        match report.outcome() {
            PutOutcome::Stored => self.stats.insert(),
            PutOutcome::Rejected(_) => self.stats.reject(),
        }
        if let (true, Some(tier)) = (self.strict, first_error) {
            let err =
                Error::new(ErrorKind::Unavailable, NAME, format!("tier {tier} failed the write"));
            self.stats.error(&err);
            return Err(err);
        }
        Ok(report)
    }

    async fn put_one(&self, slot: &Slot, key: &Key, entry: &Entry) -> TierWrite {
        match slot.write {
            WritePolicy::Skip | WritePolicy::OnEviction => {
                // Drop an older copy so it is never served; `contains` first, because it is an
                // in-memory lookup on disk tiers while a remove writes a tombstone.
                let stale = self.call(slot, slot.tier.contains(key)).await;
                return match stale {
                    Ok(false) => TierWrite::Skipped,
                    Ok(true) => match self.call(slot, slot.tier.remove(key)).await {
                        Ok(()) => TierWrite::Skipped,
                        Err(e) => TierWrite::Failed(e.kind()),
                    },
                    Err(e) => TierWrite::Failed(e.kind()),
                };
            }
            WritePolicy::Through | WritePolicy::Behind { .. } => {}
        }
        match self.admit(slot, key, entry) {
            Admission::Admit => {}
            Admission::Reject(r) => {
                return self.drop_stale(slot, key, TierWrite::Rejected(r)).await;
            }
            Admission::Defer(_) => {
                return self
                    .drop_stale(slot, key, TierWrite::Rejected(Rejection::RateLimited))
                    .await;
            }
        }
        if let WritePolicy::Behind { .. } = slot.write {
            // Queued by `enqueue_behind` once the put's own ordering bump is done.
            return TierWrite::Deferred;
        }
        match self.call(slot, slot.tier.put(key.clone(), entry.clone())).await {
            Ok(PutOutcome::Stored) => TierWrite::Stored,
            // The tier already dropped any older value when it rejected the new one.
            Ok(PutOutcome::Rejected(r)) => TierWrite::Rejected(r),
            Err(e) => TierWrite::Failed(e.kind()),
        }
    }

    /// Queues the write-behind jobs of a finished put; a full queue turns `Deferred` into
    /// `Rejected(QueueFull)` and drops the older copy in that tier.
    async fn enqueue_behind(&self, key: &Key, entry: &Entry, report: &mut PutReport) {
        for (i, slot) in self.slots.iter().enumerate() {
            if report.tiers[i].1 != TierWrite::Deferred {
                continue;
            }
            let job = Job {
                key: key.clone(),
                entry: entry.clone(),
                snap: self.snap(key),
                kind: JobKind::WriteBehind,
                id: 0,
            };
            let tx = slot.behind.lock().clone();
            self.pending.fetch_add(1, Ordering::AcqRel);
            slot.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
            if tx.map(|tx| tx.try_send(job).is_ok()) != Some(true) {
                slot.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                self.done();
                slot.stats.reject(Rejection::QueueFull);
                report.tiers[i].1 =
                    self.drop_stale(slot, key, TierWrite::Rejected(Rejection::QueueFull)).await;
            }
        }
    }

    /// A write this tier will not take: remove the older value so it is not served.
    async fn drop_stale(&self, slot: &Slot, key: &Key, outcome: TierWrite) -> TierWrite {
        match self.call(slot, slot.tier.remove(key)).await {
            Ok(()) => outcome,
            Err(e) => TierWrite::Failed(e.kind()),
        }
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        self.begin_write(key, None);
        let mut failed = None;
        for (i, slot) in self.slots.iter().enumerate().rev() {
            slot.clean.unmark(key);
            let result = self.call(slot, slot.tier.remove(key)).await;
            self.set_stale(i, key, result.is_err());
            if let Err(e) = result {
                failed.get_or_insert(e);
            }
        }
        self.end_write(key);
        self.stats.remove();
        self.negative.lock().remove(key);
        match failed {
            None => Ok(()),
            Some(e) => {
                self.stats.error(&e);
                Err(e)
            }
        }
    }

    async fn clear_namespace(&self, ns: &Namespace) -> Result<()> {
        self.check_open()?;
        self.clearing.fetch_add(1, Ordering::SeqCst);
        self.clear_epoch.fetch_add(1, Ordering::SeqCst);
        self.cleared_at.lock().insert(ns.id(), self.clock.now());
        let mut failed = None;
        for slot in self.slots.iter().rev() {
            if let Err(e) = self.call(slot, slot.tier.clear_namespace(ns)).await {
                failed.get_or_insert(e);
            }
        }
        self.cleared_at.lock().insert(ns.id(), self.clock.now());
        self.clear_epoch.fetch_add(1, Ordering::SeqCst);
        self.clearing.fetch_sub(1, Ordering::SeqCst);
        self.negative.lock().retain(|k, _| k.namespace() != ns);
        match failed {
            None => Ok(()),
            Some(e) => {
                self.stats.error(&e);
                Err(e)
            }
        }
    }

    fn stop_background(&self) {
        for slot in &self.slots {
            slot.behind.lock().take();
        }
        for sink in self.sinks.lock().drain(..) {
            sink.tx.lock().take();
        }
    }
}

/// How long `close` waits for background writes.
const CLOSE_QUIESCE: Duration = Duration::from_secs(30);

/// Whether this get's latency goes into the per-tier histogram (one in eight, per thread).
fn sample_latency() -> bool {
    thread_local! {
        static GETS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    GETS.with(|n| {
        let v = n.get().wrapping_add(1);
        n.set(v);
        v % 8 == 0
    })
}

/// Most jobs one worker round writes with one `put_many`.
const BATCH_JOBS: usize = 128;
/// Most value bytes one worker round writes with one `put_many`.
const BATCH_BYTES: usize = 4 << 20;

/// Writes queued jobs (demotions or write-behind) into tier `to`, in order.
async fn worker(
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
        let done: Vec<(u64, Key)> =
            batch.iter().filter(|j| j.id != 0).map(|j| (j.id, j.key.clone())).collect();
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

#[async_trait]
impl Tier for TieredCache {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let span = tracing::debug_span!("tiered.get", ns = %key.namespace());
        self.shared.get(key).instrument(span).await
    }

    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        Ok(self.put_report(key, entry).await?.outcome())
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let span = tracing::debug_span!("tiered.remove", ns = %key.namespace());
        self.shared.remove(key).instrument(span).await
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        let span = tracing::debug_span!("tiered.clear_namespace", ns = %namespace);
        self.shared.clear_namespace(namespace).instrument(span).await
    }

    fn usage(&self) -> Usage {
        let mut total = Usage { bytes_used: 0, capacity: Some(0), entries: None };
        for slot in &self.shared.slots {
            let u = slot.tier.usage();
            total.bytes_used += u.bytes_used;
            total.capacity = match (total.capacity, u.capacity) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        total
    }

    fn stats(&self) -> StatsSnapshot {
        let mut s = self.shared.stats.snapshot(self.usage());
        for slot in &self.shared.slots {
            let t = slot.tier.stats();
            s.evictions += t.evictions;
            s.expirations += t.expirations;
            s.corrupted += t.corrupted;
        }
        s
    }

    async fn flush(&self) -> Result<()> {
        self.shared.check_open()?;
        self.quiesce().await;
        for slot in &self.shared.slots {
            slot.tier.flush().await?;
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // Background writes get a bounded time to land: a close must not hang on a job that
        // never finishes (what is still queued after that is dropped, and said so).
        if tokio::time::timeout(CLOSE_QUIESCE, self.quiesce()).await.is_err() {
            tracing::warn!(
                pending = self.shared.pending.load(Ordering::Acquire),
                "close: background writes still running after {CLOSE_QUIESCE:?}; closing anyway"
            );
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.stop_background();
        let mut failed = None;
        for slot in &self.shared.slots {
            if let Err(e) = slot.tier.close().await {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests;
