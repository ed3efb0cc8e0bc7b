//! Which entries the top tier evicts are worth writing to the tier below.
//!
//! A RAM tier in front of a disk tier written on eviction is a small queue (RAM) in front of a
//! main queue (disk): the shape of S3-FIFO and of W-TinyLFU (whose small queue is its window).
//! Most objects are requested once, so what those policies add is the filter between the two:
//!
//! - S3-FIFO's second chance: an entry leaves the small queue for the main queue only if it was
//!   hit twice while small, or if a ghost (the tags of keys recently dropped this way)
//!   remembers it; the others are dropped and their tag enters the ghost.
//! - W-TinyLFU's admission: a frequency sketch counts every request; an entry leaves the small
//!   queue for the main queue only if its key was requested more often recently than a key the
//!   main queue let go recently (the entry it displaces). Frequent keys of any age win, a loop
//!   larger than the cache keeps the part that fits, and a scan never displaces the hot set.
//!
//! Either way the main queue holds what was used again, instead of every one-hit wonder the RAM
//! tier let go. Which test lets in the right entries depends on the workload. W-TinyLFU's alone
//! ([`DemotionFilter::tiny_lfu`]) did best on every real trace measured: a key requested as
//! often as the victim stays out, so a loop keeps the part that fits. With both tests, a hill
//! climber (`climber.rs`) tunes how much more frequent than the victim a candidate must be by
//! the hit ratio it measures; that lets a working set that moves in faster, at a cost on
//! frequency-driven workloads, whose hit ratio varies too much from sample to sample for the
//! climber to settle.

use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasherDefault,
    sync::atomic::{AtomicU64, Ordering},
};

use cache_core::{Key, KeyHash};
use parking_lot::Mutex;

use super::{climber::Climber, sketch::FrequencySketch};

/// Which entries evicted from the top tier are demoted to an
/// [`OnEviction`](crate::WritePolicy::OnEviction) tier below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemotionFilter {
    /// Every live entry the top tier evicts is demoted.
    All,
    /// S3-FIFO's filter: an evicted entry is demoted if it was read twice from the top tier
    /// since it was written there, or if its key is in the ghost of recently dropped keys;
    /// otherwise it is dropped and its key's tag enters the ghost.
    SecondChance {
        /// Most tags the ghost remembers (about 40 bytes of RAM each). `None`: as many entries
        /// as the tier below can hold (its capacity from `usage()` over the mean size of the
        /// entries evicted so far; at least 256), which is how S3-FIFO sizes it (like its main
        /// queue).
        ghost_entries: Option<usize>,
    },
    /// W-TinyLFU's admission: an evicted entry is demoted if its key's estimated recent
    /// request count (a 4-bit count-min sketch of every `get`, halved every ten times as many
    /// requests as the two tiers hold entries) is higher than that of a key the tier below
    /// recently evicted for space (each candidate is compared with the next of its latest
    /// victims: a thirty-second of the entries it holds, 4 to 64); otherwise it is dropped.
    /// Until the tier below first evicts, everything is demoted.
    ///
    /// The tier below must report its evictions (the NVMe tier does); building fails if it
    /// cannot. The sketch takes half a byte per counter, one counter per 16 bytes of the two
    /// tiers' capacity (at least 1,024 and at most 2^24 counters: 8 MiB), so a stack of 512-byte
    /// entries gets more than 32 counters per entry.
    TinyLfu {
        /// Also demote what [`DemotionFilter::SecondChance`] (with its adaptive ghost) would:
        /// an entry read twice while on top, or seen again while the ghost remembers it.
        /// Frequency alone keeps a hot set against scans and loops but is slow to let a new
        /// working set in; recency alone lets in whatever was read twice in a row. With both,
        /// the frequency test is tuned by a hill climber: a candidate must beat the victim's
        /// estimate by a bias (0 to 15, where 15 leaves only the second chance), and every
        /// sample of four times as many requests as the tiers hold entries (at least 4,096)
        /// the bias keeps moving while the stack's hit ratio rises and turns back when it
        /// falls, as Caffeine sizes its window. It starts at 15 and the first sample is the
        /// baseline, so a run shorter than two samples gets the second chance alone.
        second_chance: bool,
    },
}

