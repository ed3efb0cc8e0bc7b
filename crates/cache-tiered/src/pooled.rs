//! [`PooledCache`]: namespaces with byte budgets of their own, so one tenant cannot evict
//! another's entries.

use std::{
    collections::HashMap,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use cache_core::{
    Entry, EntryMeta, Error, ErrorKind, Key, Namespace, NamespaceId, PutOutcome, Record, Result,
    StatsSnapshot, Tier, Usage, ValueStream, async_trait, check_open,
};

/// The name a [`PooledCache`] reports as a [`Tier`].
const NAME: &str = "pooled";

/// Caches side by side, each serving its own namespaces within its own budget: CacheLib's
/// pools over any [`Tier`] (a [`TieredCache`](crate::TieredCache), a single tier).
///
/// Every namespace assigned to a pool ([`PooledBuilder::pool`]) is read and written through
/// that pool's cache only; every other namespace goes to the shared cache
/// ([`PooledBuilder::shared`]). A pool's budget is therefore its tenants' quota, enforced
/// where writes are admitted: a tenant that writes more than its pool holds evicts its own
/// entries, never another pool's, and its floods do not move the other pools' hit ratios.
/// Each pool's [`usage`](Tier::usage) and [`stats`](Tier::stats) are the usage and counters
/// of its namespaces ([`PooledCache::pools`]); a namespace with a pool of its own is measured
/// alone.
///
/// Choose it when tenants share a process and a noisy one must not evict the others (a
/// multi-tenant LLM gateway, agent memory per customer). The price is fixed partitions: bytes
/// one pool leaves unused are not lent to another.
///
/// ```
/// use cache_core::{Entry, Key, Namespace, Tier};
/// use cache_l1::MemoryTier;
/// use cache_tiered::PooledCache;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let paying = Namespace::new("tenant/paying")?;
/// let cache = PooledCache::builder()
///     .pool("paying", MemoryTier::builder(64 << 20).build(), [paying.clone()])
///     .shared(MemoryTier::builder(16 << 20).build())
///     .build()?;
/// cache.put(paying.key("answer")?, Entry::new("42")).await?;
/// cache.put(Key::new("tenant/free", "answer")?, Entry::new("41")).await?;
/// assert_eq!(cache.pool_of(&paying), "paying");
/// let pools = cache.pools();
/// assert_eq!((pools[0].name, pools[0].stats.inserts), ("paying", 1));
/// assert_eq!((pools[1].name, pools[1].stats.inserts), ("shared", 1));
/// # Ok::<(), cache_core::Error>(()) }).unwrap();
/// ```
pub struct PooledCache {
    /// The pools in the order they were added, then the shared cache.
    pools: Vec<Pool>,
    /// The namespaces of each pool, in the same order.
    namespaces: Vec<Vec<Namespace>>,
    route: HashMap<NamespaceId, usize>,
    closed: AtomicBool,
}

struct Pool {
    name: &'static str,
    cache: Arc<dyn Tier>,
}

/// A pool's name, usage and counters ([`PooledCache::pools`]).
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// The pool's name (`"shared"` for the shared cache).
    pub name: &'static str,
    /// Its namespaces, as assigned ([`PooledBuilder::pool`]); empty for the shared cache.
    pub namespaces: Vec<Namespace>,
    /// Its cache's counters and usage.
    pub stats: StatsSnapshot,
}

impl std::fmt::Debug for PooledCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.pools.iter().map(|p| p.name).collect();
        f.debug_struct("PooledCache").field("pools", &names).finish_non_exhaustive()
    }
}

/// Builds a [`PooledCache`].
#[derive(Default)]
pub struct PooledBuilder {
    pools: Vec<(&'static str, Arc<dyn Tier>, Vec<Namespace>)>,
    shared: Option<Arc<dyn Tier>>,
}

impl std::fmt::Debug for PooledBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.pools.iter().map(|p| p.0).collect();
        f.debug_struct("PooledBuilder").field("pools", &names).finish_non_exhaustive()
    }
}

