//! [`CachedObjectStore`]: the `ObjectStore` implementation, its chunked read path with
//! single-flight fetches, identity checks and invalidation on writes.

use std::{
    collections::{BTreeMap, HashMap},
    error::Error as StdError,
    fmt,
    hash::BuildHasher,
    ops::Range,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cache_core::{Clock, Entry, Key, Namespace, Tier};
use futures::{
    FutureExt, StreamExt, TryStreamExt,
    future::{BoxFuture, Shared},
    stream::{self, BoxStream},
};
use object_store::{
    CopyOptions, Error, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result, UploadPart, path::Path,
};
use parking_lot::Mutex;

use crate::{
    identity::{Identity, chunk_key, identity_key},
    stats::{CachedStoreStats, Stats},
};

/// Name used in the errors this crate makes up itself.
const STORE: &str = "CachedObjectStore";
/// Stripes of the per-location generation counters.
const GENERATIONS: usize = 1024;
/// Attempts of a read whose object changes between its identity check and a chunk fetch.
const ATTEMPTS: usize = 3;
/// Chunks removed at most when a location is invalidated; beyond it, the old chunks (which no
/// identity names any more) are left to age out of the cache.
const MAX_INVALIDATED_CHUNKS: u64 = 1 << 16;

/// How often the identity (ETag, version, size) of an object is checked at the origin.
///
/// Objects under an immutable prefix ([`CachedObjectStoreBuilder::immutable_prefix`]) are never
/// re-checked once their identity is cached, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revalidate {
    /// One HEAD per read: an object changed at the origin is never served stale (the default).
    EveryCall,
    /// At most once per this long per object: a change at the origin is seen within it.
    Ttl(Duration),
    /// Never, once the identity is cached: for stores whose objects never change in place.
    Never,
}

/// Builds a [`CachedObjectStore`]; see [`CachedObjectStore::builder`].
#[derive(Debug)]
pub struct CachedObjectStoreBuilder {
    origin: Arc<dyn ObjectStore>,
    cache: Arc<dyn Tier>,
    chunk_size: u64,
    revalidate: Revalidate,
    immutable: Vec<Path>,
    stale_if_error: bool,
    fetch_concurrency: usize,
    namespace: String,
    name: String,
    clock: Arc<dyn Clock>,
}

impl CachedObjectStoreBuilder {
    /// The smallest chunk size accepted (64 KiB).
    pub const MIN_CHUNK_SIZE: u64 = 64 << 10;
    /// The largest chunk size accepted (64 MiB).
    pub const MAX_CHUNK_SIZE: u64 = 64 << 20;
    /// The default chunk size (4 MiB).
    pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;

    /// Chunk size in bytes (default 4 MiB, from 64 KiB to 64 MiB). Every chunk is one cache
    /// entry and one origin GET, so it must fit the cache's largest entry.
    #[must_use]
    pub fn chunk_size(mut self, bytes: u64) -> CachedObjectStoreBuilder {
        self.chunk_size = bytes;
        self
    }

    /// How often identities are re-checked at the origin (default [`Revalidate::EveryCall`]).
    #[must_use]
    pub fn revalidate(mut self, policy: Revalidate) -> CachedObjectStoreBuilder {
        self.revalidate = policy;
        self
    }

    /// Objects under `prefix` (segment-wise, as in `list`) never change once written: their
    /// identity is checked once and then served from the cache. Data files of Parquet-based
    /// table formats (Delta, Iceberg, Hudi, Lance) are written once under unique names;
    /// manifests, `_delta_log/_last_checkpoint` and similar pointers are overwritten in place and
    /// must not be under such a prefix.
    #[must_use]
    pub fn immutable_prefix(mut self, prefix: impl Into<Path>) -> CachedObjectStoreBuilder {
        self.immutable.push(prefix.into());
        self
    }

