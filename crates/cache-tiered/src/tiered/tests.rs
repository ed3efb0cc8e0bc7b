//! Tests of the composition: the conformance suite, promotion, demotion, write policies,
//! single-flight, outages, ordering races, and a property test against a map model.

mod faulty;
mod model;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::{
    Entry, ErrorKind, Key, ManualClock, Namespace, PutOutcome, Rejection, Tier, Timestamp,
    testkit::{TestTier, TierSpec},
};
use cache_l1::MemoryTier;

use self::faulty::{FaultyTier, Mode};
use crate::{
    PutReport, TierOptions, TierWrite, TieredCache, WritePolicy,
    policy::{PromoteNever, SizeRange},
};

fn l1(capacity: u64, clock: &Arc<ManualClock>) -> MemoryTier {
    MemoryTier::builder(capacity).clock(clock.clone()).build()
}

/// A RAM tier of `spec`'s clock and time-to-idle.
fn l1_of(spec: &TierSpec, capacity: u64) -> MemoryTier {
    let builder = MemoryTier::builder(capacity).clock(spec.dyn_clock());
    match spec.time_to_idle {
        Some(idle) => builder.time_to_idle(idle).build(),
        None => builder.build(),
    }
}

mod through {
    use super::*;

    async fn factory(spec: TierSpec) -> TestTier {
        let half = spec.capacity_bytes / 2;
        let cache = TieredCache::builder()
            .clock(spec.dyn_clock())
            .tier(l1_of(&spec, half))
            .tier(l1_of(&spec, spec.capacity_bytes - half))
            .build()
            .expect("build");
        TestTier::new(cache)
    }

    cache_core::conformance_suite!(factory);
    // A stack whose every tier has the time-to-idle honours it as one tier does.
    cache_core::idle_conformance_suite!(factory);
    cache_core::huge_conformance_suite!(factory);
}

mod on_eviction {
    use super::*;

    async fn factory(spec: TierSpec) -> TestTier {
        let half = spec.capacity_bytes / 2;
        let cache = TieredCache::builder()
            .clock(spec.dyn_clock())
            .tier(l1_of(&spec, half))
            .tier(
                TierOptions::new(l1_of(&spec, spec.capacity_bytes - half))
                    .write(WritePolicy::OnEviction),
            )
            .build()
            .expect("build");
        TestTier::new(cache)
    }

    cache_core::conformance_suite!(factory);
    cache_core::idle_conformance_suite!(factory);
}

fn key(k: &str) -> Key {
    Key::new("t", k.to_owned()).unwrap()
}

fn clock() -> Arc<ManualClock> {
    ManualClock::new(Timestamp::from_millis(1_800_000_000_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_hit_is_promoted_and_served_from_the_top_afterwards() {
    let c = clock();
    let top = Arc::new(l1(1 << 20, &c));
    let bottom = Arc::new(l1(1 << 20, &c));
    let cache = TieredCache::builder()
        .clock(c.clone())
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(bottom.clone()))
        .build()
        .unwrap();
    let k = key("promote");
    assert!(bottom.put(k.clone(), Entry::new("deep")).await.unwrap().is_stored());
    assert_eq!(cache.get(&k).await.unwrap().unwrap().value, "deep");
    cache.quiesce().await;
    assert_eq!(top.get(&k).await.unwrap().unwrap().value, "deep", "promoted into the top tier");
    let stats = cache.tiered_stats();
    assert_eq!(stats.tiers[0].promotions, 1);
    assert_eq!(stats.tiers[1].served, 1);
    assert_eq!(cache.get(&k).await.unwrap().unwrap().value, "deep");
    assert_eq!(cache.tiered_stats().tiers[0].served, 1, "second get served by the top tier");
}

/// A tier that counts the ranged reads asked of it.
#[derive(Debug)]
struct CountsRanges {
    inner: MemoryTier,
    ranges: AtomicUsize,
}

#[async_trait::async_trait]
impl Tier for CountsRanges {
    fn name(&self) -> &'static str {
        "counts-ranges"
    }
    async fn get(&self, key: &Key) -> cache_core::Result<Option<Entry>> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &Key,
        range: std::ops::Range<u64>,
    ) -> cache_core::Result<Option<bytes::Bytes>> {
        self.ranges.fetch_add(1, Ordering::Relaxed);
        self.inner.get_range(key, range).await
    }
    async fn put(&self, key: Key, entry: Entry) -> cache_core::Result<PutOutcome> {
        self.inner.put(key, entry).await
    }
    async fn remove(&self, key: &Key) -> cache_core::Result<()> {
        self.inner.remove(key).await
    }
    async fn clear_namespace(&self, namespace: &Namespace) -> cache_core::Result<()> {
        self.inner.clear_namespace(namespace).await
    }
    fn usage(&self) -> cache_core::Usage {
        self.inner.usage()
    }
    fn stats(&self) -> cache_core::StatsSnapshot {
        self.inner.stats()
    }
    async fn flush(&self) -> cache_core::Result<()> {
        self.inner.flush().await
    }
    async fn close(&self) -> cache_core::Result<()> {
        self.inner.close().await
    }
}

