//! Counters of a [`CachedObjectStore`](crate::CachedObjectStore): atomics read as a
//! [`CachedStoreStats`] snapshot, mirrored to the `metrics` facade as
//! `cache_object_store_<counter>_total{store}`.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::Counter;

/// A snapshot of a [`CachedObjectStore`](crate::CachedObjectStore)'s counters.
///
/// Reads are `get`/`get_opts`/`get_range` calls with a body and `get_ranges` calls; `head`
/// calls are counted apart. A chunk read is one chunk needed by one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CachedStoreStats {
    /// Reads answered from chunks (cached or fetched), with their identity.
    pub reads: u64,
    /// `head` calls (and `get_opts` with `head: true`).
    pub heads: u64,
    /// Reads and heads sent to the origin as they are: conditional or versioned requests,
    /// ranges the object cannot satisfy (so the caller gets the origin's error), and
    /// locations too long for a cache key.
    pub passthrough: u64,
    /// Chunk reads served by the cache.
    pub chunk_hits: u64,
    /// Chunk reads that joined a fetch another caller had started (single-flight).
    pub chunk_coalesced: u64,
    /// Chunks fetched from the origin (one ranged GET each).
    pub chunk_fetches: u64,
    /// Bytes returned to callers out of chunks the cache held.
    pub bytes_from_cache: u64,
    /// Bytes returned to callers out of chunks fetched from the origin for the read.
    pub bytes_from_origin: u64,
    /// Bytes fetched from the origin (whole chunks, so at least `bytes_from_origin`).
    pub bytes_fetched: u64,
    /// Identities taken from the cache without asking the origin (by the re-check policy).
    pub identity_hits: u64,
    /// Identity checks sent to the origin (one HEAD each).
    pub identity_checks: u64,
    /// Identities served from the cache because the origin failed and `stale_if_error` is on.
    pub stale_identities: u64,
    /// Reads retried because the object changed at the origin between its identity check and
    /// a chunk fetch.
    pub changed_during_read: u64,
    /// Locations invalidated by writes, copies, renames and deletes through this store.
    pub invalidations: u64,
    /// Cache-tier failures (a failed get is a miss, a failed put is not cached; reads go on).
    pub cache_errors: u64,
}

impl CachedStoreStats {
    /// Requests that did not reach the origin: chunk reads served by the cache or by another
    /// caller's fetch, and identity checks the policy let the cache answer.
    pub fn origin_requests_saved(&self) -> u64 {
        self.chunk_hits + self.chunk_coalesced + self.identity_hits
    }

    /// Read requests sent to the origin: chunk fetches, identity checks and pass-through reads.
    pub fn origin_requests(&self) -> u64 {
        self.chunk_fetches + self.identity_checks + self.passthrough
    }
}

struct Pair {
    value: AtomicU64,
    metric: Counter,
}

impl Pair {
    fn new(name: &'static str, store: &str) -> Pair {
        Pair {
            value: AtomicU64::new(0),
            metric: metrics::counter!(name, "store" => store.to_owned()),
        }
    }
    fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.metric.increment(n);
    }
    fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

macro_rules! counters {
    ($($field:ident),* $(,)?) => {
        /// The live counters behind [`CachedStoreStats`].
        pub(crate) struct Stats {
            $($field: Pair,)*
        }

        impl Stats {
            pub(crate) fn new(store: &str) -> Stats {
                Stats {
                    $($field: Pair::new(
                        concat!("cache_object_store_", stringify!($field), "_total"),
                        store,
                    ),)*
                }
            }

            pub(crate) fn snapshot(&self) -> CachedStoreStats {
                CachedStoreStats { $($field: self.$field.get(),)* }
            }

            $(
                pub(crate) fn $field(&self, n: u64) {
                    self.$field.add(n);
                }
            )*
        }
    };
}

counters!(
    reads,
    heads,
    passthrough,
    chunk_hits,
    chunk_coalesced,
    chunk_fetches,
    bytes_from_cache,
    bytes_from_origin,
    bytes_fetched,
    identity_hits,
    identity_checks,
    stale_identities,
    changed_during_read,
    invalidations,
    cache_errors,
);

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.snapshot(), f)
    }
}
