//! The [`Tier`] implementation over `moka::sync::Cache`.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use cache_core::{
    Clock, Entry, Evicted, EvictionCause, EvictionSink, Key, Namespace, PutOutcome, Rejection,
    Result, StatsSnapshot, Tier, TierStats, Timestamp, Usage, check_open, reject_expired,
};
use moka::{Expiry, notification::RemovalCause};
use parking_lot::{Mutex, RwLock};
use tokio::sync::OnceCell;

use crate::builder::{ENTRY_OVERHEAD, EvictionPolicy, MemoryTierBuilder, SeededKeyHash};

/// The tier's default name.
pub(crate) const NAME: &str = "l1";

/// The moka cache behind the tier, hashing keys with the tier's seed.
///
/// moka's `sync::Cache`, not its `future::Cache`: no operation of the tier waits for anything
/// but a short lock, so the async API buys nothing, and the sync cache is the cheaper of the two
/// per call (its write path locks less). A write that finds moka's write log full runs the
/// pending tasks itself or retries after a few microseconds; it never parks the task.
type Moka = moka::sync::Cache<Key, Slot, SeededKeyHash>;

/// What the tier keeps for a key: the entry and, with a time-to-idle, the time of its last
/// access (milliseconds of the tier's clock), shared by the clones moka hands out.
#[derive(Clone)]
struct Slot {
    entry: Entry,
    touched: Option<Arc<AtomicU64>>,
}

impl Slot {
    fn new(entry: Entry, idle: Option<Duration>, now: Timestamp) -> Slot {
        Slot { entry, touched: idle.map(|_| Arc::new(AtomicU64::new(now.as_millis()))) }
    }

    /// Whether the entry went unread for `idle` at `now` (inclusive, as expiry is).
    fn is_idle(&self, idle: Option<Duration>, now: Timestamp) -> bool {
        match (idle, &self.touched) {
            (Some(idle), Some(t)) => {
                Timestamp::from_millis(t.load(Ordering::Relaxed)).saturating_add(idle) <= now
            }
            _ => false,
        }
    }

    fn touch(&self, now: Timestamp) {
        if let Some(t) = &self.touched {
            t.fetch_max(now.as_millis(), Ordering::Relaxed);
        }
    }
}

/// One shared load of a missing key: the first caller runs its loader, the others wait for
/// what it returns (the entry, cached or not, `None` or the loader's error).
type Flight = Arc<OnceCell<Result<Option<Entry>>>>;

/// Takes a finished or abandoned flight out of the map, so the next miss of its key starts its
/// own (callers still waiting keep theirs, and one of them loads if the first gave up).
struct Landing<'a> {
    flights: &'a Mutex<HashMap<Key, Flight>>,
    key: &'a Key,
    flight: &'a Flight,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock();
        if flights.get(self.key).is_some_and(|f| Arc::ptr_eq(f, self.flight)) {
            flights.remove(self.key);
        }
    }
}

/// The RAM tier: a byte-bounded `moka::sync::Cache` of [`Entry`] values.
///
/// Cheap to share behind an `Arc`; all methods take `&self`.
pub struct MemoryTier {
    cache: Moka,
    shared: Arc<Shared>,
    capacity_bytes: u64,
    closed: AtomicBool,
    maintenance: Maintenance,
    flights: Mutex<HashMap<Key, Flight>>,
    /// Whether a miss must reach moka's read log: only TinyLFU's admission counts misses.
    record_misses: bool,
}

/// How often the maintenance thread runs moka's pending tasks.
pub(crate) const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(20);

/// A thread that runs moka's pending tasks (evictions, expirations, the write log) every
/// [`MAINTENANCE_INTERVAL`], whatever the callers do.
///
/// moka has no housekeeping of its own: its pending tasks run inside callers' operations, once
/// enough of them piled up. After a burst of writes and no caller, the evictions it owes would
/// wait: the tier would hold more than its budget, and a tiered cache above it would not see
/// them to demote. (With moka's `future::Cache`, used before, a write waiting for room in the
/// write log could also miss its wake-up and wait forever; the sync cache retries instead.)
struct Maintenance {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Maintenance {
    fn start(cache: Moka) -> Maintenance {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned =
            std::thread::Builder::new().name("cache-l1-maintenance".into()).spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(MAINTENANCE_INTERVAL);
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    cache.run_pending_tasks();
                }
            });
        match spawned {
            Ok(handle) => Maintenance { stop, thread: Some(handle) },
            Err(e) => {
                // Only the timeliness of evictions without callers depends on this thread.
                tracing::warn!(error = %e, "cannot start the RAM tier's maintenance thread");
                Maintenance { stop, thread: None }
            }
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    #[cfg(test)]
    pub(crate) fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// State the eviction listener and the expiry policy share with the tier.
struct Shared {
    clock: Arc<dyn Clock>,
    /// [`MemoryTierBuilder::time_to_idle`].
    idle: Option<Duration>,
    stats: TierStats,
    sink: RwLock<Option<Arc<dyn EvictionSink>>>,
}

impl fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTier")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("entries", &self.cache.entry_count())
            .field("weighted_size", &self.cache.weighted_size())
            .finish()
    }
}