/// A ranged read asks each tier for the range; a ranged hit below the top is promoted whole
/// (read again in the background) by a policy that promotes ranged hits, and not by one that
/// does not, and the top tier never holds the part as if it were the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ranged_hit_below_is_read_as_a_range_and_promoted_whole_by_policy() {
    ranged_hit(true, crate::policy::PromoteAlways).await;
    ranged_hit(false, crate::policy::PromoteUnderSize(1 << 30)).await;
    ranged_hit(false, PromoteNever).await;
}

async fn ranged_hit(promote: bool, policy: impl crate::policy::PromotionPolicy) {
    let policy_name = format!("{policy:?}");
    {
        let c = clock();
        let top = Arc::new(l1(1 << 20, &c));
        let bottom = Arc::new(CountsRanges { inner: l1(1 << 20, &c), ranges: AtomicUsize::new(0) });
        let cache = TieredCache::builder()
            .clock(c.clone())
            .promotion(policy)
            .tier(TierOptions::from_arc(top.clone()))
            .tier(TierOptions::from_arc(bottom.clone()))
            .build()
            .unwrap();
        let k = key("ranged");
        assert!(bottom.put(k.clone(), Entry::new("0123456789")).await.unwrap().is_stored());
        assert_eq!(cache.get_range(&k, 3..6).await.unwrap().unwrap(), "345", "{policy_name}");
        assert_eq!(bottom.ranges.load(Ordering::Relaxed), 1, "the lower tier read a range");
        cache.quiesce().await;
        let on_top = top.get(&k).await.unwrap().map(|e| e.value);
        if promote {
            assert_eq!(on_top.unwrap(), "0123456789", "promoted whole");
            assert_eq!(cache.get_range(&k, 8..20).await.unwrap().unwrap(), "89");
            assert_eq!(bottom.ranges.load(Ordering::Relaxed), 1, "then served by the top tier");
        } else {
            assert!(on_top.is_none(), "{policy_name} does not promote a ranged hit");
        }
        assert!(cache.get_range(&key("absent"), 0..1).await.unwrap().is_none());
        #[expect(clippy::reversed_empty_ranges, reason = "the invalid input under test")]
        let err = cache.get_range(&k, 6..3).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
}

#[tokio::test]
async fn never_policy_does_not_promote() {
    let c = clock();
    let top = Arc::new(l1(1 << 20, &c));
    let bottom = Arc::new(l1(1 << 20, &c));
    let cache = TieredCache::builder()
        .promotion(PromoteNever)
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(bottom.clone()))
        .build()
        .unwrap();
    let k = key("stay");
    let _ = bottom.put(k.clone(), Entry::new("v")).await.unwrap();
    assert!(cache.get(&k).await.unwrap().is_some());
    cache.quiesce().await;
    assert!(top.get(&k).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_are_demoted_but_clean_and_expired_entries_are_not() {
    let c = clock();
    let top = Arc::new(l1(64 * 1024, &c));
    let bottom = Arc::new(l1(64 << 20, &c));
    let cache = TieredCache::builder()
        .clock(c.clone())
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(bottom.clone()).write(WritePolicy::OnEviction))
        .build()
        .unwrap();
    let report = cache.put_report(key("first"), Entry::new(vec![1u8; 1000])).await.unwrap();
    assert_eq!(report.tiers[1].1, TierWrite::Skipped, "OnEviction tiers are not written on put");
    assert!(bottom.get(&key("first")).await.unwrap().is_none());
    for i in 0..200 {
        let _ = cache.put(key(&format!("k{i}")), Entry::new(vec![2u8; 1000])).await.unwrap();
    }
    top.flush().await.unwrap();
    cache.quiesce().await;
    let stats = cache.tiered_stats();
    assert!(stats.tiers[1].demotions > 0, "evictions reached the lower tier: {stats:?}");
    // Every key is readable somewhere, with the right value.
    let mut found = 0;
    for i in 0..200 {
        if let Some(e) = cache.get(&key(&format!("k{i}"))).await.unwrap() {
            assert_eq!(e.value.len(), 1000);
            found += 1;
        }
    }
    assert!(found > 150, "most entries survive through demotion ({found}/200)");
    // A promoted (clean) entry evicted again is not rewritten.
    cache.quiesce().await;
    let before = cache.tiered_stats().tiers[1].demotions_skipped_clean;
    for i in 200..400 {
        let _ = cache.put(key(&format!("k{i}")), Entry::new(vec![3u8; 1000])).await.unwrap();
    }
    top.flush().await.unwrap();
    cache.quiesce().await;
    assert!(cache.tiered_stats().tiers[1].demotions_skipped_clean > before);
    // Expired entries are never demoted.
    let demoted_before = cache.tiered_stats().tiers[1].demotions;
    let exp = key("expiring");
    let _ = cache.put(exp.clone(), Entry::new("x").with_ttl(&*c, Duration::from_secs(1))).await;
    c.advance(Duration::from_secs(2));
    top.flush().await.unwrap();
    for i in 400..600 {
        let _ = cache.put(key(&format!("k{i}")), Entry::new(vec![4u8; 1000])).await.unwrap();
    }
    top.flush().await.unwrap();
    cache.quiesce().await;
    assert!(bottom.get(&exp).await.unwrap().is_none(), "expired entry demoted");
    assert!(cache.tiered_stats().tiers[1].demotions >= demoted_before);
}

#[tokio::test]
async fn admission_rejections_are_reported_and_counted() {
    let c = clock();
    let cache = TieredCache::builder()
        .tier(l1(1 << 20, &c))
        .tier(TierOptions::new(l1(1 << 20, &c)).admission(SizeRange { min: 0, max: 10 }))
        .build()
        .unwrap();
    let report = cache.put_report(key("big"), Entry::new(vec![0u8; 100])).await.unwrap();
    assert_eq!(report.tiers[0].1, TierWrite::Stored);
    assert_eq!(report.tiers[1].1, TierWrite::Rejected(Rejection::TooLarge));
    assert_eq!(report.outcome(), PutOutcome::Stored);
    assert_eq!(cache.tiered_stats().tiers[1].rejections, vec![(Rejection::TooLarge, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_load_runs_one_loader_and_shares_errors() {
    let c = clock();
    let cache = TieredCache::builder().tier(l1(1 << 20, &c)).tier(l1(1 << 20, &c)).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (cache, calls) = (cache.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(key("sf"), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some(Entry::new("loaded")))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().unwrap().value, "loaded");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(key("err"), || async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(cache_core::Error::new(ErrorKind::Unavailable, "origin", "down"))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().kind(), ErrorKind::Unavailable);
    }
    let ok = cache.get_or_load(key("err"), || async { Ok(Some(Entry::new("ok"))) }).await.unwrap();
    assert_eq!(ok.unwrap().value, "ok", "errors are not cached");
}

#[tokio::test]
async fn negative_results_are_cached_for_their_ttl() {
    let c = clock();
    let cache = TieredCache::builder()
        .clock(c.clone())
        .negative_ttl(Duration::from_secs(10))
        .tier(l1(1 << 20, &c))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let calls = calls.clone();
        let r = cache
            .get_or_load(key("absent"), move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            })
            .await
            .unwrap();
        assert!(r.is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    c.advance(Duration::from_secs(10));
    let calls2 = calls.clone();
    let _ = cache
        .get_or_load(key("absent"), move || async move {
            calls2.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        })
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the negative entry expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_tier_is_skipped_within_its_timeout_and_counted() {
    let c = clock();
    let top = Arc::new(l1(1 << 20, &c));
    let faulty = Arc::new(FaultyTier::new(l1(1 << 20, &c)));
    let cache = TieredCache::builder()
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(faulty.clone()).timeout(Duration::from_millis(100)))
        .build()
        .unwrap();
    let k = key("hot");
    let _ = cache.put(k.clone(), Entry::new("v")).await.unwrap();
    faulty.set(Mode::Hang);
    // RAM still serves.
    assert_eq!(cache.get(&k).await.unwrap().unwrap().value, "v");
    // A key only the hanging tier could have: a miss, within the timeout.
    let started = Instant::now();
    assert!(cache.get(&key("cold")).await.unwrap().is_none());
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(1000), "waited {waited:?}");
    faulty.set(Mode::Fail);
    assert!(cache.get(&key("cold2")).await.unwrap().is_none());
    let stats = cache.tiered_stats();
    assert_eq!(stats.tiers[1].total_faults(), 2, "{stats:?}");
    // A put while the tier fails: stored in RAM, the failure reported, never a stale read.
    let report = cache.put_report(k.clone(), Entry::new("v2")).await.unwrap();
    assert_eq!(report.tiers[1].1, TierWrite::Failed(ErrorKind::Unavailable));
    faulty.set(Mode::Ok);
    top.remove(&k).await.unwrap();
    assert!(
        cache.get(&k).await.unwrap().is_none(),
        "the old value in the failed tier is not served"
    );
    let _ = cache.put(k.clone(), Entry::new("v3")).await.unwrap();
    top.remove(&k).await.unwrap();
    assert_eq!(cache.get(&k).await.unwrap().unwrap().value, "v3", "a later write heals it");
}

#[tokio::test]
async fn strict_mode_returns_tier_errors() {
    let c = clock();
    let faulty = Arc::new(FaultyTier::new(l1(1 << 20, &c)));
    let cache = TieredCache::builder()
        .strict(true)
        .tier(l1(1 << 20, &c))
        .tier(TierOptions::from_arc(faulty.clone()))
        .build()
        .unwrap();
    faulty.set(Mode::Fail);
    assert_eq!(cache.get(&key("x")).await.unwrap_err().kind(), ErrorKind::Unavailable);
    assert_eq!(
        cache.put(key("x"), Entry::new("v")).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_defers_then_lands_and_reports_failures() {
    let c = clock();
    let faulty = Arc::new(FaultyTier::new(l1(1 << 20, &c)));
    let policy =
        WritePolicy::Behind { queue_len: 8, max_attempts: 3, backoff: Duration::from_millis(1) };
    let cache = TieredCache::builder()
        .tier(l1(1 << 20, &c))
        .tier(TierOptions::from_arc(faulty.clone()).write(policy))
        .build()
        .unwrap();
    let report: PutReport = cache.put_report(key("wb"), Entry::new("v")).await.unwrap();
    assert_eq!(report.tiers[1].1, TierWrite::Deferred);
    cache.quiesce().await;
    assert_eq!(faulty.get(&key("wb")).await.unwrap().unwrap().value, "v");
    faulty.set(Mode::Fail);
    let _ = cache.put(key("wb2"), Entry::new("v")).await.unwrap();
    cache.quiesce().await;
    let stats = cache.tiered_stats();
    assert_eq!(stats.tiers[1].write_failures, 1, "{stats:?}");
    assert_eq!(stats.tiers[1].total_faults(), 3, "three attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_write_behind_queue_rejects_explicitly() {
    let c = clock();
    let faulty = Arc::new(FaultyTier::new(l1(1 << 20, &c)));
    faulty.set(Mode::Hang);
    let policy = WritePolicy::Behind { queue_len: 1, max_attempts: 1, backoff: Duration::ZERO };
    let cache = TieredCache::builder()
        .tier(l1(1 << 20, &c))
        .tier(
            TierOptions::from_arc(faulty.clone()).write(policy).timeout(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for i in 0..4 {
        outcomes.push(
            cache.put_report(key(&format!("q{i}")), Entry::new("v")).await.unwrap().tiers[1]
                .1
                .clone(),
        );
    }
    assert!(
        outcomes.iter().any(|o| *o == TierWrite::Rejected(Rejection::QueueFull)
            || matches!(o, TierWrite::Failed(_))),
        "{outcomes:?}"
    );
    faulty.set(Mode::Ok);
    cache.quiesce().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_is_never_undone_by_a_racing_promotion() {
    let c = clock();
    for round in 0..50 {
        let top = Arc::new(l1(1 << 20, &c));
        let bottom = Arc::new(l1(1 << 20, &c));
        let cache = TieredCache::builder()
            .tier(TierOptions::from_arc(top.clone()))
            .tier(TierOptions::from_arc(bottom.clone()))
            .build()
            .unwrap();
        let k = key(&format!("race{round}"));
        let _ = bottom.put(k.clone(), Entry::new("old")).await.unwrap();
        let getter = {
            let cache = cache.clone();
            let k = k.clone();
            tokio::spawn(async move { cache.get(&k).await })
        };
        cache.remove(&k).await.unwrap();
        let _ = getter.await.unwrap();
        cache.quiesce().await;
        assert!(cache.get(&k).await.unwrap().is_none(), "round {round}: removed value came back");
        assert!(top.get(&k).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_put_wins_over_racing_promotions() {
    let c = clock();
    let cache = TieredCache::builder().tier(l1(1 << 20, &c)).tier(l1(1 << 20, &c)).build().unwrap();
    let top = cache.tiers()[0].clone();
    let k = key("versions");
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cache, top, k) = (cache.clone(), top.clone(), k.clone());
            tokio::spawn(async move {
                for _ in 0..300 {
                    // Force lower-tier hits so promotions race the writer.
                    let _ = top.remove(&k).await;
                    let _ = cache.get(&k).await.unwrap();
                }
            })
        })
        .collect();
    for v in 0..300u32 {
        let _ = cache.put(k.clone(), Entry::new(v.to_string())).await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    cache.quiesce().await;
    let last = cache.get(&k).await.unwrap().map(|e| e.value);
    assert!(last.is_none() || last.as_deref() == Some(&b"299"[..]), "stale value won: {last:?}");
}

#[tokio::test]
async fn build_errors_are_clear() {
    let err = TieredCache::builder().build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let c = clock();
    let err = TieredCache::builder()
        .tier(TierOptions::new(l1(1, &c)).write(WritePolicy::OnEviction))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("top tier"), "{err}");
    // A tier that cannot report evictions cannot feed an OnEviction tier.
    let err = TieredCache::builder()
        .tier(FaultyTier::new(l1(1 << 20, &c)))
        .tier(TierOptions::new(l1(1 << 20, &c)).write(WritePolicy::OnEviction))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("cannot report evictions"), "{err}");
}

#[tokio::test]
async fn clear_namespace_reaches_every_tier() {
    let c = clock();
    let cache = TieredCache::builder().tier(l1(1 << 20, &c)).tier(l1(1 << 20, &c)).build().unwrap();
    let a = Namespace::new("a").unwrap();
    let _ = cache.put(a.key("1").unwrap(), Entry::new("x")).await.unwrap();
    let _ = cache.put(key("1"), Entry::new("y")).await.unwrap();
    cache.clear_namespace(&a).await.unwrap();
    for t in cache.tiers() {
        assert!(t.get(&a.key("1").unwrap()).await.unwrap().is_none());
    }
    assert!(cache.get(&key("1")).await.unwrap().is_some());
}

/// A RAM tier that turns every put away at once through its eviction sink, as moka's
/// admission policy does with a newcomer that is less frequent than its victim.
#[derive(Debug)]
struct EvictsOnPut {
    sink: parking_lot::Mutex<Option<Arc<dyn cache_core::EvictionSink>>>,
    stats: cache_core::TierStats,
}

#[async_trait::async_trait]
impl Tier for EvictsOnPut {
    fn name(&self) -> &'static str {
        "evicts-on-put"
    }
    async fn get(&self, _: &Key) -> cache_core::Result<Option<Entry>> {
        Ok(None)
    }
    async fn put(&self, key: Key, entry: Entry) -> cache_core::Result<PutOutcome> {
        let sink = self.sink.lock().clone();
        if let Some(sink) = sink {
            sink.on_evict(cache_core::Evicted {
                key,
                entry,
                cause: cache_core::EvictionCause::Capacity,
            });
        }
        Ok(PutOutcome::Stored)
    }
    async fn remove(&self, _: &Key) -> cache_core::Result<()> {
        Ok(())
    }
    async fn clear_namespace(&self, _: &Namespace) -> cache_core::Result<()> {
        Ok(())
    }
    fn usage(&self) -> cache_core::Usage {
        cache_core::Usage::default()
    }
    fn stats(&self) -> cache_core::StatsSnapshot {
        self.stats.snapshot(self.usage())
    }
    async fn flush(&self) -> cache_core::Result<()> {
        Ok(())
    }
    async fn close(&self) -> cache_core::Result<()> {
        Ok(())
    }
    fn set_eviction_sink(&self, sink: Arc<dyn cache_core::EvictionSink>) -> cache_core::Result<()> {
        *self.sink.lock() = Some(sink);
        Ok(())
    }
}

/// Regression: an entry evicted by the upper tier during its own put (before the put's ordering
/// bump ends) was counted as superseded and lost from every tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_evicted_during_its_own_put_is_demoted() {
    let c = clock();
    let top = EvictsOnPut {
        sink: parking_lot::Mutex::new(None),
        stats: cache_core::TierStats::new("evicts-on-put"),
    };
    let bottom = Arc::new(l1(64 << 20, &c));
    let cache = TieredCache::builder()
        .clock(c.clone())
        .tier(top)
        .tier(TierOptions::from_arc(bottom.clone()).write(WritePolicy::OnEviction))
        .build()
        .unwrap();
    for i in 0..50 {
        let _ = cache.put(key(&format!("k{i}")), Entry::new(vec![i as u8; 100])).await.unwrap();
    }
    // An older value of a key, evicted while a newer put of it is in flight, must not win.
    let _ = cache.put(key("k0"), Entry::new(vec![200u8; 100])).await.unwrap();
    cache.quiesce().await;
    let stats = cache.tiered_stats();
    // Only the first value of k0 may have been superseded (by its second put) before it landed.
    let (demoted, superseded) = (stats.tiers[1].demotions, stats.tiers[1].demotions_superseded);
    assert!(demoted >= 50 && demoted + superseded == 51, "{stats:?}");
    for i in 1..50 {
        let e = bottom.get(&key(&format!("k{i}"))).await.unwrap().expect("demoted");
        assert_eq!(e.value.as_ref(), &[i as u8; 100][..]);
    }
    let e = cache.get(&key("k0")).await.unwrap().expect("demoted");
    assert_eq!(e.value.as_ref(), &[200u8; 100][..], "the newest put wins");
}

/// A tier whose puts wait until the test opens the gate; everything else passes through.
#[derive(Debug)]
struct GatedPuts<T> {
    inner: T,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl<T: Tier> Tier for GatedPuts<T> {
    fn name(&self) -> &'static str {
        "gated"
    }
    async fn get(&self, key: &Key) -> cache_core::Result<Option<Entry>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: Key, entry: Entry) -> cache_core::Result<PutOutcome> {
        let _permit = self.gate.acquire().await.expect("gate open");
        self.inner.put(key, entry).await
    }
    async fn remove(&self, key: &Key) -> cache_core::Result<()> {
        self.inner.remove(key).await
    }
    async fn contains(&self, key: &Key) -> cache_core::Result<bool> {
        self.inner.contains(key).await
    }
    async fn clear_namespace(&self, ns: &Namespace) -> cache_core::Result<()> {
        self.inner.clear_namespace(ns).await
    }
    fn usage(&self) -> cache_core::Usage {
        self.inner.usage()
    }
    fn stats(&self) -> cache_core::StatsSnapshot {
        self.inner.stats()
    }
    async fn flush(&self) -> cache_core::Result<()> {
        self.inner.flush().await
    }
    async fn close(&self) -> cache_core::Result<()> {
        self.inner.close().await
    }
}

/// An entry evicted from RAM stays readable while its demotion waits in the queue (here: behind
/// a lower tier whose writes are held back), and the value served is the evicted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_demotions_are_served_until_written() {
    let c = clock();
    let top = Arc::new(l1(64 * 1024, &c));
    let bottom =
        Arc::new(GatedPuts { inner: l1(64 << 20, &c), gate: tokio::sync::Semaphore::new(0) });
    let cache = TieredCache::builder()
        .clock(c.clone())
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(bottom.clone()).write(WritePolicy::OnEviction))
        .build()
        .unwrap();
    for i in 0..200u32 {
        let _ = cache.put(key(&format!("k{i}")), Entry::new(i.to_le_bytes().repeat(250))).await;
    }
    top.flush().await.unwrap();
    // Nothing reached the lower tier: gets are answered by RAM or by the queue.
    let mut found = 0;
    for i in 0..200u32 {
        if let Some(e) = cache.get(&key(&format!("k{i}"))).await.unwrap() {
            assert_eq!(e.value.as_ref(), &i.to_le_bytes().repeat(250)[..]);
            found += 1;
        }
    }
    let stats = cache.tiered_stats();
    assert_eq!(stats.tiers[1].tier.inserts, 0, "{stats:?}");
    assert!(stats.tiers[1].served_from_queue > 100, "{stats:?}");
    // A key sharing its ordering counter with a later put is a miss (never a wrong value): with
    // 200 keys over 16,384 counters, one or two such pairs are expected.
    assert!(found >= 195, "entries readable from RAM or the queue: {found}/200, {stats:?}");
    // A removal hides the queued copy at once, before its demotion is written.
    cache.remove(&key("k0")).await.unwrap();
    assert!(cache.get(&key("k0")).await.unwrap().is_none());
    bottom.gate.add_permits(1 << 20);
    cache.quiesce().await;
    assert!(cache.get(&key("k0")).await.unwrap().is_none(), "removed key came back");
    let stats = cache.tiered_stats();
    assert!(stats.tiers[1].demotions > 100, "{stats:?}");
}

/// A tier that holds back puts of one value and, once told, every removal, so a test can stop a
/// promotion between its write and its undo.
#[derive(Debug)]
struct HoldsPromotion<T> {
    inner: T,
    value: &'static str,
    puts: tokio::sync::Semaphore,
    removes: tokio::sync::Semaphore,
    hold_removes: std::sync::atomic::AtomicBool,
    /// Puts of `value` that reached the gate.
    held: AtomicUsize,
}

impl<T> HoldsPromotion<T> {
    fn new(inner: T, value: &'static str) -> HoldsPromotion<T> {
        HoldsPromotion {
            inner,
            value,
            puts: tokio::sync::Semaphore::new(0),
            removes: tokio::sync::Semaphore::new(0),
            hold_removes: std::sync::atomic::AtomicBool::new(true),
            held: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl<T: Tier> Tier for HoldsPromotion<T> {
    fn name(&self) -> &'static str {
        "holds"
    }
    async fn get(&self, key: &Key) -> cache_core::Result<Option<Entry>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: Key, entry: Entry) -> cache_core::Result<PutOutcome> {
        if entry.value == self.value {
            self.held.fetch_add(1, Ordering::SeqCst);
            self.puts.acquire().await.expect("open").forget();
        }
        self.inner.put(key, entry).await
    }
    async fn remove(&self, key: &Key) -> cache_core::Result<()> {
        if self.hold_removes.load(Ordering::SeqCst) {
            let _permit = self.removes.acquire().await.expect("open");
        }
        self.inner.remove(key).await
    }
    async fn clear_namespace(&self, ns: &Namespace) -> cache_core::Result<()> {
        self.inner.clear_namespace(ns).await
    }
    fn usage(&self) -> cache_core::Usage {
        self.inner.usage()
    }
    fn stats(&self) -> cache_core::StatsSnapshot {
        self.inner.stats()
    }
    async fn flush(&self) -> cache_core::Result<()> {
        self.inner.flush().await
    }
    async fn close(&self) -> cache_core::Result<()> {
        self.inner.close().await
    }
}

type HeldPromotion = (Arc<HoldsPromotion<MemoryTier>>, Arc<MemoryTier>, TieredCache, Key, Instant);

/// Two tiers, "old" in the lower one, and a get whose promotion of it into the top tier waits
/// at the top's gate (`top.puts`); removals from the top are held back too if `hold_removes`.
/// Returns the tiers, the cache, the key and a deadline 10 s away.
async fn a_held_promotion(name: &str, hold_removes: bool) -> HeldPromotion {
    let c = clock();
    let top = Arc::new(HoldsPromotion::new(l1(1 << 20, &c), "old"));
    top.hold_removes.store(hold_removes, Ordering::SeqCst);
    let bottom = Arc::new(l1(1 << 20, &c));
    let cache = TieredCache::builder()
        .clock(c.clone())
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(bottom.clone()))
        .build()
        .unwrap();
    let k = key(name);
    let _ = bottom.put(k.clone(), Entry::new("old")).await.unwrap();
    assert_eq!(cache.get(&k).await.unwrap().unwrap().value, "old");
    let deadline = Instant::now() + Duration::from_secs(10);
    while top.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the promotion never started");
        tokio::task::yield_now().await;
    }
    (top, bottom, cache, k, deadline)
}

/// A promotion that a put overtook writes its older copy and then undoes it; in between, `get`
/// must not serve that copy (it reads the tier below, which holds the newest value). The tier
/// double stops the promotion exactly in that window, so this fails without the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_overtaken_by_a_put_is_never_served_before_its_undo() {
    let (top, _bottom, cache, k, deadline) = a_held_promotion("overtaken", true).await;
    let _ = cache.put(k.clone(), Entry::new("new")).await.unwrap();
    // Let the promotion write its older copy; its undo (a removal) is held back.
    top.puts.add_permits(1);
    while top.inner.get(&k).await.unwrap().map(|e| e.value) != Some("old".into()) {
        assert!(Instant::now() < deadline, "the promotion never wrote its copy");
        tokio::task::yield_now().await;
    }
    assert_eq!(
        cache.get(&k).await.unwrap().unwrap().value,
        "new",
        "served the overtaken promotion's older copy"
    );
    top.hold_removes.store(false, Ordering::SeqCst);
    top.removes.add_permits(1 << 20);
    cache.quiesce().await;
    assert_eq!(cache.get(&k).await.unwrap().unwrap().value, "new");
    assert!(top.inner.get(&k).await.unwrap().is_none_or(|e| e.value == "new"));
}

/// A write-behind job that a removal overtook lands its value after the removal and then
/// undoes it; in between, `get` must not serve it (the removal left the tier marked clean). The
/// tier double stops the job exactly in that window, so this fails without the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_overtaken_by_a_removal_is_never_served_before_its_undo() {
    let c = clock();
    let top = Arc::new(l1(1 << 20, &c));
    let bottom = Arc::new(HoldsPromotion::new(l1(1 << 20, &c), "old"));
    let cache = TieredCache::builder()
        .clock(c.clone())
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(bottom.clone()).write(WritePolicy::behind()))
        .build()
        .unwrap();
    let k = key("overtaken");
    // The job's write into the lower tier waits at its gate.
    let _ = cache.put(k.clone(), Entry::new("old")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bottom.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the write-behind job never started");
        tokio::task::yield_now().await;
    }
    // The removal finds nothing below yet; the job's undo (a removal) is held back after it.
    bottom.hold_removes.store(false, Ordering::SeqCst);
    cache.remove(&k).await.unwrap();
    bottom.hold_removes.store(true, Ordering::SeqCst);
    bottom.puts.add_permits(1);
    while bottom.inner.get(&k).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the job never wrote its value");
        tokio::task::yield_now().await;
    }
    assert!(cache.get(&k).await.unwrap().is_none(), "served a removed key's write-behind copy");
    assert!(!cache.contains(&k).await.unwrap());
    bottom.hold_removes.store(false, Ordering::SeqCst);
    bottom.removes.add_permits(1 << 20);
    cache.quiesce().await;
    assert!(cache.get(&k).await.unwrap().is_none(), "the undo ran");
    assert!(bottom.inner.get(&k).await.unwrap().is_none());
}

