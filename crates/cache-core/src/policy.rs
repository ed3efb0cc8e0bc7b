//! Policy hooks: small enums for decisions and the traits the tiered composition implements.
//!
//! Tiers call these hooks; `cache-tiered` implements them. That keeps the dependency direction
//! one-way: no tier knows about another tier or about the composition.

use std::{fmt, time::Duration};

use crate::{clock::Timestamp, entry::Entry, key::Key};

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

/// An admission decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Write it now.
    Admit,
    /// Do not write it.
    Reject(Rejection),
    /// Try again after this long (e.g. a rate limit that will refill).
    Defer(Duration),
}

/// Decides whether an entry may be written to a tier.
pub trait AdmissionPolicy: Send + Sync + fmt::Debug + 'static {
    /// Decides for `entry` under `key` at `now`.
    fn admit(&self, key: &Key, entry: &Entry, now: Timestamp) -> Admission;
}

/// A promotion decision for a hit found below the top tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// Copy the entry into the faster tiers.
    Promote,
    /// Leave it where it is.
    Stay,
}

/// Decides whether a hit in a lower tier is copied into the tiers above it.
pub trait PromotionPolicy: Send + Sync + fmt::Debug + 'static {
    /// Called on a hit in tier number `found_in` (0 is the top).
    fn on_hit(&self, key: &Key, entry: &Entry, found_in: usize, now: Timestamp) -> Promotion;

    /// Called on a ranged hit (`get_range`) in tier number `found_in`, where only part of the
    /// value was read. `Promote` makes the composition read the whole value from that tier in
    /// the background and promote it. The default stays: a policy that decides by the entry
    /// (its size, say) cannot decide without it, and a range of a large value is the common
    /// case where promoting would read far more than was asked for.
    fn on_range_hit(&self, key: &Key, found_in: usize, now: Timestamp) -> Promotion {
        let _ = (key, found_in, now);
        Promotion::Stay
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
