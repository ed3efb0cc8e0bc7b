//! Corruption: bytes flipped in segment files, files truncated or garbled by hand. Affected
//! entries are misses and counted; nothing panics; no wrong value is ever returned.

use std::{
    fs::OpenOptions,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use cache_core::{Entry, ErrorKind, Key, Tier, testkit::block_on};
use cache_l2_nvme::{Durability, NvmeTier, NvmeTierBuilder};
use rand::{Rng, SeedableRng, rngs::StdRng};

const MIB: u64 = 1 << 20;
const N: u32 = 2000;

fn key(i: u32) -> Key {
    Key::new("corrupt", format!("key-{i}")).unwrap()
}

fn value(i: u32) -> Bytes {
    let len = 100 + (i * 53 % 1500) as usize;
    Bytes::from((0..len).map(|j| (i as usize * 7 + j) as u8).collect::<Vec<_>>())
}

async fn open(dir: &Path) -> NvmeTier {
    open_with(dir, false).await
}

async fn open_with(dir: &Path, direct_reads: bool) -> NvmeTier {
    NvmeTierBuilder::new(dir, 64 * MIB)
        .segment_size(MIB)
        .direct_reads(direct_reads)
        .open()
        .await
        .expect("open")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

async fn populate(dir: &Path) {
    let tier = open(dir).await;
    for i in 0..N {
        assert!(tier.put(key(i), Entry::new(value(i))).await.unwrap().is_stored());
    }
    tier.close().await.unwrap();
}

/// Reads every key: each is exact or a miss. Returns the number of misses.
async fn check(tier: &NvmeTier) -> u32 {
    let mut misses = 0;
    for i in 0..N {
        match tier.get(&key(i)).await.unwrap() {
            Some(e) => assert_eq!(e.value, value(i), "wrong value for key {i}"),
            None => misses += 1,
        }
    }
    misses
}

/// Flips `n` random bytes after the segment header of random segments (in the written part).
fn flip_bytes(dir: &Path, n: usize, rng: &mut StdRng) {
    let segs = segments(dir);
    for _ in 0..n {
        let path = &segs[rng.random_range(0..segs.len())];
        let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
        let data = std::fs::read(path).unwrap();
        let written = data.iter().rposition(|&b| b != 0).unwrap_or(64).max(65);
        let at = rng.random_range(64..written) as u64;
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 1 << rng.random_range(0..8);
        f.write_all_at(&b, at).unwrap();
    }
}

#[test]
fn flipped_bytes_are_counted_misses_on_both_recovery_paths() {
    block_on(async {
        for (seed, use_snapshot) in [(1u64, true), (2, false), (3, true), (4, false)] {
            let dir = tempfile::tempdir().unwrap();
            populate(dir.path()).await;
            let mut rng = StdRng::seed_from_u64(seed);
            flip_bytes(dir.path(), 20, &mut rng);
            if !use_snapshot {
                std::fs::remove_file(dir.path().join("index.snap")).unwrap();
            }
            let tier = open(dir.path()).await;
            assert_eq!(tier.recovery_report().from_snapshot, use_snapshot);
            let misses = check(&tier).await;
            let stats = tier.stats();
            assert!(misses > 0, "20 flipped bytes hit some record (seed {seed})");
            assert!(stats.corrupted > 0, "corruption is counted: {stats:?}");
            assert!(misses < N / 2, "corruption stays local: {misses} misses");
            // Reading again: the corrupt entries were dropped, still no wrong value.
            assert_eq!(check(&tier).await, misses);
        }
    });
}

#[test]
fn corruption_while_open_is_a_counted_miss() {
    corruption_while_open(false);
}

#[test]
fn corruption_while_open_is_a_counted_miss_with_direct_reads() {
    corruption_while_open(true);
}

fn corruption_while_open(direct_reads: bool) {
    block_on(async {
        // Not in `/tmp`, which may be a tmpfs (O_DIRECT only from Linux 6.6).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let open = |dir| open_with(dir, direct_reads);
        let tier = open(dir.path()).await;
        let k = key(1);
        assert!(tier.put(k.clone(), Entry::new(value(1))).await.unwrap().is_stored());
        tier.flush().await.unwrap();
        let seg = &segments(dir.path())[0];
        let f = OpenOptions::new().write(true).open(seg).unwrap();
        // The value is the record's tail: flip its last byte (a sync point follows it).
        let data = std::fs::read(seg).unwrap();
        let v = value(1);
        let last = data.windows(v.len()).position(|w| w == v).unwrap() + v.len() - 1;
        f.write_all_at(&[data[last] ^ 0xff], last as u64).unwrap();
        assert!(tier.get(&k).await.unwrap().is_none());
        assert_eq!(tier.stats().corrupted, 1);
        // The tier still works, and the removal-by-corruption survives a restart.
        assert!(tier.put(key(2), Entry::new(value(2))).await.unwrap().is_stored());
        drop(tier);
        let tier = open(dir.path()).await;
        assert!(tier.get(&k).await.unwrap().is_none());
        assert_eq!(tier.get(&key(2)).await.unwrap().unwrap().value, value(2));
    });
}

#[test]
fn a_range_read_of_a_large_value_verifies_only_the_chunks_it_covers() {
    ranged_corruption(false);
}

#[test]
fn a_range_read_with_direct_reads_verifies_only_the_chunks_it_covers() {
    ranged_corruption(true);
}

/// A value of 16 chunks (1 MiB; a version-2 record): a flipped byte in chunk 9 is not seen by
/// a range in chunk 1 (served, byte for byte), is seen by a range that touches chunk 9 (a
/// counted corruption and a miss, and the key is dropped as by `get`).
fn ranged_corruption(direct_reads: bool) {
    block_on(async {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let tier = NvmeTierBuilder::new(dir.path(), 64 * MIB)
            .segment_size(4 * MIB)
            .direct_reads(direct_reads)
            .open()
            .await
            .unwrap();
        let chunk = 1usize << cache_core::CHUNK_SHIFT;
        let v: Bytes = (0..16 * chunk).map(|i| (i * 29 % 253) as u8).collect::<Vec<_>>().into();
        let k = key(7);
        assert!(tier.put(k.clone(), Entry::new(v.clone())).await.unwrap().is_stored());
        tier.flush().await.unwrap();
        let seg = &segments(dir.path())[0];
        let data = std::fs::read(seg).unwrap();
        let at = data.windows(64).position(|w| w == &v[..64]).unwrap();
        let flip = at + 9 * chunk + 100;
        OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .write_all_at(&[!data[flip]], flip as u64)
            .unwrap();
        let r = |a: usize, b: usize| a as u64..b as u64;
        let got = tier.get_range(&k, r(chunk + 5, 2 * chunk + 5)).await.unwrap().unwrap();
        assert!(got == v.slice(chunk + 5..2 * chunk + 5), "chunks 1 and 2 are intact");
        assert_eq!(tier.stats().corrupted, 0);
        assert!(tier.get_range(&k, r(8 * chunk, 9 * chunk + 1)).await.unwrap().is_none());
        assert_eq!(tier.stats().corrupted, 1, "chunk 9 failed its check");
        assert!(tier.get_range(&k, r(0, 10)).await.unwrap().is_none(), "dropped, as by get");
        assert!(tier.get(&k).await.unwrap().is_none());
    });
}

#[test]
fn truncated_and_garbled_files_are_handled() {
    block_on(async {
        // A segment truncated by hand (snapshot then no longer matches: scan).
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path()).await;
        let segs = segments(dir.path());
        let victim = &segs[0];
        let len = std::fs::metadata(victim).unwrap().len();
        OpenOptions::new().write(true).open(victim).unwrap().set_len(len / 3).unwrap();
        let tier = open(dir.path()).await;
        assert!(!tier.recovery_report().from_snapshot);
        let misses = check(&tier).await;
        assert!(misses > 0 && misses < N);
        drop(tier);

        // A garbled segment header: the segment is dropped, the rest still served.
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path()).await;
        let segs = segments(dir.path());
        std::fs::write(&segs[1], b"garbage").unwrap();
        let tier = open(dir.path()).await;
        assert_eq!(tier.recovery_report().bad_segments, 1);
        let misses = check(&tier).await;
        assert!(misses > 0 && misses < N);
        drop(tier);

        // A garbled snapshot: ignored, the segments are scanned.
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path()).await;
        let snap = dir.path().join("index.snap");
        let mut b = std::fs::read(&snap).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        std::fs::write(&snap, b).unwrap();
        let tier = open(dir.path()).await;
        assert!(!tier.recovery_report().from_snapshot);
        assert_eq!(check(&tier).await, 0);
        drop(tier);

        // A garbled namespace log: a clear error naming the file.
        std::fs::write(dir.path().join("namespaces.log"), b"not a log at all").unwrap();
        let err = NvmeTierBuilder::new(dir.path(), 64 * MIB).open().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
        assert!(err.to_string().contains("namespaces.log"), "{err}");
    });
}

