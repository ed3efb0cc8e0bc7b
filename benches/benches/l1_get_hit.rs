//! RAM get-hits and inserts against raw `moka::sync::Cache` (the API `MemoryTier` runs on, and
//! the faster of moka's two) with the same weigher, keys and
//! values, in the same run: `MemoryTier` alone (target: get-hit ≥ 0.9× raw moka) and a
//! `TieredCache` of `MemoryTier` over an NVMe tier whose gets all hit RAM (target ≥ 0.8×).
//! Prints the paired throughput ratios at the end.

use std::time::{Duration, Instant};

use cache_bench::{keys, value};
use cache_core::{Entry, Key, Tier};
use cache_l1::{MemoryTier, entry_weight};
use cache_l2_nvme::{Durability, NvmeTierBuilder};
use cache_tiered::{TierOptions, TieredCache, WritePolicy};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

const N: usize = 10_000;
const VALUE_LEN: usize = 1024;
const CAPACITY: u64 = 256 * 1024 * 1024;
/// Lookups per timed iteration, so each sample is long enough to measure.
const BATCH: usize = 1_000;

fn raw_moka() -> moka::sync::Cache<Key, Bytes> {
    moka::sync::Cache::builder()
        .max_capacity(CAPACITY)
        .weigher(|k: &Key, v: &Bytes| u32::try_from(entry_weight(k, v.len())).unwrap_or(u32::MAX))
        .build()
}

use bytes::Bytes;

/// `MemoryTier` over an NVMe tier written on eviction: the default two-tier stack.
fn tiered(dir: &std::path::Path) -> TieredCache {
    let nvme = NvmeTierBuilder::new(dir, 64 << 20)
        .durability(Durability::None)
        .open_blocking()
        .expect("open the NVMe tier");
    TieredCache::builder()
        .tier(MemoryTier::builder(CAPACITY).build())
        .tier(TierOptions::new(nvme).write(WritePolicy::OnEviction))
        .build()
        .expect("build the tiered cache")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let keys = keys(N);
    let values: Vec<Bytes> = (0..N).map(|i| value(VALUE_LEN, i as u64)).collect();

    let l1 = MemoryTier::builder(CAPACITY).build();
    let moka = raw_moka();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = rt.block_on(async { tiered(dir.path()) });
    rt.block_on(async {
        for (k, v) in keys.iter().zip(&values) {
            let _ = l1.put(k.clone(), Entry::new(v.clone())).await.expect("put");
            moka.insert(k.clone(), v.clone());
            let _ = stack.put(k.clone(), Entry::new(v.clone())).await.expect("put");
        }
        l1.flush().await.expect("flush");
        moka.run_pending_tasks();
        stack.flush().await.expect("flush");
    });

    let mut group = c.benchmark_group("get_hit");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("raw_moka", VALUE_LEN), |b| {
        let mut i = 0usize;
        b.to_async(&rt).iter(|| {
            let start = i;
            i = i.wrapping_add(BATCH);
            let (moka, keys) = (&moka, &keys);
            async move {
                for j in 0..BATCH {
                    let v = moka.get(&keys[(start + j * 7) % N]);
                    assert!(v.is_some());
                }
            }
        });
    });
    group.bench_function(BenchmarkId::new("l1", VALUE_LEN), |b| {
        let mut i = 0usize;
        b.to_async(&rt).iter(|| {
            let start = i;
            i = i.wrapping_add(BATCH);
            let (l1, keys) = (&l1, &keys);
            async move {
                for j in 0..BATCH {
                    let v = l1.get(&keys[(start + j * 7) % N]).await.expect("get");
                    assert!(v.is_some());
                }
            }
        });
    });
    group.bench_function(BenchmarkId::new("tiered", VALUE_LEN), |b| {
        let mut i = 0usize;
        b.to_async(&rt).iter(|| {
            let start = i;
            i = i.wrapping_add(BATCH);
            let (stack, keys) = (&stack, &keys);
            async move {
                for j in 0..BATCH {
                    let v = stack.get(&keys[(start + j * 7) % N]).await.expect("get");
                    assert!(v.is_some());
                }
            }
        });
    });
    group.finish();

    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("raw_moka", VALUE_LEN), |b| {
        let mut i = 0usize;
        b.to_async(&rt).iter(|| {
            let start = i;
            i = i.wrapping_add(BATCH);
            let (moka, keys, values) = (&moka, &keys, &values);
            async move {
                for j in 0..BATCH {
                    let n = (start + j) % N;
                    moka.insert(keys[n].clone(), values[n].clone());
                }
            }
        });
    });
    group.bench_function(BenchmarkId::new("l1", VALUE_LEN), |b| {
        let mut i = 0usize;
        b.to_async(&rt).iter(|| {
            let start = i;
            i = i.wrapping_add(BATCH);
            let (l1, keys, values) = (&l1, &keys, &values);
            async move {
                for j in 0..BATCH {
                    let n = (start + j) % N;
                    let _ = l1.put(keys[n].clone(), Entry::new(values[n].clone())).await;
                }
            }
        });
    });
    group.finish();
}

