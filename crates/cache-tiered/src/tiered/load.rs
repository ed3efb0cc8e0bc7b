//! [`TieredCache::get_or_load`]: single-flight loads, negative caching and serving stale
//! entries.

use std::{future::Future, sync::atomic::Ordering};

use cache_core::{Entry, Key, Result};
use futures::{
    FutureExt,
    future::{BoxFuture, Shared as SharedFuture},
};

use crate::{policy::Freshness, tiered::TieredCache};

pub(super) type Flight<T> = SharedFuture<BoxFuture<'static, T>>;

impl TieredCache {
    /// Returns the entry for `key` from the first tier that has it, or runs `loader`.
    ///
    /// Concurrent callers for a key missing from every tier share one run of `loader`; its
    /// value is stored through `put`, and its error reaches every waiter and is not cached.
    /// `Ok(None)` from the loader means "no such value" and is cached for the negative TTL if
    /// one is configured.
    ///
    /// With [`serve_stale`](crate::TieredBuilder::serve_stale), an entry past its freshness is
    /// served at once while one loader refreshes it, or when the loader fails, as the
    /// [`ServeStale`](crate::ServeStale) policy says; a refresh that finds nothing (`Ok(None)`)
    /// removes the stale entry.
    ///
    /// ```
    /// use cache_tiered::{TieredCache, cache_core::{Entry, Key}, l1::MemoryTier};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_tiered::cache_core::Result<()> {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("answers", "What is 6 x 7?")?;
    /// let answer = cache.get_or_load(key.clone(), || async { Ok(Some(Entry::new("42"))) }).await?;
    /// assert_eq!(answer.unwrap().value, "42");
    /// // Served from the cache: this loader does not run.
    /// let again = cache.get_or_load(key, || async { unreachable!() }).await?;
    /// assert_eq!(again.unwrap().value, "42");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed), the loader's error, or in strict mode
    /// a tier failure.
    pub async fn get_or_load<F, Fut>(&self, key: Key, loader: F) -> Result<Option<Entry>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Entry>>> + Send + 'static,
    {
        let Some(hit) = self.get(&key).await? else { return self.load(key, loader).await };
        let Some(policy) = self.shared.serve_stale else { return Ok(Some(hit)) };
        match policy.freshness(&hit.meta, self.shared.clock.now()) {
            Freshness::Fresh => Ok(Some(hit)),
            Freshness::Spent => self.flight(key, loader, true).await,
            Freshness::Stale if policy.revalidate => {
                let flight = self.flight(key, loader, true);
                // The flight runs only while polled: drive it here, counted as background work
                // so `quiesce` waits for the refresh.
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    let _ = flight.await;
                    shared.done();
                });
                self.shared.served_stale[0].fetch_add(1, Ordering::Relaxed);
                Ok(Some(hit))
            }
            Freshness::Stale => match self.flight(key, loader, true).await {
                Err(e) if policy.on_error => {
                    tracing::debug!(error = %e, "the loader failed: serving the stale entry");
                    self.shared.served_stale[1].fetch_add(1, Ordering::Relaxed);
                    Ok(Some(hit))
                }
                other => other,
            },
        }
    }

    /// A miss: the negative cache, then one shared run of `loader`.
    async fn load<F, Fut>(&self, key: Key, loader: F) -> Result<Option<Entry>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Entry>>> + Send + 'static,
    {
        if self.shared.negative_ttl.is_some() {
            let now = self.shared.clock.now();
            let mut neg = self.shared.negative.lock();
            match neg.get(&key) {
                Some(&until) if until > now => return Ok(None),
                Some(_) => {
                    neg.remove(&key);
                }
                None => {}
            }
        }
        self.flight(key, loader, false).await
    }

    /// The one run of a loader for `key`: joined if one is under way, started otherwise. With
    /// `replaces`, the tiers hold an entry for the key that a `None` from the loader removes.
    fn flight<F, Fut>(&self, key: Key, loader: F, replaces: bool) -> Flight<Result<Option<Entry>>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Entry>>> + Send + 'static,
    {
        let mut flights = self.shared.flights.lock();
        if let Some(f) = flights.get(&key) {
            return f.clone();
        }
        let cache = self.clone();
        let k = key.clone();
        let fut = async move {
            let loaded = loader().await;
            let result = match loaded {
                Ok(Some(entry)) => {
                    // The value is returned even if no tier accepts it.
                    let _ = cache.shared.put(k.clone(), entry.clone()).await;
                    Ok(Some(entry))
                }
                Ok(None) => {
                    if replaces {
                        // Gone at the source: the stale copy must not be served again.
                        let _ = cache.shared.remove(&k).await;
                    }
                    if let Some(ttl) = cache.shared.negative_ttl {
                        let until = cache.shared.clock.now().saturating_add(ttl);
                        let mut neg = cache.shared.negative.lock();
                        if neg.len() >= 1 << 16 {
                            neg.clear();
                        }
                        neg.insert(k.clone(), until);
                    }
                    Ok(None)
                }
                Err(e) => Err(e),
            };
            cache.shared.flights.lock().remove(&k);
            result
        }
        .boxed()
        .shared();
        flights.insert(key, fut.clone());
        fut
    }
}
