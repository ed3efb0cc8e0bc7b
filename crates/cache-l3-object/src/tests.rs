//! The conformance suite on memory and the local filesystem, and tests of failures (through
//! the fault-injecting store), corruption, ranges, multipart uploads, conditional create and
//! encryption at rest (`sealed` below).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Entry, EntryMeta, Error, ErrorKind, Key, ManualClock, Namespace, PutOutcome, Record, Tier,
    Timestamp,
    testkit::{START, TestTier, TierSpec},
};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    memory::InMemory, path::Path,
};

use crate::{
    CreateOutcome, ObjectTier, ObjectTierBuilder, Op,
    fault::{Fault, FaultOp, FaultRule, FaultyStore},
};

const MIB: usize = 1024 * 1024;

mod memory {
    use super::*;

    async fn factory(spec: TierSpec) -> TestTier {
        let tier = ObjectTierBuilder::in_memory()
            .budget(spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .build()
            .await
            .expect("building an in-memory tier");
        TestTier::new(tier)
    }

    cache_core::conformance_suite!(factory);
    cache_core::huge_conformance_suite!(factory);
}

mod memory_compressed {
    use super::*;

    cache_core::conformance_suite!(|spec: TierSpec| async move {
        let tier = ObjectTierBuilder::in_memory()
            .budget(spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .compression(cache_core::Compression::Lz4)
            .build()
            .await
            .expect("building an in-memory tier");
        TestTier::new(tier)
    });
}

/// Encryption at rest: every namespace but `"plain"` sealed (`testkit::suite_keys`), after LZ4,
/// so compress-then-seal is covered too; the whole suite plus `sealed_records`.
mod memory_sealed {
    use super::*;

    cache_core::sealed_conformance_suite!(|spec: TierSpec| async move {
        let tier = ObjectTierBuilder::in_memory()
            .budget(spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .compression(cache_core::Compression::Lz4)
            .encryption(cache_core::testkit::suite_keys())
            .build()
            .await
            .expect("building a sealing in-memory tier");
        TestTier::new(tier)
    });
}

mod local_fs {
    use super::*;

    // Multipart from 4 MiB, so the 8 MiB conformance value goes up in parts (and the 1 GiB one
    // in 342 of them).
    async fn factory(spec: TierSpec) -> TestTier {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let tier = ObjectTierBuilder::local(dir.path())
            .prefix("conformance/l3")
            .budget(spec.capacity_bytes)
            .clock(spec.dyn_clock())
            .multipart_threshold(4 * MIB as u64)
            .part_size(3 * MIB)
            .build()
            .await
            .expect("building a local filesystem tier");
        TestTier::with_guard(tier, dir)
    }

    cache_core::conformance_suite!(factory);
    cache_core::huge_conformance_suite!(factory);
}

fn key(k: &str) -> Key {
    Key::new("tests", k.to_owned()).unwrap()
}

fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>().into()
}

/// A tier over a fault-injecting in-memory store, with a short operation timeout.
async fn faulty(timeout: Duration) -> (ObjectTier, Arc<FaultyStore>) {
    let store = Arc::new(FaultyStore::with_seed(Arc::new(InMemory::new()), 7));
    let tier = ObjectTier::builder(store.clone())
        .prefix("faults")
        .operation_timeout(timeout)
        .build()
        .await
        .unwrap();
    (tier, store)
}

#[tokio::test]
async fn injected_hang_is_unavailable_within_the_timeout() {
    let timeout = Duration::from_millis(200);
    let (tier, store) = faulty(timeout).await;
    let k = key("hang");
    assert!(tier.put(k.clone(), Entry::new("v")).await.unwrap().is_stored());
    store.inject(FaultRule::new(Fault::Hang).on(FaultOp::Get).times(1));
    let start = Instant::now();
    let err = tier.get(&k).await.unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("did not finish within 200ms"), "{err}");
    assert!(elapsed >= timeout && elapsed < timeout * 4, "took {elapsed:?}");
    // The fault was for one call: the value is still there.
    assert_eq!(tier.get(&k).await.unwrap().unwrap().value, "v");

