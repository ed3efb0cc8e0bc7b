//! [`RocksTier`]: the [`Tier`] implementation over one RocksDB database.
//!
//! Every RocksDB call runs on tokio's blocking pool. Writes (puts, removes, evictions, namespace
//! clears) take the budget lock around the RocksDB write, so the in-memory budget and the
//! database agree on which records are live; reads take no lock.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Clock, Entry, EntryMeta, Error, Key, Namespace, PutOutcome, Record, RecordFormat, RecordHead,
    RecordHeader, Rejection, Result, StatsSnapshot, Tier, TierStats, Usage, reject_expired,
};
use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BottommostLevelCompaction, CompactOptions, DB, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions,
};

use crate::{
    budget::{Budget, Change, charge},
    builder::{Durability, RocksTierBuilder},
    error::RocksError,
    keys::{StorageKey, namespace_bounds},
};

/// The tier's name in errors, stats and metrics.
pub(crate) const TIER: &str = "rocks";

/// Starts the thread behind [`Durability::Periodic`]: every `every` it syncs the write-ahead
/// log, until the tier is closed or dropped. It syncs under the database's read lock, so a
/// `close` (which takes the write lock) never leaves the database open behind it.
fn spawn_syncer(inner: &Arc<Inner>, every: Duration) -> Result<()> {
    let weak = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("rocks-wal-sync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(inner) = weak.upgrade() else { return };
                let db = inner.db.read();
                let Some(db) = db.as_ref() else { return };
                if let Err(e) = db.flush_wal(true) {
                    let err = backend("wal sync", &inner.path)(e).renamed(TIER, inner.stats.tier());
                    inner.stats.error(&err);
                    tracing::warn!(error = %err, "periodic sync of the write-ahead log failed");
                }
            }
        })
        .map(drop)
        .map_err(|e| {
            Error::new(
                cache_core::ErrorKind::Internal,
                inner.stats.tier(),
                "cannot start the syncer",
            )
            .with_source(e)
        })
}

/// A disk cache tier on RocksDB with a byte budget and TTL. Build it with [`RocksTier::builder`].
///
/// Cheap to share: wrap it in an `Arc` (the `Tier` methods take `&self`).
///
/// Prefer [`Tier::close`] to dropping it: `close` syncs and closes RocksDB on the blocking pool.
/// A drop closes RocksDB before it returns (without the write-ahead log that includes flushing
/// the memtable), so the directory can be reopened at once; on a worker of a multi-threaded tokio
/// runtime it does so inside `block_in_place`, so the worker's other tasks move to another
/// thread meanwhile (on a current-thread runtime it blocks that thread). Either way the data
/// written so far is found again on reopen.
pub struct RocksTier {
    inner: Arc<Inner>,
}

impl Drop for RocksTier {
    fn drop(&mut self) {
        let Some(db) = self.inner.db.write().take() else { return };
        // If a call still holds the database, it closes when that call finishes.
        let close = move || drop(db);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(close);
            }
            _ => close(),
        }
    }
}

struct Inner {
    /// `None` once closed.
    db: RwLock<Option<Arc<DB>>>,
    path: PathBuf,
    capacity: u64,
    durability: Durability,
    /// Whether writes go through the write-ahead log.
    wal: bool,
    write_opts: WriteOptions,
    clock: Arc<dyn Clock>,
    /// How values are compressed and sealed on write and opened on read
    /// ([`RocksTierBuilder::compression`], [`RocksTierBuilder::encryption`]).
    format: RecordFormat,
    budget: Mutex<Budget>,
    stats: TierStats,
    /// Kept for RocksDB's statistics object, which lives in the options.
    options: Options,
}

/// Why a stored record is being dropped on the read path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Corrupt,
    Expired,
}

impl fmt::Debug for RocksTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksTier")
            .field("path", &self.inner.path)
            .field("capacity", &self.inner.capacity)
            .field("durability", &self.inner.durability)
            .field("closed", &self.inner.db.read().is_none())
            .finish_non_exhaustive()
    }
}

fn backend<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(rocksdb::Error) -> Error + 'a {
    move |source| RocksError::Backend { op, path: path.to_path_buf(), source }.into()
}

