//! The Redis tier against a real `redis-server`: the whole cache-core conformance suite, the key
//! layout, expiry, namespace epochs and their sweep, corruption, and outages.
//!
//! The server is named by `TIERED_CACHE_REDIS_URL` (`cargo xtask redis start` and
//! `eval "$(cargo xtask redis env)"` set it; `cargo xtask ci` exports it to the tests). Without
//! it a test prints why and passes, so a plain `cargo test` works anywhere; with `CI` set it
//! fails instead, so CI never skips. Every tier gets a key prefix of its own, so tests share
//! the server without seeing each other. The outage tests start a private `redis-server`
//! (`TIERED_CACHE_REDIS_SERVER`, else `redis-server` on `PATH`) that they can pause and kill.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{
    Entry, ErrorKind, Key, ManualClock, Namespace, Record, Tier,
    testkit::{self, START, TestTier, TierSpec},
};
use cache_remote_redis::{RedisTier, redis};

mod common;

use crate::common::{PrivateServer, epoch_of, raw, redis_url, unique_prefix};

/// Builds the tier a conformance check asks for: its budget and its clock, a fresh prefix.
async fn conformance_tier(url: String, spec: TierSpec) -> TestTier {
    let tier = RedisTier::builder(url)
        .prefix(unique_prefix("conformance"))
        .budget(spec.capacity_bytes)
        .clock(spec.dyn_clock())
        .build()
        .await
        .expect("building the redis tier");
    TestTier::new(tier)
}

/// One `#[test]` per conformance check (the list of `cache_core::conformance_suite!`), each
/// skipping as [`redis_url`] says when no server is configured.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod conformance {
            use super::*;
            $(
                #[test]
                fn $check() {
                    let Some(url) = redis_url(stringify!($check)) else { return };
                    let factory = move |spec: TierSpec| conformance_tier(url.clone(), spec);
                    testkit::block_on(testkit::$check(&factory));
                }
            )*
        }
    };
}

conformance!(
    put_get_remove,
    overwrite,
    contains,
    empty_value,
    large_value,
    ttl_expiry,
    ttl_follows_the_clock,
    namespace_isolation,
    clear_namespace,
    capacity_respected,
    concurrent_readers_writers,
    oversized_rejected,
    close_then_use,
    batch_get_put,
    stats_counted,
    record_round_trip,
    compressed_records,
);

async fn tier(url: &str, test: &str) -> RedisTier {
    RedisTier::builder(url).prefix(unique_prefix(test)).build().await.expect("building the tier")
}

