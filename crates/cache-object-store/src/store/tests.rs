//! Unit tests of the cached store, with `object_store`'s own in-memory store as the origin
//! behind a wrapper that counts requests and can be taken offline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{Entry, ErrorKind, Key, ManualClock, Namespace, Tier, Timestamp};
use cache_l1::MemoryTier;
use futures::{TryStreamExt, stream::BoxStream};
use object_store::{
    Attribute, Attributes, CopyOptions, Error, GetOptions, GetRange, GetResult, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result, memory::InMemory, path::Path,
};

use super::*;

const CS: u64 = 64 << 10;

/// The in-memory store, counting the requests it answers; `offline` makes every request fail
/// as a connection failure would, `delay` holds every ranged GET.
#[derive(Debug, Default)]
struct Counting {
    inner: InMemory,
    heads: AtomicU64,
    gets: AtomicU64,
    offline: AtomicBool,
    delay_ms: AtomicU64,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

impl Counting {
    fn check(&self) -> Result<()> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(Error::Generic { store: "Counting", source: "connection refused".into() });
        }
        Ok(())
    }
    fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }
    fn heads(&self) -> u64 {
        self.heads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.check()?;
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
        if o.head {
            self.heads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        self.check()?;
        self.inner.get_opts(l, o).await
    }
    async fn get_ranges(&self, l: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.get_ranges(l, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, o).await
    }
}

struct Fixture {
    origin: Arc<Counting>,
    store: CachedObjectStore,
}

fn fixture(
    configure: impl FnOnce(CachedObjectStoreBuilder) -> CachedObjectStoreBuilder,
) -> Fixture {
    let origin = Arc::new(Counting::default());
    let cache: Arc<dyn Tier> = Arc::new(MemoryTier::builder(64 << 20).build());
    let builder = CachedObjectStore::builder(origin.clone(), cache).chunk_size(CS);
    Fixture { origin, store: configure(builder).build().unwrap() }
}

fn data(len: u64, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A small deterministic generator for ranges.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }
}

async fn get_both(
    f: &Fixture,
    path: &Path,
    range: Option<GetRange>,
) -> (Result<GetResult>, Result<GetResult>) {
    let options = GetOptions { range, ..GetOptions::default() };
    (f.store.get_opts(path, options.clone()).await, f.origin.inner.get_opts(path, options).await)
}

#[tokio::test]
async fn random_ranges_are_byte_identical_to_the_origin() {
    let f = fixture(|b| b);
    let mut rng = Rng(7);
    for (n, size) in [0, 1, CS - 1, CS, CS + 1, 3 * CS + CS / 2].into_iter().enumerate() {
        let path = Path::from(format!("objects/{n}"));
        f.origin.inner.put(&path, data(size, n as u64).into()).await.unwrap();
        let mut ranges: Vec<Option<GetRange>> = vec![None];
        for _ in 0..40 {
            let start = rng.below(size + 2);
            let end = start + 1 + rng.below(2 * CS);
            ranges.push(Some(GetRange::Bounded(start..end)));
        }
        ranges.push(Some(GetRange::Offset(rng.below(size + 1))));
        ranges.push(Some(GetRange::Suffix(rng.below(size + 10))));
        ranges.push(Some(GetRange::Bounded(size..size + 1)));
        for range in ranges {
            let (ours, theirs) = get_both(&f, &path, range.clone()).await;
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert_eq!(ours.range, theirs.range, "{size} {range:?}");
                    assert_eq!(ours.meta, theirs.meta);
                    assert_eq!(ours.attributes, theirs.attributes);
                    let (a, b) = (ours.bytes().await.unwrap(), theirs.bytes().await.unwrap());
                    assert_eq!(a, b, "{size} {range:?}");
                }
                (Err(ours), Err(theirs)) => assert_eq!(ours.to_string(), theirs.to_string()),
                (ours, theirs) => panic!("{size} {range:?}: {ours:?} against {theirs:?}"),
            }
        }
    }
    let stats = f.store.stats();
    assert!(stats.chunk_hits > 0 && stats.chunk_fetches > 0, "{stats:?}");
}

