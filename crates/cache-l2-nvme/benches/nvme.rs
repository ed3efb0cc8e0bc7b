//! Criterion benches of the NVMe tier: put throughput (4 KiB and 64 KiB values) against a plain
//! sequential file write of the same bytes in the same run, and get-hit latency on page-cached
//! 4 KiB values.
//!
//! `cargo bench -p cache-l2-nvme --bench nvme`. A put iteration ends when the writer thread has
//! written everything (`wait_written`): `put` returns before its record is written, and the
//! figure includes the writer's work. Gets are polled once with a no-op waker (a hit completes
//! in one poll), so the figure is the tier's cost, not an executor's.

use std::{
    fs::File,
    future::Future,
    hint::black_box,
    io::Write,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{Entry, Key, Tier};
use cache_l2_nvme::{NvmeTier, NvmeTierBuilder};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const BUDGET: u64 = 1 << 30;
/// Bytes written per measured iteration of the put benches.
const BATCH_BYTES: usize = 4 << 20;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a page-cached hit completes in one poll"),
    }
}

fn open(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Arc<NvmeTier> {
    Arc::new(rt.block_on(NvmeTierBuilder::new(dir, BUDGET).open()).unwrap())
}

fn puts(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("put");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    for size in [4usize << 10, 64 << 10] {
        let n = BATCH_BYTES / size;
        let value = Bytes::from(vec![0x5a; size]);
        group.throughput(Throughput::Bytes(BATCH_BYTES as u64));

        // The baseline: the same bytes appended to a plain file with one write per value.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        group.bench_with_input(BenchmarkId::new("plain_file_write", size), &size, |b, _| {
            let mut file = File::create(&path).unwrap();
            let mut written = 0u64;
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    if written > BUDGET {
                        file = File::create(&path).unwrap();
                        written = 0;
                    }
                    for _ in 0..n {
                        file.write_all(&value).unwrap();
                    }
                    written += BATCH_BYTES as u64;
                }
                start.elapsed()
            });
        });

        let dir = tempfile::tempdir().unwrap();
        let tier = open(&rt, dir.path());
        let mut counter = 0u64;
        group.bench_with_input(BenchmarkId::new("tier_put_many_64", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        for _ in 0..n.div_ceil(64) {
                            let items = (0..64.min(n))
                                .map(|_| {
                                    counter += 1;
                                    (
                                        Key::new("bench", counter.to_le_bytes().to_vec()).unwrap(),
                                        Entry::new(value.clone()),
                                    )
                                })
                                .collect();
                            black_box(tier.put_many(items).await.unwrap());
                        }
                        tier.wait_written().await.unwrap();
                    });
                }
                start.elapsed()
            });
        });
        group.bench_with_input(BenchmarkId::new("tier_put_one_at_a_time", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        for _ in 0..n {
                            counter += 1;
                            let k = Key::new("bench", counter.to_le_bytes().to_vec()).unwrap();
                            assert!(
                                tier.put(k, Entry::new(value.clone())).await.unwrap().is_stored()
                            );
                        }
                        tier.wait_written().await.unwrap();
                    });
                }
                start.elapsed()
            });
        });
        drop(tier);
    }
    group.finish();
}

fn gets(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let tier = open(&rt, dir.path());
    let n = 16_384u32; // 64 MiB of 4 KiB values: page-cached after writing.
    let keys: Vec<Key> =
        (0..n).map(|i| Key::new("bench", i.to_le_bytes().to_vec()).unwrap()).collect();
    rt.block_on(async {
        for chunk in keys.chunks(256) {
            let items = chunk.iter().map(|k| (k.clone(), Entry::new(vec![7u8; 4096]))).collect();
            let _ = tier.put_many(items).await.unwrap();
        }
        tier.wait_written().await.unwrap();
    });
    for k in &keys {
        assert!(poll_once(tier.get(k)).unwrap().is_some());
    }
    let mut group = c.benchmark_group("get_hit");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("4KiB_page_cached_verified", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(poll_once(tier.get(&keys[i])).unwrap().unwrap())
        });
    });
    let no_verify_dir = tempfile::tempdir().unwrap();
    drop(tier);
    let tier = Arc::new(
        rt.block_on(NvmeTierBuilder::new(dir.path(), BUDGET).verify_on_read(false).open()).unwrap(),
    );
    group.bench_function("4KiB_page_cached_unverified", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(poll_once(tier.get(&keys[i])).unwrap().unwrap())
        });
    });
    group.bench_function("miss", |b| {
        let k = Key::new("bench", "absent").unwrap();
        b.iter(|| black_box(poll_once(tier.get(&k)).unwrap()));
    });
    drop(no_verify_dir);
    group.finish();
}

criterion_group!(benches, puts, gets);
criterion_main!(benches);
