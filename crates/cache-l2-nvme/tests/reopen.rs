//! Reopening a directory: clean close (snapshot), drop without close (scan), tombstones,
//! namespace clears, the directory lock and bad directories.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cache_core::{
    Clock, Compression, Entry, ErrorKind, Key, ManualClock, Namespace, Tier, Timestamp,
    testkit::block_on,
};
use cache_l2_nvme::{Durability, NvmeTier, NvmeTierBuilder};

const MIB: u64 = 1 << 20;

fn clock() -> Arc<ManualClock> {
    ManualClock::new(Timestamp::from_millis(1_750_000_000_000))
}

async fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> NvmeTier {
    NvmeTierBuilder::new(dir, 64 * MIB)
        .segment_size(MIB)
        .clock(clock.clone() as Arc<dyn Clock>)
        .open()
        .await
        .expect("open")
}

fn key(i: u32) -> Key {
    Key::new("reopen", format!("key-{i}")).unwrap()
}

fn value(i: u32, generation: u32) -> Bytes {
    let n = 50 + (i * 37 % 3000) as usize;
    Bytes::from(
        format!("{i}:{generation}:").into_bytes().into_iter().cycle().take(n).collect::<Vec<_>>(),
    )
}

/// Writes 3000 keys (spanning several 1 MiB segments), overwrites some, removes some, clears a
/// namespace, and returns the expected contents.
async fn populate(tier: &NvmeTier) -> Vec<Option<Bytes>> {
    let mut expect = vec![None; 3000];
    for i in 0..3000u32 {
        assert!(tier.put(key(i), Entry::new(value(i, 0))).await.unwrap().is_stored());
        expect[i as usize] = Some(value(i, 0));
    }
    for i in (0..3000u32).step_by(7) {
        assert!(tier.put(key(i), Entry::new(value(i, 1))).await.unwrap().is_stored());
        expect[i as usize] = Some(value(i, 1));
    }
    for i in (0..3000u32).step_by(11) {
        tier.remove(&key(i)).await.unwrap();
        expect[i as usize] = None;
    }
    let other = Namespace::new("gone").unwrap();
    for i in 0..100u32 {
        assert!(
            tier.put(other.key(format!("{i}")).unwrap(), Entry::new("x"))
                .await
                .unwrap()
                .is_stored()
        );
    }
    tier.clear_namespace(&other).await.unwrap();
    assert!(tier.put(other.key("after").unwrap(), Entry::new("kept")).await.unwrap().is_stored());
    expect
}

async fn check_keys(tier: &NvmeTier, expect: &[Option<Bytes>]) {
    for (i, e) in expect.iter().enumerate() {
        let got = tier.get(&key(i as u32)).await.unwrap().map(|e| e.value);
        assert_eq!(got.as_ref(), e.as_ref(), "key {i}");
    }
}

async fn check(tier: &NvmeTier, expect: &[Option<Bytes>]) {
    check_keys(tier, expect).await;
    let other = Namespace::new("gone").unwrap();
    for i in 0..100u32 {
        assert!(tier.get(&other.key(format!("{i}")).unwrap()).await.unwrap().is_none());
    }
    let after = tier.get(&other.key("after").unwrap()).await.unwrap().expect("written after clear");
    assert_eq!(after.value, "kept");
}

#[test]
fn clean_close_reopens_from_the_snapshot() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let tier = open(dir.path(), &clock).await;
        let expect = populate(&tier).await;
        check(&tier, &expect).await;
        tier.close().await.unwrap();
        drop(tier);
        assert!(dir.path().join("index.snap").exists(), "clean close writes a snapshot");
        let tier = open(dir.path(), &clock).await;
        assert!(tier.recovery_report().from_snapshot);
        assert!(!dir.path().join("index.snap").exists(), "opening for writes removes it");
        check(&tier, &expect).await;
        // A second generation after a reopen, then a crash-like drop: the scan must not be
        // confused by the stale snapshot (there is none) and must see the new writes.
        assert!(tier.put(key(1), Entry::new("third")).await.unwrap().is_stored());
        tier.remove(&key(2)).await.unwrap();
        drop(tier);
        let tier = open(dir.path(), &clock).await;
        assert!(!tier.recovery_report().from_snapshot);
        let mut expect = expect;
        expect[1] = Some(Bytes::from_static(b"third"));
        expect[2] = None;
        check(&tier, &expect).await;
    });
}

