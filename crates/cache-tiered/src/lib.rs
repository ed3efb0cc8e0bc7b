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
//! - **admission**: per tier, [`SizeRange`](policy::SizeRange),
//!   [`FrequencyFilter`](policy::FrequencyFilter), [`RateLimit`](policy::RateLimit) or your own.
//! - **single-flight**: [`TieredCache::get_or_load`] runs one loader per missing key.
//! - **outages**: a tier that fails or times out is skipped and counted (or, in strict mode,
//!   the error is returned).
//! - **ordering**: removals and writes cannot be undone by a concurrent promotion, demotion or
//!   queued write (see the `tiered` module docs).
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

/// The README's examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "l1", feature = "nvme", feature = "object"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

mod builder;
pub mod policy;
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
    policy::WritePolicy,
    stats::{TierReport, TieredStats},
    tiered::{PutReport, TierWrite, TieredCache},
};
