//! Time-to-idle beyond the conformance check: what a restart does to idle times, and what
//! reclaim does with idle entries.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use cache_core::{
    Clock, Entry, Evicted, EvictionSink, Key, ManualClock, Tier, Timestamp, testkit::block_on,
};
use cache_l2_nvme::NvmeTierBuilder;

const MIB: u64 = 1 << 20;
const IDLE: Duration = Duration::from_secs(10);

fn key(i: u32) -> Key {
    Key::new("idle", format!("key-{i}")).unwrap()
}

#[test]
fn a_reopen_starts_the_idle_time_of_what_it_recovers() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(1_750_000_000_000));
        let open = || {
            NvmeTierBuilder::new(dir.path(), 16 * MIB)
                .clock(clock.clone() as Arc<dyn Clock>)
                .time_to_idle(IDLE)
                .open()
        };
        let tier = open().await.unwrap();
        assert!(tier.put(key(1), Entry::new("kept")).await.unwrap().is_stored());
        clock.advance(Duration::from_secs(8));
        tier.close().await.unwrap();
        drop(tier);

        let tier = open().await.unwrap();
        clock.advance(Duration::from_secs(8));
        assert_eq!(
            tier.get(&key(1)).await.unwrap().expect("16 s since the put, 8 s since the open").value,
            "kept"
        );
        clock.advance(IDLE);
        assert_eq!(tier.get(&key(1)).await.unwrap(), None, "idle since its read");
        assert!(tier.index_memory_bytes() > 0);
        tier.close().await.unwrap();
    });
}

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Evicted>>);

impl EvictionSink for Collect {
    fn on_evict(&self, evicted: Evicted) {
        self.0.lock().unwrap().push(evicted);
    }
}

#[test]
fn reclaim_hands_only_entries_read_within_the_time_to_idle_to_the_sink() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(1_750_000_000_000));
        let tier = NvmeTierBuilder::new(dir.path(), 2 * MIB)
            .segment_size(256 << 10)
            .clock(clock.clone() as Arc<dyn Clock>)
            .time_to_idle(IDLE)
            .open()
            .await
            .unwrap();
        let sink = Arc::new(Collect::default());
        tier.set_eviction_sink(sink.clone()).unwrap();
        let value = vec![7u8; 3000];
        // The first 200 keys (two segments' worth) go idle, except the even ones, read again.
        for i in 0..200 {
            assert!(tier.put(key(i), Entry::new(value.clone())).await.unwrap().is_stored());
        }
        tier.wait_written().await.unwrap();
        clock.advance(Duration::from_secs(6));
        for i in (0..200).step_by(2) {
            assert!(tier.get(&key(i)).await.unwrap().is_some());
        }
        clock.advance(Duration::from_secs(6));
        // Enough new keys to reclaim the first segments.
        for i in 200..1200 {
            assert!(tier.put(key(i), Entry::new(value.clone())).await.unwrap().is_stored());
        }
        tier.wait_written().await.unwrap();
        let evicted = std::mem::take(&mut *sink.0.lock().unwrap());
        let old: Vec<u32> = evicted
            .iter()
            .filter_map(|e| {
                let name = std::str::from_utf8(e.key.key_bytes()).ok()?;
                name.strip_prefix("key-")?.parse().ok().filter(|i| *i < 200)
            })
            .collect();
        assert!(!old.is_empty(), "reclaim reached the first keys");
        assert!(old.iter().all(|i| i % 2 == 0), "an idle entry was handed on: {old:?}");
        tier.close().await.unwrap();
    });
}