#[test]
fn drop_without_close_reopens_by_scanning() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let tier = open(dir.path(), &clock).await;
        let expect = populate(&tier).await;
        drop(tier);
        assert!(!dir.path().join("index.snap").exists());
        let tier = open(dir.path(), &clock).await;
        let report = tier.recovery_report();
        assert!(!report.from_snapshot);
        assert!(report.segments > 1, "the data spans several segments: {report:?}");
        check(&tier, &expect).await;
        // Scan, then clean close, then snapshot: all three agree.
        tier.close().await.unwrap();
        drop(tier);
        let tier = open(dir.path(), &clock).await;
        assert!(tier.recovery_report().from_snapshot);
        check(&tier, &expect).await;
    });
}

/// `remove` returns before the writer wrote the tombstone (as a put returns before its record
/// is written): reads miss at once, a put after it wins, and both survive a reopen by scanning.
#[test]
fn staged_removals_read_at_once_and_survive_a_reopen() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let tier = open(dir.path(), &clock).await;
        for i in 0..4 {
            assert!(tier.put(key(i), Entry::new(value(i, 0))).await.unwrap().is_stored());
        }
        tier.wait_written().await.unwrap();
        // 0: on disk, then removed. 1: removed, then put again. 2: put and removed while both
        // may still be pending. 3: left alone. 4: never written.
        tier.remove(&key(0)).await.unwrap();
        tier.remove(&key(1)).await.unwrap();
        assert!(tier.put(key(1), Entry::new(value(1, 1))).await.unwrap().is_stored());
        assert!(tier.put(key(2), Entry::new(value(2, 1))).await.unwrap().is_stored());
        tier.remove(&key(2)).await.unwrap();
        tier.remove(&key(4)).await.unwrap();
        let expect = vec![None, Some(value(1, 1)), None, Some(value(3, 0)), None];
        check_keys(&tier, &expect).await;
        tier.wait_written().await.unwrap();
        assert_eq!(tier.pending_writes(), 0, "the writer drops written tombstones");
        check_keys(&tier, &expect).await;
        drop(tier);
        let tier = open(dir.path(), &clock).await;
        assert!(!tier.recovery_report().from_snapshot);
        check_keys(&tier, &expect).await;
        assert_eq!(tier.usage().entries, Some(2));
    });
}

/// `contains` answers from the pending buffer or the index and the record header, without
/// counting a hit or a miss, and agrees with `get` on pending, written, removed, expired and
/// cleared keys.
#[test]
fn contains_agrees_with_get_and_counts_nothing() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let tier = open(dir.path(), &clock).await;
        let ttl = Duration::from_secs(60);
        assert!(tier.put(key(0), Entry::new(value(0, 0))).await.unwrap().is_stored());
        let short = Entry::new(value(1, 0)).with_ttl(&*clock, ttl);
        assert!(tier.put(key(1), short).await.unwrap().is_stored());
        assert!(tier.put(key(2), Entry::new(value(2, 0))).await.unwrap().is_stored());
        tier.wait_written().await.unwrap();
        tier.remove(&key(2)).await.unwrap();
        let other = Namespace::new("gone").unwrap();
        let gone = other.key("x").unwrap();
        assert!(tier.put(gone.clone(), Entry::new("x")).await.unwrap().is_stored());
        // Pending (no wait): key 3.
        assert!(tier.put(key(3), Entry::new(value(3, 0))).await.unwrap().is_stored());
        let before = tier.stats();
        assert!(tier.contains(&key(0)).await.unwrap());
        assert!(tier.contains(&key(1)).await.unwrap());
        assert!(!tier.contains(&key(2)).await.unwrap());
        assert!(tier.contains(&key(3)).await.unwrap());
        assert!(!tier.contains(&key(4)).await.unwrap());
        assert!(tier.contains(&gone).await.unwrap());
        let after = tier.stats();
        assert_eq!((after.hits, after.misses), (before.hits, before.misses));
        tier.clear_namespace(&other).await.unwrap();
        clock.advance(ttl);
        tier.wait_written().await.unwrap();
        assert!(!tier.contains(&gone).await.unwrap());
        assert!(!tier.contains(&key(1)).await.unwrap());
        for i in 0..5 {
            let k = key(i);
            assert_eq!(tier.contains(&k).await.unwrap(), tier.get(&k).await.unwrap().is_some());
        }
    });
}

