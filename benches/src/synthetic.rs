//! Built-in synthetic workloads, generated from a seed: no file needed, the same requests on
//! every machine and with every version of every dependency.
//!
//! The random numbers come from SplitMix64 (Steele, Lea and Flood, OOPSLA'14), implemented here
//! so that no crate update can change a trace; ranges and floats are derived from its 64-bit
//! outputs by fixed arithmetic. Zipf ranks are drawn by inverse transform over the exact CDF
//! (the only floating-point step is `powf`, which is correctly rounded in practice on every
//! platform Rust supports, and a different last bit would move a draw only when it lands within
//! one ULP of a bucket boundary).

use crate::trace::Request;

/// SplitMix64: a 64-bit state advanced by a Weyl sequence and finalised by a mixer.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with `seed` as its state.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)` from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An integer in `[0, n)` (multiply-shift; `n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The shape of a built-in workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Zipf over `keys` keys with exponent `skew`; ranks are scattered over the id space.
    Zipf {
        /// Distinct keys.
        keys: u64,
        /// The exponent.
        skew: f64,
    },
    /// A hot set re-read uniformly while a scan of keys used once streams through: each request
    /// is the next scan key with probability `scan_share`, else a uniform hot key.
    ScanHot {
        /// Hot keys.
        hot: u64,
        /// Share of the requests that belong to the scan.
        scan_share: f64,
    },
    /// `keys` keys requested in order, again and again.
    Loop {
        /// Keys in the loop.
        keys: u64,
    },
    /// A working set of `hot` keys read uniformly that moves to `hot` new keys every `period`
    /// requests.
    Shifting {
        /// Keys in the working set.
        hot: u64,
        /// Requests between two moves.
        period: u64,
    },
}

/// A built-in workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    /// Its name on the command line (`zipf-0.9`, `scan`, `loop`, `shift`).
    pub name: &'static str,
    /// Its shape.
    pub shape: Shape,
    /// Requests.
    pub requests: u64,
    /// Size of every object in bytes.
    pub value_size: u32,
    /// The seed.
    pub seed: u64,
}

/// The object size of the built-in workloads.
pub const VALUE_SIZE: u32 = 1024;

/// Requests of each built-in workload (about 100,000).
pub const REQUESTS: u64 = 100_000;

/// The built-in workloads, in report order.
pub fn builtin() -> Vec<Synthetic> {
    let w = |name, shape, requests| Synthetic {
        name,
        shape,
        requests,
        value_size: VALUE_SIZE,
        seed: 0x5EED_0000 + name_seed(name),
    };
    vec![
        w("zipf-0.7", Shape::Zipf { keys: 50_000, skew: 0.7 }, REQUESTS),
        w("zipf-0.9", Shape::Zipf { keys: 50_000, skew: 0.9 }, REQUESTS),
        w("zipf-1.1", Shape::Zipf { keys: 50_000, skew: 1.1 }, REQUESTS),
        w("scan", Shape::ScanHot { hot: 600, scan_share: 0.5 }, REQUESTS),
        // 1,011 keys: one pass more than 100,000 requests, so every pass is complete.
        w("loop", Shape::Loop { keys: 1_011 }, 1_011 * 99),
        w("shift", Shape::Shifting { hot: 800, period: 10_000 }, REQUESTS),
    ]
}

/// The built-in workload called `name`.
pub fn by_name(name: &str) -> Option<Synthetic> {
    builtin().into_iter().find(|w| w.name == name)
}

/// The names of the built-in workloads, for help texts and errors.
pub fn names() -> Vec<&'static str> {
    builtin().iter().map(|w| w.name).collect()
}

/// A stable per-name seed offset (FNV-1a of the name).
fn name_seed(name: &str) -> u64 {
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        & 0xffff
}

