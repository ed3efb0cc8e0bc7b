//! `CachedObjectStore` with the real S3 server as its origin: byte-identical reads across chunk
//! boundaries (random ranges, suffixes, offsets, `get_ranges`, whole gets and heads, through a
//! RAM → NVMe tiered cache), an object overwritten at the origin re-fetched under the per-call
//! policy, writes through the wrapper invalidating, an unreachable origin (a client for the same
//! bucket on a closed port) serving cached chunks and failing the others with the origin's
//! error, and concurrent readers of one chunk costing one origin GET (counted by a wrapper
//! around the real client).

use std::{
    fmt,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use cache_core::Tier;
use cache_l1::MemoryTier;
use cache_l2_nvme::NvmeTierBuilder;
use cache_object_store::{CachedObjectStore, Revalidate};
use cache_tiered::{TierOptions, TieredCache};
use futures::stream::BoxStream;
use object_store::{
    CopyOptions, Error, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result, RetryConfig, path::Path,
};

use crate::harness::{s3_test, test_client_options};

const KIB: u64 = 1024;
/// The chunk size of these tests: small, so a few MiB span many chunks.
const CHUNK: u64 = 256 * KIB;

/// The real S3 client, counting the ranged GETs and HEADs it sends.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    gets: AtomicU64,
    heads: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>) -> Arc<Counting> {
        Arc::new(Counting { inner, gets: AtomicU64::new(0), heads: AtomicU64::new(0) })
    }
    fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }
    fn heads(&self) -> u64 {
        self.heads.load(Ordering::SeqCst)
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
        let counter = if o.head { &self.heads } else { &self.gets };
        counter.fetch_add(1, Ordering::SeqCst);
        self.inner.get_opts(l, o).await
    }
    async fn get_ranges(&self, l: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
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
        self.inner.copy_opts(from, to, o).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, o: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, o).await
    }
}

/// Deterministic bytes that differ between seeds.
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