/// S3-FIFO's filter between RAM and the tier below: what was read twice while in RAM is
/// demoted, a key read once or never is dropped and remembered by the ghost, and the same key
/// evicted again while the ghost remembers it is demoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_chance_demotes_what_was_read_and_what_came_back() {
    let c = clock();
    let top = Arc::new(
        MemoryTier::builder(64 * 1024)
            .clock(c.clone())
            .eviction_policy(cache_l1::EvictionPolicy::Lru)
            .build(),
    );
    let bottom = Arc::new(l1(64 << 20, &c));
    let cache = TieredCache::builder()
        .clock(c.clone())
        .demotion_filter(crate::policy::DemotionFilter::SecondChance { ghost_entries: Some(1_000) })
        .tier(TierOptions::from_arc(top.clone()))
        .tier(TierOptions::from_arc(bottom.clone()).write(WritePolicy::OnEviction))
        .build()
        .unwrap();
    let value = || Entry::new(vec![7u8; 1000]);
    let fill = |round: u32| {
        let cache = cache.clone();
        let top = top.clone();
        async move {
            for i in 0..200 {
                let _ = cache.put(key(&format!("fill{round}-{i}")), value()).await.unwrap();
            }
            top.flush().await.unwrap();
            cache.quiesce().await;
        }
    };
    for i in 0..20 {
        let _ = cache.put(key(&format!("read{i}")), value()).await.unwrap();
        for _ in 0..2 {
            assert!(cache.get(&key(&format!("read{i}"))).await.unwrap().is_some());
        }
        let _ = cache.put(key(&format!("readonce{i}")), value()).await.unwrap();
        assert!(cache.get(&key(&format!("readonce{i}"))).await.unwrap().is_some());
    }
    for i in 0..20 {
        let _ = cache.put(key(&format!("once{i}")), value()).await.unwrap();
    }
    fill(0).await;
    for i in 0..20 {
        assert!(bottom.get(&key(&format!("read{i}"))).await.unwrap().is_some(), "read{i}");
        let k = key(&format!("readonce{i}"));
        assert!(bottom.get(&k).await.unwrap().is_none(), "read once, as S3-FIFO: readonce{i}");
        assert!(bottom.get(&key(&format!("once{i}"))).await.unwrap().is_none(), "once{i}");
    }
    let stats = cache.tiered_stats();
    assert!(stats.tiers[1].demotions_filtered >= 150, "{stats:?}");
    assert_eq!(stats.tiers[1].demotions, 20, "{stats:?}");
    // The one-hit wonders come back while the ghost (1,000 tags) still remembers them.
    for i in 0..20 {
        let _ = cache.put(key(&format!("once{i}")), value()).await.unwrap();
    }
    fill(1).await;
    for i in 0..20 {
        assert!(bottom.get(&key(&format!("once{i}"))).await.unwrap().is_some(), "once{i} again");
    }
}

