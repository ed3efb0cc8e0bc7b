//! The [`TieredCache`]: read-through over ordered tiers with promotion, demotion, write
//! policies, single-flight loads and outage tolerance.
//!
//! The rest lives in submodules: the ordering state (`ordering`), the background queues and
//! promotions (`queue`), `get_or_load` (`load`) and the put report (`report`).

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Clock, Entry, Error, ErrorKind, Key, Namespace, NamespaceId, PutOutcome, Rejection, Result,
    StatsSnapshot, Tier, TierStats, Timestamp, Usage, check_range, slice_range,
};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tracing::Instrument;

use crate::{
    builder::TieredBuilder,
    policy::{Admission, AdmissionPolicy, Filter, PromotionPolicy, ServeStale, WritePolicy},
    stats::{SlotStats, TierReport, TieredStats},
};

mod load;
mod ordering;
mod queue;
mod report;
mod view;

use self::{
    load::Flight,
    ordering::STRIPES,
    queue::{CleanSet, DemotionSink, Job, Promoting, Queued, VictimSink, worker},
};
pub use self::{
    report::{PutReport, TierWrite},
    view::FrontTiers,
};

const NAME: &str = "tiered";

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
    /// Per stripe: the [`ident`](ordering::ident) of the value of the last put that began (0
    /// after a removal).
    put_ident: Box<[AtomicU64]>,
    inflight: Box<[AtomicU32]>,
    clear_epoch: AtomicU64,
    clearing: AtomicUsize,
    /// When each namespace was last cleared: evictions of entries created no later are not
    /// demoted (an upper tier may still evict entries a clear could not reach in time).
    cleared_at: Mutex<HashMap<NamespaceId, Timestamp>>,
    flights: Mutex<HashMap<Key, Flight<Result<Option<Entry>>>>>,
    negative_ttl: Option<Duration>,
    serve_stale: Option<ServeStale>,
    /// Stale entries `get_or_load` served: while reloading them, and when the loader failed.
    served_stale: [AtomicU64; 2],
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
    ///
    /// ```
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::TieredCache;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(64 << 20).build())
    ///     .tier(MemoryTier::builder(1 << 30).build())
    ///     .build()?;
    /// assert_eq!(cache.tiers().len(), 2);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
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
            serve_stale: b.serve_stale,
            served_stale: Default::default(),
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
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::TieredCache;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).name("hot").build())
    ///     .tier(MemoryTier::builder(16 << 20).name("warm").build())
    ///     .build()?;
    /// let key = Key::new("docs", "k")?;
    /// assert!(cache.put(key.clone(), Entry::new("v")).await?.is_stored());
    /// let tiers = cache.tiers();
    /// assert_eq!(tiers.iter().map(|t| t.name()).collect::<Vec<_>>(), ["hot", "warm"]);
    /// for tier in &tiers {
    ///     assert!(tier.contains(&key).await?, "written through to {}", tier.name());
    /// }
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn tiers(&self) -> Vec<Arc<dyn Tier>> {
        self.shared.slots.iter().map(|s| s.tier.clone()).collect()
    }

    /// Stores `entry` under `key` in every tier as its write policy says, and reports what
    /// happened in each.
    ///
    /// ```
    /// use cache_core::{Entry, Key, PutOutcome};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TierWrite, TieredCache, WritePolicy};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).name("hot").build())
    ///     .tier(TierOptions::new(MemoryTier::builder(16 << 20).name("cold").build())
    ///         .write(WritePolicy::behind()))
    ///     .build()?;
    /// let report = cache.put_report(Key::new("docs", "k")?, Entry::new("v")).await?;
    /// assert_eq!(report.tiers, [("hot", TierWrite::Stored), ("cold", TierWrite::Deferred)]);
    /// assert_eq!(report.outcome(), PutOutcome::Stored);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`]; in strict mode, the first tier failure.
    pub async fn put_report(&self, key: Key, entry: Entry) -> Result<PutReport> {
        let span =
            tracing::debug_span!("tiered.put", ns = %key.namespace(), size = entry.value.len());
        self.shared.put(key, entry).instrument(span).await
    }

    /// Waits until every queued promotion, demotion and write-behind job has finished.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cache_core::{Entry, Key, Tier};
    /// # use cache_l1::MemoryTier;
    /// # use cache_tiered::{TierOptions, TieredCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let top = Arc::new(MemoryTier::builder(1 << 20).build());
    /// let below = Arc::new(MemoryTier::builder(16 << 20).build());
    /// let cache = TieredCache::builder()
    ///     .tier(TierOptions::from_arc(top.clone()))
    ///     .tier(TierOptions::from_arc(below.clone()))
    ///     .build()?;
    /// let key = Key::new("docs", "deep")?;
    /// assert!(below.put(key.clone(), Entry::new("v")).await?.is_stored());
    /// // A hit below the top tier: the copy up is written in the background.
    /// assert!(cache.get(&key).await?.is_some());
    /// cache.quiesce().await;
    /// assert!(top.contains(&key).await?, "the promotion has landed");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
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
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cache_core::{Entry, Key, Tier};
    /// # use cache_l1::MemoryTier;
    /// # use cache_tiered::{TierOptions, TieredCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let below = Arc::new(MemoryTier::builder(16 << 20).build());
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).build())
    ///     .tier(TierOptions::from_arc(below.clone()))
    ///     .build()?;
    /// let key = Key::new("docs", "deep")?;
    /// assert!(below.put(key.clone(), Entry::new("v")).await?.is_stored());
    /// assert!(cache.get(&key).await?.is_some());
    /// assert!(cache.get(&Key::new("docs", "absent")?).await?.is_none());
    /// cache.quiesce().await;
    /// let stats = cache.tiered_stats();
    /// assert_eq!((stats.overall.hits, stats.overall.misses), (1, 1));
    /// assert_eq!(stats.tiers[1].served, 1, "the hit came from the lower tier");
    /// assert_eq!(stats.tiers[0].promotions, 1, "and was copied into the top tier");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn tiered_stats(&self) -> TieredStats {
        let s = &self.shared;
        TieredStats {
            overall: s.stats.snapshot(self.usage()),
            served_stale: s.served_stale[0].load(Ordering::Relaxed),
            served_stale_on_error: s.served_stale[1].load(Ordering::Relaxed),
            tiers: s
                .slots
                .iter()
                .map(|slot| TierReport::new(slot.tier.stats(), &slot.stats))
                .collect(),
        }
    }
}

