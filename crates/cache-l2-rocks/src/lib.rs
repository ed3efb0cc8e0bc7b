//! A local-disk cache tier on RocksDB that enforces its byte budget and its TTL.
//!
//! `cache-l2-rocks` is the convenience disk tier, for users who already run RocksDB, want its
//! tooling, or store many small entries. `cache-l2-nvme` is the performance path; see
//! [Choosing RocksDB](#choosing-rocksdb-over-cache-l2-nvme) below.
//!
//! # Example
//!
//! ```
//! use cache_core::{Entry, Key, Tier};
//! use cache_l2_rocks::{Durability, RocksTier};
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let tier = RocksTier::builder(dir.path(), 64 << 20) // a 64 MiB budget
//!     .durability(Durability::Wal)
//!     .open()
//!     .await?;
//! let key = Key::new("thumbnails", "cat.png")?;
//! tier.put(key.clone(), Entry::new(&b"\x89PNG..."[..])).await?;
//! assert_eq!(tier.get(&key).await?.unwrap().value, &b"\x89PNG..."[..]);
//! tier.close().await?;
//! # Ok::<(), cache_core::Error>(()) }).unwrap();
//! ```
//!
//! # Layout
//!
//! - **Keys** are `NamespaceId (16 bytes) ‖ KeyHash (32 bytes)` ([`StorageKey`]): no user string
//!   reaches RocksDB, so namespaces cannot collide, and each namespace is one key prefix.
//!   `clear_namespace` is one `delete_range` (a range tombstone, O(1) writes) plus a scan of
//!   the in-memory budget. A column family per namespace was rejected: each costs a memtable,
//!   its own SST files and an entry in the MANIFEST, and namespaces are unbounded user input.
//! - **Values** are cache-core records, stored as they are: `get_record`/`put_record` move the
//!   bytes between tiers without re-encoding, and every read verifies the record's checksum
//!   and that it holds the key asked for.
//! - **Every RocksDB call** runs on tokio's blocking pool (`spawn_blocking`), never on an async
//!   worker; the tier must be used inside a tokio runtime.
//!
//! # Budget
//!
//! RocksDB's own size accounting is coarse (SST sizes include garbage and tombstones; memtables
//! are not counted), so the tier keeps its own: an in-memory insertion-order queue of live
//! records, rebuilt on open by iterating the database (ordered by creation time).
//! `usage().bytes_used` is the sum, over live records, of the 48-byte RocksDB key plus the
//! encoded record (header, metadata, namespace, key, value). An insert that would pass the budget
//! deletes the oldest records in the same `WriteBatch`, so `bytes_used <= capacity` always
//! holds, and evictions are counted (records found expired are counted as expirations).
//!
//! What is *not* in `bytes_used` is the slack: per-entry RAM of the queue (≈ 150 bytes per
//! entry), the block cache and memtables (RAM), the WAL (up to two write buffers on disk),
//! SST metadata (index and Bloom filter blocks), and garbage awaiting compaction (deleted and
//! overwritten versions, tombstones). The budget test writes 3× the budget and measures the
//! disk: see the numbers below.
//!
//! # TTL
//!
//! An expired record is never returned: every read checks the expiry against the tier's clock,
//! and deletes the record it found expired. A compaction filter, reading the same clock, drops
//! expired records whenever RocksDB compacts their file; [`RocksTier::compact`] forces that.
//!
//! # Durability
//!
//! [`Durability`] has the NVMe tier's three levels: no WAL, WAL without sync (default), WAL with
//! a sync per write call. `flush()` is the barrier: it syncs the WAL, or with no WAL flushes the
//! memtable to an SST file.
//!
//! # Errors
//!
//! A second opener of the same directory (another process, or another tier in this process)
//! gets [`ErrorKind::Io`](cache_core::ErrorKind::Io) with "… is already open by another
//! process". A corrupt record is a miss, counted in `stats().corrupted`, and deleted.
//!
//! # Compaction: leveled or FIFO
//!
//! MEASUREMENTS_PENDING
//!
//! # Choosing RocksDB over cache-l2-nvme
//!
//! CHOOSE_PENDING

mod budget;
mod builder;
mod error;
mod keys;
mod tier;

pub use crate::{
    builder::{CompactionStyle, Compression, Durability, RocksTierBuilder},
    keys::{STORAGE_KEY_LEN, StorageKey, namespace_bounds},
    tier::RocksTier,
};