/// Median per-get nanoseconds of raw moka, `MemoryTier` and the tiered stack over `rounds`
/// passes, and the medians of the per-pass ratios moka/l1 and moka/tiered. Each pass times the
/// three back to back over all keys, so every ratio compares them under the same machine load.
struct Paired {
    moka_ns: f64,
    l1_ns: f64,
    tiered_ns: f64,
    l1_ratio: f64,
    tiered_ratio: f64,
}

fn paired_get_ratio(rounds: usize) -> Paired {
    let rt = runtime();
    let keys = keys(N);
    let l1 = MemoryTier::builder(CAPACITY).build();
    let moka = raw_moka();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = rt.block_on(async { tiered(dir.path()) });
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            let v = value(VALUE_LEN, i as u64);
            let _ = l1.put(k.clone(), Entry::new(v.clone())).await.expect("put");
            let _ = stack.put(k.clone(), Entry::new(v.clone())).await.expect("put");
            moka.insert(k.clone(), v);
        }
        l1.flush().await.expect("flush");
        stack.flush().await.expect("flush");
        moka.run_pending_tasks();
    });
    let (mut m, mut o, mut t3) = (Vec::new(), Vec::new(), Vec::new());
    let (mut r1, mut r3) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            for k in &keys {
                assert!(moka.get(k).is_some());
            }
            let moka_ns = t.elapsed().as_nanos() as f64 / N as f64;
            let t = Instant::now();
            for k in &keys {
                assert!(l1.get(k).await.expect("get").is_some());
            }
            let l1_ns = t.elapsed().as_nanos() as f64 / N as f64;
            let t = Instant::now();
            for k in &keys {
                assert!(stack.get(k).await.expect("get").is_some());
            }
            let tiered_ns = t.elapsed().as_nanos() as f64 / N as f64;
            m.push(moka_ns);
            o.push(l1_ns);
            t3.push(tiered_ns);
            r1.push(moka_ns / l1_ns);
            r3.push(moka_ns / tiered_ns);
        }
    });
    let served_by_ram = stack.tiered_stats().tiers[0].served;
    assert!(served_by_ram >= (rounds * N) as u64, "every tiered get must hit RAM");
    Paired {
        moka_ns: median(&mut m),
        l1_ns: median(&mut o),
        tiered_ns: median(&mut t3),
        l1_ratio: median(&mut r1),
        tiered_ratio: median(&mut r3),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let p = paired_get_ratio(41);
    #[expect(clippy::print_stdout, reason = "the bench's report")]
    {
        println!();
        println!(
            "RAM get-hits vs raw moka (same weigher, keys, {VALUE_LEN}-byte values; medians of 41 paired passes):"
        );
        println!(
            "  raw moka: {:.1} ns/get   l1: {:.1} ns/get   tiered (ram over nvme): {:.1} ns/get",
            p.moka_ns, p.l1_ns, p.tiered_ns
        );
        println!("  throughput ratio l1/moka     = {:.3} (target >= 0.90)", p.l1_ratio);
        println!("  throughput ratio tiered/moka = {:.3} (target >= 0.80)", p.tiered_ratio);
    }
}
