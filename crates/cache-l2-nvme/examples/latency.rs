//! Prints put throughput as a ratio to a plain sequential file write of the same bytes
//! (measured in the same run, rounds alternating, medians), and get-hit latency percentiles
//! (each get timed on its own) for page-cached 4 KiB values.
//!
//! `cargo run --release -p cache-l2-nvme --example latency [-- ROUNDS]`
//!
//! A tier round ends when the writer thread has written everything (`wait_written`): with the
//! default durability `put` returns before its record is written, and the figure includes the
//! writer's work. Neither side syncs (the plain write is not `fsync`ed either).
#![expect(clippy::print_stdout, reason = "an example that prints its measurements")]

use std::{
    fs::File,
    future::Future,
    io::Write,
    path::Path,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Instant,
};

use bytes::Bytes;
use cache_core::{Entry, Key, Tier};
use cache_l2_nvme::{Durability, NvmeTier, NvmeTierBuilder};

fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a hit completes in one poll"),
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds to append `n` copies of `value` to a new plain file, one `write` each.
fn plain_write(path: &Path, value: &[u8], n: usize) -> f64 {
    let _ = std::fs::remove_file(path);
    let started = Instant::now();
    let mut f = File::create(path).unwrap();
    for _ in 0..n {
        f.write_all(value).unwrap();
    }
    drop(f);
    started.elapsed().as_secs_f64()
}

fn key(prefix: &str, i: u64) -> Key {
    Key::new(prefix, i.to_le_bytes().to_vec()).unwrap()
}

/// Seconds for `n` single puts, until written.
async fn single_puts(
    tier: &NvmeTier,
    value: &Bytes,
    n: usize,
    base: u64,
) -> cache_core::Result<f64> {
    let started = Instant::now();
    for i in 0..n as u64 {
        assert!(tier.put(key("one", base + i), Entry::new(value.clone())).await?.is_stored());
    }
    tier.wait_written().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds for `n` puts in `put_many` batches of 64, until written.
async fn batched_puts(
    tier: &NvmeTier,
    value: &Bytes,
    n: usize,
    base: u64,
) -> cache_core::Result<f64> {
    let started = Instant::now();
    let mut i = 0u64;
    while i < n as u64 {
        let end = (i + 64).min(n as u64);
        let items = (i..end).map(|j| (key("many", base + j), Entry::new(value.clone()))).collect();
        let _ = tier.put_many(items).await?;
        i = end;
    }
    tier.wait_written().await?;
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> cache_core::Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(7);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let total: usize = 64 << 20;
        for size in [4usize << 10, 64 << 10] {
            let value = Bytes::from(vec![0x5au8; size]);
            let n = total / size;
            let path = dir.path().join("plain");
            for durability in [cache_l2_nvme::DEFAULT_DURABILITY, Durability::None] {
                let tdir = tempfile::tempdir().unwrap();
                let tier = NvmeTierBuilder::new(tdir.path(), 1 << 30)
                    .durability(durability)
                    .open()
                    .await?;
                let (mut plain, mut single, mut many) = (Vec::new(), Vec::new(), Vec::new());
                for round in 0..rounds {
                    let base = (round * n) as u64;
                    // Alternate the order so neither side always runs after the other.
                    if round % 2 == 0 {
                        plain.push(plain_write(&path, &value, n));
                        single.push(single_puts(&tier, &value, n, base).await?);
                        many.push(batched_puts(&tier, &value, n, base).await?);
                    } else {
                        many.push(batched_puts(&tier, &value, n, base).await?);
                        single.push(single_puts(&tier, &value, n, base).await?);
                        plain.push(plain_write(&path, &value, n));
                    }
                }
                let _ = std::fs::remove_file(&path);
                let (plain, single, many) = (median(plain), median(single), median(many));
                let mib = total as f64 / f64::from(1 << 20);
                println!(
                    "put {} KiB x {n}, {durability:?}, median of {rounds}: plain file {:.0} MiB/s; \
                     put one at a time {:.0} MiB/s ({:.2}x); put_many(64) {:.0} MiB/s ({:.2}x)",
                    size >> 10,
                    mib / plain,
                    mib / single,
                    plain / single,
                    mib / many,
                    plain / many,
                );
                tier.close().await?;
            }
        }

        // Get-hit latency, page-cached 4 KiB values.
        for verify in [true, false] {
            let tdir = tempfile::tempdir().unwrap();
            let tier =
                NvmeTierBuilder::new(tdir.path(), 1 << 30).verify_on_read(verify).open().await?;
            let keys: Vec<Key> = (0..16_384u64).map(|i| key("g", i)).collect();
            for chunk in keys.chunks(256) {
                let items =
                    chunk.iter().map(|k| (k.clone(), Entry::new(vec![7u8; 4096]))).collect();
                let _ = tier.put_many(items).await?;
            }
            tier.wait_written().await?;
            for k in &keys {
                assert!(poll_once(tier.get(k))?.is_some());
            }
            let mut samples = Vec::with_capacity(400_000);
            let mut i = 0usize;
            for _ in 0..400_000 {
                i = (i + 7919) % keys.len();
                let t = Instant::now();
                let hit = poll_once(tier.get(&keys[i]))?;
                samples.push(t.elapsed().as_nanos() as u64);
                assert_eq!(hit.map(|e| e.value.len()), Some(4096));
            }
            samples.sort_unstable();
            println!(
                "get hit 4 KiB (verify_on_read = {verify}): p50 {:.2} us, p90 {:.2} us, \
                 p99 {:.2} us, p99.9 {:.2} us",
                pct(&samples, 0.5),
                pct(&samples, 0.9),
                pct(&samples, 0.99),
                pct(&samples, 0.999)
            );
        }
        Ok(())
    })
}
