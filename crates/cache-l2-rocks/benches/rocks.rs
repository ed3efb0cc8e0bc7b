//! The RocksDB tier against raw `rocksdb` with the same options, keys and values.
//!
//! Three baselines per workload: the tier (async, every call on the blocking pool, records
//! checksummed on read and encoded on write), raw `rocksdb` called directly on the bench thread,
//! and raw `rocksdb` called through `spawn_blocking` (what an async caller must do anyway).
//! Workloads: get-hit, put (overwrites, no eviction), and 90 % gets / 10 % puts; values of
//! 1 KiB and 16 KiB.
//!
//! `cargo bench -p cache-l2-rocks --bench rocks -- --quick`

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{Entry, Key, Record, Tier};
use cache_l2_rocks::{RocksTier, StorageKey};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rocksdb::{DB, WriteOptions};

const KEYS: usize = 2_000;
const BUDGET: u64 = 1 << 30;

struct Fixture {
    tier: RocksTier,
    raw: Arc<DB>,
    keys: Vec<Key>,
    raw_keys: Vec<StorageKey>,
    value: Bytes,
    records: Vec<Bytes>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn fixture(rt: &tokio::runtime::Runtime, value_len: usize) -> Fixture {
    let tier_dir = tempfile::tempdir().expect("temp dir");
    let raw_dir = tempfile::tempdir().expect("temp dir");
    let builder = RocksTier::builder(tier_dir.path(), BUDGET);
    let raw = Arc::new(DB::open(&builder.rocksdb_options(), raw_dir.path()).expect("open raw"));
    let tier = rt.block_on(builder.open()).expect("open tier");
    let keys: Vec<Key> =
        (0..KEYS).map(|i| Key::new("bench", format!("key-{i:08}")).expect("key")).collect();
    let raw_keys: Vec<StorageKey> = keys.iter().map(StorageKey::new).collect();
    let value = Bytes::from(vec![0x5a; value_len]);
    // The raw database stores the same bytes the tier stores: encoded records.
    let records: Vec<Bytes> =
        keys.iter().map(|k| Record::encode(k, &Entry::new(value.clone()))).collect();
    rt.block_on(async {
        for chunk in keys.chunks(100) {
            let items = chunk.iter().map(|k| (k.clone(), Entry::new(value.clone()))).collect();
            let _ = tier.put_many(items).await.expect("preload");
        }
    });
    for (k, r) in raw_keys.iter().zip(&records) {
        raw.put(k, r).expect("preload raw");
    }
    Fixture { tier, raw, keys, raw_keys, value, records, _dirs: (tier_dir, raw_dir) }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for value_len in [1024usize, 16 * 1024] {
        let f = fixture(&rt, value_len);
        let size = format!("{}KiB", value_len / 1024);
        let wo = WriteOptions::default();
        for workload in ["get_hit", "put", "mixed_90_10"] {
            let mut group = c.benchmark_group(format!("{workload}/{size}"));
            let is_put = |i: usize| match workload {
                "get_hit" => false,
                "put" => true,
                _ => i % 10 == 9,
            };
            group.bench_function(BenchmarkId::from_parameter("tier"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            let k = &f.keys[i % KEYS];
                            if is_put(i) {
                                let e = Entry::new(f.value.clone());
                                let _ = black_box(f.tier.put(k.clone(), e).await.expect("put"));
                            } else {
                                black_box(f.tier.get(k).await.expect("get").expect("hit"));
                            }
                        }
                        start.elapsed()
                    })
                });
            });
            group.bench_function(BenchmarkId::from_parameter("raw_spawn_blocking"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            let db = f.raw.clone();
                            let k = f.raw_keys[i % KEYS];
                            if is_put(i) {
                                let r = f.records[i % KEYS].clone();
                                tokio::task::spawn_blocking(move || db.put(k, r).expect("put"))
                                    .await
                                    .expect("join");
                            } else {
                                let v = tokio::task::spawn_blocking(move || db.get(k))
                                    .await
                                    .expect("join")
                                    .expect("get");
                                black_box(v.expect("hit"));
                            }
                        }
                        start.elapsed()
                    })
                });
            });
            group.bench_function(BenchmarkId::from_parameter("raw_direct"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let k = &f.raw_keys[i % KEYS];
                        if is_put(i) {
                            f.raw.put_opt(k, &f.records[i % KEYS], &wo).expect("put");
                        } else {
                            black_box(f.raw.get(k).expect("get").expect("hit"));
                        }
                    }
                    start.elapsed()
                });
            });
            group.finish();
        }
        rt.block_on(f.tier.close()).expect("close");
    }
}

