//! Configuration of the RAM tier.

use std::sync::Arc;

use cache_core::{Clock, EvictionSink, SystemClock};

use crate::tier::MemoryTier;

/// Bytes charged per entry on top of its key and value: moka's node, our key and metadata.
///
/// An estimate (moka's per-entry cost is close to this on 64-bit targets); it keeps a cache of
/// many tiny entries from exceeding its RAM budget by a large factor.
pub const ENTRY_OVERHEAD: u64 = 128;

/// Builds a [`MemoryTier`].
#[derive(Debug)]
pub struct MemoryTierBuilder {
    pub(crate) capacity_bytes: u64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sink: Option<Arc<dyn EvictionSink>>,
    pub(crate) initial_entries: usize,
    pub(crate) policy: EvictionPolicy,
}

/// How the RAM tier picks what to evict, and what to admit when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// moka's default: a newcomer is admitted only if it is requested more often (by a
    /// frequency sketch) than the entry it would evict; the rest is LRU. Good on its own for
    /// skewed, frequency-driven workloads; it turns away keys read twice at a short distance.
    #[default]
    TinyLfu,
    /// Plain LRU: every write is admitted and the least recently used entry leaves. The right
    /// front for a disk tier that filters what it keeps (an S3-FIFO-style small queue).
    Lru,
}

impl MemoryTierBuilder {
    pub(crate) fn new(capacity_bytes: u64) -> MemoryTierBuilder {
        MemoryTierBuilder {
            capacity_bytes,
            clock: Arc::new(SystemClock),
            sink: None,
            initial_entries: 0,
            policy: EvictionPolicy::TinyLfu,
        }
    }

    /// The clock used for expiry (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> MemoryTierBuilder {
        self.clock = clock;
        self
    }

    /// Where entries evicted for size or expiry go (e.g. a demotion queue). Explicit removals and
    /// replacements are not reported.
    #[must_use]
    pub fn eviction_sink(mut self, sink: Arc<dyn EvictionSink>) -> MemoryTierBuilder {
        self.sink = Some(sink);
        self
    }

    /// Pre-sizes the hash table for this many entries.
    #[must_use]
    pub fn initial_entries(mut self, n: usize) -> MemoryTierBuilder {
        self.initial_entries = n;
        self
    }

    /// The eviction and admission policy (default: [`EvictionPolicy::TinyLfu`]).
    #[must_use]
    pub fn eviction_policy(mut self, policy: EvictionPolicy) -> MemoryTierBuilder {
        self.policy = policy;
        self
    }

    /// Builds the tier.
    pub fn build(self) -> MemoryTier {
        MemoryTier::from_builder(self)
    }
}
