//! [`CoherentCache`] nodes in one process over one real `redis-server` (the one named by
//! `TIERED_CACHE_REDIS_URL`, as `cargo xtask ci` and `cargo xtask redis start` provide): each
//! with its own RAM tier above a shared Redis tier. The multi-process tests are in `tests/`.

use std::{
    env,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use cache_coherent::CoherentCache;
use cache_core::{Entry, Namespace};
use cache_l1::MemoryTier;
use cache_remote_redis::{Invalidator, RedisTier};
use cache_tiered::TieredCache;

const URL_ENV: &str = "TIERED_CACHE_REDIS_URL";

fn redis_url(test: &str) -> Option<String> {
    let ci = env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    match env::var(URL_ENV).ok().filter(|v| !v.is_empty()) {
        Some(url) => Some(url),
        None if ci => panic!("{test} needs a Redis server: {URL_ENV} is not set"),
        None => {
            #[expect(clippy::print_stderr, reason = "the one place a skip is reported")]
            {
                eprintln!("skipping {test}: {URL_ENV} is not set (`cargo xtask redis start`)");
            }
            None
        }
    }
}

fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("coherent-it/{test}/{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

async fn node(url: &str, prefix: &str, ns: &Namespace) -> CoherentCache {
    let shared = RedisTier::builder(url).prefix(prefix).build().await.unwrap();
    let cache = TieredCache::builder()
        .tier(MemoryTier::builder(16 << 20).build())
        .tier(shared)
        .build()
        .unwrap();
    CoherentCache::builder(cache, Invalidator::builder(url).prefix(prefix).watch(ns.clone()))
        .local_tiers(1)
        .build()
        .await
        .unwrap()
}

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A put on A is seen on B once B's local copy is dropped; a copy of the old value that lands
/// in B's RAM tier after the message (a racing promotion) is refused, never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_stale_copy_is_refused() {
    let Some(url) = redis_url("a_racing_stale_copy_is_refused") else { return };
    let prefix = unique_prefix("race");
    let ns = Namespace::new("answers").unwrap();
    let (a, b) = (node(&url, &prefix, &ns).await, node(&url, &prefix, &ns).await);
    let key = ns.key("q").unwrap();
    a.put_report(key.clone(), Entry::new("v1")).await.unwrap();
    // Heard first: the message's drop in B's RAM would otherwise cancel the promotion below.
    eventually("B to hear of v1", async || b.invalidator().stats().applied >= 1).await;
    assert_eq!(b.get(&key).await.unwrap().unwrap().value, "v1");
    b.cache().quiesce().await; // the promotion into B's RAM tier
    let old = b.cache().tiers()[0].get(&key).await.unwrap().expect("promoted into B's RAM");

    a.put_report(key.clone(), Entry::new("v2")).await.unwrap();
    eventually("B to hear of v2", async || b.invalidator().stats().applied >= 2).await;
    // What a promotion that read v1 before the message would leave behind.
    let _stored = b.cache().tiers()[0].put(key.clone(), old).await.unwrap();
    let seen = b.get(&key).await.unwrap();
    assert!(seen.is_none(), "B served {seen:?} after hearing of v2");
    assert_eq!(b.coherent_stats().refused, 1);
    assert_eq!(b.get(&key).await.unwrap().unwrap().value, "v2", "the shared tier has v2");
    assert_eq!(a.get(&key).await.unwrap().unwrap().value, "v2");
}

/// Remove and clear propagate; the writer's own message leaves its fresh write alone; a load
/// is versioned before the loader runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_clear_and_loads() {
    let Some(url) = redis_url("remove_clear_and_loads") else { return };
    let prefix = unique_prefix("remove");
    let ns = Namespace::new("memory").unwrap();
    let (a, b) = (node(&url, &prefix, &ns).await, node(&url, &prefix, &ns).await);
    let (k, c) = (ns.key("k").unwrap(), ns.key("c").unwrap());
    a.put_report(k.clone(), Entry::new("x")).await.unwrap();
    a.put_report(c.clone(), Entry::new("y")).await.unwrap();
    assert!(b.get(&k).await.unwrap().is_some() && b.get(&c).await.unwrap().is_some());
    b.cache().quiesce().await;

    b.remove(&k).await.unwrap();
    eventually("A to drop k", async || a.get(&k).await.unwrap().is_none()).await;
    a.clear_namespace(&ns).await.unwrap();
    eventually("B to drop c", async || b.cache().tiers()[0].get(&c).await.unwrap().is_none()).await;
    assert!(b.get(&c).await.unwrap().is_none());
    assert!(a.invalidator().stats().own >= 2, "A heard its own messages");

    let loaded = b.get_or_load(k.clone(), || async { Ok(Some(Entry::new("loaded"))) }).await;
    let loaded = loaded.unwrap().unwrap();
    assert!(loaded.meta.version.is_some(), "a load is versioned");
    assert_eq!(a.get(&k).await.unwrap().unwrap().value, "loaded", "through the shared tier");
    // A put that came after the load's version wins over the loaded value.
    a.put_report(k.clone(), Entry::new("newer")).await.unwrap();
    eventually("B to see the put", async || {
        b.get(&k).await.unwrap().is_some_and(|e| e.value == "newer")
    })
    .await;
}
