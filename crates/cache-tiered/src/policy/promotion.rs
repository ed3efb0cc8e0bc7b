//! Promotion policies: always, never, on the N-th hit within a window, or under a size limit.

use std::{collections::HashMap, time::Duration};

use cache_core::{Entry, Key, Timestamp};

use super::{Promotion, PromotionPolicy};
use parking_lot::Mutex;

/// Promotes every hit found below the top tier.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromoteAlways;

impl PromotionPolicy for PromoteAlways {
    fn on_hit(&self, _: &Key, _: &Entry, _: usize, _: Timestamp) -> Promotion {
        Promotion::Promote
    }

    /// Promotes ranged hits too (the whole value is read in the background).
    fn on_range_hit(&self, _: &Key, _: usize, _: Timestamp) -> Promotion {
        Promotion::Promote
    }
}

/// Never promotes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromoteNever;

impl PromotionPolicy for PromoteNever {
    fn on_hit(&self, _: &Key, _: &Entry, _: usize, _: Timestamp) -> Promotion {
        Promotion::Stay
    }
}

/// Promotes values of at most `max_bytes`. A ranged hit is not promoted: the value's size is
/// not known from it.
#[derive(Debug, Clone, Copy)]
pub struct PromoteUnderSize(pub u64);

impl PromotionPolicy for PromoteUnderSize {
    fn on_hit(&self, _: &Key, entry: &Entry, _: usize, _: Timestamp) -> Promotion {
        if entry.size() <= self.0 { Promotion::Promote } else { Promotion::Stay }
    }
}

/// Promotes a key on its N-th lower-tier hit within a window.
#[derive(Debug)]
pub struct PromoteOnNthHit {
    n: u32,
    window: Duration,
    max_tracked: usize,
    state: Mutex<(Timestamp, HashMap<u64, u32>)>,
}

impl PromoteOnNthHit {
    /// Promotes on hit number `n` within `window`, tracking at most `max_tracked` keys.
    pub fn new(n: u32, window: Duration, max_tracked: usize) -> PromoteOnNthHit {
        PromoteOnNthHit { n, window, max_tracked, state: Mutex::default() }
    }
}

impl PromotionPolicy for PromoteOnNthHit {
    fn on_hit(&self, key: &Key, _: &Entry, _: usize, now: Timestamp) -> Promotion {
        self.count(key, now)
    }

    /// A ranged hit counts as a hit; the N-th promotes the whole value.
    fn on_range_hit(&self, key: &Key, _: usize, now: Timestamp) -> Promotion {
        self.count(key, now)
    }
}

impl PromoteOnNthHit {
    fn count(&self, key: &Key, now: Timestamp) -> Promotion {
        let mut s = self.state.lock();
        let (start, seen) = &mut *s;
        if start.saturating_add(self.window) <= now {
            *start = now;
            seen.clear();
        }
        let h = key.hash().prefix_u64();
        if seen.len() >= self.max_tracked && !seen.contains_key(&h) {
            return Promotion::Stay;
        }
        let count = seen.entry(h).or_insert(0);
        *count += 1;
        if *count >= self.n {
            seen.remove(&h);
            Promotion::Promote
        } else {
            Promotion::Stay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_hit_promotes_on_the_nth() {
        let p = PromoteOnNthHit::new(3, Duration::from_secs(60), 10);
        let k = Key::new("t", "k").unwrap();
        let e = Entry::new("v");
        let t = Timestamp::from_millis(1);
        assert_eq!(p.on_hit(&k, &e, 1, t), Promotion::Stay);
        assert_eq!(p.on_hit(&k, &e, 1, t), Promotion::Stay);
        assert_eq!(p.on_hit(&k, &e, 1, t), Promotion::Promote);
    }

    #[test]
    fn under_size() {
        let k = Key::new("t", "k").unwrap();
        let t = Timestamp::ZERO;
        assert_eq!(PromoteUnderSize(3).on_hit(&k, &Entry::new("abc"), 1, t), Promotion::Promote);
        assert_eq!(PromoteUnderSize(3).on_hit(&k, &Entry::new("abcd"), 1, t), Promotion::Stay);
    }
}
