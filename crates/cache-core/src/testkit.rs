//! The conformance suite every tier runs (feature `testkit`).
//!
//! Each check is an async function taking a [`TierFactory`]; [`conformance_suite!`] expands to
//! one `#[test]` per check so test runners report them separately:
//!
//! ```ignore
//! cache_core::conformance_suite!(|spec: cache_core::testkit::TierSpec| async move {
//!     cache_core::testkit::TestTier::new(my_tier(spec.capacity_bytes, spec.clock))
//! });
//! ```
//!
//! [`conformance_suite!`]: crate::conformance_suite

use std::{any::Any, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::{
    Clock, Compression, DerivedKeys, EncryptionKey, Entry, ErrorKind, Key, KeyId, KeyProvider,
    MAX_KEY_LEN, ManualClock, Namespace, PutOutcome, Record, RecordFormat, Rejection, Tier,
    Timestamp,
};

mod alloc;

pub use self::alloc::CountingAllocator;

/// What a factory must build: a tier with this byte budget, reading time from this clock.
#[derive(Debug, Clone)]
pub struct TierSpec {
    /// The byte budget.
    pub capacity_bytes: u64,
    /// The clock the tier must use for expiry.
    pub clock: Arc<ManualClock>,
    /// The time-to-idle the tier must honour, if any (only [`idle_conformance_suite!`]'s
    /// check sets it).
    ///
    /// [`idle_conformance_suite!`]: crate::idle_conformance_suite
    pub time_to_idle: Option<Duration>,
}

impl TierSpec {
    /// The clock as a trait object.
    pub fn dyn_clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }
}

/// A tier under test, plus whatever must outlive it (a temporary directory, a server handle).
pub struct TestTier {
    /// The tier.
    pub tier: Arc<dyn Tier>,
    /// Dropped after the test.
    pub guard: Box<dyn Any + Send + Sync>,
}

impl TestTier {
    /// A tier that needs no guard.
    pub fn new(tier: impl Tier) -> TestTier {
        TestTier { tier: Arc::new(tier), guard: Box::new(()) }
    }

    /// A tier with a guard that must live as long as it.
    pub fn with_guard(tier: impl Tier, guard: impl Any + Send + Sync) -> TestTier {
        TestTier { tier: Arc::new(tier), guard: Box::new(guard) }
    }
}

/// Builds a fresh, empty tier for one check.
pub trait TierFactory: Send + Sync {
    /// Builds a tier as `spec` says.
    fn build(&self, spec: TierSpec) -> BoxFuture<'static, TestTier>;
}

impl<F, Fut> TierFactory for F
where
    F: Fn(TierSpec) -> Fut + Send + Sync,
    Fut: Future<Output = TestTier> + Send + 'static,
{
    fn build(&self, spec: TierSpec) -> BoxFuture<'static, TestTier> {
        Box::pin(self(spec))
    }
}

/// Runs `f` to completion on a fresh two-worker runtime (what every generated test does).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(f)
}

/// The start time of every check's manual clock.
pub const START: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const MIB: u64 = 1024 * 1024;

async fn build(f: &dyn TierFactory, capacity_bytes: u64) -> (TestTier, Arc<ManualClock>) {
    let clock = ManualClock::new(START);
    let t = f.build(TierSpec { capacity_bytes, clock: clock.clone(), time_to_idle: None }).await;
    (t, clock)
}

fn key(ns: &str, k: impl Into<Bytes>) -> Key {
    Key::new(ns, k).expect("valid test key")
}

#[track_caller]
fn stored(outcome: PutOutcome) {
    assert_eq!(outcome, PutOutcome::Stored);
}

async fn value_of(tier: &dyn Tier, k: &Key) -> Option<Bytes> {
    tier.get(k).await.expect("get").map(|e| e.value)
}

/// `put`, `get`, `remove`, and a miss on an unknown key.
pub async fn put_get_remove(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "k1");
    assert_eq!(value_of(tier, &k).await, None, "empty tier must miss");
    let outcome = tier.put(k.clone(), Entry::new("v1").with_version(3)).await.expect("put");
    assert_eq!(outcome, PutOutcome::Stored);
    let got = tier.get(&k).await.expect("get").expect("hit after put");
    assert_eq!(got.value, "v1");
    assert_eq!(got.meta.version, Some(3));
    assert_eq!(got.meta.created_at, START, "creation time stamped from the tier's clock");
    tier.remove(&k).await.expect("remove");
    assert_eq!(value_of(tier, &k).await, None, "removed key must miss");
    tier.remove(&k).await.expect("removing a missing key is fine");
}

/// The last write wins, including across many overwrites.
pub async fn overwrite(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "over");
    for i in 0..20u32 {
        let v = format!("value-{i}-{}", "x".repeat(i as usize * 10));
        assert!(tier.put(k.clone(), Entry::new(v.clone())).await.expect("put").is_stored());
        assert_eq!(value_of(tier, &k).await.as_deref(), Some(v.as_bytes()));
    }
    tier.flush().await.expect("flush");
    assert_eq!(value_of(tier, &k).await.expect("hit").len(), "value-19-".len() + 190);
}