    /// When the origin fails (anything but a definite answer such as not-found or a denied
    /// permission) while re-checking an identity the cache holds, serve that identity and its
    /// cached chunks instead of the error (default `false`: the error is returned). Chunks the
    /// cache lacks still fail with the origin's error.
    #[must_use]
    pub fn stale_if_error(mut self, on: bool) -> CachedObjectStoreBuilder {
        self.stale_if_error = on;
        self
    }

    /// Chunks one read fetches or looks up at the same time (default 8, at least 1).
    #[must_use]
    pub fn fetch_concurrency(mut self, chunks: usize) -> CachedObjectStoreBuilder {
        self.fetch_concurrency = chunks;
        self
    }

    /// The cache namespace of the entries (default `"object-store"`). Give two wrappers over
    /// different origins sharing one cache different namespaces.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> CachedObjectStoreBuilder {
        self.namespace = namespace.into();
        self
    }

    /// The `store` label of the metrics (default `"cached-object-store"`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> CachedObjectStoreBuilder {
        self.name = name.into();
        self
    }

    /// The clock for the TTL re-check policy (default the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> CachedObjectStoreBuilder {
        self.clock = clock;
        self
    }

    /// Validates the settings and builds the store.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) for a chunk size outside
    /// 64 KiB – 64 MiB, a fetch concurrency of 0 or an invalid namespace.
    pub fn build(self) -> cache_core::Result<CachedObjectStore> {
        let (min, max) = (Self::MIN_CHUNK_SIZE, Self::MAX_CHUNK_SIZE);
        if !(min..=max).contains(&self.chunk_size) {
            return Err(cache_core::Error::invalid(
                "cache-object-store",
                format!(
                    "chunk size {} bytes is outside {min}..={max} (64 KiB to 64 MiB)",
                    self.chunk_size
                ),
            ));
        }
        if self.fetch_concurrency == 0 {
            return Err(cache_core::Error::invalid(
                "cache-object-store",
                "fetch concurrency is 0; it must be at least 1",
            ));
        }
        let namespace = Namespace::new(&self.namespace)?;
        let generations = (0..GENERATIONS).map(|_| AtomicU64::new(0)).collect();
        Ok(CachedObjectStore {
            inner: Arc::new(Inner {
                origin: self.origin,
                cache: self.cache,
                namespace,
                chunk_size: self.chunk_size,
                revalidate: self.revalidate,
                immutable: self.immutable,
                stale_if_error: self.stale_if_error,
                fetch_concurrency: self.fetch_concurrency,
                clock: self.clock,
                flights: Arc::default(),
                generations,
                hasher: std::hash::RandomState::new(),
                stats: Arc::new(Stats::new(&self.name)),
            }),
        })
    }
}

/// A read-through cache in front of any [`ObjectStore`]: reads are served from fixed-size
/// chunks kept in a cache [`Tier`], writes go to the origin. See the crate docs.
#[derive(Debug, Clone)]
pub struct CachedObjectStore {
    inner: Arc<Inner>,
}

/// Why a chunk could not be read.
#[derive(Debug, Clone)]
enum FetchError {
    /// The origin failed; every waiter gets this error.
    Origin(Arc<Error>),
    /// The object is no longer the version the read started with.
    Changed,
}

/// Where the bytes of a chunk read came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The cache, or a fetch another caller made.
    Cache,
    /// A fetch this read made.
    Origin,
}

/// A chunk fetch shared by every reader of the chunk: its bytes, and whether it found them in
/// the cache after all.
type Flight = Shared<BoxFuture<'static, Result<(Bytes, bool), FetchError>>>;

type Flights = Mutex<HashMap<Key, Flight>>;

struct Inner {
    origin: Arc<dyn ObjectStore>,
    cache: Arc<dyn Tier>,
    namespace: Namespace,
    chunk_size: u64,
    revalidate: Revalidate,
    immutable: Vec<Path>,
    stale_if_error: bool,
    fetch_concurrency: usize,
    clock: Arc<dyn Clock>,
    /// Chunk fetches in progress. Flights hold only a weak reference to the map, so an abandoned
    /// flight never keeps the store alive.
    flights: Arc<Flights>,
    /// Bumped when a location is invalidated; an identity fetched across a bump is not kept.
    generations: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
    stats: Arc<Stats>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedObjectStore")
            .field("origin", &self.origin)
            .field("cache", &self.cache)
            .field("namespace", &self.namespace)
            .field("chunk_size", &self.chunk_size)
            .field("revalidate", &self.revalidate)
            .field("immutable", &self.immutable)
            .field("stale_if_error", &self.stale_if_error)
            .finish_non_exhaustive()
    }
}

