//! `cache-tiered`: RAM → disk → object storage behind one API.
//!
//! [`TieredCache`] holds an ordered list of tiers (any [`cache_core::Tier`], fastest first).
//! - **get** goes top-down; a hit below the top is promoted to the tiers above in the
//!   background, as the promotion policy says. An expired entry is never served.
//! - **put** writes each tier by its [`WritePolicy`] (through, behind, on eviction, skip) and
//!   reports an explicit outcome per tier ([`PutReport`]): nothing is dropped silently.
//! - **demotion**: a tier written `OnEviction` receives what the tier above evicts, except
//!   entries that came from it unchanged (clean) and expired ones. Demotions are queued and
//!   written in batches (`put_many`); until its demotion is written an evicted entry is still
//!   served from the queue, so a slow disk never turns an eviction into a miss.
//! - **demotion filter** between the top tier and an `OnEviction` tier below it
//!   ([`DemotionFilter`](policy::DemotionFilter)): S3-FIFO's second chance (only entries read
//!   while on top, or seen again while a ghost of recently dropped keys remembers them, go
//!   down), W-TinyLFU's frequency test (only entries requested more often than what the tier
//!   below lets go; [`DemotionFilter::tiny_lfu`](policy::DemotionFilter::tiny_lfu)), or either.
//! - **admission**: per tier, [`SizeRange`](policy::SizeRange),
//!   [`FrequencyFilter`](policy::FrequencyFilter), [`RateLimit`](policy::RateLimit) or your own.
//! - **single-flight**: [`TieredCache::get_or_load`] runs one loader per missing key.
//! - **serve-stale** ([`ServeStale`]): `get_or_load` may serve an entry past its freshness at
//!   once while one loader refreshes it (stale-while-revalidate), or when the loader fails
//!   (fail-safe), within a grace period; both are counted in [`TieredStats`].
//! - **time-to-idle**: give each tier of the stack that has one (the RAM and NVMe tiers) the
//!   same `time_to_idle`. An idle entry then leaves every tier and is not demoted; a move
//!   between tiers (a demotion, a promotion) counts as an access in the tier it enters, so an
//!   entry demoted before it went idle outlives its last read by less than twice the
//!   time-to-idle in a RAM → disk stack. The RocksDB, object and Redis tiers have no
//!   time-to-idle: an entry there stays until its TTL or the budget removes it.
//! - **quotas per tenant** ([`PooledCache`]): caches side by side, each with its own budget and
//!   namespaces, so one tenant's writes evict only its own entries.
//! - **outages**: a tier that fails or times out is skipped and counted (or, in strict mode,
//!   the error is returned).
//! - **ordering**: removals and writes cannot be undone by a concurrent promotion, demotion or
//!   queued write (see [Ordering against stale values](#ordering-against-stale-values)).
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Entry, Key, Tier};
//! use cache_l1::MemoryTier;
//! use cache_tiered::{TierOptions, TieredCache, WritePolicy};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = TieredCache::builder()
//!     .tier(MemoryTier::builder(64 << 20).build())
//!     .tier(TierOptions::new(MemoryTier::builder(1 << 30).build()).write(WritePolicy::OnEviction))
//!     .build()?;
//! let key = Key::new("agent/memory", "session-7")?;
//! cache.put(key.clone(), Entry::new("remembered")).await?;
//! assert_eq!(cache.get(&key).await?.unwrap().value, "remembered");
//! let v = cache.get_or_load(Key::new("agent/memory", "session-8")?, || async {
//!     Ok(Some(Entry::new("loaded once")))
//! }).await?;
//! assert!(v.is_some());
//! # Ok::<(), cache_core::Error>(()) }).unwrap();
//! ```

//!
//! # Choosing the policies of a RAM → disk stack
//!
//! The defaults (RAM with moka's TinyLFU, every eviction demoted, every lower hit promoted)
//! keep whatever the RAM tier lets go. For the best hit ratio at a given number of bytes, give
//! the stack the shape of S3-FIFO and W-TinyLFU: the RAM tier is the small queue (plain LRU,
//! about a tenth of the bytes), the disk tier the main queue (FIFO with hit-based
//! reinsertion), and the filter between them ([`DemotionFilter::tiny_lfu`](policy::DemotionFilter::tiny_lfu))
//! keeps one-hit wonders out of the disk tier; lower hits stay where they are.
//!
//! ```
//! use cache_l1::{EvictionPolicy, MemoryTier};
//! use cache_tiered::{
//!     TierOptions, TieredCache, WritePolicy,
//!     policy::{DemotionFilter, PromoteNever},
//! };
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = TieredCache::builder()
//!     .tier(MemoryTier::builder(16 << 20).eviction_policy(EvictionPolicy::Lru).build())
//!     .tier(TierOptions::new(MemoryTier::builder(256 << 20).build()).write(WritePolicy::OnEviction))
//!     .demotion_filter(DemotionFilter::tiny_lfu())
//!     .promotion(PromoteNever)
//!     .build()?;
//! # let _ = cache;
//! # Ok::<(), cache_core::Error>(()) }).unwrap();
//! ```
//!
//! (With the NVMe tier below, also turn on its `reinsert_hits`.) `docs/benchmarks.md` has the
//! hit ratios of both configurations next to each tier alone and the published policies.
//!
//! # Ordering against stale values
//!
//! Every key maps to one of 16,384 counters (stripes). `put`, `remove` and `clear_namespace` bump
//! the key's counter (or the global clear epoch) before they touch any tier and again after the
//! last tier, and count themselves as in flight in between. Background writes that copy a value
//! found earlier — promotions, demotions and write-behind jobs — take a snapshot of the counters
//! before the value was read, and check before and after their write that the counters are
//! unchanged and no foreground write, removal or clear is in flight: if one ran or is running, the
//! background write is skipped or undone. So an older value never overwrites a newer one and a
//! removed value is never resurrected; the price of a collision on a stripe is a miss, never a
//! wrong value. Removals go bottom-up, so a reader that still finds the value in an upper tier
//! finds it only while the removal is in progress.
//!
//! A tier may evict the very entry a put is storing (moka's admission policy turns newcomers away).
//! Its snapshot is taken while that put is in flight, so it records the entry's identity (the key,
//! the value's allocation and length, and the metadata); the demotion goes ahead if exactly one
//! write ran on the stripe since, and it was the put of that entry. A demotion waiting in its queue
//! is served by `get` under the same check, so an evicted entry is never invisible while it moves
//! down.

/// The README's examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "l1", feature = "nvme", feature = "object"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

mod builder;
mod inherent;
pub mod policy;
mod pooled;
pub mod prelude;
mod stats;
mod tiered;

pub use cache_core;
/// The RAM tier (`cache-l1`).
#[cfg(feature = "l1")]
pub use cache_l1 as l1;
/// The local-disk tier (`cache-l2-nvme`).
#[cfg(feature = "nvme")]
pub use cache_l2_nvme as nvme;
/// The object-storage tier (`cache-l3-object`).
#[cfg(feature = "object")]
pub use cache_l3_object as object;

pub use crate::{
    builder::{TierOptions, TieredBuilder},
    policy::{ServeStale, WritePolicy},
    pooled::{PoolStats, PooledBuilder, PooledCache},
    stats::{TierReport, TieredStats},
    tiered::{FrontTiers, PutReport, TierWrite, TieredCache},
};
