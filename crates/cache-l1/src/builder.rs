//! Configuration of the RAM tier.

use std::{sync::Arc, time::Duration};

use cache_core::{Clock, EvictionSink, SystemClock};

use crate::tier::MemoryTier;

/// Bytes charged per entry on top of its key and value: moka's node, our key and metadata.
///
/// An estimate (moka's per-entry cost is close to this on 64-bit targets); it keeps a cache of
/// many tiny entries from exceeding its RAM budget by a large factor.
pub const ENTRY_OVERHEAD: u64 = 128;

/// Builds a [`MemoryTier`].
#[derive(Debug)]
pub struct MemoryTierBuilder {
    pub(crate) capacity_bytes: u64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sink: Option<Arc<dyn EvictionSink>>,
    pub(crate) initial_entries: usize,
    pub(crate) policy: EvictionPolicy,
    pub(crate) hash_seed: Option<u64>,
    pub(crate) name: &'static str,
    pub(crate) idle: Option<Duration>,
}

/// How the RAM tier picks what to evict, and what to admit when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// moka's default: a newcomer is admitted only if it is requested more often (by a
    /// frequency sketch) than the entry it would evict; the rest is LRU. Good on its own for
    /// skewed, frequency-driven workloads; it turns away keys read twice at a short distance.
    #[default]
    TinyLfu,
    /// Plain LRU: every write is admitted and the least recently used entry leaves. The right
    /// front for a disk tier that filters what it keeps (an S3-FIFO-style small queue).
    Lru,
}

impl MemoryTierBuilder {
    pub(crate) fn new(capacity_bytes: u64) -> MemoryTierBuilder {
        MemoryTierBuilder {
            capacity_bytes,
            clock: Arc::new(SystemClock),
            sink: None,
            initial_entries: 0,
            policy: EvictionPolicy::TinyLfu,
            hash_seed: None,
            name: crate::tier::NAME,
            idle: None,
        }
    }