impl CachedObjectStore {
    /// A builder for a store that reads through `cache` in front of `origin`.
    ///
    /// `cache` is any tier: a [`TieredCache`](https://docs.rs/cache-tiered) (RAM → NVMe → a
    /// shared object tier), or a single RAM or disk tier.
    pub fn builder(origin: Arc<dyn ObjectStore>, cache: Arc<dyn Tier>) -> CachedObjectStoreBuilder {
        CachedObjectStoreBuilder {
            origin,
            cache,
            chunk_size: CachedObjectStoreBuilder::DEFAULT_CHUNK_SIZE,
            revalidate: Revalidate::EveryCall,
            immutable: Vec::new(),
            stale_if_error: false,
            fetch_concurrency: 8,
            namespace: "object-store".to_owned(),
            name: "cached-object-store".to_owned(),
            clock: cache_core::system_clock(),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CachedStoreStats {
        self.inner.stats.snapshot()
    }

    /// The store reads go to on a miss, and writes always.
    pub fn origin(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.origin
    }

    /// The tier chunks and identities are cached in.
    pub fn cache(&self) -> &Arc<dyn Tier> {
        &self.inner.cache
    }

    /// The chunk size in bytes.
    pub fn chunk_size(&self) -> u64 {
        self.inner.chunk_size
    }

    /// Forgets the cached identity and chunks of `location`, for objects changed by someone
    /// else (writes through this store invalidate by themselves).
    pub async fn invalidate(&self, location: &Path) {
        self.inner.invalidate(location).await;
    }
}

impl fmt::Display for CachedObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedObjectStore({})", self.inner.origin)
    }
}

/// Whether a get must go to the origin as it is: conditions and versions are the origin's to
/// judge (its semantics differ between stores, e.g. S3's `If-Modified-Since`).
fn has_conditions(options: &GetOptions) -> bool {
    options.if_match.is_some()
        || options.if_none_match.is_some()
        || options.if_modified_since.is_some()
        || options.if_unmodified_since.is_some()
        || options.version.is_some()
}

/// Whether `e` is a failure to reach or use the origin rather than a definite answer about
/// the object.
fn is_transient(e: &Error) -> bool {
    !matches!(
        e,
        Error::NotFound { .. }
            | Error::InvalidPath { .. }
            | Error::NotSupported { .. }
            | Error::AlreadyExists { .. }
            | Error::Precondition { .. }
            | Error::NotModified { .. }
            | Error::NotImplemented { .. }
            | Error::PermissionDenied { .. }
            | Error::Unauthenticated { .. }
            | Error::UnknownConfigurationKey { .. }
    )
}

/// The source of a shared origin error, displayed as the origin displayed it.
#[derive(Debug)]
struct SharedSource(Arc<Error>);

impl fmt::Display for SharedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.source() {
            Some(source) => fmt::Display::fmt(source, f),
            None => fmt::Display::fmt(&*self.0, f),
        }
    }
}

impl StdError for SharedSource {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source().and_then(StdError::source)
    }
}