/// The weight of an entry in bytes, or `None` if it does not fit moka's `u32` weights.
fn weight(key: &Key, entry: &Entry) -> Option<u32> {
    u32::try_from(entry_weight(key, entry.value.len())).ok()
}

/// The bytes a key with a value of `value_len` bytes costs against a [`MemoryTier`]'s budget:
/// [`ENTRY_OVERHEAD`] plus the namespace, key and value lengths. Benches give raw moka the same
/// weigher through this function.
pub fn entry_weight(key: &Key, value_len: usize) -> u64 {
    ENTRY_OVERHEAD
        + key.namespace().as_str().len() as u64
        + key.key_bytes().len() as u64
        + value_len as u64
}

/// moka's per-entry expiry: the entry's own absolute expiry time, or the time-to-idle from its
/// last access if that comes first.
struct EntryExpiry {
    shared: Arc<Shared>,
}

impl EntryExpiry {
    fn remaining(&self, slot: &Slot) -> Option<Duration> {
        let ttl = slot.entry.meta.expires_at.map(|t| self.shared.clock.now().until(t));
        match (ttl, self.shared.idle) {
            (Some(ttl), Some(idle)) => Some(ttl.min(idle)),
            (ttl, idle) => ttl.or(idle),
        }
    }
}

impl Expiry<Key, Slot> for EntryExpiry {
    fn expire_after_create(&self, _key: &Key, slot: &Slot, _now: Instant) -> Option<Duration> {
        self.remaining(slot)
    }

    fn expire_after_read(
        &self,
        _key: &Key,
        slot: &Slot,
        _now: Instant,
        current: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        if self.shared.idle.is_some() { self.remaining(slot) } else { current }
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        slot: &Slot,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(slot)
    }
}

impl MemoryTier {
    /// A builder for a tier holding at most `capacity_bytes` of keys, values and overhead.
    pub fn builder(capacity_bytes: u64) -> MemoryTierBuilder {
        MemoryTierBuilder::new(capacity_bytes)
    }

