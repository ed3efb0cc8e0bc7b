//! Ready-made admission and promotion policies, the per-tier write policy, and when
//! `get_or_load` serves stale entries.

mod admission;
mod climber;
mod demotion;
mod hooks;
mod promotion;
mod sketch;

use std::time::Duration;

use cache_core::{EntryMeta, Timestamp};

pub(crate) use self::demotion::Filter;
pub use self::{
    admission::{FrequencyFilter, RateLimit, SizeRange},
    demotion::DemotionFilter,
    hooks::{Admission, AdmissionPolicy, Promotion, PromotionPolicy},
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

/// When [`TieredCache::get_or_load`](crate::TieredCache::get_or_load) serves an entry that is
/// past its freshness instead of waiting for its loader (default: never; set with
/// [`TieredBuilder::serve_stale`](crate::TieredBuilder::serve_stale)).
///
/// An entry is *stale* from `after` past its creation time (the `created_at` every tier keeps)
/// and may be served stale for `grace` more, never at or past its own expiry (the tiers drop
/// it then). A stale entry is served
/// - at once, while one loader refreshes it in the background (`revalidate`:
///   stale-while-revalidate; concurrent callers share that one load);
/// - when the loader fails (`on_error`: fail-safe), instead of the loader's error.
///
/// Past the grace the entry counts as missing: the caller waits for the loader and gets its
/// result or error. `get` is not affected: it returns an entry until it expires. Serving an
/// LLM response from a flaky provider: fresh for an hour, then an hour more while one request
/// refreshes it or while the provider is down.
///
/// ```
/// use std::time::Duration;
/// use cache_tiered::{ServeStale, TieredCache, l1::MemoryTier};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cache_tiered::cache_core::Result<()> {
/// let hour = Duration::from_secs(3600);
/// let cache = TieredCache::builder()
///     .serve_stale(ServeStale::new(hour, hour))
///     .tier(MemoryTier::builder(64 << 20).build())
///     .build()?;
/// # let _ = cache;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeStale {
    /// Age (from the entry's creation) at which an entry turns stale.
    pub after: Duration,
    /// How long past `after` a stale entry may still be served.
    pub grace: Duration,
    /// Serve a stale entry at once and reload it in the background; otherwise wait for the
    /// loader (and serve the stale entry only if `on_error` and the loader fails).
    pub revalidate: bool,
    /// Serve a stale entry when its loader fails, instead of the loader's error.
    pub on_error: bool,
}

/// How fresh an entry is for [`ServeStale`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    Fresh,
    /// Past `after`, within the grace.
    Stale,
    /// Past the grace: as good as missing.
    Spent,
}

impl ServeStale {
    /// Stale `after` this age, served stale for `grace` more, both while revalidating and when
    /// the loader fails.
    pub const fn new(after: Duration, grace: Duration) -> ServeStale {
        ServeStale { after, grace, revalidate: true, on_error: true }
    }

    /// Whether a stale entry is served at once while it reloads (default: yes).
    #[must_use]
    pub const fn revalidate(mut self, yes: bool) -> ServeStale {
        self.revalidate = yes;
        self
    }

    /// Whether a stale entry is served when its loader fails (default: yes).
    #[must_use]
    pub const fn on_error(mut self, yes: bool) -> ServeStale {
        self.on_error = yes;
        self
    }

    pub(crate) fn freshness(&self, meta: &EntryMeta, now: Timestamp) -> Freshness {
        let age =
            Duration::from_millis(now.as_millis().saturating_sub(meta.created_at.as_millis()));
        if age < self.after {
            Freshness::Fresh
        } else if age < self.after.saturating_add(self.grace) {
            Freshness::Stale
        } else {
            Freshness::Spent
        }
    }
}
