//! Configuration of an [`ObjectTier`]: the store, prefix, timeouts, retries, multipart upload,
//! conditional create, byte budget, record format (compression, encryption at rest) and clock,
//! and the start-up checks `build` makes.

use std::{
    fmt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use cache_core::{
    Clock, Compression, Error, ErrorKind, KeyProvider, RecordFormat, Result, system_clock,
};
use futures::StreamExt;
use object_store::limit::LimitStore;
#[cfg(feature = "s3")]
use object_store::{BackoffConfig, RetryConfig};
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, local::LocalFileSystem,
    memory::InMemory, multipart::MultipartStore,
};

#[cfg(feature = "s3")]
use crate::s3::{S3_MIN_PART, S3Config};
use crate::{
    error::ObjectError,
    layout::Layout,
    metrics::Op,
    tier::{ObjectTier, Settings, Streaming, TIER},
};

pub(crate) const MIB: u64 = 1024 * 1024;

/// The default of [`ObjectTierBuilder::max_requests`].
pub(crate) const DEFAULT_MAX_REQUESTS: usize = 64;

enum Source {
    Store(Arc<dyn ObjectStore>),
    /// A store that also uploads parts by index: the same store as both traits.
    Multipart(Arc<dyn ObjectStore>, Arc<dyn MultipartStore>),
    Local(PathBuf),
    Memory,
    #[cfg(feature = "s3")]
    S3(S3Config),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Store(s) | Source::Multipart(s, _) => write!(f, "Store({s})"),
            Source::Local(p) => f.debug_tuple("Local").field(p).finish(),
            Source::Memory => f.write_str("Memory"),
            #[cfg(feature = "s3")]
            Source::S3(c) => f.debug_tuple("S3").field(c).finish(),
        }
    }
}

/// Builds an [`ObjectTier`]. Start from [`ObjectTier::builder`] (any store),
/// [`ObjectTierBuilder::local`], [`ObjectTierBuilder::in_memory`] or, with the `s3` feature,
/// `ObjectTierBuilder::s3`.
///
/// Defaults: no prefix, a 10 s timeout per object-store call, 5 s per HTTP request and 1 s to
/// connect, 2 retries within 8 s, multipart upload from 16 MiB in 8 MiB parts with 4 in
/// flight, deletes in batches with 8 in flight, overwriting puts, no byte budget, no
/// compression, no encryption, the system clock, and the start-up check on.
#[derive(Debug)]
#[must_use]
pub struct ObjectTierBuilder {
    source: Source,
    prefix: String,
    operation_timeout: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
    #[cfg(feature = "s3")]
    retry: RetryConfig,
    multipart_threshold: u64,
    part_size: usize,
    part_concurrency: usize,
    delete_concurrency: usize,
    max_requests: usize,
    conditional_create: bool,
    budget: Option<u64>,
    /// Compression and key provider. Its `Debug` never shows the keys, only whether there are.
    format: RecordFormat,
    clock: Arc<dyn Clock>,
    preflight: bool,
    local_fsync: bool,
    name: &'static str,
}

