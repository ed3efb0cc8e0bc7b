//! The common calls on [`TieredCache`] as inherent methods, so using the cache needs no
//! import of the [`Tier`] trait. Each one is the `Tier` method of the same name.

use std::ops::Range;

use bytes::Bytes;
use cache_core::{Entry, EntryMeta, Key, Namespace, PutOutcome, Result, Tier, ValueStream};

use crate::TieredCache;

impl TieredCache {
    /// Looks `key` up top-down; a hit below the top is promoted in the background.
    /// `Ok(None)` is a miss. The same as [`Tier::get`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("docs", "absent")?;
    /// assert!(cache.get(&key).await?.is_none());
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed) after [`TieredCache::close`]; in
    /// strict mode, a failing tier's error (otherwise a failing tier is skipped and counted).
    pub async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        <TieredCache as Tier>::get(self, key).await
    }

    /// Stores `entry` under `key` in every tier by its write policy, and returns the overall
    /// outcome ([`TieredCache::put_report`] gives the outcome of each tier). The same as
    /// [`Tier::put`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("docs", "greeting")?;
    /// assert_eq!(cache.put(key.clone(), Entry::new("hello")).await?, PutOutcome::Stored);
    /// assert_eq!(cache.get(&key).await?.unwrap().value, "hello");
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As for [`TieredCache::get`]; [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid)
    /// for an entry no tier can ever hold.
    pub async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        <TieredCache as Tier>::put(self, key, entry).await
    }

    /// Stores a value of exactly `len` bytes that arrives in pieces from `body`. The same as
    /// [`Tier::put_stream`]: the pieces are gathered into one buffer, held once, then put
    /// like [`TieredCache::put`]. To upload a large value to object storage as it arrives,
    /// with bounded memory, call `put_stream` on the object tier itself.
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// use futures::StreamExt;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("docs", "streamed")?;
    /// let pieces = futures::stream::iter(["hel", "lo"].map(|p| Ok(bytes::Bytes::from(p))));
    /// cache.put_stream(key.clone(), EntryMeta::default(), 5, pieces.boxed()).await?;
    /// assert_eq!(cache.get(&key).await?.unwrap().value, "hello");
    /// // A body shorter (or longer) than declared stores nothing.
    /// let short = futures::stream::iter([Ok(bytes::Bytes::from("hi"))]);
    /// let err = cache.put_stream(key.clone(), EntryMeta::default(), 5, short.boxed()).await;
    /// assert_eq!(err.unwrap_err().kind(), ErrorKind::Invalid);
    /// assert_eq!(cache.get(&key).await?.unwrap().value, "hello");
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As for [`TieredCache::put`], and as [`Tier::put_stream`] says for a body that yields
    /// more or fewer than `len` bytes or fails.
    pub async fn put_stream(
        &self,
        key: Key,
        meta: EntryMeta,
        len: u64,
        body: ValueStream,
    ) -> Result<PutOutcome> {
        <TieredCache as Tier>::put_stream(self, key, meta, len, body).await
    }

    /// Removes `key` from every tier, bottom-up. The same as [`Tier::remove`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("docs", "greeting")?;
    /// cache.put(key.clone(), Entry::new("hello")).await?;
    /// cache.remove(&key).await?;
    /// assert!(cache.get(&key).await?.is_none());
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As for [`TieredCache::get`].
    pub async fn remove(&self, key: &Key) -> Result<()> {
        <TieredCache as Tier>::remove(self, key).await
    }

    /// Reads bytes `range` of the value of `key` top-down, each tier asked for the range, so
    /// the NVMe tier verifies only the chunks it reads and the object tier issues a ranged
    /// GET. The range is clamped to the value. A ranged hit below the top is promoted, whole,
    /// only when the promotion policy's `on_range_hit` says so. The same as
    /// [`Tier::get_range`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("kv", "layer-0")?;
    /// cache.put(key.clone(), Entry::new("0123456789")).await?;
    /// assert_eq!(cache.get_range(&key, 2..5).await?.unwrap(), "234");
    /// assert_eq!(cache.get_range(&key, 8..64).await?.unwrap(), "89", "clamped");
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) for a range that ends before it
    /// starts; otherwise as for [`TieredCache::get`].
    pub async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        <TieredCache as Tier>::get_range(self, key, range).await
    }

    /// Whether any tier has a live entry for `key`. The same as [`Tier::contains`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("docs", "greeting")?;
    /// cache.put(key.clone(), Entry::new("hello")).await?;
    /// assert!(cache.contains(&key).await?);
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As for [`TieredCache::get`].
    pub async fn contains(&self, key: &Key) -> Result<bool> {
        <TieredCache as Tier>::contains(self, key).await
    }

    /// Removes every entry of `namespace` from every tier. The same as
    /// [`Tier::clear_namespace`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// let key = Key::new("sessions", "7")?;
    /// cache.put(key.clone(), Entry::new("state")).await?;
    /// cache.clear_namespace(key.namespace()).await?;
    /// assert!(cache.get(&key).await?.is_none());
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As for [`TieredCache::get`].
    pub async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        <TieredCache as Tier>::clear_namespace(self, namespace).await
    }

    /// Waits for queued background writes, then flushes every tier (on persistent tiers,
    /// everything acknowledged before the call is then durable). The same as [`Tier::flush`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// cache.put(Key::new("docs", "k")?, Entry::new("v")).await?;
    /// cache.flush().await?;
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed), or a tier's flush error.
    pub async fn flush(&self) -> Result<()> {
        <TieredCache as Tier>::flush(self).await
    }

    /// Lets background writes finish (for a bounded time), then closes every tier. Later calls
    /// return [`ErrorKind::Closed`](cache_core::ErrorKind::Closed); `close` may be repeated.
    /// The same as [`Tier::close`].
    ///
    /// ```
    /// use cache_tiered::prelude::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
    /// cache.close().await?;
    /// let err = cache.get(&Key::new("docs", "k")?).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Closed);
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// A tier's error while flushing or closing.
    pub async fn close(&self) -> Result<()> {
        <TieredCache as Tier>::close(self).await
    }
}