/// Reads a record's metadata without copying or checksumming its value.
///
/// Used by the compaction filter and on open: the record's head, decoded structurally (a
/// compressed value is not decoded).
///
/// # Errors
/// [`ErrorKind::Corrupted`](cache_core::ErrorKind::Corrupted) if the structure does not validate.
pub(crate) fn peek_meta(value: &[u8]) -> Result<EntryMeta> {
    let header = RecordHeader::parse(value)?;
    if header.total_len() != Some(value.len() as u64) {
        return Err(Error::corrupted(TIER, "record length does not match its header"));
    }
    Ok(*RecordHead::parse(value)?.meta())
}

impl RocksTier {
    /// A builder for a tier in `dir` with a budget of `capacity_bytes`.
    pub fn builder(dir: impl Into<PathBuf>, capacity_bytes: u64) -> RocksTierBuilder {
        RocksTierBuilder::new(dir, capacity_bytes)
    }

    pub(crate) async fn open(builder: RocksTierBuilder) -> Result<RocksTier> {
        builder.validate()?;
        match RocksTier::open_once(&builder).await {
            Err(e) if e.kind() == cache_core::ErrorKind::Corrupted => {
                // A damaged file (an SST block, say) fails the open or the budget rebuild that
                // reads every record. This is a cache: salvage what validates with RocksDB's
                // repair (it sets aside the files it cannot read, under `lost/`) rather than
                // make every record unreachable.
                tracing::warn!(
                    path = %builder.dir.display(),
                    error = %e,
                    "damaged database: repairing (unreadable files are set aside under lost/)"
                );
                let (opts, path) = (builder.rocksdb_options(), builder.dir.clone());
                tokio::task::spawn_blocking(move || DB::repair(&opts, &path))
                    .await
                    .map_err(|source| Error::from(RocksError::Join { source }))?
                    .map_err(|source| Error::from(RocksError::open(builder.dir.clone(), source)))?;
                let tier = RocksTier::open_once(&builder).await.map_err(|again| {
                    Error::new(
                        again.kind(),
                        TIER,
                        format!("{again} (after a repair of the damaged database: {e})"),
                    )
                })?;
                tier.inner.stats.corrupt();
                Ok(tier)
            }
            other => other,
        }
    }

    /// Opens the database and rebuilds the budget.
    async fn open_once(builder: &RocksTierBuilder) -> Result<RocksTier> {
        let options = builder.rocksdb_options();
        let path = builder.dir.clone();
        let opts = options.clone();
        let open_path = path.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<DB> {
            std::fs::create_dir_all(&open_path)
                .map_err(|source| RocksError::CreateDir { path: open_path.clone(), source })?;
            // Name the default column family, with the same options, so `cf_handle` finds it
            // (`batched_multi_get_cf`, `delete_range_cf`). `open_cf` would give it default options.
            let cf = (rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone());
            DB::open_cf_with_opts(&opts, &open_path, [cf])
                .map_err(|e| RocksError::open(open_path.clone(), e).into())
        })
        .await
        .map_err(|source| Error::from(RocksError::Join { source }))??;
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(!builder.write_ahead_log);
        let inner = Arc::new(Inner {
            db: RwLock::new(Some(Arc::new(db))),
            path,
            capacity: builder.capacity_bytes,
            durability: builder.durability,
            wal: builder.write_ahead_log,
            write_opts,
            clock: builder.clock.clone(),
            format: match &builder.encryption {
                Some(keys) => RecordFormat::new()
                    .with_compression(builder.compression)
                    .with_keys(keys.clone()),
                None => RecordFormat::new().with_compression(builder.compression),
            },
            budget: Mutex::new(Budget::new(builder.capacity_bytes)),
            stats: TierStats::named(TIER, builder.name),
            options,
        });
        let tier = RocksTier { inner };
        if let Err(e) = tier.blocking(|inner, db| inner.rebuild(db)).await {
            let _ = tier.close().await;
            return Err(e);
        }
        if let Durability::Periodic(every) = builder.durability {
            spawn_syncer(&tier.inner, every)?;
        }
        Ok(tier)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Flushes the memtable and compacts the whole key range, running the TTL compaction filter
    /// over every record: expired, removed and overwritten records leave the disk.
    ///
    /// With [`CompactionStyle::Fifo`](crate::CompactionStyle::Fifo) RocksDB does not rewrite
    /// files, so this only flushes and lets FIFO drop files over its size bound.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed), or a RocksDB failure.
    pub async fn compact(&self) -> Result<()> {
        self.blocking(|inner, db| {
            db.flush().map_err(backend("flush", &inner.path))?;
            let mut opts = CompactOptions::default();
            opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
            db.compact_range_opt(None::<&[u8]>, None::<&[u8]>, &opts);
            Ok(())
        })
        .await
    }

