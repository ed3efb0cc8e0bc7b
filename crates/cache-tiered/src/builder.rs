//! Building a [`TieredCache`]: the ordered tiers and the policies of each.

use std::{sync::Arc, time::Duration};

use cache_core::{Clock, Error, Result, SystemClock, Tier};

use crate::{
    policy::{
        AdmissionPolicy, DemotionFilter, PromoteAlways, PromotionPolicy, ServeStale, WritePolicy,
    },
    tiered::TieredCache,
};

const NAME: &str = "tiered";

/// One tier and its policies.
#[derive(Debug, Clone)]
pub struct TierOptions {
    pub(crate) tier: Arc<dyn Tier>,
    pub(crate) write: Option<WritePolicy>,
    pub(crate) admission: Vec<Arc<dyn AdmissionPolicy>>,
    pub(crate) timeout: Option<Duration>,
}

impl TierOptions {
    /// A tier with default policies: write-through, no admission filter, and a 5 s timeout
    /// below the top tier (none on the top tier).
    ///
    /// ```
    /// use cache_core::{Entry, Key};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TierWrite, TieredCache};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).build())
    ///     .tier(TierOptions::new(MemoryTier::builder(16 << 20).build()))
    ///     .build()?;
    /// let report = cache.put_report(Key::new("docs", "k")?, Entry::new("v")).await?;
    /// // Write-through by default: every tier has the value when the put returns.
    /// assert_eq!(report.tiers, [("l1", TierWrite::Stored), ("l1", TierWrite::Stored)]);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn new(tier: impl Tier) -> TierOptions {
        TierOptions::from_arc(Arc::new(tier))
    }

    /// Like [`TierOptions::new`] for a tier already shared.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TieredCache};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let warm = Arc::new(MemoryTier::builder(16 << 20).build());
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).build())
    ///     .tier(TierOptions::from_arc(warm.clone()))
    ///     .build()?;
    /// let key = Key::new("docs", "k")?;
    /// assert!(cache.put(key.clone(), Entry::new("v")).await?.is_stored());
    /// // The handle kept outside the cache sees what the cache wrote.
    /// assert_eq!(warm.get(&key).await?.unwrap().value, "v");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn from_arc(tier: Arc<dyn Tier>) -> TierOptions {
        TierOptions { tier, write: None, admission: Vec::new(), timeout: None }
    }

    /// How `put` writes this tier (default: [`WritePolicy::Through`]).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cache_core::{Entry, Key, Tier};
    /// # use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TierWrite, TieredCache, WritePolicy};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let below = Arc::new(MemoryTier::builder(16 << 20).build());
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).build())
    ///     .tier(TierOptions::from_arc(below.clone()).write(WritePolicy::OnEviction))
    ///     .build()?;
    /// let key = Key::new("docs", "k")?;
    /// let report = cache.put_report(key.clone(), Entry::new("v")).await?;
    /// // Only the top tier is written; the tier below receives what the top tier evicts.
    /// assert_eq!(report.tiers[0].1, TierWrite::Stored);
    /// assert_eq!(report.tiers[1].1, TierWrite::Skipped);
    /// assert!(!below.contains(&key).await?);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn write(mut self, policy: WritePolicy) -> TierOptions {
        self.write = Some(policy);
        self
    }

    /// Adds an admission policy; every write into this tier (put, promotion, demotion) must pass
    /// all of them.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Rejection};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TierWrite, TieredCache, policy::SizeRange};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).build())
    ///     .tier(TierOptions::new(MemoryTier::builder(16 << 20).build())
    ///         .admission(SizeRange { min: 0, max: 1024 }))
    ///     .build()?;
    /// let big = Entry::new(vec![0u8; 4096]);
    /// let report = cache.put_report(Key::new("docs", "big")?, big).await?;
    /// assert_eq!(report.tiers[0].1, TierWrite::Stored);
    /// assert_eq!(report.tiers[1].1, TierWrite::Rejected(Rejection::TooLarge));
    /// assert_eq!(cache.tiered_stats().tiers[1].rejections, [(Rejection::TooLarge, 1)]);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn admission(mut self, policy: impl AdmissionPolicy) -> TierOptions {
        self.admission.push(Arc::new(policy));
        self
    }

    /// Calls into this tier that take longer fail as `Unavailable` and are skipped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, ErrorKind, Key};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TierWrite, TieredCache};
    /// # use cache_core::{Namespace, PutOutcome, Result, StatsSnapshot, Tier, Usage, async_trait};
    /// # #[derive(Debug)]
    /// # struct Hangs;
    /// # #[async_trait]
    /// # impl Tier for Hangs {
    /// #     fn name(&self) -> &'static str { "hangs" }
    /// #     async fn get(&self, _: &Key) -> Result<Option<Entry>> { std::future::pending().await }
    /// #     async fn put(&self, _: Key, _: Entry) -> Result<PutOutcome> {
    /// #         std::future::pending().await
    /// #     }
    /// #     async fn remove(&self, _: &Key) -> Result<()> { std::future::pending().await }
    /// #     async fn clear_namespace(&self, _: &Namespace) -> Result<()> { Ok(()) }
    /// #     fn usage(&self) -> Usage { Usage::default() }
    /// #     fn stats(&self) -> StatsSnapshot { StatsSnapshot::default() }
    /// #     async fn flush(&self) -> Result<()> { Ok(()) }
    /// #     async fn close(&self) -> Result<()> { Ok(()) }
    /// # }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // `Hangs` is a tier whose calls never return.
    /// let cache = TieredCache::builder()
    ///     .tier(MemoryTier::builder(1 << 20).build())
    ///     .tier(TierOptions::new(Hangs).timeout(Duration::from_millis(50)))
    ///     .build()?;
    /// let report = cache.put_report(Key::new("docs", "k")?, Entry::new("v")).await?;
    /// assert_eq!(report.tiers[1].1, TierWrite::Failed(ErrorKind::Unavailable));
    /// // A miss in the top tier waits 50 ms for the tier below, then skips it.
    /// assert!(cache.get(&Key::new("docs", "absent")?).await?.is_none());
    /// assert_eq!(cache.tiered_stats().tiers[1].total_faults(), 2);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> TierOptions {
        self.timeout = Some(timeout);
        self
    }
}