/// A copy of an origin error that several waiters share: the same variant, path and message.
fn share(e: &Arc<Error>) -> Error {
    let source = || -> Box<dyn StdError + Send + Sync> { Box::new(SharedSource(e.clone())) };
    match &**e {
        Error::NotFound { path, .. } => Error::NotFound { path: path.clone(), source: source() },
        Error::AlreadyExists { path, .. } => {
            Error::AlreadyExists { path: path.clone(), source: source() }
        }
        Error::Precondition { path, .. } => {
            Error::Precondition { path: path.clone(), source: source() }
        }
        Error::NotModified { path, .. } => {
            Error::NotModified { path: path.clone(), source: source() }
        }
        Error::PermissionDenied { path, .. } => {
            Error::PermissionDenied { path: path.clone(), source: source() }
        }
        Error::Unauthenticated { path, .. } => {
            Error::Unauthenticated { path: path.clone(), source: source() }
        }
        Error::NotSupported { .. } => Error::NotSupported { source: source() },
        Error::NotImplemented { operation, implementer } => {
            Error::NotImplemented { operation: operation.clone(), implementer: implementer.clone() }
        }
        Error::UnknownConfigurationKey { store, key } => {
            Error::UnknownConfigurationKey { store, key: key.clone() }
        }
        Error::Generic { store, .. } => Error::Generic { store, source: source() },
        _ => Error::Generic { store: STORE, source: Box::new(SharedWhole(e.clone())) },
    }
}

/// A shared error of a variant that cannot be rebuilt, shown whole.
#[derive(Debug)]
struct SharedWhole(Arc<Error>);

impl fmt::Display for SharedWhole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl StdError for SharedWhole {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

impl Inner {
    fn generation(&self, location: &Path) -> &AtomicU64 {
        let h = self.hasher.hash_one(location.as_ref());
        &self.generations[(h as usize) % GENERATIONS]
    }

    fn is_immutable(&self, location: &Path) -> bool {
        self.immutable.iter().any(|prefix| location.prefix_matches(prefix))
    }

    /// Whether the re-check policy lets `id` be used without asking the origin.
    fn fresh(&self, location: &Path, id: &Identity) -> bool {
        if self.is_immutable(location) {
            return true;
        }
        match self.revalidate {
            Revalidate::EveryCall => false,
            Revalidate::Never => true,
            Revalidate::Ttl(ttl) => self.clock.now() < id.checked_at.saturating_add(ttl),
        }
    }

    async fn load_identity(&self, key: &Key, location: &Path) -> Option<Identity> {
        match self.cache.get(key).await {
            Ok(Some(entry)) => {
                let id = Identity::decode(location, &entry.value);
                if id.is_none() {
                    self.stats.cache_errors(1);
                    let _ = self.cache.remove(key).await;
                }
                id
            }
            Ok(None) => None,
            Err(e) => {
                self.stats.cache_errors(1);
                tracing::debug!(%location, error = %e, "cache get of an identity failed");
                None
            }
        }
    }

    /// Caches `id` unless `location` was invalidated since `generation` was read (then the
    /// identity may predate a write, so it is not kept).
    async fn store_identity(&self, key: &Key, id: &Identity, generation: u64) {
        let Some(bytes) = id.encode() else { return };
        let counter = self.generation(&id.meta.location);
        if counter.load(Ordering::Acquire) != generation {
            return;
        }
        if let Err(e) = self.cache.put(key.clone(), Entry::new(bytes)).await {
            self.stats.cache_errors(1);
            tracing::debug!(location = %id.meta.location, error = %e, "cache put of an identity failed");
        }
        // An invalidation that ran during the put may have removed the key before the put
        // landed: undo it.
        if counter.load(Ordering::Acquire) != generation {
            let _ = self.cache.remove(key).await;
        }
    }

