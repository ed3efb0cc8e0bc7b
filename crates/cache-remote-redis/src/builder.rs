//! Configuration of a [`RedisTier`]: the server, key prefix, timeouts, reconnect backoff, expiry
//! slack, byte budget, record format (compression, encryption at rest) and clock, and the
//! start-up check `build` makes.

use std::{fmt, sync::Arc, time::Duration};

use cache_core::{
    Clock, Compression, Error, ErrorKind, KeyProvider, RecordFormat, Result, system_clock,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{
    error::RedisError,
    layout::Layout,
    tier::{RedisTier, Settings, TIER},
};

/// Redis's own limit on one string value (`proto-max-bulk-len` defaults to 512 MiB).
const REDIS_MAX_VALUE: u64 = 512 * 1024 * 1024;

/// Builds a [`RedisTier`]. Start from [`RedisTier::builder`].
///
/// Defaults: prefix `tc`, a 2 s timeout per call, 1 s to connect, reconnects with exponential
/// backoff from 50 ms up to 2 s, 5 s of expiry slack, no byte budget, records up to 512 MiB, no
/// compression, no encryption, the system clock.
#[must_use]
pub struct RedisTierBuilder {
    url: String,
    prefix: String,
    operation_timeout: Duration,
    connect_timeout: Duration,
    reconnect_min_delay: Duration,
    reconnect_max_delay: Duration,
    expiry_slack: Duration,
    budget: Option<u64>,
    max_record_len: u64,
    compression: Compression,
    encryption: Option<Arc<dyn KeyProvider>>,
    clock: Arc<dyn Clock>,
    name: &'static str,
}

impl fmt::Debug for RedisTierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTierBuilder")
            // The URL may hold a password: show only where it points.
            .field("url", &redacted(&self.url))
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("expiry_slack", &self.expiry_slack)
            .field("budget", &self.budget)
            .field("compression", &self.compression)
            // Never the keys: only whether there are any.
            .field("encryption", &self.encryption.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisTierBuilder {
    pub(crate) fn new(url: impl Into<String>) -> RedisTierBuilder {
        RedisTierBuilder {
            url: url.into(),
            prefix: "tc".to_owned(),
            operation_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(2),
            expiry_slack: Duration::from_secs(5),
            budget: None,
            max_record_len: REDIS_MAX_VALUE,
            compression: Compression::None,
            encryption: None,
            clock: system_clock(),
            name: TIER,
        }
    }

    /// The prefix of every key (`{prefix}:{namespace id}:…`): 1 to 128 characters of
    /// `[A-Za-z0-9_./-]`. Tiers (or tests) that share a server use different prefixes.
    ///
    /// ```no_run
    /// use cache_core::{ErrorKind, Key, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").prefix("shop/cache");
    /// let tier = b.build().await?;
    /// assert_eq!(tier.prefix(), "shop/cache");
    /// assert!(tier.redis_key(&Key::new("users", "42")?, 1).starts_with("shop/cache:"));
    /// tier.close().await?;
    /// // A colon would break the layout: refused before connecting.
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").prefix("shop:cache");
    /// assert_eq!(b.build().await.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisTierBuilder {
        self.prefix = prefix.into();
        self
    }

    /// The longest any call to Redis may take (a `tokio::time::timeout` around it, and the
    /// connection's response timeout). Past it the call fails with `Unavailable`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // A slow server costs a caller at most 250 ms per call, then the next tier answers.
    /// let tier = RedisTier::builder("redis://127.0.0.1:6379/")
    ///     .operation_timeout(Duration::from_millis(250))
    ///     .build()
    ///     .await?;
    /// tier.close().await?;
    /// // Zero is refused before connecting.
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").operation_timeout(Duration::ZERO);
    /// assert_eq!(b.build().await.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn operation_timeout(mut self, timeout: Duration) -> RedisTierBuilder {
        self.operation_timeout = timeout;
        self
    }

    /// The timeout of one connection attempt (at build and on every reconnect).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/");
    /// let b = b.connect_timeout(Duration::from_millis(200));
    /// assert!(format!("{b:?}").contains("connect_timeout: 200ms"));
    /// let tier = b.build().await?;
    /// tier.close().await?;
    /// // Zero is refused before connecting.
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").connect_timeout(Duration::ZERO);
    /// assert_eq!(b.build().await.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> RedisTierBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The backoff between reconnect attempts after the connection broke: exponential from
    /// `min` up to `max`, with jitter. Calls made while disconnected fail with `Unavailable`
    /// at once rather than waiting.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_core::Tier;
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // After a failover, retry the connection soon, and then at least once a second.
    /// let tier = RedisTier::builder("redis://127.0.0.1:6379/")
    ///     .reconnect_backoff(Duration::from_millis(20), Duration::from_secs(1))
    ///     .build()
    ///     .await?;
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> RedisTierBuilder {
        self.reconnect_min_delay = min;
        self.reconnect_max_delay = max;
        self
    }

    /// Names the tier (default `"redis"`): its errors, its stats, its metrics' `tier` label and
    /// the reports of a `TieredCache` carry the name, so two Redis tiers (two servers, say) are
    /// told apart. A literal, or a name from configuration leaked once per tier.
    ///
    /// ```no_run
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = RedisTier::builder("redis://10.0.0.5:6379/").name("sessions-redis");
    /// let tier = b.build().await?;
    /// assert_eq!(tier.name(), "sessions-redis");
    /// assert_eq!(tier.stats().tier, "sessions-redis");
    /// tier.close().await?;
    /// // Errors carry the name too, those of `build` included.
    /// let b = RedisTier::builder("not a url").name("sessions-redis");
    /// let err = b.build().await.unwrap_err();
    /// assert_eq!((err.kind(), err.tier()), (ErrorKind::Invalid, "sessions-redis"));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn name(mut self, name: &'static str) -> RedisTierBuilder {
        self.name = name;
        self
    }

    /// How much longer than its TTL Redis keeps an entry. The tier's clock decides expiry
    /// (an entry past its expiry is a miss whatever Redis still holds); Redis's own expiry
    /// (`PX`) only reclaims the memory, and the slack keeps it from dropping an entry that a
    /// clock running behind the server's still calls live.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_core::Tier;
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // Nodes whose clocks may run up to 30 s behind the server's.
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").expiry_slack(Duration::from_secs(30));
    /// assert!(format!("{b:?}").contains("expiry_slack: 30s"));
    /// let tier = b.build().await?;
    /// // An entry with a TTL of 60 s is now written with `PX` 90000.
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn expiry_slack(mut self, slack: Duration) -> RedisTierBuilder {
        self.expiry_slack = slack;
        self
    }

    /// An in-process byte budget: the tier keeps an account of the entries it wrote, least
    /// recently used first, and deletes the oldest to stay within it. Without it (the default)
    /// memory is bounded by the server's `maxmemory` and its eviction policy alone. The
    /// account is per tier instance: what other nodes wrote is not counted.
    ///
    /// ```no_run
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").budget(64 << 20);
    /// let tier = b.build().await?;
    /// assert_eq!(tier.usage().capacity, Some(64 << 20));
    /// // A record that could never fit is refused before it is sent.
    /// let huge = Entry::new(vec![0; 65 << 20]);
    /// let err = tier.put(Key::new("blobs", "huge")?, huge).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn budget(mut self, bytes: u64) -> RedisTierBuilder {
        self.budget = Some(bytes);
        self
    }

    /// The largest record accepted (at most Redis's 512 MiB string limit); larger puts fail
    /// with `Invalid`.
    ///
    /// ```no_run
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // Keep multi-megabyte values off a server that answers many small calls.
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").max_record_len(1 << 20);
    /// let tier = b.build().await?;
    /// let big = Entry::new(vec![0; 2 << 20]);
    /// let err = tier.put(Key::new("blobs", "big")?, big).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid); // refused before it is sent
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn max_record_len(mut self, bytes: u64) -> RedisTierBuilder {
        self.max_record_len = bytes.min(REDIS_MAX_VALUE);
        self
    }

    /// How values are compressed on write (default [`Compression::None`]), as in every tier: a
    /// value below 256 KiB that LZ4 or zstd shrinks by at least an eighth is sent and stored
    /// compressed (less server memory and network; the budget counts what is stored). Records
    /// written by a node with any setting read back on a node with any other.
    ///
    /// ```no_run
    /// use cache_core::{Compression, Entry, Key, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").compression(Compression::Lz4);
    /// assert!(format!("{b:?}").contains("compression: Lz4"));
    /// let tier = b.build().await?;
    /// // JSON like this is sent and stored in well under half its size.
    /// let json = r#"{"user":42,"theme":"dark","lang":"en"}"#.repeat(50);
    /// tier.put(Key::new("prefs", "user-42")?, Entry::new(json)).await?;
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn compression(mut self, compression: Compression) -> RedisTierBuilder {
        self.compression = compression;
        self
    }

    /// Encryption at rest (default off): the value of every record of a namespace `keys` has a
    /// key for is sealed with that key (XChaCha20-Poly1305, record format version 4 in
    /// `docs/format.md`), after compression, before it is sent, so the server, its replicas,
    /// its RDB and AOF files and the network hold only ciphertext for those values. The
    /// namespace, the key and the metadata (creation time, expiry, version) of every record stay
    /// readable on the server: the tier needs them to check and expire records. The Redis key
    /// names stay hashes, as always.
    ///
    /// A stored record that does not open (sealed under a key id the provider does not know, a
    /// wrong key, a changed or truncated byte, moved to another key or namespace) or a
    /// plaintext record in a namespace the provider seals is a corrupt record: a miss, counted
    /// in `StatsSnapshot::corrupted`, and deleted; never an error, a panic, or the ciphertext
    /// returned as a value. Every node sharing the server, and every persistent tier of a
    /// stack, should get the same provider: a record moved in from another tier (`put_record`)
    /// is stored as it is only if this tier can open it, and re-sealed (or, for a namespace
    /// this provider leaves in plaintext, stored in plaintext) otherwise; a node without the
    /// keys misses on every sealed entry (and deletes it, as any corrupt entry). Namespaces the
    /// provider has no key for are stored in plaintext, as without this option.
    ///
    /// ```no_run
    /// # async fn demo() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use cache_core::{DerivedKeys, EncryptionKey, KeyId};
    /// use cache_remote_redis::RedisTier;
    /// let master = EncryptionKey::from_bytes([0x42; 32]); // from your secret store
    /// let tier = RedisTier::builder("redis://127.0.0.1:6379/")
    ///     .encryption(Arc::new(DerivedKeys::new(KeyId(1), master)))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn encryption(mut self, keys: Arc<dyn KeyProvider>) -> RedisTierBuilder {
        self.encryption = Some(keys);
        self
    }

    /// The clock that decides expiry (the system clock by default).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Tier, Timestamp};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    /// let b = RedisTier::builder("redis://127.0.0.1:6379/").clock(clock.clone());
    /// let tier = b.build().await?;
    /// let key = Key::new("sessions", "abc")?;
    /// let entry = Entry::new("alice").with_ttl(&*clock, Duration::from_secs(60));
    /// tier.put(key.clone(), entry).await?;
    /// clock.advance(Duration::from_secs(60));
    /// let expired = tier.get(&key).await?; // `None`, whatever Redis still holds
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> RedisTierBuilder {
        self.clock = clock;
        self
    }

    /// Connects and checks the server with a `PING`.
    ///
    /// # Errors
    /// `Invalid` for a malformed URL or prefix, or credentials the server refuses;
    /// `Unavailable` if the server cannot be reached within the connect and operation timeouts.
    ///
    /// ```no_run
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_remote_redis::RedisTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tier = RedisTier::builder("redis://:password@10.0.0.5:6379/0").build().await?;
    /// tier.close().await?;
    /// // A malformed URL fails without a connection.
    /// let err = RedisTier::builder("not a url").build().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// // An unreachable server fails with `Unavailable`; the error never shows the password.
    /// let err = RedisTier::builder("redis://:hunter2@127.0.0.1:1/").build().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// assert!(!err.to_string().contains("hunter2"));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub async fn build(self) -> Result<RedisTier> {
        let name = self.name;
        self.open().await.map_err(|e| e.renamed(TIER, name))
    }

    async fn open(self) -> Result<RedisTier> {
        let layout = Layout::new(&self.prefix)?;
        if self.operation_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::invalid(TIER, "timeouts must be longer than zero"));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            Error::invalid(TIER, format!("bad redis url {}", redacted(&self.url))).with_source(e)
        })?;
        let conn =
            connect(client, &self.url, self.config(), self.connect_timeout, self.operation_timeout)
                .await?;
        let settings = Settings {
            operation_timeout: self.operation_timeout,
            expiry_slack: self.expiry_slack,
            budget: self.budget,
            max_record_len: self.max_record_len,
            format: self.format(),
            name: self.name,
        };
        Ok(RedisTier::from_parts(conn, layout, settings, self.clock))
    }

    /// The format every record is written and read in: the compression and the keys.
    fn format(&self) -> RecordFormat {
        let format = RecordFormat::new().with_compression(self.compression);
        match &self.encryption {
            Some(keys) => format.with_keys(Arc::clone(keys)),
            None => format,
        }
    }

    fn config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.operation_timeout))
            .set_min_delay(self.reconnect_min_delay)
            .set_max_delay(self.reconnect_max_delay)
            .set_number_of_retries(usize::MAX)
    }
}