/// `contains` agrees with `get`.
pub async fn contains(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "c");
    assert!(!tier.contains(&k).await.expect("contains"));
    stored(tier.put(k.clone(), Entry::new("v")).await.expect("put"));
    assert!(tier.contains(&k).await.expect("contains"));
    tier.remove(&k).await.expect("remove");
    assert!(!tier.contains(&k).await.expect("contains"));
}

/// `drop_older_copy` leaves the key absent, whether it held an entry or not, and touches no
/// other key.
pub async fn drop_older_copy(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let (k, other) = (key("conf", "older"), key("conf", "kept"));
    tier.drop_older_copy(&k).await.expect("drop an absent key");
    stored(tier.put(k.clone(), Entry::new("v")).await.expect("put"));
    stored(tier.put(other.clone(), Entry::new("w")).await.expect("put"));
    tier.drop_older_copy(&k).await.expect("drop");
    assert!(tier.get(&k).await.expect("get").is_none(), "the older copy is gone");
    assert!(!tier.contains(&k).await.expect("contains"));
    assert_eq!(value_of(tier, &other).await.as_deref(), Some(&b"w"[..]));
    tier.flush().await.expect("flush");
    assert!(tier.get(&k).await.expect("get").is_none(), "still gone after a flush");
}

/// `get_range` reads part of a value, clamped to its end, and misses where `get` misses: an
/// absent key, a removed one, an expired one. A range that ends before it starts is `Invalid`.
/// The large value spans many 64 KiB chunks, so a tier that verifies only the chunks a range
/// covers is checked at chunk boundaries.
pub async fn get_range(f: &dyn TierFactory) {
    let (t, clock) = build(f, 64 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "ranged");
    assert!(tier.get_range(&k, 0..4).await.expect("get_range").is_none(), "absent: a miss");
    stored(tier.put(k.clone(), Entry::new("0123456789")).await.expect("put"));
    let range = |r: std::ops::Range<u64>| {
        let k = k.clone();
        async move { tier.get_range(&k, r).await.expect("get_range").expect("a hit") }
    };
    assert_eq!(range(2..5).await, "234");
    assert_eq!(range(0..10).await, "0123456789");
    assert_eq!(range(7..100).await, "789", "clamped to the value's end");
    assert!(range(10..20).await.is_empty(), "at or past the end: an empty hit");
    assert!(range(4..4).await.is_empty());
    #[expect(clippy::reversed_empty_ranges, reason = "the invalid input under test")]
    let err = tier.get_range(&k, 5..2).await.expect_err("a backwards range");
    assert_eq!(err.kind(), ErrorKind::Invalid);

    let big = key("conf", "ranged-large");
    let len = 3 * MIB as usize + 12_345;
    let v: Bytes = (0..len).map(|i| (i * 131 % 251) as u8).collect::<Vec<_>>().into();
    stored(tier.put(big.clone(), Entry::new(v.clone())).await.expect("put"));
    tier.flush().await.expect("flush");
    let chunk = 64 * 1024;
    for r in [0..1, chunk - 3..chunk + 3, 5 * chunk..7 * chunk + 1, len - 10..len, 17..len] {
        let got = tier.get_range(&big, r.start as u64..r.end as u64).await.expect("get_range");
        assert!(got.expect("a hit") == v.slice(r.clone()), "range {r:?} differs");
    }

    tier.remove(&k).await.expect("remove");
    assert!(tier.get_range(&k, 0..4).await.expect("get_range").is_none(), "removed: a miss");
    let ttl = key("conf", "ranged-ttl");
    let entry = Entry::new("short").with_ttl(&*clock, Duration::from_secs(5));
    stored(tier.put(ttl.clone(), entry).await.expect("put"));
    assert_eq!(tier.get_range(&ttl, 1..3).await.expect("get_range").expect("live"), "ho");
    clock.advance(Duration::from_secs(5));
    assert!(tier.get_range(&ttl, 1..3).await.expect("get_range").is_none(), "expired: a miss");
}

/// An empty value is a hit, not a miss.
pub async fn empty_value(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "empty");
    stored(tier.put(k.clone(), Entry::new(Bytes::new())).await.expect("put"));
    let got = tier.get(&k).await.expect("get").expect("an empty value is still a hit");
    assert!(got.value.is_empty());
    let e = key("conf", Bytes::new());
    stored(tier.put(e.clone(), Entry::new("empty key")).await.expect("put with an empty key"));
    assert_eq!(value_of(tier, &e).await.as_deref(), Some(&b"empty key"[..]));
}

