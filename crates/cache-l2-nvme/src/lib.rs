//! A log-structured, crash-safe local-disk cache tier on `memmap2` + rkyv records, whose hits
//! are zero-copy slices of a memory-mapped segment.
//!
//! # Design
//!
//! - **Segments.** The directory holds fixed-size segment files (`<id>.seg`, 16 hex digits),
//!   preallocated at creation and written append-only with large `pwrite`s by one writer
//!   thread. Each starts with a 64-byte checksummed header; records in the cache-core record
//!   format follow back to back. The segment size is
//!   `clamp(min(configured, budget / 32), 16 KiB, 1 GiB)` rounded down to 4 KiB (default
//!   configured size 64 MiB), so a small budget still holds 32 segments; it is never below
//!   budget / 16384 (the index keeps 16 bits of segment id). A record larger
//!   than a segment gets a segment of its own, sized to it (4 KiB rounded); a record whose
//!   segment would exceed the budget, or larger than 2 GiB, is refused with `Invalid`.
//! - **Zero-copy hits.** Every segment file is mapped once, whole, as soon as it is created
//!   (`MAP_SHARED`, read-only), and the mapping is wrapped in a `Bytes` (`Bytes::from_owner`).
//!   A hit is a `slice` of it: no copy, no decode — the checksum (xxh3-64) is verified unless
//!   [`NvmeTierBuilder::verify_on_read`] is off, and the rkyv metadata is validated in place.
//!   The segment being written is read through the same mapping: Linux's page cache makes
//!   bytes written by `pwrite` visible in the mapping at once, and index entries are published
//!   only after their `pwrite` returned. A corrupt record is a miss, counted in `corrupted`.
//! - **Compression (optional).** With [`NvmeTierBuilder::compression`] a value below 256 KiB
//!   that LZ4 or zstd shrinks by an eighth is stored compressed, so the budget holds more of a
//!   compressible workload; a hit of it is decoded into a buffer of its own, not a slice.
//!   Larger or incompressible values stay raw and zero-copy. Records of any setting read back
//!   under any other (`docs/format.md`).
//! - **Direct reads (optional).** With [`NvmeTierBuilder::direct_reads`] a hit (and
//!   `contains`) reads the 4 KiB-aligned blocks that hold its record with `O_DIRECT`, on tokio's
//!   blocking pool, into a buffer of its own: a device read and a copy instead of a slice of the
//!   page cache. The writer then starts each write's writeback at once
//!   (`sync_file_range`, which promises no durability) and drops a full segment's cached pages
//!   (`posix_fadvise`), so the page cache holds no second copy of what a RAM tier above
//!   already caches. Writes, recovery and reclaim still go through the page cache. Choose it
//!   when the disk is much larger than the RAM the kernel can give its page cache, or to
//!   measure the device rather than the page cache.
//! - **Time-to-idle (optional).** With [`NvmeTierBuilder::time_to_idle`] an entry neither read
//!   nor written for that long is a miss. The last access of each entry is kept in RAM beside
//!   the index (about 17 bytes an entry), so a read never writes to the disk; across a restart
//!   every idle time starts again at the open.
//! - **Never rewritten in place.** Segment files are never truncated, shrunk or reused.
//!   Reclaim unlinks the oldest file; a `Bytes` a reader still holds keeps the mapping alive.
//!   The writer hands the unlinked segment to a reaper thread, whose drop of the last handle
//!   frees the file's page cache off the write path.
//! - **Values written from the caller's buffer.** A put of a value of 512 bytes or more encodes
//!   only the record's head (header, metadata, namespace, key) and computes the checksum over
//!   the head and the caller's value; the writer appends head and value with one `pwritev`
//!   (records of 32 KiB or more) or copies them into its 1 MiB staging buffer (smaller ones).
//!   The bytes on disk are exactly the cache-core record; the value is copied once.
//! - **Index.** 256 shards of `HashMap<tag, slot>` with 13-byte buckets (4-byte tag; segment id
//!   modulo 2¹⁶; 30-bit offset plus a 2-bit hit count; 24-bit length, longer records read their
//!   length from the record header) plus hashbrown's control byte: 16–32 bytes per entry depending
//!   on the tables' load (the measured figure: `docs/tiers/nvme.md`). 40 bits of the key hash
//!   select a bucket; collisions cost an entry, never a wrong value (the full key is compared on
//!   read). Expiry is not copied into the index: it is checked in the record on every hit, and
//!   expired entries are dropped from the index when seen and never reinserted.
//! - **Budget.** `bytes_used` is the total size of the live segment files. Before a segment is
//!   created, the oldest ones are reclaimed (FIFO) until it fits, so the budget holds after
//!   every write. Optional hits-based reinsertion ([`NvmeTierBuilder::reinsert_hits`]) copies
//!   entries hit since they were written to the head of the log (up to 90 % of a segment),
//!   spending one of the up to three hits the index counts per entry.
//! - **Eviction sink.** With a sink set ([`Tier::set_eviction_sink`](cache_core::Tier::set_eviction_sink)),
//!   reclaim hands every live entry of the reclaimed segment that is not expired, not cleared
//!   and not reinserted to the sink (cause `Capacity`), after dropping it from the index. The
//!   value is a slice of the segment's mapping (no copy; valid after the file is unlinked), and
//!   the record's checksum is verified first. The sink is called on the writer thread, one
//!   call per entry: it must be quick and never block (queue the work, as `cache-tiered`'s
//!   demotion does); a slow sink stalls every write. Overwritten, removed and expired
//!   versions are never handed over.
//! - **Durability.** [`Durability::None`], [`Durability::Periodic`] (default, a syncer thread
//!   `fdatasync`s dirty segments every 5 ms: group commit, no put waits for it) and
//!   [`Durability::EveryWrite`] (each writer batch is synced before its puts return). The
//!   barrier is [`Tier::flush`](cache_core::Tier::flush): when it returns, everything acknowledged
//!   before it is on stable storage (segments `fdatasync`ed, directory `fsync`ed).
//! - **Restart.** A clean [`close`](cache_core::Tier::close) writes `index.snap` (versioned,
//!   xxh3-checksummed) listing the segments and every index entry; opening loads it if it matches
//!   the segment files (one mapping, entries parsed in place on up to four threads), and deletes
//!   it; the deletion is synced before the first write, so it is never trusted after a later
//!   unclean run. Otherwise the segments are scanned oldest first, validating every record and
//!   stopping at the unwritten (zero) tail; a garbled record header is skipped by searching forward
//!   for the next record that validates (FORMAT.md gives the caveat). Removes and puts replacing an
//!   entry with an already-expired one write tombstones, so a scan cannot bring removed keys back.
//! - **Namespaces.** `clear_namespace` appends one 40-byte marker (namespace id, log position)
//!   to `namespaces.log` and syncs it: O(1) on disk. Entries of the namespace older than the
//!   marker are misses from then on (and after restarts) and are dropped at reclaim.
//! - **Staged writes.** With [`Durability::None`] and [`Durability::Periodic`], `put` encodes
//!   its record on the caller's task, enters it in a bounded in-memory pending buffer (an
//!   eighth of the budget by default, 1 to 64 MiB, [`NvmeTierBuilder::max_pending_bytes`]), queues it to the writer thread and
//!   returns `Stored` without waiting for the write. `get` consults the buffer before the index,
//!   so a caller reads its own writes (such a hit is a copy: the record is still in two parts);
//!   the writer drops an entry once its index update is published. When the buffer is full, `put` waits for room: nothing is dropped. So, as with
//!   `write(2)` and `fsync(2)`, **`Stored` means "accepted; durable after the next barrier"**.
//!   A write that fails after its put returned (a full disk, an IO error) is counted
//!   ([`NvmeTier::write_errors`] and the stats' errors), logged, its key is forgotten in memory
//!   (an older version is not served in its place), and the next [`flush`](cache_core::Tier::flush)
//!   returns the error. [`Durability::EveryWrite`] puts still wait for their write and sync,
//!   and return its error. [`NvmeTier::wait_written`] waits until everything queued is written
//!   (not synced). Removes are staged the same way: the tombstone enters the buffer (so reads
//!   miss at once) and the writer's queue, and `remove` returns; a removal is durable after the
//!   next barrier. A key that is neither indexed nor pending is not queued at all. Namespace
//!   clears wait for the writer. Every write is ordered after every write queued before it.
//! - **Ranged reads.** [`Tier::get_range`](cache_core::Tier::get_range) is a zero-copy slice of
//!   the record's value. A value of at least
//!   [`CHUNKED_MIN_VALUE`](cache_core::CHUNKED_MIN_VALUE) bytes is stored with one checksum per
//!   64 KiB chunk (record format version 2), so a range read verifies the record's head, its
//!   chunk table and only the chunks the range covers; a smaller value is verified whole. With
//!   direct reads only those are read from the device too (the blocks of the head, the table
//!   and the chunks), so a 4 KiB range of a 16 MiB value reads under 100 KiB.
//! - **Concurrency.** Reads run on the caller's task: shard read lock, slice, checksum. They
//!   never wait for the writer or a sync. Writes are encoded on the caller's task and queued to
//!   the writer thread; nothing on the async path blocks the executor on disk IO or `fsync`.
//!   (A hit on a page that is not resident takes a page fault on the caller's thread; on a
//!   page-cached working set there is none.)
//! - **One process per directory.** `LOCK` is locked exclusively (`flock`) for the tier's
//!   life; a second opener gets [`ErrorKind::Unavailable`](cache_core::ErrorKind::Unavailable)
//!   naming the directory.
//!
//! The byte layouts are in this crate's `FORMAT.md`.
//!
//! # Performance
//!
//! Puts against a plain file write, get-hit latency, a comparison with foyer, reopen times and
//! the index's RAM per entry were measured: `docs/tiers/nvme.md` in the repository has the
//! figures and the commands that reproduce them.
//!
//! # Example
//!
//! ```no_run
//! use cache_core::{Entry, Key, Tier};
//! use cache_l2_nvme::NvmeTier;
//!
//! # async fn demo() -> cache_core::Result<()> {
//! let tier = NvmeTier::builder("/var/cache/myapp/nvme", 4 << 30).open().await?;
//! let key = Key::new("images", "cat.png")?;
//! tier.put(key.clone(), Entry::new(vec![0u8; 4096])).await?;
//! let hit = tier.get(&key).await?.expect("just written");
//! assert_eq!(hit.value.len(), 4096); // a slice of the mapped segment
//! tier.flush().await?; // durable from here on
//! tier.close().await?; // writes the index snapshot
//! # Ok(()) }
//! ```

#![deny(clippy::host_endian_bytes, clippy::big_endian_bytes)]

mod builder;
mod error;
mod format;
mod idle;
mod index;
mod io;
mod namespace;
mod parts;
mod pending;
mod reclaim;
mod recover;
mod segment;
mod snapshot;
mod tier;
mod writer;

#[doc(hidden)]
pub mod fuzzing;

/// The IO journal behind the `io-trace` feature, for power-loss tests.
#[cfg(feature = "io-trace")]
#[doc(hidden)]
pub use crate::io::trace as io_trace;

pub use cache_core::Compression;

pub use crate::{
    builder::{
        DEFAULT_DURABILITY, DEFAULT_MAX_PENDING, DEFAULT_SEGMENT_SIZE, Durability,
        MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, MIN_SYNC_INTERVAL, NvmeTierBuilder,
        SEGMENTS_PER_BUDGET,
    },
    tier::{NvmeTier, RecoveryReport},
};
