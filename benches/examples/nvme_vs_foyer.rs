//! Side by side, in one run: the NVMe tier alone against foyer's `HybridCache` with the
//! smallest memory tier it accepts (1 byte: every entry goes to its disk engine), the same disk
//! budget, 4 KiB and 64 KiB values and zipf-distributed keys. Prints put and get throughput
//! ratios (NVMe tier ÷ foyer) and both hit ratios.
//!
//! `cargo run --release -p cache-bench --example nvme_vs_foyer [-- ROUNDS]`
//!
//! Each round, for each system in alternating order: a fresh cache in a fresh directory, a put
//! of every key once (timed until the system has written everything: `wait_written` for the
//! tier, `storage().wait()` for foyer), then zipf(0.9) gets from two tasks for a fixed count.
//! Figures are medians over the rounds. foyer drops writes when its flush queue is full (by
//! design), so its put phase waits for its writes after every 1 MiB of inserts; the printed
//! "stored" fraction after the put phase shows how many each kept.
//! The tier's keys are `cache_core::Key`s built per operation (a BLAKE3 hash each), foyer's are
//! `u64`s: the tier pays its key hashing inside the measurement.
#![expect(clippy::print_stdout, reason = "an example that prints its measurements")]

use std::{future::Future, path::Path, sync::Arc, time::Instant};

use bytes::Bytes;
use cache_core::{Entry, Key, Tier};
use cache_l2_nvme::{NvmeTier, NvmeTierBuilder};
use foyer::DeviceBuilder as _;
use rand::{Rng, SeedableRng, rngs::StdRng};

const DISK: u64 = 256 << 20;
const ZIPF_S: f64 = 0.9;
const TASKS: usize = 2;

type Foyer = foyer::HybridCache<u64, Vec<u8>>;

fn key(id: u64) -> Key {
    Key::new("vs", id.to_le_bytes().to_vec()).unwrap()
}

/// A zipf sampler over `0..n` (inverse CDF), hot ranks scattered over the id space.
struct Zipf(Arc<Vec<f64>>);