impl PooledBuilder {
    /// A pool named `name` (its stats and errors carry it) whose cache serves `namespaces`.
    /// Its cache's budget is their quota.
    #[must_use]
    pub fn pool(
        mut self,
        name: &'static str,
        cache: impl Tier,
        namespaces: impl IntoIterator<Item = Namespace>,
    ) -> PooledBuilder {
        self.pools.push((name, Arc::new(cache), namespaces.into_iter().collect()));
        self
    }

    /// [`pool`](PooledBuilder::pool) with a cache already shared behind an `Arc`.
    #[must_use]
    pub fn pool_arc(
        mut self,
        name: &'static str,
        cache: Arc<dyn Tier>,
        namespaces: impl IntoIterator<Item = Namespace>,
    ) -> PooledBuilder {
        self.pools.push((name, cache, namespaces.into_iter().collect()));
        self
    }

    /// The cache of every namespace no pool names (required).
    #[must_use]
    pub fn shared(mut self, cache: impl Tier) -> PooledBuilder {
        self.shared = Some(Arc::new(cache));
        self
    }

    /// [`shared`](PooledBuilder::shared) with a cache already shared behind an `Arc`.
    #[must_use]
    pub fn shared_arc(mut self, cache: Arc<dyn Tier>) -> PooledBuilder {
        self.shared = Some(cache);
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] without a shared cache, for a pool with no namespace, for two
    /// pools of one name (or a pool named `"shared"`), and for a namespace given to two pools.
    pub fn build(self) -> Result<PooledCache> {
        let invalid = |msg: String| Err(Error::invalid(NAME, msg));
        let Some(shared) = self.shared else {
            return invalid("a pooled cache needs a shared cache for the other namespaces".into());
        };
        let mut route = HashMap::new();
        let mut pools = Vec::with_capacity(self.pools.len() + 1);
        let mut namespaces = Vec::with_capacity(self.pools.len());
        for (i, (name, cache, spaces)) in self.pools.into_iter().enumerate() {
            if name == "shared" || pools.iter().any(|p: &Pool| p.name == name) {
                return invalid(format!("two pools are named {name:?} (\"shared\" is taken)"));
            }
            if spaces.is_empty() {
                return invalid(format!("pool {name:?} serves no namespace"));
            }
            for ns in &spaces {
                if let Some(other) = route.insert(ns.id(), i) {
                    let other = pools.get(other).map_or(name, |p: &Pool| p.name);
                    return invalid(format!(
                        "namespace {:?} is given to two pools, {other:?} and {name:?}",
                        ns.as_str()
                    ));
                }
            }
            pools.push(Pool { name, cache });
            namespaces.push(spaces);
        }
        pools.push(Pool { name: "shared", cache: shared });
        namespaces.push(Vec::new());
        Ok(PooledCache { pools, route, closed: AtomicBool::new(false), namespaces })
    }
}

impl PooledCache {
    /// A builder with no pool.
    pub fn builder() -> PooledBuilder {
        PooledBuilder::default()
    }

    fn pool(&self, key: &Key) -> &dyn Tier {
        self.pool_for(key.namespace())
    }

    /// The index of the pool serving `namespace`: its own, or the shared cache (the last).
    fn index_of(&self, namespace: &Namespace) -> usize {
        self.route.get(&namespace.id()).copied().unwrap_or(self.pools.len() - 1)
    }

    fn pool_for(&self, namespace: &Namespace) -> &dyn Tier {
        &*self.pools[self.index_of(namespace)].cache
    }