impl ObjectTierBuilder {
    fn with_source(source: Source) -> ObjectTierBuilder {
        ObjectTierBuilder {
            source,
            prefix: String::new(),
            operation_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            #[cfg(feature = "s3")]
            retry: RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(8),
            },
            multipart_threshold: 16 * MIB,
            part_size: 8 * MIB as usize,
            part_concurrency: 4,
            delete_concurrency: 8,
            max_requests: DEFAULT_MAX_REQUESTS,
            conditional_create: false,
            budget: None,
            format: RecordFormat::new(),
            clock: system_clock(),
            preflight: true,
            local_fsync: true,
            name: TIER,
        }
    }

    /// A tier over any object store (timeouts and retries of the HTTP client are then the
    /// store's own; the tier's operation timeout still applies).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// use cache_l3_object::object_store::{ObjectStoreExt, memory::InMemory};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Arc::new(InMemory::new());
    /// let l3 = ObjectTierBuilder::new(store.clone()).build().await?;
    /// let key = Key::new("llm/answers", "what is 6 x 7?")?;
    /// l3.put(key.clone(), Entry::new("42")).await?;
    /// // The entry is one object in the store given.
    /// assert!(store.head(&l3.object_path(&key)).await.is_ok());
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::Store(store))
    }

    /// A builder for a tier over `store`, a store that also uploads multipart parts by index
    /// ([`MultipartStore`]: object_store's S3, GCS, Azure and in-memory stores), so that
    /// [`Tier::put_stream`](cache_core::Tier::put_stream) of a large value uploads it piece
    /// by piece with bounded memory (see [`ObjectTier::put_stream`](crate::ObjectTier)).
    /// [`ObjectTierBuilder::s3`] and [`ObjectTierBuilder::in_memory`] do this by themselves
    /// ([`ObjectTierBuilder::local`] streams into a staging file); over
    /// [`ObjectTierBuilder::new`]'s store, a streamed put gathers the value first.
    /// [`ObjectTierBuilder::max_requests`] bounds the requests made through the
    /// [`ObjectStore`] side; streamed parts are bounded by [`ObjectTierBuilder::part_concurrency`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use cache_core::{EntryMeta, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// use cache_l3_object::object_store::memory::InMemory;
    /// use futures::StreamExt;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::new_multipart(Arc::new(InMemory::new()))
    ///     .multipart_threshold(1 << 20)
    ///     .part_size(1 << 20)
    ///     .build()
    ///     .await?;
    /// let key = Key::new("kv-cache", "chunk-0")?;
    /// let pieces = (0..3u8).map(|i| Ok(Bytes::from(vec![i; 1 << 20])));
    /// let body = futures::stream::iter(pieces).boxed();
    /// l3.put_stream(key.clone(), EntryMeta::default(), 3 << 20, body).await?;
    /// assert_eq!(l3.get_range(&key, (1 << 20) - 1..(1 << 20) + 1).await?.unwrap(), &[0, 1][..]);
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn new_multipart<S: ObjectStore + MultipartStore>(store: Arc<S>) -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::Multipart(store.clone(), store))
    }

    /// A tier in a directory of the local filesystem (created if missing): the embedded
    /// default, which needs no server. Several processes on one machine may share it.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let root = dir.path().join("l3");
    /// let l3 = ObjectTierBuilder::local(&root).build().await?;
    /// let key = Key::new("llm/answers", "what is 6 x 7?")?;
    /// l3.put(key.clone(), Entry::new("42")).await?;
    /// // One file per entry, at the object's path under the directory.
    /// assert!(root.join(l3.object_path(&key).as_ref()).is_file());
    /// l3.close().await?;
    /// // Another tier (or another process) on the directory reads it.
    /// let again = ObjectTierBuilder::local(&root).build().await?;
    /// assert_eq!(again.get(&key).await?.unwrap().value, "42");
    /// again.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn local(root: impl Into<PathBuf>) -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::Local(root.into()))
    }

    /// A tier in memory, for tests.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().build().await?;
    /// let key = Key::new("tests", "answer")?;
    /// l3.put(key.clone(), Entry::new("42")).await?;
    /// assert_eq!(l3.get(&key).await?.unwrap().value, "42");
    /// // Each in-memory tier has a store of its own.
    /// let other = ObjectTierBuilder::in_memory().build().await?;
    /// assert!(other.get(&key).await?.is_none());
    /// l3.close().await?;
    /// other.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn in_memory() -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::Memory)
    }

    /// A tier on an S3-compatible server.
    ///
    /// Available with the `s3` feature (which enables `object_store`'s AWS client).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_core::Tier;
    /// use cache_l3_object::{ObjectTierBuilder, S3Config};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let config = S3Config::new("cache")
    ///     .with_endpoint("http://127.0.0.1:9000")
    ///     .with_region("us-east-1")
    ///     .with_credentials("KEY", "SECRET")
    ///     .with_allow_http(true);
    /// let l3 = ObjectTierBuilder::s3(config)
    ///     .prefix("tiered-cache/prod")
    ///     .build() // lists the prefix once: wrong credentials or a missing bucket fail here
    ///     .await?;
    /// assert_eq!(l3.prefix(), "tiered-cache/prod");
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub fn s3(config: S3Config) -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::S3(config))
    }

    /// The prefix every object goes under (`a/b` gives `a/b/{namespace}/…`). Several tiers (or
    /// tests) can share a bucket under different prefixes.
    ///
    /// ```
    /// use cache_core::{ErrorKind, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().prefix("tiered-cache/prod").build().await?;
    /// let key = Key::new("llm/answers", "what is 6 x 7?")?;
    /// assert_eq!(l3.prefix(), "tiered-cache/prod");
    /// assert!(l3.object_path(&key).as_ref().starts_with("tiered-cache/prod/"));
    /// l3.close().await?;
    /// // A prefix must be a valid object path: no empty segment.
    /// let err = ObjectTierBuilder::in_memory().prefix("a//b").build().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> ObjectTierBuilder {
        self.prefix = prefix.into();
        self
    }

    /// The longest any single call to the object store may take, retries included (a
    /// `tokio::time::timeout` around each call, so it also bounds stores without an HTTP
    /// client). Past it the call fails with `Unavailable`. A multipart upload is several calls,
    /// each bounded by this. A read of a whole object must start within it and make progress
    /// within it, piece by piece, at 16 MiB/s at least over its whole body (see the crate
    /// docs), so a large value is not cut off by a bound meant for small ones.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use cache_core::{ErrorKind, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// use cache_l3_object::object_store::memory::InMemory;
    /// use cache_l3_object::object_store::throttle::{ThrottleConfig, ThrottledStore};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // A store whose every GET takes an hour (a stuck server, say).
    /// let hour = Duration::from_secs(3600);
    /// let slow = ThrottleConfig { wait_get_per_call: hour, ..Default::default() };
    /// let store = Arc::new(ThrottledStore::new(InMemory::new(), slow));
    /// let b = ObjectTierBuilder::new(store).operation_timeout(Duration::from_millis(100));
    /// let l3 = b.build().await?;
    /// let err = l3.get(&Key::new("users", "42")?).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unavailable); // after 100 ms, not an hour
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn operation_timeout(mut self, timeout: Duration) -> ObjectTierBuilder {
        self.operation_timeout = timeout;
        self
    }

    /// The HTTP client's timeout for one request attempt (S3 only).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = ObjectTierBuilder::in_memory().request_timeout(Duration::from_secs(2));
    /// let l3 = b.build().await?;
    /// l3.close().await?;
    /// // Other stores ignore it, but every store refuses a zero, which would fail every request.
    /// let zero = ObjectTierBuilder::in_memory().request_timeout(Duration::ZERO).build().await;
    /// assert_eq!(zero.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> ObjectTierBuilder {
        self.request_timeout = timeout;
        self
    }

    /// The HTTP client's connect timeout (S3 only).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = ObjectTierBuilder::in_memory().connect_timeout(Duration::from_millis(500));
    /// let l3 = b.build().await?;
    /// l3.close().await?;
    /// // Other stores ignore it, but every store refuses a zero, which would fail every request.
    /// let zero = ObjectTierBuilder::in_memory().connect_timeout(Duration::ZERO).build().await;
    /// assert_eq!(zero.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> ObjectTierBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The HTTP client's retry policy: 5xx, connection errors and timeouts of idempotent
    /// requests are retried with backoff (S3 only; available with the `s3` feature).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_core::Tier;
    /// use cache_l3_object::object_store::{BackoffConfig, RetryConfig};
    /// use cache_l3_object::{ObjectTierBuilder, S3Config};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // Up to 4 retries, 20 ms then 40, 80, … (at most 500 ms) apart, all within 3 s.
    /// let backoff = BackoffConfig {
    ///     init_backoff: Duration::from_millis(20),
    ///     max_backoff: Duration::from_millis(500),
    ///     base: 2.0,
    /// };
    /// let retry = RetryConfig { backoff, max_retries: 4, retry_timeout: Duration::from_secs(3) };
    /// let l3 = ObjectTierBuilder::s3(S3Config::from_env()).retry(retry).build().await?;
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub fn retry(mut self, retry: RetryConfig) -> ObjectTierBuilder {
        self.retry = retry;
        self
    }

    /// Values whose record is at least this large go up by multipart upload.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l3_object::{ObjectTierBuilder, Op};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().multipart_threshold(1 << 20).build().await?;
    /// l3.put(Key::new("blobs", "small")?, Entry::new(vec![1; 1000])).await?;
    /// l3.put(Key::new("blobs", "large")?, Entry::new(vec![2; 2 << 20])).await?;
    /// let m = l3.metrics();
    /// assert_eq!(m.op(Op::Put).requests, 1); // the small one, in one request
    /// assert_eq!(m.op(Op::MultipartStart).requests, 1); // the large one, by multipart upload
    /// assert_eq!(m.op(Op::MultipartComplete).requests, 1);
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn multipart_threshold(mut self, bytes: u64) -> ObjectTierBuilder {
        self.multipart_threshold = bytes;
        self
    }

    /// The size of each multipart part (S3 needs at least 5 MiB).
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l3_object::{ObjectTierBuilder, Op};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = ObjectTierBuilder::in_memory().multipart_threshold(1 << 20).part_size(512 << 10);
    /// let l3 = b.build().await?;
    /// l3.put(Key::new("models", "weights.bin")?, Entry::new(vec![7; 2_000_000])).await?;
    /// // The record (2 MB and a small head) went up in 4 parts of at most 512 KiB.
    /// assert_eq!(l3.metrics().op(Op::MultipartPart).requests, 4);
    /// l3.close().await?;
    /// let zero = ObjectTierBuilder::in_memory().part_size(0).build().await;
    /// assert_eq!(zero.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn part_size(mut self, bytes: usize) -> ObjectTierBuilder {
        self.part_size = bytes;
        self
    }

    /// How many parts of one upload are in flight at once.
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = ObjectTierBuilder::in_memory().multipart_threshold(1 << 20).part_size(256 << 10);
    /// let l3 = b.part_concurrency(16).build().await?;
    /// let key = Key::new("models", "weights.bin")?;
    /// l3.put(key.clone(), Entry::new(vec![7; 4_000_000])).await?; // 16 parts in flight
    /// assert_eq!(l3.get(&key).await?.unwrap().value.len(), 4_000_000);
    /// l3.close().await?;
    /// // It must stay below `max_requests` (64 by default).
    /// let err = ObjectTierBuilder::in_memory().part_concurrency(64).build().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn part_concurrency(mut self, parts: usize) -> ObjectTierBuilder {
        self.part_concurrency = parts;
        self
    }

    /// How many delete requests (bulk batches on S3) are in flight while clearing a namespace
    /// or evicting.
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Namespace, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().delete_concurrency(16).build().await?;
    /// let logs = Namespace::new("logs")?;
    /// let line = |i: u32| (logs.key(i.to_string()).unwrap(), Entry::new("line"));
    /// l3.put_many((0..100).map(line).collect()).await?;
    /// assert_eq!(l3.clear_namespace_count(&logs).await?, 100);
    /// l3.close().await?;
    /// let zero = ObjectTierBuilder::in_memory().delete_concurrency(0).build().await;
    /// assert_eq!(zero.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn delete_concurrency(mut self, requests: usize) -> ObjectTierBuilder {
        self.delete_concurrency = requests;
        self
    }

    /// The most requests the tier has in flight to the store at once (default 64); more wait
    /// their turn (through `object_store`'s `LimitStore`). Without a bound, a thousand
    /// concurrent misses during a slow spell of the server open a thousand connections (or,
    /// on the local filesystem, files), which stay open in the HTTP client's idle pool after
    /// the spell. Keep it above `part_concurrency` and `delete_concurrency`; a listing holds
    /// one request for as long as it is read.
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().max_requests(16).build().await?;
    /// // Beyond 16 requests in flight, the rest wait their turn: none fails.
    /// let item = |i: u32| (Key::new("users", i.to_string()).unwrap(), Entry::new("profile"));
    /// let stored = l3.put_many((0..100).map(item).collect()).await?;
    /// assert!(stored.iter().all(|o| o.is_stored()));
    /// l3.close().await?;
    /// // It must exceed part_concurrency (4) and delete_concurrency (8).
    /// let err = ObjectTierBuilder::in_memory().max_requests(8).build().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn max_requests(mut self, requests: usize) -> ObjectTierBuilder {
        self.max_requests = requests;
        self
    }

    /// Write-once keys: every `put` is a conditional create (`PutMode::Create`), so the first
    /// writer of a key wins and later writes fail without changing it. `build` checks that the
    /// store really enforces it and fails with `Unsupported` if not. Values go up in one
    /// request in this mode (multipart uploads cannot be conditional).
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l3_object::{CreateOutcome, ObjectTierBuilder};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // `build` checks that the store enforces conditional creates.
    /// let l3 = ObjectTierBuilder::in_memory().conditional_create(true).build().await?;
    /// let key = Key::new("reports", "2024-06")?;
    /// l3.put(key.clone(), Entry::new("first")).await?;
    /// let second = l3.put(key.clone(), Entry::new("second")).await;
    /// assert_eq!(second.unwrap_err().kind(), ErrorKind::Invalid); // the first writer won
    /// let third = l3.put_if_absent(key.clone(), Entry::new("third")).await?;
    /// assert_eq!(third, CreateOutcome::AlreadyExists);
    /// assert_eq!(l3.get(&key).await?.unwrap().value, "first");
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn conditional_create(mut self, on: bool) -> ObjectTierBuilder {
        self.conditional_create = on;
        self
    }

    /// A byte budget (unbounded by default). The tier keeps an in-process account of the
    /// objects it wrote, in least-recently-used order, and deletes the oldest to stay within
    /// it. The budget is per tier instance: objects written by other processes or earlier runs
    /// are not counted. For a bucket-wide bound, use lifecycle rules (see the crate docs).
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().budget(64 << 10).build().await?;
    /// assert_eq!(l3.usage().capacity, Some(64 << 10));
    /// let thumb = |i: u32| Key::new("thumbs", i.to_string()).unwrap();
    /// for i in 0..100 {
    ///     l3.put(thumb(i), Entry::new(vec![0; 1000])).await?;
    /// }
    /// // 100 KB written into a 64 KiB budget: the oldest objects were deleted.
    /// assert!(l3.usage().bytes_used <= 64 << 10);
    /// assert!(l3.get(&thumb(0)).await?.is_none());
    /// assert!(l3.get(&thumb(99)).await?.is_some());
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn budget(mut self, bytes: u64) -> ObjectTierBuilder {
        self.budget = Some(bytes);
        self
    }

    /// How values are compressed on write (default [`Compression::None`]), as in every tier: a
    /// value below 256 KiB that LZ4 or zstd shrinks by at least an eighth is uploaded
    /// compressed (fewer bytes sent and stored; the budget counts what is stored), and a ranged
    /// read of it downloads the whole object to decode it. Larger and incompressible values
    /// stay raw. Objects written under any setting read back under any other.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l3_object::{Compression, ObjectTierBuilder};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let json = r#"{"user":42,"theme":"dark","lang":"en"}"#.repeat(50);
    /// let mut used = Vec::new();
    /// for compression in [Compression::None, Compression::Lz4] {
    ///     // With a budget, `usage()` counts the bytes stored.
    ///     let b = ObjectTierBuilder::in_memory().budget(1 << 20).compression(compression);
    ///     let l3 = b.build().await?;
    ///     l3.put(Key::new("prefs", "user-42")?, Entry::new(json.clone())).await?;
    ///     used.push(l3.usage().bytes_used);
    ///     l3.close().await?;
    /// }
    /// assert!(used[1] < used[0] / 2, "LZ4 stores fewer bytes: {used:?}");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn compression(mut self, compression: Compression) -> ObjectTierBuilder {
        self.format = std::mem::take(&mut self.format).with_compression(compression);
        self
    }

    /// Encryption at rest (default off): the value of every record of a namespace `keys` has a
    /// key for is sealed with that key (XChaCha20-Poly1305, record format version 4 in
    /// `docs/format.md`), after compression and before it is uploaded, so the bucket (or
    /// directory), its replicas and backups, and the network hold only ciphertext for those
    /// values. What stays readable in every object is its head: the namespace, the key and the
    /// metadata (creation time, expiry, version), which the tier needs to find, check and expire
    /// records without the key; object paths stay hashes, as always. Namespaces the provider has
    /// no key for are stored in plaintext, as without this option.
    ///
    /// A sealed value has no chunk table, so [`ObjectTier::get_range`] of a sealed value
    /// downloads and opens the whole object (as for a compressed one).
    ///
    /// An object that does not open (sealed under a key id the provider does not know, with a
    /// wrong key, a changed or truncated byte, moved to another key or namespace), or a
    /// plaintext object in a namespace the provider seals, is a corrupt record: a miss, counted
    /// in `StatsSnapshot::corrupted`, and the object is deleted. It is never an error, a panic,
    /// or the ciphertext returned as a value. So every process sharing the bucket and prefix,
    /// and every persistent tier of a stack, should get the same provider: a tier without the
    /// keys deletes the sealed objects it reads. A record moved in from another tier
    /// (`put_record`) is stored as it is only if this tier can open it, and re-encoded from its
    /// (plaintext) entry otherwise: sealed under this provider's key, or in plaintext for a
    /// namespace it leaves alone.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::{DerivedKeys, EncryptionKey, Entry, Key, KeyId, Tier};
    /// use cache_l3_object::{ObjectTierBuilder, object_store::ObjectStoreExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // In production the master key comes from a key-management service or a secret store.
    /// let keys = DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([7; 32]));
    /// let l3 = ObjectTierBuilder::in_memory().encryption(Arc::new(keys)).build().await?;
    /// let key = Key::new("tenant-a", "user-42/profile")?;
    /// l3.put(key.clone(), Entry::new("a secret profile")).await?;
    /// assert_eq!(l3.get(&key).await?.unwrap().value, "a secret profile");
    /// // The object holds ciphertext for the value.
    /// let object = l3.store().get(&l3.object_path(&key)).await.unwrap().bytes().await.unwrap();
    /// assert!(!object.windows(6).any(|w| w == b"secret"));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn encryption(mut self, keys: Arc<dyn KeyProvider>) -> ObjectTierBuilder {
        self.format = std::mem::take(&mut self.format).with_keys(keys);
        self
    }

    /// The clock that decides expiry.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Tier, Timestamp};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    /// let l3 = ObjectTierBuilder::in_memory().clock(clock.clone()).build().await?;
    /// let key = Key::new("sessions", "abc")?;
    /// let entry = Entry::new("alice").with_ttl(&*clock, Duration::from_secs(60));
    /// l3.put(key.clone(), entry).await?;
    /// assert!(l3.get(&key).await?.is_some());
    /// clock.advance(Duration::from_secs(60));
    /// assert!(l3.get(&key).await?.is_none()); // expired by the tier's clock
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> ObjectTierBuilder {
        self.clock = clock;
        self
    }

    /// Whether `build` checks the store (a listing under the prefix, which catches a wrong
    /// endpoint, bucket or credentials). On by default; turn it off to start while the server
    /// is down.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// use cache_l3_object::object_store::memory::InMemory;
    /// use cache_l3_object::object_store::throttle::{ThrottleConfig, ThrottledStore};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // A store whose listings hang (a server that is down, say).
    /// let hour = Duration::from_secs(3600);
    /// let hang = ThrottleConfig { wait_list_per_call: hour, ..Default::default() };
    /// let store = Arc::new(ThrottledStore::new(InMemory::new(), hang));
    /// let timeout = Duration::from_millis(100);
    /// let builder = || ObjectTierBuilder::new(store.clone()).operation_timeout(timeout);
    /// let err = builder().build().await.unwrap_err(); // the start-up listing timed out
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// let l3 = builder().preflight(false).build().await?; // starts without calling the store
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn preflight(mut self, on: bool) -> ObjectTierBuilder {
        self.preflight = on;
        self
    }

    /// Names the tier (default `"object"`): its errors, its stats, its metrics' `tier` label and
    /// the reports of a `TieredCache` carry the name, so two object tiers (two buckets, say)
    /// are told apart. A literal, or a name from configuration leaked once per tier.
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().name("assets-object").build().await?;
    /// assert_eq!(l3.name(), "assets-object");
    /// assert_eq!(l3.stats().tier, "assets-object");
    /// l3.close().await?;
    /// // Errors carry the name too: here a bad configuration.
    /// let b = ObjectTierBuilder::in_memory().name("assets-object").budget(0);
    /// assert_eq!(b.build().await.unwrap_err().tier(), "assets-object");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn name(mut self, name: &'static str) -> ObjectTierBuilder {
        self.name = name;
        self
    }

    /// Whether the local filesystem store fsyncs each object before a put returns (on by
    /// default, which makes acknowledged writes durable as the `Tier` contract asks).
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// // Faster puts, for a directory that may lose recent writes on a power failure.
    /// let l3 = ObjectTierBuilder::local(dir.path()).local_fsync(false).build().await?;
    /// let key = Key::new("scratch", "frame-1")?;
    /// l3.put(key.clone(), Entry::new("pixels")).await?;
    /// assert!(dir.path().join(l3.object_path(&key).as_ref()).is_file());
    /// assert_eq!(l3.get(&key).await?.unwrap().value, "pixels");
    /// l3.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn local_fsync(mut self, on: bool) -> ObjectTierBuilder {
        self.local_fsync = on;
        self
    }

    /// Builds the store and the tier and runs the start-up checks.
    ///
    /// # Errors
    /// `Invalid` for a bad configuration, wrong credentials or a missing bucket; `Unavailable`
    /// if the server cannot be reached within the timeouts; `Unsupported` if conditional
    /// create is asked for and the store ignores it; `Io` if the local directory cannot be
    /// created.
    ///
    /// ```
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_l3_object::ObjectTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l3 = ObjectTierBuilder::in_memory().prefix("cache").build().await?;
    /// assert_eq!(l3.prefix(), "cache");
    /// l3.close().await?;
    /// // A bad configuration fails here, not at the first put.
    /// let err = ObjectTierBuilder::in_memory().max_requests(4).build().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// // So does a local directory that cannot be created (here: under a regular file).
    /// let file = tempfile::NamedTempFile::new().unwrap();
    /// let err = ObjectTierBuilder::local(file.path().join("l3")).build().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Io);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub async fn build(self) -> Result<ObjectTier> {
        let name = self.name;
        self.open().await.map_err(|e| e.renamed(TIER, name))
    }

    async fn open(self) -> Result<ObjectTier> {
        let layout = Layout::new(&self.prefix)?;
        if self.part_size == 0 || self.part_concurrency == 0 || self.delete_concurrency == 0 {
            return Err(Error::invalid(
                TIER,
                "part size, part concurrency and delete concurrency must be positive",
            ));
        }
        if self.max_requests <= self.part_concurrency.max(self.delete_concurrency) {
            return Err(Error::invalid(
                TIER,
                format!(
                    "max_requests ({}) must exceed part_concurrency ({}) and delete_concurrency ({})",
                    self.max_requests, self.part_concurrency, self.delete_concurrency
                ),
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(Error::invalid(TIER, "the operation timeout must be positive"));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::invalid(
                TIER,
                "the request and connect timeouts must be positive (zero would fail every request)",
            ));
        }
        if self.budget == Some(0) {
            return Err(Error::invalid(TIER, "a byte budget must be positive"));
        }
        let (store, streaming, multipart_min) = match &self.source {
            Source::Store(s) => (s.clone(), Streaming::Gather, 1),
            Source::Multipart(s, parts) => (s.clone(), Streaming::Parts(parts.clone()), 1),
            Source::Memory => {
                let memory = Arc::new(InMemory::new());
                (memory.clone() as Arc<dyn ObjectStore>, Streaming::Parts(memory), 1)
            }
            Source::Local(root) => (
                self.local_store(root)?,
                Streaming::Local { root: root.clone(), fsync: self.local_fsync },
                1,
            ),
            #[cfg(feature = "s3")]
            Source::S3(cfg) => {
                let s3 =
                    cfg.build(self.request_timeout, self.connect_timeout, self.retry.clone())?;
                (s3.clone() as Arc<dyn ObjectStore>, Streaming::Parts(s3), S3_MIN_PART)
            }
        };
        if self.part_size < multipart_min {
            return Err(Error::invalid(
                TIER,
                format!("multipart parts of {} bytes are below S3's 5 MiB minimum", self.part_size),
            ));
        }
        let store: Arc<dyn ObjectStore> = Arc::new(LimitStore::new(store, self.max_requests));
        let settings = Settings {
            operation_timeout: self.operation_timeout,
            multipart_threshold: self.multipart_threshold,
            part_size: self.part_size,
            part_concurrency: self.part_concurrency,
            delete_concurrency: self.delete_concurrency,
            conditional_create: self.conditional_create,
            budget: self.budget,
            format: self.format,
            name: self.name,
        };
        let tier = ObjectTier::from_parts(store, streaming, layout, settings, self.clock);
        if self.preflight {
            preflight(&tier).await.map_err(|e| startup_error("start-up check", e))?;
        }
        if self.conditional_create {
            probe_conditional_create(&tier)
                .await
                .map_err(|e| startup_error("conditional create check", e))?;
        }
        Ok(tier)
    }

    fn local_store(&self, root: &std::path::Path) -> Result<Arc<dyn ObjectStore>> {
        std::fs::create_dir_all(root).map_err(|e| {
            Error::new(ErrorKind::Io, TIER, "cannot create the local object directory")
                .with_source(e)
        })?;
        let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| {
            Error::new(ErrorKind::Io, TIER, "cannot open the local object directory").with_source(e)
        })?;
        Ok(Arc::new(fs.with_fsync(self.local_fsync)))
    }
}