impl Shared {
    fn check_open(&self) -> Result<()> {
        cache_core::check_open(NAME, &self.closed).inspect_err(|err| self.stats.error(err))
    }

    /// Runs one call into a tier with its timeout, counting faults.
    async fn call<T>(&self, slot: &Slot, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let result = match slot.timeout {
            None => fut.await,
            Some(t) => {
                let mut fut = std::pin::pin!(fut);
                // Most calls finish at their first poll (a hit in RAM or in the page cache):
                // they need no timer, and so no clock read.
                let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                match first {
                    Poll::Ready(r) => r,
                    Poll::Pending => match tokio::time::timeout(t, fut).await {
                        Ok(r) => r,
                        Err(_) => Err(Error::new(
                            ErrorKind::Unavailable,
                            slot.tier.name(),
                            format!("no answer within {t:?}"),
                        )),
                    },
                }
            }
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
        Ok(self.read(key, None).await?.map(|hit| match hit {
            Hit::Whole(entry) => entry,
            Hit::Part(_) => unreachable!("a read without a range returns whole entries"),
        }))
    }

    async fn get_range(self: &Arc<Self>, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        check_range(NAME, &range)?;
        Ok(self.read(key, Some(&range)).await?.map(|hit| match hit {
            Hit::Whole(entry) => slice_range(&entry.value, &range),
            Hit::Part(bytes) => bytes,
        }))
    }

    /// The read path of `get` and, with `range`, of `get_range`: top-down, each tier read with
    /// `get`, or with `get_range` when a range is asked for (the tier then reads and verifies
    /// only that part where it can).
    async fn read(self: &Arc<Self>, key: &Key, range: Option<&Range<u64>>) -> Result<Option<Hit>> {
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
                // Taken before any lower tier is read: see "Ordering against stale values" in the
                // crate docs.
                snap = Some(self.snap(key));
            }
            if let Some((entry, queued_snap)) = slot.queued.get(key) {
                if !self.still_valid(key, queued_snap) {
                    // A demotion or write-behind job that a later write, removal or clear
                    // overtook may be landing in this tier right now, before its undo: do not
                    // read this tier's copy.
                    continue;
                }
                if !entry.is_expired(self.clock.now()) {
                    // On its way to this tier (evicted from the tier above, or written behind):
                    // serve it from the queue.
                    slot.stats.served.fetch_add(1, Ordering::Relaxed);
                    slot.stats.served_from_queue.fetch_add(1, Ordering::Relaxed);
                    self.stats.hit();
                    if let Some(filter) = &self.demotion {
                        filter.outcome(true);
                    }
                    return Ok(Some(Hit::Whole(entry)));
                }
            }
            // Time one get in eight per thread: two clock reads per RAM hit cost more than the
            // histogram is worth, and a sample describes the distribution as well.
            let started = sample_latency().then(Instant::now);
            let found = match range {
                None => self.call(slot, slot.tier.get(key)).await.map(|e| e.map(Hit::Whole)),
                Some(r) => self
                    .call(slot, slot.tier.get_range(key, r.clone()))
                    .await
                    .map(|b| b.map(Hit::Part)),
            };
            if let Some(started) = started {
                slot.stats.get_latency.record(started.elapsed());
            }
            match found {
                Ok(Some(hit)) => {
                    // A ranged read's tier checked the expiry itself.
                    if let Hit::Whole(entry) = &hit
                        && entry.meta.expires_at.is_some()
                        && entry.is_expired(self.clock.now())
                    {
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
                        match &hit {
                            Hit::Whole(entry) => self.maybe_promote(key, entry, i, snap),
                            Hit::Part(_) => self.maybe_promote_range(key, i, snap),
                        }
                    }
                    return Ok(Some(hit));
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
                // Drop an older copy so it is never served (the tier decides how: most ask
                // `contains` first, the NVMe tier its index, without reading the record).
                return match self.call(slot, slot.tier.drop_older_copy(key)).await {
                    Ok(()) => TierWrite::Skipped,
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

    /// A write this tier will not take: remove the older value so it is not served.
    async fn drop_stale(&self, slot: &Slot, key: &Key, outcome: TierWrite) -> TierWrite {
        match self.call(slot, slot.tier.remove(key)).await {
            Ok(()) => outcome,
            Err(e) => TierWrite::Failed(e.kind()),
        }
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.remove_in(key, self.slots.len()).await
    }

    /// Removes `key` from the first `count` tiers, bottom-up, as one foreground write: a
    /// promotion or demotion of the key that read it before is not written afterwards.
    async fn remove_in(&self, key: &Key, count: usize) -> Result<()> {
        self.check_open()?;
        self.begin_write(key, None);
        let mut failed = None;
        for (i, slot) in self.slots[..count].iter().enumerate().rev() {
            slot.clean.unmark(key);
            let result = self.call(slot, slot.tier.remove(key)).await;
            self.set_stale(i, key, result.is_err());
            if let Err(e) = result {
                failed.get_or_insert(e);
            }
        }
        self.end_write(key);
        if count == self.slots.len() {
            // A drop from the front tiers (an invalidation) is not a removal from the cache.
            self.stats.remove();
        }
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
        self.clear_in(ns, self.slots.len()).await
    }

    /// Clears `ns` in the first `count` tiers, bottom-up; background copies that read an entry
    /// of it before are not written afterwards. Only a clear of every tier stamps the
    /// namespace's clear time, which keeps older entries out of demotions for good.
    async fn clear_in(&self, ns: &Namespace, count: usize) -> Result<()> {
        self.check_open()?;
        let every_tier = count == self.slots.len();
        self.clearing.fetch_add(1, Ordering::SeqCst);
        self.clear_epoch.fetch_add(1, Ordering::SeqCst);
        if every_tier {
            self.cleared_at.lock().insert(ns.id(), self.clock.now());
        }
        let mut failed = None;
        for slot in self.slots[..count].iter().rev() {
            if let Err(e) = self.call(slot, slot.tier.clear_namespace(ns)).await {
                failed.get_or_insert(e);
            }
        }
        if every_tier {
            self.cleared_at.lock().insert(ns.id(), self.clock.now());
        }
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

/// What a read found: a whole entry, or the range a ranged read asked a tier for.
enum Hit {
    Whole(Entry),
    Part(Bytes),
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

    /// Top-down like `get`, each tier asked for the range ([`Tier::get_range`]: the NVMe tier
    /// verifies only the chunks it covers, the object tier issues a ranged GET). A ranged hit
    /// below the top tier is promoted when the promotion policy's
    /// [`on_range_hit`](crate::policy::PromotionPolicy::on_range_hit) says so: the whole value is
    /// then read from that tier in the background and promoted as after a `get`, so the tiers
    /// above never hold part of a value as if it were whole.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        let span = tracing::debug_span!("tiered.get_range", ns = %key.namespace());
        self.shared.get_range(key, range).instrument(span).await
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

    /// Waits for the background jobs, then flushes the tiers top-down, waiting after each for
    /// the demotions its flush queued: a RAM tier's flush runs its pending evictions, and what
    /// they demote must land, and the tier below run its own, before the flush returns (else
    /// the tier below holds more than its budget until its next maintenance, and a demoted
    /// entry is not yet durable).
    async fn flush(&self) -> Result<()> {
        self.shared.check_open()?;
        self.quiesce().await;
        for slot in &self.shared.slots {
            slot.tier.flush().await?;
            self.quiesce().await;
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
