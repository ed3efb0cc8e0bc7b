//! Configuration of the NVMe tier: directory, budget, segment size, durability, verification,
//! compression, reinsertion and clock.

use std::{path::PathBuf, sync::Arc, time::Duration};

pub use cache_core::Durability;
use cache_core::{Clock, Compression, KeyProvider, Result, system_clock};

use crate::{error::NvmeError, tier::NvmeTier};

/// Default segment size before it is derived from the budget.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// The smallest segment the tier creates (and so the smallest budget it accepts).
pub const MIN_SEGMENT_SIZE: u64 = 16 * 1024;
/// The largest configurable segment size (offsets are 31-bit).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;
/// Segments are sized so that at least this many fit in the budget.
pub const SEGMENTS_PER_BUDGET: u64 = 32;
/// Default size of the pending-write buffer (records accepted by `put`, not yet written).
pub const DEFAULT_MAX_PENDING: u32 = 64 * 1024 * 1024;

pub use cache_core::MIN_SYNC_INTERVAL;

/// The NVMe tier's default durability: a sync of the dirty segments every 5 ms.
pub const DEFAULT_DURABILITY: Durability = Durability::Periodic(Duration::from_millis(5));

/// Builds an [`NvmeTier`].
///
/// ```no_run
/// # async fn demo() -> cache_core::Result<()> {
/// use cache_l2_nvme::{Durability, NvmeTierBuilder};
/// let tier = NvmeTierBuilder::new("/var/cache/myapp/nvme", 10 << 30)
///     .segment_size(64 << 20)
///     .durability(Durability::EveryWrite)
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NvmeTierBuilder {
    pub(crate) dir: PathBuf,
    pub(crate) capacity: u64,
    pub(crate) segment_size: u64,
    pub(crate) durability: Durability,
    pub(crate) verify_on_read: bool,
    pub(crate) compression: Compression,
    pub(crate) encryption: Option<Arc<dyn KeyProvider>>,
    pub(crate) reinsert_hits: bool,
    pub(crate) direct_reads: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_pending: Option<u32>,
    pub(crate) name: &'static str,
    pub(crate) idle: Option<Duration>,
}

impl NvmeTierBuilder {
    /// A tier in `dir` (created if missing) holding at most `capacity_bytes` of segment files.
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let parent = tempfile::tempdir().unwrap();
    /// let dir = parent.path().join("nvme");
    /// let tier = NvmeTierBuilder::new(&dir, 64 << 20).open().await?;
    /// assert!(dir.is_dir(), "created by open");
    /// assert_eq!(tier.dir(), dir);
    /// assert_eq!(tier.usage().capacity, Some(64 << 20));
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn new(dir: impl Into<PathBuf>, capacity_bytes: u64) -> NvmeTierBuilder {
        NvmeTierBuilder {
            dir: dir.into(),
            capacity: capacity_bytes,
            segment_size: DEFAULT_SEGMENT_SIZE,
            durability: DEFAULT_DURABILITY,
            verify_on_read: true,
            compression: Compression::None,
            encryption: None,
            reinsert_hits: false,
            direct_reads: false,
            clock: system_clock(),
            max_pending: None,
            name: crate::error::TIER,
            idle: None,
        }
    }

