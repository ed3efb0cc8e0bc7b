//! Prints the RAM the byte budget's queue costs per entry, at 1 M entries by default.
//!
//! `cargo run --release -p cache-l2-rocks --example budget_memory [-- ENTRIES]`
//!
//! Memory is counted with a counting global allocator (live Rust heap bytes). RocksDB allocates
//! through C++ `new`/`malloc`, not through Rust's allocator, so what grows on the Rust heap
//! while entries are written is the tier's own state: the budget's map and queue. Measured after
//! the writes, and again after a reopen (the queue rebuilt by iterating the database).
#![expect(clippy::print_stdout, reason = "an example that prints its measurements")]

use std::time::Instant;

use cache_core::{Entry, Key, Tier, testkit::CountingAllocator};
use cache_l2_rocks::RocksTier;

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
    let open = || RocksTier::builder(dir.path(), budget).write_ahead_log(false).open();
    rt.block_on(async {
        let before_open = live();
        let tier = open().await?;
        let base = live();
        let started = Instant::now();
        let mut i = 0u64;
        while i < n {
            let items: Vec<(Key, Entry)> = (i..(i + 1024).min(n))
                .map(|j| (Key::new("m", j.to_le_bytes().to_vec()).unwrap(), Entry::new(vec![1u8; 32])))
                .collect();
            i += items.len() as u64;
            let _ = tier.put_many(items).await?;
        }
        let write_secs = started.elapsed().as_secs_f64();
        let entries = tier.usage().entries.unwrap_or(0);
        assert_eq!(entries, n, "every entry fits the budget");
        let after_write = live() - base;
        tier.close().await?;
        drop(tier);
        let after_close = live() - before_open;

        let started = Instant::now();
        let base = live();
        let tier = open().await?;
        let reopen_secs = started.elapsed().as_secs_f64();
        let after_reopen = live() - base;
        assert_eq!(tier.usage().entries, Some(n));
        tier.close().await?;

        println!("entries: {n} (32-byte values, {} bytes charged to the budget)", tier.usage().bytes_used);
        println!(
            "Rust heap after writing: {after_write} bytes = {:.1} bytes per entry ({write_secs:.1} s)",
            after_write as f64 / n as f64
        );
        println!(
            "Rust heap after reopen (queue rebuilt): {after_reopen} bytes = {:.1} bytes per entry ({reopen_secs:.1} s)",
            after_reopen as f64 / n as f64
        );
        println!("Rust heap left after close and drop: {after_close} bytes");
        Ok(())
    })
}
