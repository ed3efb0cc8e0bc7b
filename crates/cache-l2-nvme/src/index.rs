//! The in-memory index: key hash → (segment, offset, length, hit bit) in 16-byte buckets.
//!
//! The key hash is BLAKE3 (computed once by [`Key`](cache_core::Key)). Its first byte picks one
//! of 256 shards (each a `RwLock<HashMap>`), bytes 1..5 are the 32-bit tag the shard is keyed
//! by, so 40 bits of the hash tell entries apart. Two keys that agree on those 40 bits share a
//! bucket: the later write replaces the earlier one, and a read checks the full key in the
//! record ([`Record::matches`](cache_core::Record::matches)), so a collision costs an entry,
//! never a wrong value. Expected collisions: n² / 2⁴¹, about 0.5 among 1 M entries.
//!
//! A bucket is 16 bytes (tag, segment, offset, length with the hit bit) plus hashbrown's one
//! control byte; expiry is not duplicated here (it is in the record, checked on every hit).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::atomic::{AtomicU64, Ordering},
};

use cache_core::KeyHash;
use parking_lot::RwLock;

use crate::format::{SHARDS, SnapEntry, lsn};

/// Bit 31 of the length word: the entry was hit since it was written.
pub(crate) const HIT_BIT: u32 = 1 << 31;

/// Where a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Segment id.
    pub(crate) segment: u32,
    /// Byte offset in the segment.
    pub(crate) offset: u32,
    /// Record length, with [`HIT_BIT`].
    pub(crate) len_hit: u32,
}

impl Slot {
    /// A fresh slot (not hit).
    pub(crate) fn new(segment: u32, offset: u32, len: u32) -> Slot {
        debug_assert!(len & HIT_BIT == 0);
        Slot { segment, offset, len_hit: len }
    }
    /// Record length.
    pub(crate) fn len(self) -> u32 {
        self.len_hit & !HIT_BIT
    }
    /// Whether it was hit since written.
    pub(crate) fn hit(self) -> bool {
        self.len_hit & HIT_BIT != 0
    }
    /// Log position.
    pub(crate) fn lsn(self) -> u64 {
        lsn(self.segment, self.offset)
    }
    /// Same record (ignoring the hit bit).
    fn same_place(self, other: Slot) -> bool {
        self.segment == other.segment && self.offset == other.offset && self.len() == other.len()
    }
}

/// Spreads a uniform 32-bit tag over 64 bits (hashbrown uses the top 7 bits as control bytes).
#[derive(Default, Clone, Copy)]
pub(crate) struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = HashMap<u32, Slot, BuildHasherDefault<TagHasher>>;

/// Shard and tag of a key hash.
pub(crate) fn locate(hash: &KeyHash) -> (usize, u32) {
    let h = &hash.0;
    (usize::from(h[0]), u32::from_le_bytes([h[1], h[2], h[3], h[4]]))
}

/// The sharded index.
#[derive(Debug)]
pub(crate) struct Index {
    shards: Box<[RwLock<Shard>]>,
    len: AtomicU64,
}

impl Index {
    /// An empty index.
    pub(crate) fn new() -> Index {
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            len: AtomicU64::new(0),
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Looks up a slot.
    pub(crate) fn get(&self, shard: usize, tag: u32) -> Option<Slot> {
        self.shards[shard].read().get(&tag).copied()
    }

    /// Inserts or replaces.
    pub(crate) fn insert(&self, shard: usize, tag: u32, slot: Slot) {
        if self.shards[shard].write().insert(tag, slot).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes whatever is there; returns it.
    pub(crate) fn remove(&self, shard: usize, tag: u32) -> Option<Slot> {
        let old = self.shards[shard].write().remove(&tag);
        if old.is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        old
    }

    /// Removes the entry only if it still points at `slot`'s record.
    pub(crate) fn remove_if(&self, shard: usize, tag: u32, slot: Slot) -> bool {
        let mut s = self.shards[shard].write();
        if s.get(&tag).is_some_and(|cur| cur.same_place(slot)) {
            s.remove(&tag);
            self.len.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Sets the hit bit if the entry still points at `slot`'s record.
    pub(crate) fn mark_hit(&self, shard: usize, tag: u32, slot: Slot) {
        let mut s = self.shards[shard].write();
        if let Some(cur) = s.get_mut(&tag)
            && cur.same_place(slot)
        {
            cur.len_hit |= HIT_BIT;
        }
    }

    /// Removes every entry in segment `segment`; returns how many, plus those that were hit
    /// (for reinsertion) when `collect_hits` is set.
    pub(crate) fn drain_segment(
        &self,
        segment: u32,
        collect_hits: bool,
    ) -> (u64, Vec<(usize, u32, Slot)>) {
        let mut removed = 0u64;
        let mut hits = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let mut s = shard.write();
            s.retain(|tag, slot| {
                if slot.segment != segment {
                    return true;
                }
                removed += 1;
                if collect_hits && slot.hit() {
                    hits.push((i, *tag, *slot));
                }
                false
            });
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        (removed, hits)
    }

    /// Every entry, grouped by shard, with per-shard counts (for the snapshot).
    pub(crate) fn export(&self) -> (Vec<u32>, Vec<SnapEntry>) {
        let mut counts = Vec::with_capacity(SHARDS);
        let mut entries = Vec::with_capacity(self.len() as usize);
        for (i, shard) in self.shards.iter().enumerate() {
            let s = shard.read();
            counts.push(s.len() as u32);
            entries.extend(s.iter().map(|(tag, slot)| SnapEntry {
                shard: i as u8,
                tag: *tag,
                segment: slot.segment,
                offset: slot.offset,
                len_hit: slot.len_hit,
            }));
        }
        (counts, entries)
    }

    /// Bulk-loads a snapshot's entries into an empty index.
    pub(crate) fn load(&self, counts: &[u32], entries: &[SnapEntry]) {
        let mut at = 0usize;
        for (i, c) in counts.iter().enumerate() {
            let c = *c as usize;
            let mut s = self.shards[i].write();
            s.reserve(c);
            for e in &entries[at..at + c] {
                s.insert(e.tag, Slot { segment: e.segment, offset: e.offset, len_hit: e.len_hit });
            }
            at += c;
        }
        let total: usize = self.shards.iter().map(|s| s.read().len()).sum();
        self.len.store(total as u64, Ordering::Relaxed);
    }

    /// Estimated heap bytes of the tables: buckets × (16-byte bucket + 1 control byte) plus
    /// the shard headers. The `index_memory` example measures the allocator instead.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let per_bucket = (size_of::<(u32, Slot)>() + 1) as u64;
        let mut total = (self.shards.len() * size_of::<RwLock<Shard>>()) as u64;
        for shard in &*self.shards {
            let cap = shard.read().capacity() as u64;
            let buckets = if cap == 0 {
                0
            } else if cap < 8 {
                (cap + 1).next_power_of_two()
            } else {
                (cap * 8 / 7).next_power_of_two()
            };
            total += buckets * per_bucket + if buckets > 0 { 16 } else { 0 };
        }
        total
    }
}