    /// The identity of the object at `location`, from the cache if the policy allows (and
    /// `force` is not set), else from the origin.
    async fn identity(&self, key: &Key, location: &Path, force: bool) -> Result<Identity> {
        let cached = self.load_identity(key, location).await;
        if !force
            && let Some(id) = &cached
            && self.fresh(location, id)
        {
            self.stats.identity_hits(1);
            return Ok(id.clone());
        }
        let generation = self.generation(location).load(Ordering::Acquire);
        self.stats.identity_checks(1);
        let head = GetOptions { head: true, ..GetOptions::default() };
        match self.origin.get_opts(location, head).await {
            Ok(result) => {
                let mut meta = result.meta;
                meta.location = location.clone();
                let id =
                    Identity { meta, attributes: result.attributes, checked_at: self.clock.now() };
                // Under the per-call policy the stored copy only serves `stale_if_error` and
                // invalidation, so it is rewritten only when the object changed.
                let unchanged = cached
                    .as_ref()
                    .is_some_and(|c| c.same_version(&id.meta) && c.attributes == id.attributes);
                let timeless =
                    self.revalidate == Revalidate::EveryCall && !self.is_immutable(location);
                if !(unchanged && timeless) {
                    self.store_identity(key, &id, generation).await;
                }
                Ok(id)
            }
            Err(e) => {
                if matches!(e, Error::NotFound { .. }) {
                    let _ = self.cache.remove(key).await;
                } else if self.stale_if_error
                    && is_transient(&e)
                    && let Some(id) = cached
                {
                    self.stats.stale_identities(1);
                    tracing::debug!(%location, error = %e, "origin failed; serving the cached identity");
                    return Ok(id);
                }
                Err(e)
            }
        }
    }

    /// Forgets the identity and the chunks of `location` (after a write through this store).
    async fn invalidate(&self, location: &Path) {
        self.generation(location).fetch_add(1, Ordering::AcqRel);
        self.stats.invalidations(1);
        let Some(key) = identity_key(&self.namespace, location) else { return };
        let cached = self.load_identity(&key, location).await;
        if let Err(e) = self.cache.remove(&key).await {
            self.stats.cache_errors(1);
            tracing::warn!(%location, error = %e, "cache remove of an identity failed");
        }
        let Some(id) = cached else { return };
        let tag = id.tag();
        let chunks = id.meta.size.div_ceil(self.chunk_size).min(MAX_INVALIDATED_CHUNKS);
        let keys = (0..chunks)
            .filter_map(|i| chunk_key(&self.namespace, location, &tag, self.chunk_size, i));
        stream::iter(keys)
            .for_each_concurrent(16, |key| async move {
                if self.cache.remove(&key).await.is_err() {
                    self.stats.cache_errors(1);
                }
            })
            .await;
    }