/// A value of more than 8 MiB round-trips byte for byte.
pub async fn large_value(f: &dyn TierFactory) {
    let (t, _) = build(f, 64 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "large");
    let v: Bytes =
        (0..(8 * MIB as usize + 17)).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>().into();
    assert!(tier.put(k.clone(), Entry::new(v.clone())).await.expect("put").is_stored());
    tier.flush().await.expect("flush");
    assert!(value_of(tier, &k).await.expect("hit") == v, "large value differs");
}

/// The length of [`streamed_put`]'s value: above the object tier's default multipart
/// threshold (16 MiB), so it exercises a streamed multipart upload there.
pub const STREAMED: usize = 17 * MIB as usize + 5;

/// `put_stream`: a value of [`STREAMED`] bytes in uneven pieces round-trips byte for byte
/// (whole and by a range across two pieces). A stream that yields fewer or more bytes than
/// declared is `Invalid`, and one that fails passes its error on as it is; after each failure
/// the key still holds its earlier value. An already-expired entry is rejected like a `put`'s.
pub async fn streamed_put(f: &dyn TierFactory) {
    use futures::StreamExt;
    let (t, clock) = build(f, 64 * MIB).await;
    let tier = &*t.tier;
    let v: Bytes = (0..STREAMED).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>().into();
    let pieces = |v: &Bytes, piece: usize| -> Vec<crate::Result<Bytes>> {
        (0..v.len()).step_by(piece).map(|at| Ok(v.slice(at..(at + piece).min(v.len())))).collect()
    };
    let stream = |items: Vec<crate::Result<Bytes>>| futures::stream::iter(items).boxed();
    let len = v.len() as u64;
    let k = key("conf", "streamed");
    stored(tier.put(k.clone(), Entry::new("earlier")).await.expect("put"));
    let meta = crate::EntryMeta::default();

    let mut short = pieces(&v, (1 << 20) + 3);
    short.pop();
    let err = tier.put_stream(k.clone(), meta, len, stream(short)).await.expect_err("short");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let mut long = pieces(&v, (1 << 20) + 3);
    long.push(Ok(Bytes::from_static(b"x")));
    let err = tier.put_stream(k.clone(), meta, len, stream(long)).await.expect_err("long");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let mut failing = pieces(&v, 3 << 20);
    failing.insert(4, Err(crate::Error::new(ErrorKind::Unavailable, "source", "the body broke")));
    let err = tier.put_stream(k.clone(), meta, len, stream(failing)).await.expect_err("failing");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "the body's own error: {err}");
    tier.flush().await.expect("flush");
    assert_eq!(value_of(tier, &k).await.as_deref(), Some(&b"earlier"[..]), "nothing lost");

    let put = tier.put_stream(k.clone(), meta, len, stream(pieces(&v, (1 << 20) + 3))).await;
    stored(put.expect("put_stream"));
    tier.flush().await.expect("flush");
    assert!(value_of(tier, &k).await.expect("hit") == v, "the streamed value differs");
    let across = (1 << 20) - 7..(1 << 20) + 9;
    let got = tier.get_range(&k, across.clone()).await.expect("get_range").expect("hit");
    assert!(got == v.slice(across.start as usize..across.end as usize), "a range across pieces");

    let one = key("conf", "streamed-one-piece");
    let put = tier.put_stream(one.clone(), meta, 5, stream(vec![Ok("whole".into())])).await;
    stored(put.expect("put_stream of one piece"));
    assert_eq!(value_of(tier, &one).await.as_deref(), Some(&b"whole"[..]));
    let expired = crate::EntryMeta { expires_at: Some(clock.now()), ..meta };
    let put = tier.put_stream(one.clone(), expired, 3, stream(vec![Ok("old".into())])).await;
    assert_eq!(put.expect("put_stream"), PutOutcome::Rejected(Rejection::Expired));
    assert_eq!(value_of(tier, &one).await, None, "an expired put supersedes the older value");
}

/// Expired entries are never returned; the clock is manual, nothing sleeps.
pub async fn ttl_expiry(f: &dyn TierFactory) {
    let (t, clock) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "ttl");
    let forever = key("conf", "forever");
    stored(
        tier.put(k.clone(), Entry::new("short").with_ttl(&*clock, Duration::from_secs(10)))
            .await
            .expect("put"),
    );
    stored(tier.put(forever.clone(), Entry::new("long")).await.expect("put"));
    clock.advance(Duration::from_secs(9));
    assert_eq!(value_of(tier, &k).await.as_deref(), Some(&b"short"[..]), "alive before expiry");
    clock.advance(Duration::from_secs(1));
    assert_eq!(value_of(tier, &k).await, None, "expired at its expiry time");
    assert!(!tier.contains(&k).await.expect("contains"), "contains must not see it either");
    let got = tier.get_many(std::slice::from_ref(&k)).await.expect("get_many");
    assert!(got[0].is_none(), "get_many must not see it either");
    assert!(tier.get_record(&k).await.expect("get_record").is_none(), "nor get_record");
    assert_eq!(value_of(tier, &forever).await.as_deref(), Some(&b"long"[..]));
    // Already expired at put time: not stored, and says so; the older value it replaces is
    // gone too (a rejected write supersedes it).
    stored(tier.put(key("conf", "past"), Entry::new("older")).await.expect("put"));
    let past = Entry::new("stale").with_expiry(clock.now());
    let outcome = tier.put(key("conf", "past"), past).await.expect("put");
    assert_eq!(outcome, PutOutcome::Rejected(Rejection::Expired));
    assert_eq!(
        value_of(tier, &key("conf", "past")).await,
        None,
        "the older value outlived the write"
    );
    assert!(!tier.contains(&key("conf", "past")).await.expect("contains"));
}

