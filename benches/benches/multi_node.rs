//! Many nodes on one machine: the tiered stack with the shared Redis tier against the same
//! stack without it, and cross-node invalidation's latency and throughput with 1–3 receiving
//! nodes.
//!
//! ```text
//! cargo xtask redis start && eval "$(cargo xtask redis env)"
//! cargo xtask s3 start && eval "$(cargo xtask s3 env)"   # optional: the bucket on SeaweedFS
//! cargo bench -p cache-bench --bench multi_node
//! ```
//!
//! **Stacks.** A writer node puts `KEYS` values of `VALUE` bytes through its whole stack; a
//! second node, with an empty RAM tier of a tenth of the data, then reads every key twice in a
//! shuffled order, `IN_FLIGHT` gets at a time. Without Redis its misses go to the object tier
//! (S3 when `AWS_ENDPOINT` and `S3_BUCKET` are set, else a local directory); with Redis, to the
//! Redis tier first. It prints gets/s and the p50/p99 latency of each pass, in interleaved
//! rounds (the median round is shown).
//!
//! **Invalidation.** One publishing node and 1–3 receiving nodes, each an `Invalidator` on its
//! own connection with a local tier that timestamps every drop. Latency: `LATENCY_MESSAGES`
//! puts published one after another, each timed from just before `publish_put` to the drop in
//! every receiver. Throughput: `THROUGHPUT_MESSAGES` messages published 32 at a time, timed
//! until every receiver has applied all of them.

use std::{
    collections::HashMap,
    env,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cache_core::{
    Entry, Key, Namespace, PutOutcome, Result, StatsSnapshot, Tier, TierStats, Usage, async_trait,
};
use cache_l1::MemoryTier;
use cache_l3_object::{ObjectTier, ObjectTierBuilder, S3Config};
use cache_remote_redis::{Invalidator, RedisTier};
use cache_tiered::TieredCache;
use hdrhistogram::Histogram;
use tokio::sync::Notify;

const KEYS: usize = 4_000;
const VALUE: usize = 4 << 10;
const IN_FLIGHT: usize = 16;
const ROUNDS: usize = 3;
const LATENCY_MESSAGES: usize = 500;
const THROUGHPUT_MESSAGES: usize = 10_000;

#[expect(clippy::print_stdout, reason = "a bench reports on stdout")]
fn main() {
    let Ok(url) = env::var("TIERED_CACHE_REDIS_URL") else {
        println!(
            "TIERED_CACHE_REDIS_URL is not set: `cargo xtask redis start && eval \"$(cargo xtask redis env)\"` first"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let bucket = if env::var("AWS_ENDPOINT").is_ok() {
            "S3 (AWS_ENDPOINT)"
        } else {
            "a local directory"
        };
        println!("## Stacks: {KEYS} keys of {} KiB, the object tier on {bucket}\n", VALUE >> 10);
        println!("| stack | pass | gets/s | p50 µs | p99 µs |");
        println!("|---|---|---|---|---|");
        let mut rows: HashMap<(bool, usize), Vec<Pass>> = HashMap::new();
        for round in 0..ROUNDS {
            for with_redis in if round % 2 == 0 { [false, true] } else { [true, false] } {
                let passes = stacks(&url, with_redis, round).await;
                for (i, p) in passes.into_iter().enumerate() {
                    rows.entry((with_redis, i)).or_default().push(p);
                }
            }
        }
        for with_redis in [false, true] {
            for pass in 0..2 {
                let mut runs = rows.remove(&(with_redis, pass)).expect("measured");
                runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
                let p = &runs[runs.len() / 2];
                let stack = if with_redis { "RAM → Redis → object" } else { "RAM → object" };
                let pass = if pass == 0 { "cold" } else { "second" };
                println!("| {stack} | {pass} | {:.0} | {} | {} |", p.rate, p.p50, p.p99);
            }
        }

        println!("\n## Invalidation\n");
        println!("| receivers | latency p50 µs | p99 µs | max µs | messages/s | drops/s |");
        println!("|---|---|---|---|---|---|");
        for receivers in 1..=3 {
            let (hist, rate) = invalidation(&url, receivers).await;
            println!(
                "| {receivers} | {} | {} | {} | {rate:.0} | {:.0} |",
                hist.value_at_quantile(0.5),
                hist.value_at_quantile(0.99),
                hist.max(),
                rate * receivers as f64
            );
        }
    });
}

struct Pass {
    rate: f64,
    p50: u64,
    p99: u64,
}

async fn object_tier(prefix: &str, dir: &std::path::Path) -> ObjectTier {
    let builder = match (env::var("AWS_ENDPOINT"), env::var("S3_BUCKET")) {
        (Ok(endpoint), Ok(bucket)) => {
            let var = |n: &str| env::var(n).unwrap_or_default();
            let config = S3Config::new(bucket)
                .with_endpoint(endpoint)
                .with_region(env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()))
                .with_credentials(var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY").as_str())
                .with_allow_http(true)
                .with_path_style(true);
            ObjectTierBuilder::s3(config)
        }
        _ => ObjectTierBuilder::local(dir),
    };
    builder.prefix(prefix).build().await.expect("object tier")
}

async fn stack(
    url: &str,
    prefix: &str,
    dir: &std::path::Path,
    with_redis: bool,
    ram: u64,
) -> TieredCache {
    let mut b = TieredCache::builder().tier(MemoryTier::builder(ram).build());
    if with_redis {
        b = b.tier(RedisTier::builder(url).prefix(prefix).build().await.expect("redis tier"));
    }
    b.tier(object_tier(prefix, dir).await).build().expect("stack")
}

/// One round: a writer fills the shared tiers, a reader with an empty RAM tier reads twice.
async fn stacks(url: &str, with_redis: bool, round: usize) -> Vec<Pass> {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("bench-stacks-{}-{round}-{with_redis}", std::process::id());
    let ns = Namespace::new("bench").expect("ns");
    let keys: Arc<Vec<Key>> =
        Arc::new((0..KEYS).map(|i| ns.key(format!("k{i}")).expect("key")).collect());
    let total = (KEYS * VALUE) as u64;
    let writer = stack(url, &prefix, dir.path(), with_redis, total * 2).await;
    for k in keys.iter() {
        assert!(
            writer.put(k.clone(), Entry::new(vec![1u8; VALUE])).await.expect("put").is_stored()
        );
    }
    writer.flush().await.expect("flush");
    let reader = stack(url, &prefix, dir.path(), with_redis, total / 10).await;
    let mut order: Vec<usize> = (0..KEYS).collect();
    // A fixed shuffle (a multiplicative permutation), the same in every round.
    order.sort_by_key(|i| (i * 2_654_435_761) % KEYS);
    let order = Arc::new(order);
    let mut passes = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..IN_FLIGHT {
            let (reader, keys, order) = (reader.clone(), Arc::clone(&keys), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                for &i in order.iter().skip(w).step_by(IN_FLIGHT) {
                    let t = Instant::now();
                    assert!(reader.get(&keys[i]).await.expect("get").is_some(), "bench get missed");
                    h.record(t.elapsed().as_micros() as u64).expect("record");
                }
                h
            }));
        }
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for t in tasks {
            h.add(t.await.expect("task")).expect("add");
        }
        let rate = KEYS as f64 / started.elapsed().as_secs_f64();
        passes.push(Pass { rate, p50: h.value_at_quantile(0.5), p99: h.value_at_quantile(0.99) });
        reader.quiesce().await;
    }
    writer.clear_namespace(&ns).await.expect("clear");
    writer.flush().await.expect("flush");
    passes
}

