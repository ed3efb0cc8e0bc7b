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
    memory::InMemory,
};

#[cfg(feature = "s3")]
use crate::s3::{S3_MIN_PART, S3Config};
use crate::{
    error::ObjectError,
    layout::Layout,
    metrics::Op,
    tier::{ObjectTier, Settings, TIER},
};

pub(crate) const MIB: u64 = 1024 * 1024;

/// The default of [`ObjectTierBuilder::max_requests`].
pub(crate) const DEFAULT_MAX_REQUESTS: usize = 64;

enum Source {
    Store(Arc<dyn ObjectStore>),
    Local(PathBuf),
    Memory,
    #[cfg(feature = "s3")]
    S3(S3Config),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Store(s) => write!(f, "Store({s})"),
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
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::Store(store))
    }

    /// A tier in a directory of the local filesystem (created if missing): the embedded
    /// default, which needs no server. Several processes on one machine may share it.
    pub fn local(root: impl Into<PathBuf>) -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::Local(root.into()))
    }

    /// A tier in memory, for tests.
    pub fn in_memory() -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::Memory)
    }

    /// A tier on an S3-compatible server.
    ///
    /// Available with the `s3` feature (which enables `object_store`'s AWS client).
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub fn s3(config: S3Config) -> ObjectTierBuilder {
        ObjectTierBuilder::with_source(Source::S3(config))
    }

    /// The prefix every object goes under (`a/b` gives `a/b/{namespace}/…`). Several tiers (or
    /// tests) can share a bucket under different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> ObjectTierBuilder {
        self.prefix = prefix.into();
        self
    }

    /// The longest any single call to the object store may take, retries included (a
    /// `tokio::time::timeout` around each call, so it also bounds stores without an HTTP
    /// client). Past it the call fails with `Unavailable`. A multipart upload is several calls,
    /// each bounded by this.
    pub fn operation_timeout(mut self, timeout: Duration) -> ObjectTierBuilder {
        self.operation_timeout = timeout;
        self
    }

    /// The HTTP client's timeout for one request attempt (S3 only).
    pub fn request_timeout(mut self, timeout: Duration) -> ObjectTierBuilder {
        self.request_timeout = timeout;
        self
    }

    /// The HTTP client's connect timeout (S3 only).
    pub fn connect_timeout(mut self, timeout: Duration) -> ObjectTierBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The HTTP client's retry policy: 5xx, connection errors and timeouts of idempotent
    /// requests are retried with backoff (S3 only; available with the `s3` feature).
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub fn retry(mut self, retry: RetryConfig) -> ObjectTierBuilder {
        self.retry = retry;
        self
    }

    /// Values whose record is at least this large go up by multipart upload.
    pub fn multipart_threshold(mut self, bytes: u64) -> ObjectTierBuilder {
        self.multipart_threshold = bytes;
        self
    }

    /// The size of each multipart part (S3 needs at least 5 MiB).
    pub fn part_size(mut self, bytes: usize) -> ObjectTierBuilder {
        self.part_size = bytes;
        self
    }

    /// How many parts of one upload are in flight at once.
    pub fn part_concurrency(mut self, parts: usize) -> ObjectTierBuilder {
        self.part_concurrency = parts;
        self
    }

    /// How many delete requests (bulk batches on S3) are in flight while clearing a namespace
    /// or evicting.
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
    pub fn max_requests(mut self, requests: usize) -> ObjectTierBuilder {
        self.max_requests = requests;
        self
    }

    /// Write-once keys: every `put` is a conditional create (`PutMode::Create`), so the first
    /// writer of a key wins and later writes fail without changing it. `build` checks that the
    /// store really enforces it and fails with `Unsupported` if not. Values go up in one
    /// request in this mode (multipart uploads cannot be conditional).
    pub fn conditional_create(mut self, on: bool) -> ObjectTierBuilder {
        self.conditional_create = on;
        self
    }

    /// A byte budget (unbounded by default). The tier keeps an in-process account of the
    /// objects it wrote, in least-recently-used order, and deletes the oldest to stay within
    /// it. The budget is per tier instance: objects written by other processes or earlier runs
    /// are not counted. For a bucket-wide bound, use lifecycle rules (see the crate docs).
    pub fn budget(mut self, bytes: u64) -> ObjectTierBuilder {
        self.budget = Some(bytes);
        self
    }

    /// How values are compressed on write (default [`Compression::None`]), as in every tier: a
    /// value below 256 KiB that LZ4 or zstd shrinks by at least an eighth is uploaded
    /// compressed (fewer bytes sent and stored; the budget counts what is stored), and a ranged
    /// read of it downloads the whole object to decode it. Larger and incompressible values
    /// stay raw. Objects written under any setting read back under any other.
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
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> ObjectTierBuilder {
        self.clock = clock;
        self
    }

    /// Whether `build` checks the store (a listing under the prefix, which catches a wrong
    /// endpoint, bucket or credentials). On by default; turn it off to start while the server
    /// is down.
    pub fn preflight(mut self, on: bool) -> ObjectTierBuilder {
        self.preflight = on;
        self
    }

    /// Names the tier (default `"object"`): its errors, its stats, its metrics' `tier` label and
    /// the reports of a `TieredCache` carry the name, so two object tiers (two buckets, say)
    /// are told apart. A literal, or a name from configuration leaked once per tier.
    pub fn name(mut self, name: &'static str) -> ObjectTierBuilder {
        self.name = name;
        self
    }

    /// Whether the local filesystem store fsyncs each object before a put returns (on by
    /// default, which makes acknowledged writes durable as the `Tier` contract asks).
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
        let (store, multipart_min) = match &self.source {
            Source::Store(s) => (s.clone(), 1),
            Source::Memory => (Arc::new(InMemory::new()) as Arc<dyn ObjectStore>, 1),
            Source::Local(root) => (self.local_store(root)?, 1),
            #[cfg(feature = "s3")]
            Source::S3(cfg) => (
                cfg.build(self.request_timeout, self.connect_timeout, self.retry.clone())?,
                S3_MIN_PART,
            ),
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
        let tier = ObjectTier::from_parts(store, layout, settings, self.clock);
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
