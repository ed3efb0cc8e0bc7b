//! The Redis tier against raw `redis` calls on the same server, and a namespace clear by epoch
//! against `SCAN` + `UNLINK`.
//!
//! ```text
//! cargo xtask redis start && eval "$(cargo xtask redis env)"
//! cargo bench -p cache-remote-redis --bench redis
//! ```
//!
//! Throughput: 64 requests in flight on one connection (the tier's connection manager, shared
//! with the raw side, so both pipeline the same way), values of 1 KiB and 64 KiB, gets and puts,
//! in interleaved pairs of rounds; the raw side does `GET`/`SET` of the same encoded record bytes
//! under a key of the same length, so the difference is what the tier adds (the Lua script that
//! reads the epoch, record encoding and checking, stats). It prints the median of the per-round
//! ratios tier / raw.
//!
//! Clear: a namespace of `CLEAR_KEYS` entries on a server that also holds `OTHER_KEYS` keys of
//! another namespace; the time until `clear_namespace` returns (one `INCR`), the time its
//! background sweep takes (`flush`), and the time of a `SCAN MATCH` + `UNLINK` loop over the
//! same keys, which is what a clear without epochs would have to do before returning.

use std::{
    env,
    sync::Arc,
    time::{Duration, Instant},
};

use cache_core::{Entry, Key, Namespace, Record, Tier};
use cache_remote_redis::{RedisTier, redis};
use futures::StreamExt;

const IN_FLIGHT: usize = 64;
const ROUNDS: usize = 9;
const CLEAR_KEYS: u32 = 20_000;
const OTHER_KEYS: u32 = 100_000;

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
        let tier = RedisTier::builder(&url)
            .prefix(format!("bench-{}", std::process::id()))
            .build()
            .await
            .expect("building the tier");
        let tier = Arc::new(tier);
        println!(
            "| op | value | tier ops/s | raw ops/s | tier / raw (median of {ROUNDS} rounds) |"
        );
        println!("|---|---|---|---|---|");
        for (size, ops) in [(1024usize, 20_000u32), (64 * 1024, 4_000)] {
            for op in ["get", "put"] {
                let (t, r, ratio) = compare(&tier, op, size, ops).await;
                println!("| {op} | {} KiB | {t:.0} | {r:.0} | {ratio:.2} |", size / 1024);
            }
        }
        clear(&tier).await;
    });
}

/// Interleaved rounds of the tier and the raw calls; medians of throughput and of the ratio.
async fn compare(tier: &Arc<RedisTier>, op: &str, size: usize, ops: u32) -> (f64, f64, f64) {
    let ns = Namespace::new(&format!("bench-{op}-{size}")).expect("ns");
    let keys: Vec<Key> = (0..ops).map(|i| ns.key(i.to_le_bytes().to_vec()).expect("key")).collect();
    let value = vec![7u8; size];
    let records: Vec<Vec<u8>> =
        keys.iter().map(|k| Record::encode(k, &Entry::new(value.clone())).to_vec()).collect();
    let raw_keys: Vec<String> =
        keys.iter().map(|k| tier.redis_key(k, 1_000_000_000_000_000)).collect();
    // Fill both sides so gets hit.
    run_tier(tier, "put", &keys, &value).await;
    run_raw(tier, "put", &raw_keys, &records).await;
    let (mut t, mut r, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = if round % 2 == 0 {
            let a = run_tier(tier, op, &keys, &value).await;
            (a, run_raw(tier, op, &raw_keys, &records).await)
        } else {
            let b = run_raw(tier, op, &raw_keys, &records).await;
            (run_tier(tier, op, &keys, &value).await, b)
        };
        let (ta, tb) = (f64::from(ops) / a.as_secs_f64(), f64::from(ops) / b.as_secs_f64());
        t.push(ta);
        r.push(tb);
        ratios.push(ta / tb);
    }
    // Leave the server as we found it.
    tier.clear_namespace(&ns).await.expect("clear");
    tier.flush().await.expect("flush");
    let mut conn = tier.connection();
    for chunk in raw_keys.chunks(1000) {
        let _: u64 = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.expect("UNLINK");
    }
    let _: u64 =
        redis::cmd("DEL").arg(tier.epoch_key(&ns)).query_async(&mut conn).await.expect("DEL");
    (median(t), median(r), median(ratios))
}

