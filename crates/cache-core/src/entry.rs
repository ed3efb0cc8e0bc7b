//! Entries: a value as [`Bytes`] plus the metadata every tier keeps with it.

use std::time::Duration;

use bytes::Bytes;

use crate::clock::{Clock, Timestamp};

/// What a tier stores for a key: the value and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value. Tiers may hand out a `Bytes` that points into their own storage (an mmap'd
    /// segment, a downloaded object) rather than a copy.
    pub value: Bytes,
    /// Creation time, expiry and user version.
    pub meta: EntryMeta,
}

/// Metadata carried with a value through every tier and in the record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryMeta {
    /// When the entry was created. [`Timestamp::ZERO`] means "not set": a tier stamps it with
    /// its clock on `put`.
    pub created_at: Timestamp,
    /// When the entry expires (absolute time). At and after this instant it is never returned.
    pub expires_at: Option<Timestamp>,
    /// An optional version or tag chosen by the caller, stored and returned unchanged.
    pub version: Option<u64>,
}

impl Entry {
    /// An entry with no expiry and no version; its creation time is stamped by the tier.
    pub fn new(value: impl Into<Bytes>) -> Entry {
        Entry { value: value.into(), meta: EntryMeta::default() }
    }

    /// Sets the absolute expiry time.
    #[must_use]
    pub fn with_expiry(mut self, expires_at: Timestamp) -> Entry {
        self.meta.expires_at = Some(expires_at);
        self
    }

    /// Stamps the creation time from `clock` and expires the entry `ttl` later.
    #[must_use]
    pub fn with_ttl(mut self, clock: &dyn Clock, ttl: Duration) -> Entry {
        let now = clock.now();
        self.meta.created_at = now;
        self.meta.expires_at = Some(now.saturating_add(ttl));
        self
    }

    /// Sets the user version or tag.
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Entry {
        self.meta.version = Some(version);
        self
    }

    /// Sets the creation time.
    #[must_use]
    pub fn with_created_at(mut self, created_at: Timestamp) -> Entry {
        self.meta.created_at = created_at;
        self
    }

    /// Size of the value in bytes.
    pub fn size(&self) -> u64 {
        self.value.len() as u64
    }

    /// Whether the entry has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.meta.is_expired(now)
    }
}

impl EntryMeta {
    /// Whether an entry with this metadata has expired at `now` (expiry is inclusive).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Fills in `created_at` from `now` if it was not set.
    pub fn stamp(&mut self, now: Timestamp) {
        if self.created_at == Timestamp::ZERO {
            self.created_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn ttl_is_relative_to_clock_and_inclusive() {
        let clock = ManualClock::new(Timestamp::from_millis(10_000));
        let e = Entry::new("v").with_ttl(&*clock, Duration::from_secs(5));
        assert_eq!(e.meta.created_at, Timestamp::from_millis(10_000));
        assert!(!e.is_expired(Timestamp::from_millis(14_999)));
        assert!(e.is_expired(Timestamp::from_millis(15_000)));
        assert!(!Entry::new("v").is_expired(Timestamp::MAX));
    }
}
