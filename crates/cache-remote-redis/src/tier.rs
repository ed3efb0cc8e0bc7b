//! [`RedisTier`]: the [`Tier`] implementation over a Redis (or Valkey) server.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use cache_core::{
    Clock, Entry, Error, Key, Ledger, Namespace, NamespaceId, PutOutcome, Record, RecordFormat,
    Rejection, Result, StatsSnapshot, Tier, TierStats, Timestamp, Usage, Victim, async_trait,
    check_open, reject_expired,
};
use parking_lot::Mutex;
use redis::{Script, aio::ConnectionManager};
use tokio::task::JoinSet;

use crate::{
    builder::RedisTierBuilder,
    error::RedisError,
    layout::{CLEAR_SCRIPT, DEL_SCRIPT, GET_SCRIPT, Layout, PUT_SCRIPT},
};

/// The tier's name in errors, stats and metrics.
pub(crate) const TIER: &str = "redis";

/// Entries per script call of `get_many` and `remove`.
const GET_BATCH: usize = 256;
/// Entries, and record bytes, per script call of `put_many`.
const PUT_BATCH: usize = 64;
const PUT_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Keys per `SCAN` step of a namespace sweep.
const SWEEP_COUNT: usize = 1000;

/// The settings [`RedisTierBuilder::build`] hands to the tier.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) operation_timeout: Duration,
    pub(crate) expiry_slack: Duration,
    pub(crate) budget: Option<u64>,
    pub(crate) max_record_len: u64,
    /// How records are written (compressed, sealed) and read back (opened): see
    /// `RedisTierBuilder::compression` and `RedisTierBuilder::encryption`.
    pub(crate) format: RecordFormat,
    /// The tier's name: see `RedisTierBuilder::name`.
    pub(crate) name: &'static str,
}

/// A cache tier on a Redis or Valkey server, shared by every node that points at it.
///
/// See the [crate documentation](crate) for the key layout, expiry, namespaces, budget and
/// failure behaviour.
#[derive(Clone)]
pub struct RedisTier {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    layout: Layout,
    settings: Settings,
    clock: Arc<dyn Clock>,
    stats: TierStats,
    ledger: Option<Mutex<Ledger>>,
    closed: AtomicBool,
    background: Mutex<JoinSet<()>>,
    scripts: Scripts,
    /// Each namespace's epoch as last read from Redis, for the fast path (see `layout`).
    epochs: Mutex<HashMap<NamespaceId, Arc<str>>>,
    /// Namespaces with a sweep pass running, and whether another pass is due after it.
    sweeping: Mutex<HashMap<NamespaceId, bool>>,
}

struct Scripts {
    get: Script,
    put: Script,
    del: Script,
    clear: Script,
}

/// One entry on its way to Redis.
struct Write {
    key: Key,
    record: Bytes,
    /// `PX` in milliseconds, 0 for no expiry.
    px: u64,
}