    store.outage();
    for result in [
        tier.put(k.clone(), Entry::new("w")).await.map(|_| ()),
        tier.remove(&k).await,
        tier.clear_namespace(k.namespace()).await,
        tier.contains(&k).await.map(|_| ()),
    ] {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unavailable);
    }
    let stats = tier.stats();
    assert_eq!(stats.errors_of(ErrorKind::Unavailable), 5);
    let metrics = tier.metrics();
    assert!(metrics.op(Op::Get).failures >= 1 && metrics.op(Op::Put).failures == 1);
    store.clear();
    assert_eq!(tier.get(&k).await.unwrap().unwrap().value, "v", "healthy again");
}

#[tokio::test]
async fn injected_errors_map_to_kinds() {
    let (tier, store) = faulty(Duration::from_secs(5)).await;
    let k = key("errors");
    store.inject(FaultRule::new(Fault::Unavailable).on(FaultOp::Put).times(1));
    assert_eq!(
        tier.put(k.clone(), Entry::new("v")).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    store.inject(FaultRule::new(Fault::PermissionDenied).on(FaultOp::Get).times(1));
    let err = tier.get(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("check the credentials"), "{err}");
    // Injected latency slows a call without failing it.
    store.inject(
        FaultRule::new(Fault::Latency(Duration::from_millis(50))).on(FaultOp::Put).times(1),
    );
    let start = Instant::now();
    assert!(tier.put(k.clone(), Entry::new("v")).await.unwrap().is_stored());
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(store.injected(), 3);
}

#[tokio::test]
async fn wrong_credentials_fail_at_build() {
    let store = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    store.inject(FaultRule::new(Fault::PermissionDenied).on(FaultOp::List));
    let err = ObjectTier::builder(store.clone()).build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().starts_with("start-up check failed"), "{err}");
    assert!(err.message().contains("check the credentials"), "{err}");
    store.clear();
    store.outage();
    let err = ObjectTier::builder(store.clone())
        .operation_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(ObjectTier::builder(store).preflight(false).build().await.is_ok(), "no check");
}

#[tokio::test]
async fn random_faults_are_reproducible_with_a_seed() {
    async fn pattern_of(seed: u64) -> Vec<bool> {
        let store = FaultyStore::with_seed(Arc::new(InMemory::new()), seed);
        store.put(&Path::from("x"), PutPayload::from_static(b"1")).await.unwrap();
        store.inject(FaultRule::new(Fault::NotFound).with_probability(0.5));
        let mut out = Vec::new();
        for _ in 0..64 {
            out.push(store.get(&Path::from("x")).await.is_err());
        }
        out
    }
    let a = pattern_of(42).await;
    assert_eq!(a, pattern_of(42).await);
    assert_ne!(a, pattern_of(43).await);
    let failures = a.iter().filter(|f| **f).count();
    assert!((16..48).contains(&failures), "{failures} of 64");
}

#[tokio::test]
async fn scheduled_faults_skip_then_fire() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    store.put(&Path::from("x"), PutPayload::from_static(b"1")).await.unwrap();
    store.inject(FaultRule::new(Fault::Unavailable).on(FaultOp::Get).after(2).times(2));
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(store.get(&Path::from("x")).await.is_ok());
    }
    assert_eq!(seen, [true, true, false, false, true, true]);
}

#[tokio::test]
async fn corrupt_object_is_a_counted_miss_and_deleted() {
    let tier = ObjectTierBuilder::in_memory().budget(1 << 20).build().await.unwrap();
    let store = tier.store().clone();
    let k = key("corrupt");
    assert!(tier.put(k.clone(), Entry::new("a value of some length")).await.unwrap().is_stored());
    let path = tier.object_path(&k);
    let mut bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    store.put(&path, bytes.into()).await.unwrap();
    assert!(tier.get(&k).await.unwrap().is_none(), "corrupt object must miss");
    let stats = tier.stats();
    assert_eq!((stats.corrupted, stats.misses), (1, 1));
    assert!(matches!(store.head(&path).await, Err(object_store::Error::NotFound { .. })));
    assert_eq!(tier.usage().bytes_used, 0, "forgotten by the budget account");

    // A valid record of another key at this key's path is corrupt too.
    let other = key("other");
    assert!(tier.put(other.clone(), Entry::new("x")).await.unwrap().is_stored());
    store.copy(&tier.object_path(&other), &path).await.unwrap();
    assert!(tier.get(&k).await.unwrap().is_none());
    assert!(!tier.contains(&k).await.unwrap());
    assert_eq!(tier.stats().corrupted, 2);
    // Garbage shorter than a header.
    store.put(&path, PutPayload::from_static(b"junk")).await.unwrap();
    assert!(!tier.contains(&k).await.unwrap());
    assert!(tier.get_range(&k, 0..2).await.unwrap().is_none());
    assert_eq!(tier.stats().corrupted, 3);
    assert_eq!(tier.get(&other).await.unwrap().unwrap().value, "x", "others unaffected");
}

