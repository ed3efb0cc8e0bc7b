//! What a program using the stack needs, in one import: `use cache_tiered::prelude::*;`.
//!
//! The contract's value types ([`Entry`], [`EntryMeta`], [`Key`], [`Namespace`], [`Error`],
//! [`ErrorKind`], [`Result`], [`PutOutcome`], [`ValueStream`]), the persistent tiers' settings ([`Durability`],
//! [`Compression`], and for encryption at rest [`KeyProvider`], [`NamespaceKeys`],
//! [`DerivedKeys`], [`EncryptionKey`], [`KeyId`]), the composition ([`TieredCache`], [`TierOptions`],
//! [`WritePolicy`], [`PutReport`]) and the builders of the tiers this crate re-exports
//! (by feature). It leaves out the [`Tier`](cache_core::Tier) trait: [`TieredCache`]'s common
//! calls are inherent methods, and the tiers' builders need no trait either.
//!
//! ```
//! use cache_tiered::prelude::*;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = TieredCache::builder().tier(MemoryTier::builder(1 << 20).build()).build()?;
//! cache.put(Key::new("docs", "k")?, Entry::new("v")).await?;
//! cache.close().await?;
//! # Ok::<(), Error>(()) }).unwrap();
//! ```

pub use cache_core::{
    Compression, DerivedKeys, Durability, EncryptionKey, Entry, EntryMeta, Error, ErrorKind, Key,
    KeyId, KeyProvider, Namespace, NamespaceKeys, PutOutcome, Result, ValueStream,
};
#[cfg(feature = "l1")]
pub use cache_l1::MemoryTier;
#[cfg(feature = "nvme")]
pub use cache_l2_nvme::{NvmeTier, NvmeTierBuilder};
#[cfg(feature = "s3")]
pub use cache_l3_object::S3Config;
#[cfg(feature = "object")]
pub use cache_l3_object::{ObjectTier, ObjectTierBuilder};

pub use crate::{PutReport, TierOptions, TieredCache, WritePolicy};