/// Expiry follows the tier's clock, not real time: while the manual clock stands still, real
/// time passing (here 60 ms, past the entry's 20 ms TTL) expires nothing. A tier that hands the
/// TTL to a real-time timer loses live entries whenever a caller is slower than the TTL.
pub async fn ttl_follows_the_clock(f: &dyn TierFactory) {
    let (t, clock) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "ttl-clock");
    let entry = Entry::new("live").with_ttl(&*clock, Duration::from_millis(20));
    stored(tier.put(k.clone(), entry).await.expect("put"));
    tokio::time::sleep(Duration::from_millis(60)).await;
    tier.flush().await.expect("flush");
    assert_eq!(
        value_of(tier, &k).await.as_deref(),
        Some(&b"live"[..]),
        "expired by real time while the tier's clock stood still"
    );
    clock.advance(Duration::from_millis(20));
    assert_eq!(value_of(tier, &k).await, None, "expired at its expiry time on the tier's clock");
}

/// Namespaces do not see each other, even when separators make the strings look alike.
pub async fn namespace_isolation(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let pairs = [
        (key("a:b", "c"), key("a", "b:c")),
        (key("x/y", "z"), key("x", "y/z")),
        (key("..", "k"), key("../..", "k")),
    ];
    for (left, right) in &pairs {
        stored(tier.put(left.clone(), Entry::new("left")).await.expect("put"));
        stored(tier.put(right.clone(), Entry::new("right")).await.expect("put"));
    }
    for (left, right) in &pairs {
        assert_eq!(value_of(tier, left).await.as_deref(), Some(&b"left"[..]));
        assert_eq!(value_of(tier, right).await.as_deref(), Some(&b"right"[..]));
    }
    let same_a = key("tenant-a", "shared");
    let same_b = key("tenant-b", "shared");
    stored(tier.put(same_a.clone(), Entry::new("a")).await.expect("put"));
    assert_eq!(value_of(tier, &same_b).await, None, "another namespace's key must miss");
    stored(tier.put(same_b.clone(), Entry::new("b")).await.expect("put"));
    tier.remove(&same_a).await.expect("remove");
    assert_eq!(value_of(tier, &same_b).await.as_deref(), Some(&b"b"[..]));
}

/// `clear_namespace` removes that namespace and nothing else; the namespace works afterwards.
pub async fn clear_namespace(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let a = Namespace::new("clear-a").expect("ns");
    let b = Namespace::new("clear-b").expect("ns");
    for i in 0..50u32 {
        stored(
            tier.put(a.key(i.to_le_bytes().to_vec()).expect("key"), Entry::new(format!("a{i}")))
                .await
                .expect("put"),
        );
        stored(
            tier.put(b.key(i.to_le_bytes().to_vec()).expect("key"), Entry::new(format!("b{i}")))
                .await
                .expect("put"),
        );
    }
    tier.clear_namespace(&a).await.expect("clear");
    for i in 0..50u32 {
        let ka = a.key(i.to_le_bytes().to_vec()).expect("key");
        let kb = b.key(i.to_le_bytes().to_vec()).expect("key");
        assert_eq!(value_of(tier, &ka).await, None, "cleared namespace must miss ({i})");
        assert_eq!(
            value_of(tier, &kb).await,
            Some(Bytes::from(format!("b{i}"))),
            "other namespace kept ({i})"
        );
    }
    let again = a.key("after").expect("key");
    stored(tier.put(again.clone(), Entry::new("new")).await.expect("put after clear"));
    assert_eq!(value_of(tier, &again).await.as_deref(), Some(&b"new"[..]));
    tier.flush().await.expect("flush");
    assert_eq!(value_of(tier, &again).await.as_deref(), Some(&b"new"[..]), "survives a flush");
}