    /// Bytes of SST files on disk (RocksDB's `rocksdb.total-sst-files-size`), garbage included;
    /// memtables, the WAL and the info LOG are not counted.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](cache_core::ErrorKind::Closed), or a RocksDB failure.
    pub async fn sst_bytes(&self) -> Result<u64> {
        self.blocking(|inner, db| {
            Ok(db
                .property_int_value("rocksdb.total-sst-files-size")
                .map_err(backend("property", &inner.path))?
                .unwrap_or(0))
        })
        .await
    }

    /// RocksDB's statistics dump, if enabled with
    /// [`RocksTierBuilder::statistics`](crate::RocksTierBuilder::statistics).
    pub fn rocksdb_statistics(&self) -> Option<String> {
        self.inner.options.get_statistics()
    }

    /// One RocksDB ticker (e.g. compaction bytes written), if statistics are enabled.
    pub fn rocksdb_ticker(&self, ticker: rocksdb::statistics::Ticker) -> u64 {
        self.inner.options.get_ticker_count(ticker)
    }

    /// The open database, or `Closed`.
    pub(crate) fn db(&self) -> Result<Arc<DB>> {
        self.inner.db.read().clone().ok_or_else(|| Error::closed(self.inner.stats.tier()))
    }

    /// Runs `f` on the blocking pool with the database; counts the error if it fails.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &DB) -> Result<T> + Send + 'static,
    {
        let result = match self.db() {
            Err(e) => Err(e),
            Ok(db) => {
                let inner = self.inner.clone();
                match tokio::task::spawn_blocking(move || f(&inner, &db)).await {
                    Ok(r) => r,
                    Err(source) => Err(RocksError::Join { source }.into()),
                }
            }
        };
        self.inner.stats.track(result)
    }

    /// Validates `entry` for `key` and prepares its record inputs, or says why not.
    fn admit(&self, key: &Key, mut entry: Entry) -> Result<Result<Entry, Rejection>> {
        let now = self.inner.clock.now();
        if let Some(why) = reject_expired(&entry.meta, now, &self.inner.stats) {
            return Ok(Err(why));
        }
        entry.meta.stamp(now);
        self.check_size(key, entry.value.len())?;
        Ok(Ok(entry))
    }

    /// Deletes the records of `keys` after a write to them was rejected (already expired), so
    /// an older value never outlives a newer write. Not counted as removals.
    async fn drop_stale(&self, keys: Vec<StorageKey>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner, db| {
            let mut budget = inner.budget.lock();
            for sk in keys {
                db.delete_opt(sk, &inner.write_opts).map_err(backend("delete", &inner.path))?;
                budget.take(&sk);
            }
            drop(budget);
            inner.sync_if_asked(db)
        })
        .await
    }

    fn check_size(&self, key: &Key, value_len: usize) -> Result<()> {
        let size = charge(self.inner.format.encoded_len(key, value_len));
        if size > self.inner.capacity {
            let err = Error::invalid(
                self.inner.stats.tier(),
                format!(
                    "an entry of {size} bytes cannot fit in the tier's budget of {} bytes",
                    self.inner.capacity
                ),
            );
            self.inner.stats.error(&err);
            return Err(err);
        }
        Ok(())
    }

    fn count_lookup<T>(&self, hit: &Option<T>) {
        if hit.is_some() { self.inner.stats.hit() } else { self.inner.stats.miss() }
    }
}

