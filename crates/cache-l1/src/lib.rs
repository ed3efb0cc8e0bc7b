//! `cache-l1`: the RAM tier of the tiered cache, on [`moka`].
//!
//! [`MemoryTier`] is bounded in bytes (a weigher counts key, value and a fixed per-entry
//! overhead), expires entries at their own expiry time (through moka's `Expiry` when the clock
//! runs in real time; with any other clock, such as a test's manual clock, on read only), feeds what it
//! evicts for size or expiry to an [`EvictionSink`](cache_core::EvictionSink) (so a tiered cache
//! can demote it), coalesces concurrent loads of one missing key, and counts hits and misses
//! (moka has no counters of its own). With [`MemoryTierBuilder::time_to_idle`] an entry
//! neither read nor written for that long is gone, exactly, on the tier's clock.
//!
//! The tier runs on moka's `sync::Cache`: none of its operations waits for IO, so its async
//! methods complete without yielding, and they pay less per call than moka's `future::Cache`
//! would. A write that finds moka's write log full runs moka's pending tasks or retries within
//! microseconds, on the caller's thread.
//!
//! Each tier runs one small thread, `cache-l1-maintenance`, that runs moka's pending tasks
//! every 20 ms. moka otherwise runs them only inside callers' operations, so after a burst of
//! writes with no caller behind it the evictions it owes (and the demotions a tiered cache makes
//! of them) would wait. The thread stops at `close` or when the tier is dropped.
//!
//! Writes pay for moka's eviction listener, which the tier needs to count evictions and feed the
//! sink: moka takes a per-key lock on every write when a listener is set. The cost against raw
//! moka (both its APIs), of gets that hit and of writes, is measured in `docs/benchmarks.md`
//! (the notes under `compare`; `cargo xtask bench --micro`).
//!
//! It implements [`cache_core::Tier`] and can be used on its own:
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Entry, Key, SystemClock, Tier};
//! use cache_l1::MemoryTier;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let l1 = MemoryTier::builder(64 * 1024 * 1024).build();
//! let key = Key::new("llm/answers", "what is 6 x 7?")?;
//! l1.put(key.clone(), Entry::new("42").with_ttl(&SystemClock, Duration::from_secs(600))).await?;
//! assert_eq!(l1.get(&key).await?.unwrap().value, "42");
//! // Single-flight: concurrent callers for a missing key run the loader once.
//! let other = Key::new("llm/answers", "what is 2 + 2?")?;
//! let entry = l1.get_or_load(other, || async { Ok(Some(Entry::new("4"))) }).await?;
//! assert_eq!(entry.unwrap().value, "4");
//! # Ok::<(), cache_core::Error>(()) }).unwrap();
//! ```

mod builder;
mod tier;

pub use crate::{
    builder::{ENTRY_OVERHEAD, EvictionPolicy, MemoryTierBuilder},
    tier::{MemoryTier, entry_weight},
};