/// One-shot: clearing a namespace of 50 000 entries (next to another of 50 000) with the tier's
/// `delete_range`, against deleting the same keys one by one on a raw database (iterate the
/// prefix, one `WriteBatch` of point deletes), which a layout without a namespace prefix
/// (or with per-key tombstones) would need.
#[expect(clippy::print_stderr, reason = "a one-shot measurement printed next to criterion's")]
fn clear_namespace(_: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = 50_000u32;
    let tier_dir = tempfile::tempdir().expect("temp dir");
    let raw_dir = tempfile::tempdir().expect("temp dir");
    let builder = RocksTier::builder(tier_dir.path(), BUDGET);
    let raw = DB::open(&builder.rocksdb_options(), raw_dir.path()).expect("open raw");
    let tier = rt.block_on(builder.open()).expect("open tier");
    let a = cache_core::Namespace::new("tenant-a").expect("ns");
    let b = cache_core::Namespace::new("tenant-b").expect("ns");
    let value = Bytes::from(vec![7u8; 256]);
    for ns in [&a, &b] {
        let keys: Vec<Key> =
            (0..n).map(|i| ns.key(i.to_le_bytes().to_vec()).expect("key")).collect();
        rt.block_on(async {
            for chunk in keys.chunks(1000) {
                let items = chunk.iter().map(|k| (k.clone(), Entry::new(value.clone()))).collect();
                let _ = tier.put_many(items).await.expect("fill");
            }
        });
        for k in &keys {
            raw.put(StorageKey::new(k), Record::encode(k, &Entry::new(value.clone())))
                .expect("fill");
        }
    }
    rt.block_on(tier.flush()).expect("flush");
    raw.flush().expect("flush");
    let start = Instant::now();
    rt.block_on(tier.clear_namespace(&a)).expect("clear");
    let tier_clear = start.elapsed();
    let start = Instant::now();
    let (lo, hi) = cache_l2_rocks::namespace_bounds(&a.id());
    let mut batch = rocksdb::WriteBatch::default();
    let mut read = rocksdb::ReadOptions::default();
    read.set_iterate_upper_bound(hi.to_vec());
    for kv in
        raw.iterator_opt(rocksdb::IteratorMode::From(&lo[..], rocksdb::Direction::Forward), read)
    {
        batch.delete(kv.expect("iterate").0);
    }
    let deleted = batch.len();
    raw.write(batch).expect("delete");
    let raw_clear = start.elapsed();
    // Reads right after the clear pay for the range tombstone (tier) or point tombstones (raw).
    let probe: Vec<Key> =
        (0..1000u32).map(|i| b.key(i.to_le_bytes().to_vec()).expect("key")).collect();
    let start = Instant::now();
    rt.block_on(async {
        for k in &probe {
            black_box(f_get(&tier, k).await);
        }
    });
    let tier_probe = start.elapsed() / 1000;
    eprintln!(
        "clear_namespace of {n} entries (another {n} kept): tier delete_range {tier_clear:?}; \
         raw iterate + {deleted} point deletes {raw_clear:?}; tier get in the kept namespace \
         after the clear {tier_probe:?} per call"
    );
    rt.block_on(tier.close()).expect("close");
}

async fn f_get(tier: &RocksTier, k: &Key) -> Option<Entry> {
    tier.get(k).await.expect("get")
}

/// One operation of `workload` number `i` on the tier.
async fn tier_op(f: &Fixture, workload: &str, i: usize) {
    let k = &f.keys[i % KEYS];
    if is_put(workload, i) {
        let _ = black_box(f.tier.put(k.clone(), Entry::new(f.value.clone())).await.expect("put"));
    } else {
        black_box(f.tier.get(k).await.expect("get").expect("hit"));
    }
}

/// The same operation on the raw database through `spawn_blocking`.
async fn raw_blocking_op(f: &Fixture, workload: &str, i: usize) {
    let db = f.raw.clone();
    let k = f.raw_keys[i % KEYS];
    if is_put(workload, i) {
        let r = f.records[i % KEYS].clone();
        tokio::task::spawn_blocking(move || db.put(k, r).expect("put")).await.expect("join");
    } else {
        let v = tokio::task::spawn_blocking(move || db.get(k)).await.expect("join").expect("get");
        black_box(v.expect("hit"));
    }
}