/// The offset of the record holding `key(i)` in `data` (a segment file), if it is there.
fn record_offset(data: &[u8], i: u32) -> Option<usize> {
    let needle = format!("corruptkey-{i}");
    let named = data.windows(needle.len()).position(|w| w == needle.as_bytes())?;
    data[..named].windows(4).rposition(|w| w == b"TCRD")
}

#[test]
fn a_garbled_record_header_mid_segment_loses_only_that_record() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path()).await;
        // Drop the snapshot: the scan must get past the damage.
        std::fs::remove_file(dir.path().join("index.snap")).unwrap();
        let seg = &segments(dir.path())[0];
        let data = std::fs::read(seg).unwrap();
        // A key in the middle of the first segment, with records of other keys after it.
        let victim = (1..N).find(|i| record_offset(&data, *i).is_some_and(|o| o > data.len() / 4));
        let victim = victim.expect("a record in the middle of the first segment");
        let at = record_offset(&data, victim).unwrap();
        let f = OpenOptions::new().write(true).open(seg).unwrap();
        // Magic and version garbled: the header no longer parses.
        f.write_all_at(b"XXXXXX", at as u64).unwrap();
        drop(f);
        let tier = open(dir.path()).await;
        assert!(!tier.recovery_report().from_snapshot);
        assert_eq!(tier.recovery_report().corrupt_records, 1, "{:?}", tier.recovery_report());
        assert!(tier.get(&key(victim)).await.unwrap().is_none());
        for i in (0..N).filter(|i| *i != victim) {
            let got = tier.get(&key(i)).await.unwrap();
            assert_eq!(got.map(|e| e.value), Some(value(i)), "key {i} after the damaged record");
        }
        assert_eq!(tier.stats().corrupted, 1);
    });
}

