//! Shared helpers for the benches: key and value sets built the same way for every system
//! compared, so ratios compare systems, not inputs.

pub mod reference;
pub mod synthetic;
pub mod trace;

use bytes::Bytes;
use cache_core::Key;

/// `n` keys in namespace `bench`, with 16-byte key strings.
pub fn keys(n: usize) -> Vec<Key> {
    (0..n).map(|i| Key::new("bench", format!("key-{i:012}")).expect("valid key")).collect()
}

/// A value of `len` bytes, distinct per `seed`.
pub fn value(len: usize, seed: u64) -> Bytes {
    (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8).collect()
}

/// The cumulative Zipf distribution over `n` ranks (1 first) with exponent `s`: entry `i` is
/// the probability of a rank of `i + 1` or less.
pub fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for rank in 1..=n {
        sum += 1.0 / (rank as f64).powf(s);
        cdf.push(sum);
    }
    for c in &mut cdf {
        *c /= sum;
    }
    cdf
}