/// A removal through [`TieredCache::front`] is ordered with the cache: a promotion that read
/// the old value before it is undone (a removal straight from the tier would leave the copy
/// there: it lands once the held-back put goes through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_through_the_front_view_is_not_undone_by_a_racing_promotion() {
    let (top, bottom, cache, k, _) = a_held_promotion("front", false).await;
    cache.front(1).unwrap().remove(&k).await.unwrap();
    top.puts.add_permits(1);
    cache.quiesce().await;
    assert!(top.inner.get(&k).await.unwrap().is_none(), "the promotion put the removed copy back");
    assert!(bottom.get(&k).await.unwrap().is_some(), "the view leaves the lower tier alone");
}

fn stale_cache(c: &Arc<ManualClock>, policy: crate::ServeStale) -> TieredCache {
    TieredCache::builder()
        .clock(c.clone())
        .serve_stale(policy)
        .tier(l1(1 << 20, c))
        .build()
        .unwrap()
}

async fn load_value(cache: &TieredCache, value: &'static str) -> Option<Entry> {
    cache.get_or_load(key("llm"), move || async move { Ok(Some(Entry::new(value))) }).await.unwrap()
}

fn down() -> cache_core::Error {
    cache_core::Error::new(ErrorKind::Unavailable, "origin", "down")
}

