//! Prints the DRAM cost of the index per entry and the reopen time of a directory holding 1 M
//! entries, through the snapshot of a clean close and through a full scan.
//!
//! `cargo run --release -p cache-l2-nvme --example reopen_and_memory [-- ENTRIES]`
//!
//! Memory is measured with a counting global allocator (live heap bytes), after the writes are
//! acknowledged and after a reopen; the tier's own estimate (`index_memory_bytes`) is printed
//! beside it.
#![expect(clippy::print_stdout, reason = "an example that prints its measurements")]

use std::time::Instant;

use cache_core::{Entry, Key, Tier, testkit::CountingAllocator};
use cache_l2_nvme::{NvmeTier, NvmeTierBuilder};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn live() -> i64 {
    CountingAllocator::live_bytes() as i64
}

fn main() -> cache_core::Result<()> {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let budget = 1u64 << 30;
    let builder = || NvmeTierBuilder::new(dir.path(), budget);
    rt.block_on(async {
        let before_empty = live();
        let tier = builder().open().await?;
        let empty_cost = live() - before_empty;

        let started = Instant::now();
        let mut i = 0u64;
        while i < n {
            let items: Vec<(Key, Entry)> = (i..(i + 1024).min(n))
                .map(|j| (Key::new("m", j.to_le_bytes().to_vec()).unwrap(), Entry::new(vec![1u8; 32])))
                .collect();
            i += items.len() as u64;
            let _ = tier.put_many(items).await?;
        }
        tier.flush().await?;
        let write_secs = started.elapsed().as_secs_f64();
        let after_write = live() - before_empty - empty_cost;
        println!("entries: {n} (32-byte values), written in {write_secs:.2} s ({:.0} puts/s)", n as f64 / write_secs);
        println!(
            "index DRAM after writing: {:.1} bytes/entry measured, {:.1} estimated",
            after_write as f64 / n as f64,
            tier.index_memory_bytes() as f64 / n as f64
        );
        tier.close().await?;
        drop(tier);

        // Five clean reopens: each loads the snapshot, and its close writes the next one.
        let mut times = Vec::new();
        let mut tier: Option<NvmeTier> = None;
        for round in 0..5 {
            if let Some(t) = tier.take() {
                t.close().await?;
                drop(t);
            }
            let before = live();
            let started = Instant::now();
            let t = builder().open().await?;
            let took = started.elapsed();
            let report = t.recovery_report();
            assert!(report.from_snapshot && report.entries == n, "{report:?}");
            times.push(took.as_secs_f64() * 1e3);
            if round == 0 {
                println!(
                    "index DRAM after a snapshot reopen: {:.1} bytes/entry measured, {:.1} estimated",
                    (live() - before - empty_cost) as f64 / n as f64,
                    t.index_memory_bytes() as f64 / n as f64
                );
            }
            tier = Some(t);
        }
        let tier = tier.expect("opened");
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "reopen via snapshot ({n} entries), 5 runs: median {:.1} ms, max {:.1} ms ({times:.1?})",
            sorted[2], sorted[4]
        );
        // Dropped without close: no snapshot, the next open scans.
        drop(tier);
        let started = Instant::now();
        let tier = builder().open().await?;
        let took = started.elapsed();
        let report = tier.recovery_report();
        assert!(!report.from_snapshot && report.entries == n, "{report:?}");
        println!(
            "reopen via scan: {:.1} ms ({} entries, {} segments)",
            took.as_secs_f64() * 1e3,
            report.entries,
            report.segments
        );
        let k = Key::new("m", 7u64.to_le_bytes().to_vec()).unwrap();
        assert!(tier.get(&k).await?.is_some());
        Ok(())
    })
}
