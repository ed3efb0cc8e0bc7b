//! `cache-bench read-through`: `CachedObjectStore` (RAM → NVMe) against reading its origin
//! directly, on a Parquet-like read pattern.
//!
//! The data set is a few "Parquet files" of equal size, each cut into column chunks of uneven
//! length (256 KiB to 2 MiB, fixed per file by a seed). A query picks a file (zipf popularity)
//! and reads what a Parquet reader reads: the footer (the last 64 KiB), then a few column
//! chunks (zipf popularity over columns). Queries run from several tasks at once, so readers
//! of one chunk also meet in the wrapper's single-flight. Every configuration replays the same
//! queries, from a cold cache.
//!
//! The origins: a local directory (the embedded default), the same directory behind
//! object_store's `ThrottledStore` with a first-byte latency and a bandwidth like a remote
//! object store's (in memory; the simulated rows say so), and the S3 server named by `AWS_ENDPOINT` and
//! `S3_BUCKET` when they are set (`cargo xtask s3 start`, `eval "$(cargo xtask s3 env)"`).

use std::{
    fmt::Write as _,
    ops::Range,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use bytes::Bytes;
use cache_bench::zipf_cdf;
use cache_core::Tier;
use cache_l1::{EvictionPolicy, MemoryTier};
use cache_l2_nvme::{Durability, NvmeTierBuilder};
use cache_object_store::{CachedObjectStore, Revalidate};
use cache_tiered::{
    TierOptions, TieredCache, WritePolicy,
    policy::{DemotionFilter, PromoteNever},
};
use object_store::{
    ObjectStore, ObjectStoreExt,
    local::LocalFileSystem,
    memory::InMemory,
    path::Path as ObjectPath,
    throttle::{ThrottleConfig, ThrottledStore},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::output::table;

const MIB: u64 = 1 << 20;
const FOOTER: u64 = 64 << 10;
/// The simulated remote store: first byte after this long, then this many bytes per second.
const REMOTE_LATENCY: Duration = Duration::from_millis(20);
const REMOTE_NS_PER_BYTE: u64 = 5; // 200 MB/s per request

/// The shape of one run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReadThroughArgs {
    /// Shorter: 4 files of 16 MiB, 120 queries, a cache of 4 + 24 MiB.
    #[arg(long)]
    quick: bool,
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    files: usize,
    file_size: u64,
    queries: usize,
    columns_per_query: usize,
    tasks: usize,
    ram: u64,
    disk: u64,
    chunk: u64,
}

impl Shape {
    fn new(quick: bool) -> Shape {
        if quick {
            Shape {
                files: 4,
                file_size: 16 * MIB,
                queries: 120,
                columns_per_query: 3,
                tasks: 4,
                ram: 4 * MIB,
                disk: 24 * MIB,
                chunk: MIB,
            }
        } else {
            Shape {
                files: 16,
                file_size: 64 * MIB,
                queries: 800,
                columns_per_query: 3,
                tasks: 4,
                ram: 64 * MIB,
                disk: 512 * MIB,
                chunk: MIB,
            }
        }
    }
}

/// One read of a query: which file, which bytes.
type Read = (usize, Range<u64>);

/// File `i`'s bytes: random, so no layer can compress them.
fn file_bytes(i: usize, len: u64) -> Bytes {
    let mut out = vec![0u8; len as usize];
    StdRng::seed_from_u64(0x9e37_79b9 + i as u64).fill(&mut out[..]);
    out.into()
}

/// The column chunks of file `i`: uneven, contiguous, before the footer.
fn columns(i: usize, file_size: u64) -> Vec<Range<u64>> {
    let mut rng = StdRng::seed_from_u64(7 + i as u64);
    let mut out = Vec::new();
    let mut at = 0;
    let end = file_size - FOOTER;
    while at < end {
        let len = rng.random_range(256 << 10..2 * MIB).min(end - at);
        out.push(at..at + len);
        at += len;
    }
    out
}

fn pick(cdf: &[f64], rng: &mut StdRng) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
}

/// The queries, each a footer read then its column reads; the same for every configuration.
fn queries(shape: &Shape) -> Vec<Vec<Read>> {
    let mut rng = StdRng::seed_from_u64(0x000b_1ec7);
    let files = zipf_cdf(shape.files, 0.9);
    let layout: Vec<Vec<Range<u64>>> =
        (0..shape.files).map(|i| columns(i, shape.file_size)).collect();
    (0..shape.queries)
        .map(|_| {
            let f = pick(&files, &mut rng);
            let cols = zipf_cdf(layout[f].len(), 0.8);
            let mut reads = vec![(f, shape.file_size - FOOTER..shape.file_size)];
            for _ in 0..shape.columns_per_query {
                reads.push((f, layout[f][pick(&cols, &mut rng)].clone()));
            }
            reads
        })
        .collect()
}

