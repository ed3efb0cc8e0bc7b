//! The [`Tier`] trait: the contract every cache layer implements.

use std::{
    fmt,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    clock::Timestamp,
    entry::{Entry, EntryMeta},
    error::{Error, ErrorKind, Result},
    key::{Key, Namespace},
    policy::{EvictionSink, PutOutcome, Rejection},
    record::Record,
    stats::{StatsSnapshot, TierStats, Usage},
};

/// One layer of the cache: RAM, local disk or object storage.
///
/// The trait is object-safe (`cache-tiered` holds `Arc<dyn Tier>`) and async through
/// `async_trait` (see ARCHITECTURE.md for why).
///
/// # Contract
///
/// Every implementation guarantees, and the conformance suite in `testkit` checks:
/// - `put` then `get` returns the same value and metadata, unless the entry was evicted,
///   expired or removed since. A `get` never returns a value that was overwritten or removed.
/// - A miss is `Ok(None)`, never an error. Corrupt stored data is a miss, counted in
///   [`StatsSnapshot::corrupted`], never a wrong value.
/// - An entry whose expiry has passed by the tier's clock is never returned.
/// - Namespaces are isolated: `clear_namespace(a)` removes every entry of `a` and nothing else.
/// - After `flush` returns, `usage().bytes_used <= usage().capacity`, and on persistent tiers
///   every acknowledged write is durable.
/// - After `close`, every call returns [`ErrorKind::Closed`]; `close` itself may be repeated.
///
/// # Implementing
///
/// Implement the required methods. Override `get_many`/`put_many` when the backend batches
/// (RocksDB `multi_get`, `WriteBatch`), and `get_record`/`put_valid_record` when it stores
/// records, so entries move between tiers as bytes without re-encoding. Start every call with
/// [`check_open`]; a put of an expired entry follows [`reject_expired`]. Tiers that can report evictions
/// override `set_eviction_sink`.
#[async_trait]
pub trait Tier: Send + Sync + fmt::Debug + 'static {
    /// A short static name for errors, stats and metrics (`"l1"`, `"nvme"`, …). Every tier of
    /// this workspace has its kind as the default and takes another from its builder's
    /// `name`, so two tiers of one kind in a stack can be told apart in reports and metrics.
    fn name(&self) -> &'static str;

    /// Looks up `key`. `Ok(None)` is a miss.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], or a backend failure ([`ErrorKind::Io`], [`ErrorKind::Unavailable`]).
    async fn get(&self, key: &Key) -> Result<Option<Entry>>;

    /// Stores `entry` under `key`, replacing any previous value.
    ///
    /// An entry without a creation time is stamped with the tier's clock. An entry that has
    /// already expired is not stored (`Rejected(Expired)`).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] for a value the tier can never hold (larger than its capacity or
    /// format limit); nothing is changed in that case. [`ErrorKind::Closed`], or a backend failure.
    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome>;

    /// Removes `key` if present.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], or a backend failure.
    async fn remove(&self, key: &Key) -> Result<()>;

    /// Whether `key` has a live (unexpired) entry. May be cheaper than `get`.
    ///
    /// # Errors
    /// As for [`Tier::get`].
    async fn contains(&self, key: &Key) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// Reads bytes `range` of the value of `key`: `Ok(None)` is a miss, as for [`Tier::get`].
    ///
    /// The range is clamped to the value, so a range past its end gives fewer bytes, or none
    /// (a hit with an empty slice). The default slices a full [`Tier::get`] (zero-copy, but it
    /// reads and verifies the whole value); tiers that can read part of a value override it:
    /// the object tier with a ranged GET, the NVMe tier by verifying only the chunks the range
    /// covers (see the record format in `docs/format.md`).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] if `range.start > range.end` ([`check_range`]); otherwise as for
    /// [`Tier::get`].
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        check_range(self.name(), &range)?;
        Ok(self.get(key).await?.map(|entry| slice_range(&entry.value, &range)))
    }

    /// Removes an older copy of `key` that a composition will not overwrite (a tier it does
    /// not write a put to): afterwards `key` is absent, as after [`Tier::remove`]. The default
    /// asks [`Tier::contains`] first, which on most tiers is cheaper than a removal; a tier
    /// that knows presence without reading the entry (an in-memory index) overrides it, so the
    /// caller's put pays no read.
    ///
    /// # Errors
    /// As for [`Tier::remove`] and [`Tier::contains`].
    async fn drop_older_copy(&self, key: &Key) -> Result<()> {
        if self.contains(key).await? { self.remove(key).await } else { Ok(()) }
    }

    /// Removes every entry of `namespace`.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], or a backend failure.
    async fn clear_namespace(&self, namespace: &Namespace) -> Result<()>;

    /// Bytes used and the byte budget.
    fn usage(&self) -> Usage;

    /// A snapshot of the tier's counters.
    fn stats(&self) -> StatsSnapshot;

    /// A barrier: completes pending maintenance and, on persistent tiers, makes every write
    /// acknowledged before the call durable.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], or a backend failure.
    async fn flush(&self) -> Result<()>;

    /// Flushes and releases the tier. Later calls return [`ErrorKind::Closed`].
    ///
    /// # Errors
    /// A backend failure while flushing.
    async fn close(&self) -> Result<()>;

    /// Looks up several keys; the result is in the order of `keys`.
    ///
    /// # Errors
    /// As for [`Tier::get`].
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    /// Stores several entries; the result is in the order of `items`.
    ///
    /// # Errors
    /// As for [`Tier::put`]; entries before the failing one may have been stored.
    async fn put_many(&self, items: Vec<(Key, Entry)>) -> Result<Vec<PutOutcome>> {
        let mut out = Vec::with_capacity(items.len());
        for (key, entry) in items {
            out.push(self.put(key, entry).await?);
        }
        Ok(out)
    }

    /// Stores a value of exactly `len` bytes that arrives in pieces from `body`, with `meta`,
    /// under `key`, replacing any previous value.
    ///
    /// For a value too large to build in memory first: the default gathers the pieces into one
    /// buffer of `len` bytes ([`collect_value`]: a single piece of exactly `len` bytes is kept
    /// without a copy) and calls [`Tier::put`], so the value is held once, never twice. A tier
    /// that can write pieces as they come overrides it: the object tier uploads a large value as
    /// a multipart upload of bounded memory.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] if `body` yields more or fewer than `len` bytes, and the first
    /// error `body` yields, as it is; otherwise as for [`Tier::put`]. On any error the tier is
    /// unchanged: an earlier value of `key` stays.
    async fn put_stream(
        &self,
        key: Key,
        meta: EntryMeta,
        len: u64,
        body: ValueStream,
    ) -> Result<PutOutcome> {
        let value = collect_value(self.name(), len, body).await?;
        self.put(key, Entry { value, meta }).await
    }

    /// Looks up `key` and returns its encoded record.
    ///
    /// The default encodes the entry; persistent tiers return their stored bytes.
    ///
    /// # Errors
    /// As for [`Tier::get`].
    async fn get_record(&self, key: &Key) -> Result<Option<Record>> {
        match self.get(key).await? {
            None => Ok(None),
            Some(entry) => Record::decode(Record::encode(key, &entry)).map(Some),
        }
    }

    /// Stores an encoded record for `key`: checks that `record` holds `key` and is not a
    /// tombstone ([`check_record_key`]), then calls [`Tier::put_valid_record`].
    ///
    /// Implement [`Tier::put_valid_record`], not this method, so the check cannot be left out.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] if `record` does not hold `key` (even on a closed tier);
    /// otherwise as for [`Tier::put`].
    async fn put_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        check_record_key(self.name(), &key, &record)?;
        self.put_valid_record(key, record).await
    }

    /// Stores a record that [`Tier::put_record`] checked to hold `key`.
    ///
    /// The default decodes the entry and calls [`Tier::put`]; persistent tiers store the bytes
    /// as they are.
    ///
    /// # Errors
    /// As for [`Tier::put`].
    async fn put_valid_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        self.put(key, record.to_entry()).await
    }

    /// Sends what this tier evicts to `sink` from now on.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] by default: the tier does not report evictions.
    fn set_eviction_sink(&self, sink: Arc<dyn EvictionSink>) -> Result<()> {
        let _ = sink;
        Err(Error::new(ErrorKind::Unsupported, self.name(), "this tier does not report evictions"))
    }
}

