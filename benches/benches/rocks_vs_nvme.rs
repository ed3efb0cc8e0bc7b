//! The RocksDB tier against the NVMe tier (`cache-l2-nvme`, public API only) on the same
//! workloads and budget, in one process, interleaved.
//!
//! `cargo bench -p cache-bench --bench rocks_vs_nvme`
//!
//! Both tiers are opened at the durability level that matches the other's: the RocksDB tier with
//! its write-ahead log off (`write_ahead_log(false)`: a put returns once the record is in
//! the memtable) and the NVMe tier with `Durability::None` (a put returns once the record is
//! staged for the writer thread); in both, an acknowledged write may be lost by a crash until
//! the next `flush` barrier or background write, and neither syncs on its own.
//!
//! Part 1, *fits*: 2 000 keys preloaded (well within the budget), then get-hit, put (overwrite)
//! and 90 % get / 10 % put, with `CONCURRENCY` callers; rounds alternate between the tiers
//! (which one goes first alternates too). Printed per tier: throughput (median of rounds),
//! p50 and p99 latency (all operations), and the median per-round throughput ratio.
//!
//! Part 2, *zipf*: a key set four times the budget, keys drawn from a Zipf distribution
//! (s = 0.99); each operation is a get, a miss is followed by a put of the value (cache-aside),
//! and one operation in ten is an unconditional put (an update). Both tiers evict. Printed:
//! throughput, p50/p99, hit ratio over the second half of the run, the disk space the tier's
//! directory takes at the end (after a `flush`) per byte of budget, and the disk bytes written
//! per byte put: the process's `write_bytes` from `/proc/self/io` between opening and closing
//! the tier (each tier runs alone, so RocksDB's flushes and compactions are included; the WAL
//! and the info LOG too).
//!
//! Environment: `VS_NVME_CONCURRENCY` (default 4), `VS_NVME_ZIPF_OPS` (default 600 000 for
//! 1 KiB values, a sixteenth of it for 16 KiB), `VS_NVME_PART` (`fits`, `zipf` or both).
#![expect(clippy::print_stdout, reason = "a measurement that prints its table")]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_bench::zipf_cdf;
use cache_core::{Entry, Key, Tier};
use cache_l2_nvme::NvmeTierBuilder;
use cache_l2_rocks::RocksTier;

const MIB: u64 = 1024 * 1024;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn open(which: &str, dir: &std::path::Path, budget: u64) -> Arc<dyn Tier> {
    match which {
        "rocks" => Arc::new(
            RocksTier::builder(dir, budget)
                .write_ahead_log(false)
                .open()
                .await
                .expect("open rocks"),
        ),
        _ => Arc::new(
            NvmeTierBuilder::new(dir, budget)
                .durability(cache_l2_nvme::Durability::None)
                .open()
                .await
                .expect("open nvme"),
        ),
    }
}

fn key(i: u64) -> Key {
    Key::new("bench", i.to_le_bytes().to_vec()).expect("key")
}

/// splitmix64: a deterministic, dependency-free generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Latencies (ns) and the wall time of one batch of operations spread over callers.
struct Run {
    latencies: Vec<u64>,
    wall: Duration,
    hits: u64,
    lookups: u64,
}

/// Runs `ops` operations split over `callers` tasks; `op(caller, i)` returns whether a get hit
/// (`None` for a put).
async fn run<F, Fut>(callers: usize, ops: usize, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<bool>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(ops / callers + 1);
                let (mut hits, mut lookups) = (0, 0);
                for i in (c..ops).step_by(callers) {
                    let t = Instant::now();
                    let hit = op(c, i).await;
                    lat.push(t.elapsed().as_nanos() as u64);
                    if let Some(h) = hit {
                        lookups += 1;
                        hits += u64::from(h);
                    }
                }
                (lat, hits, lookups)
            })
        })
        .collect();
    let mut out = Run { latencies: Vec::new(), wall: Duration::ZERO, hits: 0, lookups: 0 };
    for t in tasks {
        let (lat, hits, lookups) = t.await.expect("caller");
        out.latencies.extend(lat);
        out.hits += hits;
        out.lookups += lookups;
    }
    out.wall = start.elapsed();
    out
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Disk space allocated to the files under `dir` (after a flush: the WAL, SST files and logs of
/// RocksDB; the preallocated segment files of the NVMe tier).
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() { disk_bytes(&entry.path()) } else { meta.blocks() * 512 };
    }
    total
}

