//! The hooks a tier's admission and promotion policies implement: what the composition asks
//! before it writes a tier, and before it copies a lower hit up.

use std::{fmt, time::Duration};

use cache_core::{Entry, Key, Rejection, Timestamp};

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