/// What one configuration measured.
struct Measured {
    wall: Duration,
    latencies: Vec<Duration>,
    requested: u64,
}

async fn replay(
    store: Arc<dyn ObjectStore>,
    paths: &[ObjectPath],
    queries: &[Vec<Read>],
    tasks: usize,
) -> Result<Measured> {
    let next = Arc::new(AtomicUsize::new(0));
    let queries = Arc::new(queries.to_vec());
    let paths = Arc::new(paths.to_vec());
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, next, queries, paths) =
            (store.clone(), next.clone(), queries.clone(), paths.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut requested = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(query) = queries.get(i) else { break };
                for (file, range) in query {
                    let t = Instant::now();
                    let got = store.get_range(&paths[*file], range.clone()).await?;
                    latencies.push(t.elapsed());
                    anyhow::ensure!(got.len() as u64 == range.end - range.start, "short read");
                    requested += got.len() as u64;
                }
            }
            Ok::<_, anyhow::Error>((latencies, requested))
        }));
    }
    let mut latencies = Vec::new();
    let mut requested = 0;
    for h in handles {
        let (l, r) = h.await??;
        latencies.extend(l);
        requested += r;
    }
    latencies.sort();
    Ok(Measured { wall: start.elapsed(), latencies, requested })
}

fn cache(shape: &Shape, dir: &Path) -> Result<Arc<dyn Tier>> {
    let _ = std::fs::remove_dir_all(dir);
    let disk = NvmeTierBuilder::new(dir, shape.disk)
        .durability(Durability::None)
        .reinsert_hits(true)
        .open_blocking()
        .with_context(|| format!("opening the NVMe tier in {}", dir.display()))?;
    let cache = TieredCache::builder()
        .demotion_filter(DemotionFilter::tiny_lfu())
        .promotion(PromoteNever)
        .tier(MemoryTier::builder(shape.ram).eviction_policy(EvictionPolicy::Lru).build())
        .tier(TierOptions::new(disk).write(WritePolicy::OnEviction))
        .build()?;
    Ok(Arc::new(cache))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default()
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 { "-".to_owned() } else { format!("{:.1}", part as f64 * 100.0 / whole as f64) }
}

/// The rows of one origin: direct, then the wrapper with each re-check policy.
async fn origin_rows(
    name: &str,
    origin: Arc<dyn ObjectStore>,
    paths: &[ObjectPath],
    shape: &Shape,
    queries: &[Vec<Read>],
    cache_dir: &Path,
    rows: &mut Vec<Vec<String>>,
) -> Result<()> {
    let reads: u64 = queries.iter().map(|q| q.len() as u64).sum();
    let direct = replay(origin.clone(), paths, queries, shape.tasks).await?;
    let mib = |b: u64| format!("{:.0}", b as f64 / MIB as f64);
    rows.push(vec![
        format!("{name}: straight to the origin"),
        reads.to_string(),
        "-".into(),
        mib(direct.requested),
        "-".into(),
        ms(percentile(&direct.latencies, 0.5)),
        ms(percentile(&direct.latencies, 0.99)),
        format!("{:.0}", shape.queries as f64 / direct.wall.as_secs_f64()),
    ]);
    let prefix = paths[0].parts().next().map(|p| p.as_ref().to_owned()).unwrap_or_default();
    for (label, immutable) in [("per-call re-check", false), ("immutable prefix", true)] {
        let mut b = CachedObjectStore::builder(origin.clone(), cache(shape, cache_dir)?)
            .chunk_size(shape.chunk)
            .revalidate(Revalidate::EveryCall);
        if immutable {
            b = b.immutable_prefix(prefix.as_str());
        }
        let store = Arc::new(b.build()?);
        let m = replay(store.clone(), paths, queries, shape.tasks).await?;
        let s = store.stats();
        let chunk_reads = s.chunk_hits + s.chunk_coalesced + s.chunk_fetches;
        rows.push(vec![
            format!("{name}: cached, {label}"),
            s.origin_requests().to_string(),
            pct(s.origin_requests_saved(), s.origin_requests() + s.origin_requests_saved()),
            mib(s.bytes_fetched),
            pct(s.chunk_hits + s.chunk_coalesced, chunk_reads),
            ms(percentile(&m.latencies, 0.5)),
            ms(percentile(&m.latencies, 0.99)),
            format!("{:.0}", shape.queries as f64 / m.wall.as_secs_f64()),
        ]);
        store.cache().close().await?;
    }
    Ok(())
}

async fn upload(store: &dyn ObjectStore, paths: &[ObjectPath], shape: &Shape) -> Result<()> {
    for (i, path) in paths.iter().enumerate() {
        store
            .put(path, file_bytes(i, shape.file_size).into())
            .await
            .with_context(|| format!("writing {path} to the origin"))?;
    }
    Ok(())
}

