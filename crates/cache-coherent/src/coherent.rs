//! [`CoherentCache`]: a [`TieredCache`] of one node, kept coherent with the other nodes.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use cache_core::{Entry, Error, Key, Namespace, PutOutcome, Result, StatsSnapshot, Tier, Usage};
use cache_remote_redis::{Invalidator, InvalidatorBuilder, invalidate::Versions};
use cache_tiered::{FrontTiers, PutReport, TieredCache};
use parking_lot::Mutex;
use tokio::{sync::Notify, task::JoinHandle};

const NAME: &str = "coherent";

/// Counters of a [`CoherentCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoherentStats {
    /// Entries a read found below their key's fence and refused (served as misses).
    pub refused: u64,
    /// Messages that could not be published (their namespaces are announced as lost later).
    pub unpublished: u64,
    /// Namespaces announced as lost after their messages could not be published.
    pub republished: u64,
}

#[derive(Debug, Default)]
struct Counters {
    refused: AtomicU64,
    unpublished: AtomicU64,
    republished: AtomicU64,
}

/// What [`CoherentCache::put_report`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoherentPut {
    /// The version the entry was written at.
    pub version: u64,
    /// What each tier did.
    pub report: PutReport,
}

/// Builds a [`CoherentCache`]. Start from [`CoherentCache::builder`].
#[must_use]
pub struct CoherentCacheBuilder {
    cache: TieredCache,
    invalidator: InvalidatorBuilder,
    local: usize,
}

impl fmt::Debug for CoherentCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoherentCacheBuilder")
            .field("cache", &self.cache)
            .field("invalidator", &self.invalidator)
            .field("local", &self.local)
            .finish()
    }
}

impl CoherentCacheBuilder {
    /// How many of the cache's tiers, counted from the top, are this node's own (RAM, local
    /// disk); the tiers below them are shared by every node (Redis, the bucket). 1 by default.
    pub fn local_tiers(mut self, count: usize) -> CoherentCacheBuilder {
        self.local = count;
        self
    }

    /// Starts the invalidator (with the local tiers as the ones it drops copies from) and
    /// returns the cache.
    ///
    /// # Errors
    /// `Invalid` if there are fewer tiers than `local_tiers`; the invalidator's errors
    /// (`Unavailable` when the server cannot be reached).
    pub async fn build(self) -> Result<CoherentCache> {
        let tiers = self.cache.tiers();
        if self.local > tiers.len() {
            return Err(Error::invalid(
                NAME,
                format!(
                    "{} local tiers asked for, but the cache has {} tiers",
                    self.local,
                    tiers.len()
                ),
            ));
        }
        // Drops go through the cache's view of its first tiers, ordered with its background
        // copies: a promotion that read the old value before a drop does not put it back.
        let local = match self.local {
            0 => None,
            n => Some(Arc::new(self.cache.front(n)?)),
        };
        let mut invalidator = self.invalidator;
        if let Some(front) = &local {
            invalidator = invalidator.local_tier(Arc::clone(front) as Arc<dyn Tier>);
        }
        let invalidator = invalidator.build().await?;
        let inner = Arc::new(Inner {
            cache: self.cache,
            invalidator,
            local,
            unpublished: Mutex::default(),
            wake: Notify::new(),
            counters: Counters::default(),
        });
        let task = tokio::spawn(republisher(Arc::clone(&inner)));
        Ok(CoherentCache { inner, task: Arc::new(TaskGuard(Mutex::new(Some(task)))) })
    }
}

struct Inner {
    cache: TieredCache,
    invalidator: Invalidator,
    local: Option<Arc<FrontTiers>>,
    /// Namespaces with a message that could not be published.
    unpublished: Mutex<HashSet<Namespace>>,
    wake: Notify,
    counters: Counters,
}

struct TaskGuard(Mutex<Option<JoinHandle<()>>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(task) = self.0.lock().take() {
            task.abort();
        }
    }
}

/// A [`TieredCache`] whose top tiers are this node's own and whose lower tiers are shared with
/// other nodes, kept coherent with them by an [`Invalidator`] and per-key versions; see the
/// [crate documentation](crate). Cheap to clone.
#[derive(Clone)]
pub struct CoherentCache {
    inner: Arc<Inner>,
    task: Arc<TaskGuard>,
}

