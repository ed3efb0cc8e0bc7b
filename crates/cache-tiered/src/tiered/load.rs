//! [`TieredCache::get_or_load`]: single-flight loads and negative caching.

use std::future::Future;

use cache_core::{Entry, Key, Result};
use futures::{
    FutureExt,
    future::{BoxFuture, Shared as SharedFuture},
};

use crate::tiered::TieredCache;

pub(super) type Flight<T> = SharedFuture<BoxFuture<'static, T>>;

impl TieredCache {
    /// Returns the entry for `key` from the first tier that has it, or runs `loader`.
    ///
    /// Concurrent callers for a key missing from every tier share one run of `loader`; its
    /// value is stored through `put`, and its error reaches every waiter and is not cached.
    /// `Ok(None)` from the loader means "no such value" and is cached for the negative TTL if
    /// one is configured.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed), the loader's error, or in strict mode
    /// a tier failure.
    pub async fn get_or_load<F, Fut>(&self, key: Key, loader: F) -> Result<Option<Entry>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Entry>>> + Send + 'static,
    {
        if let Some(hit) = self.get(&key).await? {
            return Ok(Some(hit));
        }
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
        let flight = {
            let mut flights = self.shared.flights.lock();
            if let Some(f) = flights.get(&key) {
                f.clone()
            } else {
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
                flights.insert(key.clone(), fut.clone());
                fut
            }
        };
        flight.await
    }
}
