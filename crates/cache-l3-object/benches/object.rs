//! The object tier against raw `object_store` calls on the same store, in interleaved pairs.
//!
//! For each store, value size and operation, the two sides run in alternating order for
//! `--rounds` rounds; in each round each side issues the same number of requests, 64 in
//! flight, and the round's ratio is the tier's throughput over the raw calls'. The report gives
//! the median ratio (and its range) and each side's median throughput. What is compared:
//!
//! - One store shared by both sides (one HTTP connection pool on S3; one directory tree, no
//!   fsync on either side, on the local filesystem).
//! - The same object paths: the raw side writes to the tier's own layout under a sibling prefix
//!   (`{run}/raw/{namespace}/{fan-out}/{hash}` against `{run}/tier/...`), so directory depth and
//!   fan-out are equal.
//! - The same object sizes: the raw side stores each key's encoded cache-core record, so its
//!   objects are as long as the tier's.
//! - The tier's extra work is what it does per call: path from the key hash, record head and
//!   checksum on put, checksum, key and expiry checks on get, its stats and metrics, and the
//!   operation timeout around each call.
//!
//! Stores: the local filesystem (a temporary directory) always, and the S3 server named by
//! `AWS_ENDPOINT` and `S3_BUCKET` (with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ALLOW_HTTP`) when both are set; `eval "$(cargo xtask s3 env)"` sets them
//! for the local SeaweedFS. Objects are deleted at the end.
//!
//! ```text
//! cargo bench -p cache-l3-object --bench object -- [--rounds 41] [--large-rounds 6]
//!     [--sizes 1KiB,64KiB,4MiB] [--stores s3,local,memory] [--ops get,put] [--verbose]
//! ```
//!
//! Without `--bench` (as under `cargo test --benches`) it runs one short round of 1 KiB on the
//! local filesystem only, as a smoke test. 4 MiB values move 256 MiB per batch of 64: values
//! of 1 MiB and more run one batch per side per round and `--large-rounds` rounds, so memory
//! stays near 512 MiB, a round takes seconds, and the puts write about 3.5 GiB (the objects are
//! deleted at the end, but SeaweedFS keeps overwritten bytes on disk until it vacuums its
//! volumes: `curl 'http://127.0.0.1:9333/vol/vacuum?garbageThreshold=0.1'` reclaims them).
//!
//! `PROFILE_ONLY=tier` (or `raw`) runs one side alone, for `perf record`.
//!
//! The last column is the client's CPU time per request (this process, all threads): the
//! tier's own cost shows there even when the server or the disk hides it in throughput. The
//! `memory` store (run only when asked) measures that cost with no IO at all.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{Entry, Key, Record, Tier};
use cache_l3_object::ObjectTier;
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, local::LocalFileSystem,
    memory::InMemory, path::Path,
};

const IN_FLIGHT: usize = 64;
const KIB: usize = 1024;
/// Values from this size run `--large-rounds` rounds (6 by default) of one batch per side.
const LARGE: usize = KIB * KIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
        }
    }
}

struct Args {
    verbose: bool,
    rounds: usize,
    large_rounds: usize,
    sizes: Vec<usize>,
    stores: Vec<String>,
    ops: Vec<Op>,
}

fn parse_size(s: &str) -> usize {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: usize = n.parse().unwrap_or_else(|_| panic!("bad size {s:?}"));
    match unit.to_ascii_lowercase().as_str() {
        "" | "b" => n,
        "kib" | "k" => n * KIB,
        "mib" | "m" => n * KIB * KIB,
        other => panic!("bad size unit {other:?} in {s:?}"),
    }
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let bench = argv.iter().any(|a| a == "--bench");
    let s3 = std::env::var("AWS_ENDPOINT").is_ok() && std::env::var("S3_BUCKET").is_ok();
    let mut args = if bench {
        Args {
            verbose: false,
            rounds: 41,
            large_rounds: 6,
            sizes: vec![KIB, 64 * KIB, 4 * KIB * KIB],
            stores: if s3 { vec!["s3".into(), "local".into()] } else { vec!["local".into()] },
            ops: vec![Op::Get, Op::Put],
        }
    } else {
        Args {
            verbose: false,
            rounds: 1,
            large_rounds: 1,
            sizes: vec![KIB],
            stores: vec!["local".into()],
            ops: vec![Op::Get, Op::Put],
        }
    };
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value")).clone();
        match a.as_str() {
            "--verbose" => args.verbose = true,
            "--rounds" => args.rounds = value().parse().expect("--rounds N"),
            "--large-rounds" => args.large_rounds = value().parse().expect("--large-rounds N"),
            "--sizes" => args.sizes = value().split(',').map(parse_size).collect(),
            "--stores" => args.stores = value().split(',').map(str::to_owned).collect(),
            "--ops" => {
                args.ops = value()
                    .split(',')
                    .map(|o| match o {
                        "get" => Op::Get,
                        "put" => Op::Put,
                        _ => panic!("--ops takes get,put"),
                    })
                    .collect();
            }
            _ => {} // `--bench` and filters cargo passes along
        }
    }
    assert!(args.rounds > 0 && args.large_rounds > 0, "rounds must be positive");
    args
}