impl RedisTier {
    /// A builder for a tier on the server at `url` (`redis://host:port/db`,
    /// `redis://:password@host/`, `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> RedisTierBuilder {
        RedisTierBuilder::new(url)
    }

    pub(crate) fn from_parts(
        conn: ConnectionManager,
        layout: Layout,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> RedisTier {
        let ledger = settings.budget.map(|capacity| Mutex::new(Ledger::new(capacity)));
        let stats = TierStats::named(TIER, settings.name);
        RedisTier {
            inner: Arc::new(Inner {
                conn,
                layout,
                settings,
                clock,
                stats,
                ledger,
                closed: AtomicBool::new(false),
                background: Mutex::new(JoinSet::new()),
                scripts: Scripts {
                    get: Script::new(GET_SCRIPT),
                    put: Script::new(PUT_SCRIPT),
                    del: Script::new(DEL_SCRIPT),
                    clear: Script::new(CLEAR_SCRIPT),
                },
                epochs: Mutex::new(HashMap::new()),
                sweeping: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The prefix every key of this tier starts with.
    pub fn prefix(&self) -> &str {
        self.inner.layout.prefix()
    }

    /// The Redis key that holds `key` while its namespace is at `epoch` (see the crate docs for
    /// the layout). For tools and tests that inspect the server; the tier itself never reads a
    /// key without its namespace's current epoch.
    pub fn redis_key(&self, key: &Key, epoch: u64) -> String {
        self.inner.layout.entry_key(key.namespace().id(), &epoch.to_string(), key.hash())
    }

    /// The Redis key holding the epoch of `namespace`.
    pub fn epoch_key(&self, namespace: &Namespace) -> String {
        self.inner.layout.epoch_key(namespace)
    }

    /// A clone of the connection (it multiplexes and reconnects by itself), for callers that
    /// share the tier's connection, such as benches that compare with raw commands.
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("RedisTier")
            .field("prefix", &inner.layout.prefix())
            .field("settings", &inner.settings)
            .field("closed", &inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        check_open(self.settings.name, &self.closed)
    }

    /// Runs one Redis call under the operation timeout.
    async fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> std::result::Result<T, RedisError> {
        let timeout = self.settings.operation_timeout;
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(RedisError::Timeout { op, timeout }),
            Ok(result) => result.map_err(|e| RedisError::client(op, e)),
        }
    }

    /// The stored records of `keys`, checked; `None` for a miss (absent, corrupt, expired).
    async fn get_records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>> {
        self.check_open()?;
        let chunks = keys.chunks(GET_BATCH).map(|chunk| self.get_chunk(chunk));
        let answers = futures::future::try_join_all(chunks).await?;
        let now = self.clock.now();
        let mut out = Vec::with_capacity(keys.len());
        let mut corrupt = Vec::new();
        for (key, bytes) in keys.iter().zip(answers.into_iter().flatten()) {
            let Some(bytes) = bytes else {
                out.push(None);
                continue;
            };
            // Checks the record and opens a sealed value; a record that does not open, or a
            // plaintext one in a namespace the format seals, is an error here: corrupt.
            let record = match self.settings.format.decode(Bytes::from(bytes)) {
                Ok(r) if r.matches(key) && !r.is_tombstone() => r,
                Ok(_) => {
                    self.on_corrupt(key, "the entry holds a record of another key", &mut corrupt);
                    out.push(None);
                    continue;
                }
                Err(e) => {
                    self.on_corrupt(key, e.message(), &mut corrupt);
                    out.push(None);
                    continue;
                }
            };
            if record.meta().is_expired(now) {
                // Redis drops it by itself within the expiry slack.
                out.push(None);
                continue;
            }
            if let Some(ledger) = &self.ledger {
                ledger.lock().touch(key.hash());
            }
            out.push(Some(record));
        }
        if !corrupt.is_empty()
            && let Err(e) = self.delete(&corrupt).await
        {
            tracing::warn!(error = %e, "deleting corrupt entries from redis failed");
        }
        Ok(out)
    }

    /// The stored bytes of `chunk`'s keys: on the fast path for namespaces whose epoch is
    /// remembered and unchanged, else with the script.
    async fn get_chunk(
        &self,
        chunk: &[Key],
    ) -> std::result::Result<Vec<Option<Vec<u8>>>, RedisError> {
        let mut out: Vec<Option<Vec<u8>>> = vec![None; chunk.len()];
        let mut slow = Vec::new();
        let mut fast = Vec::new();
        let mut checks: Vec<(NamespaceId, Arc<str>)> = Vec::new();
        let mut pipe = redis::pipe();
        for (i, key) in chunk.iter().enumerate() {
            let ns = key.namespace().id();
            match self.epoch_of(ns) {
                Some(epoch) => {
                    pipe.cmd("GET").arg(self.layout.entry_key(ns, &epoch, key.hash()));
                    fast.push((i, ns));
                    if !checks.iter().any(|(n, _)| *n == ns) {
                        checks.push((ns, epoch));
                    }
                }
                None => slow.push(i),
            }
        }
        if !fast.is_empty() {
            for (ns, _) in &checks {
                pipe.cmd("GET").arg(self.layout.epoch_key_of(*ns));
            }
            let mut conn = self.conn.clone();
            let mut got: Vec<Option<Vec<u8>>> =
                self.run("get", pipe.query_async(&mut conn)).await?;
            if got.len() != fast.len() + checks.len() {
                return Err(unexpected("get", got.len(), fast.len() + checks.len()));
            }
            let epochs = got.split_off(fast.len());
            let changed = self.check_epochs(&checks, epochs);
            for ((i, ns), value) in fast.into_iter().zip(got) {
                if changed.contains(&ns) { slow.push(i) } else { out[i] = value }
            }
        }
        if !slow.is_empty() {
            slow.sort_unstable();
            let mut invocation = self.scripts.get.prepare_invoke();
            for &i in &slow {
                let (epoch_key, hash) = self.layout.script_key(&chunk[i]);
                invocation.key(epoch_key).arg(hash);
            }
            let mut conn = self.conn.clone();
            let mut got: Vec<Option<Vec<u8>>> =
                self.run("get", invocation.invoke_async(&mut conn)).await?;
            if got.len() != 2 * slow.len() {
                return Err(unexpected("get", got.len(), 2 * slow.len()));
            }
            let epochs = got.split_off(slow.len());
            for ((&i, value), epoch) in slow.iter().zip(got).zip(epochs) {
                self.learn_epoch(chunk[i].namespace().id(), epoch.as_deref());
                out[i] = value;
            }
        }
        Ok(out)
    }

    /// The remembered epoch of `ns`.
    fn epoch_of(&self, ns: NamespaceId) -> Option<Arc<str>> {
        self.epochs.lock().get(&ns).cloned()
    }

    /// Remembers the epoch of `ns` as read from Redis (`None`: it has none).
    fn learn_epoch(&self, ns: NamespaceId, epoch: Option<&[u8]>) {
        let mut epochs = self.epochs.lock();
        match epoch.and_then(|e| std::str::from_utf8(e).ok()) {
            Some(e) if epochs.get(&ns).is_some_and(|known| &**known == e) => {}
            Some(e) => {
                epochs.insert(ns, e.into());
            }
            None => {
                epochs.remove(&ns);
            }
        }
    }

    /// Compares the epochs read after a fast-path operation with the remembered ones they
    /// used; learns the new ones and returns the namespaces whose epoch changed.
    fn check_epochs(
        &self,
        used: &[(NamespaceId, Arc<str>)],
        read: Vec<Option<Vec<u8>>>,
    ) -> Vec<NamespaceId> {
        let mut changed = Vec::new();
        for ((ns, epoch), now) in used.iter().zip(read) {
            if now.as_deref() != Some(epoch.as_bytes()) {
                self.learn_epoch(*ns, now.as_deref());
                changed.push(*ns);
            }
        }
        changed
    }

    fn on_corrupt(&self, key: &Key, why: &str, corrupt: &mut Vec<Key>) {
        self.stats.corrupt();
        tracing::warn!(reason = why, "corrupt entry in the redis tier; deleting it");
        if let Some(ledger) = &self.ledger {
            ledger.lock().remove(key.hash());
        }
        corrupt.push(key.clone());
    }

    /// Counts hits and misses of a lookup.
    fn count<T>(&self, found: &[Option<T>]) {
        for f in found {
            if f.is_some() { self.stats.hit() } else { self.stats.miss() }
        }
    }

    /// Prepares `entry` for writing: `None` if it has already expired.
    fn prepare(&self, key: Key, mut entry: Entry, now: Timestamp) -> Result<Option<Write>> {
        if reject_expired(&entry.meta, now, &self.stats).is_some() {
            return Ok(None);
        }
        entry.meta.stamp(now);
        let format = &self.settings.format;
        let len = format.encoded_len(&key, entry.value.len()) as u64;
        self.check_size(len)?;
        let px = self.px(entry.meta.expires_at, now);
        let record = format.encode(&key, &entry).map_err(|e| e.with_tier(TIER))?;
        Ok(Some(Write { record, key, px }))
    }

    /// Prepares an encoded record of `key` (checked by `Tier::put_record`) for writing: as it
    /// is if this tier's format reads it back so, else re-encoded from its entry (a plaintext
    /// record of a namespace the format seals is sealed, a record sealed under a key the format
    /// lacks is re-sealed under its own or written in plaintext; the decoded value is plaintext).
    fn prepare_record(&self, key: Key, record: Record, now: Timestamp) -> Result<Option<Write>> {
        if record.meta().created_at == Timestamp::ZERO
            || !self.settings.format.stores_as_is(&record)
        {
            return self.prepare(key, record.to_entry(), now);
        }
        if reject_expired(record.meta(), now, &self.stats).is_some() {
            return Ok(None);
        }
        self.check_size(record.as_bytes().len() as u64)?;
        let px = self.px(record.meta().expires_at, now);
        Ok(Some(Write { key, record: record.into_bytes(), px }))
    }

    fn check_size(&self, len: u64) -> Result<()> {
        if let Some(budget) = self.settings.budget
            && len > budget
        {
            return Err(Error::invalid(
                TIER,
                format!("a record of {len} bytes cannot fit in the byte budget of {budget}"),
            ));
        }
        let max = self.settings.max_record_len;
        if len > max {
            return Err(Error::invalid(
                TIER,
                format!("a record of {len} bytes is larger than the tier's limit of {max}"),
            ));
        }
        Ok(())
    }

    /// Redis's expiry for an entry expiring at `expires_at`: the time left by the tier's clock
    /// plus the slack, so Redis never drops an entry the tier's clock still calls live.
    fn px(&self, expires_at: Option<Timestamp>, now: Timestamp) -> u64 {
        match expires_at {
            None => 0,
            Some(at) => {
                let left = at.as_millis().saturating_sub(now.as_millis());
                let slack =
                    u64::try_from(self.settings.expiry_slack.as_millis()).unwrap_or(u64::MAX);
                left.saturating_add(slack).max(1)
            }
        }
    }

    /// Writes entries (in order, so the last write of a key wins), accounts for them and evicts
    /// to stay within the budget.
    async fn write(&self, writes: Vec<Write>) -> Result<()> {
        let mut start = 0;
        while start < writes.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < writes.len()
                && end - start < PUT_BATCH
                && (end == start || bytes + writes[end].record.len() <= PUT_BATCH_BYTES)
            {
                bytes += writes[end].record.len();
                end += 1;
            }
            let batch = &writes[start..end];
            self.write_batch(batch).await?;
            for w in batch {
                self.stats.insert();
                self.account(&w.key, w.record.len() as u64).await;
            }
            start = end;
        }
        Ok(())
    }

    /// Writes one batch: on the fast path for namespaces whose epoch is remembered and
    /// unchanged, else (and again for those whose epoch changed meanwhile) with the script, in
    /// the order of `batch`.
    async fn write_batch(&self, batch: &[Write]) -> std::result::Result<(), RedisError> {
        let mut slow = Vec::new();
        let mut checks: Vec<(NamespaceId, Arc<str>)> = Vec::new();
        let mut fast = Vec::new();
        let mut pipe = redis::pipe();
        for (i, w) in batch.iter().enumerate() {
            let ns = w.key.namespace().id();
            match self.epoch_of(ns) {
                Some(epoch) => {
                    let name = self.layout.entry_key(ns, &epoch, w.key.hash());
                    let set = pipe.cmd("SET").arg(name).arg(&w.record[..]);
                    if w.px > 0 {
                        set.arg("PX").arg(w.px);
                    }
                    set.ignore();
                    fast.push((i, ns));
                    if !checks.iter().any(|(n, _)| *n == ns) {
                        checks.push((ns, epoch));
                    }
                }
                None => slow.push(i),
            }
        }
        if !fast.is_empty() {
            for (ns, _) in &checks {
                pipe.cmd("GET").arg(self.layout.epoch_key_of(*ns));
            }
            let mut conn = self.conn.clone();
            let epochs: Vec<Option<Vec<u8>>> = self.run("put", pipe.query_async(&mut conn)).await?;
            if epochs.len() != checks.len() {
                return Err(unexpected("put", epochs.len(), checks.len()));
            }
            let changed = self.check_epochs(&checks, epochs);
            // Written under an epoch that is gone: unreachable, so write them again.
            slow.extend(fast.into_iter().filter(|(_, ns)| changed.contains(ns)).map(|(i, _)| i));
        }
        if slow.is_empty() {
            return Ok(());
        }
        slow.sort_unstable();
        let mut invocation = self.scripts.put.prepare_invoke();
        for &i in &slow {
            let w = &batch[i];
            let (epoch_key, hash) = self.layout.script_key(&w.key);
            invocation.key(epoch_key).arg(hash).arg(w.px).arg(&w.record[..]);
        }
        let mut conn = self.conn.clone();
        let epochs: Vec<Option<Vec<u8>>> =
            self.run("put", invocation.invoke_async(&mut conn)).await?;
        if epochs.len() != slow.len() {
            return Err(unexpected("put", epochs.len(), slow.len()));
        }
        for (&i, epoch) in slow.iter().zip(epochs) {
            self.learn_epoch(batch[i].key.namespace().id(), epoch.as_deref());
        }
        Ok(())
    }

    /// Records a written entry in the budget account and evicts the oldest to stay within it.
    async fn account(&self, key: &Key, size: u64) {
        let Some(ledger) = &self.ledger else { return };
        let victims = ledger.lock().insert(key.namespace().id(), *key.hash(), size);
        if victims.is_empty() {
            return;
        }
        match self.delete_victims(&victims).await {
            Ok(()) => self.stats.evict(victims.len() as u64),
            Err(e) => {
                tracing::warn!(error = %e, "deleting entries to stay within the budget failed");
                let mut ledger = ledger.lock();
                for v in victims {
                    ledger.restore(v);
                }
            }
        }
    }

    async fn delete_victims(&self, victims: &[Victim]) -> Result<()> {
        for chunk in victims.chunks(GET_BATCH) {
            let mut invocation = self.scripts.del.prepare_invoke();
            for v in chunk {
                invocation.key(self.layout.epoch_key_of(v.ns)).arg(v.hash.to_hex());
            }
            let mut conn = self.conn.clone();
            let _: u64 = self.run("evict", invocation.invoke_async(&mut conn)).await?;
        }
        Ok(())
    }

    /// Deletes the entries of `keys` (under their namespaces' current epochs).
    async fn delete(&self, keys: &[Key]) -> Result<u64> {
        if let Some(ledger) = &self.ledger {
            let mut ledger = ledger.lock();
            for key in keys {
                ledger.remove(key.hash());
            }
        }
        let mut removed = 0;
        for chunk in keys.chunks(GET_BATCH) {
            let mut invocation = self.scripts.del.prepare_invoke();
            for key in chunk {
                let (epoch_key, hash) = self.layout.script_key(key);
                invocation.key(epoch_key).arg(hash);
            }
            let mut conn = self.conn.clone();
            let n: u64 = self.run("delete", invocation.invoke_async(&mut conn)).await?;
            removed += n;
        }
        Ok(removed)
    }

    /// Writes and deletes in the order of `items`: an entry that had already expired still
    /// supersedes what its key held (it is deleted), so an older value never outlives a newer
    /// write, and a later write of the same key wins again.
    async fn put(&self, items: Vec<(Key, Option<Write>)>) -> Result<Vec<PutOutcome>> {
        let mut outcomes = Vec::with_capacity(items.len());
        let mut writes = Vec::with_capacity(items.len());
        for (key, write) in items {
            match write {
                Some(w) => {
                    writes.push(w);
                    outcomes.push(PutOutcome::Stored);
                }
                None => {
                    self.write(std::mem::take(&mut writes)).await?;
                    self.delete(std::slice::from_ref(&key)).await?;
                    outcomes.push(PutOutcome::Rejected(Rejection::Expired));
                }
            }
        }
        self.write(writes).await?;
        Ok(outcomes)
    }

    async fn clear_namespace(self: &Arc<Self>, namespace: &Namespace) -> Result<()> {
        self.check_open()?;
        if let Some(ledger) = &self.ledger {
            ledger.lock().clear_namespace(namespace.id());
        }
        let invocation = self.scripts.clear.key(self.layout.epoch_key(namespace));
        let mut conn = self.conn.clone();
        let (old, new): (String, String) =
            self.run("clear", invocation.invoke_async(&mut conn)).await?;
        self.learn_epoch(namespace.id(), Some(new.as_bytes()));
        if old != "0" {
            self.sweep_later(namespace);
        }
        Ok(())
    }

    /// Unlinks the entries of a namespace's older epochs in the background (`SCAN MATCH` in
    /// steps of [`SWEEP_COUNT`], then `UNLINK`, which frees memory off Redis's main thread).
    /// They are unreachable already; this only gives their memory back sooner than their expiry
    /// would. A `SCAN` pass walks the whole keyspace, so passes are coalesced: at most one per
    /// namespace runs at a time, and clears made during it cause one more pass, not one each.
    fn sweep_later(self: &Arc<Self>, namespace: &Namespace) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let ns = namespace.id();
        {
            let mut sweeping = self.sweeping.lock();
            if let Some(again) = sweeping.get_mut(&ns) {
                *again = true;
                return;
            }
            sweeping.insert(ns, false);
        }
        let this = Arc::clone(self);
        let mut tasks = self.background.lock();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            loop {
                if let Err(e) = this.sweep(ns).await {
                    tracing::debug!(error = %e, "sweeping a cleared namespace stopped");
                }
                let mut sweeping = this.sweeping.lock();
                match sweeping.get_mut(&ns) {
                    Some(again) if *again => *again = false,
                    _ => {
                        sweeping.remove(&ns);
                        return;
                    }
                }
            }
        });
    }

    /// One sweep pass: unlinks every entry of `ns` under an epoch older than the current one
    /// (read at the start; epochs only grow, so nothing written later is touched).
    async fn sweep(&self, ns: NamespaceId) -> std::result::Result<(), RedisError> {
        let mut conn = self.conn.clone();
        let epoch_key = self.layout.epoch_key_of(ns);
        let current: Option<u64> =
            self.run("sweep", redis::cmd("GET").arg(&epoch_key).query_async(&mut conn)).await?;
        let Some(current) = current else { return Ok(()) };
        let pattern = self.layout.namespace_pattern(ns);
        let mut cursor = 0u64;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SWEEP_COUNT)
                .to_owned();
            let (next, keys): (u64, Vec<String>) =
                self.run("sweep", scan.query_async(&mut conn)).await?;
            let dead: Vec<&String> = keys
                .iter()
                .filter(|k| self.layout.epoch_in(k).is_some_and(|e| e < current))
                .collect();
            if !dead.is_empty() {
                let unlink = redis::cmd("UNLINK").arg(&dead).to_owned();
                let _: u64 = self.run("sweep", unlink.query_async(&mut conn)).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn drain_background(&self) {
        let mut tasks = std::mem::take(&mut *self.background.lock());
        while tasks.join_next().await.is_some() {}
    }

    fn usage(&self) -> Usage {
        match &self.ledger {
            None => Usage::default(),
            Some(ledger) => {
                let l = ledger.lock();
                Usage {
                    bytes_used: l.used(),
                    capacity: Some(l.capacity()),
                    entries: Some(l.entries()),
                }
            }
        }
    }
}

