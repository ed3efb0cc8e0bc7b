//! [`Invalidator`]: cross-node invalidation of local tiers over Redis pub/sub.
//!
//! Each node runs one. After a node writes, removes or clears a namespace (in its own tiers and
//! the shared ones), it calls [`Invalidator::publish_put`], [`publish_remove`] or
//! [`publish_clear`]; every other node's invalidator receives the message and drops that key,
//! or clears that namespace, in the node's local tiers (RAM, disk), so their next read goes to
//! the shared tier and finds the new value.
//!
//! [`publish_remove`]: Invalidator::publish_remove
//! [`publish_clear`]: Invalidator::publish_clear
//!
//! # Messages
//!
//! One channel, `{prefix}:invalidate`. A message is binary: `b"TCI2"`, the publisher's 16-byte
//! node id, its sequence number (`u64`, little-endian, from 1, one per message), the version of
//! the operation (`u64` LE, see [`Versions`]), an operation byte (`P` put, `R` remove, `C`
//! clear), the namespace's length (`u16` LE), the namespace, and for `P` and `R` the key bytes
//! (the rest). A node ignores its own messages, so they never drop its own fresh write.
//!
//! # Versions
//!
//! Every put, remove and clear carries a version ([`Versions::next`]: the writer's clock plus a
//! counter and a node tag, moved past every version the node has seen). Publishing fences the
//! key (or the namespace) on the publishing node; receiving fences it on the receiving node
//! *before* the local copies are dropped. A reader that serves an entry only if
//! [`Versions::admits`] its version never serves a value older than a write it has heard of,
//! even if a promotion, a demotion or a fill from a shared tier that read the old value before
//! the message puts it back into a local tier afterwards; `cache-coherent` wraps a tiered cache
//! so that every read is checked. Hand the invalidator a tiered cache's local tiers as
//! `TieredCache::front(n)` rather than tier by tier: its drops are then ordered with the cache's
//! own promotions and demotions, so a copy that read the old value just before a drop is not
//! written back after it (the fence would refuse it, but it would hold room until then).
//!
//! # Lost messages
//!
//! Redis pub/sub delivers at most once: a message published while a node was disconnected is
//! gone. So the invalidator clears every *watched* namespace in its local tiers
//! - after every subscription (the first one too, since a restarted node may hold disk entries
//!   from before), once the subscription is confirmed, so nothing published before it can be
//!   missed and nothing after it is;
//! - when a publisher's sequence numbers skip (a message of it was lost);
//! - when the connection breaks or a heartbeat `PING` gets no answer in time, and then on
//!   resubscribing.
//!
//! The watched namespaces are the ones given to [`InvalidatorBuilder::watch`] or
//! [`Invalidator::watch`], plus every namespace this node publishes about or hears about. A
//! namespace the node caches locally but never registers is not cleared on a gap: register every
//! namespace the node caches.
//!
//! # Latency
//!
//! From `publish_put` on one node to the drop in another node's local tier, on one loopback
//! server on the 2-core development VM: p50 0.16–0.18 ms, p99 3–5 ms over 200 messages, in three
//! runs while other builds ran (`cargo nextest run -p cache-remote-redis --no-capture -E
//! 'test(latency)'`). The tests also run two nodes in two processes (`two_processes`).
//!
//! After a resync other than the first (a reconnect or a gap), each watched namespace's floor is
//! raised to the node's clock: an entry written before it, found in any tier, is refused, since a
//! lost message may have been about it.
//!
//! # What it does not guarantee
//!
//! The invalidator drops copies and keeps fences; it does not check reads. Code that reads the
//! local tiers without [`Versions::admits`] can serve an old value that a racing fill put back
//! after the drop (until it expires or is overwritten). While a node is disconnected it serves
//! its local copies, however old; coherence resumes at the resync.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    hash::{BuildHasher, Hasher},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use cache_core::{Clock, Error, ErrorKind, Key, Namespace, Result, Tier};
use futures::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::{sync::watch, task::JoinHandle};

