//! The contract of the tiered cache: keys, entries, the record format, the [`Tier`] trait,
//! errors, time, statistics and policy hooks.
//!
//! This crate does no IO and depends on no runtime or backing store. Tier crates
//! (`cache-l1`, `cache-l2-nvme`, `cache-l2-rocks`, `cache-l3-object`) implement [`Tier`];
//! `cache-tiered` composes them. With the `testkit` feature it also ships the conformance suite
//! every tier runs.
//!
//! # Example: implementing a tier
//!
//! A toy tier over a mutex-guarded map (no budget, so it reports no capacity):
//!
//! ```
//! use std::{collections::HashMap, sync::{Arc, Mutex}};
//! use cache_core::{
//!     async_trait, Clock, Entry, Error, Key, Namespace, PutOutcome, Rejection, Result,
//!     StatsSnapshot, SystemClock, Tier, TierStats, Usage,
//! };
//!
//! #[derive(Debug)]
//! struct MapTier { map: Mutex<HashMap<Key, Entry>>, stats: TierStats }
//!
//! #[async_trait]
//! impl Tier for MapTier {
//!     fn name(&self) -> &'static str { "map" }
//!     async fn get(&self, key: &Key) -> Result<Option<Entry>> {
//!         let now = SystemClock.now();
//!         let hit = self.map.lock().unwrap().get(key).filter(|e| !e.is_expired(now)).cloned();
//!         if hit.is_some() { self.stats.hit() } else { self.stats.miss() }
//!         Ok(hit)
//!     }
//!     async fn put(&self, key: Key, mut entry: Entry) -> Result<PutOutcome> {
//!         let now = SystemClock.now();
//!         if entry.is_expired(now) { return Ok(PutOutcome::Rejected(Rejection::Expired)); }
//!         entry.meta.stamp(now);
//!         self.map.lock().unwrap().insert(key, entry);
//!         self.stats.insert();
//!         Ok(PutOutcome::Stored)
//!     }
//!     async fn remove(&self, key: &Key) -> Result<()> {
//!         self.map.lock().unwrap().remove(key);
//!         Ok(())
//!     }
//!     async fn clear_namespace(&self, ns: &Namespace) -> Result<()> {
//!         self.map.lock().unwrap().retain(|k, _| k.namespace() != ns);
//!         Ok(())
//!     }
//!     fn usage(&self) -> Usage { Usage::default() }
//!     fn stats(&self) -> StatsSnapshot { self.stats.snapshot(self.usage()) }
//!     async fn flush(&self) -> Result<()> { Ok(()) }
//!     async fn close(&self) -> Result<()> { Ok(()) }
//! }
//!
//! # futures_executor(async {
//! let tier = MapTier { map: Mutex::default(), stats: TierStats::new("map") };
//! let key = Key::new("docs", "hello")?;
//! tier.put(key.clone(), Entry::new("world")).await?;
//! assert_eq!(tier.get(&key).await?.unwrap().value, "world");
//! # Ok::<(), Error>(()) }).unwrap();
//! # fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod clock;
mod compression;
mod durability;
mod encryption;
mod entry;
mod error;
mod key;
mod ledger;
mod policy;
mod record;
mod stats;
mod tier;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use async_trait::async_trait;

pub use crate::{
    clock::{Clock, ManualClock, SystemClock, Timestamp, system_clock},
    compression::{COMPRESS_MIN_VALUE, Codec, Compression},
    durability::{Durability, MIN_SYNC_INTERVAL},
    encryption::{DerivedKeys, EncryptionKey, KeyId, KeyProvider, NamespaceKeys, SEAL_OVERHEAD},
    entry::{Entry, EntryMeta},
    error::{Error, ErrorKind, Result},
    key::{Key, KeyHash, MAX_KEY_LEN, MAX_NAMESPACE_LEN, Namespace, NamespaceId},
    ledger::{Ledger, Victim},
    policy::{Evicted, EvictionCause, EvictionSink, PutOutcome, Rejection},
    record::{
        CHUNK_SHIFT, CHUNKED_MIN_VALUE, FLAG_LZ4, FLAG_TOMBSTONE, FLAG_ZSTD, HEADER_LEN,
        RECORD_MAGIC, RECORD_VERSION, RECORD_VERSION_CHUNKED, RECORD_VERSION_COMPRESSED,
        RECORD_VERSION_SEALED, Record, RecordFormat, RecordHead, RecordHeader, RecordParts,
        RecordWriter, Verify,
    },
    stats::{StatsSnapshot, TierStats, Usage},
    tier::{
        Tier, ValueStream, check_open, check_range, check_record_key, collect_value,
        reject_expired, slice_range,
    },
};