#[async_trait]
impl Tier for RedisTier {
    fn name(&self) -> &'static str {
        self.inner.settings.name
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let mut got = self.get_many(std::slice::from_ref(key)).await?;
        Ok(got.pop().flatten())
    }

    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        let mut out = self.put_many(vec![(key, entry)]).await?;
        Ok(out.pop().expect("one outcome per entry"))
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let inner = &self.inner;
        let out = async {
            inner.check_open()?;
            inner.delete(std::slice::from_ref(key)).await?;
            inner.stats.remove();
            Ok(())
        };
        inner.stats.track(out.await)
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        let out = self.inner.clear_namespace(namespace).await;
        self.inner.stats.track(out)
    }

    fn usage(&self) -> Usage {
        self.inner.usage()
    }

    fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot(self.usage())
    }

    async fn flush(&self) -> Result<()> {
        let out = self.inner.check_open();
        if out.is_ok() {
            self.inner.drain_background().await;
        }
        self.inner.stats.track(out)
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.drain_background().await;
        Ok(())
    }

    /// One script call per 256 keys (all in flight at once on the multiplexed connection).
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let inner = &self.inner;
        let out = inner.get_records(keys).await;
        if let Ok(found) = &out {
            inner.count(found);
        }
        let out = inner.stats.track(out)?;
        Ok(out.into_iter().map(|r| r.map(|r| r.to_entry())).collect())
    }

    /// One script call per 64 entries or 4 MiB of records, in order, so the last write of a
    /// key wins. On failure, entries before the failing call are stored.
    async fn put_many(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        let inner = &self.inner;
        let out = async {
            inner.check_open()?;
            let now = inner.clock.now();
            let mut prepared = Vec::with_capacity(items.len());
            for (key, entry) in items {
                prepared.push((key.clone(), inner.prepare(key, entry, now)?));
            }
            inner.put(prepared).await
        };
        inner.stats.track(out.await)
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        let inner = &self.inner;
        let out = inner.get_records(std::slice::from_ref(key)).await;
        if let Ok(found) = &out {
            inner.count(found);
        }
        Ok(inner.stats.track(out)?.pop().flatten())
    }

    async fn put_valid_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        let inner = &self.inner;
        let out = async {
            inner.check_open()?;
            let write = inner.prepare_record(key.clone(), record, inner.clock.now())?;
            inner.put(vec![(key, write)]).await
        };
        let mut out = inner.stats.track(out.await)?;
        Ok(out.pop().expect("one outcome per record"))
    }
}

fn unexpected(op: &'static str, got: usize, wanted: usize) -> RedisError {
    RedisError::Unexpected { op, what: format!("{got} answers for {wanted} requests") }
}