/// A small deterministic generator of ranges.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn memory_cache() -> Arc<dyn Tier> {
    Arc::new(MemoryTier::builder(64 << 20).build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_byte_identical_to_the_origin_across_chunk_boundaries() {
    let t = s3_test!("cached_object_store_byte_identical");
    let dir = tempfile::tempdir().unwrap();
    let nvme = NvmeTierBuilder::new(dir.path(), 64 << 20).open().await.unwrap();
    // A small RAM tier over a disk tier: most chunks are demoted and read back from disk.
    let cache = TieredCache::builder()
        .tier(MemoryTier::builder(CHUNK * 3).build())
        .tier(TierOptions::new(nvme))
        .build()
        .unwrap();
    let origin: Arc<dyn ObjectStore> = t.store.clone();
    let store = CachedObjectStore::builder(origin.clone(), Arc::new(cache))
        .chunk_size(CHUNK)
        .build()
        .unwrap();
    let mut rng = Rng(0x5eed);
    for (n, size) in [0, 1, CHUNK, 4 * CHUNK, 10 * CHUNK + 12_345].into_iter().enumerate() {
        let path = t.path(&format!("objects/{n}"));
        origin.put(&path, data(size, n as u64).into()).await.unwrap();
        let theirs = origin.head(&path).await.unwrap();
        assert_eq!(store.head(&path).await.unwrap(), theirs);
        let whole = store.get(&path).await.unwrap();
        assert_eq!(whole.meta, theirs);
        assert_eq!(whole.range, 0..size);
        assert_eq!(whole.bytes().await.unwrap(), data(size, n as u64));
        if size == 0 {
            continue;
        }
        let mut ranges: Vec<GetRange> = (0..25)
            .map(|_| {
                let start = rng.below(size);
                GetRange::Bounded(start..start + 1 + rng.below(3 * CHUNK))
            })
            .collect();
        ranges.push(GetRange::Suffix(1 + rng.below(size)));
        ranges.push(GetRange::Offset(rng.below(size)));
        ranges.push(GetRange::Bounded(size - 1..size + 10 * CHUNK));
        for range in ranges {
            let options = GetOptions::new().with_range(Some(range.clone()));
            let ours = store.get_opts(&path, options.clone()).await.unwrap();
            let direct = origin.get_opts(&path, options).await.unwrap();
            assert_eq!(ours.range, direct.range, "{size} {range:?}");
            assert_eq!(ours.meta.e_tag, direct.meta.e_tag);
            assert_eq!(ours.bytes().await.unwrap(), direct.bytes().await.unwrap(), "{range:?}");
        }
        let many: Vec<Range<u64>> = (0..6)
            .map(|_| {
                let start = rng.below(size);
                start..(start + 1 + rng.below(2 * CHUNK)).min(size)
            })
            .collect();
        let ours = store.get_ranges(&path, &many).await.unwrap();
        let direct = origin.get_ranges(&path, &many).await.unwrap();
        assert_eq!(ours, direct, "{many:?}");
        // A range starting past the end fails as the origin fails it.
        let ours = store.get_range(&path, size + 5..size + 10).await.unwrap_err();
        let direct = origin.get_range(&path, size + 5..size + 10).await.unwrap_err();
        assert_eq!(std::mem::discriminant(&ours), std::mem::discriminant(&direct), "{ours:?}");
    }
    let missing = store.get_range(&t.path("missing"), 0..10).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    let stats = store.stats();
    assert!(stats.chunk_hits > 0, "ranges overlapped, so chunks were reused: {stats:?}");
    assert!(stats.bytes_from_cache > 0, "{stats:?}");
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_overwritten_at_the_origin_is_refetched() {
    let t = s3_test!("cached_object_store_overwrite");
    let origin = Counting::new(t.store.clone());
    let store = CachedObjectStore::builder(origin.clone(), memory_cache())
        .chunk_size(CHUNK)
        .revalidate(Revalidate::EveryCall)
        .build()
        .unwrap();
    let path = t.path("manifest.json");
    let size = 2 * CHUNK + 100;
    t.store.put(&path, data(size, 1).into()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            store.get_range(&path, 10..CHUNK + 10).await.unwrap(),
            data(size, 1).slice(10..(CHUNK + 10) as usize)
        );
    }
    assert_eq!(origin.gets(), 2, "chunks 0 and 1, fetched once");
    // Overwritten behind the wrapper's back, same size: the next read checks and re-fetches.
    t.store.put(&path, data(size, 2).into()).await.unwrap();
    let got = store.get_range(&path, 10..CHUNK + 10).await.unwrap();
    assert_eq!(got, data(size, 2).slice(10..(CHUNK + 10) as usize));
    assert_eq!(origin.gets(), 4);
    assert_eq!(origin.heads(), 3, "one identity check per read");
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_wrapper_invalidate_what_it_cached() {
    let t = s3_test!("cached_object_store_writes");
    let store = CachedObjectStore::builder(t.store.clone(), memory_cache())
        .chunk_size(CHUNK)
        .revalidate(Revalidate::Never)
        .build()
        .unwrap();
    let (a, b) = (t.path("a"), t.path("b"));
    let read = |p: &Path| {
        let (store, p) = (store.clone(), p.clone());
        async move { store.get(&p).await?.bytes().await }
    };
    store.put(&a, data(CHUNK + 1, 1).into()).await.unwrap();
    assert_eq!(read(&a).await.unwrap(), data(CHUNK + 1, 1));
    store.put(&a, data(CHUNK + 1, 2).into()).await.unwrap();
    assert_eq!(read(&a).await.unwrap(), data(CHUNK + 1, 2));

    // A multipart upload (5 MiB parts: S3's minimum for all but the last) replaces it.
    let mut upload = store.put_multipart(&a).await.unwrap();
    upload.put_part(data(5 << 20, 3).into()).await.unwrap();
    upload.put_part(data(CHUNK, 4).into()).await.unwrap();
    upload.complete().await.unwrap();
    let mut expected = data(5 << 20, 3).to_vec();
    expected.extend_from_slice(&data(CHUNK, 4));
    assert_eq!(read(&a).await.unwrap(), expected);

    store.put(&b, data(10, 5).into()).await.unwrap();
    assert_eq!(read(&b).await.unwrap(), data(10, 5));
    store.copy(&a, &b).await.unwrap();
    assert_eq!(read(&b).await.unwrap(), expected);
    store.delete(&b).await.unwrap();
    assert!(matches!(read(&b).await, Err(Error::NotFound { .. })));
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_serves_cached_chunks_and_fails_the_others() {
    let t = s3_test!("cached_object_store_outage");
    let cache = memory_cache();
    let path = t.path("data/part-0.parquet");
    let size = 4 * CHUNK;
    t.store.put(&path, data(size, 7).into()).await.unwrap();
    let warm = CachedObjectStore::builder(t.store.clone(), cache.clone())
        .chunk_size(CHUNK)
        .immutable_prefix(t.path("data"))
        .build()
        .unwrap();
    // Chunks 0 and 1 (and the identity) are cached.
    warm.get_range(&path, 100..CHUNK + 100).await.unwrap();

    // The same bucket through a client whose server is gone (nothing listens on port 9).
    let dead: Arc<dyn ObjectStore> = Arc::new(
        t.env
            .builder_with_client_options(test_client_options())
            .with_endpoint("http://127.0.0.1:9")
            .with_retry(RetryConfig { max_retries: 0, ..RetryConfig::default() })
            .build()
            .unwrap(),
    );
    let outage = CachedObjectStore::builder(dead.clone(), cache.clone())
        .chunk_size(CHUNK)
        .immutable_prefix(t.path("data"))
        .build()
        .unwrap();
    let got = outage.get_range(&path, 0..2 * CHUNK).await.unwrap();
    assert_eq!(got, data(size, 7).slice(0..(2 * CHUNK) as usize));
    let ours = outage.get_range(&path, 3 * CHUNK..3 * CHUNK + 10).await.unwrap_err();
    let direct = dead.get_range(&path, 3 * CHUNK..3 * CHUNK + 10).await.unwrap_err();
    assert!(matches!(ours, Error::Generic { store: "S3", .. }), "{ours:?}");
    assert_eq!(std::mem::discriminant(&ours), std::mem::discriminant(&direct));
    assert!(format!("{ours:?}").to_lowercase().contains("connect"), "{ours:?}");

    // The per-call policy needs the origin for its check, unless `stale_if_error` is set.
    let strict =
        CachedObjectStore::builder(dead.clone(), cache.clone()).chunk_size(CHUNK).build().unwrap();
    let err = strict.get_range(&path, 0..10).await.unwrap_err();
    assert!(matches!(err, Error::Generic { store: "S3", .. }), "{err:?}");
    let lenient = CachedObjectStore::builder(dead, cache)
        .chunk_size(CHUNK)
        .stale_if_error(true)
        .build()
        .unwrap();
    assert_eq!(lenient.get_range(&path, 0..10).await.unwrap(), data(size, 7).slice(0..10));
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_one_chunk_cause_one_origin_get() {
    let t = s3_test!("cached_object_store_single_flight");
    let origin = Counting::new(t.store.clone());
    let store = CachedObjectStore::builder(origin.clone(), memory_cache())
        .chunk_size(CHUNK)
        .revalidate(Revalidate::Never)
        .build()
        .unwrap();
    let path = t.path("hot");
    let size = 4 * CHUNK;
    t.store.put(&path, data(size, 9).into()).await.unwrap();
    store.head(&path).await.unwrap();
    let readers: Vec<_> = (0..16u64)
        .map(|i| {
            let (store, path) = (store.clone(), path.clone());
            let range = CHUNK + i * 1000..CHUNK + i * 1000 + 500;
            tokio::spawn(async move { (store.get_range(&path, range.clone()).await, range) })
        })
        .collect();
    for reader in readers {
        let (got, range) = reader.await.unwrap();
        assert_eq!(got.unwrap(), data(size, 9).slice(range.start as usize..range.end as usize));
    }
    assert_eq!(origin.gets(), 1, "sixteen readers of chunk 1, one ranged GET");
    assert_eq!(origin.heads(), 1);
    let stats = store.stats();
    assert_eq!(stats.chunk_fetches, 1);
    assert_eq!(stats.chunk_hits + stats.chunk_coalesced, 15, "{stats:?}");
    t.cleanup().await;
}
