//! Configuration of an [`ObjectTier`]: the store, prefix, timeouts, retries, multipart upload,
//! conditional create, byte budget and clock, and the start-up checks `build` makes.

use std::{
    fmt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use cache_core::{Clock, Error, ErrorKind, Result, system_clock};
use futures::StreamExt;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    local::LocalFileSystem,
    memory::InMemory,
};

use crate::{
    error::ObjectError,
    layout::Layout,
    metrics::Op,
    tier::{ObjectTier, Settings, TIER},
};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last one) of a multipart upload.
const S3_MIN_PART: usize = 5 * MIB as usize;

/// A secret string (a key or token): shown as `"***"` by `Debug`, never in any message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

/// Where an S3-compatible server is and how to talk to it (AWS S3, MinIO, SeaweedFS, R2, …).
///
/// Fields left unset come from the environment when built with [`S3Config::from_env`]
/// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` and every other
/// variable [`AmazonS3Builder::from_env`] reads; `S3_BUCKET` is accepted for the bucket too).
/// `Debug` never shows the secret key or the session token.
///
/// ```
/// use cache_l3_object::S3Config;
/// let s3 = S3Config::new("cache")
///     .with_endpoint("http://127.0.0.1:8333")
///     .with_region("us-east-1")
///     .with_credentials("KEY", "SECRET")
///     .with_allow_http(true)
///     .with_path_style(true);
/// assert!(!format!("{s3:?}").contains("SECRET"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    from_env: bool,
    endpoint: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
    allow_http: Option<bool>,
    path_style: Option<bool>,
}

impl S3Config {
    /// A bucket, configured explicitly (nothing is read from the environment).
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config { bucket: Some(bucket.into()), ..S3Config::default() }
    }

    /// Everything the environment says, through [`AmazonS3Builder::from_env`]; explicit settings
    /// given afterwards take precedence.
    pub fn from_env() -> S3Config {
        S3Config { from_env: true, ..S3Config::default() }
    }

    /// The server's URL, e.g. `http://127.0.0.1:9000`. Unset means AWS.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> S3Config {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The region (`us-east-1` for most self-hosted servers).
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> S3Config {
        self.region = Some(region.into());
        self
    }

    /// The bucket.
    #[must_use]
    pub fn with_bucket(mut self, bucket: impl Into<String>) -> S3Config {
        self.bucket = Some(bucket.into());
        self
    }

    /// Static credentials.
    #[must_use]
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<Secret>,
    ) -> S3Config {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }

    /// A session token for temporary credentials.
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<Secret>) -> S3Config {
        self.session_token = Some(token.into());
        self
    }

    /// Whether plain `http://` endpoints are allowed (off by default).
    #[must_use]
    pub fn with_allow_http(mut self, allow: bool) -> S3Config {
        self.allow_http = Some(allow);
        self
    }

    /// Path-style requests (`endpoint/bucket/key`, what MinIO and SeaweedFS expect) rather than
    /// virtual-hosted style (`bucket.endpoint/key`). object_store's default is path style.
    #[must_use]
    pub fn with_path_style(mut self, path_style: bool) -> S3Config {
        self.path_style = Some(path_style);
        self
    }

    /// The bucket, if known before building.
    pub fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    fn build(
        &self,
        request_timeout: Duration,
        connect_timeout: Duration,
        retry: RetryConfig,
    ) -> Result<Arc<dyn ObjectStore>> {
        let mut b =
            if self.from_env { AmazonS3Builder::from_env() } else { AmazonS3Builder::new() };
        let bucket = self
            .bucket
            .clone()
            .or_else(|| b.get_config_value(&AmazonS3ConfigKey::Bucket))
            .or_else(|| self.from_env.then(|| std::env::var("S3_BUCKET").ok()).flatten())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                Error::invalid(TIER, "no bucket is configured: set it, or AWS_BUCKET or S3_BUCKET")
            })?;
        b = b.with_bucket_name(bucket);
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(region) = &self.region {
            b = b.with_region(region);
        }
        if let Some(id) = &self.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &self.secret_access_key {
            b = b.with_secret_access_key(secret.expose());
        }
        if let Some(token) = &self.session_token {
            b = b.with_token(token.expose());
        }
        if let Some(path_style) = self.path_style {
            b = b.with_virtual_hosted_style_request(!path_style);
        }
        // Set client options one key at a time: `with_client_options` would replace all of
        // them, `allow_http` from the environment included.
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        b = b
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), ms(request_timeout))
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                ms(connect_timeout),
            )
            .with_retry(retry);
        if let Some(allow) = self.allow_http {
            b = b.with_allow_http(allow);
        }
        if let Some(endpoint) = b.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            let allow_http = b
                .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            check_endpoint(&endpoint, allow_http)?;
        }
        let store = b
            .build()
            .map_err(|e| Error::invalid(TIER, "the S3 configuration is invalid").with_source(e))?;
        Ok(Arc::new(store))
    }
}