#[tokio::test]
async fn get_ranges_match_the_origin_including_errors() {
    let f = fixture(|b| b);
    let path = Path::from("ranges");
    let size = 5 * CS + 17;
    f.origin.inner.put(&path, data(size, 3).into()).await.unwrap();
    let mut rng = Rng(11);
    for _ in 0..20 {
        let ranges: Vec<Range<u64>> = (0..1 + rng.below(6))
            .map(|_| {
                let start = rng.below(size);
                start..start + 1 + rng.below(3 * CS)
            })
            .collect();
        let ours = f.store.get_ranges(&path, &ranges).await.unwrap();
        let theirs = f.origin.inner.get_ranges(&path, &ranges).await.unwrap();
        assert_eq!(ours, theirs, "{ranges:?}");
    }
    let past_the_end: Vec<Range<u64>> = std::iter::once(size..size + 5).collect();
    for bad in [past_the_end, Vec::from([0..10, 7..7])] {
        let ours = f.store.get_ranges(&path, &bad).await.unwrap_err();
        let theirs = f.origin.get_ranges(&path, &bad).await.unwrap_err();
        assert_eq!(ours.to_string(), theirs.to_string());
    }
    let missing = f.store.get_range(&Path::from("missing"), 0..10).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
}

#[tokio::test]
async fn head_returns_the_origin_metadata_and_attributes() {
    let f = fixture(|b| b.revalidate(Revalidate::Never));
    let path = Path::from("with/attributes");
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "application/vnd.apache.parquet".into());
    attributes.insert(Attribute::Metadata("writer".into()), "test".into());
    let opts = PutOptions { attributes: attributes.clone(), ..PutOptions::default() };
    f.origin.inner.put_opts(&path, data(CS * 2, 1).into(), opts).await.unwrap();
    let theirs = f.origin.inner.head(&path).await.unwrap();
    for _ in 0..3 {
        assert_eq!(f.store.head(&path).await.unwrap(), theirs);
        let got = f.store.get(&path).await.unwrap();
        assert_eq!(got.attributes, attributes);
        assert_eq!(got.meta, theirs);
    }
    // Never re-checked: one HEAD for three heads and three gets.
    assert_eq!(f.origin.heads(), 1);
    assert_eq!(f.store.stats().identity_hits, 5);
    assert_eq!(f.store.stats().heads, 3);
}

#[tokio::test]
async fn an_object_overwritten_at_the_origin_is_refetched_under_the_per_call_policy() {
    let f = fixture(|b| b);
    let path = Path::from("mutable/manifest.json");
    f.origin.inner.put(&path, data(CS + 10, 1).into()).await.unwrap();
    assert_eq!(f.store.get(&path).await.unwrap().bytes().await.unwrap(), data(CS + 10, 1));
    assert_eq!(f.store.get(&path).await.unwrap().bytes().await.unwrap(), data(CS + 10, 1));
    // Written behind the wrapper's back, same size.
    f.origin.inner.put(&path, data(CS + 10, 2).into()).await.unwrap();
    assert_eq!(f.store.get(&path).await.unwrap().bytes().await.unwrap(), data(CS + 10, 2));
    assert_eq!(
        f.store.get_range(&path, 5..CS + 5).await.unwrap(),
        data(CS + 10, 2).slice(5..CS as usize + 5)
    );
    assert_eq!(f.origin.heads(), 4);
}

#[tokio::test]
async fn the_ttl_policy_rechecks_after_the_ttl() {
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let f =
        fixture(|b| b.revalidate(Revalidate::Ttl(Duration::from_secs(10))).clock(clock.clone()));
    let path = Path::from("ttl");
    f.origin.inner.put(&path, data(100, 1).into()).await.unwrap();
    assert_eq!(f.store.get_range(&path, 0..100).await.unwrap(), data(100, 1));
    f.origin.inner.put(&path, data(100, 2).into()).await.unwrap();
    clock.advance(Duration::from_secs(9));
    // Within the TTL the cached identity and chunk are used.
    assert_eq!(f.store.get_range(&path, 0..100).await.unwrap(), data(100, 1));
    clock.advance(Duration::from_secs(2));
    assert_eq!(f.store.get_range(&path, 0..100).await.unwrap(), data(100, 2));
    assert_eq!(f.origin.heads(), 2);
}

#[tokio::test]
async fn immutable_prefixes_are_checked_once() {
    let f = fixture(|b| b.immutable_prefix("data"));
    let (fixed, other) = (Path::from("data/part-1.parquet"), Path::from("meta/v1.json"));
    for p in [&fixed, &other] {
        f.origin.inner.put(p, data(CS, 1).into()).await.unwrap();
    }
    for _ in 0..4 {
        f.store.get_range(&fixed, 10..20).await.unwrap();
        f.store.get_range(&other, 10..20).await.unwrap();
    }
    // One check for the immutable object, one per read for the other.
    assert_eq!(f.origin.heads(), 1 + 4);
    assert_eq!(f.origin.gets(), 2);
}

