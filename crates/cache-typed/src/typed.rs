//! [`TypedCache`]: typed keys and values in one namespace of any tier.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use cache_core::{Clock, Entry, Error, Key, Namespace, PutOutcome, Result, SystemClock, Tier};

use crate::{CacheKey, Codec};

/// The name typed-layer errors carry.
const LAYER: &str = "typed";

/// Typed keys `K` and values `V` in one namespace of a tier `T`, encoded by the codec `C`.
///
/// `T` is any [`Tier`]: a single tier, a `TieredCache`, or `dyn Tier` behind an
/// `Arc<dyn Tier>`. Keys become key bytes through their stable [`CacheKey`] encoding, values
/// bytes through `C`, and every entry carries the codec's tag and the cache's schema version
/// in its user tag ([`EntryMeta::version`](cache_core::EntryMeta::version)). An entry with
/// another tag (written by another codec, an older codec version or an older schema) is a
/// miss, counted in [`TypedStats::stale`]; one whose bytes do not decode is a miss counted in
/// [`TypedStats::undecodable`]. Neither is an error, so a deploy that changes the encoding
/// only costs misses.
///
/// ```
/// use std::sync::Arc;
/// use cache_l1::MemoryTier;
/// use cache_typed::{Json, TypedCache};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Answer { text: String, tokens: u32 }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let ram = Arc::new(MemoryTier::builder(64 << 20).build());
/// let answers: TypedCache<String, Answer, Json, _> = TypedCache::new(ram, "llm/answers", Json)?;
/// let question = "what is 6 x 7?".to_owned();
/// answers.put(&question, &Answer { text: "42".into(), tokens: 1 }).await?;
/// assert_eq!(answers.get(&question).await?.unwrap().text, "42");
/// # Ok::<(), cache_core::Error>(()) }).unwrap();
/// ```
pub struct TypedCache<K: ?Sized, V, C, T: ?Sized = dyn Tier> {
    tier: Arc<T>,
    namespace: Namespace,
    codec: C,
    schema: u16,
    clock: Arc<dyn Clock>,
    stats: Arc<Counters>,
    types: PhantomData<fn(&K, V)>,
}

/// The typed layer's counters (the tier keeps its own).
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    undecodable: AtomicU64,
}

/// A snapshot of a [`TypedCache`]'s counters.
///
/// `misses` counts every lookup that returned nothing, `stale` and `undecodable` included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TypedStats {
    /// Lookups that returned a value.
    pub hits: u64,
    /// Lookups that returned nothing.
    pub misses: u64,
    /// Entries found with another codec tag or schema version, returned as misses.
    pub stale: u64,
    /// Entries with this cache's tag whose bytes did not decode, returned as misses.
    pub undecodable: u64,
}