/// Stale-while-revalidate: fresh for 10 s, then served at once (for 60 s more) while one
/// loader refreshes it in the background.
#[tokio::test]
async fn a_stale_entry_is_served_while_one_loader_refreshes_it() {
    let c = clock();
    let cache =
        stale_cache(&c, crate::ServeStale::new(Duration::from_secs(10), Duration::from_secs(60)));
    assert_eq!(load_value(&cache, "v1").await.unwrap().value, "v1");
    c.advance(Duration::from_secs(9));
    assert_eq!(load_value(&cache, "unused").await.unwrap().value, "v1", "fresh: no load");
    assert_eq!(cache.tiered_stats().served_stale, 0);
    c.advance(Duration::from_secs(1));
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let calls = calls.clone();
        let got = cache
            .get_or_load(key("llm"), move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(Some(Entry::new("v2")))
            })
            .await
            .unwrap();
        assert_eq!(got.unwrap().value, "v1", "stale, served at once");
    }
    cache.quiesce().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh for the three stale reads");
    assert_eq!(cache.tiered_stats().served_stale, 3);
    assert_eq!(cache.get(&key("llm")).await.unwrap().unwrap().value, "v2", "refreshed");
    assert_eq!(load_value(&cache, "unused").await.unwrap().value, "v2", "and fresh again");
}

