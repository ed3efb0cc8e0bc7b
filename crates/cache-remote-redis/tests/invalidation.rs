//! Cross-node invalidation against a real `redis-server`: two invalidators on two separate
//! connections, each with its own local tier, as two nodes would have.
//!
//! The server is named by `TIERED_CACHE_REDIS_URL`, as for `tests/server.rs`: without it a test
//! prints why and passes, with `CI` set it fails. The reconnect test starts a private
//! `redis-server` (`TIERED_CACHE_REDIS_SERVER`, else `redis-server` on `PATH`) that it kills
//! and restarts.

use std::{
    collections::HashMap,
    env,
    net::TcpListener,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cache_core::{
    Entry, Key, Namespace, PutOutcome, Result, StatsSnapshot, Tier, TierStats, Usage, async_trait,
};
use cache_remote_redis::{Invalidator, redis};

mod common;

use crate::common::{PrivateServer, URL_ENV, redis_url, unique_prefix};

/// A node's local tier: a map (expiry and budget do not matter here).
#[derive(Debug)]
struct MapTier {
    map: Mutex<HashMap<Key, Entry>>,
    stats: TierStats,
}

impl MapTier {
    fn new() -> Arc<MapTier> {
        Arc::new(MapTier { map: Mutex::default(), stats: TierStats::new("map") })
    }

    fn value(&self, key: &Key) -> Option<String> {
        let map = self.map.lock().unwrap();
        map.get(key).map(|e| String::from_utf8_lossy(&e.value).into_owned())
    }

    fn insert(&self, key: &Key, value: &str) {
        self.map.lock().unwrap().insert(key.clone(), Entry::new(value.to_owned()));
    }
}

#[async_trait]
impl Tier for MapTier {
    fn name(&self) -> &'static str {
        "map"
    }
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        Ok(self.map.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        self.map.lock().unwrap().insert(key, entry);
        Ok(PutOutcome::Stored)
    }
    async fn remove(&self, key: &Key) -> Result<()> {
        self.map.lock().unwrap().remove(key);
        Ok(())
    }
    async fn clear_namespace(&self, ns: &Namespace) -> Result<()> {
        self.map.lock().unwrap().retain(|k, _| k.namespace() != ns);
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

async fn node(url: &str, prefix: &str, local: &Arc<MapTier>, watch: &Namespace) -> Invalidator {
    Invalidator::builder(url)
        .prefix(prefix)
        .local_tier(local.clone())
        .watch(watch.clone())
        .build()
        .await
        .expect("building an invalidator")
}

/// Polls `done` every millisecond until it holds, for at most 5 s; returns how long it took.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

/// A put, a remove and a clear on node A drop node B's local copies; A's own messages leave
/// A's fresh local write alone; other namespaces are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_remove_clear_propagate() {
    let Some(url) = redis_url("put_remove_clear_propagate") else { return };
    let prefix = unique_prefix("propagate");
    let ns = Namespace::new("shared").unwrap();
    let other = Namespace::new("other").unwrap();
    let (local_a, local_b) = (MapTier::new(), MapTier::new());
    let a = node(&url, &prefix, &local_a, &ns).await;
    let b = node(&url, &prefix, &local_b, &ns).await;
    assert_ne!(a.node_id(), b.node_id());

    let k = ns.key("k").unwrap();
    local_b.insert(&k, "old");
    local_a.insert(&k, "new");
    a.publish_put(&k, a.versions().next()).await.unwrap();
    eventually("b to drop k", || local_b.value(&k).is_none()).await;
    eventually("a to hear its own message", || a.stats().own == 1).await;
    assert_eq!(local_a.value(&k).as_deref(), Some("new"), "a's own message dropped its write");

    let r = ns.key("r").unwrap();
    local_a.insert(&r, "x");
    b.publish_remove(&r, b.versions().next()).await.unwrap();
    eventually("a to drop r", || local_a.value(&r).is_none()).await;

    let kept = other.key("k").unwrap();
    let (c1, c2) = (ns.key("c1").unwrap(), ns.key("c2").unwrap());
    for key in [&c1, &c2, &kept] {
        local_b.insert(key, "v");
    }
    a.publish_clear(&ns, a.versions().next()).await.unwrap();
    eventually("b to clear the namespace", || local_b.value(&c1).is_none()).await;
    assert!(local_b.value(&c2).is_none());
    assert_eq!(local_b.value(&kept).as_deref(), Some("v"), "another namespace was cleared");
    let sb = b.stats();
    assert_eq!((sb.received, sb.applied, sb.gaps, sb.malformed), (2, 2, 0, 0), "{sb:?}");
    assert_eq!(sb.resyncs, 1, "one resync, after subscribing: {sb:?}");
}

/// A skipped sequence number (a lost message) clears every watched namespace; garbage on the
/// channel is counted and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_gap_clears_conservatively() {
    let Some(url) = redis_url("sequence_gap_clears_conservatively") else { return };
    let prefix = unique_prefix("gap");
    let ns = Namespace::new("watched").unwrap();
    let local = MapTier::new();
    let b = node(&url, &prefix, &local, &ns).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let channel = format!("{prefix}:invalidate");
    // Messages of another node, written by hand in the documented format.
    let message = |seq: u64, key: &[u8]| {
        let mut m = b"TCI2".to_vec();
        m.extend_from_slice(&[7u8; 16]);
        m.extend_from_slice(&seq.to_le_bytes());
        m.extend_from_slice(&(seq << 12).to_le_bytes()); // the version
        m.push(b'R');
        m.extend_from_slice(&(ns.as_str().len() as u16).to_le_bytes());
        m.extend_from_slice(ns.as_str().as_bytes());
        m.extend_from_slice(key);
        m
    };
    let unrelated = ns.key("unrelated").unwrap();
    local.insert(&unrelated, "v");
    for (seq, key) in [(1u64, &b"a"[..]), (2, b"b")] {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(message(seq, key))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    eventually("two messages applied", || b.stats().applied == 2).await;
    assert_eq!(local.value(&unrelated).as_deref(), Some("v"), "no gap yet");
    let _: u64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(b"not a message".to_vec())
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: u64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(message(4, b"d"))
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("the gap to be noticed", || b.stats().gaps == 1).await;
    assert!(local.value(&unrelated).is_none(), "a gap clears the watched namespace");
    let s = b.stats();
    assert_eq!((s.malformed, s.resyncs), (1, 2), "{s:?}");
    let versions = b.versions();
    let removed = ns.key("a").unwrap();
    assert!(!versions.admits(&removed, Some(1 << 12)), "a remove fences its own version");
    assert!(
        !versions.admits(&unrelated, Some(5 << 12)),
        "after a gap, entries written before the resync are refused in every tier"
    );
    assert!(versions.admits(&unrelated, Some(versions.next())), "newer writes are served");
}

/// An idle, healthy connection stays subscribed: heartbeats pass and nothing is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_stays_subscribed() {
    let Some(url) = redis_url("idle_connection_stays_subscribed") else { return };
    let ns = Namespace::new("idle").unwrap();
    let local = MapTier::new();
    let b = Invalidator::builder(&url)
        .prefix(unique_prefix("idle"))
        .local_tier(local.clone())
        .watch(ns.clone())
        .heartbeat(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let k = ns.key("k").unwrap();
    local.insert(&k, "v");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.subscriptions(), 1, "resubscribed without a reason");
    assert_eq!(b.stats().resyncs, 1, "{:?}", b.stats());
    assert_eq!(local.value(&k).as_deref(), Some("v"), "cleared without a reason");
}

