//! Counters of the composition: per tier, what it served, promotions and demotions into it,
//! queue depth, rejections by reason, faults by kind, and a get-latency histogram.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use cache_core::{Error, ErrorKind, Rejection, StatsSnapshot};
use metrics::{Counter, Histogram};

const REJECTIONS: [Rejection; 6] = [
    Rejection::TooLarge,
    Rejection::TooSmall,
    Rejection::Expired,
    Rejection::Infrequent,
    Rejection::RateLimited,
    Rejection::QueueFull,
];

/// A lock-free latency histogram with power-of-two nanosecond buckets.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    buckets: [AtomicU64; 40],
    metric: Histogram,
}

impl LatencyHistogram {
    fn new(tier: &'static str) -> LatencyHistogram {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            metric: metrics::histogram!("cache_tier_get_seconds", "tier" => tier),
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        let bucket = (63 - ns.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.metric.record(d.as_secs_f64());
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), or zero with no samples.
    fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Duration::from_nanos(2u64.saturating_pow(i as u32 + 1));
            }
        }
        Duration::MAX
    }
}

/// Counters the composition keeps for one tier.
#[derive(Debug)]
pub(crate) struct SlotStats {
    pub(crate) served: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) promotions_metric: Counter,
    pub(crate) demotions: AtomicU64,
    pub(crate) demotions_metric: Counter,
    pub(crate) demotions_skipped_clean: AtomicU64,
    pub(crate) demotions_dropped: AtomicU64,
    pub(crate) demotions_superseded: AtomicU64,
    pub(crate) demotions_filtered: AtomicU64,
    pub(crate) served_from_queue: AtomicU64,
    pub(crate) queue_depth: AtomicU64,
    pub(crate) write_failures: AtomicU64,
    faults: [AtomicU64; ErrorKind::ALL.len()],
    fault_metric: Counter,
    rejections: [AtomicU64; REJECTIONS.len()],
    rejection_metric: Counter,
    pub(crate) get_latency: LatencyHistogram,
}

impl SlotStats {
    pub(crate) fn new(tier: &'static str) -> SlotStats {
        SlotStats {
            served: AtomicU64::new(0),
            promotions: AtomicU64::new(0),
            promotions_metric: metrics::counter!("cache_promotions_total", "tier" => tier),
            demotions: AtomicU64::new(0),
            demotions_metric: metrics::counter!("cache_demotions_total", "tier" => tier),
            demotions_skipped_clean: AtomicU64::new(0),
            demotions_dropped: AtomicU64::new(0),
            demotions_superseded: AtomicU64::new(0),
            demotions_filtered: AtomicU64::new(0),
            served_from_queue: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            faults: std::array::from_fn(|_| AtomicU64::new(0)),
            fault_metric: metrics::counter!("cache_tier_faults_total", "tier" => tier),
            rejections: std::array::from_fn(|_| AtomicU64::new(0)),
            rejection_metric: metrics::counter!("cache_tier_rejections_total", "tier" => tier),
            get_latency: LatencyHistogram::new(tier),
        }
    }

    pub(crate) fn fault(&self, e: &Error) {
        let i = ErrorKind::ALL.iter().position(|k| *k == e.kind()).unwrap_or(0);
        self.faults[i].fetch_add(1, Relaxed);
        self.fault_metric.increment(1);
    }

    pub(crate) fn reject(&self, r: Rejection) {
        if let Some(i) = REJECTIONS.iter().position(|x| *x == r) {
            self.rejections[i].fetch_add(1, Relaxed);
        }
        self.rejection_metric.increment(1);
    }
}

