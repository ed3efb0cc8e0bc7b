//! Many nodes in many processes: each test starts two or three `cache-node` processes (this
//! crate's binary, `src/bin/cache-node.rs`), each with its own RAM and disk tiers over one
//! Redis server (tier and invalidation) and one S3 bucket, and drives them over stdin/stdout.
//!
//! The Redis server is the one named by `TIERED_CACHE_REDIS_URL` (which `cargo xtask ci`
//! exports), except in the outage test, which starts and kills a private `redis-server`
//! (`TIERED_CACHE_REDIS_SERVER` or `redis-server` on the PATH). Nothing waits for a fixed time:
//! every condition is polled with a generous deadline.

use std::{
    env,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::harness::{S3Env, on_ci, skip_unless_s3, unique_prefix};

const REDIS_URL_ENV: &str = "TIERED_CACHE_REDIS_URL";
const REDIS_SERVER_ENV: &str = "TIERED_CACHE_REDIS_SERVER";
/// How long one command or one polled condition may take on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// The shared server's URL, or `None` (after saying why) when there is none and `CI` is unset.
fn redis_url(test: &str) -> Option<String> {
    match env::var(REDIS_URL_ENV).ok().filter(|v| !v.is_empty()) {
        Some(url) => Some(url),
        None if on_ci() => panic!("{test} needs a Redis server, but {REDIS_URL_ENV} is not set"),
        None => {
            #[expect(clippy::print_stderr, reason = "the one place a skip is reported")]
            {
                eprintln!(
                    "skipping {test}: {REDIS_URL_ENV} is not set (`cargo xtask redis start` and \
                     `eval \"$(cargo xtask redis env)\"` run one)"
                );
            }
            None
        }
    }
}

/// One node process.
struct Node {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Node {
    fn start(name: &'static str, s3: &S3Env, redis: &str, prefix: &str) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cache-node"))
            .env("TC_NODE_REDIS", redis)
            .env("TC_NODE_PREFIX", prefix)
            .env("TC_NODE_NAMESPACE", "multi-node")
            .env("AWS_ENDPOINT", &s3.endpoint)
            .env("S3_BUCKET", &s3.bucket)
            .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key)
            .env("AWS_REGION", &s3.region)
            .env("AWS_ALLOW_HTTP", if s3.allow_http { "true" } else { "false" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting cache-node");
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node { name, child, stdin, lines };
        let ready = node.read();
        assert!(ready.starts_with("ready "), "node {name} did not start: {ready}");
        node
    }

    fn read(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => panic!("node {}: no answer within {DEADLINE:?} ({e})", self.name),
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").and_then(|()| self.stdin.flush()).unwrap_or_else(|e| {
            panic!("node {}: sending `{command}`: {e}", self.name);
        });
    }

    /// Sends a command and returns its answer; an `error` answer fails the test.
    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        let answer = self.read();
        assert!(!answer.starts_with("error"), "node {}: `{command}` -> {answer}", self.name);
        answer
    }

    fn put(&mut self, key: &str, value: &str) -> u64 {
        let answer = self.ask(&format!("put {key} {value}"));
        answer.strip_prefix("ok ").and_then(|v| v.parse().ok()).expect("ok VERSION")
    }

    /// The value this node serves for `key`, and its version.
    fn get(&mut self, key: &str) -> Option<(String, u64)> {
        parse_hit(&self.ask(&format!("get {key}")))
    }

    /// What this node's own RAM and disk tiers hold for `key`, unchecked.
    fn local(&mut self, key: &str) -> Option<(String, u64)> {
        parse_hit(&self.ask(&format!("local {key}")))
    }

    fn fence(&mut self, key: &str) -> u64 {
        let answer = self.ask(&format!("fence {key}"));
        answer.strip_prefix("fence ").and_then(|v| v.parse().ok()).expect("fence VERSION")
    }

    fn stat(&mut self, name: &str) -> u64 {
        let answer = self.ask("stats");
        answer
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in `{answer}`"))
    }

    /// Polls `condition` on this node until it holds.
    fn eventually(&mut self, what: &str, mut condition: impl FnMut(&mut Node) -> bool) {
        let started = Instant::now();
        while !condition(self) {
            assert!(
                started.elapsed() < DEADLINE,
                "node {}: {what} did not happen within {DEADLINE:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_hit(answer: &str) -> Option<(String, u64)> {
    if answer == "miss" {
        return None;
    }
    let mut words = answer.strip_prefix("hit ")?.split_whitespace();
    let value = words.next()?.to_owned();
    let version = words.next()?.parse().ok()?;
    Some((value, version))
}

fn prefix(test: &str) -> String {
    unique_prefix(test).to_string()
}

/// A put on A is seen on B once B's local copy is dropped; a remove and a namespace clear
/// propagate; A's own messages leave its fresh write alone.
#[test]
fn put_remove_and_clear_propagate_across_processes() {
    let s3 = skip_unless_s3!("put_remove_and_clear_propagate_across_processes");
    let Some(redis) = redis_url("put_remove_and_clear_propagate_across_processes") else {
        return;
    };
    let prefix = prefix("multi-node-propagate");
    let mut a = Node::start("a", &s3, &redis, &prefix);
    let mut b = Node::start("b", &s3, &redis, &prefix);

    let v1 = a.put("k", "v1");
    // Heard first: the message's drop of B's local copies would otherwise cancel the promotion
    // of the read below.
    b.eventually("hearing of v1", |b| b.fence("k") >= v1);
    assert_eq!(b.get("k"), Some(("v1".to_owned(), v1)), "B reads A's put from a shared tier");
    b.ask("quiesce");
    assert_eq!(b.local("k"), Some(("v1".to_owned(), v1)), "and keeps a local copy");

    let v2 = a.put("k", "v2");
    assert!(v2 > v1);
    b.eventually("dropping its copy of v1", |b| b.local("k").is_none_or(|(_, v)| v >= v2));
    assert_eq!(b.get("k"), Some(("v2".to_owned(), v2)));
    assert_eq!(a.local("k"), Some(("v2".to_owned(), v2)), "A's own message kept its write");

    b.ask("remove k");
    a.eventually("the remove", |a| a.get("k").is_none());
    assert!(a.local("k").is_none());

    let c = a.put("c", "x");
    b.eventually("hearing of c", |b| b.fence("c") >= c);
    assert_eq!(b.get("c"), Some(("x".to_owned(), c)));
    b.ask("quiesce");
    assert_eq!(b.local("c"), Some(("x".to_owned(), c)), "B holds a local copy for the clear");
    a.ask("clear");
    b.eventually("the clear", |b| b.local("c").is_none());
    assert!(b.get("c").is_none(), "a clear reaches the shared tiers too");
    let after = b.put("c", "y");
    assert_eq!(a.get("c"), Some(("y".to_owned(), after)), "writes after the clear are served");
}

/// Three nodes write one key at once (each put followed by a read that must not go back);
/// once the newest write is known to every node, no node serves anything but it.
#[test]
fn racing_writers_end_on_the_newest_value_or_a_miss() {
    let s3 = skip_unless_s3!("racing_writers_end_on_the_newest_value_or_a_miss");
    let Some(redis) = redis_url("racing_writers_end_on_the_newest_value_or_a_miss") else {
        return;
    };
    let prefix = prefix("multi-node-race");
    let mut nodes: Vec<Node> =
        ["a", "b", "c"].into_iter().map(|n| Node::start(n, &s3, &redis, &prefix)).collect();
    for round in 0..2 {
        for node in &mut nodes {
            let tag = format!("{}{round}", node.name);
            node.send(&format!("hammer race {tag} 15"));
        }
        let mut newest = (0, String::new());
        for node in &mut nodes {
            let done = node.read();
            let last = done.strip_prefix("done ").unwrap_or_else(|| {
                panic!("node {}: {done}", node.name);
            });
            let (version, value) = last.split_once(' ').expect("done VERSION VALUE");
            let version: u64 = version.parse().expect("a version");
            if version > newest.0 {
                newest = (version, value.to_owned());
            }
        }
        // The newest write is acknowledged everywhere once every node has fenced it.
        for node in &mut nodes {
            node.eventually("hearing of the newest write", |n| n.fence("race") >= newest.0);
        }
        for node in &mut nodes {
            for _ in 0..3 {
                if let Some((value, version)) = node.get("race") {
                    assert_eq!(
                        (value.as_str(), version),
                        (newest.1.as_str(), newest.0),
                        "node {} serves an older write after the newest was acknowledged",
                        node.name
                    );
                }
            }
        }
    }
    // The race leaves at most misses behind: a new write is served everywhere.
    let last = nodes[0].put("race", "final");
    for node in &mut nodes[1..] {
        node.eventually("the final write", |n| n.get("race") == Some(("final".to_owned(), last)));
    }
}

/// A private `redis-server`, killed on drop.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: Option<u16>) -> PrivateRedis {
        let binary = env::var(REDIS_SERVER_ENV).unwrap_or_else(|_| "redis-server".to_owned());
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
            .unwrap_or_else(|e| panic!("starting {binary} (set {REDIS_SERVER_ENV} or PATH): {e}"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < DEADLINE, "redis-server did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis is killed mid-run: gets keep serving (local tiers and the bucket), a write made
/// during the outage is not published; when the server is back, every node resyncs
/// conservatively and nothing stale survives.
#[test]
fn redis_killed_mid_run() {
    let s3 = skip_unless_s3!("redis_killed_mid_run");
    if redis_url("redis_killed_mid_run").is_none() {
        return; // no Redis on this machine; CI fails above instead
    }
    let server = PrivateRedis::start(None);
    let url = server.url();
    let prefix = prefix("multi-node-outage");
    let mut a = Node::start("a", &s3, &url, &prefix);
    let mut b = Node::start("b", &s3, &url, &prefix);
    let v1 = a.put("k", "v1");
    b.eventually("hearing of v1", |b| b.fence("k") >= v1);
    assert_eq!(b.get("k"), Some(("v1".to_owned(), v1)));
    b.ask("quiesce");
    let subscriptions = b.stat("subscriptions");

    let port = server.kill();
    assert_eq!(b.get("k"), Some(("v1".to_owned(), v1)), "B serves its local copy");
    let v2 = a.put("k", "v2"); // to the bucket only; the message cannot go out
    assert_eq!(a.get("k"), Some(("v2".to_owned(), v2)), "A serves its own write");
    a.eventually("noticing the lost message", |a| a.stat("unpublished") >= 1);

    let _server = PrivateRedis::start(Some(port));
    b.eventually("resubscribing", |b| b.stat("subscriptions") > subscriptions);
    a.eventually("announcing the lost namespace", |a| a.stat("republished") >= 1);
    b.eventually("hearing A's announcement", |b| b.local("k").is_none());
    // Nothing stale survives: B misses (it cannot tell v2 from an older write it missed) or
    // serves v2, never v1.
    for _ in 0..3 {
        let seen = b.get("k");
        assert!(seen.is_none() || seen == Some(("v2".to_owned(), v2)), "B served {seen:?}");
    }
    let v3 = a.put("k", "v3");
    b.eventually("the write after the outage", |b| b.get("k") == Some(("v3".to_owned(), v3)));
    assert_eq!(a.get("k"), Some(("v3".to_owned(), v3)));
}
