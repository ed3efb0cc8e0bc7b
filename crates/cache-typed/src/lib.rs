//! Typed keys and values over any tier of the tiered cache.
//!
//! The tiers store bytes. [`TypedCache<K, V, C, T>`](TypedCache) gives one namespace of a tier
//! (any [`Tier`](cache_core::Tier), a `TieredCache` included) typed keys and values:
//!
//! - **Keys** (`K: CacheKey`) become key bytes through a documented, stable encoding
//!   ([`CacheKey`]), the same in every process and version, so persistent tiers and other
//!   nodes find the entries again. It is not `std::hash::Hash`.
//! - **Values** go through a [`Codec`]: [`Postcard`] (compact binary, any serde type),
//!   [`Json`] (readable by other languages), or [`Rkyv`], whose hits are read in place: on
//!   the NVMe tier, `&Archived<V>` points into the memory-mapped segment, with no copy and no
//!   allocation ([`ArchivedValue`]).
//! - **Versioning**: every entry carries its codec's tag and the cache's schema version in
//!   the entry's user tag ([`EntryMeta::version`](cache_core::EntryMeta::version)); an entry
//!   of another codec, codec version or schema is a miss, counted as [`TypedStats::stale`],
//!   never a decode error. The typed layer owns the user tag of the entries it writes.
//!
//! # Example: zero-copy reads from the disk tier
//!
//! ```
//! use std::sync::Arc;
//! use cache_core::Tier;
//! use cache_l2_nvme::NvmeTier;
//! use cache_typed::{Rkyv, TypedCache};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
//! struct KvBlock { layer: u32, values: Vec<f32> }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! let disk = Arc::new(NvmeTier::builder(dir.path(), 64 << 20).open().await?);
//! let blocks: TypedCache<(u64, u32), KvBlock, Rkyv, _> =
//!     TypedCache::new(disk.clone(), "kv-cache", Rkyv::new())?;
//! blocks.put(&(42, 0), &KvBlock { layer: 0, values: vec![0.5; 1024] }).await?;
//! disk.flush().await?;
//! let hit = blocks.get(&(42, 0)).await?.expect("just written");
//! let sum: f32 = hit.values.iter().map(|v| v.to_native()).sum(); // read in the mapping
//! assert_eq!((hit.layer.to_native(), sum), (0, 512.0));
//! # disk.close().await?;
//! # Ok::<(), cache_core::Error>(()) }).unwrap();
//! ```

mod codec;
mod key;
mod typed;

pub use crate::{
    codec::{ArchivedValue, Codec, CodecError, CodecTag, Json, Postcard, Rkyv, RkyvValue},
    key::CacheKey,
    typed::{TypedCache, TypedStats},
};