    /// Chunk `index` of the version `id` of the object at `location`.
    async fn chunk(
        &self,
        location: &Path,
        id: &Identity,
        tag: &str,
        index: u64,
    ) -> Result<(u64, Bytes, Source), FetchError> {
        let start = index * self.chunk_size;
        let end = (start + self.chunk_size).min(id.meta.size);
        let len = end - start;
        let Some(key) = chunk_key(&self.namespace, location, tag, self.chunk_size, index) else {
            // Too long to be a key: read it without caching.
            let bytes = fetch(&*self.origin, &self.stats, location, id, start..end).await?;
            return Ok((index, bytes, Source::Origin));
        };
        match self.cache.get(&key).await {
            Ok(Some(entry)) if entry.value.len() as u64 == len => {
                self.stats.chunk_hits(1);
                return Ok((index, entry.value, Source::Cache));
            }
            Ok(Some(_)) => {
                // Not the length this version's chunk has: not ours to trust.
                self.stats.cache_errors(1);
                let _ = self.cache.remove(&key).await;
            }
            Ok(None) => {}
            Err(e) => {
                self.stats.cache_errors(1);
                tracing::debug!(%location, error = %e, "cache get of a chunk failed");
            }
        }
        let (flight, leader) = {
            let mut flights = self.flights.lock();
            match flights.get(&key) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = self.flight(key.clone(), location, id, start..end);
                    flights.insert(key, flight.clone());
                    (flight, true)
                }
            }
        };
        let (bytes, found_in_cache) = flight.await?;
        let source = if found_in_cache {
            self.stats.chunk_hits(1);
            Source::Cache
        } else if leader {
            Source::Origin
        } else {
            self.stats.chunk_coalesced(1);
            Source::Cache
        };
        Ok((index, bytes, source))
    }

    /// A shared fetch of `range` of the object into the cache entry `key`.
    fn flight(&self, key: Key, location: &Path, id: &Identity, range: Range<u64>) -> Flight {
        let origin = self.origin.clone();
        let cache = self.cache.clone();
        let stats = self.stats.clone();
        let flights: Weak<Flights> = Arc::downgrade(&self.flights);
        let location = location.clone();
        let id = id.clone();
        async move {
            let result = async {
                // A flight for this chunk that ended between our miss and this flight's start
                // stored the chunk: look again before asking the origin.
                if let Ok(Some(entry)) = cache.get(&key).await
                    && entry.value.len() as u64 == range.end - range.start
                {
                    return Ok((entry.value, true));
                }
                let bytes = fetch(&*origin, &stats, &location, &id, range).await?;
                if let Err(e) = cache.put(key.clone(), Entry::new(bytes.clone())).await {
                    stats.cache_errors(1);
                    tracing::debug!(%location, error = %e, "cache put of a chunk failed");
                }
                Ok((bytes, false))
            }
            .await;
            if let Some(flights) = flights.upgrade() {
                flights.lock().remove(&key);
            }
            result
        }
        .boxed()
        .shared()
    }

    /// Reads `ranges` (each within the object, none empty unless the object is) of version
    /// `id`: the chunk slices that make up each range, in order.
    async fn assemble(
        &self,
        location: &Path,
        id: &Identity,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Vec<Bytes>>, FetchError> {
        let cs = self.chunk_size;
        let mut needed: Vec<u64> = ranges
            .iter()
            .filter(|r| r.start < r.end)
            .flat_map(|r| r.start / cs..=(r.end - 1) / cs)
            .collect();
        needed.sort_unstable();
        needed.dedup();
        let tag = id.tag();
        let chunks: BTreeMap<u64, (Bytes, Source)> = stream::iter(needed)
            .map(|i| self.chunk(location, id, &tag, i))
            .buffered(self.fetch_concurrency)
            .map_ok(|(i, bytes, source)| (i, (bytes, source)))
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let mut parts = Vec::new();
            if r.start < r.end {
                for i in r.start / cs..=(r.end - 1) / cs {
                    let (bytes, source) = &chunks[&i];
                    parts.push(self.slice(r, i, bytes, *source));
                }
            }
            out.push(parts);
        }
        Ok(out)
    }

    /// The part of chunk `index` (`bytes`) inside `range`, counted as coming from `source`.
    fn slice(&self, range: &Range<u64>, index: u64, bytes: &Bytes, source: Source) -> Bytes {
        let base = index * self.chunk_size;
        let from = (range.start.max(base) - base) as usize;
        let to = (range.end.min(base + self.chunk_size) - base) as usize;
        let n = (to - from) as u64;
        match source {
            Source::Cache => self.stats.bytes_from_cache(n),
            Source::Origin => self.stats.bytes_from_origin(n),
        }
        bytes.slice(from..to)
    }

    /// The chunks of `rest` (which starts at a chunk boundary) of version `id`, read as the
    /// stream is polled, `fetch_concurrency` at a time. A change of the object during the read
    /// ends the stream with [`Error::Precondition`], as the origin's own streams do.
    fn lazy_tail(
        self: &Arc<Inner>,
        key: Key,
        location: &Path,
        id: Identity,
        rest: Range<u64>,
    ) -> BoxStream<'static, Result<Bytes>> {
        let cs = self.chunk_size;
        let (inner, location, tag) = (self.clone(), location.clone(), id.tag());
        let id = Arc::new(id);
        let concurrency = self.fetch_concurrency;
        stream::iter(rest.start / cs..=(rest.end - 1) / cs)
            .map(move |i| {
                let (inner, key, location) = (inner.clone(), key.clone(), location.clone());
                let (id, tag, rest) = (id.clone(), tag.clone(), rest.clone());
                async move {
                    match inner.chunk(&location, &id, &tag, i).await {
                        Ok((i, bytes, source)) => Ok(inner.slice(&rest, i, &bytes, source)),
                        Err(FetchError::Changed) => {
                            inner.stats.changed_during_read(1);
                            let _ = inner.cache.remove(&key).await;
                            Err(Error::Precondition {
                                path: location.to_string(),
                                source: "the object changed at the origin during the read".into(),
                            })
                        }
                        Err(FetchError::Origin(e)) => Err(share(&e)),
                    }
                }
            })
            .buffered(concurrency)
            .boxed()
    }

    /// Reads `ranges` of the object at `location` (keyed `key`): resolves the identity, maps
    /// each range with `resolve` (or gives up to the origin when it returns `None`), and
    /// assembles them, retrying when the object changes underneath.
    async fn read<F>(&self, key: &Key, location: &Path, resolve: F) -> Result<Read>
    where
        F: Fn(u64) -> Option<Vec<Range<u64>>> + Send + Sync,
    {
        for attempt in 0..ATTEMPTS {
            let id = self.identity(key, location, attempt > 0).await?;
            let Some(ranges) = resolve(id.meta.size) else { return Ok(Read::Passthrough) };
            match self.assemble(location, &id, &ranges).await {
                Ok(parts) => {
                    self.stats.reads(1);
                    return Ok(Read::Parts { id, ranges, parts });
                }
                Err(FetchError::Changed) => {
                    self.stats.changed_during_read(1);
                    let _ = self.cache.remove(key).await;
                }
                Err(FetchError::Origin(e)) => {
                    if matches!(&*e, Error::NotFound { .. }) {
                        let _ = self.cache.remove(key).await;
                    }
                    return Err(share(&e));
                }
            }
        }
        Err(Error::Generic {
            store: STORE,
            source: format!("the object at {location} changed during each of {ATTEMPTS} reads")
                .into(),
        })
    }
}