impl fmt::Debug for CoherentCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoherentCache")
            .field("cache", &self.inner.cache)
            .field("invalidator", &self.inner.invalidator)
            .field("local", &self.inner.local)
            .field("stats", &self.coherent_stats())
            .finish_non_exhaustive()
    }
}

impl CoherentCache {
    /// A builder over `cache`, whose messages go through the invalidator `invalidator` will
    /// build (give it the server, the prefix and the namespaces to watch; the local tiers are
    /// added by [`CoherentCacheBuilder::build`]).
    pub fn builder(cache: TieredCache, invalidator: InvalidatorBuilder) -> CoherentCacheBuilder {
        CoherentCacheBuilder { cache, invalidator, local: 1 }
    }

    /// The tiered cache underneath. Writes made on it directly are neither versioned nor
    /// published.
    pub fn cache(&self) -> &TieredCache {
        &self.inner.cache
    }

    /// The invalidator.
    pub fn invalidator(&self) -> &Invalidator {
        &self.inner.invalidator
    }

    /// This node's versions and fences.
    pub fn versions(&self) -> &Arc<Versions> {
        self.inner.invalidator.versions()
    }

    /// The coherence counters.
    pub fn coherent_stats(&self) -> CoherentStats {
        let c = &self.inner.counters;
        CoherentStats {
            refused: c.refused.load(Ordering::Relaxed),
            unpublished: c.unpublished.load(Ordering::Relaxed),
            republished: c.republished.load(Ordering::Relaxed),
        }
    }

    /// Looks `key` up in the tiered cache and returns the entry if its version is at least
    /// the key's fence; an older one is a miss, and its copies in the local tiers are dropped.
    ///
    /// # Errors
    /// As for [`TieredCache`]'s `get`.
    pub async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let Some(entry) = self.inner.cache.get(key).await? else { return Ok(None) };
        Ok(self.check(key, entry).await)
    }

    async fn check(&self, key: &Key, entry: Entry) -> Option<Entry> {
        let versions = self.versions();
        if let Some(v) = entry.meta.version {
            versions.observe(v);
        }
        if versions.admits(key, entry.meta.version) {
            return Some(entry);
        }
        self.inner.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(ns = %key.namespace(), "refused an entry older than its key's fence");
        if let Some(front) = &self.inner.local
            && let Err(e) = front.remove(key).await
        {
            tracing::warn!(error = %e, "dropping a refused entry from the local tiers failed");
        }
        None
    }

    /// Stores `entry` under `key` at a new version (any version the entry carries is
    /// replaced: the coherent cache owns [`EntryMeta::version`](cache_core::EntryMeta)), then
    /// tells the other nodes, which drop their local copies and refuse older versions.
    ///
    /// A message that cannot be published (the server is unreachable) does not fail the put:
    /// the namespace is announced as lost once the server answers again, and the other nodes
    /// clear it conservatively.
    ///
    /// # Errors
    /// As for [`TieredCache::put_report`].
    pub async fn put_report(&self, key: Key, mut entry: Entry) -> Result<CoherentPut> {
        let version = self.versions().next();
        entry.meta.version = Some(version);
        // Fenced here before the tiers change: a racing older write of this node is refused.
        self.versions().fence_put(&key, version);
        let report = self.inner.cache.put_report(key.clone(), entry).await?;
        let published = self.inner.invalidator.publish_put(&key, version).await;
        self.published(key.namespace(), published);
        Ok(CoherentPut { version, report })
    }

    /// Removes `key` from every tier, then tells the other nodes.
    ///
    /// # Errors
    /// As for [`TieredCache`]'s `remove`.
    pub async fn remove(&self, key: &Key) -> Result<()> {
        let version = self.versions().next();
        self.versions().fence_remove(key, version);
        self.inner.cache.remove(key).await?;
        let published = self.inner.invalidator.publish_remove(key, version).await;
        self.published(key.namespace(), published);
        Ok(())
    }

    /// Clears `namespace` in every tier, then tells the other nodes.
    ///
    /// # Errors
    /// As for [`TieredCache`]'s `clear_namespace`.
    pub async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        let version = self.versions().next();
        self.versions().fence_clear(namespace, version);
        self.inner.cache.clear_namespace(namespace).await?;
        let published = self.inner.invalidator.publish_clear(namespace, version).await;
        self.published(namespace, published);
        Ok(())
    }

    /// Returns the entry for `key`, or runs `loader` once for all concurrent callers of this
    /// node (the tiered cache's single flight) and stores what it returns.
    ///
    /// The loaded entry gets a version taken *before* the loader runs, so a put that changes
    /// the key while the loader reads the old value has a higher version and wins. A load is a
    /// fill, not a change: it is not published.
    ///
    /// # Errors
    /// The loader's error, or as for [`TieredCache::get_or_load`].
    pub async fn get_or_load<F, Fut>(&self, key: Key, loader: F) -> Result<Option<Entry>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Entry>>> + Send + 'static,
    {
        if let Some(hit) = self.get(&key).await? {
            return Ok(Some(hit));
        }
        // The loader runs at most once: in the tiered cache's flight, or here if that flight
        // found an entry this node refuses.
        let loader = Arc::new(Mutex::new(Some(loader)));
        let versions = Arc::clone(self.versions());
        let in_flight = Arc::clone(&loader);
        let loaded = self
            .inner
            .cache
            .get_or_load(key.clone(), move || {
                let taken = in_flight.lock().take();
                async move {
                    let version = versions.next();
                    let Some(loader) = taken else { return Ok(None) };
                    Ok(loader().await?.map(|e| stamped(e, version)))
                }
            })
            .await?;
        let Some(entry) = loaded else { return Ok(None) };
        if let Some(entry) = self.check(&key, entry).await {
            return Ok(Some(entry));
        }
        let Some(loader) = loader.lock().take() else { return Ok(None) };
        let version = self.versions().next();
        let Some(entry) = loader().await? else { return Ok(None) };
        let entry = stamped(entry, version);
        let _ = self.inner.cache.put_report(key, entry.clone()).await;
        Ok(Some(entry))
    }

    fn published(&self, namespace: &Namespace, result: Result<()>) {
        if let Err(e) = result {
            self.inner.counters.unpublished.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(ns = %namespace, error = %e, "an invalidation could not be published; the namespace will be announced as lost");
            self.inner.unpublished.lock().insert(namespace.clone());
            self.inner.wake.notify_one();
        }
    }

    /// Namespaces whose messages are still waiting to be announced as lost.
    pub fn unpublished(&self) -> usize {
        self.inner.unpublished.lock().len()
    }
}

