//! What a `put` did in each tier: [`TierWrite`] and [`PutReport`].

use cache_core::{ErrorKind, PutOutcome, Rejection};

/// What happened to one tier during a `put`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierWrite {
    /// Written synchronously.
    Stored,
    /// Queued for write-behind.
    Deferred,
    /// Not written, for this reason (counted).
    Rejected(Rejection),
    /// This tier is not written on `put` (its policy is `OnEviction` or `Skip`); any older
    /// value it held was removed.
    Skipped,
    /// The tier failed or timed out (counted); any older value may remain there until it
    /// expires, is evicted, or is removed.
    Failed(ErrorKind),
}

/// The outcome of [`TieredCache::put_report`](crate::TieredCache::put_report), tier by tier
/// (fastest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReport {
    /// One outcome per tier, with the tier's name.
    pub tiers: Vec<(&'static str, TierWrite)>,
}

impl PutReport {
    /// `Stored` if any tier stored or queued the value, otherwise the first rejection.
    pub fn outcome(&self) -> PutOutcome {
        if self.tiers.iter().any(|(_, w)| matches!(w, TierWrite::Stored | TierWrite::Deferred)) {
            return PutOutcome::Stored;
        }
        let reason = self.tiers.iter().find_map(|(_, w)| match w {
            TierWrite::Rejected(r) => Some(*r),
            _ => None,
        });
        PutOutcome::Rejected(reason.unwrap_or(Rejection::QueueFull))
    }
}
