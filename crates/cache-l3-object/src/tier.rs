//! [`ObjectTier`]: the [`Tier`] implementation over an [`ObjectStore`].

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{
    CHUNK_SHIFT, Clock, Entry, EntryMeta, Error, ErrorKind, Key, Ledger, Namespace, PutOutcome,
    RECORD_VERSION_CHUNKED, Record, RecordFormat, RecordParts, Rejection, Result, StatsSnapshot,
    Tier, TierStats, Timestamp, Usage, ValueStream, async_trait, check_open, reject_expired,
};
use futures::{StreamExt, TryStreamExt, stream::FuturesUnordered};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, path::Path,
};
use parking_lot::Mutex;
use tokio::task::JoinSet;

use crate::{
    builder::ObjectTierBuilder,
    error::ObjectError,
    layout::{self, Layout},
    metrics::{Metrics, ObjectMetrics, Op},
};

/// The tier's name in errors, stats and metrics.
pub(crate) const TIER: &str = "object";

/// Ranged reads closer than this to the start of the object are one request.
const ONE_REQUEST_RANGE: u64 = 1024 * 1024;
/// Concurrent requests of one `get_many` or `put_many`.
const BATCH_CONCURRENCY: usize = 16;
/// Objects listed before a bulk delete is sent.
const DELETE_BATCH: usize = 1000;
/// Background deletes of expired objects beyond this many in flight are skipped (the object
/// is found and retried on a later read, or removed by a lifecycle rule).
const MAX_BACKGROUND: usize = 1024;

/// What a conditional create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CreateOutcome {
    /// The object did not exist and now holds the value.
    Created,
    /// An object already existed; it was left unchanged.
    AlreadyExists,
    /// Nothing was written, for this reason (an entry that had already expired).
    Rejected(Rejection),
}

/// The settings `ObjectTierBuilder::build` hands to the tier.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) operation_timeout: Duration,
    pub(crate) multipart_threshold: u64,
    pub(crate) part_size: usize,
    pub(crate) part_concurrency: usize,
    pub(crate) delete_concurrency: usize,
    pub(crate) conditional_create: bool,
    pub(crate) budget: Option<u64>,
    /// How records are encoded and read back: the compression and key provider of
    /// `ObjectTierBuilder::compression` and `ObjectTierBuilder::encryption`.
    pub(crate) format: RecordFormat,
    /// The tier's name: see `ObjectTierBuilder::name`.
    pub(crate) name: &'static str,
}

/// A cache tier on object storage: S3 and compatible servers, the local filesystem, memory,
/// or any other [`ObjectStore`]. See the [crate documentation](crate) for the layout, TTL,
/// budget and failure behaviour.
#[derive(Clone)]
pub struct ObjectTier {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// How streamed puts write as the value arrives (`tier/stream.rs`).
    streaming: Streaming,
    /// What streamed puts hold in memory: now, and at most so far.
    held: stream::Held,
    pub(crate) layout: Layout,
    settings: Settings,
    clock: Arc<dyn Clock>,
    stats: TierStats,
    metrics: Metrics,
    ledger: Option<Mutex<Ledger>>,
    closed: AtomicBool,
    background: Mutex<JoinSet<()>>,
}

enum Written {
    Stored,
    Exists,
}

impl ObjectTier {
    /// A builder for a tier over `store`.
    pub fn builder(store: Arc<dyn ObjectStore>) -> ObjectTierBuilder {
        ObjectTierBuilder::new(store)
    }