/// A burst of four times the budget leaves `bytes_used <= capacity`, and what remains is right.
/// The values are incompressible, so a tier that compresses holds no more of them.
pub async fn capacity_respected(f: &dyn TierFactory) {
    let capacity = 2 * MIB;
    let (t, _) = build(f, capacity).await;
    let tier = &*t.tier;
    let n = (4 * capacity / 4096) as u32;
    for i in 0..n {
        let v = crate::compression::noise(i.into(), 4096);
        stored(tier.put(key("cap", i.to_le_bytes().to_vec()), Entry::new(v)).await.expect("put"));
    }
    tier.flush().await.expect("flush");
    let usage = tier.usage();
    assert_eq!(usage.capacity, Some(capacity), "the tier reports the budget it was given");
    assert!(
        usage.bytes_used <= capacity,
        "bytes used {} exceed capacity {capacity}",
        usage.bytes_used
    );
    let mut alive = 0u32;
    for i in 0..n {
        if let Some(v) = value_of(tier, &key("cap", i.to_le_bytes().to_vec())).await {
            assert!(v == crate::compression::noise(i.into(), 4096), "wrong value for key {i}");
            alive += 1;
        }
    }
    assert!(alive > 0, "a tier at capacity still holds something");
    assert!(
        u64::from(alive) * 4096 <= capacity,
        "{alive} live entries cannot fit in {capacity} bytes"
    );
    assert!(tier.stats().evictions > 0, "evictions are counted");
}

/// Concurrent readers and writers on shared keys never see a torn or foreign value.
pub async fn concurrent_readers_writers(f: &dyn TierFactory) {
    let (t, _) = build(f, 64 * MIB).await;
    let tier = t.tier.clone();
    let keys = 16u32;
    let mut tasks = Vec::new();
    for writer in 0..8u32 {
        let tier = tier.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..60u32 {
                let id = (writer * 7 + round) % keys;
                let k = key("conc", id.to_le_bytes().to_vec());
                if round % 3 == 0 {
                    let v = format!(
                        "{id}:{writer}:{round}:{}",
                        "p".repeat((round * 37 % 500) as usize)
                    );
                    stored(tier.put(k, Entry::new(v)).await.expect("put"));
                } else if let Some(e) = tier.get(&k).await.expect("get") {
                    let s = std::str::from_utf8(&e.value).expect("utf8 value");
                    let mut parts = s.splitn(4, ':');
                    assert_eq!(
                        parts.next(),
                        Some(id.to_string().as_str()),
                        "value of another key: {s}"
                    );
                    let _writer = parts.next().expect("writer");
                    let r: u32 = parts.next().expect("round").parse().expect("round number");
                    assert_eq!(
                        parts.next().expect("padding").len(),
                        (r * 37 % 500) as usize,
                        "torn value"
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task panicked");
    }
    for id in 0..keys {
        let k = key("conc", id.to_le_bytes().to_vec());
        stored(tier.put(k.clone(), Entry::new(format!("final-{id}"))).await.expect("put"));
        assert_eq!(value_of(&*tier, &k).await, Some(Bytes::from(format!("final-{id}"))));
    }
}

/// Oversized keys and values get `Invalid`, and the tier keeps working with nothing lost.
pub async fn oversized_rejected(f: &dyn TierFactory) {
    let capacity = 4 * MIB;
    let (t, _) = build(f, capacity).await;
    let tier = &*t.tier;
    let err = Key::new("conf", vec![0u8; MAX_KEY_LEN + 1]).expect_err("oversized key");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("limit"), "the error says why: {err}");
    let keep = key("conf", "keep");
    stored(tier.put(keep.clone(), Entry::new("kept")).await.expect("put"));
    let big = key("conf", "too-big");
    let v = Bytes::from(vec![1u8; capacity as usize + 1]);
    match tier.put(big.clone(), Entry::new(v)).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "{e}"),
        Ok(outcome) => assert_eq!(outcome, PutOutcome::Rejected(Rejection::TooLarge)),
    }
    assert_eq!(value_of(tier, &big).await, None);
    assert_eq!(value_of(tier, &keep).await.as_deref(), Some(&b"kept"[..]), "nothing else lost");
}

/// After `close`, every call is `Closed`; closing twice is fine.
pub async fn close_then_use(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("conf", "closed");
    stored(tier.put(k.clone(), Entry::new("v")).await.expect("put"));
    tier.close().await.expect("close");
    tier.close().await.expect("second close");
    assert_eq!(tier.get(&k).await.expect_err("get after close").kind(), ErrorKind::Closed);
    assert_eq!(
        tier.put(k.clone(), Entry::new("v")).await.expect_err("put").kind(),
        ErrorKind::Closed
    );
    assert_eq!(tier.remove(&k).await.expect_err("remove").kind(), ErrorKind::Closed);
    assert_eq!(tier.contains(&k).await.expect_err("contains").kind(), ErrorKind::Closed);
    let ns = k.namespace().clone();
    assert_eq!(tier.clear_namespace(&ns).await.expect_err("clear").kind(), ErrorKind::Closed);
    assert_eq!(
        tier.get_many(std::slice::from_ref(&k)).await.expect_err("get_many").kind(),
        ErrorKind::Closed
    );
    assert_eq!(tier.flush().await.expect_err("flush").kind(), ErrorKind::Closed);
}