pub use crate::version::Versions;
use crate::{builder::connect, error::RedisError, layout::Layout, tier::TIER};

const MAGIC: &[u8; 4] = b"TCI2";
const HEADER: usize = 4 + 16 + 8 + 8 + 1 + 2;

/// What a message asks the other nodes to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Put(Key),
    Remove(Key),
    Clear(Namespace),
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    node: [u8; 16],
    seq: u64,
    /// The version of the put, remove or clear (see [`Versions`]).
    version: u64,
    op: Op,
}

impl Message {
    fn encode(&self) -> Vec<u8> {
        let (code, ns, key): (u8, &Namespace, &[u8]) = match &self.op {
            Op::Put(k) => (b'P', k.namespace(), k.key_bytes()),
            Op::Remove(k) => (b'R', k.namespace(), k.key_bytes()),
            Op::Clear(ns) => (b'C', ns, &[]),
        };
        let ns = ns.as_str().as_bytes();
        let mut out = Vec::with_capacity(HEADER + ns.len() + key.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.node);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(code);
        out.extend_from_slice(&(ns.len() as u16).to_le_bytes());
        out.extend_from_slice(ns);
        out.extend_from_slice(key);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Message> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return None;
        }
        let node: [u8; 16] = bytes[4..20].try_into().ok()?;
        let seq = u64::from_le_bytes(bytes[20..28].try_into().ok()?);
        let version = u64::from_le_bytes(bytes[28..36].try_into().ok()?);
        let code = bytes[36];
        let ns_len = usize::from(u16::from_le_bytes(bytes[37..39].try_into().ok()?));
        let ns = bytes.get(HEADER..HEADER + ns_len)?;
        let ns = Namespace::from_bytes(ns).ok()?;
        let key = &bytes[HEADER + ns_len..];
        let op = match code {
            b'P' => Op::Put(ns.key(Bytes::copy_from_slice(key)).ok()?),
            b'R' => Op::Remove(ns.key(Bytes::copy_from_slice(key)).ok()?),
            b'C' if key.is_empty() => Op::Clear(ns),
            _ => return None,
        };
        Some(Message { node, seq, version, op })
    }
}

/// Counters of an [`Invalidator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InvalidatorStats {
    /// Messages this node published.
    pub published: u64,
    /// Messages received from other nodes.
    pub received: u64,
    /// Own messages received and ignored.
    pub own: u64,
    /// Messages applied to the local tiers (a key dropped or a namespace cleared in each).
    pub applied: u64,
    /// Sequence gaps detected (a publisher's message was lost), each counted once the clear
    /// of the watched namespaces it causes is done.
    pub gaps: u64,
    /// Conservative clears of every watched namespace (after a subscription, a gap or a lost
    /// connection).
    pub resyncs: u64,
    /// Messages that could not be decoded.
    pub malformed: u64,
    /// Failed drops or clears in local tiers.
    pub local_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    own: AtomicU64,
    applied: AtomicU64,
    gaps: AtomicU64,
    resyncs: AtomicU64,
    malformed: AtomicU64,
    local_errors: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> InvalidatorStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        InvalidatorStats {
            published: g(&self.published),
            received: g(&self.received),
            own: g(&self.own),
            applied: g(&self.applied),
            gaps: g(&self.gaps),
            resyncs: g(&self.resyncs),
            malformed: g(&self.malformed),
            local_errors: g(&self.local_errors),
        }
    }
}

/// Builds an [`Invalidator`]. Start from [`Invalidator::builder`].
#[must_use]
pub struct InvalidatorBuilder {
    url: String,
    prefix: String,
    local: Vec<Arc<dyn Tier>>,
    watched: Vec<Namespace>,
    operation_timeout: Duration,
    heartbeat: Duration,
    reconnect_delay: Duration,
    clock: Arc<dyn Clock>,
    fences: usize,
}

