//! The in-memory index: key hash → (segment, offset, length, hit count) in 13-byte buckets.
//!
//! The key hash is BLAKE3 (computed once by [`Key`](cache_core::Key)). Its first byte picks one
//! of 256 shards (each a `RwLock<HashMap>`), bytes 1..5 are the 32-bit tag the shard is keyed
//! by, so 40 bits of the hash tell entries apart. Two keys that agree on those 40 bits share a
//! bucket: the later write replaces the earlier one, and a read checks the full key in the
//! record ([`Record::matches`](cache_core::Record::matches)), so a collision costs an entry,
//! never a wrong value. Expected collisions: n² / 2⁴¹, about 0.5 among 1 M entries.
//!
//! A bucket is 13 bytes with alignment 1, plus hashbrown's one control byte:
//! - tag, 4 bytes;
//! - segment id modulo 2¹⁶, 2 bytes: live segment ids always span fewer than 2¹⁵ values (the
//!   writer reclaims to keep it so), and the full id is rebuilt from the oldest live id;
//! - offset (30 bits: segments are at most 1 GiB) and a 2-bit count of hits since written
//!   (bits 30 and 31, 0 to [`MAX_HITS`]), 4 bytes;
//! - record length, 3 bytes; records of 2²⁴ − 1 bytes or more store the sentinel
//!   [`LEN_IN_HEADER`] and the reader takes the length from the record header.
//!
//! Expiry is not duplicated here (it is in the record, checked on every hit).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hash, Hasher},
    ops::Range,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use cache_core::{HEADER_LEN, KeyHash, RecordHeader};
use parking_lot::RwLock;

use crate::format::{SHARDS, SNAPSHOT_ENTRY_LEN, SnapEntry, lsn};

/// Bit 31 of a snapshot entry's length word: hit since written.
pub(crate) const HIT_BIT: u32 = 1 << 31;
/// Offsets are below this (a segment is at most 1 GiB); the offset word's two bits above it
/// count hits.
pub(crate) const OFFSET_LIMIT: u32 = 1 << 30;
/// The hit count saturates here: reclaim reinserts an entry whose count is above zero and
/// lowers it by one, so an entry hit three times survives three reclaims without another hit
/// (S3-FIFO's main queue keeps the same 2-bit frequency).
pub(crate) const MAX_HITS: u8 = 3;
/// The longest record the tier stores.
pub(crate) const MAX_RECORD_LEN: u32 = HIT_BIT - 1;
/// Length sentinel: read the record length from its header.
pub(crate) const LEN_IN_HEADER: u32 = (1 << 24) - 1;
/// Live segment ids must span fewer than this many values.
pub(crate) const MAX_SEGMENT_SPAN: u32 = 1 << 15;

/// Where a record lives (unpacked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Segment id.
    pub(crate) segment: u32,
    /// Byte offset in the segment (below 2³¹).
    pub(crate) offset: u32,
    /// Record length, or [`LEN_IN_HEADER`].
    pub(crate) len: u32,
    /// Hits since written (or since reinserted, less one), at most [`MAX_HITS`].
    pub(crate) hits: u8,
}