/// Opens a connection manager and pings the server, within the timeouts.
pub(crate) async fn connect(
    client: redis::Client,
    url: &str,
    config: ConnectionManagerConfig,
    connect_timeout: Duration,
    operation_timeout: Duration,
) -> Result<ConnectionManager> {
    let url = redacted(url);
    let mut conn = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| Error::from(RedisError::client("connect", e)))?;
    let ping = async {
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok::<_, redis::RedisError>(pong)
    };
    match tokio::time::timeout(connect_timeout + operation_timeout, ping).await {
        Err(_) => Err(Error::new(
            ErrorKind::Unavailable,
            TIER,
            format!(
                "no answer from redis at {url} within {:?}",
                connect_timeout + operation_timeout
            ),
        )),
        Ok(Err(e)) => {
            let err = Error::from(RedisError::client("connect", e));
            Err(Error::new(err.kind(), TIER, format!("cannot reach redis at {url}: {err}")))
        }
        Ok(Ok(_)) => Ok(conn),
    }
}

/// `url` without a password (`redis://user:secret@host` becomes `redis://user:***@host`).
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.split_once('@') {
        Some((auth, host)) => {
            let user = auth.split_once(':').map_or(auth, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_named_tier_carries_its_name_in_its_errors() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let err = RedisTier::builder("redis://127.0.0.1:1/")
            .name("sessions-redis")
            .connect_timeout(Duration::from_millis(200))
            .build()
            .await
            .unwrap_err();
        assert_eq!((err.kind(), err.tier()), (ErrorKind::Unavailable, "sessions-redis"), "{err}");
        let err = RedisTier::builder("not a url").name("sessions-redis").build().await.unwrap_err();
        assert_eq!((err.kind(), err.tier()), (ErrorKind::Invalid, "sessions-redis"), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted("redis://:hunter2@10.0.0.1:6379/0"), "redis://:***@10.0.0.1:6379/0");
        assert_eq!(redacted("redis://app:pw@h/"), "redis://app:***@h/");
        assert_eq!(redacted("redis://127.0.0.1/"), "redis://127.0.0.1/");
        let b = RedisTier::builder("redis://:hunter2@h/");
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn bad_settings_are_invalid() {
        for b in [
            RedisTier::builder("not a url"),
            RedisTier::builder("redis://127.0.0.1:1/").prefix("has:colon"),
            RedisTier::builder("redis://127.0.0.1:1/").operation_timeout(Duration::ZERO),
        ] {
            assert_eq!(b.build().await.unwrap_err().kind(), ErrorKind::Invalid);
        }
    }
}