    pub(crate) fn from_builder(b: MemoryTierBuilder) -> MemoryTier {
        let shared = Arc::new(Shared {
            clock: b.clock,
            idle: b.idle,
            stats: TierStats::new(b.name),
            sink: RwLock::new(b.sink),
        });
        let listener_shared = shared.clone();
        let mut builder = moka::sync::Cache::builder()
            .max_capacity(b.capacity_bytes)
            .initial_capacity(b.initial_entries)
            .weigher(|k: &Key, s: &Slot| weight(k, &s.entry).unwrap_or(u32::MAX))
            .eviction_policy(match b.policy {
                EvictionPolicy::TinyLfu => moka::policy::EvictionPolicy::tiny_lfu(),
                EvictionPolicy::Lru => moka::policy::EvictionPolicy::lru(),
            });
        // moka's expiry timer runs on real time. Given the TTL left on a clock that does not
        // (a manual clock in tests), it would expire entries that clock still calls live, as
        // soon as a caller is slower than the TTL. Expiry and idleness are checked on every
        // read either way; moka's timer only frees the memory of entries nobody reads.
        if shared.clock.is_real_time() {
            builder = builder.expire_after(EntryExpiry { shared: shared.clone() });
        }
        let cache = builder
            .eviction_listener(move |key: Arc<Key>, slot: Slot, cause: RemovalCause| {
                let entry = slot.entry;
                let cause = match cause {
                    RemovalCause::Size => EvictionCause::Capacity,
                    RemovalCause::Expired => EvictionCause::Expired,
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                match cause {
                    EvictionCause::Capacity => listener_shared.stats.evict(1),
                    EvictionCause::Expired => listener_shared.stats.expire(),
                }
                let sink = listener_shared.sink.read().clone();
                if let Some(sink) = sink {
                    sink.on_evict(Evicted { key: Key::clone(&key), entry, cause });
                }
            })
            .build_with_hasher(SeededKeyHash::new(b.hash_seed));
        MemoryTier {
            maintenance: Maintenance::start(cache.clone()),
            cache,
            shared,
            capacity_bytes: b.capacity_bytes,
            closed: AtomicBool::new(false),
            flights: Mutex::new(HashMap::new()),
            record_misses: b.policy == EvictionPolicy::TinyLfu,
        }
    }

    fn check_open(&self) -> Result<()> {
        check_open(self.name(), &self.closed).inspect_err(|err| self.shared.stats.error(err))
    }

    /// Looks up without counting: `None` for a miss or an expired or idle entry (which is
    /// dropped). A read restarts the entry's idle time; a probe (`touch` false) does not.
    fn lookup(&self, key: &Key, touch: bool) -> Option<Entry> {
        if !self.record_misses && !self.cache.contains_key(key) {
            // Under LRU a miss changes nothing in moka, but `get` would still log it, and the
            // log's housekeeping runs inline: `contains_key` logs nothing.
            return None;
        }
        let slot = self.cache.get(key)?;
        if slot.entry.meta.expires_at.is_none() && self.shared.idle.is_none() {
            // No clock read on the hot path of entries that cannot expire.
            return Some(slot.entry);
        }
        let now = self.shared.clock.now();
        if slot.entry.is_expired(now) || slot.is_idle(self.shared.idle, now) {
            self.cache.invalidate(key);
            self.shared.stats.expire();
            return None;
        }
        if touch {
            slot.touch(now);
        }
        Some(slot.entry)
    }

    fn insert(&self, key: Key, entry: Entry, now: Timestamp) {
        self.cache.insert(key, Slot::new(entry, self.shared.idle, now));
    }

    /// Returns the entry for `key`, running `loader` on a miss; concurrent callers for the same
    /// missing key wait for one loader run and share its result (the same shape as
    /// `TieredCache::get_or_load`).
    ///
    /// The loaded entry is cached unless it is already expired or too large for the tier; it is
    /// returned either way. `Ok(None)` from the loader ("no such value") is returned and not
    /// cached. A loader error reaches every waiter and is not cached.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed), or the loader's error.
    pub async fn get_or_load<F, Fut>(&self, key: Key, loader: F) -> Result<Option<Entry>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Entry>>>,
    {
        self.check_open()?;
        if let Some(hit) = self.lookup(&key, true) {
            self.shared.stats.hit();
            return Ok(Some(hit));
        }
        self.shared.stats.miss();
        let flight = self.flights.lock().entry(key.clone()).or_default().clone();
        let _landing = Landing { flights: &self.flights, key: &key, flight: &flight };
        flight
            .get_or_init(|| async {
                // Loaded by an earlier flight between the lookup above and this one.
                if let Some(hit) = self.lookup(&key, true) {
                    return Ok(Some(hit));
                }
                let Some(mut entry) = loader().await? else { return Ok(None) };
                let now = self.shared.clock.now();
                entry.meta.stamp(now);
                if entry.is_expired(now) || !self.fits(&key, &entry) {
                    // Returned to every waiter, not cached.
                    self.shared.stats.reject();
                    return Ok(Some(entry));
                }
                self.insert(key.clone(), entry.clone(), now);
                self.shared.stats.insert();
                Ok(Some(entry))
            })
            .await
            .clone()
    }

    fn fits(&self, key: &Key, entry: &Entry) -> bool {
        weight(key, entry).is_some_and(|w| u64::from(w) <= self.capacity_bytes)
    }

    /// The underlying moka cache's entry count (approximate until pending tasks run).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[async_trait]
impl Tier for MemoryTier {
    fn name(&self) -> &'static str {
        self.shared.stats.tier()
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.check_open()?;
        let hit = self.lookup(key, true);
        if hit.is_some() {
            self.shared.stats.hit();
        } else {
            self.shared.stats.miss();
        }
        Ok(hit)
    }

    async fn put(&self, key: Key, mut entry: Entry) -> Result<PutOutcome> {
        self.check_open()?;
        let now = self.shared.clock.now();
        entry.meta.stamp(now);
        let rejection = reject_expired(&entry.meta, now, &self.shared.stats).or_else(|| {
            (!self.fits(&key, &entry)).then(|| {
                self.shared.stats.reject();
                Rejection::TooLarge
            })
        });
        if let Some(reason) = rejection {
            // The rejected write supersedes any older value: never serve the stale one.
            self.cache.invalidate(&key);
            return Ok(PutOutcome::Rejected(reason));
        }
        self.insert(key, entry, now);
        self.shared.stats.insert();
        Ok(PutOutcome::Stored)
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        self.cache.invalidate(key);
        self.shared.stats.remove();
        Ok(())
    }

    async fn contains(&self, key: &Key) -> Result<bool> {
        self.check_open()?;
        Ok(self.lookup(key, false).is_some())
    }

    /// Removes the namespace's entries now, one by one (O(entries in the tier)).
    ///
    /// moka's lazy `invalidate_entries_if` is not used on purpose: lazily invalidated entries
    /// can still be evicted, and so demoted, after the clear returned.
    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        self.check_open()?;
        let doomed: Vec<Key> = self
            .cache
            .iter()
            .filter(|(k, _)| k.namespace() == namespace)
            .map(|(k, _)| Key::clone(&k))
            .collect();
        for key in doomed {
            self.cache.invalidate(&key);
        }
        Ok(())
    }

    fn usage(&self) -> Usage {
        Usage {
            bytes_used: self.cache.weighted_size(),
            capacity: Some(self.capacity_bytes),
            entries: Some(self.cache.entry_count()),
        }
    }

    fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(self.usage())
    }

    async fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.cache.run_pending_tasks();
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.maintenance.stop();
            self.cache.invalidate_all();
            self.cache.run_pending_tasks();
        }
        Ok(())
    }

    fn set_eviction_sink(&self, sink: Arc<dyn EvictionSink>) -> Result<()> {
        *self.shared.sink.write() = Some(sink);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