/// A value that arrives in pieces, for [`Tier::put_stream`]: any stream of byte buffers, boxed
/// (`futures::StreamExt::boxed`). An error it yields ends the put with that error.
pub type ValueStream = futures::stream::BoxStream<'static, Result<Bytes>>;

/// Gathers a value of exactly `len` bytes from `body` into one buffer: what
/// [`Tier::put_stream`] does by default. A single piece of exactly `len` bytes is returned as
/// it is; otherwise the pieces are copied into one allocation of `len` bytes as they arrive,
/// each dropped once copied, so the value is never held twice.
///
/// ```
/// # futures::executor::block_on(async {
/// use bytes::Bytes;
/// use cache_core::{ErrorKind, collect_value};
/// use futures::StreamExt;
///
/// let pieces = futures::stream::iter([Ok(Bytes::from("ab")), Ok(Bytes::from("cd"))]);
/// assert_eq!(collect_value("mine", 4, pieces.boxed()).await.unwrap(), "abcd");
///
/// let short = futures::stream::iter([Ok(Bytes::from("ab"))]);
/// let err = collect_value("mine", 4, short.boxed()).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Invalid);
/// # });
/// ```
///
/// # Errors
/// [`ErrorKind::Invalid`] (naming `tier`) if `body` yields more or fewer than `len` bytes, or
/// if `len` cannot be allocated; the first error `body` yields, as it is.
pub async fn collect_value(tier: &'static str, len: u64, mut body: ValueStream) -> Result<Bytes> {
    use futures::StreamExt;
    let too_long =
        || Error::invalid(tier, format!("the value runs past its declared length of {len} bytes"));
    let cap = usize::try_from(len).map_err(|_| too_long())?;
    // The only piece so far, kept as it is until a second one needs a buffer for both.
    let mut only: Option<Bytes> = None;
    let mut out: Option<Vec<u8>> = None;
    let mut got = 0usize;
    while let Some(piece) = body.next().await.transpose()? {
        if piece.len() > cap - got {
            return Err(too_long());
        }
        got += piece.len();
        if piece.is_empty() {
            continue;
        }
        match (&mut out, only.take()) {
            (Some(out), _) => out.extend_from_slice(&piece),
            (None, None) => only = Some(piece),
            (None, Some(first)) => {
                let mut buf = Vec::new();
                buf.try_reserve_exact(cap).map_err(|_| {
                    Error::invalid(
                        tier,
                        format!("cannot allocate a buffer for a value of {len} bytes"),
                    )
                })?;
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&piece);
                out = Some(buf);
            }
        }
    }
    if got != cap {
        return Err(Error::invalid(
            tier,
            format!("the value ended after {got} of its declared {len} bytes"),
        ));
    }
    Ok(match (out, only) {
        (Some(out), _) => out.into(),
        (None, only) => only.unwrap_or_default(),
    })
}

