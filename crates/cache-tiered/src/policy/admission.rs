//! Admission policies for slower tiers: a size range, a second-sighting frequency filter and a
//! write-rate budget.

use std::{collections::HashMap, time::Duration};

use cache_core::{Entry, Key, Rejection, Timestamp};

use super::{Admission, AdmissionPolicy};
use parking_lot::Mutex;

/// Admits values whose size is within `min..=max` bytes.
#[derive(Debug, Clone, Copy)]
pub struct SizeRange {
    /// Smallest admitted value.
    pub min: u64,
    /// Largest admitted value.
    pub max: u64,
}

impl AdmissionPolicy for SizeRange {
    fn admit(&self, _key: &Key, entry: &Entry, _now: Timestamp) -> Admission {
        let size = entry.size();
        if size < self.min {
            Admission::Reject(Rejection::TooSmall)
        } else if size > self.max {
            Admission::Reject(Rejection::TooLarge)
        } else {
            Admission::Admit
        }
    }
}

/// Admits a key on its second sighting within a window (protects flash from one-hit wonders).
///
/// Remembers up to `max_tracked` key hashes per window; the table is reset when a window ends, so
/// memory stays bounded.
#[derive(Debug)]
pub struct FrequencyFilter {
    window: Duration,
    max_tracked: usize,
    state: Mutex<FrequencyState>,
}

#[derive(Debug, Default)]
struct FrequencyState {
    window_start: Timestamp,
    seen: HashMap<u64, u32>,
}

impl FrequencyFilter {
    /// A filter with this window, tracking at most `max_tracked` keys per window.
    pub fn new(window: Duration, max_tracked: usize) -> FrequencyFilter {
        FrequencyFilter { window, max_tracked, state: Mutex::default() }
    }
}

impl AdmissionPolicy for FrequencyFilter {
    fn admit(&self, key: &Key, _entry: &Entry, now: Timestamp) -> Admission {
        let mut s = self.state.lock();
        if s.window_start.saturating_add(self.window) <= now {
            s.window_start = now;
            s.seen.clear();
        }
        if s.seen.len() >= self.max_tracked && !s.seen.contains_key(&key.hash().prefix_u64()) {
            return Admission::Reject(Rejection::Infrequent);
        }
        let count = s.seen.entry(key.hash().prefix_u64()).or_insert(0);
        *count += 1;
        if *count >= 2 { Admission::Admit } else { Admission::Reject(Rejection::Infrequent) }
    }
}

/// A token bucket of bytes per second, to bound the write rate into a tier (flash endurance).
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    burst: u64,
    state: Mutex<(f64, Timestamp)>,
}

impl RateLimit {
    /// At most `bytes_per_sec` on average, with bursts of up to `burst` bytes.
    pub fn new(bytes_per_sec: u64, burst: u64) -> RateLimit {
        RateLimit { bytes_per_sec, burst, state: Mutex::new((burst as f64, Timestamp::ZERO)) }
    }
}

impl AdmissionPolicy for RateLimit {
    fn admit(&self, _key: &Key, entry: &Entry, now: Timestamp) -> Admission {
        let mut s = self.state.lock();
        let (tokens, last) = &mut *s;
        if *last != Timestamp::ZERO {
            let elapsed = last.until(now).as_secs_f64();
            *tokens = (*tokens + elapsed * self.bytes_per_sec as f64).min(self.burst as f64);
        }
        *last = now;
        let need = entry.size() as f64;
        if need <= *tokens {
            *tokens -= need;
            Admission::Admit
        } else {
            Admission::Reject(Rejection::RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        Key::new("t", s.to_owned()).unwrap()
    }

    #[test]
    fn size_range_says_which_side() {
        let p = SizeRange { min: 2, max: 4 };
        let now = Timestamp::ZERO;
        assert_eq!(p.admit(&k("a"), &Entry::new("x"), now), Admission::Reject(Rejection::TooSmall));
        assert_eq!(p.admit(&k("a"), &Entry::new("xyz"), now), Admission::Admit);
        assert_eq!(
            p.admit(&k("a"), &Entry::new("xyzzy"), now),
            Admission::Reject(Rejection::TooLarge)
        );
    }

    #[test]
    fn frequency_filter_admits_second_sighting_within_window() {
        let f = FrequencyFilter::new(Duration::from_secs(10), 100);
        let t0 = Timestamp::from_millis(1_000);
        let e = Entry::new("v");
        assert_eq!(f.admit(&k("a"), &e, t0), Admission::Reject(Rejection::Infrequent));
        assert_eq!(
            f.admit(&k("a"), &e, t0.saturating_add(Duration::from_secs(1))),
            Admission::Admit
        );
        // A new window forgets.
        let later = t0.saturating_add(Duration::from_secs(20));
        assert_eq!(f.admit(&k("a"), &e, later), Admission::Reject(Rejection::Infrequent));
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let r = RateLimit::new(1000, 1000);
        let t0 = Timestamp::from_millis(1_000);
        let e = Entry::new(vec![0u8; 600]);
        assert_eq!(r.admit(&k("a"), &e, t0), Admission::Admit);
        assert_eq!(r.admit(&k("b"), &e, t0), Admission::Reject(Rejection::RateLimited));
        let t1 = t0.saturating_add(Duration::from_millis(500));
        assert_eq!(r.admit(&k("b"), &e, t1), Admission::Admit);
    }
}