/// What [`Inner::read`] found.
enum Read {
    /// The ranges cannot be served from chunks (the origin must judge them).
    Passthrough,
    /// The identity, the resolved ranges, and each range's chunk slices.
    Parts { id: Identity, ranges: Vec<Range<u64>>, parts: Vec<Vec<Bytes>> },
}

/// One ranged GET of version `id` of the object: the origin rejects it if the object changed
/// (`If-Match`), and the answer is checked against the identity and the range.
async fn fetch(
    origin: &dyn ObjectStore,
    stats: &Stats,
    location: &Path,
    id: &Identity,
    range: Range<u64>,
) -> Result<Bytes, FetchError> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.clone())),
        // `If-Match` compares strongly: a weak ETag never matches, so it is not sent (the
        // answer's metadata is still checked against the identity).
        if_match: id.meta.e_tag.clone().filter(|e| !e.starts_with("W/")),
        version: if id.meta.e_tag.is_none() { id.meta.version.clone() } else { None },
        ..GetOptions::default()
    };
    stats.chunk_fetches(1);
    let classify = |e: Error| match e {
        Error::Precondition { .. } => FetchError::Changed,
        e => FetchError::Origin(Arc::new(e)),
    };
    let result = origin.get_opts(location, options).await.map_err(classify)?;
    if !id.same_version(&result.meta) || result.range != range {
        return Err(FetchError::Changed);
    }
    let bytes = result.bytes().await.map_err(classify)?;
    if bytes.len() as u64 != range.end - range.start {
        return Err(FetchError::Changed);
    }
    stats.bytes_fetched(bytes.len() as u64);
    Ok(bytes)
}

fn concat(parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => {
            let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in parts {
                out.extend_from_slice(&part);
            }
            out.freeze()
        }
    }
}

/// A multipart upload that invalidates its location when it completes.
struct InvalidatingUpload {
    upload: Box<dyn MultipartUpload>,
    inner: Arc<Inner>,
    location: Path,
}

