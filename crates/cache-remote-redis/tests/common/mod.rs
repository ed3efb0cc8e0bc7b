//! What the Redis tests share: the server they use, a key prefix per tier, raw connections to
//! inspect and alter what a tier stored, and private servers to pause and kill. Each test
//! binary uses part of it.
#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::{
    env,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use cache_core::Namespace;
use cache_remote_redis::{RedisTier, redis};

pub(crate) const URL_ENV: &str = "TIERED_CACHE_REDIS_URL";
pub(crate) const SERVER_ENV: &str = "TIERED_CACHE_REDIS_SERVER";

/// The server's URL, or `None` (after saying why) when it is not configured and `CI` is not set.
pub(crate) fn redis_url(test: &str) -> Option<String> {
    match env::var(URL_ENV).ok().filter(|v| !v.is_empty()) {
        Some(url) => Some(url),
        None if on_ci() => panic!(
            "the Redis tests need a server, but {URL_ENV} is not set. Run `cargo xtask redis \
             start` and `eval \"$(cargo xtask redis env)\"` before the tests, or run `cargo \
             xtask ci`, which does both"
        ),
        None => {
            #[expect(clippy::print_stderr, reason = "the one place a skip is reported")]
            {
                eprintln!(
                    "skipping {test}: {URL_ENV} is not set (no Redis server; `cargo xtask redis \
                     start` and `eval \"$(cargo xtask redis env)\"` run one; with CI set this fails)"
                );
            }
            None
        }
    }
}

pub(crate) fn on_ci() -> bool {
    env::var("CI").is_ok_and(|v| {
        !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no" | "off")
    })
}

/// A key prefix no other tier uses: the test, the process and a counter.
pub(crate) fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let test: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("it/{test}/{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A connection of its own to the server at `url`, to read and write what tiers stored.
pub(crate) async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("a raw connection")
}

/// The current epoch of `ns` on `tier`'s server (it has one once a put of `ns` was made).
pub(crate) async fn epoch_of(
    conn: &mut redis::aio::MultiplexedConnection,
    tier: &RedisTier,
    ns: &Namespace,
) -> u64 {
    let epoch: Option<u64> =
        redis::cmd("GET").arg(tier.epoch_key(ns)).query_async(conn).await.expect("GET epoch");
    epoch.expect("the namespace has an epoch after a put")
}

/// A private `redis-server` that a test may pause and kill; killed on drop.
pub(crate) struct PrivateServer {
    child: Child,
    port: u16,
}

impl PrivateServer {
    pub(crate) fn start(port: Option<u16>) -> PrivateServer {
        let binary = env::var(SERVER_ENV).unwrap_or_else(|_| "redis-server".to_owned());
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        });
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary} (set {SERVER_ENV} or PATH): {e}"));
        let server = PrivateServer { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed");
    }

    pub(crate) fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