#[tokio::test]
async fn writes_through_the_store_invalidate_under_the_never_policy() {
    let f = fixture(|b| b.revalidate(Revalidate::Never));
    let (a, b) = (Path::from("w/a"), Path::from("w/b"));
    let read = |p: Path| {
        let store = f.store.clone();
        async move { store.get(&p).await?.bytes().await }
    };
    f.store.put(&a, data(CS * 2, 1).into()).await.unwrap();
    assert_eq!(read(a.clone()).await.unwrap(), data(CS * 2, 1));
    f.store.put(&a, data(CS * 2, 2).into()).await.unwrap();
    assert_eq!(read(a.clone()).await.unwrap(), data(CS * 2, 2));

    f.store.put(&b, data(10, 3).into()).await.unwrap();
    assert_eq!(read(b.clone()).await.unwrap(), data(10, 3));
    f.store.copy(&a, &b).await.unwrap();
    assert_eq!(read(b.clone()).await.unwrap(), data(CS * 2, 2));

    let mut upload = f.store.put_multipart(&b).await.unwrap();
    upload.put_part(data(CS, 4).into()).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(read(b.clone()).await.unwrap(), data(CS, 4));

    f.store.rename(&b, &a).await.unwrap();
    assert_eq!(read(a.clone()).await.unwrap(), data(CS, 4));
    assert!(matches!(read(b.clone()).await, Err(Error::NotFound { .. })));

    f.store.delete(&a).await.unwrap();
    assert!(matches!(read(a.clone()).await, Err(Error::NotFound { .. })));
    assert!(f.store.stats().invalidations >= 7);

    let listed: Vec<ObjectMeta> = f.store.list(Some(&Path::from("w"))).try_collect().await.unwrap();
    assert!(listed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_one_chunk_share_one_fetch() {
    let f = fixture(|b| b.revalidate(Revalidate::Never));
    let path = Path::from("hot");
    f.origin.inner.put(&path, data(CS * 4, 9).into()).await.unwrap();
    f.store.head(&path).await.unwrap();
    f.origin.delay_ms.store(300, Ordering::SeqCst);
    let readers: Vec<_> = (0..16u64)
        .map(|i| {
            let store = f.store.clone();
            let path = path.clone();
            tokio::spawn(async move { store.get_range(&path, CS + i..CS + i + 100).await })
        })
        .collect();
    for (i, reader) in readers.into_iter().enumerate() {
        let got = reader.await.unwrap().unwrap();
        assert_eq!(got, data(CS * 4, 9).slice(CS as usize + i..CS as usize + i + 100));
    }
    assert_eq!(f.origin.gets(), 1, "one ranged GET for sixteen readers of one chunk");
    let stats = f.store.stats();
    assert_eq!(stats.chunk_fetches, 1);
    assert_eq!(stats.chunk_coalesced + stats.chunk_hits, 15, "{stats:?}");
}

#[tokio::test]
async fn conditional_and_versioned_gets_go_to_the_origin() {
    let f = fixture(|b| b);
    let path = Path::from("cond");
    f.origin.inner.put(&path, data(100, 1).into()).await.unwrap();
    let e_tag = f.origin.inner.head(&path).await.unwrap().e_tag.unwrap();
    let wrong = GetOptions::new().with_if_match(Some("\"nope\""));
    assert!(matches!(f.store.get_opts(&path, wrong).await, Err(Error::Precondition { .. })));
    let same = GetOptions::new().with_if_none_match(Some(e_tag.clone()));
    assert!(matches!(f.store.get_opts(&path, same).await, Err(Error::NotModified { .. })));
    let right = GetOptions::new().with_if_match(Some(e_tag)).with_range(Some(10..20));
    let got = f.store.get_opts(&path, right).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, data(100, 1).slice(10..20));
    assert_eq!(f.store.stats().passthrough, 3);
    assert_eq!(f.store.stats().chunk_fetches, 0);
}

#[tokio::test]
async fn an_origin_outage_serves_cached_chunks_and_fails_the_others() {
    let f = fixture(|b| b.revalidate(Revalidate::Never));
    let path = Path::from("outage");
    f.origin.inner.put(&path, data(CS * 3, 5).into()).await.unwrap();
    assert_eq!(f.store.get_range(&path, 0..100).await.unwrap(), data(CS * 3, 5).slice(0..100));
    f.origin.offline.store(true, Ordering::SeqCst);
    assert_eq!(f.store.get_range(&path, 0..100).await.unwrap(), data(CS * 3, 5).slice(0..100));
    let err = f.store.get_range(&path, CS * 2..CS * 2 + 10).await.unwrap_err();
    assert!(matches!(err, Error::Generic { store: "Counting", .. }), "{err:?}");
    assert!(err.to_string().contains("connection refused"), "{err}");

    // The per-call policy fails on the check, unless `stale_if_error` is set.
    let cache = f.store.cache().clone();
    let strict =
        CachedObjectStore::builder(f.origin.clone(), cache.clone()).chunk_size(CS).build().unwrap();
    assert!(strict.get_range(&path, 0..100).await.is_err());
    let lenient = CachedObjectStore::builder(f.origin.clone(), cache)
        .chunk_size(CS)
        .stale_if_error(true)
        .build()
        .unwrap();
    assert_eq!(lenient.get_range(&path, 0..100).await.unwrap(), data(CS * 3, 5).slice(0..100));
    assert_eq!(lenient.stats().stale_identities, 1);
    assert!(lenient.get_range(&path, CS * 2..CS * 2 + 10).await.is_err());
}

#[tokio::test]
async fn a_change_between_check_and_fetch_is_never_cached_under_the_old_identity() {
    let f = fixture(|b| b.revalidate(Revalidate::Never));
    let path = Path::from("changing");
    f.origin.inner.put(&path, data(CS * 2, 1).into()).await.unwrap();
    assert_eq!(f.store.get_range(&path, 0..10).await.unwrap(), data(CS * 2, 1).slice(0..10));
    // Changed behind the wrapper: the cached identity is stale, chunk 1 is not cached yet.
    f.origin.inner.put(&path, data(CS * 2, 2).into()).await.unwrap();
    let got = f.store.get_range(&path, CS..CS + 10).await.unwrap();
    let new = data(CS * 2, 2);
    assert_eq!(got, new.slice(CS as usize..CS as usize + 10));
    assert_eq!(f.store.stats().changed_during_read, 1);
    // The retry re-checked the identity, so chunk 0 now comes from the new version too.
    assert_eq!(f.store.get_range(&path, 0..10).await.unwrap(), new.slice(0..10));
}

#[tokio::test]
async fn a_tiered_cache_works_as_the_cache() {
    let origin = Arc::new(InMemory::new());
    let tiered = cache_tiered::TieredCache::builder()
        .tier(MemoryTier::builder(8 << 20).build())
        .build()
        .unwrap();
    let store = CachedObjectStore::builder(origin.clone(), Arc::new(tiered))
        .chunk_size(CS)
        .build()
        .unwrap();
    let path = Path::from("t");
    origin.put(&path, data(CS * 3, 1).into()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap(), data(CS * 3, 1));
    }
    assert_eq!(store.stats().chunk_fetches, 3);
    assert_eq!(store.stats().chunk_hits, 3);
}

