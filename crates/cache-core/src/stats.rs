//! Per-tier counters: lock-free atomics read as a [`StatsSnapshot`], mirrored to the `metrics` facade.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use metrics::Counter;

use crate::error::{Error, ErrorKind};

/// How full a tier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes the tier accounts against its budget (values, keys and per-entry overhead).
    pub bytes_used: u64,
    /// The byte budget, or `None` if the tier is unbounded.
    pub capacity: Option<u64>,
    /// Live entries, where the tier knows it cheaply.
    pub entries: Option<u64>,
}

/// A point-in-time copy of a tier's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// The tier's name.
    pub tier: &'static str,
    /// Gets that returned a value.
    pub hits: u64,
    /// Gets that returned nothing (expired and corrupt entries included).
    pub misses: u64,
    /// Values stored.
    pub inserts: u64,
    /// Explicit removals.
    pub removes: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Entries dropped because they expired.
    pub expirations: u64,
    /// Puts the tier declined (too large, already expired, admission).
    pub rejections: u64,
    /// Entries found corrupt (each is also a miss).
    pub corrupted: u64,
    /// Errors returned, by kind, in [`ErrorKind::ALL`] order.
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Usage at the time of the snapshot.
    pub usage: Usage,
}

impl Usage {
    /// The usage of several tiers together: bytes summed, the budget `None` if any tier is
    /// unbounded, the entry count `None` if any tier does not count them.
    ///
    /// ```
    /// use cache_core::Usage;
    ///
    /// let ram = Usage { bytes_used: 10, capacity: Some(100), entries: Some(1) };
    /// let bucket = Usage { bytes_used: 90, capacity: None, entries: None };
    /// assert_eq!(Usage::sum([ram, ram]), Usage { bytes_used: 20, capacity: Some(200), entries: Some(2) });
    /// assert_eq!(Usage::sum([ram, bucket]), Usage { bytes_used: 100, capacity: None, entries: None });
    /// ```
    pub fn sum(parts: impl IntoIterator<Item = Usage>) -> Usage {
        let mut total = Usage { bytes_used: 0, capacity: Some(0), entries: Some(0) };
        for u in parts {
            total.bytes_used += u.bytes_used;
            total.capacity = total.capacity.zip(u.capacity).map(|(a, b)| a + b);
            total.entries = total.entries.zip(u.entries).map(|(a, b)| a + b);
        }
        total
    }
}

impl StatsSnapshot {
    /// Errors of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    /// Hits divided by lookups, or 0 with no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 }
    }

    /// Adds `other`'s counters to these (not its name or usage): the counters of a cache made of
    /// several tiers.
    ///
    /// ```
    /// use cache_core::StatsSnapshot;
    ///
    /// let mut total = StatsSnapshot { tier: "both", ..StatsSnapshot::default() };
    /// total.add_counters(&StatsSnapshot { hits: 3, misses: 1, ..StatsSnapshot::default() });
    /// total.add_counters(&StatsSnapshot { hits: 1, misses: 3, ..StatsSnapshot::default() });
    /// assert_eq!((total.tier, total.hits, total.misses), ("both", 4, 4));
    /// assert_eq!(total.hit_ratio(), 0.5);
    /// ```
    pub fn add_counters(&mut self, other: &StatsSnapshot) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.inserts += other.inserts;
        self.removes += other.removes;
        self.evictions += other.evictions;
        self.expirations += other.expirations;
        self.rejections += other.rejections;
        self.corrupted += other.corrupted;
        for (sum, n) in self.errors.iter_mut().zip(other.errors) {
            *sum += n;
        }
    }
}

/// One counter: an atomic for snapshots and a `metrics` handle for exporters.
#[derive(Debug)]
struct Pair {
    value: AtomicU64,
    metric: Counter,
}

impl Pair {
    fn new(name: &'static str, tier: &'static str) -> Pair {
        Pair { value: AtomicU64::new(0), metric: metrics::counter!(name, "tier" => tier) }
    }

    fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
        self.metric.increment(n);
    }

    fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