/// One record to write: its key, bytes and expiry.
struct Pending {
    key: StorageKey,
    record: Bytes,
    expires_at: Option<cache_core::Timestamp>,
}

impl Inner {
    /// Looks up one key and validates what is stored.
    fn get_record(&self, db: &DB, key: &Key) -> Result<Option<Record>> {
        let sk = StorageKey::new(key);
        let raw = db.get(sk).map_err(backend("get", &self.path))?;
        Ok(raw.and_then(|raw| self.check(db, key, sk, Bytes::from(raw))))
    }

    /// Checks stored bytes for `key`: a valid, matching, unexpired record, or a miss (a corrupt
    /// record is counted and deleted, an expired one deleted).
    fn check(&self, db: &DB, key: &Key, sk: StorageKey, bytes: Bytes) -> Option<Record> {
        match self.format.decode(bytes.clone()) {
            Ok(rec) if rec.is_tombstone() || !rec.matches(key) => {
                self.drop_stored(db, sk, &bytes, Cause::Corrupt);
                None
            }
            Ok(rec) if rec.meta().is_expired(self.clock.now()) => {
                self.drop_stored(db, sk, &bytes, Cause::Expired);
                None
            }
            Ok(rec) => Some(rec),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "corrupt record dropped");
                self.drop_stored(db, sk, &bytes, Cause::Corrupt);
                None
            }
        }
    }

    /// Deletes `sk` if it still holds `observed` (a writer may have replaced it since the read).
    /// Failures are logged, not returned: the read is a miss either way.
    fn drop_stored(&self, db: &DB, sk: StorageKey, observed: &[u8], cause: Cause) {
        if cause == Cause::Corrupt {
            self.stats.corrupt();
        }
        let mut budget = self.budget.lock();
        let result = db.get(sk).and_then(|current| {
            if current.as_deref() == Some(observed) {
                db.delete_opt(sk, &self.write_opts)?;
                if budget.take(&sk).is_some() && cause == Cause::Expired {
                    self.stats.expire();
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot delete a dropped record");
        }
    }

    /// Writes `items` in one batch together with the deletions of the records the budget evicts.
    fn write(&self, db: &DB, items: Vec<Pending>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut budget = self.budget.lock();
        let mut changes: Vec<Change> = Vec::with_capacity(items.len());
        for item in &items {
            let change = budget.insert(item.key, charge(item.record.len()), item.expires_at);
            batch.put(item.key, &item.record);
            for victim in &change.evicted {
                batch.delete(victim.key);
            }
            changes.push(change);
        }
        if let Err(e) = db.write_opt(batch, &self.write_opts) {
            for change in changes.into_iter().rev() {
                budget.undo(change);
            }
            return Err(backend("write", &self.path)(e));
        }
        let now = self.clock.now();
        for change in changes {
            for victim in &change.evicted {
                if victim.slot.expires_at.is_some_and(|t| t <= now) {
                    self.stats.expire();
                } else {
                    self.stats.evict(1);
                }
            }
            budget.commit(change);
        }
        drop(budget);
        self.sync_if_asked(db)
    }

    /// With [`Durability::EveryWrite`], syncs the WAL after a write (outside the budget lock,
    /// so concurrent writers share syncs).
    fn sync_if_asked(&self, db: &DB) -> Result<()> {
        if self.durability == Durability::EveryWrite {
            db.flush_wal(true).map_err(backend("wal sync", &self.path))?;
        }
        Ok(())
    }

    /// Makes every acknowledged write durable.
    fn barrier(&self, db: &DB) -> Result<()> {
        if self.wal {
            db.flush_wal(true).map_err(backend("wal sync", &self.path))
        } else {
            db.flush().map_err(backend("flush", &self.path))
        }
    }

    /// Rebuilds the budget from the stored records, oldest creation time first; deletes records
    /// that are expired, unparseable or over the budget.
    fn rebuild(&self, db: &DB) -> Result<()> {
        let now = self.clock.now();
        let mut live = Vec::new();
        let mut doomed: Vec<Box<[u8]>> = Vec::new();
        let mut read = ReadOptions::default();
        read.fill_cache(false);
        for item in db.iterator_opt(IteratorMode::Start, read) {
            let (k, v) = item.map_err(backend("iterate", &self.path))?;
            let sk = StorageKey::from_slice(&k);
            match (sk, peek_meta(&v)) {
                (Some(sk), Ok(meta)) if !meta.is_expired(now) => {
                    live.push((meta.created_at, sk, charge(v.len()), meta.expires_at));
                }
                (Some(_), Ok(_)) => {
                    self.stats.expire();
                    doomed.push(k);
                }
                _ => {
                    self.stats.corrupt();
                    doomed.push(k);
                }
            }
        }
        live.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.0.cmp(&b.1.0)));
        let mut budget = self.budget.lock();
        for (_, sk, size, expires_at) in live {
            if size > self.capacity {
                self.stats.evict(1);
                doomed.push(Box::from(sk.as_ref()));
                continue;
            }
            let change = budget.insert(sk, size, expires_at);
            for victim in &change.evicted {
                self.stats.evict(1);
                doomed.push(Box::from(victim.key.as_ref()));
            }
            budget.commit(change);
        }
        if !doomed.is_empty() {
            tracing::info!(path = %self.path.display(), count = doomed.len(), "dropping records on open");
            let mut batch = WriteBatch::default();
            for k in &doomed {
                batch.delete(k);
            }
            db.write_opt(batch, &self.write_opts).map_err(backend("write", &self.path))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Tier for RocksTier {
    fn name(&self) -> &'static str {
        self.inner.stats.tier()
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let k = key.clone();
        let rec = self.blocking(move |inner, db| inner.get_record(db, &k)).await?;
        self.count_lookup(&rec);
        Ok(rec.map(|r| r.to_entry()))
    }

    /// A read that counts no hit or miss: a tiered cache asks this on every put.
    async fn contains(&self, key: &Key) -> Result<bool> {
        let k = key.clone();
        Ok(self.blocking(move |inner, db| inner.get_record(db, &k)).await?.is_some())
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        let k = key.clone();
        let rec = self.blocking(move |inner, db| inner.get_record(db, &k)).await?;
        self.count_lookup(&rec);
        Ok(rec)
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let keys = keys.to_vec();
        let recs = self
            .blocking(move |inner, db| {
                let sks: Vec<StorageKey> = keys.iter().map(StorageKey::new).collect();
                let cf = db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME).ok_or_else(|| {
                    Error::new(cache_core::ErrorKind::Internal, TIER, "no default column family")
                })?;
                let values = db.batched_multi_get_cf(cf, &sks, false);
                let mut out = Vec::with_capacity(keys.len());
                for ((key, sk), value) in keys.iter().zip(&sks).zip(values) {
                    let value = value.map_err(backend("multi_get", &inner.path))?;
                    out.push(
                        value.and_then(|v| inner.check(db, key, *sk, Bytes::copy_from_slice(&v))),
                    );
                }
                Ok(out)
            })
            .await?;
        Ok(recs
            .into_iter()
            .map(|r| {
                self.count_lookup(&r);
                r.map(|r| r.to_entry())
            })
            .collect())
    }

    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        self.inner.stats.track(self.db())?;
        let entry = match self.admit(&key, entry)? {
            Ok(entry) => entry,
            Err(why) => {
                // The rejected write supersedes any older value: never serve the stale one.
                self.drop_stale(vec![StorageKey::new(&key)]).await?;
                return Ok(PutOutcome::Rejected(why));
            }
        };
        let pending = Pending {
            key: StorageKey::new(&key),
            record: self.inner.stats.track(self.inner.format.encode(&key, &entry))?,
            expires_at: entry.meta.expires_at,
        };
        self.blocking(move |inner, db| inner.write(db, vec![pending])).await?;
        self.inner.stats.insert();
        Ok(PutOutcome::Stored)
    }

    async fn put_valid_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        self.inner.stats.track(self.db())?;
        if !self.inner.format.stores_as_is(&record) {
            // Plaintext for a sealed namespace, or sealed under a key this tier lacks.
            return self.put(key, record.to_entry()).await;
        }
        if let Some(why) = reject_expired(record.meta(), self.inner.clock.now(), &self.inner.stats)
        {
            self.drop_stale(vec![StorageKey::new(&key)]).await?;
            return Ok(PutOutcome::Rejected(why));
        }
        self.check_size(&key, record.header().value_len as usize)?;
        let pending = Pending {
            key: StorageKey::new(&key),
            expires_at: record.meta().expires_at,
            record: record.into_bytes(),
        };
        self.blocking(move |inner, db| inner.write(db, vec![pending])).await?;
        self.inner.stats.insert();
        Ok(PutOutcome::Stored)
    }

    async fn put_many(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        self.inner.stats.track(self.db())?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut admitted = Vec::with_capacity(items.len());
        // Keys whose last write in the batch was rejected: their older values are dropped.
        let mut superseded = std::collections::HashMap::new();
        for (key, entry) in items {
            let sk = StorageKey::new(&key);
            match self.admit(&key, entry)? {
                Ok(entry) => {
                    outcomes.push(PutOutcome::Stored);
                    admitted.push((key, entry));
                    superseded.insert(sk.0, false);
                }
                Err(why) => {
                    outcomes.push(PutOutcome::Rejected(why));
                    superseded.insert(sk.0, true);
                }
            }
        }
        let superseded: Vec<StorageKey> = superseded
            .into_iter()
            .filter(|(_, dropped)| *dropped)
            .map(|(k, _)| StorageKey(k))
            .collect();
        if admitted.is_empty() {
            self.drop_stale(superseded).await?;
            return Ok(outcomes);
        }
        let stored = admitted.len() as u64;
        let pending = admitted
            .iter()
            .map(|(key, entry)| {
                Ok(Pending {
                    key: StorageKey::new(key),
                    record: self.inner.format.encode(key, entry)?,
                    expires_at: entry.meta.expires_at,
                })
            })
            .collect::<Result<Vec<_>>>();
        let pending = self.inner.stats.track(pending)?;
        self.blocking(move |inner, db| inner.write(db, pending)).await?;
        self.drop_stale(superseded).await?;
        for _ in 0..stored {
            self.inner.stats.insert();
        }
        Ok(outcomes)
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let sk = StorageKey::new(key);
        self.blocking(move |inner, db| {
            let mut budget = inner.budget.lock();
            db.delete_opt(sk, &inner.write_opts).map_err(backend("delete", &inner.path))?;
            let removed = budget.take(&sk).is_some();
            drop(budget);
            if removed {
                inner.stats.remove();
            }
            inner.sync_if_asked(db)
        })
        .await
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        let id = namespace.id();
        self.blocking(move |inner, db| {
            let (start, end) = namespace_bounds(&id);
            let cf = db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME).ok_or_else(|| {
                Error::new(cache_core::ErrorKind::Internal, TIER, "no default column family")
            })?;
            let mut budget = inner.budget.lock();
            db.delete_range_cf_opt(cf, &start[..], &end[..], &inner.write_opts)
                .map_err(backend("delete_range", &inner.path))?;
            let removed = budget.remove_namespace(&start);
            drop(budget);
            tracing::debug!(namespace = ?id, removed, "namespace cleared");
            inner.sync_if_asked(db)
        })
        .await
    }

    fn usage(&self) -> Usage {
        let budget = self.inner.budget.lock();
        Usage {
            bytes_used: budget.bytes(),
            capacity: Some(self.inner.capacity),
            entries: Some(budget.len()),
        }
    }

    fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot(self.usage())
    }

    async fn flush(&self) -> Result<()> {
        self.blocking(|inner, db| inner.barrier(db)).await
    }

    async fn close(&self) -> Result<()> {
        let Some(db) = self.inner.db.write().take() else { return Ok(()) };
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = inner.barrier(&db);
            // If a call still holds the database, it closes when that call finishes.
            drop(db);
            result
        })
        .await
        .unwrap_or_else(|source| Err(RocksError::Join { source }.into()));
        self.inner.stats.track(result)
    }
}

#[cfg(test)]
mod tests;