#[test]
fn the_builder_rejects_bad_settings() {
    let origin: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cache: Arc<dyn Tier> = Arc::new(MemoryTier::builder(1 << 20).build());
    let build = |f: fn(CachedObjectStoreBuilder) -> CachedObjectStoreBuilder| {
        f(CachedObjectStore::builder(origin.clone(), cache.clone())).build()
    };
    for bad in [
        build(|b| b.chunk_size(1000)),
        build(|b| b.chunk_size(128 << 20)),
        build(|b| b.fetch_concurrency(0)),
        build(|b| b.namespace("")),
    ] {
        let err = bad.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    }
    let err = build(|b| b.chunk_size(1000)).unwrap_err();
    assert!(err.to_string().contains("64 KiB to 64 MiB"), "{err}");
    assert!(build(|b| b.chunk_size(64 << 10)).is_ok());
    assert!(build(|b| b.chunk_size(64 << 20)).is_ok());
    assert_eq!(build(|b| b).unwrap().chunk_size(), 4 << 20);
}

#[tokio::test]
async fn a_long_get_reads_its_tail_as_the_body_is_polled() {
    let f = fixture(|b| b.fetch_concurrency(2).revalidate(Revalidate::Never));
    let path = Path::from("long");
    let size = 10 * CS + 7;
    f.origin.inner.put(&path, data(size, 4).into()).await.unwrap();
    let result = f.store.get(&path).await.unwrap();
    assert_eq!(result.range, 0..size);
    assert_eq!(f.store.stats().chunk_fetches, 2, "only the first two chunks before the body");
    assert_eq!(result.bytes().await.unwrap(), data(size, 4));
    assert_eq!(f.store.stats().chunk_fetches, 11);
    let offset = f.store.get_opts(&path, GetOptions::new().with_range(Some(CS + 3..))).await;
    assert_eq!(offset.unwrap().bytes().await.unwrap(), data(size, 4).slice(CS as usize + 3..));

    // Changed at the origin between the call and the end of the body: the body fails.
    let other = Path::from("long-changing");
    f.origin.inner.put(&other, data(size, 5).into()).await.unwrap();
    let result = f.store.get(&other).await.unwrap();
    f.origin.inner.put(&other, data(size, 6).into()).await.unwrap();
    let err = result.bytes().await.unwrap_err();
    assert!(matches!(err, Error::Precondition { .. }), "{err:?}");
    // The next read sees the new version.
    assert_eq!(f.store.get(&other).await.unwrap().bytes().await.unwrap(), data(size, 6));
}