impl fmt::Debug for InvalidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidatorBuilder")
            .field("url", &crate::builder::redacted(&self.url))
            .field("prefix", &self.prefix)
            .field("local", &self.local.iter().map(|t| t.name()).collect::<Vec<_>>())
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl InvalidatorBuilder {
    /// The prefix of the channel (`{prefix}:invalidate`); nodes that share a cache use the same
    /// one (by default `tc`, as the Redis tier).
    pub fn prefix(mut self, prefix: impl Into<String>) -> InvalidatorBuilder {
        self.prefix = prefix.into();
        self
    }

    /// A local tier of this node, whose copies other nodes' messages drop.
    pub fn local_tier(mut self, tier: Arc<dyn Tier>) -> InvalidatorBuilder {
        self.local.push(tier);
        self
    }

    /// A namespace this node caches locally, cleared conservatively when messages may have
    /// been lost.
    pub fn watch(mut self, namespace: Namespace) -> InvalidatorBuilder {
        self.watched.push(namespace);
        self
    }

    /// The timeout of a publish and of the heartbeat `PING` (1 s by default).
    pub fn operation_timeout(mut self, timeout: Duration) -> InvalidatorBuilder {
        self.operation_timeout = timeout;
        self
    }

    /// How often the subscription's connection is checked with a `PING` (1 s by default): a
    /// server that stopped answering is noticed within this plus the operation timeout.
    pub fn heartbeat(mut self, every: Duration) -> InvalidatorBuilder {
        self.heartbeat = every;
        self
    }

    /// The wait between attempts to resubscribe (100 ms by default, doubling up to 2 s).
    pub fn reconnect_delay(mut self, delay: Duration) -> InvalidatorBuilder {
        self.reconnect_delay = delay;
        self
    }

    /// The clock versions are stamped from ([`SystemClock`](cache_core::SystemClock) by
    /// default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> InvalidatorBuilder {
        self.clock = clock;
        self
    }

    /// How many per-key fences the node keeps (2^18 by default, about 100 bytes each); see
    /// [`Versions`] for what happens beyond.
    pub fn fences(mut self, keys: usize) -> InvalidatorBuilder {
        self.fences = keys;
        self
    }

    /// Connects the publishing connection, starts the subscriber task and waits until the
    /// first subscription is confirmed and the watched namespaces are cleared.
    ///
    /// # Errors
    /// `Invalid` for a malformed URL or prefix; `Unavailable` if the server cannot be reached.
    pub async fn build(self) -> Result<Invalidator> {
        let layout = Layout::new(&self.prefix)?;
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            Error::invalid(TIER, format!("bad redis url {}", crate::builder::redacted(&self.url)))
                .with_source(e)
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.operation_timeout))
            .set_response_timeout(Some(self.operation_timeout))
            .set_number_of_retries(usize::MAX)
            .set_max_delay(Duration::from_secs(2));
        let conn = connect(
            client.clone(),
            &self.url,
            config,
            self.operation_timeout,
            self.operation_timeout,
        )
        .await?;
        let node = node_id();
        let tag = u64::from(u16::from_le_bytes([node[0], node[1]]));
        let inner = Arc::new(Inner {
            node,
            versions: Arc::new(Versions::new(self.clock, tag, self.fences)),
            subscribed_before: AtomicBool::new(false),
            channel: format!("{}:invalidate", layout.prefix()),
            conn,
            seq: AtomicU64::new(0),
            local: self.local,
            watched: Mutex::new(self.watched.into_iter().collect()),
            last_seq: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            operation_timeout: self.operation_timeout,
        });
        let (subscribed_tx, mut subscribed) = watch::channel(0u64);
        let task = tokio::spawn(subscriber(
            Arc::clone(&inner),
            client,
            self.heartbeat,
            self.reconnect_delay,
            subscribed_tx,
        ));
        let first =
            tokio::time::timeout(self.operation_timeout * 3, subscribed.wait_for(|n| *n > 0));
        let subscribed_once = matches!(first.await, Ok(Ok(_)));
        if !subscribed_once {
            task.abort();
            return Err(Error::new(
                ErrorKind::Unavailable,
                TIER,
                "could not subscribe to the invalidation channel",
            ));
        }
        Ok(Invalidator { inner, task: Mutex::new(Some(task)), subscribed })
    }
}