/// On the local filesystem (whose reads are files, not streams), a flipped or missing byte is a
/// counted miss too, and the file is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_local_file_is_a_counted_miss_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let tier = ObjectTierBuilder::local(dir.path()).prefix("p").build().await.unwrap();
    let file = |k: &Key| dir.path().join(tier.object_path(k).as_ref());
    let (flipped, short, fine) = (key("flipped"), key("short"), key("fine"));
    for k in [&flipped, &short, &fine] {
        let value = pattern(70_000);
        assert!(tier.put(k.clone(), Entry::new(value)).await.unwrap().is_stored());
    }
    let mut bytes = std::fs::read(file(&flipped)).unwrap();
    bytes[40_000] ^= 1;
    std::fs::write(file(&flipped), &bytes).unwrap();
    let bytes = std::fs::read(file(&short)).unwrap();
    std::fs::write(file(&short), &bytes[..bytes.len() - 1]).unwrap();
    for k in [&flipped, &short] {
        assert!(tier.get(k).await.unwrap().is_none(), "{k:?}");
        assert!(!file(k).exists(), "{k:?} is deleted");
    }
    assert_eq!(tier.stats().corrupted, 2);
    assert_eq!(tier.get(&fine).await.unwrap().unwrap().value, pattern(70_000));
}

#[tokio::test]
async fn byte_range_reads_part_of_a_value() {
    let dir = tempfile::tempdir().unwrap();
    for tier in [
        ObjectTierBuilder::in_memory().build().await.unwrap(),
        ObjectTierBuilder::local(dir.path()).build().await.unwrap(),
    ] {
        let k = key("range");
        let value = pattern(3 * MIB + 5);
        assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
        let before = tier.metrics().bytes_down;
        let cases = [0..10, 100..200, 2 * MIB as u64..2 * MIB as u64 + 7, 5..5];
        for r in cases {
            let got = tier.get_range(&k, r.clone()).await.unwrap().unwrap();
            assert_eq!(got, value.slice(r.start as usize..r.end as usize), "{r:?}");
        }
        let read = tier.metrics().bytes_down - before;
        assert!(read < MIB as u64, "range reads downloaded {read} bytes");
        // Clamped to the value.
        let len = value.len() as u64;
        assert_eq!(
            tier.get_range(&k, len - 3..len + 100).await.unwrap().unwrap(),
            value.slice(value.len() - 3..)
        );
        assert!(tier.get_range(&k, len + 10..len + 20).await.unwrap().unwrap().is_empty());
        assert!(tier.get_range(&k, 10..len * 2).await.unwrap().unwrap() == value.slice(10..));
        #[expect(clippy::reversed_empty_ranges, reason = "the point of the check")]
        let backwards = 9..3;
        assert_eq!(tier.get_range(&k, backwards).await.unwrap_err().kind(), ErrorKind::Invalid);
        assert!(tier.get_range(&key("absent"), 0..3).await.unwrap().is_none());
    }
}