#[test]
fn a_snapshot_entry_outside_its_segment_falls_back_to_the_scan() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path()).await;
        let snap = dir.path().join("index.snap");
        let mut b = std::fs::read(&snap).unwrap();
        let segments = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
        // The last entry (so most shards load before the bad one is met): its offset moves
        // past the end of its segment, and the checksum is recomputed to match.
        let trailer = b.len() - 8;
        let last = trailer - 16;
        assert!(last >= 64 + segments * 16 + 256 * 4);
        b[last + 8..last + 12].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&b[64..trailer]);
        b[trailer..].copy_from_slice(&sum.to_le_bytes());
        std::fs::write(&snap, b).unwrap();
        let tier = open(dir.path()).await;
        assert!(!tier.recovery_report().from_snapshot);
        assert_eq!(tier.recovery_report().entries, u64::from(N));
        assert_eq!(check(&tier).await, 0);
    });
}

/// Opens with durability none: syncs happen at barriers only, so a test knows which bytes a
/// sync covered (and which sync points were written).
async fn open_unsynced(dir: &Path) -> NvmeTier {
    NvmeTierBuilder::new(dir, 64 * MIB)
        .segment_size(MIB)
        .durability(Durability::None)
        .open()
        .await
        .expect("open")
}

/// The offset of the last record in `data` whose key is `key-{i}` (its header, then the
/// rkyv metadata, the namespace and the key).
fn record_of(data: &[u8], i: u32) -> usize {
    let name = format!("corruptkey-{i}");
    let at = data.windows(name.len()).rposition(|w| w == name.as_bytes()).unwrap();
    data[..at].windows(4).rposition(|w| w == b"TCRD").unwrap()
}

