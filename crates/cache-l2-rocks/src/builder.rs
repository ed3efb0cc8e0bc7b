//! Configuration of the RocksDB tier, and the RocksDB options derived from it.

use std::{path::PathBuf, sync::Arc};

pub use cache_core::Durability;
use cache_core::{Clock, Compression, KeyProvider, Result, system_clock};
use rocksdb::{
    BlockBasedOptions, Cache, DBCompactionStyle, DBCompressionType, FifoCompactOptions, Options,
    compaction_filter::Decision,
};

use crate::{
    error::RocksError,
    tier::{RocksTier, peek_meta},
};

const MIB: u64 = 1024 * 1024;

pub use cache_core::MIN_SYNC_INTERVAL;

/// RocksDB's own compression of whole SST blocks (several records at a time). Only LZ4 is built
/// into this crate's RocksDB. Independent of [`RocksTierBuilder::compression`], which compresses
/// each record's value and works the same in every tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockCompression {
    /// No compression: the right choice for values that are already compressed.
    #[default]
    None,
    /// LZ4 block compression.
    Lz4,
}

/// How RocksDB compacts. `docs/tiers/rocks.md` has the measurements behind the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompactionStyle {
    /// Leveled compaction. Deleted, overwritten and expired records are reclaimed by compaction
    /// (the TTL compaction filter runs on every compaction), so disk use tracks the budget,
    /// paid for with compaction writes.
    #[default]
    Leveled,
    /// FIFO compaction: SST files are never rewritten; the oldest file is deleted once all of
    /// them exceed the budget plus a quarter plus two write buffers. Far fewer bytes written,
    /// but removed and expired records keep their space until their file ages out, and a
    /// file can take records the budget still counts as live with it (they become misses).
    Fifo,
}

/// Builds a [`RocksTier`]: where, how big, how durable, and RocksDB's knobs.
///
/// ```no_run
/// # async fn demo() -> cache_core::Result<()> {
/// use std::time::Duration;
/// use cache_l2_rocks::{Compression, Durability, RocksTier};
/// let tier = RocksTier::builder("/var/cache/app/rocks", 8 << 30)
///     .durability(Durability::Periodic(Duration::from_millis(10)))
///     .compression(Compression::zstd())
///     .block_cache_bytes(256 << 20)
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RocksTierBuilder {
    pub(crate) dir: PathBuf,
    pub(crate) capacity_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) write_ahead_log: bool,
    pub(crate) compression: Compression,
    pub(crate) encryption: Option<Arc<dyn KeyProvider>>,
    pub(crate) block_compression: BlockCompression,
    pub(crate) compaction: CompactionStyle,
    pub(crate) bloom_bits_per_key: f64,
    pub(crate) block_cache_bytes: usize,
    pub(crate) write_buffer_bytes: Option<usize>,
    pub(crate) statistics: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) name: &'static str,
}

impl RocksTierBuilder {
    /// A tier in `dir` (created if missing) holding at most `capacity_bytes` of records.
    ///
    /// Defaults: the write-ahead log with [`Durability::None`], [`Compression::None`],
    /// [`CompactionStyle::Leveled`], 10 Bloom bits per key, a 32 MiB block cache, a write buffer
    /// of an eighth of the budget (1 – 64 MiB), the system clock.
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l2_rocks::RocksTierBuilder;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let builder = RocksTierBuilder::new(dir.path().join("rocks"), 64 << 20);
    /// assert_eq!(builder.effective_write_buffer_bytes(), 8 << 20); // an eighth of 64 MiB
    /// let tier = builder.open().await?;
    /// assert!(dir.path().join("rocks").is_dir()); // created by `open`
    /// assert_eq!(tier.usage().capacity, Some(64 << 20));
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn new(dir: impl Into<PathBuf>, capacity_bytes: u64) -> RocksTierBuilder {
        RocksTierBuilder {
            dir: dir.into(),
            capacity_bytes,
            durability: Durability::None,
            write_ahead_log: true,
            compression: Compression::None,
            encryption: None,
            block_compression: BlockCompression::default(),
            compaction: CompactionStyle::default(),
            bloom_bits_per_key: 10.0,
            block_cache_bytes: 32 << 20,
            write_buffer_bytes: None,
            statistics: false,
            clock: system_clock(),
            name: crate::tier::TIER,
        }
    }