    pub(crate) fn from_parts(
        store: Arc<dyn ObjectStore>,
        streaming: Streaming,
        layout: Layout,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> ObjectTier {
        let ledger = settings.budget.map(|capacity| Mutex::new(Ledger::new(capacity)));
        let stats = TierStats::named(TIER, settings.name);
        ObjectTier {
            inner: Arc::new(Inner {
                store,
                streaming,
                held: stream::Held::default(),
                layout,
                settings,
                clock,
                stats,
                metrics: Metrics::new(),
                ledger,
                closed: AtomicBool::new(false),
                background: Mutex::new(JoinSet::new()),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The object store underneath.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The prefix objects go under (empty for none).
    pub fn prefix(&self) -> &str {
        self.inner.layout.prefix()
    }

    /// The path of the object that holds `key`.
    pub fn object_path(&self, key: &Key) -> Path {
        self.inner.layout.object(key)
    }

    /// Request counts, failures, bytes up and down and latency of the object-store calls.
    pub fn metrics(&self) -> ObjectMetrics {
        self.inner.metrics.snapshot()
    }

    /// The most bytes that streamed puts (`Tier::put_stream` uploading as the value arrives)
    /// have held in memory at once, all of them together, since the tier was built: what a
    /// caller sizing memory for large uploads can check against `part_size ×
    /// (part_concurrency + 2)` per upload.
    pub fn stream_buffer_peak(&self) -> u64 {
        self.inner.held.peak()
    }

    /// Reads bytes `range` of the value of `key` without downloading the whole object.
    ///
    /// The range is clamped to the value (a range past its end gives fewer or no bytes). A
    /// chunked record (a value of at least 256 KiB stored raw) is read as the whole chunks
    /// around the range, which are checked against its chunk table: two round trips (the first
    /// one request when the range starts within the first MiB of the object, else two
    /// concurrent ones). A smaller, compressed or sealed record is downloaded and verified
    /// whole (a sealed value opened) and the range cut from it. Either way the stored key and
    /// the expiry are checked, and no byte is returned unverified.
    ///
    /// # Errors
    /// `Invalid` if `range.start > range.end`; `Closed`; a backend failure.
    pub async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        let inner = &self.inner;
        let out = inner.get_range(key, range).await;
        match &out {
            Ok(Some(_)) => inner.stats.hit(),
            Ok(None) => inner.stats.miss(),
            Err(_) => {}
        }
        inner.stats.track(out)
    }

    /// Stores `entry` under `key` only if no object exists for it (`PutMode::Create`),
    /// whatever the tier's `conditional_create` setting. The value goes up in one request.
    ///
    /// # Errors
    /// `Unsupported` if the store cannot create conditionally (a store that silently ignores
    /// it is only detected by `conditional_create(true)` at build time); `Invalid` for a value
    /// larger than the budget; `Closed`; a backend failure.
    pub async fn put_if_absent(&self, key: Key, entry: Entry) -> Result<CreateOutcome> {
        let out = self.inner.put_entry(key, entry, PutMode::Create).await;
        self.inner.stats.track(out.map(|o| match o {
            None => CreateOutcome::Rejected(Rejection::Expired),
            Some(Written::Stored) => CreateOutcome::Created,
            Some(Written::Exists) => CreateOutcome::AlreadyExists,
        }))
    }

    /// Removes every object of `namespace` (a listing and bulk deletes, with at most
    /// `delete_concurrency` delete requests in flight) and returns how many were removed.
    ///
    /// # Errors
    /// `Closed`; a backend failure (objects deleted before it stay deleted).
    pub async fn clear_namespace_count(&self, namespace: &Namespace) -> Result<u64> {
        let out = self.inner.clear_namespace(namespace).await;
        self.inner.stats.track(out)
    }
}

impl fmt::Debug for ObjectTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("ObjectTier")
            .field("store", &format_args!("{}", inner.store))
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

    /// Runs one object-store call under the operation timeout and records it. The outer error
    /// is a timeout; the inner result is the store's, unclassified.
    pub(crate) async fn call_raw<T>(
        &self,
        op: Op,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> std::result::Result<object_store::Result<T>, ObjectError> {
        let timeout = self.settings.operation_timeout;
        let start = Instant::now();
        // `timeout_at` with the start we need anyway: one clock read fewer per request.
        let out = tokio::time::timeout_at((start + timeout).into(), fut)
            .await
            .map_err(|_| ObjectError::Timeout { op, timeout });
        self.metrics.record(op, start.elapsed(), failed(&out));
        out
    }

    /// A whole object, read under two bounds instead of the one operation timeout, so a large
    /// object is not cut off by a timeout sized for small ones: the response must start
    /// within the operation timeout, each piece of the body must follow the one before within
    /// it too, and the whole read must keep up at least [`MIN_BODY_RATE`] after the first.
    async fn get_whole(
        &self,
        path: &Path,
    ) -> std::result::Result<object_store::Result<(Bytes, Option<String>)>, ObjectError> {
        let timeout = self.settings.operation_timeout;
        let start = Instant::now();
        let out = async {
            let head = tokio::time::timeout_at(
                (start + timeout).into(),
                self.store.get_opts(path, GetOptions::default()),
            )
            .await
            .map_err(|_| ObjectError::Timeout { op: Op::Get, timeout })?;
            let r = match head {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let e_tag = r.meta.e_tag.clone();
            let size = r.range.end.saturating_sub(r.range.start);
            let whole = Duration::from_secs_f64(size as f64 / MIN_BODY_RATE as f64);
            let deadline = Instant::now() + timeout + whole;
            let mut body = r.into_stream();
            let mut pieces: Vec<Bytes> = Vec::new();
            loop {
                let bound = (Instant::now() + timeout).min(deadline);
                let next = tokio::time::timeout_at(bound.into(), body.next())
                    .await
                    .map_err(|_| ObjectError::Timeout { op: Op::Get, timeout: start.elapsed() })?;
                match next {
                    None => break,
                    Some(Ok(piece)) => pieces.push(piece),
                    Some(Err(e)) => return Ok(Err(e)),
                }
            }
            let bytes = match pieces.len() {
                0 => Bytes::new(),
                // One piece (an in-memory store): the store's own buffer, not a copy.
                1 => pieces.pop().unwrap_or_default(),
                _ => {
                    let mut joined = Vec::with_capacity(pieces.iter().map(Bytes::len).sum());
                    for piece in &pieces {
                        joined.extend_from_slice(piece);
                    }
                    Bytes::from(joined)
                }
            };
            Ok(Ok((bytes, e_tag)))
        }
        .await;
        self.metrics.record(Op::Get, start.elapsed(), failed(&out));
        out
    }

    /// Like [`Inner::call_raw`], with failures classified.
    pub(crate) async fn call<T>(
        &self,
        op: Op,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> std::result::Result<T, ObjectError> {
        self.call_raw(op, fut).await?.map_err(|e| ObjectError::classify(op, e))
    }

    /// The stored record of `key`, checked; `None` for a miss (absent, corrupt, expired).
    async fn get_record(self: &Arc<Self>, key: &Key) -> Result<Option<Record>> {
        self.check_open()?;
        let path = self.layout.object(key);
        let got = self.get_whole(&path).await?;
        let (bytes, e_tag) = match got {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(ObjectError::classify(Op::Get, e).into()),
        };
        self.metrics.add_down(bytes.len() as u64);
        Ok(self.check_object(key, path, bytes, e_tag).await)
    }

    /// The record in `bytes`, the whole object of `key` at `path`: a valid, matching, unexpired
    /// record, or a miss (a corrupt object is counted and deleted, an expired one deleted).
    async fn check_object(
        self: &Arc<Self>,
        key: &Key,
        path: Path,
        bytes: Bytes,
        e_tag: Option<String>,
    ) -> Option<Record> {
        // Opens a sealed value with the tier's keys; a record that does not open, or a
        // plaintext record in a namespace the tier seals, is corrupt.
        let record = match self.settings.format.decode(bytes) {
            Ok(r) if r.matches(key) && !r.is_tombstone() => r,
            Ok(_) => {
                self.on_corrupt(key, &path, "the object holds a record of another key").await;
                return None;
            }
            Err(e) => {
                self.on_corrupt(key, &path, e.message()).await;
                return None;
            }
        };
        if record.meta().is_expired(self.clock.now()) {
            self.delete_expired_later(key, path, e_tag);
            return None;
        }
        if let Some(ledger) = &self.ledger {
            ledger.lock().touch(key.hash());
        }
        Some(record)
    }

    /// Whether `key` has a live entry, reading only the record head.
    async fn contains(self: &Arc<Self>, key: &Key) -> Result<bool> {
        self.check_open()?;
        let path = self.layout.object(key);
        let head_len = layout::head_len(key);
        let got = self
            .call_raw(Op::GetRange, async {
                let opts = GetOptions::new().with_range(Some(GetRange::Bounded(0..head_len)));
                let r = self.store.get_opts(&path, opts).await?;
                let (size, e_tag) = (r.meta.size, r.meta.e_tag.clone());
                Ok((r.bytes().await?, size, e_tag))
            })
            .await?;
        match got {
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Ok((bytes, size, e_tag)) => {
                self.metrics.add_down(bytes.len() as u64);
                match layout::parse_head(key, &bytes, size) {
                    Ok(head) if head.meta.is_expired(self.clock.now()) => {
                        self.delete_expired_later(key, path, e_tag);
                        Ok(false)
                    }
                    // Sealed where the tier writes plaintext, or the reverse: whether it opens
                    // (or is refused) is for a full read to decide.
                    Ok(head) if head.header.is_sealed() != self.settings.format.seals(key) => {
                        Ok(self.get_record(key).await?.is_some())
                    }
                    Ok(_) => Ok(true),
                    // Let a full read count, report and delete it.
                    Err(_) => Ok(self.get_record(key).await?.is_some()),
                }
            }
            // A ranged read the store refused (an object shorter than a head, say): read it all.
            Err(_) => Ok(self.get_record(key).await?.is_some()),
        }
    }

    /// A ranged read that never returns a byte it has not verified. A record below the chunked
    /// threshold (one checksum over all of it, and a compressed value decodes only whole) and a
    /// sealed record (no chunk table: its value authenticates and opens only whole) are read
    /// whole. A chunked record's range is read as the whole chunks around it, with the
    /// record's head and chunk table, and those chunks are checked against the table
    /// (`RecordHead::verify_piece`): a 4 KiB range of a 1 GiB value downloads its head, one or
    /// two 64 KiB chunks and a 128 KiB table, in two round trips.
    async fn get_range(self: &Arc<Self>, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        self.check_open()?;
        cache_core::check_range(TIER, &range)?;
        let path = self.layout.object(key);
        let head_len = layout::head_len(key);
        let ranged = |r: Range<u64>| {
            let path = &path;
            async move {
                let opts = GetOptions::new().with_range(Some(GetRange::Bounded(r)));
                let got = self.store.get_opts(path, opts).await?;
                let (size, e_tag) = (got.meta.size, got.meta.e_tag.clone());
                Ok((got.bytes().await?, size, e_tag))
            }
        };
        let whole = || async { Ok(self.get_record(key).await?.map(|r| clamp(&r.value(), &range))) };
        if self.settings.format.seals(key) {
            // The tier seals this namespace, so its records are sealed (version 4, opened only
            // whole) and a plaintext one is refused by the full read: no ranged request helps.
            return whole().await;
        }
        // The whole chunks around the range, at the chunk size this build writes; a record of
        // another chunk size has its piece fetched again below.
        let chunk = 1u64 << CHUNK_SHIFT;
        let guess = range.start / chunk * chunk..range.end.div_ceil(chunk).saturating_mul(chunk);
        let at = |r: &Range<u64>| head_len.saturating_add(r.start)..head_len.saturating_add(r.end);
        let one_request = range.start <= ONE_REQUEST_RANGE;
        let (head, far) = if one_request {
            (self.call_raw(Op::GetRange, ranged(0..at(&guess).end.max(head_len))).await?, None)
        } else {
            let (head, far) = futures::join!(
                self.call_raw(Op::GetRange, ranged(0..head_len)),
                self.call_raw(Op::GetRange, ranged(at(&guess))),
            );
            (head?, Some(far?))
        };
        let (bytes, size, e_tag) = match head {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            // Shorter than a head, or otherwise unreadable in ranges: a full read decides.
            Err(_) => return whole().await,
        };
        self.metrics.add_down(bytes.len() as u64);
        let head = match layout::parse_head(key, &bytes, size) {
            Ok(head) => head,
            Err(e) => {
                self.on_corrupt(key, &path, e.message()).await;
                return Ok(None);
            }
        };
        if head.meta.is_expired(self.clock.now()) {
            self.delete_expired_later(key, path, e_tag);
            return Ok(None);
        }
        if head.header.is_sealed() || head.header.version != RECORD_VERSION_CHUNKED {
            // One checksum over the whole record (versions 1 and 3), or a sealed value (version
            // 4, never chunked, however large): verified and opened only whole. The request
            // above holds all of it when the range reaches the value's end.
            if bytes.len() as u64 == size {
                let record = self.check_object(key, path, bytes, e_tag).await;
                return Ok(record.map(|r| clamp(&r.value(), &range)));
            }
            return whole().await;
        }
        let value_len = head.value_len;
        let (start, end) = (range.start.min(value_len), range.end.min(value_len));
        if start == end {
            return Ok(Some(Bytes::new()));
        }
        let (first, piece) = head.header.chunks_around(&range);
        // The piece, if a request above already holds it.
        let fetched = match far {
            None => Some((bytes.clone(), 0)),
            Some(Ok((far, _, far_tag))) => {
                self.metrics.add_down(far.len() as u64);
                (far_tag == e_tag).then_some((far, at(&guess).start))
            }
            Some(Err(object_store::Error::NotFound { .. })) => return Ok(None),
            Some(Err(e)) => return Err(ObjectError::classify(Op::GetRange, e).into()),
        };
        let held = fetched.and_then(|(b, from)| {
            let (lo, hi) = (at(&piece).start.checked_sub(from)?, at(&piece).end.checked_sub(from)?);
            (hi as usize <= b.len()).then(|| b.slice(lo as usize..hi as usize))
        });
        let table = head.value_offset + value_len..size;
        let piece_fetched_here = held.is_none();
        let (table, piece_bytes) = match held {
            Some(p) => {
                (self.call_raw(Op::GetRange, ranged(table)).await?, Ok((p, size, e_tag.clone())))
            }
            None => {
                let (t, p) = futures::join!(
                    self.call_raw(Op::GetRange, ranged(table)),
                    self.call_raw(Op::GetRange, ranged(at(&piece))),
                );
                (t?, p?)
            }
        };
        let (table, piece_bytes) = match (table, piece_bytes) {
            (Ok((t, _, t_tag)), Ok((p, _, p_tag))) => {
                self.metrics.add_down(t.len() as u64);
                if piece_fetched_here {
                    self.metrics.add_down(p.len() as u64);
                }
                if t_tag != e_tag || p_tag != e_tag {
                    // The object changed between the requests: read it whole.
                    return whole().await;
                }
                (t, p)
            }
            (Err(object_store::Error::NotFound { .. }), _)
            | (_, Err(object_store::Error::NotFound { .. })) => return Ok(None),
            (Err(e), _) | (_, Err(e)) => return Err(ObjectError::classify(Op::GetRange, e).into()),
        };
        let verified = cache_core::RecordHead::parse(&bytes)
            .and_then(|h| h.verify_piece(&table, first, &piece_bytes));
        if let Err(e) = verified {
            self.on_corrupt(key, &path, e.message()).await;
            return Ok(None);
        }
        Ok(Some(piece_bytes.slice((start - piece.start) as usize..(end - piece.start) as usize)))
    }

    /// Stamps, encodes and writes `entry`; `None` if it had already expired.
    async fn put_entry(
        self: &Arc<Self>,
        key: Key,
        mut entry: Entry,
        mode: PutMode,
    ) -> Result<Option<Written>> {
        self.check_open()?;
        let now = self.clock.now();
        if reject_expired(&entry.meta, now, &self.stats).is_some() {
            self.drop_stale(&key, mode).await?;
            return Ok(None);
        }
        entry.meta.stamp(now);
        let format = &self.settings.format;
        if format.seals(&key) {
            // Sealing copies the whole value, so a value that cannot fit is refused before it
            // is (an upper bound: a compressible value may be refused that would have fit once
            // compressed). A plaintext record is not copied, and `write` checks its exact size.
            self.check_size(format.encoded_len(&key, entry.value.len()) as u64)?;
        }
        let split = format.encode_parts(&key, &entry).map_err(|e| e.with_tier(TIER))?;
        self.write(&key, split, mode).await.map(Some)
    }

    /// Writes a record that holds `key` (checked by `Tier::put_record`): as it is if this
    /// tier's format reads it back so, else re-encoded from its entry (a plaintext record of a
    /// namespace the tier seals is sealed, a record sealed under a key the tier lacks is
    /// re-sealed under its own or stored in plaintext; a decoded record's value is plaintext).
    async fn put_record(self: &Arc<Self>, key: Key, record: Record) -> Result<Option<Written>> {
        self.check_open()?;
        let as_is = self.settings.format.stores_as_is(&record);
        if record.meta().created_at == Timestamp::ZERO || !as_is {
            if record.is_sealed() && record.value().len() as u64 != record.header().decoded_len {
                // Decoded without opening (`Record::decode_unopened`): its value is not there.
                return Err(Error::invalid(
                    TIER,
                    "a sealed record that was not opened cannot be re-encoded: decode it with \
                     its record format first",
                ));
            }
            return self.put_entry(key, record.to_entry(), self.put_mode()).await;
        }
        if reject_expired(record.meta(), self.clock.now(), &self.stats).is_some() {
            self.drop_stale(&key, self.put_mode()).await?;
            return Ok(None);
        }
        self.write(&key, record.parts(), self.put_mode()).await.map(Some)
    }

    /// Deletes the object of `key` after an overwriting put of it was rejected (already
    /// expired), so an older value never outlives a newer write. Not counted as a removal; a
    /// conditional create never replaces, so it leaves the object alone.
    async fn drop_stale(self: &Arc<Self>, key: &Key, mode: PutMode) -> Result<()> {
        if !matches!(mode, PutMode::Overwrite) {
            return Ok(());
        }
        if let Some(ledger) = &self.ledger {
            ledger.lock().remove(key.hash());
        }
        self.delete_object(&self.layout.object(key)).await?;
        Ok(())
    }

    /// Deletes the object at `path` under the operation timeout: `true` if it was there,
    /// `false` if it was already gone (not an error: deletes race with each other and with
    /// expiry), or the failure, classified.
    async fn delete_object(&self, path: &Path) -> std::result::Result<bool, ObjectError> {
        let deleted = self.call_raw(Op::Delete, self.store.delete(path)).await?;
        existed(deleted).map_err(|e| ObjectError::classify(Op::Delete, e))
    }

    fn put_mode(&self) -> PutMode {
        if self.settings.conditional_create { PutMode::Create } else { PutMode::Overwrite }
    }

    /// `Invalid` for a record of `size` bytes larger than the byte budget.
    fn check_size(&self, size: u64) -> Result<()> {
        match self.settings.budget {
            Some(budget) if size > budget => Err(Error::invalid(
                TIER,
                format!("a record of {size} bytes cannot fit in the byte budget of {budget}"),
            )),
            _ => Ok(()),
        }
    }

    /// Writes one record object, accounts for it and evicts to stay within the budget.
    async fn write(
        self: &Arc<Self>,
        key: &Key,
        split: RecordParts,
        mode: PutMode,
    ) -> Result<Written> {
        let size = split.len() as u64;
        self.check_size(size)?;
        let path = self.layout.object(key);
        let conditional = matches!(mode, PutMode::Create);
        if conditional || size < self.settings.multipart_threshold {
            let payload: PutPayload = split.chunks().collect();
            let put = self
                .call_raw(Op::Put, self.store.put_opts(&path, payload, PutOptions::from(mode)))
                .await?;
            match put {
                Ok(_) => self.metrics.add_up(size),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) if conditional => return Ok(Written::Exists),
                Err(e) => return Err(ObjectError::classify(Op::Put, e).into()),
            }
        } else {
            self.multipart(&path, &split).await?;
        }
        self.account(key, size).await;
        Ok(Written::Stored)
    }

    /// Records a written object in the budget account and evicts the oldest to stay within it.
    async fn account(&self, key: &Key, size: u64) {
        let Some(ledger) = &self.ledger else { return };
        let victims = ledger.lock().insert(key.namespace().id(), *key.hash(), size);
        if victims.is_empty() {
            return;
        }
        let evicted = futures::stream::iter(victims)
            .map(|v| async move {
                let path = self.layout.object_of(v.ns, &v.hash);
                match self.delete_object(&path).await {
                    Ok(_) => true,
                    Err(error) => {
                        tracing::warn!(%error, "deleting an object to stay within the budget failed");
                        if let Some(ledger) = &self.ledger {
                            ledger.lock().restore(v);
                        }
                        false
                    }
                }
            })
            .buffer_unordered(self.settings.delete_concurrency)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        self.stats.evict(evicted as u64);
    }

    /// A corrupt object: counted, forgotten and deleted (a failed delete is only logged).
    async fn on_corrupt(&self, key: &Key, path: &Path, why: &str) {
        self.stats.corrupt();
        tracing::warn!(path = %path, reason = why, "corrupt object in the object tier; deleting it");
        if let Some(ledger) = &self.ledger {
            ledger.lock().remove(key.hash());
        }
        if let Err(error) = self.delete_object(path).await {
            tracing::warn!(%error, "deleting a corrupt object failed");
        }
    }

    /// Deletes an expired object in the background, unless it was rewritten since it was read
    /// (its ETag changed).
    fn delete_expired_later(self: &Arc<Self>, key: &Key, path: Path, e_tag: Option<String>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut tasks = self.background.lock();
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= MAX_BACKGROUND {
            return;
        }
        let this = Arc::clone(self);
        let hash = *key.hash();
        tasks.spawn(async move {
            if let Some(read) = &e_tag {
                let head = this.call_raw(Op::GetRange, this.store.head(&path)).await;
                match head {
                    Ok(Ok(meta)) if meta.e_tag.as_ref() == Some(read) => {}
                    _ => return, // rewritten, already gone, or unreachable: leave it
                }
            }
            if let Some(ledger) = &this.ledger {
                ledger.lock().remove(&hash);
            }
            match this.delete_object(&path).await {
                Ok(true) => this.stats.expire(),
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, "deleting an expired object failed"),
            }
        });
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        if let Some(ledger) = &self.ledger {
            ledger.lock().remove(key.hash());
        }
        self.delete_object(&self.layout.object(key)).await?;
        self.stats.remove();
        Ok(())
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<u64> {
        self.check_open()?;
        if let Some(ledger) = &self.ledger {
            ledger.lock().clear_namespace(namespace.id());
        }
        let prefix = self.layout.namespace(namespace);
        let mut listing = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).fuse();
        let mut deletes = FuturesUnordered::new();
        let mut removed = 0u64;
        loop {
            let batch = self
                .call(Op::List, async {
                    let mut batch = Vec::with_capacity(DELETE_BATCH);
                    while batch.len() < DELETE_BATCH {
                        match listing.next().await {
                            Some(location) => batch.push(location?),
                            None => break,
                        }
                    }
                    Ok(batch)
                })
                .await?;
            let last = batch.len() < DELETE_BATCH;
            if !batch.is_empty() {
                while deletes.len() >= self.settings.delete_concurrency {
                    removed += deletes.next().await.expect("deletes in flight")?;
                }
                deletes.push(self.delete_batch(batch));
            }
            if last {
                break;
            }
        }
        while let Some(n) = deletes.next().await {
            removed += n?;
        }
        Ok(removed)
    }

    /// Deletes a batch of objects in one bulk request where the store has one.
    async fn delete_batch(&self, batch: Vec<Path>) -> Result<u64> {
        let locations = futures::stream::iter(batch.into_iter().map(Ok)).boxed();
        let results = self.call(Op::Delete, async {
            let mut stream = self.store.delete_stream(locations);
            let mut removed = 0u64;
            while let Some(r) = stream.next().await {
                removed += u64::from(existed(r)?);
            }
            Ok(removed)
        });
        Ok(results.await?)
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

/// Clamps `range` to `value` and slices it.
fn clamp(value: &Bytes, range: &Range<u64>) -> Bytes {
    let len = value.len() as u64;
    let end = range.end.min(len);
    let start = range.start.min(end);
    value.slice(start as usize..end as usize)
}

#[async_trait]
impl Tier for ObjectTier {
    fn name(&self) -> &'static str {
        self.inner.settings.name
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        Ok(self.get_record(key).await?.map(|r| r.to_entry()))
    }

    /// Ranged GETs ([`ObjectTier::get_range`]).
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        ObjectTier::get_range(self, key, range).await
    }

    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        let inner = &self.inner;
        let out = inner.put_entry(key, entry, inner.put_mode()).await;
        inner.stats.track(outcome(inner, out))
    }

    /// A value of at least the multipart threshold (and of 256 KiB) is written as it arrives
    /// when the store uploads parts by index ([`ObjectTierBuilder::new_multipart`],
    /// [`ObjectTierBuilder::s3`], [`ObjectTierBuilder::in_memory`]) or is a local directory
    /// ([`ObjectTierBuilder::local`]), and the tier neither seals its namespace nor creates
    /// conditionally: memory stays within about `part_size × (part_concurrency + 2)` (a
    /// multipart upload) or one piece of the body (a local file), whatever the value's length.
    /// A failure aborts the upload or removes the staging file, so the key keeps its earlier
    /// value. Otherwise the value is gathered first, as [`Tier::put_stream`]'s default does.
    /// The [crate docs](crate#large-values) say how each is written.
    async fn put_stream(
        &self,
        key: Key,
        meta: EntryMeta,
        len: u64,
        body: ValueStream,
    ) -> Result<PutOutcome> {
        let inner = &self.inner;
        let out = inner.put_stream(key, meta, len, body).await;
        inner.stats.track(outcome(inner, out))
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let out = self.inner.remove(key).await;
        self.inner.stats.track(out)
    }

    async fn contains(&self, key: &Key) -> Result<bool> {
        let out = self.inner.contains(key).await;
        self.inner.stats.track(out)
    }

    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()> {
        self.clear_namespace_count(namespace).await.map(|_| ())
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

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        ordered(keys.iter().map(|k| self.get(k)), BATCH_CONCURRENCY).await
    }

    /// Concurrent when the keys are distinct (so on failure, entries after the failing one may
    /// have been stored too); in order otherwise, so the last write of a key wins.
    async fn put_many(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        let distinct = items.iter().map(|(k, _)| *k.hash()).collect::<HashSet<_>>().len();
        let concurrency = if distinct == items.len() { BATCH_CONCURRENCY } else { 1 };
        ordered(items.into_iter().map(|(k, e)| self.put(k, e)), concurrency).await
    }

    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        let inner = &self.inner;
        let out = inner.get_record(key).await;
        match &out {
            Ok(Some(_)) => inner.stats.hit(),
            Ok(None) => inner.stats.miss(),
            Err(_) => {}
        }
        inner.stats.track(out)
    }

    async fn put_valid_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        let inner = &self.inner;
        let out = inner.put_record(key, record).await;
        inner.stats.track(outcome(inner, out))
    }
}

/// A delete's result: whether the object existed (`NotFound`: it was already gone, which a
/// delete tolerates), or the store's failure.
fn existed<T>(deleted: object_store::Result<T>) -> object_store::Result<bool> {
    match deleted {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs `futures` with at most `concurrency` at a time; results in input order, or the first
/// error.
async fn ordered<T, F: Future<Output = Result<T>>>(
    futures: impl ExactSizeIterator<Item = F>,
    concurrency: usize,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(futures.len());
    let mut in_flight = futures::stream::FuturesOrdered::new();
    for fut in futures {
        if in_flight.len() >= concurrency
            && let Some(done) = in_flight.next().await
        {
            out.push(done?);
        }
        in_flight.push_back(fut);
    }
    while let Some(done) = in_flight.next().await {
        out.push(done?);
    }
    Ok(out)
}

/// The `Tier::put` outcome of a write; a lost conditional create is an `Invalid` error, the
/// `PutOutcome` of cache-core having no "already exists".
fn outcome(inner: &Inner, written: Result<Option<Written>>) -> Result<PutOutcome> {
    match written? {
        None => Ok(PutOutcome::Rejected(Rejection::Expired)),
        Some(Written::Stored) => {
            inner.stats.insert();
            Ok(PutOutcome::Stored)
        }
        Some(Written::Exists) => {
            inner.stats.reject();
            Err(Error::new(
                ErrorKind::Invalid,
                TIER,
                "the key already has a value and this tier is write-once (conditional create): \
                 the existing value was kept",
            ))
        }
    }
}

mod multipart;
mod stream;
pub(crate) use stream::Streaming;

/// The slowest a whole-object read may be after its first byte, in bytes per second, before it
/// fails as a timeout: 1 GiB may take 64 s beyond the operation timeout.
const MIN_BODY_RATE: u64 = 16 << 20;

/// Whether a call's outcome counts as failed in the metrics: a timeout or an error, except the
/// answers that are results (absent, exists already, precondition not met).
fn failed<T>(out: &std::result::Result<object_store::Result<T>, ObjectError>) -> bool {
    match out {
        Err(_) => true,
        Ok(Err(
            object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. },
        )) => false,
        Ok(r) => r.is_err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_named_tier_carries_its_name_in_errors_and_stats() {
        let tier = ObjectTier::builder(Arc::new(object_store::memory::InMemory::new()))
            .name("bucket-a")
            .build()
            .await
            .unwrap();
        assert_eq!((tier.name(), tier.stats().tier), ("bucket-a", "bucket-a"));
        tier.close().await.unwrap();
        let err = tier.get(&Key::new("ns", "k").unwrap()).await.unwrap_err();
        assert_eq!((err.kind(), err.tier()), (ErrorKind::Closed, "bucket-a"));
    }
}
