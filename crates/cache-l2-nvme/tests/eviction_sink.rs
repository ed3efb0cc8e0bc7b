//! The eviction sink: segment reclaim hands every live, unexpired entry of the reclaimed
//! segment to the sink (cause `Capacity`), with its latest value, and nothing else — not
//! overwritten versions, not removed keys, not expired entries.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use cache_core::{
    Clock, Entry, Evicted, EvictionCause, EvictionSink, Key, ManualClock, Tier, Timestamp,
    testkit::block_on,
};
use cache_l2_nvme::NvmeTierBuilder;

const MIB: u64 = 1 << 20;

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Evicted>>);

impl EvictionSink for Collect {
    fn on_evict(&self, evicted: Evicted) {
        self.0.lock().unwrap().push(evicted);
    }
}

fn key(i: u32) -> Key {
    Key::new("sink", format!("key-{i}")).unwrap()
}

fn value(i: u32, generation: u32) -> Bytes {
    Bytes::from(
        format!("{i}/{generation};")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(3000)
            .collect::<Vec<_>>(),
    )
}

#[test]
fn reclaim_hands_live_entries_to_the_sink() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(1_750_000_000_000));
        let tier = NvmeTierBuilder::new(dir.path(), 2 * MIB)
            .clock(clock.clone() as Arc<dyn Clock>)
            .open()
            .await
            .unwrap();
        let sink = Arc::new(Collect::default());
        tier.set_eviction_sink(sink.clone()).unwrap();
        let n = 3000u32;
        let mut latest: HashMap<u32, Option<Bytes>> = HashMap::new();
        let mut before_expiry = 0;
        // Keys whose latest version carries the TTL that expires halfway.
        let mut ttl = std::collections::HashSet::new();
        for i in 0..n {
            let mut entry = Entry::new(value(i, 0));
            if i % 13 == 0 && i <= n / 2 {
                ttl.insert(i);
                entry.meta.expires_at = Some(clock.now().saturating_add(Duration::from_secs(10)));
            }
            assert!(tier.put(key(i), entry).await.unwrap().is_stored());
            latest.insert(i, Some(value(i, 0)));
            // Overwrite and remove keys written a little earlier (still in the same or the
            // previous segment), so reclaim meets dead versions next to live ones.
            if i >= 20 && i % 7 == 0 {
                let j = i - 20;
                assert!(tier.put(key(j), Entry::new(value(j, 1))).await.unwrap().is_stored());
                latest.insert(j, Some(value(j, 1)));
                ttl.remove(&j);
            }
            if i >= 30 && i % 11 == 0 {
                tier.remove(&key(i - 30)).await.unwrap();
                latest.insert(i - 30, None);
            }
            if i == n / 2 {
                // Entries with a TTL written so far expire: from now on reclaim must not hand
                // them over.
                tier.wait_written().await.unwrap();
                before_expiry = sink.0.lock().unwrap().len();
                clock.advance(Duration::from_secs(60));
            }
        }
        tier.wait_written().await.unwrap();
        let evicted = std::mem::take(&mut *sink.0.lock().unwrap());
        assert!(evicted.len() > 500, "a 2 MiB budget reclaimed most of 9 MiB: {}", evicted.len());
        let mut seen = HashMap::new();
        for (at, ev) in evicted.iter().enumerate() {
            assert_eq!(ev.cause, EvictionCause::Capacity);
            let name = std::str::from_utf8(ev.key.key_bytes()).unwrap();
            let i: u32 = name.strip_prefix("key-").unwrap().parse().unwrap();
            let expired = ttl.contains(&i) && at >= before_expiry;
            assert!(!expired, "expired entry {i} handed over");
            assert_eq!(
                latest[&i].as_ref(),
                Some(&ev.entry.value),
                "key {i}: only its live version"
            );
            *seen.entry(i).or_insert(0) += 1;
        }
        assert!(seen.values().all(|c| *c == 1), "each entry leaves once");
        // Every live key is either still in the tier or was handed to the sink.
        for (i, v) in &latest {
            let Some(v) = v else { continue };
            if ttl.contains(i) {
                continue;
            }
            let held = tier.get(&key(*i)).await.unwrap().map(|e| e.value);
            assert!(
                held.as_ref() == Some(v) || seen.contains_key(i),
                "key {i} neither held nor handed to the sink"
            );
        }
    });
}