fn stamped(mut entry: Entry, version: u64) -> Entry {
    entry.meta.version = Some(version);
    entry
}

/// Announces namespaces whose messages were lost, retrying with a backoff until the server
/// takes them. Aborted when the last clone of the cache is dropped.
async fn republisher(inner: Arc<Inner>) {
    let mut delay = Duration::from_millis(50);
    loop {
        let wake = inner.wake.notified();
        let pending: Vec<Namespace> = inner.unpublished.lock().iter().cloned().collect();
        if pending.is_empty() {
            wake.await;
            continue;
        }
        tokio::time::sleep(delay).await;
        let mut failed = false;
        for ns in pending {
            match inner.invalidator.publish_lost(&ns).await {
                Ok(()) => {
                    inner.unpublished.lock().remove(&ns);
                    inner.counters.republished.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => failed = true,
            }
        }
        delay = if failed {
            (delay * 2).min(Duration::from_secs(2))
        } else {
            Duration::from_millis(50)
        };
    }
}

#[async_trait]
impl Tier for CoherentCache {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        CoherentCache::get(self, key).await
    }

    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        Ok(self.put_report(key, entry).await?.report.outcome())
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        CoherentCache::remove(self, key).await
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        CoherentCache::clear_namespace(self, namespace).await
    }

    fn usage(&self) -> Usage {
        self.inner.cache.usage()
    }

    fn stats(&self) -> StatsSnapshot {
        self.inner.cache.stats()
    }

    async fn flush(&self) -> Result<()> {
        self.inner.cache.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.invalidator.close();
        if let Some(task) = self.task.0.lock().take() {
            task.abort();
        }
        self.inner.cache.close().await
    }
}