impl Slot {
    /// A fresh slot (not hit).
    pub(crate) fn new(segment: u32, offset: u32, len: u32) -> Slot {
        debug_assert!(offset < OFFSET_LIMIT);
        Slot { segment, offset, len: len.min(LEN_IN_HEADER), hits: 0 }
    }
    /// Whether it was hit since written.
    pub(crate) fn hit(self) -> bool {
        self.hits > 0
    }
    /// Log position.
    pub(crate) fn lsn(self) -> u64 {
        lsn(self.segment, self.offset)
    }
    /// The byte range of the record in `data` (its segment), if it lies inside it.
    pub(crate) fn range_in(self, data: &[u8]) -> Option<Range<usize>> {
        let start = self.offset as usize;
        let len = if self.len == LEN_IN_HEADER {
            len_in_header(data.get(start..start + HEADER_LEN)?)?
        } else {
            self.len as usize
        };
        let end = start.checked_add(len)?;
        (end <= data.len()).then_some(start..end)
    }
    /// Same record (ignoring the hit count).
    fn same_place(self, other: Slot) -> bool {
        self.segment == other.segment && self.offset == other.offset
    }
    fn pack(self) -> Packed {
        let mut b = [0u8; 9];
        b[0..2].copy_from_slice(&(self.segment as u16).to_le_bytes());
        let off = self.offset | (u32::from(self.hits.min(MAX_HITS)) << 30);
        b[2..6].copy_from_slice(&off.to_le_bytes());
        b[6..9].copy_from_slice(&self.len.to_le_bytes()[..3]);
        Packed(b)
    }
}

/// The length of the record whose header `head` starts with, for a slot of [`LEN_IN_HEADER`]
/// (`None` if the header does not parse).
pub(crate) fn len_in_header(head: &[u8]) -> Option<usize> {
    usize::try_from(RecordHeader::parse(head).ok()?.total_len()?).ok()
}

/// A packed slot: segment id mod 2¹⁶, offset with hit count, 24-bit length.
#[derive(Clone, Copy)]
struct Packed([u8; 9]);

impl Packed {
    fn seg16(self) -> u16 {
        u16::from_le_bytes([self.0[0], self.0[1]])
    }
    fn unpack(self, oldest: u32) -> Slot {
        let segment = oldest.wrapping_add(u32::from(self.seg16().wrapping_sub(oldest as u16)));
        let off = u32::from_le_bytes([self.0[2], self.0[3], self.0[4], self.0[5]]);
        let len = u32::from_le_bytes([self.0[6], self.0[7], self.0[8], 0]);
        Slot { segment, offset: off & (OFFSET_LIMIT - 1), len, hits: (off >> 30) as u8 }
    }
    /// Counts a hit (up to [`MAX_HITS`]).
    fn set_hit(&mut self) {
        let hits = (self.0[5] >> 6).saturating_add(1).min(MAX_HITS);
        self.0[5] = (self.0[5] & 0x3f) | (hits << 6);
    }
}

/// The tag a shard is keyed by (4 bytes, alignment 1).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Tag([u8; 4]);

impl Hash for Tag {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(u32::from_le_bytes(self.0));
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

type Shard = HashMap<Tag, Packed, BuildHasherDefault<TagHasher>>;

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
    /// A lower bound of the live segment ids, within [`MAX_SEGMENT_SPAN`] of all of them.
    oldest: AtomicU32,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Packed").field(&self.0).finish()
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tag").field(&self.0).finish()
    }
}