impl DemotionFilter {
    /// [`DemotionFilter::SecondChance`] with a ghost sized like the tier below.
    pub const fn second_chance() -> DemotionFilter {
        DemotionFilter::SecondChance { ghost_entries: None }
    }

    /// [`DemotionFilter::TinyLfu`] without the second chance: W-TinyLFU's test alone, the
    /// filter of the stack `docs/benchmarks.md` measures against its own tiers. Choose
    /// `TinyLfu { second_chance: true }` instead where the working set moves as a whole
    /// faster than the sketch forgets (every few times the stack's entry count).
    pub const fn tiny_lfu() -> DemotionFilter {
        DemotionFilter::TinyLfu { second_chance: false }
    }
}

/// The smallest ghost an adaptive [`DemotionFilter::SecondChance`] keeps.
pub(crate) const MIN_GHOST: usize = 256;

/// Bits of each "read since written" set: 128 KiB. A collision can only demote an entry that
/// was not read twice (a wasted write) or, after a clear, drop one that was (the ghost gives it
/// its second chance later).
const TOUCHED_BITS: usize = 1 << 20;

/// The state behind [`DemotionFilter::SecondChance`].
pub(crate) struct SecondChance {
    /// Keys read at least once from the top tier since they were written there.
    once: Box<[AtomicU64]>,
    /// Keys read at least twice: S3-FIFO moves an object from its small queue to its main
    /// queue when it was hit twice there (libCacheSim's `move_to_main_threshold`), and once
    /// let in too much on every trace measured.
    twice: Box<[AtomicU64]>,
    ghost: Mutex<Ghost>,
    /// Whether the ghost follows the tier below's entry count.
    adaptive: bool,
    sizes: MeanSize,
}

/// The mean size of the entries the top tier evicts, which turns a tier's byte capacity into
/// an entry count.
#[derive(Default)]
struct MeanSize {
    /// Entries counted since the estimate was last used.
    asked: AtomicU64,
    /// Bytes and count of the entries counted.
    bytes: AtomicU64,
    seen: AtomicU64,
}

impl MeanSize {
    /// Counts an entry of `bytes`; whether a size derived from the mean should be refreshed
    /// now (on the first call and every 256th).
    fn count(&self, bytes: u64) -> bool {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
        self.asked.fetch_add(1, Ordering::Relaxed).is_multiple_of(256)
    }