async fn run_tier(tier: &Arc<RedisTier>, op: &str, keys: &[Key], value: &[u8]) -> Duration {
    let start = Instant::now();
    futures::stream::iter(keys)
        .map(|k| {
            let tier = Arc::clone(tier);
            let value = value.to_vec();
            async move {
                if op == "get" {
                    assert!(tier.get(k).await.expect("get").is_some(), "bench get missed");
                } else {
                    assert!(tier.put(k.clone(), Entry::new(value)).await.expect("put").is_stored());
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

async fn run_raw(
    tier: &Arc<RedisTier>,
    op: &str,
    keys: &[String],
    records: &[Vec<u8>],
) -> Duration {
    let start = Instant::now();
    futures::stream::iter(keys.iter().zip(records))
        .map(|(k, rec)| {
            let mut conn = tier.connection();
            async move {
                if op == "get" {
                    let got: Option<Vec<u8>> =
                        redis::cmd("GET").arg(k).query_async(&mut conn).await.expect("GET");
                    assert!(got.is_some(), "raw get missed");
                } else {
                    let () = redis::cmd("SET")
                        .arg(k)
                        .arg(&rec[..])
                        .query_async(&mut conn)
                        .await
                        .expect("SET");
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

#[expect(clippy::print_stdout, reason = "a bench reports on stdout")]
async fn clear(tier: &Arc<RedisTier>) {
    let fill = |name: &'static str, n: u32| {
        let tier = Arc::clone(tier);
        async move {
            let ns = Namespace::new(name).expect("ns");
            let items: Vec<(Key, Entry)> = (0..n)
                .map(|i| (ns.key(i.to_le_bytes().to_vec()).expect("key"), Entry::new("v")))
                .collect();
            for chunk in items.chunks(1000) {
                tier.put_many(chunk.to_vec()).await.expect("put_many");
            }
            ns
        }
    };
    let _other = fill("bench-other", OTHER_KEYS).await;
    let ns = fill("bench-clear", CLEAR_KEYS).await;
    let start = Instant::now();
    tier.clear_namespace(&ns).await.expect("clear");
    let cleared = start.elapsed();
    tier.flush().await.expect("flush");
    let swept = start.elapsed();

    // The same namespace again, cleared the other way: SCAN MATCH + UNLINK before returning.
    let ns = fill("bench-clear", CLEAR_KEYS).await;
    let mut conn = tier.connection();
    let epoch: String =
        redis::cmd("GET").arg(tier.epoch_key(&ns)).query_async(&mut conn).await.expect("epoch");
    let pattern = format!("{}:{}:{epoch}:*", tier.prefix(), ns.id().to_hex());
    let start = Instant::now();
    let mut cursor = 0u64;
    let mut unlinked = 0usize;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: u64 =
                redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await.expect("UNLINK");
            unlinked += keys.len();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let scanned = start.elapsed();
    assert_eq!(unlinked, CLEAR_KEYS as usize);
    println!();
    println!(
        "clear of {CLEAR_KEYS} entries among {OTHER_KEYS} others: epoch clear returns in {:.2} ms \
         (its background sweep done after {:.0} ms); SCAN MATCH + UNLINK takes {:.0} ms",
        cleared.as_secs_f64() * 1e3,
        swept.as_secs_f64() * 1e3,
        scanned.as_secs_f64() * 1e3
    );
    // Leave the server as we found it.
    let other = Namespace::new("bench-other").expect("ns");
    tier.clear_namespace(&other).await.expect("clear");
    tier.clear_namespace(&ns).await.expect("clear");
    tier.flush().await.expect("flush");
    let _: u64 = redis::cmd("DEL")
        .arg(tier.epoch_key(&other))
        .arg(tier.epoch_key(&ns))
        .query_async(&mut conn)
        .await
        .expect("DEL");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