#[test]
fn expired_entries_do_not_come_back() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let tier = open(dir.path(), &clock).await;
        let k = key(1);
        assert!(tier.put(k.clone(), Entry::new("old")).await.unwrap().is_stored());
        let ttl = Entry::new("short").with_ttl(&*clock, Duration::from_secs(5));
        assert!(tier.put(k.clone(), ttl).await.unwrap().is_stored());
        drop(tier);
        clock.advance(Duration::from_secs(6));
        let tier = open(dir.path(), &clock).await;
        assert!(tier.get(&k).await.unwrap().is_none(), "neither the expired nor the older value");
    });
}

#[test]
fn a_named_tier_carries_its_name_in_errors_and_stats() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tier = NvmeTierBuilder::new(dir.path(), 64 * MIB).name("disk-a").open().await.unwrap();
        assert_eq!((tier.name(), tier.stats().tier), ("disk-a", "disk-a"));
        let err =
            NvmeTierBuilder::new(dir.path(), 64 * MIB).name("disk-b").open().await.unwrap_err();
        assert_eq!((err.kind(), err.tier()), (ErrorKind::Unavailable, "disk-b"), "{err}");
        tier.close().await.unwrap();
        let err = tier.get(&key(1)).await.unwrap_err();
        assert_eq!((err.kind(), err.tier()), (ErrorKind::Closed, "disk-a"), "{err}");
    });
}

#[test]
fn a_second_opener_gets_a_clear_error() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let tier = open(dir.path(), &clock).await;
        let err = NvmeTierBuilder::new(dir.path(), 64 * MIB).open().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
        assert!(err.to_string().contains("locked"), "{err}");
        tier.close().await.unwrap();
        drop(tier);
        NvmeTierBuilder::new(dir.path(), 64 * MIB).open().await.expect("lock released");
    });
}

#[test]
fn bad_directories_and_configs_give_clear_errors() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = NvmeTierBuilder::new(file.join("sub"), 64 * MIB).open().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.to_string().contains("plain-file"), "{err}");
        let err = NvmeTierBuilder::new(dir.path(), 1000).open().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        let err = NvmeTierBuilder::new(dir.path(), 64 * MIB).segment_size(10).open().await;
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Invalid);
    });
}

#[test]
fn every_durability_level_round_trips() {
    block_on(async {
        for durability in [
            Durability::None,
            Durability::Periodic(Duration::from_millis(1)),
            Durability::EveryWrite,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let tier = NvmeTierBuilder::new(dir.path(), 16 * MIB)
                .durability(durability)
                .open()
                .await
                .unwrap();
            for i in 0..50u32 {
                assert!(tier.put(key(i), Entry::new(value(i, 0))).await.unwrap().is_stored());
            }
            tier.flush().await.unwrap();
            drop(tier);
            let tier = NvmeTierBuilder::new(dir.path(), 16 * MIB).open().await.unwrap();
            for i in 0..50u32 {
                let got = tier.get(&key(i)).await.unwrap().expect("present").value;
                assert_eq!(got, value(i, 0), "{durability:?} key {i}");
            }
        }
    });
}

