//! [`FrontTiers`]: the first tiers of a cache as one [`Tier`], for dropping copies from them
//! (cross-node invalidation) without racing the cache's own background copies.

use std::sync::Arc;

use async_trait::async_trait;
use cache_core::{
    Entry, Error, ErrorKind, Key, Namespace, PutOutcome, Result, StatsSnapshot, Tier, Usage,
};

use crate::tiered::TieredCache;

const NAME: &str = "tiered.front";

/// The first tiers of a [`TieredCache`] (say its RAM and disk tiers, the ones a node holds
/// alone), as one [`Tier`] whose `remove` and `clear_namespace` are ordered with the cache.
///
/// Removing a key from a tier directly races the cache's background copies: a promotion that
/// read the old value from a lower tier just before the removal writes it back into RAM just
/// after. A removal through this view is a foreground write of the cache, so that promotion
/// (or demotion, or write-behind) is not written. Hand it where a [`Tier`] to drop copies from
/// is asked for, as an invalidator's local tier.
///
/// `get` reads the tiers top-down without promoting; `put` is
/// [`Unsupported`](ErrorKind::Unsupported) (write through the cache); `close` leaves the tiers
/// open (the cache owns them).
///
/// ```
/// use cache_tiered::{TieredCache, cache_core::Tier, l1::MemoryTier};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_tiered::cache_core::Result<()> {
/// let cache = TieredCache::builder()
///     .tier(MemoryTier::builder(1 << 20).build())
///     .tier(MemoryTier::builder(8 << 20).build())
///     .build()?;
/// let local = cache.front(1)?;
/// assert_eq!(local.tier_count(), 1);
/// let ns = cache_tiered::cache_core::Namespace::new("docs")?;
/// local.clear_namespace(&ns).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FrontTiers {
    cache: TieredCache,
    count: usize,
}

impl std::fmt::Debug for FrontTiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tiers().map(|t| t.name()).collect();
        f.debug_struct("FrontTiers").field("tiers", &names).finish()
    }
}

impl TieredCache {
    /// The first `count` tiers as one [`Tier`] whose removals are ordered with this cache's
    /// background copies; see [`FrontTiers`].
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] if `count` is 0 or more than the cache has tiers.
    pub fn front(&self, count: usize) -> Result<FrontTiers> {
        let len = self.shared.slots.len();
        if count == 0 || count > len {
            return Err(Error::invalid(
                NAME,
                format!("a view of {count} tiers asked for; the cache has {len} (1 to {len})"),
            ));
        }
        Ok(FrontTiers { cache: self.clone(), count })
    }
}

impl FrontTiers {
    /// How many tiers the view covers.
    pub fn tier_count(&self) -> usize {
        self.count
    }

    fn tiers(&self) -> impl Iterator<Item = &Arc<dyn Tier>> {
        self.cache.shared.slots[..self.count].iter().map(|s| &s.tier)
    }
}

#[async_trait]
impl Tier for FrontTiers {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        for tier in self.tiers() {
            if let Some(entry) = tier.get(key).await? {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    async fn put(&self, _key: Key, _entry: Entry) -> Result<PutOutcome> {
        Err(Error::new(
            ErrorKind::Unsupported,
            NAME,
            "a view of a cache's first tiers takes no puts: put through the cache",
        ))
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.cache.shared.remove_in(key, self.count).await
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        self.cache.shared.clear_in(namespace, self.count).await
    }

    fn usage(&self) -> Usage {
        Usage::sum(self.tiers().map(|t| t.usage()))
    }

    fn stats(&self) -> StatsSnapshot {
        let mut s = StatsSnapshot { tier: NAME, usage: self.usage(), ..StatsSnapshot::default() };
        for tier in self.tiers() {
            s.add_counters(&tier.stats());
        }
        s
    }

    async fn flush(&self) -> Result<()> {
        for tier in self.tiers() {
            tier.flush().await?;
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cache_l1::MemoryTier;

    use super::*;

    fn two_tiers() -> TieredCache {
        TieredCache::builder()
            .tier(MemoryTier::builder(1 << 20).build())
            .tier(MemoryTier::builder(1 << 20).build())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn removes_only_from_the_front_tiers() {
        let cache = two_tiers();
        let ns = Namespace::new("front").unwrap();
        let key = ns.key(b"k".to_vec()).unwrap();
        let _ = cache.put(key.clone(), Entry::new(b"v".to_vec())).await.unwrap();
        cache.quiesce().await;
        let front = cache.front(1).unwrap();
        assert!(front.get(&key).await.unwrap().is_some());
        front.remove(&key).await.unwrap();
        assert!(front.get(&key).await.unwrap().is_none());
        assert!(cache.tiers()[1].get(&key).await.unwrap().is_some(), "the lower tier keeps it");
        let put = front.put(key, Entry::new(b"w".to_vec())).await;
        assert_eq!(put.unwrap_err().kind(), ErrorKind::Unsupported);
    }

    #[tokio::test]
    async fn count_is_checked() {
        let cache = two_tiers();
        assert_eq!(cache.front(0).unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(cache.front(3).unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(cache.front(2).unwrap().tier_count(), 2);
    }
}