/// `get_many` and `put_many` keep the order of their input, misses included.
pub async fn batch_get_put(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let items: Vec<(Key, Entry)> =
        (0..20u32).map(|i| (key("batch", format!("k{i}")), Entry::new(format!("v{i}")))).collect();
    let outcomes = tier.put_many(items).await.expect("put_many");
    assert!(outcomes.iter().all(|o| o.is_stored()));
    let keys: Vec<Key> = (0..25u32).map(|i| key("batch", format!("k{i}"))).collect();
    let got = tier.get_many(&keys).await.expect("get_many");
    assert_eq!(got.len(), 25);
    for (i, e) in got.iter().enumerate() {
        match e {
            Some(e) if i < 20 => assert_eq!(e.value, format!("v{i}")),
            None if i >= 20 => {}
            other => panic!("key {i}: unexpected {other:?}"),
        }
    }
}

/// Hits and misses are counted.
pub async fn stats_counted(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("stats", "k");
    let before = tier.stats();
    assert_eq!(value_of(tier, &k).await, None);
    stored(tier.put(k.clone(), Entry::new("v")).await.expect("put"));
    assert!(value_of(tier, &k).await.is_some());
    assert!(value_of(tier, &k).await.is_some());
    let after = tier.stats();
    assert_eq!(after.hits - before.hits, 2);
    assert_eq!(after.misses - before.misses, 1);
    assert!(after.inserts > before.inserts);
    assert_eq!(after.tier, tier.name());
}

/// A record moves in and out as bytes; the record's key is checked.
pub async fn record_round_trip(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let k = key("rec", "k");
    let entry = Entry::new("payload").with_created_at(START).with_version(9);
    let record = Record::decode(Record::encode(&k, &entry)).expect("valid record");
    assert!(tier.put_record(k.clone(), record.clone()).await.expect("put_record").is_stored());
    assert_eq!(tier.get(&k).await.expect("get").expect("hit"), entry);
    let back = tier.get_record(&k).await.expect("get_record").expect("hit");
    assert!(back.matches(&k));
    assert_eq!(back.to_entry(), entry);
    let other = key("rec", "other");
    let err = tier.put_record(other.clone(), record).await.expect_err("record for another key");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(value_of(tier, &other).await, None);
}

/// Records compressed with LZ4 and zstd (format version 3) move in as bytes and read back whole,
/// in ranges and as records, next to a raw one: a tier reads every record whatever its own
/// compression setting, and never hands out the compressed bytes as the value.
pub async fn compressed_records(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let value: Bytes = br#"{"model":"m","choices":[{"message":{"content":"forty-two"}}]}"#
        .iter()
        .copied()
        .cycle()
        .take(20_000)
        .collect::<Vec<u8>>()
        .into();
    for compression in [Compression::None, Compression::Lz4, Compression::zstd()] {
        let k = key("compressed", compression.to_string());
        let entry = Entry::new(value.clone()).with_created_at(START).with_version(3);
        let record = Record::decode(Record::encode_with(&k, &entry, compression)).expect("valid");
        assert_eq!(record.codec(), compression.codec());
        stored(tier.put_record(k.clone(), record).await.expect("put_record"));
        assert_eq!(tier.get(&k).await.expect("get").expect("hit"), entry, "{compression}");
        let range = tier.get_range(&k, 9_990..10_100).await.expect("get_range").expect("hit");
        assert_eq!(range, value.slice(9_990..10_100), "{compression}");
        let tail = tier.get_range(&k, 19_999..u64::MAX).await.expect("get_range").expect("hit");
        assert_eq!(tail, value.slice(19_999..), "{compression}");
        let back = tier.get_record(&k).await.expect("get_record").expect("hit");
        assert!(back.matches(&k));
        assert_eq!(back.to_entry(), entry, "{compression}");
    }
}

/// Makes the checksum of `record` (one whole encoded record) match its bytes again, as someone
/// with write access to a disk or a bucket could after changing them: what is left to catch
/// the change is the cipher of a sealed record, or the tier's own checks.
pub fn rechecksum(record: &mut [u8]) {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&record[..crate::HEADER_LEN - 8]);
    h.update(&record[crate::HEADER_LEN..]);
    record[crate::HEADER_LEN - 8..crate::HEADER_LEN].copy_from_slice(&h.digest().to_le_bytes());
}

/// The key provider of [`sealed_conformance_suite!`](crate::sealed_conformance_suite): every namespace but `"plain"` sealed, each
/// under its own key derived from a fixed test master key. A factory for that suite gives its
/// tier this provider.
pub fn suite_keys() -> Arc<dyn KeyProvider> {
    #[derive(Debug)]
    struct AllButPlain(DerivedKeys);
    impl KeyProvider for AllButPlain {
        fn sealing_key(&self, namespace: &str) -> Option<(KeyId, EncryptionKey)> {
            (namespace != "plain").then(|| self.0.sealing_key(namespace)).flatten()
        }
        fn opening_key(&self, namespace: &str, id: KeyId) -> Option<EncryptionKey> {
            self.0.opening_key(namespace, id)
        }
    }
    Arc::new(AllButPlain(DerivedKeys::new(KeyId(7), EncryptionKey::from_bytes([0x5e; 32]))))
}