#[test]
fn hits_are_reinserted_at_reclaim_when_enabled() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tier =
            NvmeTierBuilder::new(dir.path(), 2 * MIB).reinsert_hits(true).open().await.unwrap();
        let hot = key(999_999);
        assert!(tier.put(hot.clone(), Entry::new(vec![7u8; 4096])).await.unwrap().is_stored());
        for i in 0..2000u32 {
            assert!(tier.put(key(i), Entry::new(vec![1u8; 4096])).await.unwrap().is_stored());
            if i % 50 == 0 {
                // Puts return before they are written: keep the log where the loop is, so a
                // hit lands between two reclaims of the hot key's segment.
                tier.wait_written().await.unwrap();
                assert!(tier.get(&hot).await.unwrap().is_some(), "hot key survives reclaim ({i})");
            }
        }
        assert!(tier.reinserted() > 0);
        assert!(tier.usage().bytes_used <= 2 * MIB);
        // Without reinsertion the same workload loses it.
        let dir = tempfile::tempdir().unwrap();
        let tier = NvmeTierBuilder::new(dir.path(), 2 * MIB).open().await.unwrap();
        assert!(tier.put(hot.clone(), Entry::new(vec![7u8; 4096])).await.unwrap().is_stored());
        for i in 0..2000u32 {
            assert!(tier.put(key(i), Entry::new(vec![1u8; 4096])).await.unwrap().is_stored());
            let _ = tier.get(&hot).await.unwrap();
        }
        assert!(tier.get(&hot).await.unwrap().is_none());
    });
}

#[test]
fn an_entry_hit_three_times_outlives_one_hit_once_by_two_reclaims() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // About 500 entries of 4 KiB: a lap of the log is about 500 puts.
        let tier =
            NvmeTierBuilder::new(dir.path(), 2 * MIB).reinsert_hits(true).open().await.unwrap();
        let (thrice, once) = (key(900_001), key(900_002));
        for k in [&thrice, &once] {
            assert!(tier.put(k.clone(), Entry::new(vec![7u8; 4096])).await.unwrap().is_stored());
        }
        tier.wait_written().await.unwrap();
        for _ in 0..3 {
            assert!(tier.get(&thrice).await.unwrap().is_some());
        }
        assert!(tier.get(&once).await.unwrap().is_some());
        // About two and a half laps with neither key read again.
        for i in 0..1200u32 {
            assert!(tier.put(key(i), Entry::new(vec![1u8; 4096])).await.unwrap().is_stored());
            if i % 50 == 0 {
                tier.wait_written().await.unwrap();
            }
        }
        tier.wait_written().await.unwrap();
        assert!(tier.contains(&thrice).await.unwrap(), "three hits buy three reclaims");
        assert!(!tier.contains(&once).await.unwrap(), "one hit buys one");
    });
}

#[test]
fn a_smaller_budget_on_reopen_is_enforced() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tier = NvmeTierBuilder::new(dir.path(), 8 * MIB).open().await.unwrap();
        for i in 0..1500u32 {
            assert!(tier.put(key(i), Entry::new(vec![3u8; 4096])).await.unwrap().is_stored());
        }
        tier.close().await.unwrap();
        drop(tier);
        let tier = NvmeTierBuilder::new(dir.path(), 2 * MIB).open().await.unwrap();
        tier.flush().await.unwrap();
        assert!(tier.usage().bytes_used <= 2 * MIB, "{:?}", tier.usage());
        let mut alive = 0;
        for i in 0..1500u32 {
            if let Some(e) = tier.get(&key(i)).await.unwrap() {
                assert!(e.value.iter().all(|&b| b == 3));
                alive += 1;
            }
        }
        assert!(alive > 0);
    });
}