/// The counters a tier updates. Metric names are `cache_<counter>_total` with a `tier` label;
/// errors are `cache_errors_total` with `tier` and `kind` labels.
#[derive(Debug)]
pub struct TierStats {
    tier: &'static str,
    /// The name the tier's crate raises its errors under: [`TierStats::track`] attributes them
    /// to `tier` instead.
    kind: &'static str,
    hits: Pair,
    misses: Pair,
    inserts: Pair,
    removes: Pair,
    evictions: Pair,
    expirations: Pair,
    rejections: Pair,
    corrupted: Pair,
    errors: [Pair; ErrorKind::ALL.len()],
}

impl TierStats {
    /// Counters for the tier named `tier`, registered with the installed `metrics` recorder.
    pub fn new(tier: &'static str) -> TierStats {
        TierStats::named(tier, tier)
    }

    /// Counters for a tier of kind `kind` (the name its crate raises errors under, `"nvme"`
    /// say) that its builder named `tier`.
    pub fn named(kind: &'static str, tier: &'static str) -> TierStats {
        TierStats {
            tier,
            kind,
            hits: Pair::new("cache_hits_total", tier),
            misses: Pair::new("cache_misses_total", tier),
            inserts: Pair::new("cache_inserts_total", tier),
            removes: Pair::new("cache_removes_total", tier),
            evictions: Pair::new("cache_evictions_total", tier),
            expirations: Pair::new("cache_expirations_total", tier),
            rejections: Pair::new("cache_rejections_total", tier),
            corrupted: Pair::new("cache_corrupted_total", tier),
            errors: ErrorKind::ALL.map(|kind| Pair {
                value: AtomicU64::new(0),
                metric: metrics::counter!("cache_errors_total", "tier" => tier, "kind" => kind.as_str()),
            }),
        }
    }

    /// The name of the tier these counters belong to (their metrics' `tier` label).
    pub fn tier(&self) -> &'static str {
        self.tier
    }

    /// Counts a hit.
    pub fn hit(&self) {
        self.hits.add(1);
    }
    /// Counts a miss.
    pub fn miss(&self) {
        self.misses.add(1);
    }
    /// Counts a stored value.
    pub fn insert(&self) {
        self.inserts.add(1);
    }
    /// Counts an explicit removal.
    pub fn remove(&self) {
        self.removes.add(1);
    }
    /// Counts `n` evictions.
    pub fn evict(&self, n: u64) {
        self.evictions.add(n);
    }
    /// Counts an expired entry dropped.
    pub fn expire(&self) {
        self.expirations.add(1);
    }
    /// Counts a declined put.
    pub fn reject(&self) {
        self.rejections.add(1);
    }
    /// Counts a corrupt entry found.
    pub fn corrupt(&self) {
        self.corrupted.add(1);
    }
    /// Counts an error returned to a caller.
    pub fn error(&self, err: &Error) {
        self.errors[err.kind().index()].add(1);
    }

    /// Counts the error of a failed result and passes the result on, attributed to this tier's
    /// name if its crate raised it under the kind's name (see [`Error::renamed`]).
    ///
    /// [`Error::renamed`]: crate::Error::renamed
    pub fn track<T>(&self, result: crate::Result<T>) -> crate::Result<T> {
        result.map_err(|e| {
            let e = e.renamed(self.kind, self.tier);
            self.error(&e);
            e
        })
    }

    /// A snapshot of every counter with `usage` attached.
    pub fn snapshot(&self, usage: Usage) -> StatsSnapshot {
        StatsSnapshot {
            tier: self.tier,
            hits: self.hits.get(),
            misses: self.misses.get(),
            inserts: self.inserts.get(),
            removes: self.removes.get(),
            evictions: self.evictions.get(),
            expirations: self.expirations.get(),
            rejections: self.rejections.get(),
            corrupted: self.corrupted.get(),
            errors: self.errors.each_ref().map(Pair::get),
            usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_reach_the_snapshot() {
        let s = TierStats::new("test");
        s.hit();
        s.hit();
        s.miss();
        s.evict(3);
        s.error(&Error::closed("test"));
        let snap = s.snapshot(Usage { bytes_used: 10, capacity: Some(100), entries: Some(1) });
        assert_eq!((snap.hits, snap.misses, snap.evictions), (2, 1, 3));
        assert_eq!(snap.errors_of(ErrorKind::Closed), 1);
        assert_eq!(snap.errors_of(ErrorKind::Io), 0);
        assert!((snap.hit_ratio() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(snap.usage.bytes_used, 10);
    }
}