/// For a tier built with [`suite_keys`]: what it writes is sealed, records moved in are stored
/// so it reads them back (a plaintext record of a sealed namespace, a record sealed under a key
/// it does not have), a namespace its provider leaves alone stays plaintext, and no hit is
/// ever the ciphertext.
pub async fn sealed_records(f: &dyn TierFactory) {
    let (t, _) = build(f, 16 * MIB).await;
    let tier = &*t.tier;
    let value = Bytes::from(r#"{"content":"a tenant's secret answer"}"#.repeat(50));
    let entry = Entry::new(value.clone()).with_created_at(START).with_version(5);
    let sealed_by = RecordFormat::new().with_keys(suite_keys());
    let foreign = DerivedKeys::new(KeyId(99), EncryptionKey::from_bytes([0xee; 32]));
    let foreign = RecordFormat::new().with_keys(Arc::new(foreign));
    let sealed = |k: &Key, format: &RecordFormat| {
        format.decode(format.encode(k, &entry).expect("seal")).expect("opens")
    };
    let k_put = key("tenant-a", "put");
    let k_plain = key("tenant-a", "moved-plain");
    let k_sealed = key("tenant-a", "moved-sealed");
    let k_foreign = key("tenant-a", "moved-foreign");
    let k_public = key("plain", "public");
    stored(tier.put(k_put.clone(), entry.clone()).await.expect("put"));
    let plain = Record::decode(Record::encode(&k_plain, &entry)).expect("valid");
    stored(tier.put_record(k_plain.clone(), plain).await.expect("put_record"));
    stored(tier.put_record(k_sealed.clone(), sealed(&k_sealed, &sealed_by)).await.expect("put"));
    stored(tier.put_record(k_foreign.clone(), sealed(&k_foreign, &foreign)).await.expect("put"));
    stored(tier.put(k_public.clone(), entry.clone()).await.expect("put"));
    for k in [&k_put, &k_plain, &k_sealed, &k_foreign, &k_public] {
        assert_eq!(tier.get(k).await.expect("get").as_ref(), Some(&entry), "{k:?}");
        let range = tier.get_range(k, 10..30).await.expect("get_range").expect("hit");
        assert_eq!(range, value.slice(10..30), "{k:?}");
        let back = tier.get_record(k).await.expect("get_record").expect("hit");
        assert_eq!(back.to_entry(), entry, "{k:?}");
        if let Some(id) = back.key_id() {
            // A tier that stores records hands out its own, sealed under its provider's key.
            assert_eq!(id, KeyId(7), "{k:?}");
        }
    }
}

/// The size of [`huge_value`]'s value: 1 GiB.
pub const HUGE: usize = 1 << 30;

/// A value of 1 GiB ([`HUGE`]) is stored and read back byte for byte, whole, by a range across
/// a 64 KiB chunk boundary and by a range at its very end, then removed. The value is built
/// once; a tier that copies it holds at most the copies it documents.
pub async fn huge_value(f: &dyn TierFactory) {
    let (t, _) = build(f, 2 * HUGE as u64 + 64 * MIB).await;
    let tier = &*t.tier;
    let mut v = vec![0u8; HUGE];
    for (i, word) in v.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    }
    let v = Bytes::from(v);
    let k = key("conf", "one-gib");
    stored(tier.put(k.clone(), Entry::new(v.clone())).await.expect("put of 1 GiB"));
    tier.flush().await.expect("flush");
    let got = tier.get(&k).await.expect("get").expect("a 1 GiB value is a hit");
    assert_eq!(got.value.len(), HUGE);
    assert!(got.value == v, "the 1 GiB value differs");
    drop(got);
    let across = (64 << 10) - 10..(3 << 16) + 10;
    let range = tier.get_range(&k, across.clone()).await.expect("get_range").expect("hit");
    assert!(range == v.slice(across.start as usize..across.end as usize), "a middle range");
    let end = HUGE as u64 - 5..HUGE as u64 + 5;
    let range = tier.get_range(&k, end).await.expect("get_range").expect("hit");
    assert!(range == v.slice(HUGE - 5..), "the range at the end, clamped");
    tier.remove(&k).await.expect("remove");
    assert_eq!(tier.get(&k).await.expect("get"), None);
}

/// The time-to-idle [`time_to_idle`] gives the tiers it builds.
pub const IDLE: Duration = Duration::from_secs(10);