/// Bytes this process has caused to be written to storage (`write_bytes` of `/proc/self/io`).
fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn fits(callers: usize) {
    const KEYS: usize = 2_000;
    const OPS: usize = 2_000;
    const ROUNDS: usize = 11;
    let budget = 256 * MIB;
    println!(
        "## fits: {KEYS} keys preloaded, budget {} MiB, {callers} callers, {ROUNDS} rounds of {OPS} operations per tier",
        budget / MIB
    );
    println!(
        "| workload | value | rocks kops/s | rocks p50 / p99 µs | nvme kops/s | nvme p50 / p99 µs | rocks / nvme throughput |"
    );
    println!("|---|---|---|---|---|---|---|");
    for value_len in [1024usize, 16 * 1024] {
        let dirs = [tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir")];
        let mut tiers = Vec::new();
        for (which, dir) in ["rocks", "nvme"].iter().zip(&dirs) {
            let tier = open(which, dir.path(), budget).await;
            let value = Bytes::from(vec![0x5a; value_len]);
            for chunk in (0..KEYS as u64).collect::<Vec<_>>().chunks(100) {
                let items = chunk.iter().map(|&i| (key(i), Entry::new(value.clone()))).collect();
                let _ = tier.put_many(items).await.expect("preload");
            }
            tier.flush().await.expect("flush");
            tiers.push(tier);
        }
        for workload in ["get_hit", "put", "mixed_90_10"] {
            let mut lat: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
            let mut kops: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            let mut ratio = Vec::new();
            for round in 0..ROUNDS {
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                let mut this = [0.0f64; 2];
                for t in order {
                    let tier = tiers[t].clone();
                    let value = Bytes::from(vec![round as u8; value_len]);
                    let r = run(callers, OPS, move |_, i| {
                        let tier = tier.clone();
                        let value = value.clone();
                        async move {
                            let k = key(((i * 7919) % KEYS) as u64);
                            let put = match workload {
                                "get_hit" => false,
                                "put" => true,
                                _ => i % 10 == 9,
                            };
                            if put {
                                let _ = tier.put(k, Entry::new(value)).await.expect("put");
                                None
                            } else {
                                assert!(tier.get(&k).await.expect("get").is_some(), "a hit");
                                Some(true)
                            }
                        }
                    })
                    .await;
                    this[t] = OPS as f64 / r.wall.as_secs_f64() / 1000.0;
                    kops[t].push(this[t]);
                    lat[t].extend(r.latencies);
                }
                ratio.push(this[0] / this[1]);
            }
            for l in &mut lat {
                l.sort_unstable();
            }
            println!(
                "| {workload} | {} KiB | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} / {:.1} | {:.2} |",
                value_len / 1024,
                median(&mut kops[0]),
                percentile(&lat[0], 0.5),
                percentile(&lat[0], 0.99),
                median(&mut kops[1]),
                percentile(&lat[1], 0.5),
                percentile(&lat[1], 0.99),
                median(&mut ratio),
            );
        }
        for tier in tiers {
            tier.close().await.expect("close");
        }
    }
}

async fn zipf(callers: usize) {
    let budget = 64 * MIB;
    println!(
        "## zipf: s = 0.99, key set 4x the budget of {} MiB, cache-aside gets + 10 % updates, {callers} callers",
        budget / MIB
    );
    println!(
        "| value | tier | ops | kops/s | p50 / p99 µs | hit ratio (2nd half) | disk bytes written / byte put | disk used / budget | evictions |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for value_len in [1024usize, 16 * 1024] {
        let keys = (4 * budget / value_len as u64) as usize;
        let ops = env("VS_NVME_ZIPF_OPS", 600_000) as usize / if value_len > 1024 { 16 } else { 1 };
        let cdf = Arc::new(zipf_cdf(keys, 0.99));
        // Each tier runs alone (RocksDB's background compaction would otherwise land in the
        // other tier's write count); the order alternates with the value size.
        let order = if value_len == 1024 { ["rocks", "nvme"] } else { ["nvme", "rocks"] };
        for which in order {
            let dir = tempfile::tempdir().expect("dir");
            let written_before = write_bytes();
            let tier = open(which, dir.path(), budget).await;
            let put_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let value = Bytes::from(vec![0xa5; value_len]);
            let mut halves = Vec::new();
            for half in 0..2 {
                let (tier, cdf, put_bytes, value) =
                    (tier.clone(), cdf.clone(), put_bytes.clone(), value.clone());
                let r = run(callers, ops / 2, move |c, i| {
                    let (tier, cdf, put_bytes, value) =
                        (tier.clone(), cdf.clone(), put_bytes.clone(), value.clone());
                    async move {
                        let mut rng = Rng((half * ops + i) as u64 * 31 + c as u64);
                        let u = rng.unit();
                        let rank = cdf.partition_point(|&p| p < u).min(cdf.len() - 1);
                        let k = key(rank as u64);
                        let count = |n: usize| {
                            put_bytes.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
                        };
                        if rng.next().is_multiple_of(10) {
                            count(value.len());
                            let _ = tier.put(k, Entry::new(value)).await.expect("put");
                            return None;
                        }
                        let hit = tier.get(&k).await.expect("get").is_some();
                        if !hit {
                            count(value.len());
                            let _ = tier.put(k, Entry::new(value)).await.expect("fill");
                        }
                        Some(hit)
                    }
                })
                .await;
                halves.push(r);
            }
            let evictions = tier.stats().evictions;
            tier.flush().await.expect("flush");
            let disk = disk_bytes(dir.path());
            tier.close().await.expect("close");
            drop(tier);
            let written = write_bytes() - written_before;
            let put = put_bytes.load(std::sync::atomic::Ordering::Relaxed);
            let mut lat: Vec<u64> = halves.iter().flat_map(|r| r.latencies.clone()).collect();
            lat.sort_unstable();
            let wall: Duration = halves.iter().map(|r| r.wall).sum();
            let second = &halves[1];
            println!(
                "| {} KiB | {which} | {ops} | {:.1} | {:.1} / {:.1} | {:.3} | {:.2} | {:.2} | {evictions} |",
                value_len / 1024,
                ops as f64 / wall.as_secs_f64() / 1000.0,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                second.hits as f64 / second.lookups.max(1) as f64,
                written as f64 / put.max(1) as f64,
                disk as f64 / budget as f64,
            );
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is parsed.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let callers = env("VS_NVME_CONCURRENCY", 4) as usize;
    let part = std::env::var("VS_NVME_PART").unwrap_or_default();
    rt.block_on(async {
        if part.is_empty() || part == "fits" {
            fits(callers).await;
        }
        if part.is_empty() || part == "zipf" {
            zipf(callers).await;
        }
    });
}