/// The contract's answer once a tier is closed: [`ErrorKind::Closed`] if `closed` is set.
///
/// Every tier keeps its `closed` flag, sets it in [`Tier::close`] and starts every other call
/// with this check.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use cache_core::{ErrorKind, check_open};
/// let closed = AtomicBool::new(false);
/// assert!(check_open("mine", &closed).is_ok());
/// closed.store(true, Ordering::Release);
/// assert_eq!(check_open("mine", &closed).unwrap_err().kind(), ErrorKind::Closed);
/// ```
///
/// # Errors
/// [`ErrorKind::Closed`], naming `tier`, once `closed` is set.
pub fn check_open(tier: &'static str, closed: &AtomicBool) -> Result<()> {
    if closed.load(Ordering::Acquire) { Err(Error::closed(tier)) } else { Ok(()) }
}

/// The contract's rule for a put of an entry that has already expired at `now`: it is not
/// stored (`Rejected(Expired)`, counted in `stats` as a rejection), and it supersedes whatever
/// the key held, so on `Some` the tier drops its older copy of the key before it returns
/// [`PutOutcome::Rejected`] (a `get` must never serve the value the put replaced).
///
/// ```
/// use cache_core::{EntryMeta, Rejection, TierStats, Timestamp, reject_expired};
/// let stats = TierStats::new("mine");
/// let live = EntryMeta { expires_at: Some(Timestamp::from_millis(20)), ..EntryMeta::default() };
/// assert_eq!(reject_expired(&live, Timestamp::from_millis(10), &stats), None);
/// assert_eq!(reject_expired(&live, Timestamp::from_millis(20), &stats), Some(Rejection::Expired));
/// assert_eq!(stats.snapshot(Default::default()).rejections, 1);
/// ```
pub fn reject_expired(meta: &EntryMeta, now: Timestamp, stats: &TierStats) -> Option<Rejection> {
    if !meta.is_expired(now) {
        return None;
    }
    stats.reject();
    Some(Rejection::Expired)
}

/// The check every [`Tier::get_range`] makes first: a range must not end before it starts.
///
/// # Errors
/// [`ErrorKind::Invalid`], naming `tier`, if `range.start > range.end`.
pub fn check_range(tier: &'static str, range: &Range<u64>) -> Result<()> {
    if range.start > range.end {
        return Err(Error::invalid(
            tier,
            format!("range {}..{} ends before it starts", range.start, range.end),
        ));
    }
    Ok(())
}

/// Bytes `range` of `value`, clamped to its length (zero-copy): what [`Tier::get_range`]
/// returns for a value it holds whole.
///
/// ```
/// use bytes::Bytes;
/// let v = Bytes::from_static(b"abcdef");
/// assert_eq!(cache_core::slice_range(&v, &(1..3)), "bc");
/// assert_eq!(cache_core::slice_range(&v, &(4..99)), "ef");
/// assert!(cache_core::slice_range(&v, &(9..12)).is_empty());
/// ```
pub fn slice_range(value: &Bytes, range: &Range<u64>) -> Bytes {
    let len = value.len() as u64;
    let (start, end) = (range.start.min(len), range.end.min(len));
    value.slice(start as usize..end.max(start) as usize)
}

/// Checks that `record` stores `key`; the check every `put_record` makes.
///
/// # Errors
/// [`ErrorKind::Invalid`] if it does not, or if the record is a tombstone.
pub fn check_record_key(tier: &'static str, key: &Key, record: &Record) -> Result<()> {
    if !record.matches(key) {
        return Err(Error::invalid(tier, "record does not hold the key it is stored under"));
    }
    if record.is_tombstone() {
        return Err(Error::invalid(tier, "a tombstone cannot be stored as a value"));
    }
    Ok(())
}