/// A node that compresses stores the compressed record on the server, and a node that does not
/// (same prefix) reads it back, and the other way round.
#[tokio::test]
async fn compressed_records_are_shared_between_nodes() {
    let Some(url) = redis_url("compressed_records_are_shared_between_nodes") else { return };
    let prefix = unique_prefix("compressed");
    let zstd = RedisTier::builder(&url)
        .prefix(prefix.clone())
        .compression(cache_core::Compression::zstd())
        .build()
        .await
        .unwrap();
    let plain = RedisTier::builder(&url).prefix(prefix).build().await.unwrap();
    let value: Bytes = "{\"content\":\"a cached completion\"} ".repeat(300).into();
    let (a, b) = (Key::new("ns", "from-zstd").unwrap(), Key::new("ns", "from-plain").unwrap());
    assert!(zstd.put(a.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    assert!(plain.put(b.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    let mut conn = raw(&url).await;
    let epoch = epoch_of(&mut conn, &zstd, a.namespace()).await;
    let stored: Vec<u8> =
        redis::cmd("GET").arg(zstd.redis_key(&a, epoch)).query_async(&mut conn).await.unwrap();
    assert!(stored.len() * 10 < value.len(), "{} bytes stored", stored.len());
    for tier in [&zstd, &plain] {
        for k in [&a, &b] {
            assert_eq!(tier.get(k).await.unwrap().unwrap().value, value);
        }
    }
}

/// Entries live where the documented layout says, hold the encoded record, and carry a Redis
/// expiry of their TTL plus the slack.
#[tokio::test]
async fn layout_record_and_expiry() {
    let Some(url) = redis_url("layout_record_and_expiry") else { return };
    let clock = ManualClock::new(START);
    let tier = RedisTier::builder(&url)
        .prefix(unique_prefix("layout"))
        .clock(clock.clone())
        .expiry_slack(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let mut conn = raw(&url).await;
    let key = Key::new("user text: not a redis key", "k").unwrap();
    let entry = Entry::new("v").with_ttl(&*clock, Duration::from_secs(60));
    assert!(tier.put(key.clone(), entry.clone()).await.unwrap().is_stored());
    let epoch = epoch_of(&mut conn, &tier, key.namespace()).await;
    let name = tier.redis_key(&key, epoch);
    assert!(name.starts_with(tier.prefix()) && !name.contains("user text"), "{name}");
    let stored: Vec<u8> = redis::cmd("GET").arg(&name).query_async(&mut conn).await.unwrap();
    assert_eq!(Bytes::from(stored), Record::encode(&key, &entry));
    let pttl: i64 = redis::cmd("PTTL").arg(&name).query_async(&mut conn).await.unwrap();
    assert!((60_000..=65_000).contains(&pttl), "PTTL {pttl} is not 60 s + 5 s of slack");
    let forever = Key::new("user text: not a redis key", "forever").unwrap();
    assert!(tier.put(forever.clone(), Entry::new("f")).await.unwrap().is_stored());
    let pttl: i64 = redis::cmd("PTTL")
        .arg(tier.redis_key(&forever, epoch))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pttl, -1, "an entry without a TTL has no Redis expiry");
}

/// A corrupt record, and a valid record of another key, are counted misses and are deleted.
#[tokio::test]
async fn corruption_is_a_counted_miss() {
    let Some(url) = redis_url("corruption_is_a_counted_miss") else { return };
    let tier = tier(&url, "corruption").await;
    let mut conn = raw(&url).await;
    let key = Key::new("corrupt", "k").unwrap();
    let other = Key::new("corrupt", "other").unwrap();
    assert!(tier.put(key.clone(), Entry::new("value")).await.unwrap().is_stored());
    let name = tier.redis_key(&key, epoch_of(&mut conn, &tier, key.namespace()).await);
    let mut bytes = Record::encode(&key, &Entry::new("value")).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let foreign = Record::encode(&other, &Entry::new("foreign")).to_vec();
    for (i, bad) in [bytes, foreign, b"not a record".to_vec()].into_iter().enumerate() {
        let () = redis::cmd("SET").arg(&name).arg(bad).query_async(&mut conn).await.unwrap();
        let before = tier.stats();
        assert!(tier.get(&key).await.unwrap().is_none(), "case {i}: a corrupt entry is a miss");
        let after = tier.stats();
        assert_eq!(after.corrupted - before.corrupted, 1, "case {i}: counted");
        assert_eq!(after.misses - before.misses, 1, "case {i}: a miss");
        let exists: u64 = redis::cmd("EXISTS").arg(&name).query_async(&mut conn).await.unwrap();
        assert_eq!(exists, 0, "case {i}: the corrupt entry is deleted");
    }
}

/// A clear on one node is seen by another at once (the epoch is in Redis), and the old
/// epoch's keys are unlinked by the sweep.
#[tokio::test]
async fn clear_is_shared_and_swept() {
    let Some(url) = redis_url("clear_is_shared_and_swept") else { return };
    let prefix = unique_prefix("clear-shared");
    let a = RedisTier::builder(&url).prefix(&prefix).build().await.unwrap();
    let b = RedisTier::builder(&url).prefix(&prefix).build().await.unwrap();
    let mut conn = raw(&url).await;
    let ns = Namespace::new("shared").unwrap();
    let keep = Namespace::new("kept").unwrap();
    let items: Vec<(Key, Entry)> = (0..500u32)
        .flat_map(|i| {
            [
                (ns.key(i.to_le_bytes().to_vec()).unwrap(), Entry::new(format!("v{i}"))),
                (keep.key(i.to_le_bytes().to_vec()).unwrap(), Entry::new(format!("k{i}"))),
            ]
        })
        .collect();
    let keys: Vec<Key> = items.iter().map(|(k, _)| k.clone()).collect();
    a.put_many(items).await.unwrap();
    assert!(b.get_many(&keys).await.unwrap().iter().all(Option::is_some), "b sees a's puts");
    let old = epoch_of(&mut conn, &a, &ns).await;
    b.clear_namespace(&ns).await.unwrap();
    let got = a.get_many(&keys).await.unwrap();
    for (key, got) in keys.iter().zip(&got) {
        assert_eq!(got.is_some(), key.namespace() == &keep, "{key:?} after b cleared {ns}");
    }
    assert_eq!(epoch_of(&mut conn, &a, &ns).await, old + 1);
    b.flush().await.unwrap();
    let pattern = format!("{prefix}:{}:{old}:*", ns.id().to_hex());
    let mut cursor = 0u64;
    let mut left = 0usize;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        left += found.len();
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(left, 0, "the sweep unlinks every key of the old epoch");
    // A lost epoch key (say evicted by an allkeys policy) hides the old entries, never
    // resurrects them.
    let k = ns.key("after").unwrap();
    assert!(a.put(k.clone(), Entry::new("new")).await.unwrap().is_stored());
    let () = redis::cmd("DEL").arg(a.epoch_key(&ns)).query_async(&mut conn).await.unwrap();
    assert!(a.get(&k).await.unwrap().is_none(), "no epoch, no entries");
    assert!(a.put(k.clone(), Entry::new("newer")).await.unwrap().is_stored());
    // The server's clock in microseconds has moved past the old epoch and its one increment.
    assert!(epoch_of(&mut conn, &a, &ns).await > old + 1, "restarted from the server clock");
    assert_eq!(b.get(&k).await.unwrap().unwrap().value, "newer");
}

/// Waits until `get` of `key` succeeds again (the connection manager reconnects in the
/// background), within `limit`.
async fn until_answering(tier: &RedisTier, key: &Key, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match tier.get(key).await {
            Ok(_) => return started.elapsed(),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(started.elapsed() < limit, "not answering again after {limit:?}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A paused server (SIGSTOP: connections stay open, nothing answers) makes calls fail with
/// `Unavailable` within the operation timeout; a killed one fails them at once; the tier
/// answers again when the server is back, without being rebuilt.
#[tokio::test]
async fn outage_is_unavailable_never_a_hang() {
    let Some(_) = redis_url("outage_is_unavailable_never_a_hang") else { return };
    let server = PrivateServer::start(None);
    let timeout = Duration::from_millis(300);
    let tier = RedisTier::builder(server.url())
        .operation_timeout(timeout)
        .connect_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let key = Key::new("outage", "k").unwrap();
    assert!(tier.put(key.clone(), Entry::new("v")).await.unwrap().is_stored());

    server.signal("-STOP");
    for op in ["get", "put", "clear"] {
        let started = Instant::now();
        let err = match op {
            "get" => tier.get(&key).await.map(|_| ()),
            "put" => tier.put(key.clone(), Entry::new("w")).await.map(|_| ()),
            _ => tier.clear_namespace(key.namespace()).await,
        }
        .expect_err("a paused server cannot answer");
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{op}: {err}");
        assert!(took < timeout + Duration::from_millis(700), "{op} took {took:?}");
    }
    assert!(tier.stats().errors_of(ErrorKind::Unavailable) >= 3);
    server.signal("-CONT");
    until_answering(&tier, &key, Duration::from_secs(10)).await;
    // The put made during the pause may or may not have reached the server (its answer was
    // lost); either value is fine, a missing one is not.
    let v = tier.get(&key).await.unwrap().expect("the value survives the pause").value;
    assert!(v == "v" || v == "w", "{v:?}");

    let port = server.kill();
    let started = Instant::now();
    let err = tier.get(&key).await.expect_err("a killed server cannot answer");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < timeout + Duration::from_millis(700), "{:?}", started.elapsed());
    let _server = PrivateServer::start(Some(port));
    until_answering(&tier, &key, Duration::from_secs(10)).await;
    assert!(
        tier.get(&key).await.unwrap().is_none(),
        "a restarted server without persistence is empty"
    );
    assert!(tier.put(key.clone(), Entry::new("x")).await.unwrap().is_stored());
    assert_eq!(tier.get(&key).await.unwrap().unwrap().value, "x");

    // Building against a port nobody listens on fails with `Unavailable`, quickly.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let err = RedisTier::builder(format!("redis://127.0.0.1:{closed}/"))
        .connect_timeout(Duration::from_millis(300))
        .operation_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

/// Two nodes on one prefix, one clearing while the other writes and reads through its fast
/// path (it remembers the epoch): a clear that returned hides every earlier write, and a write
/// after it is visible, however stale the writer's remembered epoch is.
#[tokio::test]
async fn clears_and_writes_across_nodes_stay_ordered() {
    let Some(url) = redis_url("clears_and_writes_across_nodes_stay_ordered") else { return };
    let prefix = unique_prefix("ordered");
    let a = RedisTier::builder(&url).prefix(&prefix).build().await.unwrap();
    let b = RedisTier::builder(&url).prefix(&prefix).build().await.unwrap();
    let ns = Namespace::new("ordered").unwrap();
    let k = ns.key("k").unwrap();
    for i in 0..100u32 {
        assert!(a.put(k.clone(), Entry::new(format!("v{i}"))).await.unwrap().is_stored());
        assert_eq!(a.get(&k).await.unwrap().unwrap().value, format!("v{i}"));
        b.clear_namespace(&ns).await.unwrap();
        assert!(
            a.get(&k).await.unwrap().is_none(),
            "round {i}: a write before the clear is visible"
        );
        b.clear_namespace(&ns).await.unwrap();
        let items = vec![(k.clone(), Entry::new(format!("w{i}")))];
        assert!(a.put_many(items).await.unwrap()[0].is_stored());
        assert_eq!(
            b.get(&k).await.unwrap().map(|e| e.value),
            Some(Bytes::from(format!("w{i}"))),
            "round {i}: a write after the clear is lost"
        );
    }
}