/// Regression (found by the crash campaign): a crash that tears an overwrite — header and key
/// on disk, the end of the value not — must leave the older, acknowledged version readable, on
/// this and on every later reopen.
#[test]
fn a_torn_overwrite_at_the_tail_keeps_the_acknowledged_version() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tier = open_unsynced(dir.path()).await;
        let k = key(7);
        assert!(tier.put(k.clone(), Entry::new(value(1))).await.unwrap().is_stored());
        tier.flush().await.unwrap();
        let newer = Bytes::from(vec![0xAB; 3000]);
        assert!(tier.put(k.clone(), Entry::new(newer)).await.unwrap().is_stored());
        drop(tier); // written, never synced; no close: no snapshot, the next open scans
        // Tear the newer record: zero the second half of its value, as a killed write leaves it.
        let seg = segments(dir.path()).pop().unwrap();
        let data = std::fs::read(&seg).unwrap();
        let at = record_of(&data, 7);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&vec![0u8; 1500], (at + 40 + 3000 - 1500) as u64).unwrap();
        drop(f);
        for reopen in 0..2 {
            let tier = open_unsynced(dir.path()).await;
            let report = tier.recovery_report();
            assert!(!report.from_snapshot);
            assert_eq!((report.torn_records, report.corrupt_records), (1, 0), "reopen {reopen}");
            let got = tier.get(&k).await.unwrap().map(|e| e.value);
            assert_eq!(got, Some(value(1)), "reopen {reopen}: the acknowledged version");
            // Other writes after the recovery go to a new segment and leave the tail alone.
            assert!(tier.put(key(8), Entry::new(value(8))).await.unwrap().is_stored());
            tier.flush().await.unwrap();
            drop(tier);
            let _ = std::fs::remove_file(dir.path().join("index.snap"));
        }
    });
}

/// Regression (found by the power-loss campaign): a disk that writes back an unsynced batch
/// out of order can leave an overwrite torn with a later record of the same batch whole behind
/// it. The torn record is past the last sync point, so it is an interrupted write: the key
/// keeps its acknowledged version (before segment version 2 and its sync points, the scan took
/// the damage for bit rot, because a valid record followed, and dropped the key).
#[test]
fn a_torn_overwrite_before_a_whole_unsynced_record_keeps_the_acknowledged_version() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tier = open_unsynced(dir.path()).await;
        assert!(tier.put(key(7), Entry::new(value(1))).await.unwrap().is_stored());
        tier.flush().await.unwrap();
        let newer = Bytes::from(vec![0xAB; 3000]);
        assert!(tier.put(key(7), Entry::new(newer)).await.unwrap().is_stored());
        assert!(tier.put(key(9), Entry::new(value(9))).await.unwrap().is_stored());
        drop(tier);
        let seg = segments(dir.path()).pop().unwrap();
        let data = std::fs::read(&seg).unwrap();
        let at = record_of(&data, 7);
        assert!(record_of(&data, 9) > at, "the later record follows the torn one");
        // One 512-byte sector in the middle of the newer value never reached the disk.
        let sector = (at + 1024).next_multiple_of(512);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0u8; 512], sector as u64).unwrap();
        drop(f);
        let tier = open_unsynced(dir.path()).await;
        let got = tier.get(&key(7)).await.unwrap().map(|e| e.value);
        assert_eq!(got, Some(value(1)), "the acknowledged version");
        assert_eq!(tier.get(&key(9)).await.unwrap().map(|e| e.value), Some(value(9)));
        let report = tier.recovery_report();
        assert_eq!((report.torn_records, report.corrupt_records), (1, 0));
        assert_eq!(tier.stats().corrupted, 0);
    });
}

/// The other side of the sync point: the same damage to an overwrite a barrier covered is
/// damage of durable data, so the key is dropped (its older version must not come back in
/// place of the newest) and the damage is counted.
#[test]
fn a_damaged_synced_overwrite_drops_the_key() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tier = open_unsynced(dir.path()).await;
        assert!(tier.put(key(7), Entry::new(value(1))).await.unwrap().is_stored());
        tier.flush().await.unwrap();
        let newer = Bytes::from(vec![0xAB; 3000]);
        assert!(tier.put(key(7), Entry::new(newer)).await.unwrap().is_stored());
        tier.flush().await.unwrap();
        drop(tier);
        let seg = segments(dir.path()).pop().unwrap();
        let data = std::fs::read(&seg).unwrap();
        let at = record_of(&data, 7);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0x55], (at + 2000) as u64).unwrap();
        drop(f);
        let tier = open_unsynced(dir.path()).await;
        let report = tier.recovery_report();
        assert_eq!((report.torn_records, report.corrupt_records), (0, 1));
        assert_eq!(tier.get(&key(7)).await.unwrap(), None, "not the older version");
    });
}