#[test]
fn large_and_small_records_interleaved_survive_both_reopen_paths() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let big = |i: u32| Bytes::from(vec![i as u8; 40_000 + i as usize]);
        let tier = open(dir.path(), &clock).await;
        let mut items = Vec::new();
        for i in 0..120u32 {
            let v = if i.is_multiple_of(3) { big(i) } else { value(i, 5) };
            items.push((key(i), Entry::new(v)));
        }
        // Batched and single puts both take the direct-write path for the large values.
        let _ = tier.put_many(items.split_off(60)).await.unwrap();
        for (k, e) in items {
            assert!(tier.put(k, e).await.unwrap().is_stored());
        }
        let expect = |i: u32| if i.is_multiple_of(3) { big(i) } else { value(i, 5) };
        for i in 0..120u32 {
            assert_eq!(tier.get(&key(i)).await.unwrap().unwrap().value, expect(i), "{i}");
        }
        drop(tier);
        for snapshot in [false, true] {
            let tier = open(dir.path(), &clock).await;
            assert_eq!(tier.recovery_report().from_snapshot, snapshot);
            for i in 0..120u32 {
                assert_eq!(tier.get(&key(i)).await.unwrap().unwrap().value, expect(i), "{i}");
            }
            tier.close().await.unwrap();
        }
    });
}

#[test]
fn direct_reads_serve_the_same_bytes_on_both_reopen_paths() {
    block_on(async {
        // Not in `/tmp`, which may be a tmpfs (O_DIRECT only from Linux 6.6).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let clock = clock();
        let open = |budget: u64| {
            NvmeTierBuilder::new(dir.path(), budget)
                .segment_size(32 * MIB)
                .direct_reads(true)
                .clock(clock.clone() as Arc<dyn Clock>)
                .open()
        };
        let tier = open(256 * MIB).await.unwrap();
        let expect = populate(&tier).await;
        // A record of 2^24 bytes or more keeps its length in its header only: the direct read
        // takes the header's block first.
        let huge = Bytes::from((0..17 * MIB as usize).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let huge_key = Key::new("reopen", "huge").unwrap();
        assert!(tier.put(huge_key.clone(), Entry::new(huge.clone())).await.unwrap().is_stored());
        tier.flush().await.unwrap();
        check(&tier, &expect).await;
        assert_eq!(tier.get(&huge_key).await.unwrap().unwrap().value, huge);
        drop(tier);
        for snapshot in [false, true] {
            let tier = open(256 * MIB).await.unwrap();
            assert_eq!(tier.recovery_report().from_snapshot, snapshot);
            check(&tier, &expect).await;
            assert_eq!(tier.get(&huge_key).await.unwrap().unwrap().value, huge);
            tier.close().await.unwrap();
        }
    });
}

/// Records written compressed read back after a reopen under another compression setting, from
/// the snapshot and by a scan, and take a fraction of the budget raw records take.
#[test]
fn compressed_records_reopen_under_any_setting() {
    block_on(async {
        let clock = clock();
        let open_with = |dir: &std::path::Path, c: Compression| {
            NvmeTierBuilder::new(dir, 64 * MIB)
                .segment_size(MIB)
                .clock(clock.clone() as Arc<dyn Clock>)
                .compression(c)
                .open()
        };
        let raw_dir = tempfile::tempdir().unwrap();
        let raw = open_with(raw_dir.path(), Compression::None).await.unwrap();
        populate(&raw).await;
        raw.flush().await.unwrap();
        let raw_used = raw.usage().bytes_used;
        for clean in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let zstd = open_with(dir.path(), Compression::zstd()).await.unwrap();
            let mut expect = populate(&zstd).await;
            zstd.flush().await.unwrap();
            let used = zstd.usage().bytes_used;
            assert!(used * 3 < raw_used, "zstd {used} bytes, raw {raw_used}");
            if clean {
                zstd.close().await.unwrap();
            }
            drop(zstd);
            let lz4 = open_with(dir.path(), Compression::Lz4).await.unwrap();
            assert_eq!(lz4.recovery_report().from_snapshot, clean);
            check(&lz4, &expect).await;
            // Mixed: LZ4 records next to the zstd ones, and raw ones after another reopen.
            assert!(lz4.put(key(3), Entry::new(value(3, 9))).await.unwrap().is_stored());
            expect[3] = Some(value(3, 9));
            drop(lz4);
            let plain = open_with(dir.path(), Compression::None).await.unwrap();
            check(&plain, &expect).await;
        }
    });
}
