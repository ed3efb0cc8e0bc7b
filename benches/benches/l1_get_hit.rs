//! L1 get-hit and insert against raw `moka::future::Cache` with the same weigher, keys and
//! values, in the same run. Prints the throughput ratio (target: get-hit ≥ 0.9× raw moka).

use std::time::{Duration, Instant};

use cache_bench::{keys, value};
use cache_core::{Entry, Key, Tier};
use cache_l1::{MemoryTier, entry_weight};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

const N: usize = 10_000;
const VALUE_LEN: usize = 1024;
const CAPACITY: u64 = 256 * 1024 * 1024;
/// Lookups per timed iteration, so each sample is long enough to measure.
const BATCH: usize = 1_000;

fn raw_moka() -> moka::future::Cache<Key, Bytes> {
    moka::future::Cache::builder()
        .max_capacity(CAPACITY)
        .weigher(|k: &Key, v: &Bytes| u32::try_from(entry_weight(k, v.len())).unwrap_or(u32::MAX))
        .build()
}

use bytes::Bytes;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let keys = keys(N);
    let values: Vec<Bytes> = (0..N).map(|i| value(VALUE_LEN, i as u64)).collect();

    let l1 = MemoryTier::builder(CAPACITY).build();
    let moka = raw_moka();
    rt.block_on(async {
        for (k, v) in keys.iter().zip(&values) {
            let _ = l1.put(k.clone(), Entry::new(v.clone())).await.expect("put");
            moka.insert(k.clone(), v.clone()).await;
        }
        l1.flush().await.expect("flush");
        moka.run_pending_tasks().await;
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
                    let v = moka.get(&keys[(start + j * 7) % N]).await;
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
                    moka.insert(keys[n].clone(), values[n].clone()).await;
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

/// Times `rounds` alternating passes of each system over all keys and returns the median
/// per-get nanoseconds of each, so the ratio compares the two under the same machine load.
fn paired_get_ratio(rounds: usize) -> (f64, f64) {
    let rt = runtime();
    let keys = keys(N);
    let l1 = MemoryTier::builder(CAPACITY).build();
    let moka = raw_moka();
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            let v = value(VALUE_LEN, i as u64);
            let _ = l1.put(k.clone(), Entry::new(v.clone())).await.expect("put");
            moka.insert(k.clone(), v).await;
        }
        l1.flush().await.expect("flush");
        moka.run_pending_tasks().await;
    });
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            for k in &keys {
                assert!(moka.get(k).await.is_some());
            }
            theirs.push(t.elapsed().as_nanos() as f64 / N as f64);
            let t = Instant::now();
            for k in &keys {
                assert!(l1.get(k).await.expect("get").is_some());
            }
            ours.push(t.elapsed().as_nanos() as f64 / N as f64);
        }
    });
    (median(&mut ours), median(&mut theirs))
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
    let (ours, moka) = paired_get_ratio(41);
    #[expect(clippy::print_stdout, reason = "the bench's report")]
    {
        println!();
        println!(
            "L1 get-hit vs raw moka (same weigher, keys, {VALUE_LEN}-byte values; median of 41 paired passes):"
        );
        println!("  raw moka: {moka:.1} ns/get   l1: {ours:.1} ns/get");
        println!("  throughput ratio l1/moka = {:.3} (target >= 0.90)", moka / ours);
    }
}