/// A receiver's local tier: remembers when each key was dropped.
#[derive(Debug)]
struct Timed {
    dropped: Mutex<HashMap<Key, Instant>>,
    notify: Notify,
    stats: TierStats,
}

#[async_trait]
impl Tier for Timed {
    fn name(&self) -> &'static str {
        "timed"
    }
    async fn get(&self, _: &Key) -> Result<Option<Entry>> {
        Ok(None)
    }
    async fn put(&self, _: Key, _: Entry) -> Result<PutOutcome> {
        Ok(PutOutcome::Stored)
    }
    async fn remove(&self, key: &Key) -> Result<()> {
        self.dropped.lock().expect("lock").insert(key.clone(), Instant::now());
        self.notify.notify_waiters();
        Ok(())
    }
    async fn clear_namespace(&self, _: &Namespace) -> Result<()> {
        Ok(())
    }
    fn usage(&self) -> Usage {
        Usage::default()
    }
    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot(self.usage())
    }
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl Timed {
    async fn dropped_at(&self, key: &Key) -> Instant {
        loop {
            let notified = self.notify.notified();
            if let Some(at) = self.dropped.lock().expect("lock").get(key) {
                return *at;
            }
            if tokio::time::timeout(Duration::from_secs(10), notified).await.is_err() {
                panic!("a message was not delivered within 10 s");
            }
        }
    }
}

/// Latency histogram (µs, every receiver's drop of every message) and messages/s.
async fn invalidation(url: &str, receivers: usize) -> (Histogram<u64>, f64) {
    let prefix = format!("bench-inval-{}-{receivers}", std::process::id());
    let ns = Namespace::new("bench").expect("ns");
    let publisher = Invalidator::builder(url).prefix(&prefix).build().await.expect("publisher");
    let mut nodes = Vec::new();
    for _ in 0..receivers {
        let local = Arc::new(Timed {
            dropped: Mutex::default(),
            notify: Notify::new(),
            stats: TierStats::new("timed"),
        });
        let inv = Invalidator::builder(url)
            .prefix(&prefix)
            .local_tier(local.clone())
            .build()
            .await
            .expect("receiver");
        nodes.push((inv, local));
    }
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..LATENCY_MESSAGES {
        let key = ns.key(format!("latency-{i}")).expect("key");
        let version = publisher.versions().next();
        let sent = Instant::now();
        publisher.publish_put(&key, version).await.expect("publish");
        for (_, local) in &nodes {
            let at = local.dropped_at(&key).await;
            hist.record(at.duration_since(sent).as_micros() as u64).expect("record");
        }
    }
    let before: Vec<u64> = nodes.iter().map(|(inv, _)| inv.stats().applied).collect();
    let publisher = Arc::new(publisher);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (publisher, ns) = (Arc::clone(&publisher), ns.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..THROUGHPUT_MESSAGES).step_by(32) {
                let key = ns.key(format!("rate-{i}")).expect("key");
                let version = publisher.versions().next();
                publisher.publish_put(&key, version).await.expect("publish");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for ((inv, _), before) in nodes.iter().zip(before) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while inv.stats().applied < before + THROUGHPUT_MESSAGES as u64 {
            assert!(Instant::now() < deadline, "messages were lost: {:?}", inv.stats());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let rate = THROUGHPUT_MESSAGES as f64 / started.elapsed().as_secs_f64();
    (hist, rate)
}