fn label(size: usize) -> String {
    if size >= KIB * KIB {
        format!("{}MiB", size / KIB / KIB)
    } else {
        format!("{}KiB", size / KIB)
    }
}

/// Batches of `IN_FLIGHT` requests per side per round: short rounds, so that a disturbance
/// from outside (the two cores are shared) spoils few of them and the median ignores it.
fn batches(size: usize) -> usize {
    match size {
        s if s <= 4 * KIB => 2,
        _ => 1,
    }
}

struct Fixture {
    store: Arc<dyn ObjectStore>,
    what: String,
    run: String,
    _dir: Option<tempfile::TempDir>,
}

fn fixture(which: &str, run: &str) -> Fixture {
    match which {
        "s3" => {
            let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT for --stores s3");
            let bucket = std::env::var("S3_BUCKET").expect("S3_BUCKET for --stores s3");
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .with_virtual_hosted_style_request(false)
                .build()
                .expect("S3 settings from the environment");
            Fixture {
                store: Arc::new(store),
                what: format!("s3 {endpoint}/{bucket}"),
                run: run.to_owned(),
                _dir: None,
            }
        }
        "local" => {
            let dir = tempfile::tempdir().expect("temporary directory");
            // No fsync, for both sides (`LocalFileSystem`'s default).
            let fs = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
            Fixture {
                store: Arc::new(fs),
                what: "local filesystem (no fsync)".to_owned(),
                run: run.to_owned(),
                _dir: Some(dir),
            }
        }
        "memory" => Fixture {
            store: Arc::new(InMemory::new()),
            what: "memory".to_owned(),
            run: run.to_owned(),
            _dir: None,
        },
        other => panic!("unknown store {other:?}: local, s3 or memory"),
    }
}

/// One size on one store: the tier, the keys, and the raw side's paths and object bodies.
struct Case {
    store: Arc<dyn ObjectStore>,
    tier: ObjectTier,
    keys: Vec<Key>,
    value: Bytes,
    raw_paths: Vec<Path>,
    raw_bodies: Vec<Bytes>,
}

async fn case(f: &Fixture, size: usize) -> Case {
    let build = |side: &str| {
        ObjectTier::builder(f.store.clone())
            .prefix(format!("{}/{side}/{}", f.run, label(size)))
            .operation_timeout(Duration::from_secs(120))
            .build()
    };
    let tier = build("tier").await.expect("building the tier");
    // Only used for its paths: the raw side lives in the same layout under a sibling prefix.
    let layout = build("raw").await.expect("building the layout of the raw side");
    let keys: Vec<Key> =
        (0..IN_FLIGHT).map(|i| Key::new("bench", format!("k{i}")).expect("key")).collect();
    let value = Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>());
    let raw_paths = keys.iter().map(|k| layout.object_path(k)).collect();
    let raw_bodies = keys.iter().map(|k| Record::encode(k, &Entry::new(value.clone()))).collect();
    Case { store: f.store.clone(), tier, keys, value, raw_paths, raw_bodies }
}

impl Case {
    async fn raw(&self, op: Op) {
        match op {
            Op::Put => {
                let puts = self
                    .raw_paths
                    .iter()
                    .zip(&self.raw_bodies)
                    .map(|(p, b)| self.store.put(p, PutPayload::from(b.clone())));
                for r in futures::future::join_all(puts).await {
                    r.expect("raw put");
                }
            }
            Op::Get => {
                let gets = self.raw_paths.iter().map(|p| async {
                    self.store.get(p).await.expect("raw get").bytes().await.expect("raw body")
                });
                for (body, expected) in
                    futures::future::join_all(gets).await.iter().zip(&self.raw_bodies)
                {
                    assert_eq!(body.len(), expected.len());
                }
            }
        }
    }

