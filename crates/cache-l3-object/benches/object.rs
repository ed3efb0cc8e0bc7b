//! The object tier against raw `object_store` calls on the same store: 64 requests in flight,
//! values of 1 KiB, 64 KiB and 4 MiB, `get` and `put`.
//!
//! The store is a local filesystem in a temporary directory (without fsync, for both sides),
//! or the S3 server named by `AWS_ENDPOINT` and `S3_BUCKET` (with `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`) when both are set. The tier and
//! the raw calls share one store (one HTTP connection pool on S3). The tier's extra work is the
//! record head, the checksum on every read and its metrics; the target is at least 0.95 of the
//! raw throughput.
//!
//! ```text
//! cargo bench -p cache-l3-object --bench object
//! ```

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use cache_core::{Entry, Key, Tier};
use cache_l3_object::ObjectTier;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, local::LocalFileSystem,
    path::Path,
};

const IN_FLIGHT: usize = 64;
const SIZES: [(usize, &str); 3] = [(1024, "1KiB"), (64 * 1024, "64KiB"), (4 * 1024 * 1024, "4MiB")];

struct Setup {
    store: Arc<dyn ObjectStore>,
    tier: ObjectTier,
    what: String,
    _dir: Option<tempfile::TempDir>,
}

fn setup(rt: &tokio::runtime::Runtime) -> Setup {
    let run = format!("bench-{}", std::process::id());
    let (store, what, dir): (Arc<dyn ObjectStore>, String, _) =
        match (std::env::var("AWS_ENDPOINT"), std::env::var("S3_BUCKET")) {
            (Ok(endpoint), Ok(bucket)) => {
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_virtual_hosted_style_request(false)
                    .build()
                    .expect("S3 settings from the environment");
                (Arc::new(store), format!("s3 {endpoint}/{bucket}"), None)
            }
            _ => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let fs = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
                (Arc::new(fs), "local filesystem".to_owned(), Some(dir))
            }
        };
    let tier = rt
        .block_on(
            ObjectTier::builder(store.clone())
                .prefix(format!("{run}/tier"))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .expect("building the tier");
    Setup { store, tier, what, _dir: dir }
}

fn raw_path(run: &str, size: &str, i: usize) -> Path {
    Path::from(format!("{run}/raw/{size}/{i}"))
}

fn keys(size: &str) -> Vec<Key> {
    (0..IN_FLIGHT).map(|i| Key::new("bench", format!("{size}/{i}")).expect("key")).collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let s = setup(&rt);
    let run = s.tier.prefix().trim_end_matches("/tier").to_owned();
    #[expect(clippy::print_stderr, reason = "says what is measured")]
    {
        eprintln!("object tier vs raw object_store on {}, {IN_FLIGHT} in flight", s.what);
    }
    for (size, label) in SIZES {
        let value = Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>());
        let keys = keys(label);
        let paths: Vec<Path> = (0..IN_FLIGHT).map(|i| raw_path(&run, label, i)).collect();

        let mut g = c.benchmark_group(format!("put/{label}"));
        g.throughput(Throughput::Bytes((size * IN_FLIGHT) as u64));
        g.sample_size(if size >= 1 << 20 { 10 } else { 20 });
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(if size >= 1 << 20 { 8 } else { 4 }));
        g.bench_function(BenchmarkId::from_parameter("raw"), |b| {
            b.to_async(&rt).iter(|| async {
                let puts = paths.iter().map(|p| s.store.put(p, PutPayload::from(value.clone())));
                for r in futures::future::join_all(puts).await {
                    r.expect("raw put");
                }
            });
        });
        g.bench_function(BenchmarkId::from_parameter("tier"), |b| {
            b.to_async(&rt).iter(|| async {
                let puts = keys.iter().map(|k| s.tier.put(k.clone(), Entry::new(value.clone())));
                for r in futures::future::join_all(puts).await {
                    assert!(r.expect("tier put").is_stored());
                }
            });
        });
        g.finish();

        let mut g = c.benchmark_group(format!("get/{label}"));
        g.throughput(Throughput::Bytes((size * IN_FLIGHT) as u64));
        g.sample_size(if size >= 1 << 20 { 10 } else { 20 });
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(if size >= 1 << 20 { 8 } else { 4 }));
        g.bench_function(BenchmarkId::from_parameter("raw"), |b| {
            b.to_async(&rt).iter(|| async {
                let gets = paths.iter().map(|p| async {
                    s.store.get(p).await.expect("raw get").bytes().await.expect("raw body")
                });
                for body in futures::future::join_all(gets).await {
                    assert_eq!(body.len(), size);
                }
            });
        });
        g.bench_function(BenchmarkId::from_parameter("tier"), |b| {
            b.to_async(&rt).iter(|| async {
                let gets = keys.iter().map(|k| s.tier.get(k));
                for got in futures::future::join_all(gets).await {
                    assert_eq!(got.expect("tier get").expect("hit").value.len(), size);
                }
            });
        });
        g.finish();
    }
    rt.block_on(async {
        let prefix = Path::from(run.as_str());
        let listing = s.store.list(Some(&prefix));
        let locations =
            futures::StreamExt::boxed(futures::TryStreamExt::map_ok(listing, |m| m.location));
        let _ =
            futures::TryStreamExt::try_collect::<Vec<_>>(s.store.delete_stream(locations)).await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