/// Checks that `endpoint` is an `http://` or `https://` URL with a host, and that plain HTTP is
/// allowed if it is `http://`: object_store would otherwise fail at the first request with a
/// message that does not name the endpoint.
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<()> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .filter(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains(char::is_whitespace)
        });
    if rest.is_none() {
        return Err(Error::invalid(
            TIER,
            format!("the S3 endpoint {endpoint:?} is not an http:// or https:// URL with a host"),
        ));
    }
    if endpoint.starts_with("http://") && !allow_http {
        return Err(Error::invalid(
            TIER,
            format!(
                "the S3 endpoint {endpoint:?} is plain http:// but plain HTTP is not allowed: use \
                 https://, or allow it with S3Config::with_allow_http(true) or AWS_ALLOW_HTTP=true"
            ),
        ));
    }
    Ok(())
}

enum Source {
    Store(Arc<dyn ObjectStore>),
    Local(PathBuf),
    Memory,
    S3(S3Config),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Store(s) => write!(f, "Store({s})"),
            Source::Local(p) => f.debug_tuple("Local").field(p).finish(),
            Source::Memory => f.write_str("Memory"),
            Source::S3(c) => f.debug_tuple("S3").field(c).finish(),
        }
    }
}

/// Builds an [`ObjectTier`]. Start from [`ObjectTier::builder`] (any store),
/// [`ObjectTierBuilder::local`], [`ObjectTierBuilder::in_memory`] or [`ObjectTierBuilder::s3`].
///
/// Defaults: no prefix, a 10 s timeout per object-store call, 5 s per HTTP request and 1 s to
/// connect, 2 retries within 8 s, multipart upload from 16 MiB in 8 MiB parts with 4 in
/// flight, deletes in batches with 8 in flight, overwriting puts, no byte budget, the system
/// clock, and the start-up check on.
#[derive(Debug)]
#[must_use]
pub struct ObjectTierBuilder {
    source: Source,
    prefix: String,
    operation_timeout: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry: RetryConfig,
    multipart_threshold: u64,
    part_size: usize,
    part_concurrency: usize,
    delete_concurrency: usize,
    conditional_create: bool,
    budget: Option<u64>,
    clock: Arc<dyn Clock>,
    preflight: bool,
    local_fsync: bool,
}

impl ObjectTierBuilder {
    fn with_source(source: Source) -> ObjectTierBuilder {
        ObjectTierBuilder {
            source,
            prefix: String::new(),
            operation_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
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
            conditional_create: false,
            budget: None,
            clock: system_clock(),
            preflight: true,
            local_fsync: true,
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
    /// requests are retried with backoff (S3 only).
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
        let layout = Layout::new(&self.prefix)?;
        if self.part_size == 0 || self.part_concurrency == 0 || self.delete_concurrency == 0 {
            return Err(Error::invalid(
                TIER,
                "part size, part concurrency and delete concurrency must be positive",
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
        let settings = Settings {
            operation_timeout: self.operation_timeout,
            multipart_threshold: self.multipart_threshold,
            part_size: self.part_size,
            part_concurrency: self.part_concurrency,
            delete_concurrency: self.delete_concurrency,
            conditional_create: self.conditional_create,
            budget: self.budget,
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

    #[test]
    fn debug_never_shows_secrets() {
        let cfg = S3Config::new("bucket")
            .with_endpoint("http://127.0.0.1:8333")
            .with_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI-very-secret")
            .with_session_token("session-token-secret");
        let builder = ObjectTierBuilder::s3(cfg.clone()).prefix("p");
        for text in [format!("{cfg:?}"), format!("{cfg:#?}"), format!("{builder:?}")] {
            assert!(!text.contains("wJalrXUtnFEMI-very-secret"), "{text}");
            assert!(!text.contains("session-token-secret"), "{text}");
            assert!(text.contains("AKIDEXAMPLE"), "the key id is not secret: {text}");
        }
    }

    #[tokio::test]
    async fn bad_endpoints_are_named() {
        let cases = [
            (S3Config::new("b").with_endpoint("not a url").with_allow_http(true), "not an http"),
            (S3Config::new("b").with_endpoint("ftp://host").with_allow_http(true), "not an http"),
            (S3Config::new("b").with_endpoint("http://").with_allow_http(true), "not an http"),
            (S3Config::new("b").with_endpoint("http://127.0.0.1:9"), "plain HTTP is not allowed"),
        ];
        for (cfg, needle) in cases {
            let cfg = cfg.with_credentials("k", "s");
            let err = ObjectTierBuilder::s3(cfg.clone()).build().await.expect_err(needle);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{cfg:?}: {err}");
            assert!(err.to_string().contains(needle), "{cfg:?}: {err}");
        }
    }

    #[tokio::test]
    async fn bad_settings_are_invalid() {
        let cases = [
            ObjectTierBuilder::in_memory().prefix("a//b"),
            ObjectTierBuilder::in_memory().part_concurrency(0),
            ObjectTierBuilder::in_memory().operation_timeout(Duration::ZERO),
            ObjectTierBuilder::in_memory().budget(0),
            ObjectTierBuilder::s3(S3Config::new("b")).request_timeout(Duration::ZERO),
            ObjectTierBuilder::s3(S3Config::new("b")).connect_timeout(Duration::ZERO),
            ObjectTierBuilder::s3(S3Config::new("b")).part_size(1024),
            ObjectTierBuilder::s3(S3Config::default()),
        ];
        for b in cases {
            let text = format!("{b:?}");
            let err = b.build().await.expect_err(&text);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{text}: {err}");
        }
    }
}
