//! Synthetic workloads: key and value-size distributions, the read/write mix, and the
//! concurrent driver that records latencies in HDR histograms.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::systems::{System, namespace};

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent `--zipf-s`.
    #[default]
    Zipf,
    /// A hot set: `--hot-fraction` of the keys get `--hot-prob` of the requests.
    HotSet,
    /// A sequential scan over all keys, wrapping around.
    Sequential,
}

/// A workload, from flags or a TOML file (same field names).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub(crate) struct Workload {
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) keys: u64,
    /// Key distribution.
    #[arg(long, value_enum, default_value_t = KeyDist::Zipf)]
    pub(crate) dist: KeyDist,
    /// Zipf exponent.
    #[arg(long, default_value_t = 0.99)]
    pub(crate) zipf_s: f64,
    /// Fraction of keys in the hot set.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) hot_fraction: f64,
    /// Probability that a request goes to the hot set.
    #[arg(long, default_value_t = 0.9)]
    pub(crate) hot_prob: f64,
    /// Smallest value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub(crate) value_min: u32,
    /// Largest value size in bytes (equal to `--value-min` for a fixed size).
    #[arg(long, default_value_t = 1024)]
    pub(crate) value_max: u32,
    /// Fraction of operations that are reads (a read miss fills the key).
    #[arg(long, default_value_t = 0.9)]
    pub(crate) read_ratio: f64,
    /// Concurrent tasks issuing operations.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Total operations (ignored when `--duration-secs` is set).
    #[arg(long, default_value_t = 200_000)]
    pub(crate) ops: u64,
    /// Run for this many seconds instead of a fixed operation count.
    #[arg(long)]
    pub(crate) duration_secs: Option<f64>,
    /// Operations before measuring starts (filling the cache).
    #[arg(long, default_value_t = 0)]
    pub(crate) warmup_ops: u64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            keys: 100_000,
            dist: KeyDist::Zipf,
            zipf_s: 0.99,
            hot_fraction: 0.1,
            hot_prob: 0.9,
            value_min: 1024,
            value_max: 1024,
            read_ratio: 0.9,
            concurrency: 4,
            ops: 200_000,
            duration_secs: None,
            warmup_ops: 0,
            seed: 42,
        }
    }
}

/// Draws keys by the workload's distribution.
pub(crate) struct KeyGen {
    dist: KeyDist,
    keys: u64,
    cdf: Arc<Vec<f64>>,
    hot: u64,
    hot_prob: f64,
    next: u64,
}

impl KeyGen {
    pub(crate) fn new(w: &Workload, cdf: Arc<Vec<f64>>, task: usize) -> KeyGen {
        let keys = w.keys.max(1);
        KeyGen {
            dist: w.dist,
            keys,
            cdf,
            hot: ((keys as f64 * w.hot_fraction) as u64).clamp(1, keys),
            hot_prob: w.hot_prob,
            next: (keys / w.concurrency.max(1) as u64) * task as u64,
        }
    }

    /// The zipf CDF over `keys` ranks (empty for other distributions).
    pub(crate) fn zipf_cdf(w: &Workload) -> Arc<Vec<f64>> {
        if w.dist != KeyDist::Zipf {
            return Arc::new(Vec::new());
        }
        Arc::new(cache_bench::zipf_cdf(w.keys.max(1) as usize, w.zipf_s))
    }

    pub(crate) fn next(&mut self, rng: &mut StdRng) -> u64 {
        match self.dist {
            KeyDist::Uniform => rng.random_range(0..self.keys),
            KeyDist::Zipf => {
                let u: f64 = rng.random();
                // Scatter ranks over the id space so hot keys are not neighbours.
                let rank = self.cdf.partition_point(|&c| c < u) as u64;
                rank.min(self.keys - 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.keys
            }
            KeyDist::HotSet => {
                if rng.random::<f64>() < self.hot_prob {
                    rng.random_range(0..self.hot)
                } else {
                    rng.random_range(0..self.keys)
                }
            }
            KeyDist::Sequential => {
                let k = self.next % self.keys;
                self.next += 1;
                k
            }
        }
    }
}

/// Latency histograms (nanoseconds) and counters of one run.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) get: Histogram<u64>,
    pub(crate) put: Histogram<u64>,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) ops: u64,
    pub(crate) elapsed: Duration,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Summary numbers of one run, for JSON and tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunResult {
    pub(crate) system: String,
    pub(crate) ops: u64,
    pub(crate) elapsed_s: f64,
    pub(crate) ops_per_s: f64,
    pub(crate) hit_ratio: f64,
    pub(crate) get_p50_us: f64,
    pub(crate) get_p90_us: f64,
    pub(crate) get_p99_us: f64,
    pub(crate) get_p999_us: f64,
    pub(crate) get_max_us: f64,
    pub(crate) put_p50_us: f64,
    pub(crate) put_p99_us: f64,
    /// Get latency CDF points `(percentile, microseconds)` for plots.
    pub(crate) get_cdf: Vec<(f64, f64)>,
    /// Gets served by each tier of a tiered stack.
    pub(crate) served_by_tier: Vec<(String, u64)>,
    /// Throughput of every run this row summarises, in round order (one entry for one run).
    #[serde(default)]
    pub(crate) rounds_ops_per_s: Vec<f64>,
}

