//! Reads random byte ranges of a few objects on an S3 server straight from the server and
//! through `CachedObjectStore` (RAM tier, per-call and immutable-prefix policies), and prints
//! the origin requests, the bytes fetched and the latency percentiles of each.
//!
//! ```text
//! cargo xtask s3 start && eval "$(cargo xtask s3 env)"
//! cargo run --release -p cache-object-store --example s3_read_through
//! ```
//!
//! The server is named by `AWS_ENDPOINT`, `S3_BUCKET`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_REGION` (default `us-east-1`). The objects are written under
//! a fresh prefix and deleted at the end.

#![expect(clippy::print_stdout, reason = "an example that prints its measurements")]

use std::{
    env,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::Tier;
use cache_l1::MemoryTier;
use cache_object_store::{CachedObjectStore, Revalidate};
use object_store::{ObjectStore, ObjectStoreExt, aws::AmazonS3Builder, path::Path};

const OBJECTS: u64 = 8;
const OBJECT_SIZE: u64 = 8 << 20;
const READS: usize = 400;
const CHUNK: u64 = 1 << 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The read sequence: skewed object popularity (object `i` with probability falling in `i`),
/// ranges of 64 KiB to 1 MiB at random offsets.
fn workload() -> Vec<(u64, std::ops::Range<u64>)> {
    let mut rng = Rng(0x5eed_1234);
    (0..READS)
        .map(|_| {
            let u = (rng.next() % 10_000) as f64 / 10_000.0;
            let object = ((u * u) * OBJECTS as f64) as u64;
            let len = (64 << 10) + rng.next() % ((1 << 20) - (64 << 10));
            let start = rng.next() % (OBJECT_SIZE - len);
            (object, start..start + len)
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(
    name: &str,
    store: &dyn ObjectStore,
    paths: &[Path],
    reads: &[(u64, std::ops::Range<u64>)],
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(reads.len());
    for (object, range) in reads {
        let start = Instant::now();
        let bytes = store.get_range(&paths[*object as usize], range.clone()).await.unwrap();
        latencies.push(start.elapsed());
        assert_eq!(bytes.len() as u64, range.end - range.start, "{name}");
    }
    latencies.sort();
    latencies
}

fn report(name: &str, latencies: &[Duration], origin_requests: u64, fetched: u64) {
    println!(
        "| {name} | {READS} | {origin_requests} | {:.1} | {:.2} | {:.2} |",
        fetched as f64 / f64::from(1 << 20),
        percentile(latencies, 0.5).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let var = |name: &str| env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let origin: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(var("AWS_ENDPOINT"))
            .with_bucket_name(var("S3_BUCKET"))
            .with_access_key_id(var("AWS_ACCESS_KEY_ID"))
            .with_secret_access_key(var("AWS_SECRET_ACCESS_KEY"))
            .with_region(env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()))
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    let prefix = format!("cache-object-store-example/{}", std::process::id());
    let paths: Vec<Path> =
        (0..OBJECTS).map(|i| Path::from(format!("{prefix}/data/part-{i}.bin"))).collect();
    for (i, path) in paths.iter().enumerate() {
        let mut rng = Rng(i as u64 + 1);
        let data: Bytes = (0..OBJECT_SIZE).map(|_| rng.next() as u8).collect::<Vec<_>>().into();
        origin.put(path, data.into()).await.unwrap();
    }
    let reads = workload();
    let requested: u64 = reads.iter().map(|(_, r)| r.end - r.start).sum();
    println!(
        "{READS} reads of 64 KiB – 1 MiB over {OBJECTS} objects of {} MiB, chunks of {} MiB",
        OBJECT_SIZE >> 20,
        CHUNK >> 20
    );
    println!();
    println!("| path | reads | origin requests | MiB from origin | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    let direct = run("direct", &*origin, &paths, &reads).await;
    report("straight to the origin", &direct, READS as u64, requested);

    let configs: [(&str, Revalidate, bool); 2] = [
        ("cached, per-call re-check", Revalidate::EveryCall, false),
        ("cached, immutable prefix", Revalidate::EveryCall, true),
    ];
    for (name, revalidate, immutable) in configs {
        let cache: Arc<dyn Tier> = Arc::new(MemoryTier::builder(256 << 20).build());
        let mut builder = CachedObjectStore::builder(origin.clone(), cache)
            .chunk_size(CHUNK)
            .revalidate(revalidate);
        if immutable {
            builder = builder.immutable_prefix(format!("{prefix}/data"));
        }
        let store = builder.build().unwrap();
        let latencies = run(name, &store, &paths, &reads).await;
        let stats = store.stats();
        report(name, &latencies, stats.origin_requests(), stats.bytes_fetched);
        // A second pass over the same reads: everything is cached now.
        let warm = run(name, &store, &paths, &reads).await;
        let after = store.stats();
        report(
            &format!("{name}, second pass"),
            &warm,
            after.origin_requests() - stats.origin_requests(),
            after.bytes_fetched - stats.bytes_fetched,
        );
    }
    for path in &paths {
        origin.delete(path).await.unwrap();
    }
}