/// A ranged read verifies what it returns: the chunks it covers against the record's chunk
/// table, the table and the head against the record checksum. A flipped byte in a chunk the
/// range does not touch goes unnoticed by that read; a flip in one it touches, in the table or
/// in the head is a counted miss, and the object is deleted.
#[tokio::test]
async fn a_ranged_read_verifies_the_chunks_it_returns() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tier = ObjectTier::builder(store.clone()).build().await.unwrap();
    let value = pattern(3 * MIB + 5);
    let chunk = 1usize << cache_core::CHUNK_SHIFT;
    // Every key below has a name of the same length, so its record head is this long.
    let head_len = Record::encoded_len(&key("flip-0-0000000"), 0);
    let far = 2 * MIB as u64 + 10..2 * MIB as u64 + 20;
    // (name, byte of the object to flip, whether a read of `0..10` and of `far` notice it)
    let table_at = head_len + value.len() + 8;
    let cases = [
        ("near chunk", head_len + 5, true, false),
        ("far chunk", head_len + 2 * MIB + 15, false, true),
        ("far chunk, other byte", head_len + 2 * MIB + chunk - 1, false, true),
        ("table", table_at, true, true),
        ("head", 30, true, true),
    ];
    for (n, (name, at, near_sees, far_sees)) in cases.into_iter().enumerate() {
        for (range, sees) in [(0..10u64, near_sees), (far.clone(), far_sees)] {
            let k = key(&format!("flip-{n}-{:07}", range.start));
            assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
            let path = tier.object_path(&k);
            let mut bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
            bytes[at] ^= 0x04;
            store.put(&path, bytes.into()).await.unwrap();
            let before = tier.stats().corrupted;
            let got = tier.get_range(&k, range.clone()).await.unwrap();
            if sees {
                assert_eq!(got, None, "{name}, {range:?}");
                assert_eq!(tier.stats().corrupted, before + 1, "{name}");
                assert!(store.head(&path).await.is_err(), "{name}: the object is deleted");
            } else {
                let want = value.slice(range.start as usize..range.end as usize);
                assert_eq!(got, Some(want), "{name}, {range:?}");
                assert_eq!(tier.get(&k).await.unwrap(), None, "a full read sees every flip");
            }
        }
    }
}

