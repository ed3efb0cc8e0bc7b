//! TinyLFU's frequency sketch: a count-min sketch of 4-bit counters that halves itself
//! periodically, so it estimates how often each key was requested recently.
//!
//! The layout is Caffeine's: every key maps to one 64-byte block of eight words, and its four
//! counters sit in that block, so an increment or an estimate touches one cache line. The key
//! hash is BLAKE3, so its bytes are already independent uniform bits: the block and each
//! counter's word and nibble are cut from different bytes of it, no rehashing.
//!
//! Concurrency: counters are read and written with relaxed loads and stores, not
//! read-modify-writes. Two racing increments of one word may lose one of them; no counter can
//! overflow into its neighbour. An estimate is a heuristic's input: a lost count is noise, a
//! single-threaded caller sees exact counts.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::KeyHash;

/// Eight words: one cache line.
#[repr(align(64))]
struct Block([AtomicU64; 8]);

/// The largest value of a 4-bit counter.
const MAX_COUNT: u64 = 15;

/// Keeps every nibble's three low bits after a shift right by one: halves 16 counters at once.
const HALF_MASK: u64 = 0x7777_7777_7777_7777;

/// A count-min sketch of recent request frequency, halved every `period` requests.
pub(crate) struct FrequencySketch {
    blocks: Box<[Block]>,
    /// Requests since the last halving. Every request is counted: sampling one in eight by
    /// key-hash bits, as before, counted a hot key always or never, so on a skewed workload the
    /// period came out several times too long or too short.
    requests: AtomicU64,
    /// Requests between halvings.
    period: AtomicU64,
}

impl std::fmt::Debug for FrequencySketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrequencySketch")
            .field("counters", &(self.blocks.len() * 8 * 16))
            .field("period", &self.period.load(Ordering::Relaxed))
            .finish()
    }
}

impl FrequencySketch {
    /// A sketch of about `counters` counters (rounded up to a power of two, at least 1,024;
    /// half a byte each), halved every `period` requests.
    pub(crate) fn new(counters: usize, period: u64) -> FrequencySketch {
        let blocks = (counters.max(1024) / 128).next_power_of_two();
        FrequencySketch {
            blocks: (0..blocks).map(|_| Block(Default::default())).collect(),
            requests: AtomicU64::new(0),
            period: AtomicU64::new(period.max(1)),
        }
    }

    /// Sets the requests between halvings (TinyLFU's sample size: about ten times the number
    /// of entries the cache holds).
    pub(crate) fn set_period(&self, period: u64) {
        self.period.store(period.max(1), Ordering::Relaxed);
    }

    /// The block and, for each of the four counters, its word and bit shift.
    fn slots(&self, hash: &KeyHash) -> (&Block, [(usize, u32); 4]) {
        let h = &hash.0;
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[8..16]);
        let block = &self.blocks[(u64::from_le_bytes(b) as usize) & (self.blocks.len() - 1)];
        let mut slots = [(0, 0); 4];
        for (i, slot) in slots.iter_mut().enumerate() {
            // Counter i uses word bits from byte 16 + i and a nibble from byte 20 + i; four
            // counters in distinct words where the bytes allow (a shared word only costs
            // accuracy).
            let word = usize::from(h[16 + i] & 7);
            let nibble = u32::from(h[20 + i] & 15);
            *slot = (word, nibble * 4);
        }
        (block, slots)
    }

    /// Counts one request for `hash`.
    pub(crate) fn increment(&self, hash: &KeyHash) {
        let (block, slots) = self.slots(hash);
        for (word, shift) in slots {
            let w = &block.0[word];
            let v = w.load(Ordering::Relaxed);
            if (v >> shift) & MAX_COUNT < MAX_COUNT {
                w.store(v + (1 << shift), Ordering::Relaxed);
            }
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        // One caller claims the halving: the one whose count is still the latest.
        if n >= self.period.load(Ordering::Relaxed)
            && self.requests.compare_exchange(n, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.halve();
        }
    }

    /// The estimated recent requests for `hash` (0 to 15).
    pub(crate) fn estimate(&self, hash: &KeyHash) -> u8 {
        let (block, slots) = self.slots(hash);
        let min = slots
            .iter()
            .map(|&(word, shift)| (block.0[word].load(Ordering::Relaxed) >> shift) & MAX_COUNT)
            .min()
            .unwrap_or(0);
        min as u8
    }

    /// Halves every counter (TinyLFU's reset): old popularity fades, recent popularity wins.
    fn halve(&self) {
        for block in self.blocks.iter() {
            for w in &block.0 {
                let v = w.load(Ordering::Relaxed);
                w.store((v >> 1) & HALF_MASK, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cache_core::Key;

    use super::*;

    fn hash(k: u32) -> KeyHash {
        *Key::new("t", k.to_le_bytes().to_vec()).unwrap().hash()
    }

    #[test]
    fn counts_saturate_at_fifteen() {
        let s = FrequencySketch::new(4096, u64::MAX);
        let h = hash(1);
        assert_eq!(s.estimate(&h), 0);
        for n in 1..=20u8 {
            s.increment(&h);
            assert_eq!(s.estimate(&h), n.min(15));
        }
        assert_eq!(s.estimate(&hash(2)), 0, "another key is not counted by this one");
    }

    #[test]
    fn a_popular_key_outranks_many_keys_seen_once() {
        let s = FrequencySketch::new(4096, u64::MAX);
        for _ in 0..5 {
            s.increment(&hash(0));
        }
        let mut above = 0;
        for k in 1..2000 {
            s.increment(&hash(k));
            if s.estimate(&hash(k)) >= s.estimate(&hash(0)) {
                above += 1;
            }
        }
        assert!(above < 20, "{above} of 1999 one-time keys looked as popular as a 5-time key");
    }

    #[test]
    fn counts_halve_every_period_of_requests() {
        let s = FrequencySketch::new(4096, 64);
        let h = hash(7);
        for _ in 0..12 {
            s.increment(&h);
        }
        for k in 1000..1051 {
            s.increment(&hash(k));
        }
        assert_eq!(s.estimate(&h), 12, "63 requests: not yet");
        s.increment(&hash(2000));
        assert_eq!(s.estimate(&h), 6, "the 64th request halves every counter");
        for k in 3000..3064 {
            s.increment(&hash(k));
        }
        assert_eq!(s.estimate(&h), 3, "and the next 64 again, whichever keys they were");
    }
}