/// Fail-safe: with the loader down, a stale entry is served until the grace runs out; then
/// the loader's error is returned.
#[tokio::test]
async fn a_stale_entry_is_served_when_the_loader_fails_until_the_grace_runs_out() {
    let c = clock();
    let policy =
        crate::ServeStale::new(Duration::from_secs(10), Duration::from_secs(60)).revalidate(false);
    let cache = stale_cache(&c, policy);
    let _ = load_value(&cache, "v1").await;
    c.advance(Duration::from_secs(69));
    let got = cache.get_or_load(key("llm"), || async { Err(down()) }).await.unwrap();
    assert_eq!(got.unwrap().value, "v1", "the loader failed: the stale entry is served");
    let stats = cache.tiered_stats();
    assert_eq!((stats.served_stale, stats.served_stale_on_error), (0, 1));
    c.advance(Duration::from_secs(1));
    let err = cache.get_or_load(key("llm"), || async { Err(down()) }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "past the grace the error is returned");
    // Without `revalidate`, a stale read waits for a loader that works.
    assert_eq!(load_value(&cache, "v2").await.unwrap().value, "v2");

    let strict = stale_cache(&c, policy.on_error(false));
    let _ = load_value(&strict, "v1").await;
    c.advance(Duration::from_secs(10));
    let err = strict.get_or_load(key("llm"), || async { Err(down()) }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "on_error(false): the error, not the entry");
}