struct Inner {
    node: [u8; 16],
    versions: Arc<Versions>,
    /// Whether a subscription was confirmed before (a resync after a later one raises floors).
    subscribed_before: AtomicBool,
    channel: String,
    conn: ConnectionManager,
    seq: AtomicU64,
    local: Vec<Arc<dyn Tier>>,
    watched: Mutex<HashSet<Namespace>>,
    /// The last sequence number seen from each other node.
    last_seq: Mutex<HashMap<[u8; 16], u64>>,
    counters: Counters,
    operation_timeout: Duration,
}

/// Cross-node invalidation of a node's local tiers over Redis pub/sub; see the
/// [module documentation](self).
pub struct Invalidator {
    inner: Arc<Inner>,
    task: Mutex<Option<JoinHandle<()>>>,
    subscribed: watch::Receiver<u64>,
}

impl fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidator")
            .field("node", &hex(&self.inner.node))
            .field("channel", &self.inner.channel)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Invalidator {
    /// A builder for an invalidator on the server at `url`.
    pub fn builder(url: impl Into<String>) -> InvalidatorBuilder {
        InvalidatorBuilder {
            url: url.into(),
            prefix: "tc".to_owned(),
            local: Vec::new(),
            watched: Vec::new(),
            operation_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            reconnect_delay: Duration::from_millis(100),
            clock: cache_core::system_clock(),
            fences: 1 << 18,
        }
    }

    /// This node's id (random per invalidator), as 32 hex digits.
    pub fn node_id(&self) -> String {
        hex(&self.inner.node)
    }

    /// Adds a namespace to the ones cleared conservatively.
    pub fn watch(&self, namespace: &Namespace) {
        self.inner.watched.lock().insert(namespace.clone());
    }

    /// This node's versions and fences: stamp writes with [`Versions::next`], and check what
    /// a read returns with [`Versions::admits`] before serving it.
    pub fn versions(&self) -> &Arc<Versions> {
        &self.inner.versions
    }

    /// Tells the other nodes that `key` was written at `version` (from
    /// [`Versions::next`]): they fence the key at that version and drop their local copies.
    /// The key is fenced on this node too.
    ///
    /// # Errors
    /// `Unavailable` if the message could not be published (the other nodes then keep their
    /// copies until they resync or the entries expire: retry, or clear the namespace).
    pub async fn publish_put(&self, key: &Key, version: u64) -> Result<()> {
        self.inner.versions.fence_put(key, version);
        self.publish(Op::Put(key.clone()), version).await
    }

    /// Tells the other nodes that `key` was removed at `version`.
    ///
    /// # Errors
    /// As for [`Invalidator::publish_put`].
    pub async fn publish_remove(&self, key: &Key, version: u64) -> Result<()> {
        self.inner.versions.fence_remove(key, version);
        self.publish(Op::Remove(key.clone()), version).await
    }

    /// Tells the other nodes that `namespace` was cleared at `version`.
    ///
    /// # Errors
    /// As for [`Invalidator::publish_put`].
    pub async fn publish_clear(&self, namespace: &Namespace, version: u64) -> Result<()> {
        self.inner.versions.fence_clear(namespace, version);
        self.publish(Op::Clear(namespace.clone()), version).await
    }

    /// Tells the other nodes that messages of this node about `namespace` could not be
    /// published: they clear it as at this node's current clock (drop their local copies and
    /// refuse entries written before). Unlike [`Invalidator::publish_clear`], this node's own
    /// fences stay as they are, so its own writes of the namespace are still served here.
    ///
    /// # Errors
    /// As for [`Invalidator::publish_put`].
    pub async fn publish_lost(&self, namespace: &Namespace) -> Result<()> {
        let version = self.inner.versions.next();
        self.publish(Op::Clear(namespace.clone()), version).await
    }

    async fn publish(&self, op: Op, version: u64) -> Result<()> {
        let inner = &self.inner;
        let ns = match &op {
            Op::Put(k) | Op::Remove(k) => k.namespace().clone(),
            Op::Clear(ns) => ns.clone(),
        };
        inner.watched.lock().insert(ns);
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let payload = Message { node: inner.node, seq, version, op }.encode();
        let mut conn = inner.conn.clone();
        let publish = redis::cmd("PUBLISH").arg(&inner.channel).arg(payload).to_owned();
        let sent: std::result::Result<u64, RedisError> =
            match tokio::time::timeout(inner.operation_timeout, publish.query_async(&mut conn))
                .await
            {
                Err(_) => {
                    Err(RedisError::Timeout { op: "publish", timeout: inner.operation_timeout })
                }
                Ok(r) => r.map_err(|e| RedisError::client("publish", e)),
            };
        sent?;
        Counters::add(&inner.counters.published);
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> InvalidatorStats {
        self.inner.counters.snapshot()
    }

    /// How many subscriptions have been confirmed so far (1 after `build`; each reconnect adds
    /// one).
    pub fn subscriptions(&self) -> u64 {
        *self.subscribed.borrow()
    }

    /// Stops the subscriber task.
    pub fn close(&self) {
        if let Some(task) = self.inner_task() {
            task.abort();
        }
    }

    fn inner_task(&self) -> Option<JoinHandle<()>> {
        self.task.lock().take()
    }
}

impl Drop for Invalidator {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    /// Handles one received message.
    async fn receive(&self, payload: &[u8]) {
        let Some(msg) = Message::decode(payload) else {
            Counters::add(&self.counters.malformed);
            return;
        };
        if msg.node == self.node {
            Counters::add(&self.counters.own);
            return;
        }
        Counters::add(&self.counters.received);
        let gap = {
            let mut last = self.last_seq.lock();
            let previous = last.insert(msg.node, msg.seq);
            // A publisher seen for the first time sets its baseline: what it sent before this
            // node subscribed is covered by the clear after subscribing.
            previous.is_some_and(|p| msg.seq != p + 1)
        };
        if gap {
            tracing::warn!(node = %hex(&msg.node), seq = msg.seq, "invalidation messages were lost; clearing watched namespaces");
            self.resync().await;
            // Counted once the clear is done, so a reader that sees the count sees its effect.
            Counters::add(&self.counters.gaps);
        }
        let ns = match &msg.op {
            Op::Put(k) | Op::Remove(k) => k.namespace().clone(),
            Op::Clear(ns) => ns.clone(),
        };
        self.watched.lock().insert(ns);
        // The fence first: a copy that lands in a local tier after the drop below (a promotion
        // or fill that read the old value before) is refused by readers that check it.
        match &msg.op {
            Op::Put(k) => self.versions.fence_put(k, msg.version),
            Op::Remove(k) => self.versions.fence_remove(k, msg.version),
            Op::Clear(ns) => self.versions.fence_clear(ns, msg.version),
        }
        for tier in &self.local {
            let done = match &msg.op {
                Op::Put(k) | Op::Remove(k) => tier.remove(k).await,
                Op::Clear(ns) => tier.clear_namespace(ns).await,
            };
            if let Err(e) = done {
                Counters::add(&self.counters.local_errors);
                tracing::warn!(tier = tier.name(), error = %e, "dropping an invalidated entry failed");
            }
        }
        Counters::add(&self.counters.applied);
    }

    /// Clears every watched namespace in every local tier. After the first subscription, also
    /// raises each one's floor to this node's clock: a message lost meanwhile may have been
    /// about any entry written until now, on any tier.
    async fn resync(&self) {
        let namespaces: Vec<Namespace> = self.watched.lock().iter().cloned().collect();
        if self.subscribed_before.load(Ordering::Acquire) {
            let floor = self.versions.next();
            for ns in &namespaces {
                self.versions.raise_floor(ns.id(), floor);
            }
        }
        for ns in &namespaces {
            for tier in &self.local {
                if let Err(e) = tier.clear_namespace(ns).await {
                    Counters::add(&self.counters.local_errors);
                    tracing::warn!(tier = tier.name(), error = %e, "a conservative clear failed");
                }
            }
        }
        Counters::add(&self.counters.resyncs);
    }
}

/// The subscriber loop: subscribe, resync, apply messages, heartbeat; on any failure, start
/// over after a backoff.
async fn subscriber(
    inner: Arc<Inner>,
    client: redis::Client,
    heartbeat: Duration,
    reconnect_delay: Duration,
    subscribed: watch::Sender<u64>,
) {
    let mut delay = reconnect_delay;
    loop {
        match subscribe_once(&inner, &client, heartbeat, &subscribed).await {
            Ok(()) => delay = reconnect_delay,
            Err(e) => tracing::debug!(error = %e, "invalidation subscription failed"),
        }
        // Messages may be lost from here until the next subscription: forget the sequence
        // numbers (the resync after resubscribing covers the gap).
        inner.last_seq.lock().clear();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// One subscription, until the connection breaks or a heartbeat fails. `Ok` if it was
/// subscribed at all.
async fn subscribe_once(
    inner: &Inner,
    client: &redis::Client,
    heartbeat: Duration,
    subscribed: &watch::Sender<u64>,
) -> std::result::Result<(), RedisError> {
    let timeout = inner.operation_timeout;
    let pubsub = match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
        Err(_) => return Err(RedisError::Timeout { op: "subscribe", timeout }),
        Ok(r) => r.map_err(|e| RedisError::client("subscribe", e))?,
    };
    let (mut sink, mut stream) = pubsub.split();
    match tokio::time::timeout(timeout, sink.subscribe(&inner.channel)).await {
        Err(_) => return Err(RedisError::Timeout { op: "subscribe", timeout }),
        Ok(r) => r.map_err(|e| RedisError::client("subscribe", e))?,
    }
    inner.resync().await;
    inner.subscribed_before.store(true, Ordering::Release);
    subscribed.send_modify(|n| *n += 1);
    let mut ticks = tokio::time::interval(heartbeat);
    ticks.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => inner.receive(msg.get_payload_bytes()).await,
                None => return Ok(()), // the connection closed
            },
            _ = ticks.tick() => {
                // Any answer will do: a subscribed RESP2 connection answers `PING` with an array.
                let ping = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                if !matches!(ping, Ok(Ok(_))) {
                    tracing::warn!("the invalidation channel's server stopped answering; resubscribing");
                    return Ok(());
                }
            }
        }
    }
}

/// A random node id: the standard library's randomly seeded hasher, twice.
fn node_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, half) in id.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i as u64);
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let key = Key::new("ns: any text", &b"\x00key"[..]).unwrap();
        let node = node_id();
        for op in
            [Op::Put(key.clone()), Op::Remove(key.clone()), Op::Clear(key.namespace().clone())]
        {
            let msg = Message { node, seq: 42, version: 7 << 12, op };
            assert_eq!(Message::decode(&msg.encode()), Some(msg));
        }
        let good = Message { node, seq: 1, version: 1, op: Op::Put(key) }.encode();
        assert!(Message::decode(&good[..HEADER - 1]).is_none());
        let mut bad = good.clone();
        bad[36] = b'X';
        assert!(Message::decode(&bad).is_none());
        let mut bad = good;
        bad[0] = b'X';
        assert!(Message::decode(&bad).is_none());
        assert_ne!(node_id(), node_id());
    }
}