/// A tier built with compression stores a compressible value compressed and reads it back
/// whole and in ranges; objects written raw by another tier on the same store still read.
#[tokio::test]
async fn a_compressing_tier_shrinks_objects_and_reads_every_record() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let raw = ObjectTier::builder(store.clone()).build().await.unwrap();
    let zstd = ObjectTier::builder(store.clone())
        .compression(cache_core::Compression::zstd())
        .build()
        .await
        .unwrap();
    let value: Bytes = "{\"role\":\"assistant\",\"content\":\"ok\"} ".repeat(500).into();
    let (a, b) = (key("by-raw"), key("by-zstd"));
    assert!(raw.put(a.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    assert!(zstd.put(b.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    let size = |k: &Key| {
        let (store, path) = (store.clone(), raw.object_path(k));
        async move { store.head(&path).await.unwrap().size }
    };
    assert!(size(&b).await * 10 < size(&a).await, "{} vs {}", size(&b).await, size(&a).await);
    for tier in [&raw, &zstd] {
        for k in [&a, &b] {
            assert_eq!(tier.get(k).await.unwrap().unwrap().value, value);
            let got = tier.get_range(k, 1_000..1_050).await.unwrap().unwrap();
            assert_eq!(got, value.slice(1_000..1_050));
        }
    }
}

#[tokio::test]
async fn expired_objects_are_deleted_in_the_background() {
    let clock = ManualClock::new(START);
    let tier = ObjectTierBuilder::in_memory().clock(clock.clone()).build().await.unwrap();
    let k = key("ttl");
    let entry = Entry::new("short").with_ttl(&*clock, Duration::from_secs(5));
    assert!(tier.put(k.clone(), entry).await.unwrap().is_stored());
    assert!(tier.contains(&k).await.unwrap());
    clock.advance(Duration::from_secs(5));
    assert!(tier.get(&k).await.unwrap().is_none());
    tier.flush().await.unwrap();
    let path = tier.object_path(&k);
    assert!(matches!(tier.store().head(&path).await, Err(object_store::Error::NotFound { .. })));
    assert_eq!(tier.stats().expirations, 1);
}

#[tokio::test]
async fn multipart_upload_round_trips_and_aborts_on_failure() {
    let store = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    let tier = ObjectTier::builder(store.clone())
        .multipart_threshold(MIB as u64)
        .part_size(256 * 1024)
        .part_concurrency(3)
        .build()
        .await
        .unwrap();
    let k = key("big");
    let value = pattern(2 * MIB + 3);
    assert!(tier.put(k.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    assert!(tier.get(&k).await.unwrap().unwrap().value == value);
    let m = tier.metrics();
    assert_eq!(m.op(Op::MultipartStart).requests, 1);
    assert_eq!(m.op(Op::MultipartPart).requests, 9, "2 MiB + head in 256 KiB parts");
    assert_eq!(m.op(Op::MultipartComplete).requests, 1);
    assert!(m.bytes_up > value.len() as u64);

    // A part fails: the upload fails with Unavailable and the old value stays.
    store.inject(FaultRule::new(Fault::Unavailable).on(FaultOp::Multipart).after(3).times(1));
    let err = tier.put(k.clone(), Entry::new(pattern(3 * MIB))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(tier.get(&k).await.unwrap().unwrap().value == value);
}

/// A store that ignores `PutMode::Create`, as some S3 look-alikes do.
#[derive(Debug)]
struct IgnoresCreate(InMemory);

impl std::fmt::Display for IgnoresCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IgnoresCreate")
    }
}

#[async_trait]
impl ObjectStore for IgnoresCreate {
    async fn put_opts(
        &self,
        l: &Path,
        p: PutPayload,
        _: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.put_opts(l, p, PutOptions::default()).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        self.0.get_opts(l, o).await
    }
    fn delete_stream(
        &self,
        l: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(l)
    }
    fn list(&self, p: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(p)
    }
    async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(p).await
    }
    async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.0.copy_opts(f, t, o).await
    }
}

#[tokio::test]
async fn conditional_create_first_writer_wins() {
    let dir = tempfile::tempdir().unwrap();
    for builder in [ObjectTierBuilder::in_memory(), ObjectTierBuilder::local(dir.path())] {
        let tier = builder.conditional_create(true).build().await.unwrap();
        let k = key("once");
        assert_eq!(tier.put(k.clone(), Entry::new("first")).await.unwrap(), PutOutcome::Stored);
        let err = tier.put(k.clone(), Entry::new("second")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("write-once"), "{err}");
        assert_eq!(tier.get(&k).await.unwrap().unwrap().value, "first");
        let outcome = tier.put_if_absent(k.clone(), Entry::new("third")).await.unwrap();
        assert_eq!(outcome, CreateOutcome::AlreadyExists);
        let fresh = key("fresh");
        let outcome = tier.put_if_absent(fresh.clone(), Entry::new("new")).await.unwrap();
        assert_eq!(outcome, CreateOutcome::Created);
        assert_eq!(tier.stats().rejections, 1);
        // The probe object was cleaned up.
        let probes = tier.store().list_with_delimiter(None).await.unwrap();
        assert!(probes.objects.is_empty(), "{probes:?}");
    }
    // Racing creators: exactly one wins.
    let tier = ObjectTierBuilder::in_memory().build().await.unwrap();
    let k = key("race");
    let outcomes = futures::future::join_all(
        (0..5).map(|i| tier.put_if_absent(k.clone(), Entry::new(format!("writer {i}")))),
    )
    .await;
    let created = outcomes.iter().filter(|o| matches!(o, Ok(CreateOutcome::Created))).count();
    assert_eq!(created, 1, "{outcomes:?}");
}

#[tokio::test]
async fn a_store_ignoring_conditional_create_is_reported() {
    let store = Arc::new(IgnoresCreate(InMemory::new()));
    let err =
        ObjectTier::builder(store.clone()).conditional_create(true).build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("ignores"), "{err}");
    assert!(ObjectTier::builder(store).build().await.is_ok(), "fine without write-once keys");
    // A store that refuses it outright is reported the same way.
    let refuses =
        object_store::Error::NotImplemented { operation: "create".into(), implementer: "x".into() };
    assert_eq!(
        crate::error::ObjectError::classify(Op::Put, refuses).kind(),
        ErrorKind::Unsupported
    );
    let _ = PutMode::Create;
}

#[tokio::test]
async fn clear_namespace_counts_and_keeps_others() {
    let dir = tempfile::tempdir().unwrap();
    let tier = ObjectTierBuilder::local(dir.path())
        .local_fsync(false)
        .delete_concurrency(2)
        .build()
        .await
        .unwrap();
    let a = Namespace::new("a").unwrap();
    let b = Namespace::new("b").unwrap();
    for i in 0..2100u32 {
        let ns = if i % 3 == 0 { &b } else { &a };
        assert!(
            tier.put(ns.key(i.to_le_bytes().to_vec()).unwrap(), Entry::new("v"))
                .await
                .unwrap()
                .is_stored()
        );
    }
    assert_eq!(tier.clear_namespace_count(&a).await.unwrap(), 1400);
    assert_eq!(tier.clear_namespace_count(&a).await.unwrap(), 0);
    assert!(tier.get(&b.key(0u32.to_le_bytes().to_vec()).unwrap()).await.unwrap().is_some());
    assert!(tier.get(&a.key(1u32.to_le_bytes().to_vec()).unwrap()).await.unwrap().is_none());
    assert!(tier.metrics().op(Op::Delete).requests >= 2, "two bulk batches");
}

#[tokio::test]
async fn budget_evicts_oldest_and_reports_usage() {
    let tier = ObjectTierBuilder::in_memory().budget(10_000).build().await.unwrap();
    for i in 0..10 {
        assert!(
            tier.put(key(&i.to_string()), Entry::new(vec![0u8; 2_000])).await.unwrap().is_stored()
        );
    }
    let usage = tier.usage();
    assert_eq!(usage.capacity, Some(10_000));
    assert!(usage.bytes_used <= 10_000 && usage.entries == Some(4), "{usage:?}");
    assert!(tier.get(&key("0")).await.unwrap().is_none(), "oldest evicted");
    assert!(tier.get(&key("9")).await.unwrap().is_some());
    assert_eq!(tier.stats().evictions, 6);
    let listed: Vec<_> = tier.store().list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 4, "evicted objects are deleted from the store");
    let unbounded = ObjectTierBuilder::in_memory().build().await.unwrap();
    assert_eq!(unbounded.usage().capacity, None);
}