    /// The clock used for expiry (default: the system clock).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Tier, Timestamp};
    /// use cache_l1::MemoryTier;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000));
    /// let l1 = MemoryTier::builder(64 << 20).clock(clock.clone()).build();
    /// let key = Key::new("answers", "6 x 7")?;
    /// let entry = Entry::new("42").with_ttl(&*clock, Duration::from_secs(60));
    /// assert!(l1.put(key.clone(), entry).await?.is_stored());
    /// clock.advance(Duration::from_secs(59));
    /// assert!(l1.get(&key).await?.is_some());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(l1.get(&key).await?.is_none(), "expired at 60 s on the tier's clock");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> MemoryTierBuilder {
        self.clock = clock;
        self
    }

    /// Where entries evicted for size or expiry go (e.g. a demotion queue). Explicit removals and
    /// replacements are not reported.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cache_core::{Entry, Evicted, EvictionCause, EvictionSink, Key, Tier};
    /// use cache_l1::MemoryTier;
    ///
    /// #[derive(Debug, Default)]
    /// struct Demotions(Mutex<Vec<Evicted>>);
    /// impl EvictionSink for Demotions {
    ///     fn on_evict(&self, evicted: Evicted) {
    ///         self.0.lock().unwrap().push(evicted); // a real sink queues it and returns
    ///     }
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let sink = Arc::new(Demotions::default());
    /// let l1 = MemoryTier::builder(16 << 10).eviction_sink(sink.clone()).build();
    /// for i in 0..32u32 {
    ///     let key = Key::new("ns", i.to_le_bytes().to_vec())?;
    ///     assert!(l1.put(key, Entry::new(vec![0u8; 1024])).await?.is_stored());
    /// }
    /// l1.flush().await?; // runs moka's pending evictions now
    /// let evicted = sink.0.lock().unwrap();
    /// assert!(!evicted.is_empty(), "32 KiB of values do not fit in 16 KiB");
    /// assert!(evicted.iter().all(|e| e.cause == EvictionCause::Capacity));
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn eviction_sink(mut self, sink: Arc<dyn EvictionSink>) -> MemoryTierBuilder {
        self.sink = Some(sink);
        self
    }

    /// Pre-sizes the hash table for this many entries.
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l1::MemoryTier;
    ///
    /// let l1 = MemoryTier::builder(64 << 20).initial_entries(100_000).build();
    /// // Room in the table, not a limit: the budget is still counted in bytes.
    /// assert_eq!(l1.usage().capacity, Some(64 << 20));
    /// assert_eq!(l1.usage().entries, Some(0));
    /// ```
    #[must_use]
    pub fn initial_entries(mut self, n: usize) -> MemoryTierBuilder {
        self.initial_entries = n;
        self
    }

    /// The eviction and admission policy (default: [`EvictionPolicy::TinyLfu`]).
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l1::{ENTRY_OVERHEAD, EvictionPolicy, MemoryTier};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // Room for two entries: each weighs the overhead, "ns", a 1-byte key and 100 bytes.
    /// let l1 = MemoryTier::builder(2 * (ENTRY_OVERHEAD + 103))
    ///     .eviction_policy(EvictionPolicy::Lru)
    ///     .build();
    /// let [a, b, c] = ["a", "b", "c"].map(|k| Key::new("ns", k).unwrap());
    /// for key in [&a, &b] {
    ///     assert!(l1.put(key.clone(), Entry::new(vec![0u8; 100])).await?.is_stored());
    ///     l1.flush().await?; // applies moka's pending work: one step at a time
    /// }
    /// assert!(l1.get(&a).await?.is_some()); // `b` is now the least recently used
    /// l1.flush().await?;
    /// assert!(l1.put(c.clone(), Entry::new(vec![0u8; 100])).await?.is_stored());
    /// l1.flush().await?;
    /// assert!(l1.contains(&a).await? && l1.contains(&c).await?, "LRU admits the newcomer");
    /// assert!(!l1.contains(&b).await?);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn eviction_policy(mut self, policy: EvictionPolicy) -> MemoryTierBuilder {
        self.policy = policy;
        self
    }

    /// Seeds the hash of keys inside the tier (default: a random seed per tier). moka's
    /// hash table and its TinyLFU frequency sketch use this hash, so with the default two
    /// identical runs may admit and evict differently; a fixed seed makes a single-threaded
    /// replay reproducible. Keys are already BLAKE3 digests: the seed keeps their bucket
    /// positions unpredictable to someone choosing keys.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Result, Tier};
    /// use cache_l1::MemoryTier;
    ///
    /// /// The keys a 16 KiB tier keeps of a fixed sequence of puts and gets.
    /// async fn replay(seed: u64) -> Result<Vec<u32>> {
    ///     let l1 = MemoryTier::builder(16 << 10).hash_seed(seed).build();
    ///     let key = |i: u32| Key::new("replay", i.to_le_bytes().to_vec());
    ///     for i in 0..400 {
    ///         assert!(l1.put(key(i)?, Entry::new(vec![0u8; 1024])).await?.is_stored());
    ///         l1.flush().await?; // moka's pending work, now: the same steps on every run
    ///         let _ = l1.get(&key(i / 2)?).await?;
    ///         l1.flush().await?;
    ///     }
    ///     let mut kept = Vec::new();
    ///     for i in 0..400 {
    ///         if l1.contains(&key(i)?).await? {
    ///             kept.push(i);
    ///         }
    ///     }
    ///     Ok(kept)
    /// }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // With the default random seed, two runs may keep different keys.
    /// assert_eq!(replay(7).await?, replay(7).await?);
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn hash_seed(mut self, seed: u64) -> MemoryTierBuilder {
        self.hash_seed = Some(seed);
        self
    }

    /// Names the tier (default `"l1"`): its errors, its stats, its metrics' `tier` label and
    /// the reports of a `TieredCache` carry the name, so two RAM tiers of one stack (sessions
    /// and embeddings, say) are told apart. A literal, or a name from configuration leaked once
    /// per tier (`Box::leak(name.into_boxed_str())`).
    ///
    /// ```
    /// use cache_core::Tier;
    /// use cache_l1::MemoryTier;
    ///
    /// let sessions = MemoryTier::builder(64 << 20).name("sessions").build();
    /// assert_eq!(sessions.name(), "sessions");
    /// assert_eq!(MemoryTier::builder(64 << 20).build().name(), "l1");
    /// ```
    #[must_use]
    pub fn name(mut self, name: &'static str) -> MemoryTierBuilder {
        self.name = name;
        self
    }

    /// Time-to-idle (default: none): an entry neither read nor written for `idle` is gone, as
    /// if it had expired (a miss, counted in `expirations`, and handed to the eviction sink as
    /// expired, so a tiered cache does not demote it). `get`, `get_or_load` and `put` restart
    /// an entry's idle time; `contains` does not. An entry's own expiry still applies within
    /// it. Exact on the tier's clock: with the system clock moka's timer also frees idle
    /// entries nobody reads; with another clock they are dropped when read, or evicted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Entry, Key, ManualClock, Timestamp, Tier};
    /// use cache_l1::MemoryTier;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000));
    /// let sessions = MemoryTier::builder(64 << 20)
    ///     .time_to_idle(Duration::from_secs(30 * 60))
    ///     .clock(clock.clone())
    ///     .build();
    /// let key = Key::new("sessions", "user-42")?;
    /// sessions.put(key.clone(), Entry::new("cart: 3 items")).await?;
    /// clock.advance(Duration::from_secs(29 * 60));
    /// assert!(sessions.get(&key).await?.is_some(), "read within 30 minutes: kept, and restarted");
    /// clock.advance(Duration::from_secs(30 * 60));
    /// assert!(sessions.get(&key).await?.is_none(), "30 minutes unread: gone");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn time_to_idle(mut self, idle: Duration) -> MemoryTierBuilder {
        self.idle = Some(idle);
        self
    }

    /// Builds the tier.
    ///
    /// ```
    /// use cache_core::{Entry, Key, Tier};
    /// use cache_l1::MemoryTier;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let l1 = MemoryTier::builder(64 << 20).build();
    /// assert_eq!((l1.name(), l1.usage().capacity), ("l1", Some(64 << 20)));
    /// let key = Key::new("answers", "6 x 7")?;
    /// assert!(l1.put(key.clone(), Entry::new("42")).await?.is_stored());
    /// assert_eq!(l1.get(&key).await?.unwrap().value, "42");
    /// # Ok::<(), cache_core::Error>(()) }).unwrap();
    /// ```
    pub fn build(self) -> MemoryTier {
        MemoryTier::from_builder(self)
    }
}

/// Hashes a [`Key`](cache_core::Key) (which feeds this hasher the first 8 bytes of its
/// BLAKE3 digest) by mixing it with a seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeededKeyHash {
    seed: u64,
}

impl SeededKeyHash {
    pub(crate) fn new(seed: Option<u64>) -> SeededKeyHash {
        use std::hash::{BuildHasher as _, Hasher as _};
        let seed = seed.unwrap_or_else(|| std::hash::RandomState::new().build_hasher().finish());
        SeededKeyHash { seed }
    }
}

impl std::hash::BuildHasher for SeededKeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

/// See [`SeededKeyHash`].
#[derive(Debug)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finaliser: every input bit reaches every output bit.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23);
    }
}
