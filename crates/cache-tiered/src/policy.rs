//! Ready-made admission and promotion policies, and the per-tier write policy.

mod admission;
mod climber;
mod demotion;
mod promotion;
mod sketch;

use std::time::Duration;

pub(crate) use self::demotion::Filter;
pub use self::{
    admission::{FrequencyFilter, RateLimit, SizeRange},
    demotion::DemotionFilter,
    promotion::{PromoteAlways, PromoteNever, PromoteOnNthHit, PromoteUnderSize},
};

/// How `put` writes a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePolicy {
    /// Write synchronously; `put` returns after this tier has the value.
    Through,
    /// Queue the write (bounded); a background task writes it, retrying with backoff.
    Behind {
        /// Most writes waiting; a put that finds the queue full is rejected (`QueueFull`).
        queue_len: usize,
        /// Attempts per write before the failure is reported.
        max_attempts: u32,
        /// Delay before the first retry; doubles per attempt.
        backoff: Duration,
    },
    /// Write only what the tier above evicts (demotion), never on `put`.
    OnEviction,
    /// Never write this tier on `put` (it is read-only, or filled by promotion/demotion only).
    Skip,
}

impl WritePolicy {
    /// Write-behind with a 1,024-entry queue, 5 attempts, 10 ms initial backoff.
    pub const fn behind() -> WritePolicy {
        WritePolicy::Behind { queue_len: 1024, max_attempts: 5, backoff: Duration::from_millis(10) }
    }
}