impl<T: Tier> From<T> for TierOptions {
    fn from(tier: T) -> TierOptions {
        TierOptions::new(tier)
    }
}

/// Builds a [`TieredCache`] from tiers listed fastest first.
#[derive(Debug)]
pub struct TieredBuilder {
    pub(crate) tiers: Vec<TierOptions>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) promotion: Arc<dyn PromotionPolicy>,
    pub(crate) strict: bool,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) serve_stale: Option<ServeStale>,
    pub(crate) demotion_queue_len: usize,
    pub(crate) demotion_filter: DemotionFilter,
}

impl Default for TieredBuilder {
    fn default() -> TieredBuilder {
        TieredBuilder {
            tiers: Vec::new(),
            clock: Arc::new(SystemClock),
            promotion: Arc::new(PromoteAlways),
            strict: false,
            negative_ttl: None,
            serve_stale: None,
            demotion_queue_len: 4096,
            demotion_filter: DemotionFilter::All,
        }
    }
}

impl TieredBuilder {
    /// Adds the next (slower) tier.
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TieredCache, WritePolicy};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder()
    ///     // A bare tier gets the default options ...
    ///     .tier(MemoryTier::builder(1 << 20).name("hot").build())
    ///     // ... a `TierOptions` sets its own.
    ///     .tier(TierOptions::new(MemoryTier::builder(16 << 20).name("warm").build())
    ///         .write(WritePolicy::OnEviction))
    ///     .build()?;
    /// let names: Vec<_> = cache.tiers().iter().map(|t| t.name()).collect();
    /// assert_eq!(names, ["hot", "warm"]);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn tier(mut self, tier: impl Into<TierOptions>) -> TieredBuilder {
        self.tiers.push(tier.into());
        self
    }

    /// The clock for expiry and policy windows (default: the system clock). Give every tier the
    /// same clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Timestamp};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::TieredCache;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    /// let cache = TieredCache::builder()
    ///     .clock(clock.clone())
    ///     .tier(MemoryTier::builder(1 << 20).clock(clock.clone()).build())
    ///     .build()?;
    /// let key = Key::new("docs", "k")?;
    /// let entry = Entry::new("v").with_ttl(&*clock, Duration::from_secs(60));
    /// assert!(cache.put(key.clone(), entry).await?.is_stored());
    /// assert!(cache.get(&key).await?.is_some());
    /// clock.advance(Duration::from_secs(60));
    /// assert!(cache.get(&key).await?.is_none(), "expired by the manual clock");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> TieredBuilder {
        self.clock = clock;
        self
    }

    /// When a hit below the top tier is copied up (default: always).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cache_core::{Entry, Key, Tier};
    /// # use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TieredCache, policy::PromoteUnderSize};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let top = Arc::new(MemoryTier::builder(1 << 20).build());
    /// # let below = Arc::new(MemoryTier::builder(16 << 20).build());
    /// let cache = TieredCache::builder()
    ///     .tier(TierOptions::from_arc(top.clone()))
    ///     .tier(TierOptions::from_arc(below.clone()))
    ///     .promotion(PromoteUnderSize(1024))
    ///     .build()?;
    /// let (small, large) = (Key::new("docs", "small")?, Key::new("docs", "large")?);
    /// assert!(below.put(small.clone(), Entry::new("tiny")).await?.is_stored());
    /// assert!(below.put(large.clone(), Entry::new(vec![0u8; 4096])).await?.is_stored());
    /// assert!(cache.get(&small).await?.is_some());
    /// assert!(cache.get(&large).await?.is_some());
    /// cache.quiesce().await;
    /// assert!(top.contains(&small).await?, "promoted");
    /// assert!(!top.contains(&large).await?, "served from below, not copied up");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn promotion(mut self, policy: impl PromotionPolicy) -> TieredBuilder {
        self.promotion = Arc::new(policy);
        self
    }

    /// Strict mode: a tier error or timeout is returned to the caller instead of being skipped.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use cache_core::{ErrorKind, Key, Tier};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TieredCache};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let below = Arc::new(MemoryTier::builder(1 << 20).build());
    /// let stack = |strict| {
    ///     TieredCache::builder()
    ///         .tier(MemoryTier::builder(1 << 20).build())
    ///         .tier(TierOptions::from_arc(below.clone()))
    ///         .strict(strict)
    ///         .build()
    /// };
    /// let (strict, lenient) = (stack(true)?, stack(false)?);
    /// below.close().await?; // every call into the lower tier fails from now on
    /// let key = Key::new("docs", "k")?;
    /// assert_eq!(strict.get(&key).await.unwrap_err().kind(), ErrorKind::Closed);
    /// assert!(lenient.get(&key).await?.is_none(), "skipped: a miss");
    /// assert_eq!(lenient.tiered_stats().tiers[1].total_faults(), 1, "and counted");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn strict(mut self, strict: bool) -> TieredBuilder {
        self.strict = strict;
        self
    }

    /// Remembers "the loader found nothing" for this long, so `get_or_load` does not call the
    /// loader again for the same missing key (default: off).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Timestamp};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::TieredCache;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    /// let cache = TieredCache::builder()
    ///     .clock(clock.clone())
    ///     .tier(MemoryTier::builder(1 << 20).clock(clock.clone()).build())
    ///     .negative_ttl(Duration::from_secs(30))
    ///     .build()?;
    /// let key = Key::new("users", "unknown")?;
    /// assert!(cache.get_or_load(key.clone(), || async { Ok(None) }).await?.is_none());
    /// // Cached as absent: within the TTL the loader does not run.
    /// assert!(cache.get_or_load(key.clone(), || async { unreachable!() }).await?.is_none());
    /// clock.advance(Duration::from_secs(30));
    /// let found = cache.get_or_load(key, || async { Ok(Some(Entry::new("signed up"))) }).await?;
    /// assert_eq!(found.unwrap().value, "signed up");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> TieredBuilder {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Lets `get_or_load` serve entries past their freshness while it reloads them or when the
    /// loader fails, as `policy` says (default: never); see [`ServeStale`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Timestamp};
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{ServeStale, TieredCache};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    /// let cache = TieredCache::builder()
    ///     .clock(clock.clone())
    ///     .tier(MemoryTier::builder(1 << 20).clock(clock.clone()).build())
    ///     .serve_stale(ServeStale::new(Duration::from_secs(60), Duration::from_secs(600)))
    ///     .build()?;
    /// let key = Key::new("llm", "prompt")?;
    /// assert!(cache.put(key.clone(), Entry::new("v1")).await?.is_stored());
    /// clock.advance(Duration::from_secs(90)); // stale, within the grace
    /// let got = cache.get_or_load(key.clone(), || async { Ok(Some(Entry::new("v2"))) }).await?;
    /// assert_eq!(got.unwrap().value, "v1", "served at once while the loader runs");
    /// cache.quiesce().await;
    /// assert_eq!(cache.get(&key).await?.unwrap().value, "v2", "refreshed");
    /// assert_eq!(cache.tiered_stats().served_stale, 1);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn serve_stale(mut self, policy: ServeStale) -> TieredBuilder {
        self.serve_stale = Some(policy);
        self
    }

    /// Most evicted entries waiting to be demoted; beyond it, demotions are dropped and counted.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cache_core::{Entry, Key, Tier};
    /// # use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TieredCache, WritePolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_core::Result<()> {
    /// let top = Arc::new(MemoryTier::builder(64 << 10).build());
    /// let below = MemoryTier::builder(16 << 20).build();
    /// let cache = TieredCache::builder()
    ///     .tier(TierOptions::from_arc(top.clone()))
    ///     .tier(TierOptions::new(below).write(WritePolicy::OnEviction))
    ///     .demotion_queue_len(1)
    ///     .build()?;
    /// for i in 0..200 {
    ///     let entry = Entry::new(vec![0u8; 1000]);
    ///     assert!(cache.put(Key::new("docs", i.to_string())?, entry).await?.is_stored());
    /// }
    /// top.flush().await?; // a burst of evictions, more than the queue holds
    /// cache.quiesce().await;
    /// assert!(cache.tiered_stats().tiers[1].demotions_dropped > 0);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn demotion_queue_len(mut self, len: usize) -> TieredBuilder {
        self.demotion_queue_len = len;
        self
    }

    /// Which entries the top tier evicts are demoted to an
    /// [`OnEviction`](WritePolicy::OnEviction) tier below it (default:
    /// [`DemotionFilter::All`]). [`DemotionFilter::SecondChance`] is S3-FIFO's filter: only
    /// entries read twice while in the top tier, or seen again soon after being dropped, go
    /// down.
    /// [`DemotionFilter::TinyLfu`] is W-TinyLFU's: only entries requested more often than what
    /// the tier below evicts go down; [`DemotionFilter::tiny_lfu`] applies both (either
    /// suffices), which measured best.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cache_core::{Entry, Key, Tier};
    /// use cache_l1::{EvictionPolicy, MemoryTier};
    /// use cache_tiered::{TierOptions, TieredCache, WritePolicy, policy::DemotionFilter};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let top = MemoryTier::builder(64 << 10).eviction_policy(EvictionPolicy::Lru).build();
    /// # let top = Arc::new(top);
    /// # let below = Arc::new(MemoryTier::builder(16 << 20).build());
    /// let cache = TieredCache::builder()
    ///     .tier(TierOptions::from_arc(top.clone()))
    ///     .tier(TierOptions::from_arc(below.clone()).write(WritePolicy::OnEviction))
    ///     .demotion_filter(DemotionFilter::second_chance())
    ///     .build()?;
    /// let (read, unread) = (Key::new("docs", "read")?, Key::new("docs", "unread")?);
    /// assert!(cache.put(read.clone(), Entry::new(vec![1u8; 1000])).await?.is_stored());
    /// assert!(cache.put(unread.clone(), Entry::new(vec![2u8; 1000])).await?.is_stored());
    /// for _ in 0..2 {
    ///     assert!(cache.get(&read).await?.is_some());
    /// }
    /// for i in 0..200 {
    ///     // Never read either: the 64 KiB top tier evicts them all and the filter drops them.
    ///     let fill = Entry::new(vec![0u8; 1000]);
    ///     assert!(cache.put(Key::new("fill", i.to_string())?, fill).await?.is_stored());
    /// }
    /// top.flush().await?;
    /// cache.quiesce().await;
    /// assert!(below.contains(&read).await?, "read twice while on top: demoted");
    /// assert!(!below.contains(&unread).await?, "never read: dropped");
    /// assert!(cache.tiered_stats().tiers[1].demotions_filtered > 0);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn demotion_filter(mut self, filter: DemotionFilter) -> TieredBuilder {
        self.demotion_filter = filter;
        self
    }

    /// Builds the cache and starts its background tasks on the current tokio runtime.
    ///
    /// ```
    /// use cache_core::ErrorKind;
    /// use cache_l1::MemoryTier;
    /// use cache_tiered::{TierOptions, TieredCache, WritePolicy};
    ///
    /// let err = TieredCache::builder().build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid, "no tiers");
    /// let one = || MemoryTier::builder(1 << 20).build();
    /// let err = TieredCache::builder().tier(one()).build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid, "outside a tokio runtime");
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let top = TierOptions::new(one()).write(WritePolicy::OnEviction);
    /// let err = TieredCache::builder().tier(top).build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid, "no tier above the top one to evict into it");
    /// assert!(TieredCache::builder().tier(one()).build().is_ok());
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) with no tiers, outside a tokio
    /// runtime, when the top tier asks for [`WritePolicy::OnEviction`], or when a tier above an
    /// `OnEviction` tier cannot report evictions.
    pub fn build(mut self) -> Result<TieredCache> {
        if self.tiers.is_empty() {
            return Err(Error::invalid(NAME, "a tiered cache needs at least one tier"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::invalid(NAME, "build the tiered cache inside a tokio runtime"));
        }
        if self.tiers[0].write == Some(WritePolicy::OnEviction) {
            return Err(Error::invalid(
                NAME,
                "the top tier cannot be written on eviction: there is no tier above it",
            ));
        }
        if let Some(t) = self.tiers.iter().find(|t| t.timeout == Some(Duration::ZERO)) {
            return Err(Error::invalid(
                NAME,
                format!(
                    "tier {} has a timeout of zero: every call into it would time out",
                    t.tier.name()
                ),
            ));
        }
        for (i, t) in self.tiers.iter_mut().enumerate() {
            t.write.get_or_insert(WritePolicy::Through);
            if i > 0 {
                t.timeout.get_or_insert(Duration::from_secs(5));
            }
        }
        TieredCache::from_builder(self)
    }
}

#[cfg(test)]
mod tests {
    use cache_core::ErrorKind;
    use cache_l1::MemoryTier;

    use super::*;

    #[tokio::test]
    async fn a_zero_timeout_is_refused() {
        let err = TieredBuilder::default()
            .tier(MemoryTier::builder(1 << 20).build())
            .tier(TierOptions::new(MemoryTier::builder(1 << 20).build()).timeout(Duration::ZERO))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("l1 has a timeout of zero"), "{err}");
    }
}