    /// How many entries of the mean size `capacity` bytes hold.
    fn entries(&self, capacity: u64) -> u64 {
        let mean =
            (self.bytes.load(Ordering::Relaxed) / self.seen.load(Ordering::Relaxed).max(1)).max(1);
        capacity / mean
    }
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
            sizes: MeanSize::default(),
            once: (0..TOUCHED_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            twice: (0..TOUCHED_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
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
    fn touch(&self, key: &Key) {
        let (word, mask) = SecondChance::bit(key);
        // Most hits find the bit set already: a load is cheaper than a read-modify-write.
        if self.once[word].load(Ordering::Relaxed) & mask == 0 {
            self.once[word].fetch_or(mask, Ordering::Relaxed);
        } else if self.twice[word].load(Ordering::Relaxed) & mask == 0 {
            self.twice[word].fetch_or(mask, Ordering::Relaxed);
        }
    }

    /// `key` was written to the top tier: it has not been read there since.
    fn written(&self, key: &Key) {
        let (word, mask) = SecondChance::bit(key);
        if self.once[word].load(Ordering::Relaxed) & mask != 0 {
            self.once[word].fetch_and(!mask, Ordering::Relaxed);
        }
        if self.twice[word].load(Ordering::Relaxed) & mask != 0 {
            self.twice[word].fetch_and(!mask, Ordering::Relaxed);
        }
    }

    /// Counts an evicted entry of `bytes` (key and value) toward the mean entry size; whether
    /// the ghost's size should be refreshed from the tier below now (every 256 calls).
    fn wants_size(&self, bytes: u64) -> bool {
        self.adaptive && self.sizes.count(bytes)
    }

    /// Sizes the ghost like a tier of `capacity` bytes holding entries of the mean size seen.
    fn resize(&self, capacity: u64) {
        self.set_ghost_entries(self.sizes.entries(capacity));
    }

    /// Sizes the ghost to `entries` tags (at least [`MIN_GHOST`]).
    fn set_ghost_entries(&self, entries: u64) {
        let cap = usize::try_from(entries).unwrap_or(usize::MAX).max(MIN_GHOST);
        self.ghost.lock().cap = cap;
    }

    /// Whether `key`, just evicted from the top tier, should be demoted; a key that is not
    /// enters the ghost.
    fn admit(&self, key: &Key) -> bool {
        let (word, mask) = SecondChance::bit(key);
        self.once[word].fetch_and(!mask, Ordering::Relaxed);
        let read_twice = self.twice[word].fetch_and(!mask, Ordering::Relaxed) & mask != 0;
        let tag = key.hash().prefix_u64();
        let mut ghost = self.ghost.lock();
        if read_twice {
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

/// Most victims of the tier below remembered for [`DemotionFilter::TinyLfu`]'s comparisons.
const VICTIMS: usize = 64;

/// How many of the tier below's latest victims a candidate is compared with, for a tier below
/// holding `entries`: a thirty-second of them (one segment's worth on the NVMe tier), 4 to
/// [`VICTIMS`]. The candidate should compete with what the tier evicts now; in a small tier,
/// 64 victims reach back to entries it let go long ago, whose counts have faded since, and
/// they let in too much.
fn victims_for(entries: u64) -> usize {
    usize::try_from(entries / 32).unwrap_or(usize::MAX).clamp(4, VICTIMS)
}

/// The state behind [`DemotionFilter::TinyLfu`].
pub(crate) struct TinyLfu {
    sketch: FrequencySketch,
    /// The keys the tier below evicted for space most recently, and which one the next
    /// candidate is compared with: a candidate competes with one victim, as in W-TinyLFU, and
    /// the next candidate with the next victim.
    victims: Mutex<Victims>,
    sizes: MeanSize,
    /// With `second_chance`, S3-FIFO's filter, whose yes also demotes.
    second_chance: Option<SecondChance>,
    /// With `second_chance`, tunes how much more frequent than the victim a candidate must
    /// be (without it the test is W-TinyLFU's, bias 0).
    climber: Option<Climber>,
}

struct Victims {
    ring: Vec<KeyHash>,
    /// Most victims remembered: see [`victims_for`].
    cap: usize,
    /// Where the next victim is written once the ring is full.
    next_write: usize,
    /// Which victim the next candidate competes with.
    next_read: usize,
}

impl TinyLfu {
    /// A filter for a top tier and a tier below of `capacity` bytes together.
    fn new(capacity: u64, second_chance: bool) -> TinyLfu {
        let counters = usize::try_from(capacity / 16).unwrap_or(usize::MAX).min(1 << 24);
        TinyLfu {
            sketch: FrequencySketch::new(counters, u64::MAX),
            victims: Mutex::new(Victims {
                ring: Vec::new(),
                cap: VICTIMS,
                next_write: 0,
                next_read: 0,
            }),
            sizes: MeanSize::default(),
            second_chance: second_chance.then(|| SecondChance::new(None)),
            climber: second_chance.then(Climber::new),
        }
    }

    fn admit(&self, key: &Key) -> bool {
        // Asked first and always: a key it turns down enters its ghost.
        let second_chance = self.second_chance.as_ref().is_some_and(|s| s.admit(key));
        second_chance || self.more_frequent_than_a_victim(key)
    }

    /// W-TinyLFU's test: whether `key` was requested more often recently than the next victim
    /// of the tier below (true while the tier below has evicted nothing).
    fn more_frequent_than_a_victim(&self, key: &Key) -> bool {
        let victim = {
            let mut v = self.victims.lock();
            if v.ring.is_empty() {
                return true;
            }
            let i = v.next_read % v.ring.len();
            v.next_read = i + 1;
            v.ring[i]
        };
        let bias = self.climber.as_ref().map_or(0, Climber::bias);
        u64::from(self.sketch.estimate(key.hash()))
            > u64::from(self.sketch.estimate(&victim)) + bias
    }

    /// Remembers the latest `cap` victims from now on.
    fn set_victims(&self, cap: usize) {
        let mut v = self.victims.lock();
        if cap < v.ring.len() {
            // Keep the latest: the slots before `next_write`, newest first.
            let len = v.ring.len();
            let latest =
                (1..=cap).map(|i| v.ring[(v.next_write + len - i) % len]).collect::<Vec<_>>();
            v.ring = latest.into_iter().rev().collect();
            v.next_write = 0;
            v.next_read = 0;
        }
        v.cap = cap;
    }

    fn evicted_below(&self, key: &Key) {
        let mut v = self.victims.lock();
        if v.ring.len() < v.cap {
            v.ring.push(*key.hash());
        } else {
            let i = v.next_write % v.ring.len();
            v.ring[i] = *key.hash();
            v.next_write = i + 1;
        }
    }
}

/// The state of a [`DemotionFilter`] other than `All`.
pub(crate) enum Filter {
    SecondChance(SecondChance),
    TinyLfu(TinyLfu),
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::SecondChance(s) => s.fmt(f),
            Filter::TinyLfu(t) => f.debug_tuple("TinyLfu").field(&t.sketch).finish(),
        }
    }
}

impl Filter {
    /// The filter's state, for a top tier and a tier below of `capacity` bytes together.
    pub(crate) fn new(filter: DemotionFilter, capacity: u64) -> Option<Filter> {
        match filter {
            DemotionFilter::All => None,
            DemotionFilter::SecondChance { ghost_entries } => {
                Some(Filter::SecondChance(SecondChance::new(ghost_entries)))
            }
            DemotionFilter::TinyLfu { second_chance } => {
                Some(Filter::TinyLfu(TinyLfu::new(capacity, second_chance)))
            }
        }
    }

    /// Whether the filter needs to hear what the tier below evicts.
    pub(crate) fn needs_victims(&self) -> bool {
        matches!(self, Filter::TinyLfu(_))
    }

    /// `key` was requested (a `get`, hit or miss).
    pub(crate) fn requested(&self, key: &Key) {
        if let Filter::TinyLfu(t) = self {
            t.sketch.increment(key.hash());
        }
    }

    /// A `get` of the stack ended: a hit in any tier, or a miss.
    pub(crate) fn outcome(&self, hit: bool) {
        if let Filter::TinyLfu(TinyLfu { climber: Some(c), .. }) = self {
            c.record(hit);
        }
    }

    /// `key` was read from tier `tier` (0: the top).
    pub(crate) fn hit(&self, tier: usize, key: &Key) {
        match (self, tier) {
            (Filter::SecondChance(s), 0) => s.touch(key),
            (Filter::TinyLfu(TinyLfu { second_chance: Some(s), .. }), 0) => s.touch(key),
            _ => {}
        }
    }

    /// `key` was written to the top tier.
    pub(crate) fn written(&self, key: &Key) {
        match self {
            Filter::SecondChance(s) => s.written(key),
            Filter::TinyLfu(t) => {
                if let Some(s) = &t.second_chance {
                    s.written(key);
                }
            }
        }
    }

    /// Counts an entry of `bytes` (key and value) evicted from the top tier; whether
    /// [`Filter::resize`] should be called now.
    pub(crate) fn wants_size(&self, bytes: u64) -> bool {
        match self {
            Filter::SecondChance(s) => s.wants_size(bytes),
            Filter::TinyLfu(t) => t.sizes.count(bytes),
        }
    }

    /// Follows the tiers' capacities in bytes: the top tier's and the one below's.
    pub(crate) fn resize(&self, top: u64, below: u64) {
        match self {
            Filter::SecondChance(s) => s.resize(below),
            Filter::TinyLfu(t) => {
                if let Some(s) = &t.second_chance {
                    // Its ghost follows the same mean entry size.
                    s.set_ghost_entries(t.sizes.entries(below));
                }
                t.set_victims(victims_for(t.sizes.entries(below)));
                let entries = t.sizes.entries(top.saturating_add(below)).max(1);
                t.sketch.set_period(entries.saturating_mul(10));
                if let Some(c) = &t.climber {
                    c.set_entries(entries);
                }
            }
        }
    }

    /// Whether `key`, just evicted from the top tier, should be demoted.
    pub(crate) fn admit(&self, key: &Key) -> bool {
        match self {
            Filter::SecondChance(s) => s.admit(key),
            Filter::TinyLfu(t) => t.admit(key),
        }
    }

    /// The tier below evicted `key` for space.
    pub(crate) fn evicted_below(&self, key: &Key) {
        if let Filter::TinyLfu(t) = self {
            t.evicted_below(key);
        }
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
        f.touch(&key(1));
        assert!(f.admit(&key(1)), "read twice while in the top tier");
        f.written(&key(9));
        f.touch(&key(9));
        assert!(!f.admit(&key(9)), "read once: like a one-hit wonder, into the ghost");
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
    fn tiny_lfu_demotes_what_is_requested_more_often_than_what_the_tier_below_let_go() {
        let f = Filter::new(DemotionFilter::TinyLfu { second_chance: false }, 1 << 20).unwrap();
        assert!(f.admit(&key(1)), "nothing evicted below yet: everything goes down");
        f.evicted_below(&key(100));
        f.requested(&key(100));
        f.requested(&key(100));
        f.requested(&key(1));
        assert!(!f.admit(&key(1)), "requested once, the victim twice");
        for _ in 0..2 {
            f.requested(&key(1));
        }
        assert!(f.admit(&key(1)), "requested three times, the victim twice");
        assert!(!f.admit(&key(2)), "never requested");
    }

    #[test]
    fn tiny_lfu_compares_each_candidate_with_the_next_victim() {
        let f = Filter::new(DemotionFilter::TinyLfu { second_chance: false }, 1 << 20).unwrap();
        f.evicted_below(&key(100));
        f.evicted_below(&key(101));
        for _ in 0..3 {
            f.requested(&key(100));
        }
        f.requested(&key(1));
        assert!(!f.admit(&key(1)), "against key 100, requested 3 times");
        assert!(f.admit(&key(1)), "against key 101, never requested");
        assert!(!f.admit(&key(1)), "key 100 again");
    }

    #[test]
    fn a_candidate_competes_with_the_latest_victims_of_a_small_tier() {
        assert_eq!(victims_for(225), 7, "a thirty-second of the entries below");
        assert_eq!(victims_for(10), 4);
        assert_eq!(victims_for(1 << 20), VICTIMS);
        let f = Filter::new(DemotionFilter::tiny_lfu(), 1 << 20).unwrap();
        let Filter::TinyLfu(t) = &f else { unreachable!() };
        for k in 100..110 {
            f.evicted_below(&key(k));
        }
        for _ in 0..3 {
            f.requested(&key(109));
            f.requested(&key(108));
        }
        f.requested(&key(1));
        t.set_victims(2);
        assert_eq!(t.victims.lock().ring.len(), 2, "the two latest stay");
        assert!(!f.admit(&key(1)), "against key 108");
        assert!(!f.admit(&key(1)), "against key 109, not an older, forgotten victim");
        f.evicted_below(&key(200));
        assert!(f.admit(&key(1)), "against key 200, never requested, which replaced key 108");
        assert!(!f.admit(&key(1)), "against key 109 again");
    }

    #[test]
    fn with_the_second_chance_either_test_demotes() {
        let f = Filter::new(DemotionFilter::TinyLfu { second_chance: true }, 1 << 20).unwrap();
        f.evicted_below(&key(100));
        for _ in 0..3 {
            f.requested(&key(100));
        }
        f.written(&key(1));
        f.hit(0, &key(1));
        f.hit(0, &key(1));
        assert!(f.admit(&key(1)), "read twice on top, though less frequent than the victim");
        f.written(&key(2));
        assert!(!f.admit(&key(2)), "neither read on top nor frequent: dropped, into the ghost");
        f.written(&key(2));
        assert!(f.admit(&key(2)), "the ghost remembers it");
        for _ in 0..5 {
            f.requested(&key(3));
        }
        f.written(&key(3));
        assert!(!f.admit(&key(3)), "the climber starts with the frequency test off");
        let Filter::TinyLfu(t) = &f else { unreachable!() };
        t.climber.as_ref().unwrap().set_bias(0);
        f.written(&key(3));
        assert!(f.admit(&key(3)), "bias 0: never read on top, but more frequent than the victim");
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
