//! Which entries the top tier evicts are worth writing to the tier below: S3-FIFO's filter.
//!
//! A RAM tier in front of a disk tier written on eviction is S3-FIFO's structure: a small queue
//! (RAM) in front of a main queue (disk). What S3-FIFO adds is the filter between them: most
//! objects are requested once, so an entry leaves the small queue for the main queue only if it
//! was hit while small, or if a ghost (the tags of keys recently dropped this way) remembers
//! it; the others are dropped and their tag enters the ghost. The main queue then holds what was
//! used twice, instead of every one-hit wonder the RAM tier let go.

use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasherDefault,
    sync::atomic::{AtomicU64, Ordering},
};

use cache_core::Key;
use parking_lot::Mutex;

/// Which entries evicted from the top tier are demoted to an
/// [`OnEviction`](crate::WritePolicy::OnEviction) tier below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemotionFilter {
    /// Every live entry the top tier evicts is demoted.
    All,
    /// S3-FIFO's filter: an evicted entry is demoted if it was read from the top tier since it
    /// was written there, or if its key is in the ghost of recently dropped keys; otherwise it
    /// is dropped and its key's tag enters the ghost.
    SecondChance {
        /// Most tags the ghost remembers (about 40 bytes of RAM each). `None`: as many entries
        /// as the tier below can hold (its capacity from `usage()` over the mean size of the
        /// entries evicted so far; at least 256), which is how S3-FIFO sizes it (like its main
        /// queue).
        ghost_entries: Option<usize>,
    },
}

impl DemotionFilter {
    /// [`DemotionFilter::SecondChance`] with a ghost sized like the tier below.
    pub const fn second_chance() -> DemotionFilter {
        DemotionFilter::SecondChance { ghost_entries: None }
    }
}

/// The smallest ghost an adaptive [`DemotionFilter::SecondChance`] keeps.
pub(crate) const MIN_GHOST: usize = 256;

/// Bits of the "read since written" set: 128 KiB. A collision can only demote an entry that
/// was not read (a wasted write) or, after a clear, drop one that was (the ghost gives it its
/// second chance later).
const TOUCHED_BITS: usize = 1 << 20;

/// The state behind [`DemotionFilter::SecondChance`].
pub(crate) struct SecondChance {
    touched: Box<[AtomicU64]>,
    ghost: Mutex<Ghost>,
    /// Whether the ghost follows the tier below's entry count.
    adaptive: bool,
    /// Admissions asked since the ghost's size was last refreshed.
    asked: AtomicU64,
    /// Bytes and count of the entries asked about (for their mean size).
    seen_bytes: AtomicU64,
    seen: AtomicU64,
}

impl std::fmt::Debug for SecondChance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondChance").field("ghost", &self.ghost.lock().live.len()).finish()
    }
}

/// A bounded FIFO of key tags. A tag used by a ghost hit leaves `live` at once and its slot in
/// `order` ages out later: each slot carries the sequence number it was entered with, and only
/// the slot that matches `live` removes the tag.
struct Ghost {
    order: VecDeque<(u64, u64)>,
    live: HashMap<u64, u64, BuildHasherDefault<TagHasher>>,
    next: u64,
    cap: usize,
}