    /// Names the tier (default `"rocks"`): its errors, its stats, its metrics' `tier` label
    /// and the reports of a `TieredCache` carry the name, so two RocksDB tiers are told apart.
    /// A literal, or a name from configuration leaked once per tier.
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l2_rocks::RocksTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let tier = RocksTier::builder(dir.path(), 64 << 20).name("sessions-rocks").open().await?;
    /// assert_eq!(tier.name(), "sessions-rocks");
    /// assert_eq!(tier.stats().tier, "sessions-rocks");
    /// // Errors carry the name too: here a second opener of the same directory.
    /// let second = RocksTier::builder(dir.path(), 64 << 20).name("other-rocks").open().await;
    /// assert_eq!(second.unwrap_err().tier(), "other-rocks");
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn name(mut self, name: &'static str) -> RocksTierBuilder {
        self.name = name;
        self
    }

    /// When the write-ahead log is synced (default [`Durability::None`]): never before a
    /// flush, by a background thread at an interval ([`Durability::Periodic`]), or after every
    /// write call ([`Durability::EveryWrite`]: one `fsync` per call, so batch with `put_many`;
    /// its measured cost is in `docs/tiers/rocks.md`). With the log, a put returns once its
    /// record is in the log file, so a crash of the process loses nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l2_rocks::{Durability, RocksTier};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let tier = RocksTier::builder(dir.path(), 64 << 20)
    ///     .durability(Durability::EveryWrite) // each call returns once the log is synced
    ///     .open()
    ///     .await?;
    /// assert!(tier.put(Key::new("orders", "42")?, Entry::new("paid")).await?.is_stored());
    /// tier.close().await?;
    /// // A periodic sync below `MIN_SYNC_INTERVAL` is refused.
    /// let b = RocksTier::builder(dir.path(), 64 << 20);
    /// let b = b.durability(Durability::Periodic(Duration::ZERO));
    /// assert_eq!(b.open().await.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> RocksTierBuilder {
        self.durability = durability;
        self
    }

    /// Whether writes go through RocksDB's write-ahead log (default: yes). Without it a write
    /// lives in the memtable until the memtable is flushed to an SST file (when it fills, on
    /// `flush` and on `close`), so a crash of the process loses the unflushed writes: the
    /// fastest writes, which a cache that can refill itself may want. It needs
    /// [`Durability::None`]: there is no log to sync.
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l2_rocks::{Durability, RocksTier};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let tier = RocksTier::builder(dir.path(), 64 << 20).write_ahead_log(false).open().await?;
    /// tier.put(Key::new("thumbnails", "cat.png")?, Entry::new("png bytes")).await?;
    /// assert_eq!(tier.sst_bytes().await?, 0); // only in the memtable, in RAM
    /// tier.flush().await?; // with no log, a flush writes the memtable to an SST file
    /// assert!(tier.sst_bytes().await? > 0);
    /// tier.close().await?;
    /// // Without a log there is nothing to sync.
    /// let b = RocksTier::builder(dir.path(), 64 << 20).write_ahead_log(false);
    /// let err = b.durability(Durability::EveryWrite).open().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn write_ahead_log(mut self, on: bool) -> RocksTierBuilder {
        self.write_ahead_log = on;
        self
    }

    /// How each record's value is compressed on write (default [`Compression::None`]), as in
    /// every tier: a value below 256 KiB that LZ4 or zstd shrinks by at least an eighth is
    /// stored compressed, the record says which codec, and the record moves to another tier
    /// compressed. The budget counts the bytes stored.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_rocks::{Compression, RocksTier};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let json = r#"{"user":42,"theme":"dark","lang":"en"}"#.repeat(50);
    /// let mut used = Vec::new();
    /// for compression in [Compression::None, Compression::Lz4] {
    ///     let dir = tempfile::tempdir().unwrap();
    ///     let b = RocksTier::builder(dir.path(), 64 << 20).compression(compression);
    ///     let tier = b.open().await?;
    ///     tier.put(Key::new("prefs", "user-42")?, Entry::new(json.clone())).await?;
    ///     used.push(tier.usage().bytes_used);
    ///     tier.close().await?;
    /// }
    /// assert!(used[1] < used[0] / 2, "LZ4 stores fewer bytes: {used:?}");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> RocksTierBuilder {
        self.compression = compression;
        self
    }

    /// Encryption at rest (default off): the value of every record of a namespace `keys` has a
    /// key for is sealed with that key (XChaCha20-Poly1305, format version 4 in
    /// `docs/format.md`), after [`compression`](RocksTierBuilder::compression), so the SST
    /// and log files hold its ciphertext. The namespace, the key and the metadata (times,
    /// version) stay readable: the compaction filter drops expired records without the keys.
    /// A record that does not open (no key of its id, a wrong key, a changed byte) or a
    /// plaintext record in a sealed namespace is a miss, counted in `corrupted`, and deleted.
    /// Give every persistent tier of a stack the same provider: a record moved in from another
    /// tier is stored as it is only if this tier can open it, and re-sealed otherwise.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::{DerivedKeys, EncryptionKey, Entry, Key, KeyId, Tier};
    /// use cache_l2_rocks::RocksTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// // In production the master key comes from a key-management service or a secret store.
    /// let keys = DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([7; 32]));
    /// let b = RocksTier::builder(dir.path(), 64 << 20).encryption(Arc::new(keys));
    /// let tier = b.open().await?;
    /// let key = Key::new("tenant-a", "user-42/profile")?;
    /// tier.put(key.clone(), Entry::new("a secret profile")).await?;
    /// assert_eq!(tier.get(&key).await?.unwrap().value, "a secret profile");
    /// tier.compact().await?; // into an SST file, next to the log
    /// for file in std::fs::read_dir(dir.path()).unwrap() {
    ///     let bytes = std::fs::read(file.unwrap().path()).unwrap();
    ///     assert!(!bytes.windows(6).any(|w| w == b"secret"), "no file holds the plaintext");
    /// }
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn encryption(mut self, keys: Arc<dyn KeyProvider>) -> RocksTierBuilder {
        self.encryption = Some(keys);
        self
    }

    /// RocksDB's SST block compression (default none). It compresses across records, so it
    /// also gains on small values, but the budget still counts each record's uncompressed size.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_rocks::{BlockCompression, RocksTier};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let b = RocksTier::builder(dir.path(), 64 << 20).block_compression(BlockCompression::Lz4);
    /// let tier = b.open().await?;
    /// let key = |i: u32| Key::new("logs", i.to_string()).unwrap();
    /// tier.put_many((0..1000).map(|i| (key(i), Entry::new(vec![b'a'; 4096]))).collect()).await?;
    /// tier.compact().await?; // into SST files
    /// // The budget counts 4 MB of records; the disk holds a small fraction of that.
    /// assert!(tier.usage().bytes_used > 4_000_000);
    /// assert!(tier.sst_bytes().await? < tier.usage().bytes_used / 10);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn block_compression(mut self, compression: BlockCompression) -> RocksTierBuilder {
        self.block_compression = compression;
        self
    }

    /// Leveled or FIFO compaction.
    ///
    /// ```
    /// use cache_core::{Entry, Namespace, Tier};
    /// use cache_l2_rocks::{CompactionStyle, RocksTier};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let logs = Namespace::new("logs")?;
    /// let mut sst = Vec::new();
    /// for style in [CompactionStyle::Leveled, CompactionStyle::Fifo] {
    ///     let dir = tempfile::tempdir().unwrap();
    ///     let tier = RocksTier::builder(dir.path(), 64 << 20).compaction(style).open().await?;
    ///     let line = |i: u32| (logs.key(i.to_string()).unwrap(), Entry::new(vec![i as u8; 4096]));
    ///     tier.put_many((0..100).map(line).collect()).await?;
    ///     tier.compact().await?; // into an SST file
    ///     tier.clear_namespace(&logs).await?;
    ///     tier.compact().await?;
    ///     assert_eq!(tier.usage().bytes_used, 0);
    ///     sst.push(tier.sst_bytes().await?);
    ///     tier.close().await?;
    /// }
    /// // Leveled compaction reclaimed the cleared records; FIFO keeps them until their file
    /// // ages out.
    /// assert!(sst[0] < 100_000 && sst[1] > 400_000, "{sst:?}");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn compaction(mut self, compaction: CompactionStyle) -> RocksTierBuilder {
        self.compaction = compaction;
        self
    }

    /// Bloom filter bits per key; `0.0` turns the filter off. Misses on keys absent from an SST
    /// file skip its data blocks with probability ≈ 99 % at 10 bits.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_rocks::RocksTier;
    /// use rocksdb::statistics::Ticker;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let b = RocksTier::builder(dir.path(), 64 << 20).bloom_bits_per_key(10.0).statistics(true);
    /// let tier = b.open().await?;
    /// let key = |i: u32| Key::new("users", i.to_string()).unwrap();
    /// tier.put_many((0..1000).map(|i| (key(i), Entry::new("v"))).collect()).await?;
    /// tier.compact().await?; // into an SST file
    /// for i in 1000..1100 {
    ///     assert!(tier.get(&key(i)).await?.is_none());
    /// }
    /// // The filter answered most of the 100 misses without reading a data block.
    /// assert!(tier.rocksdb_ticker(Ticker::BloomFilterUseful) >= 90);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn bloom_bits_per_key(mut self, bits: f64) -> RocksTierBuilder {
        self.bloom_bits_per_key = bits;
        self
    }

    /// Size of RocksDB's LRU block cache (uncompressed blocks, in RAM, outside the budget).
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_rocks::RocksTier;
    /// use rocksdb::statistics::Ticker;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let b = RocksTier::builder(dir.path(), 64 << 20).block_cache_bytes(8 << 20);
    /// let tier = b.statistics(true).open().await?;
    /// let key = Key::new("users", "42")?;
    /// tier.put(key.clone(), Entry::new("Ada")).await?;
    /// tier.compact().await?; // into an SST file
    /// tier.get(&key).await?; // reads the record's block from the file into the cache...
    /// tier.get(&key).await?; // ...and finds it there
    /// assert!(tier.rocksdb_ticker(Ticker::BlockCacheDataHit) >= 1);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn block_cache_bytes(mut self, bytes: usize) -> RocksTierBuilder {
        self.block_cache_bytes = bytes;
        self
    }

    /// Size of one memtable. Up to two exist at a time; their contents are counted in the budget
    /// but their RAM is not.
    ///
    /// ```
    /// use cache_core::ErrorKind;
    /// use cache_l2_rocks::RocksTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let b = RocksTier::builder(dir.path(), 64 << 20);
    /// assert_eq!(b.effective_write_buffer_bytes(), 8 << 20); // by default an eighth of the budget
    /// let b = b.write_buffer_bytes(16 << 20);
    /// assert_eq!(b.effective_write_buffer_bytes(), 16 << 20);
    /// let err = b.write_buffer_bytes(0).open().await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn write_buffer_bytes(mut self, bytes: usize) -> RocksTierBuilder {
        self.write_buffer_bytes = Some(bytes);
        self
    }

    /// Collects RocksDB statistics (a few percent of CPU), read with
    /// [`RocksTier::rocksdb_statistics`].
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_rocks::RocksTier;
    /// use rocksdb::statistics::Ticker;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    /// let tier = RocksTier::builder(dir.path(), 64 << 20).statistics(true).open().await?;
    /// tier.put(Key::new("users", "42")?, Entry::new("Ada")).await?;
    /// assert!(tier.rocksdb_ticker(Ticker::BytesWritten) > 0);
    /// assert!(tier.rocksdb_statistics().unwrap().contains("rocksdb.bytes.written"));
    /// tier.close().await?;
    /// // Off by default.
    /// let tier = RocksTier::builder(other.path(), 64 << 20).open().await?;
    /// assert_eq!(tier.rocksdb_statistics(), None);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn statistics(mut self, on: bool) -> RocksTierBuilder {
        self.statistics = on;
        self
    }

    /// The clock used for expiry, on reads and in the compaction filter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Tier, Timestamp};
    /// use cache_l2_rocks::RocksTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    /// let tier = RocksTier::builder(dir.path(), 64 << 20).clock(clock.clone()).open().await?;
    /// let key = Key::new("sessions", "abc")?;
    /// let entry = Entry::new("alice").with_ttl(&*clock, Duration::from_secs(60));
    /// tier.put(key.clone(), entry).await?;
    /// assert!(tier.get(&key).await?.is_some());
    /// clock.advance(Duration::from_secs(60));
    /// assert!(tier.get(&key).await?.is_none()); // expired by the tier's clock
    /// assert_eq!(tier.stats().expirations, 1);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> RocksTierBuilder {
        self.clock = clock;
        self
    }

    /// Opens (or creates) the tier and rebuilds its budget by iterating the stored records.
    ///
    /// Must be called within a tokio runtime: RocksDB runs on its blocking pool.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) for a zero budget or a bad knob;
    /// [`ErrorKind::Io`](cache_core::ErrorKind::Io) if the directory cannot be created or is
    /// already open ("… is already open by another process"); other RocksDB failures by kind.
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l2_rocks::RocksTier;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let key = Key::new("users", "42")?;
    /// let tier = RocksTier::builder(dir.path(), 64 << 20).open().await?;
    /// tier.put(key.clone(), Entry::new("Ada")).await?;
    /// let again = RocksTier::builder(dir.path(), 64 << 20).open().await;
    /// assert_eq!(again.unwrap_err().kind(), ErrorKind::Io); // the directory is locked while open
    /// tier.close().await?;
    /// let tier = RocksTier::builder(dir.path(), 64 << 20).open().await?;
    /// assert_eq!(tier.usage().entries, Some(1)); // the budget is rebuilt from the stored records
    /// assert!(tier.get(&key).await?.is_some());
    /// tier.close().await?;
    /// let zero = RocksTier::builder(dir.path(), 0).open().await;
    /// assert_eq!(zero.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub async fn open(self) -> Result<RocksTier> {
        let name = self.name;
        RocksTier::open(self).await.map_err(|e| e.renamed(crate::tier::TIER, name))
    }

    pub(crate) fn validate(&self) -> Result<(), RocksError> {
        if self.capacity_bytes == 0 {
            return Err(RocksError::Config("the byte budget is zero".into()));
        }
        if !self.bloom_bits_per_key.is_finite() || self.bloom_bits_per_key < 0.0 {
            return Err(RocksError::Config(format!(
                "bloom bits per key must be a non-negative number, not {}",
                self.bloom_bits_per_key
            )));
        }
        if self.write_buffer_bytes == Some(0) {
            return Err(RocksError::Config("the write buffer size is zero".into()));
        }
        if !self.write_ahead_log && self.durability != Durability::None {
            return Err(RocksError::Config(format!(
                "durability {:?} syncs the write-ahead log, which is turned off",
                self.durability
            )));
        }
        if let Some(why) = self.durability.invalid_reason() {
            return Err(RocksError::Config(why));
        }
        Ok(())
    }

    /// The memtable size actually used.
    ///
    /// ```
    /// use cache_l2_rocks::RocksTier;
    /// // An eighth of the budget, from 1 MiB to 64 MiB, unless set with `write_buffer_bytes`.
    /// assert_eq!(RocksTier::builder("cache", 64 << 20).effective_write_buffer_bytes(), 8 << 20);
    /// assert_eq!(RocksTier::builder("cache", 4 << 30).effective_write_buffer_bytes(), 64 << 20);
    /// assert_eq!(RocksTier::builder("cache", 1 << 20).effective_write_buffer_bytes(), 1 << 20);
    /// let set = RocksTier::builder("cache", 64 << 20).write_buffer_bytes(4 << 20);
    /// assert_eq!(set.effective_write_buffer_bytes(), 4 << 20);
    /// ```
    pub fn effective_write_buffer_bytes(&self) -> usize {
        self.write_buffer_bytes
            .unwrap_or_else(|| (self.capacity_bytes / 8).clamp(MIB, 64 * MIB) as usize)
    }

    /// The RocksDB options the tier opens its database with, TTL compaction filter included.
    ///
    /// Public so that benchmarks and tools (`ldb`, `sst_dump`, a raw `rocksdb::DB` for comparison)
    /// can use exactly the same configuration.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_rocks::{RocksTier, STORAGE_KEY_LEN};
    /// use rocksdb::{DB, IteratorMode};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let builder = RocksTier::builder(dir.path(), 64 << 20);
    /// let tier = builder.clone().open().await?;
    /// tier.put(Key::new("users", "42")?, Entry::new("Ada")).await?;
    /// tier.close().await?;
    /// // A raw RocksDB handle on the tier's directory, with the tier's options.
    /// let db = DB::open(&builder.rocksdb_options(), dir.path()).unwrap();
    /// let keys: Vec<_> = db.iterator(IteratorMode::Start).map(|r| r.unwrap().0).collect();
    /// assert_eq!(keys.len(), 1);
    /// assert_eq!(keys[0].len(), STORAGE_KEY_LEN); // namespace id and key hash: no user string
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn rocksdb_options(&self) -> Options {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.set_compression_type(match self.block_compression {
            BlockCompression::None => DBCompressionType::None,
            BlockCompression::Lz4 => DBCompressionType::Lz4,
        });
        let write_buffer = self.effective_write_buffer_bytes();
        o.set_write_buffer_size(write_buffer);
        o.set_max_write_buffer_number(2);
        o.set_target_file_size_base((self.capacity_bytes / 8).clamp(2 * MIB, 64 * MIB));
        o.set_max_background_jobs(2);
        // RocksDB's info LOG is for humans; keep it from growing without bound in the cache dir.
        o.set_keep_log_file_num(2);
        o.set_max_log_file_size(4 << 20);
        let mut table = BlockBasedOptions::default();
        if self.bloom_bits_per_key > 0.0 {
            table.set_bloom_filter(self.bloom_bits_per_key, false);
        }
        table.set_block_cache(&Cache::new_lru_cache(self.block_cache_bytes));
        o.set_block_based_table_factory(&table);
        match self.compaction {
            CompactionStyle::Leveled => {
                o.set_compaction_style(DBCompactionStyle::Level);
                o.set_level_compaction_dynamic_level_bytes(true);
            }
            CompactionStyle::Fifo => {
                o.set_compaction_style(DBCompactionStyle::Fifo);
                let mut fifo = FifoCompactOptions::default();
                fifo.set_max_table_files_size(
                    self.capacity_bytes + self.capacity_bytes / 4 + 2 * write_buffer as u64,
                );
                o.set_fifo_compaction_options(&fifo);
            }
        }
        let clock = self.clock.clone();
        o.set_compaction_filter(
            "tiered-cache-ttl",
            move |_level: u32, _key: &[u8], value: &[u8]| {
                // Unparseable records are kept: a read finds them, counts them and deletes them.
                match peek_meta(value) {
                    Ok(meta) if meta.is_expired(clock.now()) => Decision::Remove,
                    _ => Decision::Keep,
                }
            },
        );
        if self.statistics {
            o.enable_statistics();
        }
        o
    }
}