/// The same operation on the raw database, called directly.
fn raw_direct_op(f: &Fixture, workload: &str, i: usize) {
    let k = &f.raw_keys[i % KEYS];
    if is_put(workload, i) {
        f.raw.put(k, &f.records[i % KEYS]).expect("put");
    } else {
        black_box(f.raw.get(k).expect("get").expect("hit"));
    }
}

fn is_put(workload: &str, i: usize) -> bool {
    match workload.trim_end_matches("_x4") {
        "get_hit" => false,
        "put" => true,
        _ => i % 10 == 9,
    }
}

/// Paired ratios, robust to a shared machine's load: rounds of 500 operations alternate between
/// the tier and each baseline (the tier first in even rounds, the `spawn_blocking` baseline first
/// in odd ones, so neither always inherits the other's background flushes), and the median and
/// quartiles of the per-round time ratios are printed (raw time / tier time: 1.0 is parity, the
/// target is ≥ 0.85). The `_x4` workloads run four callers at once on the tier and on the
/// `spawn_blocking` baseline (the direct baseline stays sequential, so its ratio means little
/// there): they show what the budget's lock, held around each write, costs concurrent writers.
#[expect(clippy::print_stderr, reason = "a one-shot measurement printed next to criterion's")]
fn paired_ratios(_: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    const OPS: usize = 500;
    const ROUNDS: usize = 31;
    for value_len in [1024usize, 16 * 1024] {
        let f = fixture(&rt, value_len);
        for workload in ["get_hit", "put", "mixed_90_10", "put_x4", "mixed_90_10_x4"] {
            let mut vs_blocking = Vec::with_capacity(ROUNDS);
            let mut vs_direct = Vec::with_capacity(ROUNDS);
            let mut tier_us = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                let base = round * OPS;
                // `_x4`: four callers at once, each taking every fourth operation.
                let lanes = if workload.ends_with("_x4") { 4 } else { 1 };
                let run_tier = || {
                    rt.block_on(async {
                        let start = Instant::now();
                        let f = &f;
                        let lane = |c: usize| async move {
                            for i in (base + c..base + OPS).step_by(lanes) {
                                tier_op(f, workload, i).await;
                            }
                        };
                        if lanes == 1 {
                            lane(0).await;
                        } else {
                            tokio::join!(lane(0), lane(1), lane(2), lane(3));
                        }
                        start.elapsed()
                    })
                };
                let run_blocking = || {
                    rt.block_on(async {
                        let start = Instant::now();
                        let f = &f;
                        let lane = |c: usize| async move {
                            for i in (base + c..base + OPS).step_by(lanes) {
                                raw_blocking_op(f, workload, i).await;
                            }
                        };
                        if lanes == 1 {
                            lane(0).await;
                        } else {
                            tokio::join!(lane(0), lane(1), lane(2), lane(3));
                        }
                        start.elapsed()
                    })
                };
                let (tier, blocking) = if round % 2 == 0 {
                    let t = run_tier();
                    (t, run_blocking())
                } else {
                    let b = run_blocking();
                    (run_tier(), b)
                };
                let start = Instant::now();
                for i in base..base + OPS {
                    raw_direct_op(&f, workload, i);
                }
                let direct = start.elapsed();
                vs_blocking.push(blocking.as_secs_f64() / tier.as_secs_f64());
                vs_direct.push(direct.as_secs_f64() / tier.as_secs_f64());
                tier_us.push(tier.as_secs_f64() * 1e6 / OPS as f64);
            }
            // (first quartile, median, third quartile)
            let quartiles = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                (v[v.len() / 4], v[v.len() / 2], v[3 * v.len() / 4])
            };
            let (b25, b50, b75) = quartiles(&mut vs_blocking);
            eprintln!(
                "paired {workload}/{}KiB: tier {:.1} µs/op; raw_spawn_blocking/tier {b50:.2} \
                 (quartiles {b25:.2} – {b75:.2}); raw_direct/tier {:.2}",
                value_len / 1024,
                quartiles(&mut tier_us).1,
                quartiles(&mut vs_direct).1,
            );
        }
        rt.block_on(f.tier.close()).expect("close");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = paired_ratios, clear_namespace, bench
}
criterion_main!(benches);