impl Zipf {
    fn new(n: u64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / (rank as f64).powf(ZIPF_S);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf(Arc::new(cdf))
    }
    fn sample(&self, rng: &mut StdRng) -> u64 {
        let n = self.0.len() as u64;
        let rank = self.0.partition_point(|&c| c < rng.random::<f64>()) as u64;
        rank.min(n - 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
    }
}

async fn open_foyer(dir: &Path) -> Foyer {
    let device = foyer::FsDeviceBuilder::new(dir).with_capacity(DISK as usize).build().unwrap();
    foyer::HybridCacheBuilder::new()
        .with_name("vs")
        .memory(1)
        .with_weighter(|_k: &u64, v: &Vec<u8>| 8 + v.len())
        .storage()
        .with_io_engine_config(foyer::PsyncIoEngineConfig::new())
        .with_engine_config(foyer::BlockEngineConfig::new(device).with_block_size(16 << 20))
        .build()
        .await
        .unwrap()
}

/// One system's figures for one round.
#[derive(Default, Clone, Copy)]
struct Run {
    put_per_sec: f64,
    stored: f64,
    get_per_sec: f64,
    hit_ratio: f64,
}

async fn run_nvme(dir: &Path, keys: u64, value: &Bytes, gets: u64, zipf: &Zipf) -> Run {
    let tier = Arc::new(NvmeTierBuilder::new(dir, DISK).open().await.unwrap());
    let started = Instant::now();
    for id in 0..keys {
        let _ = tier.put(key(id), Entry::new(value.clone())).await.unwrap();
    }
    tier.wait_written().await.unwrap();
    let put_secs = started.elapsed().as_secs_f64();
    let mut stored = 0u64;
    for id in 0..keys {
        stored += u64::from(tier.get(&key(id)).await.unwrap().is_some());
    }
    let started = Instant::now();
    let shared = tier.clone();
    let hits = get_tasks(gets, zipf, move |id| {
        let tier: Arc<NvmeTier> = shared.clone();
        async move { tier.get(&key(id)).await.unwrap().is_some_and(|e| !e.value.is_empty()) }
    })
    .await;
    let get_secs = started.elapsed().as_secs_f64();
    tier.close().await.unwrap();
    Run {
        put_per_sec: keys as f64 / put_secs,
        stored: stored as f64 / keys as f64,
        get_per_sec: gets as f64 / get_secs,
        hit_ratio: hits as f64 / gets as f64,
    }
}

async fn run_foyer(dir: &Path, keys: u64, value: &Bytes, gets: u64, zipf: &Zipf) -> Run {
    let cache = open_foyer(dir).await;
    let started = Instant::now();
    // foyer drops an insert when its flush queue is full; waiting for its writes after every
    // 1 MiB of inserts keeps (nearly) all of them, so both caches hold the same data for the
    // get phase.
    let per_chunk = ((1usize << 20) / value.len()).max(1) as u64;
    for id in 0..keys {
        cache.insert(id, value.to_vec());
        if (id + 1) % per_chunk == 0 {
            cache.storage().wait().await;
        }
    }
    cache.storage().wait().await;
    let put_secs = started.elapsed().as_secs_f64();
    let mut stored = 0u64;
    for id in 0..keys {
        stored += u64::from(cache.get(&id).await.unwrap().is_some());
    }
    let started = Instant::now();
    let shared = cache.clone();
    let hits = get_tasks(gets, zipf, move |id| {
        let cache = shared.clone();
        async move { cache.get(&id).await.unwrap().is_some_and(|e| !e.value().is_empty()) }
    })
    .await;
    let get_secs = started.elapsed().as_secs_f64();
    cache.close().await.unwrap();
    Run {
        put_per_sec: keys as f64 / put_secs,
        stored: stored as f64 / keys as f64,
        get_per_sec: gets as f64 / get_secs,
        hit_ratio: hits as f64 / gets as f64,
    }
}

/// `gets` zipf lookups split over [`TASKS`] tasks (same seeds for both systems); returns hits.
async fn get_tasks<F, Fut>(gets: u64, zipf: &Zipf, get: F) -> u64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let zipf = Zipf(zipf.0.clone());
        let get = get.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(t as u64);
            let mut hits = 0u64;
            for _ in 0..gets / TASKS as u64 {
                hits += u64::from(get(zipf.sample(&mut rng)).await);
            }
            hits
        }));
    }
    let mut hits = 0;
    for h in handles {
        hits += h.await.unwrap();
    }
    hits
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TASKS)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "NVMe tier alone vs foyer HybridCache (memory tier 1 byte), disk {} MiB each, zipf \
             s = {ZIPF_S}, {TASKS} get tasks, median of {rounds} rounds",
            DISK >> 20
        );
        for (size, keys, gets) in [(4usize << 10, 40_000u64, 400_000u64), (64 << 10, 3_000, 60_000)]
        {
            let value = Bytes::from(vec![0x5au8; size]);
            let zipf = Zipf::new(keys);
            let (mut nvme, mut foyer) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let base = tempfile::tempdir().unwrap();
                let (nd, fd) = (base.path().join("nvme"), base.path().join("foyer"));
                std::fs::create_dir_all(&fd).unwrap();
                if round % 2 == 0 {
                    nvme.push(run_nvme(&nd, keys, &value, gets, &zipf).await);
                    foyer.push(run_foyer(&fd, keys, &value, gets, &zipf).await);
                } else {
                    foyer.push(run_foyer(&fd, keys, &value, gets, &zipf).await);
                    nvme.push(run_nvme(&nd, keys, &value, gets, &zipf).await);
                }
            }
            let med = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
            let put_ratio = median(
                nvme.iter().zip(&foyer).map(|(n, f)| n.put_per_sec / f.put_per_sec).collect(),
            );
            let get_ratio = median(
                nvme.iter().zip(&foyer).map(|(n, f)| n.get_per_sec / f.get_per_sec).collect(),
            );
            println!(
                "{} KiB x {keys} keys ({} MiB): put {:.0}/s vs {:.0}/s ({put_ratio:.2}x; stored \
                 {:.1} % vs {:.1} %); get {:.0}/s vs {:.0}/s ({get_ratio:.2}x; hit ratio {:.1} % \
                 vs {:.1} %)",
                size >> 10,
                (size as u64 * keys) >> 20,
                med(&nvme, |r| r.put_per_sec),
                med(&foyer, |r| r.put_per_sec),
                med(&nvme, |r| r.stored) * 100.0,
                med(&foyer, |r| r.stored) * 100.0,
                med(&nvme, |r| r.get_per_sec),
                med(&foyer, |r| r.get_per_sec),
                med(&nvme, |r| r.hit_ratio) * 100.0,
                med(&foyer, |r| r.hit_ratio) * 100.0,
            );
        }
    });
}