/// `max_requests` bounds the requests in flight: 40 concurrent gets against a store that
/// takes 50 ms per get go 10 at a time, so they take at least four rounds (200 ms), where
/// unbounded they would all overlap in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_bounds_the_requests_in_flight() {
    let store = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    let tier = Arc::new(
        ObjectTier::builder(store.clone())
            .max_requests(10)
            .part_concurrency(2)
            .delete_concurrency(2)
            .build()
            .await
            .unwrap(),
    );
    store.inject(FaultRule::new(Fault::Latency(Duration::from_millis(50))).on(FaultOp::Get));
    let start = Instant::now();
    let gets: Vec<_> = (0..40)
        .map(|i| {
            let tier = tier.clone();
            tokio::spawn(async move { tier.get(&key(&format!("absent-{i}"))).await })
        })
        .collect();
    for g in gets {
        assert!(g.await.unwrap().unwrap().is_none());
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "40 gets of 50 ms, 10 at a time, took {took:?}");
}

mod sealed;

/// A streamed put over a store with indexed multipart uploads writes, part by part, the very
/// bytes `Record::encode` would, holding at most part 0, the part being filled and the parts in
/// flight; a failing body aborts and leaves no object and no upload behind. Over a store
/// without them, the value is gathered and put as usual.
#[tokio::test]
async fn a_streamed_put_uploads_the_record_in_bounded_memory() {
    let store = Arc::new(InMemory::new());
    let part = 256 * 1024;
    let tier = ObjectTierBuilder::new_multipart(store.clone())
        .multipart_threshold(part as u64)
        .part_size(part)
        .part_concurrency(2)
        .build()
        .await
        .unwrap();
    let k = key("streamed");
    let len = 5 * MIB + 7;
    let value = pattern(len);
    let body = |piece: usize, fail_at: Option<usize>| {
        let value = value.clone();
        futures::stream::iter((0..len.div_ceil(piece)).map(move |i| match fail_at {
            Some(at) if i == at => Err(Error::new(ErrorKind::Io, "body", "broken")),
            _ => Ok(value.slice(i * piece..((i + 1) * piece).min(len))),
        }))
        .boxed()
    };
    let meta = EntryMeta { created_at: Timestamp::from_millis(5_000), ..EntryMeta::default() };
    for piece in [1000, 64 * 1024, part, 3 * part + 1] {
        let put = tier.put_stream(k.clone(), meta, len as u64, body(piece, None)).await.unwrap();
        assert!(put.is_stored());
        let object = store.get(&tier.object_path(&k)).await.unwrap().bytes().await.unwrap();
        let whole = Record::encode(&k, &Entry { value: value.clone(), meta });
        assert!(object == whole, "piece {piece}: the object is the record, byte for byte");
        let peak = tier.stream_buffer_peak();
        assert!(peak <= (4 * part + piece) as u64, "piece {piece}: held {peak}");
    }
    let parts = tier.metrics().op(Op::MultipartPart).requests;
    assert_eq!(parts, 4 * Record::encoded_len(&k, len).div_ceil(part) as u64);
    assert_eq!(tier.metrics().op(Op::Put).requests, 0);

    let err = tier.put_stream(k.clone(), meta, len as u64, body(4096, Some(700))).await;
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Io);
    assert!(tier.get(&k).await.unwrap().expect("the earlier value").value == value);
    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(objects.len(), 1, "no partial object: {objects:?}");

    let endless = futures::stream::iter([Ok(Bytes::from_static(b"x"))]).boxed();
    let err = tier.put_stream(k.clone(), meta, u64::MAX, endless).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(tier.get(&k).await.unwrap().expect("the earlier value").value == value);

    let plain = ObjectTier::builder(store.clone())
        .prefix("plain")
        .multipart_threshold(part as u64)
        .part_size(part)
        .build()
        .await
        .unwrap();
    let put = plain.put_stream(k.clone(), meta, len as u64, body(64 * 1024, None)).await;
    assert!(put.unwrap().is_stored());
    assert!(plain.get(&k).await.unwrap().unwrap().value == value);
    assert_eq!(plain.stream_buffer_peak(), 0, "gathered, then put: no streamed upload");
}