    /// Names the tier (default `"nvme"`): its errors, its stats, its metrics' `tier` label and
    /// the reports of a `TieredCache` carry the name, so two NVMe tiers of one process are told
    /// apart. A literal, or a name from configuration leaked once per tier.
    ///
    /// ```
    /// use cache_core::{ErrorKind, Key, Tier};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20).name("thumbnails").open().await?;
    /// assert_eq!(tier.name(), "thumbnails");
    /// assert_eq!(tier.stats().tier, "thumbnails");
    /// tier.close().await?;
    /// let err = tier.get(&Key::new("ns", "k")?).await.unwrap_err();
    /// assert_eq!((err.kind(), err.tier()), (ErrorKind::Closed, "thumbnails"));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn name(mut self, name: &'static str) -> NvmeTierBuilder {
        self.name = name;
        self
    }

    /// The largest segment size (default 64 MiB; [`MIN_SEGMENT_SIZE`] to [`MAX_SEGMENT_SIZE`],
    /// else `open` fails with `Invalid`). The size actually used is
    /// `clamp(min(this, budget / 32), 16 KiB, 1 GiB)`, at least `budget / 16384` and at most
    /// the budget, rounded down to 4 KiB, so small budgets still get
    /// [`SEGMENTS_PER_BUDGET`] segments and FIFO reclaim frees at most a thirty-second of the
    /// budget at once.
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTierBuilder::new(dir.path().join("a"), 64 << 20)
    ///     .segment_size(1 << 20)
    ///     .open()
    ///     .await?;
    /// assert_eq!(tier.segment_size(), 1 << 20);
    /// tier.close().await?;
    /// // The default 64 MiB is capped at a thirty-second of the 64 MiB budget.
    /// let tier = NvmeTierBuilder::new(dir.path().join("b"), 64 << 20).open().await?;
    /// assert_eq!(tier.segment_size(), 2 << 20);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn segment_size(mut self, bytes: u64) -> NvmeTierBuilder {
        self.segment_size = bytes;
        self
    }

    /// When writes are synced ([`DEFAULT_DURABILITY`]: [`Durability::Periodic`] every 5 ms):
    /// `fdatasync`s of the dirty segments. With [`Durability::None`] and
    /// [`Durability::Periodic`] a put returns once its record is staged for the writer thread
    /// (see the crate docs), so a crash of the process may lose what was staged and not yet
    /// written; with [`Durability::EveryWrite`] each writer batch is written and synced before
    /// its puts return.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l2_nvme::{Durability, NvmeTierBuilder};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20)
    ///     .durability(Durability::EveryWrite)
    ///     .open()
    ///     .await?;
    /// assert!(tier.put(Key::new("orders", "42")?, Entry::new("paid")).await?.is_stored());
    /// assert_eq!(tier.pending_writes(), 0, "written and synced before put returned");
    /// tier.close().await?;
    /// let too_often = NvmeTierBuilder::new(dir.path(), 64 << 20)
    ///     .durability(Durability::Periodic(Duration::ZERO));
    /// assert_eq!(too_often.open().await.unwrap_err().kind(), ErrorKind::Invalid);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> NvmeTierBuilder {
        self.durability = durability;
        self
    }

    /// Whether a hit verifies the record checksum (xxh3-64 over the record; default on). Off,
    /// only the structure is checked, and bit rot inside a value goes unnoticed.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let key = Key::new("docs", "greeting")?;
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20).open().await?;
    /// assert!(tier.put(key.clone(), Entry::new("hello, world")).await?.is_stored());
    /// tier.close().await?;
    /// # let seg = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path())
    /// #     .find(|p| p.extension().is_some_and(|e| e == "seg")).unwrap();
    /// # let mut bytes = std::fs::read(&seg).unwrap();
    /// # let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    /// # bytes[at] ^= 1;
    /// # std::fs::write(&seg, bytes).unwrap();
    /// // One bit of the value rots on disk (hidden lines flip it): "hello" becomes "iello".
    /// let unchecked = NvmeTierBuilder::new(dir.path(), 64 << 20).verify_on_read(false);
    /// let tier = unchecked.open().await?;
    /// assert_eq!(tier.get(&key).await?.unwrap().value, "iello, world", "served as it is");
    /// tier.close().await?;
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20).open().await?; // verifies
    /// assert!(tier.get(&key).await?.is_none(), "a corrupt record is a miss");
    /// assert_eq!(tier.stats().corrupted, 1);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn verify_on_read(mut self, verify: bool) -> NvmeTierBuilder {
        self.verify_on_read = verify;
        self
    }

    /// How values are compressed on write (default [`Compression::None`]: every hit is a
    /// zero-copy slice of the mapping). With LZ4 or zstd, a value below 256 KiB that the codec
    /// shrinks by at least an eighth is stored compressed and a hit of it decodes into a new
    /// buffer; larger and incompressible values stay raw (see [`Compression`]). The budget
    /// counts the bytes stored, so a compressible workload fits more entries. Records written
    /// under any setting read back under any other.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_nvme::{Compression, NvmeTierBuilder};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20)
    ///     .segment_size(1 << 20)
    ///     .compression(Compression::zstd())
    ///     .open()
    ///     .await?;
    /// let json = br#"{"user": 42, "cart": [], "theme": "dark"} "#.repeat(1_560); // 64 KiB
    /// for i in 0..32u32 {
    ///     let key = Key::new("json", i.to_le_bytes().to_vec())?;
    ///     assert!(tier.put(key, Entry::new(json.clone())).await?.is_stored());
    /// }
    /// tier.flush().await?;
    /// assert_eq!(tier.usage().bytes_used, 1 << 20, "2 MiB of values in one 1 MiB segment");
    /// let hit = tier.get(&Key::new("json", 0u32.to_le_bytes().to_vec())?).await?;
    /// assert_eq!(hit.unwrap().value, json, "decoded on read");
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> NvmeTierBuilder {
        self.compression = compression;
        self
    }

    /// Encryption at rest (default off): the value of every record of a namespace `keys` has a
    /// key for is sealed with that key (XChaCha20-Poly1305, format version 4 in
    /// `docs/format.md`), after compression, so the segment files hold its ciphertext. The
    /// namespace, the key and the metadata (times, version) stay readable: the tier needs them
    /// to index, recover and expire records without the keys. A hit of a sealed value opens
    /// into a new buffer (not zero-copy). A record that does not open (no key of its id, a
    /// wrong key, a changed byte) or a plaintext record in a sealed namespace is a miss,
    /// counted in `corrupted`, and dropped from the index; recovery does not need the keys.
    /// Give every persistent tier of a stack the same provider: a record moved in from another
    /// tier is stored as it is only if this tier can open it, and re-sealed otherwise.
    ///
    /// ```no_run
    /// # async fn demo() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use cache_core::{DerivedKeys, EncryptionKey, KeyId};
    /// use cache_l2_nvme::NvmeTierBuilder;
    /// let master = EncryptionKey::from_bytes([0x42; 32]); // from your secret store
    /// let tier = NvmeTierBuilder::new("/var/cache/myapp/nvme", 10 << 30)
    ///     .encryption(Arc::new(DerivedKeys::new(KeyId(1), master)))
    ///     .open()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn encryption(mut self, keys: Arc<dyn KeyProvider>) -> NvmeTierBuilder {
        self.encryption = Some(keys);
        self
    }

    /// Hits-based reinsertion (default off): when the oldest segment is reclaimed, entries hit
    /// since they were written are copied to the head of the log instead of being dropped
    /// (at most 90 % of a segment per reclaim), like CacheLib's and S3-FIFO's reinsertion. The
    /// index counts up to three hits per entry and a reinsertion spends one, so an entry hit
    /// often survives several reclaims without another hit (S3-FIFO's 2-bit frequency). The
    /// count is not kept across a restart beyond "hit or not".
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTierBuilder::new(dir.path(), 1 << 20).reinsert_hits(true).open().await?;
    /// assert_eq!(tier.segment_size(), 32 << 10); // 32 segments of 32 KiB: 7 values of 4 KiB each
    /// let hot = Key::new("ns", "hot")?;
    /// assert!(tier.put(hot.clone(), Entry::new(vec![7u8; 4096])).await?.is_stored());
    /// tier.wait_written().await?;
    /// assert!(tier.get(&hot).await?.is_some()); // a hit since it was written
    /// // More than one lap of the log, less than two: the hot entry's segment is reclaimed once.
    /// for i in 0..300u32 {
    ///     let key = Key::new("ns", i.to_le_bytes().to_vec())?;
    ///     assert!(tier.put(key, Entry::new(vec![1u8; 4096])).await?.is_stored());
    /// }
    /// tier.wait_written().await?;
    /// assert_eq!(tier.reinserted(), 1);
    /// assert!(tier.contains(&hot).await?, "copied to the head of the log, not dropped");
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn reinsert_hits(mut self, reinsert: bool) -> NvmeTierBuilder {
        self.reinsert_hits = reinsert;
        self
    }

    /// Direct reads (default off): a hit reads its record with `O_DIRECT` (`pread` of the
    /// 4 KiB-aligned blocks that hold it) into a buffer of its own instead of slicing the
    /// segment's mapping, so hits bypass the page cache. Choose it when the RAM above this tier
    /// (a RAM tier, the application) already caches the hot entries and the kernel keeping a
    /// second copy of recently read segment pages would only take memory from them, or to
    /// measure the device rather than the page cache. A hit then costs a device read and a copy
    /// of the aligned blocks; writes, recovery and reclaim still go through the page cache.
    ///
    /// # Errors
    /// Opening fails with [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) if the
    /// directory's filesystem does not support `O_DIRECT` (tmpfs before Linux 6.6, some FUSE
    /// and network filesystems).
    ///
    /// ```
    /// use cache_core::{Entry, ErrorKind, Key, Tier};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let builder = NvmeTierBuilder::new(dir.path(), 64 << 20);
    /// let tier = match builder.clone().direct_reads(true).open().await {
    ///     Ok(tier) => tier,
    ///     // This filesystem has no `O_DIRECT`: fall back to reads through the page cache.
    ///     Err(e) if e.kind() == ErrorKind::Invalid => builder.open().await?,
    ///     Err(e) => return Err(e),
    /// };
    /// let key = Key::new("images", "cat.png")?;
    /// assert!(tier.put(key.clone(), Entry::new(vec![9u8; 10_000])).await?.is_stored());
    /// tier.wait_written().await?; // from here on a hit reads the segment file
    /// assert_eq!(tier.get(&key).await?.unwrap().value, vec![9u8; 10_000]);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn direct_reads(mut self, direct: bool) -> NvmeTierBuilder {
        self.direct_reads = direct;
        self
    }

    /// The size of the pending-write buffer in bytes (at least 1; default: an eighth of the
    /// budget, between 1 MiB and [`DEFAULT_MAX_PENDING`]). The buffer is RAM outside the disk
    /// budget, and what it holds is readable, so it is bounded relative to the budget. With
    /// [`Durability::None`] and [`Durability::Periodic`], `put` hands its encoded record to the
    /// writer thread and returns; records wait in this buffer (and are served from it) until
    /// they are written. When it is full, `put` waits for room: nothing is dropped. A record
    /// larger than the buffer waits until it is empty.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20)
    ///     .max_pending_bytes(16 << 10)
    ///     .open()
    ///     .await?;
    /// for i in 0..64u32 {
    ///     let key = Key::new("ns", i.to_le_bytes().to_vec())?;
    ///     assert!(tier.put(key.clone(), Entry::new(vec![0u8; 4096])).await?.is_stored());
    ///     // Each record is over 4 KiB: at most three of them wait in 16 KiB.
    ///     assert!(tier.pending_writes() <= 3);
    ///     assert!(tier.get(&key).await?.is_some(), "readable while pending, too");
    /// }
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn max_pending_bytes(mut self, bytes: u32) -> NvmeTierBuilder {
        self.max_pending = Some(bytes.max(1));
        self
    }

    /// Time-to-idle (default: none): an entry neither read nor written for `idle` is gone, as
    /// if it had expired (a miss, counted in `expirations`; reclaim neither reinserts it nor
    /// hands it to the eviction sink). `get`, `get_range`, `get_record`, `put` and
    /// `put_record` restart an entry's idle time; `contains` does not. Exact on the tier's
    /// clock while the tier is open.
    ///
    /// The time of each entry's last access is kept in RAM beside the index (about 17 bytes
    /// an entry, counted in [`NvmeTier::index_memory_bytes`](crate::NvmeTier::index_memory_bytes)),
    /// not on disk: a read never becomes a write. So across a restart the idle time of every
    /// entry restarts at the open, and an idle entry leaves the index, not the log: the log
    /// reclaims its bytes in turn, and a restart before that brings it back with a fresh
    /// idle time (its value is still the latest one written for its key).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Tier, Timestamp};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000));
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20)
    ///     .time_to_idle(Duration::from_secs(60 * 60))
    ///     .clock(clock.clone())
    ///     .open()
    ///     .await?;
    /// let key = Key::new("thumbnails", "cat.png")?;
    /// assert!(tier.put(key.clone(), Entry::new(vec![0u8; 1024])).await?.is_stored());
    /// clock.advance(Duration::from_secs(59 * 60));
    /// assert!(tier.get(&key).await?.is_some(), "read within the hour: kept, and restarted");
    /// clock.advance(Duration::from_secs(60 * 60));
    /// assert!(tier.get(&key).await?.is_none(), "an hour unread: gone");
    /// assert_eq!(tier.stats().expirations, 1);
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn time_to_idle(mut self, idle: Duration) -> NvmeTierBuilder {
        self.idle = Some(idle);
        self
    }

    /// The clock used for creation times and expiry (default: the system clock).
    ///
    /// ```
    /// use cache_core::{Entry, Key, ManualClock, Tier, Timestamp};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000));
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20).clock(clock.clone()).open().await?;
    /// let key = Key::new("answers", "6 x 7")?;
    /// let entry = Entry::new("42").with_expiry(Timestamp::from_millis(61_000));
    /// assert!(tier.put(key.clone(), entry).await?.is_stored());
    /// let hit = tier.get(&key).await?.unwrap();
    /// assert_eq!(hit.meta.created_at, Timestamp::from_millis(1_000), "stamped by the clock");
    /// clock.set(Timestamp::from_millis(61_000));
    /// assert!(tier.get(&key).await?.is_none(), "expired at 61 s on the tier's clock");
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> NvmeTierBuilder {
        self.clock = clock;
        self
    }

    /// The pending buffer's size: as configured, or an eighth of the budget within 1 MiB ..=
    /// [`DEFAULT_MAX_PENDING`].
    pub(crate) fn effective_max_pending(&self) -> u32 {
        self.max_pending.unwrap_or_else(|| {
            let eighth = u32::try_from(self.capacity / 8).unwrap_or(u32::MAX);
            eighth.clamp(1 << 20, DEFAULT_MAX_PENDING)
        })
    }

    /// The segment size derived from the configuration and the budget (and the check of the
    /// other settings).
    pub(crate) fn effective_segment_size(&self) -> Result<u64, NvmeError> {
        if self.capacity < MIN_SEGMENT_SIZE {
            return Err(NvmeError::Config(format!(
                "the budget of {} bytes is below the minimum of {MIN_SEGMENT_SIZE}",
                self.capacity
            )));
        }
        if let Some(why) = self.durability.invalid_reason() {
            return Err(NvmeError::Config(why));
        }
        if self.segment_size < MIN_SEGMENT_SIZE || self.segment_size > MAX_SEGMENT_SIZE {
            return Err(NvmeError::Config(format!(
                "segment size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        // The index keeps segment ids modulo 2^16 and needs live ids to span < 2^15 values:
        // segments are at least budget / 2^14, so a full budget needs at most 2^14 of them.
        let floor = self.capacity.div_ceil(1 << 14).div_ceil(4096) * 4096;
        let size = self
            .segment_size
            .min(self.capacity / SEGMENTS_PER_BUDGET)
            .max(MIN_SEGMENT_SIZE)
            .max(floor)
            .min(self.capacity)
            .min(MAX_SEGMENT_SIZE);
        Ok(size / 4096 * 4096)
    }

    /// Opens the tier on a blocking thread (it takes the lock, loads the snapshot or scans).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](cache_core::ErrorKind::Invalid) for a bad configuration,
    /// [`ErrorKind::Unavailable`](cache_core::ErrorKind::Unavailable) if another opener holds the
    /// directory, [`ErrorKind::Io`](cache_core::ErrorKind::Io) if it cannot be created or read.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let key = Key::new("images", "cat.png")?;
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20).open().await?;
    /// assert!(tier.recovery_report().entries == 0 && !tier.recovery_report().from_snapshot);
    /// assert!(tier.put(key.clone(), Entry::new("meow")).await?.is_stored());
    /// tier.close().await?; // writes the index snapshot
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20).open().await?;
    /// assert!(tier.recovery_report().from_snapshot);
    /// assert_eq!(tier.get(&key).await?.unwrap().value, "meow");
    /// tier.close().await?;
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub async fn open(self) -> Result<NvmeTier> {
        match tokio::task::spawn_blocking(move || self.open_blocking()).await {
            Ok(result) => result,
            Err(e) => Err(cache_core::Error::new(
                cache_core::ErrorKind::Internal,
                crate::error::TIER,
                format!("the open task failed: {e}"),
            )),
        }
    }

    /// Opens the tier on the calling thread; see [`NvmeTierBuilder::open`].
    ///
    /// # Errors
    /// As for [`NvmeTierBuilder::open`].
    ///
    /// ```
    /// use cache_core::{ErrorKind, Tier};
    /// use cache_l2_nvme::NvmeTierBuilder;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let tier = NvmeTierBuilder::new(dir.path(), 64 << 20).open_blocking()?; // no runtime needed
    /// let err = NvmeTierBuilder::new(dir.path(), 64 << 20).open_blocking().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unavailable, "one opener per directory");
    /// # tokio::runtime::Runtime::new().unwrap().block_on(tier.close())?;
    /// # Ok::<(), cache_core::Error>(())
    /// ```
    pub fn open_blocking(self) -> Result<NvmeTier> {
        NvmeTier::open(self)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cache_core::ErrorKind;

    use super::{Durability, MIN_SEGMENT_SIZE, NvmeTierBuilder};

    #[test]
    fn bad_configurations_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let open = |b: NvmeTierBuilder| b.open_blocking().expect_err("must be refused");
        let cases = [
            (
                NvmeTierBuilder::new(dir.path(), 64 << 20)
                    .durability(Durability::Periodic(Duration::ZERO)),
                "periodic sync",
            ),
            (NvmeTierBuilder::new(dir.path(), MIN_SEGMENT_SIZE - 1), "budget"),
            (NvmeTierBuilder::new(dir.path(), 64 << 20).segment_size(0), "segment size"),
        ];
        for (builder, names) in cases {
            let err = open(builder);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
            assert!(err.to_string().contains(names), "{err}");
        }
        // Nothing was created for a refused configuration to lock.
        NvmeTierBuilder::new(dir.path(), 64 << 20).open_blocking().unwrap();
    }

    #[test]
    fn the_pending_buffer_is_bounded_by_the_budget() {
        let b = |budget: u64| NvmeTierBuilder::new("unused", budget);
        assert_eq!(b(1 << 20).effective_max_pending(), 1 << 20, "at least 1 MiB");
        assert_eq!(b(128 << 20).effective_max_pending(), 16 << 20, "an eighth");
        assert_eq!(b(4 << 30).effective_max_pending(), 64 << 20, "at most 64 MiB");
        assert_eq!(b(128 << 20).max_pending_bytes(4096).effective_max_pending(), 4096);
    }
}
