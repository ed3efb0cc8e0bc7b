//! The checked-in fixtures: `tests/fixtures/v1` was written by the build of segment format
//! version 1 (no sync points), `tests/fixtures/v2` by this one (segments of version 2, with
//! sync points; the snapshot and the namespace log are still version 1). This build must read
//! both (snapshot and scan paths) and, writing the same operations, produce the bytes of `v2`:
//! a change to the on-disk format makes this test fail until FORMAT.md, the version number and
//! a new fixture are checked in on purpose.
//!
//! Regenerate `v2` with
//! `NVME_WRITE_FIXTURE=1 cargo nextest run -p cache-l2-nvme --test format_fixture`.

use std::{path::Path, sync::Arc, time::Duration};

use cache_core::{Clock, Entry, Key, ManualClock, Namespace, Tier, Timestamp, testkit::block_on};
use cache_l2_nvme::{Durability, NvmeTier, NvmeTierBuilder, fuzzing};

const START: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const FILES: [&str; 3] = ["0000000000000000.seg", "namespaces.log", "index.snap"];

fn fixture_dir(version: u32) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

async fn open(dir: &Path, clock: &Arc<ManualClock>) -> NvmeTier {
    // A 64 KiB segment in a 2 MiB budget; no background syncs, so the sync points written
    // (after the barrier and at close) do not depend on timing.
    NvmeTierBuilder::new(dir, 2 << 20)
        .segment_size(64 << 10)
        .durability(Durability::None)
        .clock(clock.clone() as Arc<dyn Clock>)
        .open()
        .await
        .expect("open")
}

fn k(ns: &str, key: &str) -> Key {
    Key::new(ns, key.to_owned()).unwrap()
}

/// The operations the fixture holds.
async fn write_fixture(dir: &Path) {
    let clock = ManualClock::new(START);
    let tier = open(dir, &clock).await;
    let put = |key: Key, e: Entry| {
        let tier = &tier;
        async move { assert!(tier.put(key, e).await.unwrap().is_stored()) }
    };
    put(k("fixture", "alpha"), Entry::new("first value").with_version(42)).await;
    put(k("fixture", "beta"), Entry::new("beta-1")).await;
    // A barrier: its sync is named by a sync point before the next record.
    tier.flush().await.unwrap();
    put(k("fixture", "beta"), Entry::new("beta-2")).await;
    put(k("fixture", "gamma"), Entry::new("removed")).await;
    tier.remove(&k("fixture", "gamma")).await.unwrap();
    put(
        k("fixture", "ttl"),
        Entry::new("short-lived").with_ttl(&*clock, Duration::from_secs(3600)),
    )
    .await;
    put(k("cleared", "x"), Entry::new("before the clear")).await;
    tier.clear_namespace(&Namespace::new("cleared").unwrap()).await.unwrap();
    put(k("cleared", "y"), Entry::new("after the clear")).await;
    tier.close().await.unwrap();
}

async fn check(dir: &Path, expect_snapshot: bool) {
    let clock = ManualClock::new(START);
    let tier = open(dir, &clock).await;
    assert_eq!(tier.recovery_report().from_snapshot, expect_snapshot);
    let get = |key: Key| {
        let tier = &tier;
        async move { tier.get(&key).await.unwrap() }
    };
    let alpha = get(k("fixture", "alpha")).await.expect("alpha");
    assert_eq!(alpha.value, "first value");
    assert_eq!(alpha.meta.version, Some(42));
    assert_eq!(alpha.meta.created_at, START);
    assert_eq!(get(k("fixture", "beta")).await.expect("beta").value, "beta-2");
    assert!(get(k("fixture", "gamma")).await.is_none(), "tombstone honoured");
    assert!(get(k("cleared", "x")).await.is_none(), "namespace clear honoured");
    assert_eq!(get(k("cleared", "y")).await.expect("y").value, "after the clear");
    assert_eq!(get(k("fixture", "ttl")).await.expect("ttl").value, "short-lived");
    clock.advance(Duration::from_secs(3600));
    assert!(get(k("fixture", "ttl")).await.is_none(), "expiry honoured");
    assert_eq!(tier.stats().corrupted, 0);
}

fn copy_fixture(version: u32, to: &Path) {
    for f in FILES {
        std::fs::copy(fixture_dir(version).join(f), to.join(f)).unwrap();
    }
}

/// Reads fixture `version` through the decoders and through both open paths.
fn read_fixture(version: u32) {
    let seg = std::fs::read(fixture_dir(version).join(FILES[0])).unwrap();
    assert_eq!(fuzzing::decode_segment_header(&seg), Some(0));
    assert_eq!(fuzzing::decode_segment(&seg), Some(8), "seven records and one tombstone");
    let snap = std::fs::read(fixture_dir(version).join("index.snap")).unwrap();
    assert_eq!(fuzzing::decode_snapshot(&snap), Some(5), "alpha, beta, ttl, x (lazily cleared), y");
    let log = std::fs::read(fixture_dir(version).join("namespaces.log")).unwrap();
    assert_eq!(fuzzing::decode_namespace_log(&log), Some(1));
    block_on(async {
        let a = tempfile::tempdir().unwrap();
        copy_fixture(version, a.path());
        check(a.path(), true).await;
        let b = tempfile::tempdir().unwrap();
        copy_fixture(version, b.path());
        std::fs::remove_file(b.path().join("index.snap")).unwrap();
        check(b.path(), false).await;
    });
}

#[test]
fn version_1_fixture_is_read_by_snapshot_and_by_scan() {
    read_fixture(1);
    assert_eq!(segment_version(1), 1);
}

#[test]
fn version_2_fixture_is_read_by_snapshot_and_by_scan() {
    if std::env::var_os("NVME_WRITE_FIXTURE").is_some() {
        let tmp = tempfile::tempdir().unwrap();
        block_on(write_fixture(tmp.path()));
        std::fs::create_dir_all(fixture_dir(2)).unwrap();
        for f in FILES {
            std::fs::copy(tmp.path().join(f), fixture_dir(2).join(f)).unwrap();
        }
    }
    read_fixture(2);
    assert_eq!(segment_version(2), 2);
    let seg = std::fs::read(fixture_dir(2).join(FILES[0])).unwrap();
    assert_eq!(seg.windows(4).filter(|w| w == b"TCSP").count(), 2, "after the barrier, at close");
}

/// The version field of fixture `version`'s segment header.
fn segment_version(version: u32) -> u16 {
    let seg = std::fs::read(fixture_dir(version).join(FILES[0])).unwrap();
    u16::from_le_bytes([seg[8], seg[9]])
}

#[test]
fn this_build_writes_the_fixture_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    block_on(write_fixture(tmp.path()));
    for f in FILES {
        let now = std::fs::read(tmp.path().join(f)).unwrap();
        let then = std::fs::read(fixture_dir(2).join(f)).unwrap();
        assert!(now == then, "{f} differs from the version-2 fixture: a format change?");
    }
}