/// A value of 1 GiB, generated a MiB at a time, goes up through the default multipart settings
/// (8 MiB parts, four in flight) holding a few parts, never the value: the whole point of a
/// streamed put for values this large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_put_of_1_gib_holds_a_few_parts() {
    let tier = ObjectTierBuilder::in_memory().build().await.unwrap();
    let k = key("one-gib");
    let piece = MIB;
    let len = 1024 * MIB;
    let fill = move |i: usize| Bytes::from(vec![(i % 251) as u8; piece]);
    let body = futures::stream::iter((0..len / piece).map(move |i| Ok(fill(i)))).boxed();
    let put = tier.put_stream(k.clone(), EntryMeta::default(), len as u64, body).await.unwrap();
    assert!(put.is_stored());
    let peak = tier.stream_buffer_peak();
    assert!(peak <= (6 * 8 * MIB + piece) as u64, "held {peak} bytes for a 1 GiB value");
    let parts = tier.metrics().op(Op::MultipartPart).requests;
    assert_eq!(parts, Record::encoded_len(&k, len).div_ceil(8 * MIB) as u64);
    for at in [0, 300 * MIB - 2, len - 3] {
        let got = tier.get_range(&k, at as u64..at as u64 + 4).await.unwrap().unwrap();
        let want: Vec<u8> = (at..(at + 4).min(len)).map(|i| ((i / piece) % 251) as u8).collect();
        assert_eq!(got, want, "bytes at {at}");
    }
}

/// Over a local directory, a streamed put writes the record to a staging file one piece at a
/// time and renames it into place: the file is the record, byte for byte, at most a piece is
/// held, and a failing body leaves neither a staging file nor a changed object.
#[tokio::test]
async fn a_streamed_put_to_a_local_directory_writes_the_record_piece_by_piece() {
    let dir = tempfile::tempdir().unwrap();
    let tier =
        ObjectTierBuilder::local(dir.path()).multipart_threshold(MIB as u64).build().await.unwrap();
    let k = key("streamed-local");
    let len = 3 * MIB + 11;
    let value = pattern(len);
    let piece = 100_000;
    let body = |fail_at: Option<usize>| {
        let value = value.clone();
        futures::stream::iter((0..len.div_ceil(piece)).map(move |i| match fail_at {
            Some(at) if i == at => Err(Error::new(ErrorKind::Io, "body", "broken")),
            _ => Ok(value.slice(i * piece..((i + 1) * piece).min(len))),
        }))
        .boxed()
    };
    let meta = EntryMeta { created_at: Timestamp::from_millis(7_000), ..EntryMeta::default() };
    let put = tier.put_stream(k.clone(), meta, len as u64, body(None)).await.unwrap();
    assert!(put.is_stored());
    let file = dir.path().join(tier.object_path(&k).as_ref());
    let whole = Record::encode(&k, &Entry { value: value.clone(), meta });
    assert!(std::fs::read(&file).unwrap() == whole[..], "the file is the record");
    assert!(tier.stream_buffer_peak() <= piece as u64, "{}", tier.stream_buffer_peak());
    assert_eq!(tier.metrics().op(Op::Put).requests, 0);

    let earlier = Entry { value: pattern(10), meta };
    assert!(tier.put(k.clone(), earlier).await.unwrap().is_stored());
    let err = tier.put_stream(k.clone(), meta, len as u64, body(Some(20))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(tier.get(&k).await.unwrap().unwrap().value == pattern(10), "the earlier value");
    let files: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1, "no staging file left: {files:?}");
    let listed: Vec<_> = tier.store().list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);
}