/// Messages published while a node was disconnected are lost; on resubscribing the node
/// clears its watched namespaces, so nothing stale survives the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_clears_conservatively() {
    let Some(_) = redis_url("reconnect_clears_conservatively") else { return };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}/");
    let server = PrivateServer::start(Some(port));
    let ns = Namespace::new("watched").unwrap();
    let local = MapTier::new();
    let b = Invalidator::builder(&url)
        .local_tier(local.clone())
        .watch(ns.clone())
        .heartbeat(Duration::from_millis(100))
        .operation_timeout(Duration::from_millis(300))
        .reconnect_delay(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    assert_eq!(b.subscriptions(), 1);
    let stale = ns.key("stale").unwrap();
    local.insert(&stale, "old");
    drop(server);
    // While the server is down, node A's message for `stale` cannot reach b.
    let _server = PrivateServer::start(Some(port));
    eventually("b to resubscribe", || b.subscriptions() >= 2).await;
    assert!(local.value(&stale).is_none(), "the entry survived a lost connection");
    assert!(b.stats().resyncs >= 2);
}

/// Invalidation latency: publish on A to the drop on B, 200 times one after another (printed;
/// `cargo nextest run -p cache-remote-redis --no-capture -E 'test(latency)'`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_latency() {
    let Some(url) = redis_url("invalidation_latency") else { return };
    let prefix = unique_prefix("latency");
    let ns = Namespace::new("lat").unwrap();
    let (local_a, local_b) = (MapTier::new(), MapTier::new());
    let a = node(&url, &prefix, &local_a, &ns).await;
    let _b = node(&url, &prefix, &local_b, &ns).await;
    let mut took = Vec::new();
    for i in 0..200u32 {
        let k = ns.key(i.to_le_bytes().to_vec()).unwrap();
        local_b.insert(&k, "v");
        let started = Instant::now();
        a.publish_put(&k, a.versions().next()).await.unwrap();
        // Spin with yields rather than sleeps: a timer tick (1 ms) would dominate the figure.
        while local_b.value(&k).is_some() {
            assert!(started.elapsed() < Duration::from_secs(5), "no drop within 5 s");
            tokio::task::yield_now().await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    let (p50, p99) = (took[took.len() / 2], took[took.len() * 99 / 100]);
    #[expect(clippy::print_stderr, reason = "the measurement is the point of this test")]
    {
        eprintln!(
            "invalidation latency (publish on A to drop on B, 200 runs): p50 {p50:?}, p99 {p99:?}"
        );
    }
    assert!(p50 < Duration::from_millis(100), "p50 {p50:?}");
}

/// The child side of [`two_processes`]: a node in its own process. Run only by that test
/// (`--ignored --exact`), with the prefix in `TC_INVALIDATION_CHILD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of `two_processes`, which runs it"]
async fn two_processes_child() {
    let prefix = env::var("TC_INVALIDATION_CHILD").expect("run by `two_processes`");
    let url = env::var(URL_ENV).expect("the parent passes the server");
    let ns = Namespace::new("two-processes").unwrap();
    let local = MapTier::new();
    let _b = node(&url, &prefix, &local, &ns).await;
    // After the build: its resync clears the watched namespace.
    let (k, c) = (ns.key("k").unwrap(), ns.key("c").unwrap());
    local.insert(&k, "old");
    local.insert(&c, "old");
    #[expect(clippy::print_stdout, reason = "the parent reads the child's progress")]
    {
        println!("child: ready");
        eventually("the put from the other process", || local.value(&k).is_none()).await;
        println!("child: dropped k");
        eventually("the clear from the other process", || local.value(&c).is_none()).await;
        println!("child: cleared");
    }
}

/// Two nodes in two processes: this one publishes a put and a clear, the child process (this
/// test binary again, running `two_processes_child`) drops its local copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes() {
    use std::io::{BufRead, BufReader};

    let Some(url) = redis_url("two_processes") else { return };
    let prefix = unique_prefix("two-processes");
    let mut child = Command::new(env::current_exe().expect("the test binary"))
        .args(["--exact", "two_processes_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("TC_INVALIDATION_CHILD", &prefix)
        .env(URL_ENV, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the child process");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for(&mut lines, "child: ready").await;
    let ns = Namespace::new("two-processes").unwrap();
    let local = MapTier::new();
    let a = node(&url, &prefix, &local, &ns).await;
    a.publish_put(&ns.key("k").unwrap(), a.versions().next()).await.unwrap();
    wait_for(&mut lines, "child: dropped k").await;
    a.publish_clear(&ns, a.versions().next()).await.unwrap();
    wait_for(&mut lines, "child: cleared").await;
    let status = child.wait().expect("waiting for the child");
    assert!(status.success(), "the child process failed: {status}");
}

/// Reads the child's lines until one contains `want`, for at most 20 s.
async fn wait_for(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) {
    let deadline = Duration::from_secs(20);
    let found = tokio::time::timeout(deadline, async {
        while let Some(line) = lines.recv().await {
            if line.contains(want) {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => {}
        Ok(false) => panic!("the child exited before `{want}`"),
        Err(_) => panic!("no `{want}` from the child within {deadline:?}"),
    }
}