/// Key tags are already uniform hash bits: hashing them again would only cost time.
#[derive(Default)]
struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl SecondChance {
    pub(crate) fn new(ghost_entries: Option<usize>) -> SecondChance {
        SecondChance {
            adaptive: ghost_entries.is_none(),
            asked: AtomicU64::new(0),
            seen_bytes: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            touched: (0..TOUCHED_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            ghost: Mutex::new(Ghost {
                order: VecDeque::new(),
                live: HashMap::default(),
                next: 0,
                cap: ghost_entries.unwrap_or(MIN_GHOST).max(1),
            }),
        }
    }

    fn bit(key: &Key) -> (usize, u64) {
        let h = key.hash().prefix_u64() as usize % TOUCHED_BITS;
        (h / 64, 1u64 << (h % 64))
    }

    /// `key` was read from the top tier.
    pub(crate) fn touch(&self, key: &Key) {
        let (word, mask) = SecondChance::bit(key);
        // Most hits find the bit set already: a load is cheaper than a read-modify-write.
        if self.touched[word].load(Ordering::Relaxed) & mask == 0 {
            self.touched[word].fetch_or(mask, Ordering::Relaxed);
        }
    }

    /// `key` was written to the top tier: it has not been read there since.
    pub(crate) fn written(&self, key: &Key) {
        let (word, mask) = SecondChance::bit(key);
        if self.touched[word].load(Ordering::Relaxed) & mask != 0 {
            self.touched[word].fetch_and(!mask, Ordering::Relaxed);
        }
    }

    /// Counts an evicted entry of `bytes` (key and value) toward the mean entry size; whether
    /// the ghost's size should be refreshed from the tier below now (every 256 calls).
    pub(crate) fn wants_size(&self, bytes: u64) -> bool {
        if !self.adaptive {
            return false;
        }
        self.seen_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
        self.asked.fetch_add(1, Ordering::Relaxed).is_multiple_of(256)
    }

    /// Sizes the ghost like a tier of `capacity` bytes holding entries of the mean size seen.
    pub(crate) fn resize(&self, capacity: u64) {
        let mean = (self.seen_bytes.load(Ordering::Relaxed)
            / self.seen.load(Ordering::Relaxed).max(1))
        .max(1);
        let entries = capacity / mean;
        let cap = usize::try_from(entries).unwrap_or(usize::MAX).max(MIN_GHOST);
        self.ghost.lock().cap = cap;
    }

    /// Whether `key`, just evicted from the top tier, should be demoted; a key that is not
    /// enters the ghost.
    pub(crate) fn admit(&self, key: &Key) -> bool {
        let (word, mask) = SecondChance::bit(key);
        let was_touched = self.touched[word].fetch_and(!mask, Ordering::Relaxed) & mask != 0;
        let tag = key.hash().prefix_u64();
        let mut ghost = self.ghost.lock();
        if was_touched {
            return true;
        }
        if ghost.live.remove(&tag).is_some() {
            // Its second appearance within the ghost's reach: into the main queue.
            return true;
        }
        ghost.insert(tag);
        false
    }
}

impl Ghost {
    fn insert(&mut self, tag: u64) {
        while self.order.len() >= self.cap {
            let Some((old, seq)) = self.order.pop_front() else { break };
            if self.live.get(&old) == Some(&seq) {
                self.live.remove(&old);
            }
        }
        self.next += 1;
        self.live.insert(tag, self.next);
        self.order.push_back((tag, self.next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: u32) -> Key {
        Key::new("t", k.to_le_bytes().to_vec()).unwrap()
    }

    #[test]
    fn read_entries_are_demoted_and_one_hit_wonders_get_a_second_chance() {
        let f = SecondChance::new(Some(2));
        f.written(&key(1));
        f.touch(&key(1));
        assert!(f.admit(&key(1)), "read while in the top tier");
        f.written(&key(2));
        assert!(!f.admit(&key(2)), "never read: dropped, remembered by the ghost");
        f.written(&key(2));
        assert!(f.admit(&key(2)), "seen again while the ghost remembers it");
        f.written(&key(2));
        assert!(!f.admit(&key(2)), "a ghost hit is used once");
        for k in 3..6 {
            assert!(!f.admit(&key(k)));
        }
        assert!(!f.admit(&key(2)), "the ghost holds two tags: key 2 aged out");
    }

    #[test]
    fn an_adaptive_ghost_is_sized_by_the_capacity_below() {
        let f = SecondChance::new(None);
        assert!(f.wants_size(1000), "the first call refreshes");
        f.resize(1_000_000);
        assert_eq!(f.ghost.lock().cap, 1000, "1 MB below, 1 kB entries");
        f.resize(1000);
        assert_eq!(f.ghost.lock().cap, MIN_GHOST);
    }

    #[test]
    fn a_rewrite_clears_the_read_mark() {
        let f = SecondChance::new(Some(16));
        f.touch(&key(7));
        f.written(&key(7));
        assert!(!f.admit(&key(7)));
    }
}
