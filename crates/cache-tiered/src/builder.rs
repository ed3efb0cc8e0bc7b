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
    pub fn new(tier: impl Tier) -> TierOptions {
        TierOptions::from_arc(Arc::new(tier))
    }

    /// Like [`TierOptions::new`] for a tier already shared.
    pub fn from_arc(tier: Arc<dyn Tier>) -> TierOptions {
        TierOptions { tier, write: None, admission: Vec::new(), timeout: None }
    }

    /// How `put` writes this tier (default: [`WritePolicy::Through`]).
    #[must_use]
    pub fn write(mut self, policy: WritePolicy) -> TierOptions {
        self.write = Some(policy);
        self
    }

    /// Adds an admission policy; every write into this tier (put, promotion, demotion) must pass
    /// all of them.
    #[must_use]
    pub fn admission(mut self, policy: impl AdmissionPolicy) -> TierOptions {
        self.admission.push(Arc::new(policy));
        self
    }

    /// Calls into this tier that take longer fail as `Unavailable` and are skipped.
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
    #[must_use]
    pub fn tier(mut self, tier: impl Into<TierOptions>) -> TieredBuilder {
        self.tiers.push(tier.into());
        self
    }

    /// The clock for expiry and policy windows (default: the system clock). Give every tier the
    /// same clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> TieredBuilder {
        self.clock = clock;
        self
    }

    /// When a hit below the top tier is copied up (default: always).
    #[must_use]
    pub fn promotion(mut self, policy: impl PromotionPolicy) -> TieredBuilder {
        self.promotion = Arc::new(policy);
        self
    }

    /// Strict mode: a tier error or timeout is returned to the caller instead of being skipped.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> TieredBuilder {
        self.strict = strict;
        self
    }

    /// Remembers "the loader found nothing" for this long, so `get_or_load` does not call the
    /// loader again for the same missing key (default: off).
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> TieredBuilder {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Lets `get_or_load` serve entries past their freshness while it reloads them or when the
    /// loader fails, as `policy` says (default: never); see [`ServeStale`].
    #[must_use]
    pub fn serve_stale(mut self, policy: ServeStale) -> TieredBuilder {
        self.serve_stale = Some(policy);
        self
    }

    /// Most evicted entries waiting to be demoted; beyond it, demotions are dropped and counted.
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
    #[must_use]
    pub fn demotion_filter(mut self, filter: DemotionFilter) -> TieredBuilder {
        self.demotion_filter = filter;
        self
    }

    /// Builds the cache and starts its background tasks on the current tokio runtime.
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