/// Scatters a rank over the id space (an odd multiplier is a bijection on `u64`).
fn scatter(rank: u64) -> u64 {
    rank.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Synthetic {
    /// One line on what the workload is.
    pub fn describe(&self) -> String {
        match self.shape {
            Shape::Zipf { keys, skew } => format!("zipf s = {skew} over {keys} keys"),
            Shape::ScanHot { hot, scan_share } => format!(
                "{hot} hot keys read uniformly, {:.0} % of the requests a scan of keys used once",
                scan_share * 100.0
            ),
            Shape::Loop { keys } => format!("{keys} keys in a loop"),
            Shape::Shifting { hot, period } => {
                format!(
                    "{hot} keys read uniformly, replaced by {hot} new keys every {period} requests"
                )
            }
        }
    }

    /// The requests (deterministic: the same for the same workload, always).
    pub fn generate(&self) -> Vec<Request> {
        let mut rng = SplitMix64::new(self.seed);
        let size = self.value_size;
        let n = usize::try_from(self.requests).expect("fits in memory");
        let mut out = Vec::with_capacity(n);
        match self.shape {
            Shape::Zipf { keys, skew } => {
                let keys = keys.max(1);
                let mut cdf = Vec::with_capacity(usize::try_from(keys).expect("fits"));
                let mut sum = 0.0;
                for rank in 1..=keys {
                    sum += 1.0 / (rank as f64).powf(skew);
                    cdf.push(sum);
                }
                for _ in 0..n {
                    let u = rng.next_f64() * sum;
                    let rank = (cdf.partition_point(|&c| c <= u) as u64).min(keys - 1);
                    out.push(Request { id: scatter(rank), size });
                }
            }
            Shape::ScanHot { hot, scan_share } => {
                let hot = hot.max(1);
                let mut scan = 0u64;
                for _ in 0..n {
                    let id = if rng.next_f64() < scan_share {
                        scan += 1;
                        // Scan keys live above the hot keys and are never repeated.
                        scatter(hot + scan)
                    } else {
                        scatter(rng.below(hot))
                    };
                    out.push(Request { id, size });
                }
            }
            Shape::Loop { keys } => {
                let keys = keys.max(1);
                out.extend((0..self.requests).map(|i| Request { id: scatter(i % keys), size }));
            }
            Shape::Shifting { hot, period } => {
                let (hot, period) = (hot.max(1), period.max(1));
                for i in 0..self.requests {
                    let window = i / period;
                    let id = scatter(window * hot + rng.below(hot));
                    out.push(Request { id, size });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{Capacity, Policy, simulate};

    #[test]
    fn splitmix64_is_the_published_generator() {
        // The first outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn workloads_are_deterministic_and_pinned() {
        for w in builtin() {
            let a = w.generate();
            assert_eq!(a.len() as u64, w.requests, "{}", w.name);
            assert_eq!(a, w.generate(), "{} twice", w.name);
        }
        // A fingerprint of every trace (FNV-1a over the ids): a change of generator, sampler
        // or parameters shows up here, and the published tables would change with it.
        let fp: Vec<(&str, u64)> = builtin()
            .iter()
            .map(|w| {
                let h = w.generate().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, r| {
                    r.id.to_le_bytes()
                        .iter()
                        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
                });
                (w.name, h)
            })
            .collect();
        assert_eq!(fp, PINNED);
    }

    const PINNED: [(&str, u64); 6] = [
        ("zipf-0.7", 0xf83be6be027343cd),
        ("zipf-0.9", 0x87986db2ebd33d2c),
        ("zipf-1.1", 0x3a4f5c5fdb653eb4),
        ("scan", 0x9ec3ab6f6af85fe8),
        ("loop", 0x2951c5642ad2c14e),
        ("shift", 0x51a503f775513033),
    ];

    #[test]
    fn loop_defeats_lru_and_fifo_exactly() {
        let w = by_name("loop").unwrap();
        let t = w.generate();
        for p in [Policy::Lru, Policy::Fifo] {
            assert_eq!(simulate(&t, p, Capacity::Entries(1000)).hits, 0, "{}", p.name());
        }
        // OPT keeps 1,000 of the 1,011 keys for good: every pass after the first hits 1,000.
        assert_eq!(simulate(&t, Policy::Opt, Capacity::Entries(1000)).hits, 98 * 1000);
    }

    #[test]
    fn scan_and_shift_behave_as_described() {
        let t = by_name("scan").unwrap().generate();
        let lru = simulate(&t, Policy::Lru, Capacity::Entries(1000)).hit_ratio();
        let s3 = simulate(&t, Policy::S3Fifo, Capacity::Entries(1000)).hit_ratio();
        let opt = simulate(&t, Policy::Opt, Capacity::Entries(1000)).hit_ratio();
        // The hot set (half of the requests) fits: a scan-resistant policy gets close to 50 %.
        assert!(s3 > lru, "S3-FIFO {s3} <= LRU {lru}");
        assert!(opt > 0.49 && opt < 0.5, "OPT {opt}");
        let t = by_name("shift").unwrap().generate();
        let lru = simulate(&t, Policy::Lru, Capacity::Entries(1000)).hit_ratio();
        // 800 keys per window of 10,000 requests: 800 cold misses per window at best.
        assert!(lru > 0.9 && lru <= 0.92, "LRU {lru}");
    }
}