fn startup_error(what: &str, e: Error) -> Error {
    let mut out = Error::new(e.kind(), TIER, format!("{what} failed: {}", e.message()));
    if let Some(source) = std::error::Error::source(&e) {
        out = out.with_source(StringError(source.to_string()));
    }
    out
}

#[derive(Debug)]
struct StringError(String);

impl fmt::Display for StringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StringError {}

/// Lists the (normally empty) probe prefix: proves the endpoint, bucket and credentials.
async fn preflight(tier: &ObjectTier) -> Result<()> {
    let inner = tier.inner();
    let dir = inner.layout.probe_dir();
    let mut listing = inner.store.list(Some(&dir));
    let first = inner.call(Op::List, async move { listing.next().await.transpose() }).await;
    match first {
        Ok(_) => Ok(()),
        Err(e) => Err(e.into_core()),
    }
}

/// Creates one probe object twice with `PutMode::Create`: the second must fail.
async fn probe_conditional_create(tier: &ObjectTier) -> Result<()> {
    use std::hash::{BuildHasher, Hasher};
    let inner = tier.inner();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    let path = inner.layout.probe(&format!("create-{:016x}", h.finish()));
    let create = || {
        let store = inner.store.clone();
        let path = path.clone();
        async move {
            store
                .put_opts(
                    &path,
                    PutPayload::from_static(b"probe"),
                    PutOptions::from(PutMode::Create),
                )
                .await
        }
    };
    inner.call(Op::Put, create()).await.map_err(ObjectError::into_core)?;
    let second = inner.call_raw(Op::Put, create()).await;
    let cleanup = inner.call(Op::Delete, {
        let store = inner.store.clone();
        let path = path.clone();
        async move { store.delete(&path).await }
    });
    let _ = cleanup.await;
    match second {
        Ok(Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        )) => Ok(()),
        Ok(Ok(_)) => Err(Error::new(
            ErrorKind::Unsupported,
            TIER,
            "the object store accepted a second conditional create of one object: it ignores \
             PutMode::Create, so write-once keys cannot be guaranteed",
        )),
        Ok(Err(e)) => Err(ObjectError::classify(Op::Put, e).into_core()),
        Err(e) => Err(e.into_core()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_settings_are_invalid() {
        let cases = [
            ObjectTierBuilder::in_memory().prefix("a//b"),
            ObjectTierBuilder::in_memory().part_concurrency(0),
            ObjectTierBuilder::in_memory().max_requests(8),
            ObjectTierBuilder::in_memory().operation_timeout(Duration::ZERO),
            ObjectTierBuilder::in_memory().budget(0),
            ObjectTierBuilder::in_memory().request_timeout(Duration::ZERO),
            ObjectTierBuilder::in_memory().connect_timeout(Duration::ZERO),
        ];
        for b in cases {
            let text = format!("{b:?}");
            let err = b.build().await.expect_err(&text);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{text}: {err}");
        }
    }
}
