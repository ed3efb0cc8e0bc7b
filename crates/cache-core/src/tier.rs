//! The [`Tier`] trait: the contract every cache layer implements.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::{
    entry::Entry,
    error::{Error, ErrorKind, Result},
    key::{Key, Namespace},
    policy::{EvictionSink, PutOutcome},
    record::Record,
    stats::{StatsSnapshot, Usage},
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
/// (RocksDB `multi_get`, `WriteBatch`), and `get_record`/`put_record` when it stores records,
/// so entries move between tiers as bytes without re-encoding. Tiers that can report evictions
/// override `set_eviction_sink`.
#[async_trait]
pub trait Tier: Send + Sync + fmt::Debug + 'static {
    /// A short static name for errors, stats and metrics (`"l1"`, `"nvme"`, …).
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

    /// Stores an encoded record for `key`.
    ///
    /// The default decodes the entry; persistent tiers store the bytes as they are.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] if `record` does not hold `key`; otherwise as for [`Tier::put`].
    async fn put_record(&self, key: Key, record: Record) -> Result<PutOutcome> {
        check_record_key(self.name(), &key, &record)?;
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