/// A snapshot of what the composition saw of one tier.
#[derive(Debug, Clone)]
pub struct TierReport {
    /// The tier's own counters.
    pub tier: StatsSnapshot,
    /// Gets this tier answered (it was the first tier with the value).
    pub served: u64,
    /// Entries copied into this tier from a tier below.
    pub promotions: u64,
    /// Entries written into this tier because the tier above evicted them.
    pub demotions: u64,
    /// Evictions from the tier above not written here because they came from here unchanged.
    pub demotions_skipped_clean: u64,
    /// Evictions from the tier above dropped because the demotion queue was full.
    pub demotions_dropped: u64,
    /// Demotions not written because a newer write, a removal or a clear of the key (or of a
    /// key sharing its ordering counter) ran after the eviction.
    pub demotions_superseded: u64,
    /// Evictions from the top tier not demoted here by the
    /// [`DemotionFilter::SecondChance`](crate::policy::DemotionFilter::SecondChance) filter:
    /// not read twice while on top, and not seen again while the ghost remembered them (or,
    /// with [`DemotionFilter::TinyLfu`](crate::policy::DemotionFilter::TinyLfu), not more
    /// frequent than the victim either).
    pub demotions_filtered: u64,
    /// Gets answered from this tier's demotion queue: the entry had been evicted from the tier
    /// above and its demotion was not written yet (included in `served`).
    pub served_from_queue: u64,
    /// Jobs waiting in this tier's write-behind or demotion queue.
    pub queue_depth: u64,
    /// Queued writes that failed after every retry.
    pub write_failures: u64,
    /// Calls into this tier that failed or timed out, by kind (in [`ErrorKind::ALL`] order).
    pub faults: [u64; ErrorKind::ALL.len()],
    /// Writes into this tier that were declined, with the reason.
    pub rejections: Vec<(Rejection, u64)>,
    /// Median get latency (upper bound of its power-of-two bucket), from one get in eight.
    pub get_p50: Duration,
    /// 99th-percentile get latency (upper bound of its power-of-two bucket).
    pub get_p99: Duration,
}

impl TierReport {
    pub(crate) fn new(tier: StatsSnapshot, s: &SlotStats) -> TierReport {
        TierReport {
            tier,
            served: s.served.load(Relaxed),
            promotions: s.promotions.load(Relaxed),
            demotions: s.demotions.load(Relaxed),
            demotions_skipped_clean: s.demotions_skipped_clean.load(Relaxed),
            demotions_dropped: s.demotions_dropped.load(Relaxed),
            demotions_superseded: s.demotions_superseded.load(Relaxed),
            demotions_filtered: s.demotions_filtered.load(Relaxed),
            served_from_queue: s.served_from_queue.load(Relaxed),
            queue_depth: s.queue_depth.load(Relaxed),
            write_failures: s.write_failures.load(Relaxed),
            faults: s.faults.each_ref().map(|a| a.load(Relaxed)),
            rejections: REJECTIONS
                .iter()
                .zip(&s.rejections)
                .map(|(r, c)| (*r, c.load(Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect(),
            get_p50: s.get_latency.quantile(0.5),
            get_p99: s.get_latency.quantile(0.99),
        }
    }

    /// Faults of every kind.
    pub fn total_faults(&self) -> u64 {
        self.faults.iter().sum()
    }
}

/// A snapshot of the whole cache.
#[derive(Debug, Clone)]
pub struct TieredStats {
    /// Gets, hits (from any tier), misses, puts and rejections of the cache as a whole.
    pub overall: StatsSnapshot,
    /// Stale entries `get_or_load` served at once while one loader refreshed them
    /// ([`ServeStale::revalidate`](crate::ServeStale::revalidate)).
    pub served_stale: u64,
    /// Stale entries `get_or_load` served because the loader failed
    /// ([`ServeStale::on_error`](crate::ServeStale::on_error)).
    pub served_stale_on_error: u64,
    /// One report per tier, fastest first.
    pub tiers: Vec<TierReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_buckets() {
        let h = LatencyHistogram::new("t");
        for _ in 0..99 {
            h.record(Duration::from_nanos(100));
        }
        h.record(Duration::from_millis(1));
        assert_eq!(h.quantile(0.5), Duration::from_nanos(128));
        assert!(h.quantile(1.0) >= Duration::from_millis(1));
    }
}