/// A refresh that finds nothing at the source removes the stale entry; without
/// `serve_stale`, an old entry is simply a hit.
#[tokio::test]
async fn a_refresh_that_finds_nothing_removes_the_stale_entry() {
    let c = clock();
    let cache =
        stale_cache(&c, crate::ServeStale::new(Duration::from_secs(10), Duration::from_secs(60)));
    let _ = load_value(&cache, "v1").await;
    c.advance(Duration::from_secs(30));
    let got = cache.get_or_load(key("llm"), || async { Ok(None) }).await.unwrap();
    assert_eq!(got.unwrap().value, "v1");
    cache.quiesce().await;
    assert!(cache.get(&key("llm")).await.unwrap().is_none(), "gone at the source, gone here");

    let plain = TieredCache::builder().clock(c.clone()).tier(l1(1 << 20, &c)).build().unwrap();
    let _ = load_value(&plain, "v1").await;
    c.advance(Duration::from_secs(3600));
    let got = plain.get_or_load(key("llm"), || async { Err(down()) }).await.unwrap();
    assert_eq!(got.unwrap().value, "v1", "no serve_stale: no freshness, no load");
}

#[tokio::test(flavor = "current_thread")]
async fn two_tiers_of_one_kind_are_told_apart_by_their_names() {
    let c = clock();
    let sessions = MemoryTier::builder(1 << 20).clock(c.clone()).name("sessions").build();
    let vectors = Arc::new(MemoryTier::builder(1 << 20).clock(c.clone()).name("vectors").build());
    let cache = TieredCache::builder()
        .clock(c.clone())
        .tier(sessions)
        .tier(TierOptions::from_arc(vectors.clone()))
        .build()
        .unwrap();
    let report = cache.put_report(key("k"), Entry::new("v")).await.unwrap();
    let names: Vec<_> = report.tiers.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["sessions", "vectors"]);
    let stats = cache.tiered_stats();
    let names: Vec<_> = stats.tiers.iter().map(|t| t.tier.tier).collect();
    assert_eq!(names, ["sessions", "vectors"], "the stats and their metrics' labels");
    vectors.close().await.unwrap();
    let err = vectors.get(&key("k")).await.unwrap_err();
    assert_eq!((err.kind(), err.tier()), (ErrorKind::Closed, "vectors"));
}
