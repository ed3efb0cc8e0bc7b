//! `cache-object-store`: a drop-in read-through cache for any `object_store::ObjectStore`.
//!
//! [`CachedObjectStore`] implements [`ObjectStore`](object_store::ObjectStore) around an origin
//! store (S3, GCS, Azure, HTTP, a local directory) and a cache [`Tier`](cache_core::Tier) —
//! usually a `TieredCache` (RAM → NVMe, optionally our object tier as a shared second level),
//! or a single RAM or disk tier. Code that reads through `Arc<dyn ObjectStore>` (DataFusion,
//! Lance, SlateDB, Delta and Iceberg readers) gets the cache by swapping the store it is given.
//!
//! # What it promises
//!
//! - **Byte-identical reads.** `get`, `get_opts`, `get_range`, `get_ranges` and `head` return
//!   what the origin would: the same bytes, range, metadata (size, ETag, version, last
//!   modified) and attributes. Ranges past the end are cut as the origin cuts them; ranges the
//!   object cannot satisfy, conditional requests (`if_match`, `if_none_match`,
//!   `if_modified_since`, `if_unmodified_since`) and versioned ones go to the origin as they
//!   are, so their errors and semantics are the origin's own.
//! - **Chunks.** A range is mapped to fixed-size aligned chunks (default 4 MiB, 64 KiB to
//!   64 MiB); each chunk is one cache entry and one ranged GET at the origin. Concurrent
//!   readers of a missing chunk share one fetch (single-flight), whatever the tier.
//! - **Keys bound to the object's identity.** Chunk keys contain the location and the ETag
//!   (or version, or size and modification time when the store has neither), and every fetch
//!   carries `If-Match` with that ETag, so bytes of a newer object are never cached under an
//!   older identity. A changed object gets new keys; its old chunks are unreachable.
//! - **Re-check policy** ([`Revalidate`]): the identity is checked at the origin (one HEAD)
//!   on every read (the default: a changed object is never served stale), at most once per TTL,
//!   or never; objects under an [immutable prefix](CachedObjectStoreBuilder::immutable_prefix)
//!   are never re-checked. Data files of table formats (Parquet files of Delta, Iceberg, Hudi;
//!   Lance fragments) are written once under unique names and suit immutable prefixes;
//!   manifests, checkpoints and `_last_checkpoint`-style pointers are overwritten in place and
//!   do not.
//! - **Writes pass through.** `put`, multipart uploads, `copy`, `rename` and `delete` go to
//!   the origin and then invalidate the cached identity and chunks of the locations they
//!   change (the destination of a copy, both ends of a rename). `list` passes through.
//!   Writes by other processes are seen only through the re-check policy.
//! - **Outages.** A cached chunk needs the origin only for the identity check: under the TTL
//!   and never policies (and for immutable prefixes) cached chunks are served while the origin
//!   is down, and chunks the cache lacks fail with the origin's error. With
//!   [`stale_if_error`](CachedObjectStoreBuilder::stale_if_error) the per-call policy does
//!   the same when the check fails to reach the origin.
//! - **A failing cache never fails a read**: a tier error is a counted miss.
//! - **Counters** ([`CachedStoreStats`], also `cache_object_store_<counter>_total{store}` in
//!   the `metrics` facade): reads, chunk hits, coalesced and fetched chunks, bytes served from
//!   the cache and from the origin, identity checks and the origin requests saved.
//!
//! A `get` reads the first [`fetch_concurrency`](CachedObjectStoreBuilder::fetch_concurrency)
//! chunks of its range before it returns (a change of the object meanwhile is retried with
//! the new identity) and the rest as its body is polled, that many at a time, so a long body
//! holds a bounded number of chunks; if the object changes at the origin while such a body is
//! read, the body ends with `Error::Precondition`. `get_ranges` reads every range before it
//! returns.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cache_l1::MemoryTier;
//! use cache_object_store::{CachedObjectStore, Revalidate};
//! use cache_tiered::TieredCache;
//! use object_store::{ObjectStore, ObjectStoreExt, memory::InMemory, path::Path};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let origin: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
//! let cache = TieredCache::builder().tier(MemoryTier::builder(256 << 20).build()).build()?;
//! let store = CachedObjectStore::builder(origin.clone(), Arc::new(cache))
//!     .chunk_size(1 << 20)
//!     .revalidate(Revalidate::EveryCall)
//!     .immutable_prefix("warehouse/data")
//!     .build()?;
//!
//! let path = Path::from("warehouse/data/part-0.parquet");
//! let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
//! store.put(&path, data.clone().into()).await.unwrap();
//!
//! // The first read fetches chunks 0 and 1 from the origin; the second is served by the cache.
//! let a = store.get_range(&path, 1_000_000..1_100_000).await.unwrap();
//! let b = store.get_range(&path, 1_000_000..1_100_000).await.unwrap();
//! assert_eq!(a, &data[1_000_000..1_100_000]);
//! assert_eq!(a, b);
//! let stats = store.stats();
//! assert_eq!(stats.chunk_fetches, 2);
//! assert_eq!(stats.chunk_hits, 2);
//! // The path is under the immutable prefix: its identity was checked once.
//! assert_eq!(stats.identity_checks, 1);
//! # Ok::<(), cache_core::Error>(()) }).unwrap();
//! ```
//!
//! # When to choose it
//!
//! Choose `CachedObjectStore` when the code that reads is not yours to change and takes an
//! `Arc<dyn ObjectStore>`, and reads the same byte ranges more than once (query engines
//! re-reading Parquet footers and column chunks, vector stores re-reading index files).
//! Choose the tiered cache's own `get`/`put` when you decide the keys and values yourself.
//! The wrapper pays one HEAD per read under the default per-call policy; most of the saving
//! comes with immutable prefixes or a TTL, where a cached read makes no origin request at all.
//! Pick a chunk size near the typical read (Parquet column chunks: 1 – 8 MiB) and no larger
//! than the cache's largest entry.
//!
//! What the wrapper saves against reading the origin directly, measured on a local S3 server,
//! is in `docs/tiers/object-store.md`.

mod identity;
mod stats;
mod store;

pub use crate::{
    stats::CachedStoreStats,
    store::{CachedObjectStore, CachedObjectStoreBuilder, Revalidate},
};
