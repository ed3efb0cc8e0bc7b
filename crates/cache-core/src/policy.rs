//! What a put's outcome is, and the hook through which a tier reports what it evicts.
//!
//! Tiers call the eviction sink; a composition such as `cache-tiered` implements it. That keeps
//! the dependency direction one-way: no tier knows about another tier or about the
//! composition. (The admission and promotion policies, which only the composition asks, live
//! in `cache-tiered`.)

use std::fmt;

use crate::{entry::Entry, key::Key};

/// The outcome of a `put` that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum PutOutcome {
    /// The value is stored (subject to later eviction).
    Stored,
    /// The value was not stored, for this reason. The counter `rejections` counts it.
    Rejected(Rejection),
}

impl PutOutcome {
    /// Whether the value was stored.
    pub fn is_stored(self) -> bool {
        self == PutOutcome::Stored
    }
}

/// Why a value was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The value is larger than the tier (or its admission range) accepts.
    TooLarge,
    /// The value is smaller than the admission range accepts.
    TooSmall,
    /// The entry had already expired.
    Expired,
    /// The admission filter has not seen the key often enough.
    Infrequent,
    /// The write-rate budget is spent.
    RateLimited,
    /// A bounded write queue is full.
    QueueFull,
}

impl Rejection {
    /// A short lowercase name, stable for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::TooSmall => "too_small",
            Rejection::Expired => "expired",
            Rejection::Infrequent => "infrequent",
            Rejection::RateLimited => "rate_limited",
            Rejection::QueueFull => "queue_full",
        }
    }
}

/// Why a tier let go of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictionCause {
    /// To stay within the byte budget.
    Capacity,
    /// Its expiry passed.
    Expired,
}

/// An entry a tier evicted, handed to an [`EvictionSink`].
#[derive(Debug, Clone)]
pub struct Evicted {
    /// The key.
    pub key: Key,
    /// The entry as it was.
    pub entry: Entry,
    /// Why it left.
    pub cause: EvictionCause,
}

/// Receives what a tier evicts, e.g. to demote it to a slower tier.
///
/// Called on the tier's maintenance path: implementations must return quickly and never block
/// (queue the work).
pub trait EvictionSink: Send + Sync + fmt::Debug + 'static {
    /// Takes one evicted entry.
    fn on_evict(&self, evicted: Evicted);
}