impl Index {
    /// An empty index.
    pub(crate) fn new() -> Index {
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            len: AtomicU64::new(0),
            oldest: AtomicU32::new(0),
        }
    }

    /// Sets the oldest live segment id (or the next id, with no live segment).
    pub(crate) fn set_oldest(&self, id: u32) {
        self.oldest.store(id, Ordering::Release);
    }

    fn oldest(&self) -> u32 {
        self.oldest.load(Ordering::Acquire)
    }

    /// Entries held.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Looks up a slot.
    pub(crate) fn get(&self, shard: usize, tag: u32) -> Option<Slot> {
        let p = self.shards[shard].read().get(&Tag(tag.to_le_bytes())).copied()?;
        Some(p.unpack(self.oldest()))
    }

    /// Inserts or replaces.
    pub(crate) fn insert(&self, shard: usize, tag: u32, slot: Slot) {
        if self.shards[shard].write().insert(Tag(tag.to_le_bytes()), slot.pack()).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes whatever is there.
    pub(crate) fn remove(&self, shard: usize, tag: u32) {
        if self.shards[shard].write().remove(&Tag(tag.to_le_bytes())).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes the entry only if it still points at `slot`'s record.
    pub(crate) fn remove_if(&self, shard: usize, tag: u32, slot: Slot) -> bool {
        let oldest = self.oldest();
        let mut s = self.shards[shard].write();
        let tag = Tag(tag.to_le_bytes());
        if s.get(&tag).is_some_and(|cur| cur.unpack(oldest).same_place(slot)) {
            s.remove(&tag);
            self.len.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Counts a hit if the entry still points at `slot`'s record.
    pub(crate) fn mark_hit(&self, shard: usize, tag: u32, slot: Slot) {
        let oldest = self.oldest();
        let mut s = self.shards[shard].write();
        if let Some(cur) = s.get_mut(&Tag(tag.to_le_bytes()))
            && cur.unpack(oldest).same_place(slot)
        {
            cur.set_hit();
        }
    }

    /// Removes every entry in segment `segment`; returns how many, plus those that were hit
    /// (for reinsertion) when `collect_hits` is set, or all of them with `collect_all`.
    pub(crate) fn drain_segment(
        &self,
        segment: u32,
        collect_hits: bool,
        collect_all: bool,
    ) -> (u64, Vec<(usize, u32, Slot)>) {
        let oldest = self.oldest();
        let seg16 = segment as u16;
        let mut removed = 0u64;
        let mut hits = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let mut s = shard.write();
            s.retain(|tag, p| {
                if p.seg16() != seg16 {
                    return true;
                }
                removed += 1;
                let slot = p.unpack(oldest);
                if collect_all || (collect_hits && slot.hit()) {
                    hits.push((i, u32::from_le_bytes(tag.0), Slot { segment, ..slot }));
                }
                false
            });
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        (removed, hits)
    }

    /// The tags of `shard`'s entries.
    pub(crate) fn tags(&self, shard: usize) -> Vec<u32> {
        self.shards[shard].read().keys().map(|t| u32::from_le_bytes(t.0)).collect()
    }

    /// Every entry, grouped by shard, with per-shard counts (for the snapshot).
    pub(crate) fn export(&self) -> (Vec<u32>, Vec<SnapEntry>) {
        let oldest = self.oldest();
        let mut counts = Vec::with_capacity(SHARDS);
        let mut entries = Vec::with_capacity(self.len() as usize);
        for (i, shard) in self.shards.iter().enumerate() {
            let s = shard.read();
            counts.push(s.len() as u32);
            entries.extend(s.iter().map(|(tag, p)| {
                let slot = p.unpack(oldest);
                SnapEntry {
                    shard: i as u8,
                    tag: u32::from_le_bytes(tag.0),
                    segment: slot.segment,
                    offset: slot.offset,
                    len_hit: slot.len | if slot.hit() { HIT_BIT } else { 0 },
                }
            }));
        }
        (counts, entries)
    }

    /// Bulk-loads a snapshot's entries (16 bytes each, grouped by shard as `counts` says) into
    /// an empty index, parsing them in place on up to four threads (shard ranges of about equal
    /// entry counts). `valid(segment, offset, len_hit)` checks each entry; returns false (and
    /// leaves a partly loaded index, to be [`clear`](Index::clear)ed) if one fails.
    pub(crate) fn load_snapshot(
        &self,
        counts: &[u32],
        entries: &[u8],
        valid: &(dyn Fn(u32, u32, u32) -> bool + Sync),
    ) -> bool {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        let total: usize = counts.iter().map(|c| *c as usize).sum();
        if total == 0 || entries.len() != total * SNAPSHOT_ENTRY_LEN {
            return total == 0 && entries.is_empty();
        }
        // Cut the shards into `threads` ranges of about total / threads entries each.
        let mut ranges = Vec::with_capacity(threads);
        let (mut first, mut at, mut acc) = (0usize, 0usize, 0usize);
        for (i, c) in counts.iter().enumerate() {
            acc += *c as usize;
            let last = i + 1 == counts.len();
            if last || acc * threads >= total * (ranges.len() + 1) {
                let end = acc * SNAPSHOT_ENTRY_LEN;
                ranges.push((first, &counts[first..=i], &entries[at..end]));
                first = i + 1;
                at = end;
            }
        }
        let ok = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .iter()
                .skip(1)
                .map(|(first, c, e)| scope.spawn(move || self.load_shards(*first, c, e, valid)))
                .collect();
            let mut ok =
                ranges.first().is_none_or(|(first, c, e)| self.load_shards(*first, c, e, valid));
            for h in handles {
                ok &= h.join().unwrap_or(false);
            }
            ok
        });
        let total: usize = self.shards.iter().map(|s| s.read().len()).sum();
        self.len.store(total as u64, Ordering::Relaxed);
        ok
    }

    fn load_shards(
        &self,
        first: usize,
        counts: &[u32],
        entries: &[u8],
        valid: &(dyn Fn(u32, u32, u32) -> bool + Sync),
    ) -> bool {
        let mut at = 0usize;
        for (i, c) in counts.iter().enumerate() {
            let c = *c as usize;
            let mut s = self.shards[first + i].write();
            s.reserve(c);
            for raw in entries[at..at + c * SNAPSHOT_ENTRY_LEN].chunks_exact(SNAPSHOT_ENTRY_LEN) {
                let e = SnapEntry::parse(raw);
                if !valid(e.segment, e.offset, e.len_hit) {
                    return false;
                }
                let slot = Slot {
                    segment: e.segment,
                    offset: e.offset,
                    len: (e.len_hit & !HIT_BIT).min(LEN_IN_HEADER),
                    hits: u8::from(e.len_hit & HIT_BIT != 0),
                };
                s.insert(Tag(e.tag.to_le_bytes()), slot.pack());
            }
            at += c * SNAPSHOT_ENTRY_LEN;
        }
        true
    }

    /// Drops every entry (a snapshot that failed validation halfway).
    pub(crate) fn clear(&self) {
        for shard in &*self.shards {
            *shard.write() = Shard::default();
        }
        self.len.store(0, Ordering::Relaxed);
    }

    /// Estimated heap bytes of the tables: buckets × (13-byte bucket + 1 control byte) plus
    /// the shard headers. The `reopen_and_memory` example measures the allocator instead.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let per_bucket = (size_of::<(Tag, Packed)>() + 1) as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_13_bytes_and_slots_round_trip() {
        assert_eq!(size_of::<(Tag, Packed)>(), 13);
        let index = Index::new();
        index.set_oldest(70_000);
        let slot = Slot::new(70_005, 1234, 99);
        index.insert(3, 42, slot);
        assert_eq!(index.get(3, 42), Some(slot));
        index.mark_hit(3, 42, slot);
        assert!(index.get(3, 42).unwrap().hit());
        for _ in 0..5 {
            index.mark_hit(3, 42, slot);
        }
        let counted = index.get(3, 42).unwrap();
        assert_eq!(counted.hits, MAX_HITS, "the count saturates");
        assert!(counted.same_place(slot), "the count never spills into the offset");
        let far = Slot::new(70_002, OFFSET_LIMIT - 1, 7);
        index.insert(5, 9, far);
        index.mark_hit(5, 9, far);
        assert_eq!(index.get(5, 9).unwrap().offset, OFFSET_LIMIT - 1);
        index.remove(5, 9);
        let big = Slot::new(70_001, 64, 40 << 20);
        assert_eq!(big.len, LEN_IN_HEADER);
        index.insert(4, 1, big);
        assert_eq!(index.get(4, 1), Some(big));
        // A slot of a reclaimed segment never maps onto a live one.
        index.set_oldest(70_006);
        assert!(index.get(3, 42).unwrap().segment > 70_006 + MAX_SEGMENT_SPAN);
        let (n, _) = index.drain_segment(70_005, false, false);
        assert_eq!((n, index.len()), (1, 1));
    }
}