impl<K, V, C, T> TypedCache<K, V, C, T>
where
    K: CacheKey + Sync + ?Sized,
    V: Send + Sync,
    C: Codec<V>,
    T: Tier + ?Sized,
{
    /// A typed view of `namespace` in `tier`, with schema version 0 and the system clock.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::Tier;
    /// use cache_typed::{Postcard, TypedCache};
    /// let tier: Arc<dyn Tier> = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let counts: TypedCache<str, u64, Postcard> = TypedCache::new(tier, "counts", Postcard)?;
    /// assert_eq!(counts.namespace().as_str(), "counts");
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) for an invalid namespace.
    pub fn new(tier: Arc<T>, namespace: &str, codec: C) -> Result<TypedCache<K, V, C, T>> {
        Ok(TypedCache {
            tier,
            namespace: Namespace::new(namespace)?,
            codec,
            schema: 0,
            clock: Arc::new(SystemClock),
            stats: Arc::default(),
            types: PhantomData,
        })
    }

    /// Sets the schema version stored with every entry. Bump it when `V`'s encoding changes
    /// in a way the codec cannot read across (a reordered postcard struct, a renamed JSON
    /// field, any change of an rkyv type): entries of other versions are then misses.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Postcard, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let v1: TypedCache<str, u32, _, _> = TypedCache::new(tier.clone(), "n", Postcard)?;
    /// v1.put("k", &1).await?;
    /// let v2: TypedCache<str, (u32, u32), _, _> =
    ///     TypedCache::new(tier, "n", Postcard)?.schema_version(2);
    /// assert!(v2.get("k").await?.is_none()); // written by schema 0: a miss, not an error
    /// assert_eq!(v2.stats().stale, 1);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn schema_version(mut self, schema: u16) -> TypedCache<K, V, C, T> {
        self.schema = schema;
        self
    }

    /// Sets the clock [`TypedCache::put_with_ttl`] computes expiry times with. Give it the
    /// tier's clock (a `ManualClock` in tests).
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use cache_core::{ManualClock, Timestamp};
    /// use cache_typed::{Json, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000));
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).clock(clock.clone()).build());
    /// let c: TypedCache<str, String, _, _> = TypedCache::new(tier, "n", Json)?.clock(clock.clone());
    /// c.put_with_ttl("k", &"v".to_owned(), Duration::from_secs(1)).await?;
    /// clock.advance(Duration::from_secs(1));
    /// assert!(c.get("k").await?.is_none());
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> TypedCache<K, V, C, T> {
        self.clock = clock;
        self
    }

    /// The cache key `key` is stored under: this cache's namespace and `key`'s
    /// [`CacheKey`] encoding.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::Key;
    /// use cache_typed::{Json, TypedCache};
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u8, _, _> = TypedCache::new(tier, "n", Json)?;
    /// assert_eq!(c.key("k")?, Key::new("n", "k")?);
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) if the encoding is longer than
    /// [`MAX_KEY_LEN`](cache_core::MAX_KEY_LEN).
    pub fn key(&self, key: &K) -> Result<Key> {
        let mut bytes = Vec::new();
        key.encode_key(&mut bytes);
        self.namespace.key(bytes)
    }

    /// The user tag this cache writes and accepts: the codec's tag and the schema version.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Codec, Json, TypedCache};
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u8, _, _> = TypedCache::new(tier, "n", Json)?.schema_version(4);
    /// assert_eq!(c.user_tag(), <Json as Codec<u8>>::TAG.user_tag(4));
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn user_tag(&self) -> u64 {
        C::TAG.user_tag(self.schema)
    }

    /// Looks `key` up and decodes the value.
    ///
    /// A miss, an entry of another codec or schema, and an entry that does not decode are all
    /// `Ok(None)` (counted apart in [`TypedCache::stats`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Postcard, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<(u32, String), Vec<f32>, _, _> = TypedCache::new(tier, "vectors", Postcard)?;
    /// let key = (7, "doc".to_owned());
    /// assert_eq!(c.get(&key).await?, None);
    /// c.put(&key, &vec![0.5, 1.0]).await?;
    /// assert_eq!(c.get(&key).await?, Some(vec![0.5, 1.0]));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The tier's errors ([`ErrorKind::Closed`](cache_core::ErrorKind::Closed), IO,
    /// unavailability), and an invalid key as in [`TypedCache::key`].
    pub async fn get(&self, key: &K) -> Result<Option<C::Output>> {
        let key = self.key(key)?;
        let found = self.tier.get(&key).await?;
        Ok(self.decode(&key, found))
    }

    /// Encodes `value` and stores it under `key`, without expiry.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::PutOutcome;
    /// use cache_typed::{Json, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<u64, String, _, _> = TypedCache::new(tier, "users", Json)?;
    /// assert_eq!(c.put(&7, &"ada".to_owned()).await?, PutOutcome::Stored);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) if the codec cannot encode the
    /// value (nothing is written), otherwise the tier's errors.
    pub async fn put(&self, key: &K, value: &V) -> Result<PutOutcome> {
        let key = self.key(key)?;
        let entry = Entry::new(self.encode(value)?).with_version(self.user_tag());
        self.tier.put(key, entry).await
    }

    /// Like [`TypedCache::put`], expiring the entry `ttl` from now by this cache's clock.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use cache_typed::{Json, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, bool, _, _> = TypedCache::new(tier, "flags", Json)?;
    /// c.put_with_ttl("beta", &true, Duration::from_secs(60)).await?;
    /// assert_eq!(c.get("beta").await?, Some(true));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As for [`TypedCache::put`].
    pub async fn put_with_ttl(&self, key: &K, value: &V, ttl: Duration) -> Result<PutOutcome> {
        let key = self.key(key)?;
        let entry = Entry::new(self.encode(value)?)
            .with_ttl(&*self.clock, ttl)
            .with_version(self.user_tag());
        self.tier.put(key, entry).await
    }

    /// Removes `key`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Json, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u8, _, _> = TypedCache::new(tier, "n", Json)?;
    /// c.put("k", &1).await?;
    /// c.remove("k").await?;
    /// assert_eq!(c.get("k").await?, None);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The tier's errors, and an invalid key as in [`TypedCache::key`].
    pub async fn remove(&self, key: &K) -> Result<()> {
        self.tier.remove(&self.key(key)?).await
    }

    /// Returns the value of `key`, or runs `loader`, stores its value and returns it.
    ///
    /// Concurrent callers that miss each run their loader (this layer does not coalesce
    /// loads; the last write wins).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Json, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, String, _, _> = TypedCache::new(tier, "answers", Json)?;
    /// let v = c.get_or_load("q", || async { Ok("computed".to_owned()) }).await?;
    /// assert_eq!(v, "computed");
    /// let again = c.get_or_load("q", || async { unreachable!("cached") }).await?;
    /// assert_eq!(again, "computed");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The loader's error (nothing is stored), [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid)
    /// if the loaded value cannot be encoded, and the tier's errors.
    pub async fn get_or_load<F, Fut>(&self, key: &K, loader: F) -> Result<C::Output>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<V>> + Send,
    {
        let cache_key = self.key(key)?;
        if let Some(hit) = self.decode(&cache_key, self.tier.get(&cache_key).await?) {
            return Ok(hit);
        }
        let value = loader().await?;
        let bytes = self.encode(&value)?;
        let entry = Entry::new(bytes.clone()).with_version(self.user_tag());
        // A rejection (a value too large for the tier) still returns the loaded value.
        let _outcome = self.tier.put(cache_key, entry).await?;
        self.codec
            .loaded(value, bytes)
            .map_err(|e| Error::invalid(LAYER, format!("the loaded value does not decode: {e}")))
    }

    /// Removes every entry of this cache's namespace (whatever its type or codec).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Json, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u8, _, _> = TypedCache::new(tier, "n", Json)?;
    /// c.put("k", &1).await?;
    /// c.clear().await?;
    /// assert_eq!(c.get("k").await?, None);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The tier's errors.
    pub async fn clear(&self) -> Result<()> {
        self.tier.clear_namespace(&self.namespace).await
    }

    /// The tier this cache reads and writes.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::Tier;
    /// use cache_typed::{Json, TypedCache};
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u8, _, _> = TypedCache::new(tier, "n", Json)?;
    /// assert_eq!(c.tier().name(), "l1");
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn tier(&self) -> &Arc<T> {
        &self.tier
    }

    /// The namespace this cache's keys live in.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Json, TypedCache};
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u8, _, _> = TypedCache::new(tier, "sessions", Json)?;
    /// assert_eq!(c.namespace().as_str(), "sessions");
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The codec (for [`Rkyv::realigned`](crate::Rkyv::realigned)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Rkyv, TypedCache};
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u64, _, _> = TypedCache::new(tier, "n", Rkyv::new())?;
    /// assert_eq!(c.codec().realigned(), 0);
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// A snapshot of this cache's counters (shared by its clones).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_typed::{Json, TypedCache};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = Arc::new(cache_l1::MemoryTier::builder(1 << 20).build());
    /// let c: TypedCache<str, u8, _, _> = TypedCache::new(tier, "n", Json)?;
    /// c.get("absent").await?;
    /// assert_eq!((c.stats().hits, c.stats().misses), (0, 1));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn stats(&self) -> TypedStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TypedStats {
            hits: load(&self.stats.hits),
            misses: load(&self.stats.misses),
            stale: load(&self.stats.stale),
            undecodable: load(&self.stats.undecodable),
        }
    }

    fn encode(&self, value: &V) -> Result<bytes::Bytes> {
        self.codec
            .encode(value)
            .map_err(|e| Error::invalid(LAYER, format!("the codec cannot encode the value: {e}")))
    }

    /// Decodes a lookup's result, counting what it was.
    fn decode(&self, key: &Key, found: Option<Entry>) -> Option<C::Output> {
        let count = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        let Some(entry) = found else {
            count(&self.stats.misses);
            return None;
        };
        if entry.meta.version != Some(self.user_tag()) {
            count(&self.stats.stale);
            count(&self.stats.misses);
            return None;
        }
        match self.codec.decode(entry.value) {
            Ok(value) => {
                count(&self.stats.hits);
                Some(value)
            }
            Err(e) => {
                tracing::warn!(namespace = %self.namespace, key = ?key.hash(), error = %e,
                    "a cached value with this cache's codec tag does not decode");
                count(&self.stats.undecodable);
                count(&self.stats.misses);
                None
            }
        }
    }
}

impl<K: ?Sized, V, C: Clone, T: ?Sized> Clone for TypedCache<K, V, C, T> {
    fn clone(&self) -> TypedCache<K, V, C, T> {
        TypedCache {
            tier: self.tier.clone(),
            namespace: self.namespace.clone(),
            codec: self.codec.clone(),
            schema: self.schema,
            clock: self.clock.clone(),
            stats: self.stats.clone(),
            types: PhantomData,
        }
    }
}

impl<K: ?Sized, V, C: fmt::Debug, T: fmt::Debug + ?Sized> fmt::Debug for TypedCache<K, V, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedCache")
            .field("tier", &self.tier)
            .field("namespace", &self.namespace)
            .field("codec", &self.codec)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}