fn s3_origin() -> Option<Result<Arc<dyn ObjectStore>>> {
    let endpoint = std::env::var("AWS_ENDPOINT").ok()?;
    let bucket = std::env::var("S3_BUCKET").ok()?;
    Some(
        object_store::aws::AmazonS3Builder::from_env()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            .context("configuring the S3 origin"),
    )
}

/// The report's section: one table, every origin.
pub(crate) async fn section(quick: bool, data_dir: &Path) -> Result<String> {
    let shape = Shape::new(quick);
    let queries = queries(&shape);
    let dir = data_dir.join("read-through");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("origin"))?;
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("origin"))?);
    let run = format!("read-through-{}", std::process::id());
    let paths: Vec<ObjectPath> = (0..shape.files)
        .map(|i| ObjectPath::from(format!("{run}/data/part-{i:03}.parquet")))
        .collect();
    eprintln!("read-through: writing {} files of {} MiB", shape.files, shape.file_size / MIB);
    upload(&*local, &paths, &shape).await?;
    let mut rows = Vec::new();
    let cache_dir = dir.join("nvme");
    eprintln!("read-through: local directory");
    origin_rows("local dir", local.clone(), &paths, &shape, &queries, &cache_dir, &mut rows)
        .await?;
    // `ThrottledStore` cannot wrap the local filesystem (its file payloads), so the simulated
    // remote store holds the files in memory.
    let memory = InMemory::new();
    upload(&memory, &paths, &shape).await?;
    let throttled: Arc<dyn ObjectStore> = Arc::new(ThrottledStore::new(
        memory,
        ThrottleConfig {
            wait_get_per_call: REMOTE_LATENCY,
            wait_get_per_byte: Duration::from_nanos(REMOTE_NS_PER_BYTE),
            ..ThrottleConfig::default()
        },
    ));
    eprintln!("read-through: simulated remote store");
    origin_rows("simulated remote", throttled, &paths, &shape, &queries, &cache_dir, &mut rows)
        .await?;
    let mut s3_note =
        "No S3 server was configured for this run (`AWS_ENDPOINT`, `S3_BUCKET`).".to_owned();
    if let Some(s3) = s3_origin() {
        let s3 = s3?;
        eprintln!("read-through: S3 at {}", std::env::var("AWS_ENDPOINT").unwrap_or_default());
        upload(&*s3, &paths, &shape).await?;
        origin_rows(
            "S3 (local server)",
            s3.clone(),
            &paths,
            &shape,
            &queries,
            &cache_dir,
            &mut rows,
        )
        .await?;
        for path in &paths {
            s3.delete(path).await?;
        }
        s3_note = "The S3 rows read from a SeaweedFS server on this machine's loopback: far \
                   faster than a bucket across a network, so its latencies understate what \
                   the cache saves there."
            .to_owned();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let reads: usize = queries.iter().map(Vec::len).sum();
    let mut md = String::new();
    let _ = writeln!(md, "## Read-through `ObjectStore`: `CachedObjectStore` against its origin\n");
    let _ = writeln!(
        md,
        "`cache-bench read-through{}`. {} queries from {} tasks over {} Parquet-like files of \
         {} MiB ({} MiB in all): each query reads a file's footer (its last 64 KiB) and {} \
         column chunks of 256 KiB to 2 MiB, files and columns picked by zipf popularity \
         (0.9 and 0.8); {reads} ranged reads in all. The wrapper caches {} MiB chunks in a \
         tiered cache of {} MiB RAM in front of {} MiB NVMe (LRU RAM, TinyLFU demotion \
         filter, NVMe with hit-based reinsertion), from cold, so the figures include the \
         first reads of every chunk. \"Simulated remote\" is an in-memory store behind \
         object_store's `ThrottledStore`: {} ms before each GET or HEAD answers, then {} MB/s \
         per request. Origin requests are GETs and HEADs; the request and chunk hit columns \
         are the share served without the origin; latency is per ranged read. {s3_note}\n",
        if quick { " --quick" } else { "" },
        shape.queries,
        shape.tasks,
        shape.files,
        shape.file_size / MIB,
        shape.files as u64 * shape.file_size / MIB,
        shape.columns_per_query,
        shape.chunk / MIB,
        shape.ram / MIB,
        shape.disk / MIB,
        REMOTE_LATENCY.as_millis(),
        1_000 / REMOTE_NS_PER_BYTE,
    );
    md.push_str(&table(
        &[
            "path",
            "origin requests",
            "requests saved %",
            "MiB from origin",
            "chunk hits %",
            "read p50 ms",
            "read p99 ms",
            "queries/s",
        ],
        &rows,
    ));
    md.push('\n');
    Ok(md)
}

/// `cache-bench read-through`.
pub(crate) async fn run(args: ReadThroughArgs) -> Result<()> {
    let md = section(args.quick, &crate::output::out_dir().join("data")).await?;
    println!("{md}");
    Ok(())
}
