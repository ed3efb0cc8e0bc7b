//! A local-disk cache tier on RocksDB that enforces its byte budget and its TTL.
//!
//! `cache-l2-rocks` is the convenience disk tier, for users who already run RocksDB, want its
//! tooling, or store many small entries. `cache-l2-nvme` is the performance path; see
//! [Choosing RocksDB](#choosing-rocksdb-over-cache-l2-nvme) below.
//!
//! Measured figures (compaction, disk use, RAM per entry, the comparison with `cache-l2-nvme`
//! and with raw RocksDB) and the commands that reproduce them: `docs/tiers/rocks.md` in the
//! repository.
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
//!     .durability(Durability::None)
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
//!   The range delete writes one tombstone instead of reading every key and writing one
//!   tombstone each (timed against raw RocksDB in `docs/tiers/rocks.md`).
//! - **Values** are cache-core records, stored as they are: `get_record`/`put_record` move the
//!   bytes between tiers without re-encoding, and every read verifies the record's checksum
//!   and that it holds the key asked for.
//! - **Every RocksDB call** runs on tokio's blocking pool (`spawn_blocking`), never on an async
//!   worker; the tier must be used inside a tokio runtime. The test
//!   `rocksdb_calls_do_not_block_the_executor` keeps a 1 ms ticker running on a single-threaded
//!   runtime through a compaction of hundreds of milliseconds and fails if it stalls for half of
//!   it (it does, when the compaction is moved onto the caller). Dropping the tier without
//!   `close` closes RocksDB inside `block_in_place` on a multi-threaded runtime's worker.
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
//! What is *not* in `bytes_used` is the slack: the queue's RAM, the block
//! cache and memtables (RAM), the WAL (up to two write buffers on disk), SST metadata (index and
//! Bloom filter blocks), and garbage awaiting compaction (deleted and overwritten versions,
//! tombstones). On disk, the budget test (`budget_holds_on_disk_after_writing_three_times_it`:
//! an 8 MiB budget, 3× written in values of 1 – 16 KiB) asserts SST files of at most
//! budget + 5 % after [`RocksTier::compact`], and at most 3× the budget before it.
//! The documented slack is therefore: garbage between compactions, which leveled compaction keeps
//! to about a quarter of the budget (asserted ≤ 3×), ≤ 5 % of SST metadata after a compaction,
//! plus the WAL. What the test measured: `docs/tiers/rocks.md`.
//!
//! The queue is an arena of 72-byte nodes (the 48-byte key once, size, expiry, and the links of
//! a list in insertion order) plus a hash table of 4-byte node indices; its RAM per entry,
//! counted with a counting allocator, is in `docs/tiers/rocks.md`.
//!
//! # TTL
//!
//! An expired record is never returned: every read checks the expiry against the tier's clock,
//! and deletes the record it found expired. A compaction filter, reading the same clock, drops
//! expired records whenever RocksDB compacts their file; [`RocksTier::compact`] forces that.
//!
//! There is no time-to-idle: tracking the last read of each entry would make every read a
//! write to the database (the RAM and NVMe tiers keep it in RAM instead). An entry nobody
//! reads stays until its TTL or the budget removes it.
//!
//! # Durability
//!
//! [`Durability`] is the NVMe tier's (`cache_core::Durability`): the write-ahead log is synced
//! never before a flush (the default), by a background thread at an interval, or after every
//! write call. [`RocksTierBuilder::write_ahead_log`] turns the log off (writes then wait in the
//! memtable). `flush()` is the barrier: it syncs the WAL, or with no WAL flushes the memtable to
//! an SST file. The test `a_crashed_process_loses_no_acknowledged_write` aborts a
//! child process (no destructor runs) after its puts returned, and after `flush` with no WAL, and
//! finds every entry on reopen; without that `flush`, no WAL loses them, as documented.
//!
//! # Errors
//!
//! A second opener of the same directory (another process, or another tier in this process)
//! gets [`ErrorKind::Io`](cache_core::ErrorKind::Io) with "… is already open by another
//! process" and the path (tested with a child process and within one process). A corrupt record
//! (garbage, another key's record, a flipped bit) is a miss, counted in `stats().corrupted`, and
//! deleted, so the key works again at the next put (`corrupt_record_is_a_counted_miss_and_is_deleted`).
//! A database damaged beyond opening (a bad SST block or footer) is repaired with RocksDB's
//! repair on open: files it cannot read are set aside under `lost/`, their records become
//! misses, the rest is served, and the damage is counted
//! (`a_damaged_sst_is_repaired_on_open_and_the_rest_is_served`).
//! Bloom filter bits, block cache size and LZ4 are builder knobs, and a test checks that each
//! reaches RocksDB (Bloom skips counted by RocksDB's statistics, the block cache capacity
//! property, SST size with and without LZ4).
//!
//! # Compaction: leveled or FIFO
//!
//! The default is [`CompactionStyle::Leveled`], chosen by measurement (`docs/tiers/rocks.md`
//! has the tables, at 16 MiB, 256 MiB and 1 GiB budgets). The tier evicts by
//! deleting records (in insertion order), so what matters is what each style does with the
//! garbage: leveled compaction rewrites files and reclaims it; FIFO compaction never rewrites,
//! it deletes the oldest SST file once all of them pass a size bound (here: budget + ¼ + two
//! write buffers).
//!
//! FIFO writes fewer bytes when every key is new, but as soon as keys are overwritten (or
//! removed, or expire) its garbage pushes live records out of the oldest file, records the
//! budget still counts (they become misses). It also never runs the TTL compaction filter, and
//! its disk use sits at its bound. Leveled compaction loses nothing, keeps the disk near the
//! budget and drops expired records, for more bytes written per byte stored, growing with the
//! database, as expected of an LSM. Choose FIFO only for insert-only workloads whose keys are
//! never overwritten or removed.
//!
//! # Choosing RocksDB over cache-l2-nvme
//!
//! The two tiers were measured head to head on the same workloads and budget, with durability
//! matched (`docs/tiers/rocks.md` has the figures and the command). What they show:
//! - **Latency and throughput: the NVMe tier is far ahead.** Its hits are slices of a
//!   memory-mapped file read on the caller's task and its puts return once the record is
//!   staged for its writer thread; every call here makes a round trip to tokio's blocking pool
//!   for a RocksDB operation that itself takes far less time than the hop.
//! - **Disk writes: compaction rewrites records here**, more as the database grows; the NVMe
//!   tier appends each record once.
//! - **Disk space: this tier's budget counts live records only**; the files take more than the
//!   budget until compaction catches up (within 5 % of it after [`RocksTier::compact`]). The
//!   NVMe tier's budget is its disk footprint.
//! - **Hit ratio at an equal budget: slightly higher here**, because eviction is per record in
//!   exact insertion order and overwritten versions do not count, where the NVMe tier frees an
//!   eighth of its budget at a time and counts garbage until its segment is reclaimed. At an
//!   equal *disk* footprint the advantage goes the other way.
//! - **RAM: the budget's queue takes more per entry** than the NVMe tier's index; RocksDB's
//!   block cache and memtables come on top.
//!
//! So: **choose `cache-l2-rocks` when** you already run RocksDB and want its tools (`ldb`,
//! `sst_dump`, [`RocksTierBuilder::rocksdb_options`] gives the exact options), its statistics
//! ([`RocksTier::rocksdb_statistics`]) and your tuning experience; when the tier sits behind a
//! RAM tier and serves tens of thousands of operations per second at most, so the hop to the
//! blocking pool on every call does not matter; when values are compressible
//! ([`BlockCompression::Lz4`] compresses whole SST blocks, across records, on top of the
//! per-record compression every tier offers); or when the hit ratio of a small disk
//! budget counts more than disk writes. **Choose `cache-l2-nvme` when** latency, throughput,
//! device endurance (bytes written) or RAM per entry matter, when values are large, or when the
//! disk footprint must equal the configured budget — on every measured axis but the hit ratio
//! at equal budget, it is ahead.
//!
//! # Cost per call
//!
//! Against raw RocksDB used the way an async caller must use it (through the blocking pool),
//! the tier adds little of its own: record encoding and checksum (a get verifies the record's
//! checksum, which raw RocksDB does not), the budget's queue, and the budget's lock, held around
//! each RocksDB write so the budget and the database agree (RocksDB's write path serializes
//! writers too). Against raw RocksDB called directly on the caller's thread, the hop to tokio's
//! blocking pool and back dominates. That hop is the price of never blocking the executor;
//! batch with `get_many`/`put_many` (one hop, one `multi_get` or `WriteBatch`) to amortize it.
//! The paired ratios and the profile: `docs/tiers/rocks.md`.

mod budget;
mod builder;
mod error;
mod keys;
mod tier;

pub use cache_core::Compression;

pub use crate::{
    builder::{BlockCompression, CompactionStyle, Durability, MIN_SYNC_INTERVAL, RocksTierBuilder},
    keys::{STORAGE_KEY_LEN, StorageKey, namespace_bounds},
    tier::RocksTier,
};