impl fmt::Debug for InvalidatingUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidatingUpload")
            .field("upload", &self.upload)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for InvalidatingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.upload.complete().await;
        self.inner.invalidate(&self.location).await;
        result
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for CachedObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.origin.put_opts(location, payload, opts).await;
        self.inner.invalidate(location).await;
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.origin.put_multipart_opts(location, opts).await?;
        Ok(Box::new(InvalidatingUpload {
            upload,
            inner: self.inner.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let inner = &self.inner;
        let key = identity_key(&inner.namespace, location);
        let Some(key) = key.filter(|_| !has_conditions(&options)) else {
            inner.stats.passthrough(1);
            return inner.origin.get_opts(location, options).await;
        };
        if options.head {
            if options.range.is_some() {
                inner.stats.passthrough(1);
                return inner.origin.get_opts(location, options).await;
            }
            let id = inner.identity(&key, location, false).await?;
            inner.stats.heads(1);
            let range = 0..id.meta.size;
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                meta: id.meta,
                range,
                attributes: id.attributes,
                extensions: Default::default(),
            });
        }
        // The first `fetch_concurrency` chunks are read before returning (so a change of the
        // object is retried and an error is the call's); the rest of a longer range is read as
        // the body is polled, so a long `get` holds a bounded number of chunks.
        let requested = options.range.clone();
        let eager = inner.chunk_size * inner.fetch_concurrency as u64;
        let full = |size: u64| match &requested {
            None => Some(0..size),
            Some(range) => range.as_range(size).ok(),
        };
        let resolve = |size: u64| {
            let r = full(size)?;
            let head_end = r.end.min((r.start / inner.chunk_size) * inner.chunk_size + eager);
            Some(std::iter::once(r.start..head_end).collect())
        };
        match inner.read(&key, location, resolve).await? {
            Read::Passthrough => {
                inner.stats.passthrough(1);
                inner.origin.get_opts(location, options).await
            }
            Read::Parts { id, mut ranges, mut parts } => {
                let head = ranges.pop().unwrap_or_default();
                let range = full(id.meta.size).unwrap_or_else(|| head.clone());
                let parts = stream::iter(parts.pop().unwrap_or_default().into_iter().map(Ok));
                let payload = if head.end < range.end {
                    let tail = head.end..range.end;
                    parts.chain(inner.lazy_tail(key, location, id.clone(), tail)).boxed()
                } else {
                    parts.boxed()
                };
                Ok(GetResult {
                    payload: GetResultPayload::Stream(payload),
                    meta: id.meta,
                    range,
                    attributes: id.attributes,
                    extensions: Default::default(),
                })
            }
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let inner = &self.inner;
        let key = identity_key(&inner.namespace, location);
        let Some(key) = key.filter(|_| !ranges.is_empty()) else {
            inner.stats.passthrough(1);
            return inner.origin.get_ranges(location, ranges).await;
        };
        // As the stores of `object_store` do: a range ending past the object is cut at its
        // end; an empty one, or one starting at or past the end, is the origin's to reject.
        let resolve = |size: u64| {
            ranges
                .iter()
                .map(|r| (r.start < r.end && r.start < size).then(|| r.start..r.end.min(size)))
                .collect::<Option<Vec<_>>>()
        };
        match inner.read(&key, location, resolve).await? {
            Read::Passthrough => {
                inner.stats.passthrough(1);
                inner.origin.get_ranges(location, ranges).await
            }
            Read::Parts { parts, .. } => Ok(parts.into_iter().map(concat).collect()),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Invalidate before (a reader must not keep an identity across the delete) and after
        // (a reader that checked the identity during the delete must not keep it either).
        let before = self.inner.clone();
        let locations = locations
            .then(move |location| {
                let inner = before.clone();
                async move {
                    if let Ok(location) = &location {
                        inner.invalidate(location).await;
                    }
                    location
                }
            })
            .boxed();
        let after = self.inner.clone();
        self.inner
            .origin
            .delete_stream(locations)
            .then(move |result| {
                let inner = after.clone();
                async move {
                    if let Ok(location) = &result {
                        inner.invalidate(location).await;
                    }
                    result
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.origin.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.origin.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.origin.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let result = self.inner.origin.copy_opts(from, to, options).await;
        self.inner.invalidate(to).await;
        result
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let result = self.inner.origin.rename_opts(from, to, options).await;
        self.inner.invalidate(from).await;
        self.inner.invalidate(to).await;
        result
    }
}

#[cfg(test)]
mod tests;
