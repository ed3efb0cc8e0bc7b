//! Prints get-hit latency percentiles (each get timed on its own) for page-cached 4 KiB values,
//! and put throughput against a plain sequential file write of the same bytes.
//!
//! `cargo run --release -p cache-l2-nvme --example latency`
#![expect(clippy::print_stdout, reason = "an example that prints its measurements")]

use std::{
    fs::File,
    future::Future,
    io::Write,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Instant,
};

use bytes::Bytes;
use cache_core::{Entry, Key, Tier};
use cache_l2_nvme::{Durability, NvmeTierBuilder};

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

fn main() -> cache_core::Result<()> {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        // Put throughput vs a plain file, same total, 4 KiB and 64 KiB values.
        let total: usize = 512 << 20;
        for size in [4usize << 10, 64 << 10] {
            let value = Bytes::from(vec![0x5au8; size]);
            let n = total / size;
            let path = dir.path().join("plain");
            let started = Instant::now();
            let mut f = File::create(&path).unwrap();
            for _ in 0..n {
                f.write_all(&value).unwrap();
            }
            drop(f);
            let plain = started.elapsed().as_secs_f64();
            std::fs::remove_file(&path).unwrap();

            for durability in [Durability::default(), Durability::None] {
            let tdir = tempfile::tempdir().unwrap();
            let tier = NvmeTierBuilder::new(tdir.path(), 1 << 30).durability(durability).open().await?;
            let started = Instant::now();
            for chunk in 0..n.div_ceil(64) {
                let items = (chunk * 64..((chunk + 1) * 64).min(n))
                    .map(|i| (Key::new("p", (i as u64).to_le_bytes().to_vec()).unwrap(), Entry::new(value.clone())))
                    .collect();
                let _ = tier.put_many(items).await?;
            }
            let batched = started.elapsed().as_secs_f64();
            let started = Instant::now();
            for i in 0..n {
                let k = Key::new("q", (i as u64).to_le_bytes().to_vec()).unwrap();
                let _ = tier.put(k, Entry::new(value.clone())).await?;
            }
            let single = started.elapsed().as_secs_f64();
            let mib = total as f64 / (1 << 20) as f64;
            println!(
                "put {} KiB x {n}, {durability:?}: plain file {:.0} MiB/s; put_many(64) {:.0} MiB/s ({:.2}x); put one at a time {:.0} MiB/s ({:.2}x)",
                size >> 10,
                mib / plain,
                mib / batched,
                plain / batched,
                mib / single,
                plain / single
            );
            drop(tier);
            }
        }

        // Get-hit latency, page-cached 4 KiB values.
        for verify in [true, false] {
            let tdir = tempfile::tempdir().unwrap();
            let tier = NvmeTierBuilder::new(tdir.path(), 1 << 30).verify_on_read(verify).open().await?;
            let keys: Vec<Key> = (0..16_384u32).map(|i| Key::new("g", i.to_le_bytes().to_vec()).unwrap()).collect();
            for chunk in keys.chunks(256) {
                let _ = tier.put_many(chunk.iter().map(|k| (k.clone(), Entry::new(vec![7u8; 4096]))).collect()).await?;
            }
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
                "get hit 4 KiB (verify_on_read = {verify}): p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, p99.9 {:.2} us",
                pct(&samples, 0.5),
                pct(&samples, 0.9),
                pct(&samples, 0.99),
                pct(&samples, 0.999)
            );
        }
        Ok(())
    })
}