    async fn tier(&self, op: Op) {
        match op {
            Op::Put => {
                let puts = self
                    .keys
                    .iter()
                    .map(|k| self.tier.put(k.clone(), Entry::new(self.value.clone())));
                for r in futures::future::join_all(puts).await {
                    assert!(r.expect("tier put").is_stored());
                }
            }
            Op::Get => {
                let gets = self.keys.iter().map(|k| self.tier.get(k));
                for got in futures::future::join_all(gets).await {
                    assert_eq!(got.expect("tier get").expect("hit").value.len(), self.value.len());
                }
            }
        }
    }

    /// Wall-clock seconds and process CPU seconds for `n` batches of one side.
    async fn timed(&self, tier: bool, op: Op, n: usize) -> (f64, f64) {
        // For profiling one side alone: `PROFILE_ONLY=tier` or `raw` skips the other.
        if let Ok(only) = std::env::var("PROFILE_ONLY")
            && only != if tier { "tier" } else { "raw" }
        {
            return (1.0, 0.0);
        }
        let cpu = cpu_seconds();
        let start = Instant::now();
        for _ in 0..n {
            if tier { self.tier(op).await } else { self.raw(op).await }
        }
        (start.elapsed().as_secs_f64(), cpu_seconds() - cpu)
    }
}

/// CPU time of this process (all threads, user and system), in seconds, at nanosecond
/// resolution: summed over the rounds it is the client's CPU cost per request, which the
/// server's share of the two cores and other load on the machine blur much less than
/// throughput.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[expect(clippy::print_stdout, reason = "the bench's report")]
fn report(line: &str) {
    println!("{line}");
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let run = format!("bench-object-{}", std::process::id());
    report(&format!(
        "object tier / raw object_store, {IN_FLIGHT} in flight, {} interleaved rounds, medians",
        args.rounds
    ));
    report(
        "store | op | size | requests/side/round | raw ops/s | tier ops/s | tier/raw median (min-max)",
    );
    for which in &args.stores {
        let f = fixture(which, &run);
        for &size in &args.sizes {
            let c = rt.block_on(case(&f, size));
            // Warm-up, which also creates every object (and directory) both sides read.
            rt.block_on(async {
                for op in [Op::Put, Op::Get] {
                    c.raw(op).await;
                    c.tier(op).await;
                }
            });
            for &op in &args.ops {
                let n = batches(size);
                let rounds = if size >= LARGE { args.large_rounds } else { args.rounds };
                let (mut raw, mut tier, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
                let (mut raw_cpu, mut tier_cpu) = (0.0, 0.0);
                for round in 0..rounds {
                    let (r, t) = rt.block_on(async {
                        if round % 2 == 0 {
                            let r = c.timed(false, op, n).await;
                            (r, c.timed(true, op, n).await)
                        } else {
                            let t = c.timed(true, op, n).await;
                            (c.timed(false, op, n).await, t)
                        }
                    });
                    let ((r, rc), (t, tc)) = (r, t);
                    raw_cpu += rc;
                    tier_cpu += tc;
                    let ops = (n * IN_FLIGHT) as f64;
                    raw.push(ops / r);
                    tier.push(ops / t);
                    ratio.push(r / t);
                    if args.verbose {
                        let first = if round % 2 == 0 { "raw" } else { "tier" };
                        report(&format!("  round {round}: {first} first, tier/raw {:.2}", r / t));
                    }
                }
                let (lo, hi) = (
                    ratio.iter().copied().fold(f64::INFINITY, f64::min),
                    ratio.iter().copied().fold(0.0, f64::max),
                );
                let total = (rounds * n * IN_FLIGHT) as f64;
                let mut line = String::new();
                let _ = write!(
                    line,
                    "{} | {} | {} | {} | {:.0} | {:.0} | {:.2} ({lo:.2}-{hi:.2}) | {:.0}, {:.0}",
                    f.what,
                    op.name(),
                    label(size),
                    n * IN_FLIGHT,
                    median(&mut raw),
                    median(&mut tier),
                    median(&mut ratio),
                    raw_cpu * 1e6 / total,
                    tier_cpu * 1e6 / total,
                );
                report(&line);
            }
            drop(c);
        }
        rt.block_on(async {
            let prefix = Path::from(f.run.as_str());
            let locations = futures::StreamExt::boxed(futures::TryStreamExt::map_ok(
                f.store.list(Some(&prefix)),
                |m| m.location,
            ));
            let _ = futures::TryStreamExt::try_collect::<Vec<_>>(f.store.delete_stream(locations))
                .await;
        });
    }
}