    /// The name of the pool that serves `namespace` (`"shared"` if no pool names it).
    pub fn pool_of(&self, namespace: &Namespace) -> &'static str {
        self.pools[self.index_of(namespace)].name
    }

    /// Each pool's name, namespaces, counters and usage, in the order they were added, then the
    /// shared cache's.
    pub fn pools(&self) -> Vec<PoolStats> {
        self.pools
            .iter()
            .zip(&self.namespaces)
            .map(|(p, spaces)| PoolStats {
                name: p.name,
                namespaces: spaces.clone(),
                stats: p.cache.stats(),
            })
            .collect()
    }

    fn check_open(&self) -> Result<()> {
        check_open(NAME, &self.closed)
    }

    /// Runs `f` on every pool's cache, all of them even if one fails; the first error wins.
    async fn each<'a, F, Fut>(&'a self, f: F) -> Result<()>
    where
        F: Fn(&'a dyn Tier) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let results = futures::future::join_all(self.pools.iter().map(|p| f(&*p.cache))).await;
        results.into_iter().collect()
    }

    /// Indices of `keys` grouped by the pool that serves them.
    fn by_pool<'k>(&self, keys: impl Iterator<Item = &'k Key>) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.pools.len()];
        for (i, key) in keys.enumerate() {
            groups[self.index_of(key.namespace())].push(i);
        }
        groups
    }
}

#[async_trait]
impl Tier for PooledCache {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.check_open()?;
        self.pool(key).get(key).await
    }

    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        self.check_open()?;
        self.pool(&key).put(key, entry).await
    }

    /// To the pool's tier, so a tier that uploads as the value arrives does so here too.
    async fn put_stream(
        &self,
        key: Key,
        meta: EntryMeta,
        len: u64,
        body: ValueStream,
    ) -> Result<PutOutcome> {
        self.check_open()?;
        self.pool(&key).put_stream(key, meta, len, body).await
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        self.pool(key).remove(key).await
    }

    async fn contains(&self, key: &Key) -> Result<bool> {
        self.check_open()?;
        self.pool(key).contains(key).await
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.pool(key).get_range(key, range).await
    }

    async fn drop_older_copy(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        self.pool(key).drop_older_copy(key).await
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        self.check_open()?;
        self.pool_for(namespace).clear_namespace(namespace).await
    }

    /// The sum over the pools: bytes, budgets (`None` if a pool is unbounded) and entries
    /// (`None` if a pool does not count them).
    fn usage(&self) -> Usage {
        Usage::sum(self.pools.iter().map(|p| p.cache.usage()))
    }

    /// The pools' counters summed (each pool's own: [`PooledCache::pools`]).
    fn stats(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot { tier: NAME, ..StatsSnapshot::default() };
        for p in &self.pools {
            total.add_counters(&p.cache.stats());
        }
        total.usage = self.usage();
        total
    }

    async fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.each(|c| c.flush()).await
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.each(|c| c.close()).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        self.check_open()?;
        let mut out = vec![None; keys.len()];
        for (pool, idx) in self.by_pool(keys.iter()).into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let group: Vec<Key> = idx.iter().map(|&i| keys[i].clone()).collect();
            let got = self.pools[pool].cache.get_many(&group).await?;
            for (i, entry) in idx.into_iter().zip(got) {
                out[i] = entry;
            }
        }
        Ok(out)
    }

    async fn put_many(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        self.check_open()?;
        let groups = self.by_pool(items.iter().map(|(k, _)| k));
        let mut slots: Vec<Option<(Key, Entry)>> = items.into_iter().map(Some).collect();
        let mut out = vec![None; slots.len()];
        for (pool, idx) in groups.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let group: Vec<(Key, Entry)> = idx.iter().filter_map(|&i| slots[i].take()).collect();
            let outcomes = self.pools[pool].cache.put_many(group).await?;
            for (i, outcome) in idx.into_iter().zip(outcomes) {
                out[i] = Some(outcome);
            }
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| Error::new(ErrorKind::Internal, NAME, "a pool skipped a put")))
            .collect()
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        self.check_open()?;
        self.pool(key).get_record(key).await
    }

    async fn put_valid_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        self.check_open()?;
        self.pool(&key).put_valid_record(key, record).await
    }
}

#[cfg(test)]
mod tests;