/// A cache tier whose every call fails, as a disk that went away would.
#[derive(Debug)]
struct BrokenTier(cache_core::TierStats);

#[async_trait]
impl Tier for BrokenTier {
    fn name(&self) -> &'static str {
        "broken"
    }
    async fn get(&self, _: &Key) -> cache_core::Result<Option<Entry>> {
        Err(cache_core::Error::new(ErrorKind::Io, "broken", "disk gone"))
    }
    async fn put(&self, _: Key, _: Entry) -> cache_core::Result<cache_core::PutOutcome> {
        Err(cache_core::Error::new(ErrorKind::Io, "broken", "disk gone"))
    }
    async fn remove(&self, _: &Key) -> cache_core::Result<()> {
        Err(cache_core::Error::new(ErrorKind::Io, "broken", "disk gone"))
    }
    async fn clear_namespace(&self, _: &Namespace) -> cache_core::Result<()> {
        Err(cache_core::Error::new(ErrorKind::Io, "broken", "disk gone"))
    }
    fn usage(&self) -> cache_core::Usage {
        cache_core::Usage::default()
    }
    fn stats(&self) -> cache_core::StatsSnapshot {
        self.0.snapshot(self.usage())
    }
    async fn flush(&self) -> cache_core::Result<()> {
        Ok(())
    }
    async fn close(&self) -> cache_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_cache_never_fails_a_read() {
    let origin = Arc::new(Counting::default());
    let cache: Arc<dyn Tier> = Arc::new(BrokenTier(cache_core::TierStats::new("broken")));
    let store = CachedObjectStore::builder(origin.clone(), cache).chunk_size(CS).build().unwrap();
    let path = Path::from("through-a-broken-cache");
    store.put(&path, data(3 * CS, 8).into()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap(), data(3 * CS, 8));
        let ranges = store.get_ranges(&path, &[5..10, CS - 1..2 * CS + 1]).await.unwrap();
        assert_eq!(ranges[1], data(3 * CS, 8).slice(CS as usize - 1..2 * CS as usize + 1));
    }
    let stats = store.stats();
    assert!(stats.cache_errors > 0, "{stats:?}");
    assert_eq!(stats.chunk_hits, 0);
    assert!(matches!(store.get(&Path::from("missing")).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn invalidate_forgets_an_object_changed_elsewhere() {
    let f = fixture(|b| b.revalidate(Revalidate::Never));
    let path = Path::from("changed/elsewhere");
    f.origin.inner.put(&path, data(CS + 1, 1).into()).await.unwrap();
    assert_eq!(
        f.store.get_range(&path, CS..CS + 1).await.unwrap(),
        data(CS + 1, 1).slice(CS as usize..)
    );
    f.origin.inner.put(&path, data(CS + 1, 2).into()).await.unwrap();
    // The never policy keeps serving the cached chunk until told.
    assert_eq!(
        f.store.get_range(&path, CS..CS + 1).await.unwrap(),
        data(CS + 1, 1).slice(CS as usize..)
    );
    f.store.invalidate(&path).await;
    assert_eq!(
        f.store.get_range(&path, CS..CS + 1).await.unwrap(),
        data(CS + 1, 2).slice(CS as usize..)
    );
    assert_eq!(f.origin.heads(), 2);
}