impl RunResult {
    pub(crate) fn new(system: &str, r: &Recorded, served: Vec<(String, u64)>) -> RunResult {
        let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        let lookups = r.hits + r.misses;
        let get_cdf = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0]
            .into_iter()
            .map(|q| (q * 100.0, us(&r.get, q)))
            .collect();
        RunResult {
            system: system.to_owned(),
            ops: r.ops,
            elapsed_s: secs,
            ops_per_s: r.ops as f64 / secs,
            hit_ratio: if lookups == 0 { 0.0 } else { r.hits as f64 / lookups as f64 },
            get_p50_us: us(&r.get, 0.5),
            get_p90_us: us(&r.get, 0.9),
            get_p99_us: us(&r.get, 0.99),
            get_p999_us: us(&r.get, 0.999),
            get_max_us: r.get.max() as f64 / 1000.0,
            put_p50_us: us(&r.put, 0.5),
            put_p99_us: us(&r.put, 0.99),
            get_cdf,
            served_by_tier: served,
            rounds_ops_per_s: vec![r.ops as f64 / secs],
        }
    }

    /// The run with the median throughput of `runs` (one system, several rounds), carrying every
    /// round's throughput so ratios can be paired by round.
    pub(crate) fn median_of(mut runs: Vec<RunResult>) -> RunResult {
        let rounds: Vec<f64> = runs.iter().map(|r| r.ops_per_s).collect();
        runs.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
        let mut median = runs.swap_remove(runs.len() / 2);
        median.rounds_ops_per_s = rounds;
        median
    }

    /// This system's throughput relative to `base`: the median of the per-round ratios when both
    /// ran the same rounds (so each ratio compares runs made back to back), else the ratio of
    /// the medians.
    pub(crate) fn throughput_ratio(&self, base: &RunResult) -> f64 {
        let (a, b) = (&self.rounds_ops_per_s, &base.rounds_ops_per_s);
        if a.len() > 1 && a.len() == b.len() {
            let mut ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y.max(1e-9)).collect();
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2]
        } else {
            self.ops_per_s / base.ops_per_s.max(1e-9)
        }
    }
}

/// A value pool: values are zero-copy slices of one buffer.
pub(crate) fn value_pool(max: u32) -> Bytes {
    Bytes::from((0..max.max(1)).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Runs `w` against `system` with `w.concurrency` tasks; `progress` counts operations.
pub(crate) async fn drive(
    system: Arc<System>,
    w: &Workload,
    progress: Arc<AtomicU64>,
) -> Result<Recorded> {
    let cdf = KeyGen::zipf_cdf(w);
    let pool = value_pool(w.value_max.max(w.value_min));
    // Warm-up: fill, single task, unmeasured.
    if w.warmup_ops > 0 {
        let ns = namespace();
        let mut rng = StdRng::seed_from_u64(w.seed ^ 0xdead_beef);
        let mut keys = KeyGen::new(w, cdf.clone(), 0);
        for _ in 0..w.warmup_ops {
            let id = keys.next(&mut rng);
            if !system.get(&ns, id).await? {
                let len = rng.random_range(w.value_min..=w.value_max.max(w.value_min));
                system.put(&ns, id, pool.slice(..len as usize)).await?;
            }
        }
        system.settle().await?;
    }
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = w.duration_secs.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..w.concurrency.max(1) {
        let (system, issued, progress, cdf, pool, w) = (
            system.clone(),
            issued.clone(),
            progress.clone(),
            cdf.clone(),
            pool.clone(),
            w.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ns = namespace();
            let mut rng = StdRng::seed_from_u64(w.seed.wrapping_add(t as u64));
            let mut keys = KeyGen::new(&w, cdf, t);
            let (mut get, mut put) = (histogram(), histogram());
            let (mut hits, mut misses, mut ops) = (0u64, 0u64, 0u64);
            loop {
                match deadline {
                    Some(d) if ops % 64 == 0 && Instant::now() >= d => break,
                    Some(_) => {}
                    None if issued.fetch_add(1, Ordering::Relaxed) >= w.ops => break,
                    None => {}
                }
                let id = keys.next(&mut rng);
                let len = rng.random_range(w.value_min..=w.value_max.max(w.value_min)) as usize;
                if rng.random::<f64>() < w.read_ratio {
                    let t0 = Instant::now();
                    let hit = system.get(&ns, id).await?;
                    get.saturating_record(t0.elapsed().as_nanos() as u64);
                    if hit {
                        hits += 1;
                    } else {
                        misses += 1;
                        let t0 = Instant::now();
                        system.put(&ns, id, pool.slice(..len)).await?;
                        put.saturating_record(t0.elapsed().as_nanos() as u64);
                    }
                } else {
                    let t0 = Instant::now();
                    system.put(&ns, id, pool.slice(..len)).await?;
                    put.saturating_record(t0.elapsed().as_nanos() as u64);
                }
                ops += 1;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok((get, put, hits, misses, ops))
        }));
    }
    let mut rec = Recorded {
        get: histogram(),
        put: histogram(),
        hits: 0,
        misses: 0,
        ops: 0,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (get, put, hits, misses, ops) = t.await??;
        rec.get.add(get)?;
        rec.put.add(put)?;
        rec.hits += hits;
        rec.misses += misses;
        rec.ops += ops;
    }
    rec.elapsed = start.elapsed();
    Ok(rec)
}