/// Time-to-idle: an entry neither read nor written for the tier's time-to-idle ([`IDLE`],
/// given in [`TierSpec::time_to_idle`]) is a miss and counted as expired, also for `contains`;
/// `get`, `get_range`, `get_record` and `put` restart its idle time; an entry's own expiry
/// still applies within it. (Whether `contains` restarts it is the tier's to say: the single
/// tiers do not, a tiered cache's `contains` is a read.)
pub async fn time_to_idle(f: &dyn TierFactory) {
    let clock = ManualClock::new(START);
    let spec =
        TierSpec { capacity_bytes: 16 * MIB, clock: clock.clone(), time_to_idle: Some(IDLE) };
    let t = f.build(spec).await;
    let tier = &*t.tier;
    let ms = Duration::from_millis;
    let [read, ranged, recorded, written, probed, ttl] =
        ["read", "ranged", "recorded", "written", "probed", "ttl"].map(|k| key("idle", k));
    for k in [&read, &ranged, &recorded, &written, &probed] {
        stored(tier.put(k.clone(), Entry::new("an idle value")).await.expect("put"));
    }
    let short = Entry::new("an idle value").with_ttl(&*clock, ms(15_000));
    stored(tier.put(ttl.clone(), short).await.expect("put"));

    clock.advance(ms(6_000));
    assert!(tier.get(&read).await.expect("get").is_some(), "6 s idle of 10");
    assert!(tier.get_range(&ranged, 0..2).await.expect("get_range").is_some());
    assert!(tier.get_record(&recorded).await.expect("get_record").is_some());
    assert!(tier.get(&ttl).await.expect("get").is_some());
    stored(tier.put(written.clone(), Entry::new("an idle value")).await.expect("put"));

    clock.advance(ms(4_000));
    let expired = tier.stats().expirations;
    assert!(!tier.contains(&probed).await.expect("contains"), "10 s idle");
    assert_eq!(tier.get(&probed).await.expect("get"), None, "idle for its time-to-idle");
    assert!(tier.stats().expirations > expired, "an idle entry counts as expired");
    for k in [&read, &ranged, &recorded, &written, &ttl] {
        assert!(tier.get(k).await.expect("get").is_some(), "{k:?}: 4 s since its last access");
    }

    clock.advance(ms(5_000));
    assert_eq!(tier.get(&ttl).await.expect("get"), None, "its own expiry, 15 s, still holds");
    clock.advance(ms(4_999));
    for k in [&read, &ranged, &recorded, &written] {
        assert!(tier.get(k).await.expect("get").is_some(), "{k:?}: read 9.999 s ago");
    }
    clock.advance(IDLE);
    for k in [&read, &ranged, &recorded, &written] {
        assert_eq!(tier.get(k).await.expect("get"), None, "{k:?}: idle since its last read");
        stored(tier.put(k.clone(), Entry::new("back")).await.expect("put"));
        assert_eq!(tier.get(k).await.expect("get").expect("hit").value, "back", "a new put");
    }
}

/// Expands to one `#[test]` per conformance check, each building its tier with `$factory`
/// (any `Fn(TierSpec) -> impl Future<Output = TestTier>`).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@each $factory;
            put_get_remove, overwrite, contains, drop_older_copy, get_range, empty_value, large_value,
            ttl_expiry,
            ttl_follows_the_clock,
            namespace_isolation, clear_namespace, capacity_respected, concurrent_readers_writers,
            oversized_rejected, close_then_use, batch_get_put, stats_counted, record_round_trip,
            compressed_records, streamed_put);
    };
    (@each $factory:expr; $($check:ident),* $(,)?) => {
        $crate::conformance_suite!(@mod conformance $factory; $($check),*);
    };
    (@mod $name:ident $factory:expr; $($check:ident),* $(,)?) => {
        mod $name {
            #[allow(unused_imports, reason = "the factory expression may use items of the parent")]
            use super::*;
            $(
                #[test]
                fn $check() {
                    $crate::testkit::block_on($crate::testkit::$check(&$factory));
                }
            )*
        }
    };
}

/// The whole [`conformance_suite!`] plus [`sealed_records`], for a tier whose factory gives it
/// [`suite_keys`] as its key provider: encryption at rest must not change what the tier does.
#[macro_export]
macro_rules! sealed_conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@mod conformance $factory;
            put_get_remove, overwrite, contains, drop_older_copy, get_range, empty_value, large_value,
            ttl_expiry,
            ttl_follows_the_clock,
            namespace_isolation, clear_namespace, capacity_respected, concurrent_readers_writers,
            oversized_rejected, close_then_use, batch_get_put, stats_counted, record_round_trip,
            compressed_records, streamed_put, sealed_records);
    };
}

/// [`time_to_idle`], for a tier whose factory honours [`TierSpec::time_to_idle`].
#[macro_export]
macro_rules! idle_conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@mod idle_conformance $factory; time_to_idle);
    };
}

/// [`huge_value`] (a value of 1 GiB), for a tier that stores values that large. It needs a few
/// GiB of RAM (and of disk, for a persistent tier) while it runs.
#[macro_export]
macro_rules! huge_conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@mod huge_conformance $factory; huge_value);
    };
}
