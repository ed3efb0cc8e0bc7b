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
    ///
    /// ```
    /// use cache_core::{Entry, EntryMeta, Timestamp};
    ///
    /// let entry = Entry::new("hello");
    /// assert_eq!(entry.value, "hello");
    /// assert_eq!(entry.meta, EntryMeta::default());
    /// assert_eq!(entry.meta.created_at, Timestamp::ZERO, "not set: the tier stamps it on put");
    /// assert!(!entry.is_expired(Timestamp::MAX));
    /// ```
    pub fn new(value: impl Into<Bytes>) -> Entry {
        Entry { value: value.into(), meta: EntryMeta::default() }
    }

    /// Sets the absolute expiry time.
    ///
    /// ```
    /// use cache_core::{Entry, Timestamp};
    ///
    /// let entry = Entry::new("v").with_expiry(Timestamp::from_millis(5_000));
    /// assert_eq!(entry.meta.expires_at, Some(Timestamp::from_millis(5_000)));
    /// assert!(!entry.is_expired(Timestamp::from_millis(4_999)));
    /// assert!(entry.is_expired(Timestamp::from_millis(5_000)), "expiry is inclusive");
    /// ```
    #[must_use]
    pub fn with_expiry(mut self, expires_at: Timestamp) -> Entry {
        self.meta.expires_at = Some(expires_at);
        self
    }

    /// Stamps the creation time from `clock` and expires the entry `ttl` later.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Clock, Entry, ManualClock, Timestamp};
    ///
    /// let clock = ManualClock::new(Timestamp::from_millis(10_000));
    /// let entry = Entry::new("v").with_ttl(&*clock, Duration::from_secs(5));
    /// assert_eq!(entry.meta.created_at, Timestamp::from_millis(10_000));
    /// clock.advance(Duration::from_millis(4_999));
    /// assert!(!entry.is_expired(clock.now()));
    /// clock.advance(Duration::from_millis(1));
    /// assert!(entry.is_expired(clock.now()), "expired exactly 5 s after creation");
    /// ```
    #[must_use]
    pub fn with_ttl(mut self, clock: &dyn Clock, ttl: Duration) -> Entry {
        let now = clock.now();
        self.meta.created_at = now;
        self.meta.expires_at = Some(now.saturating_add(ttl));
        self
    }

    /// Sets the user version or tag.
    ///
    /// ```
    /// use cache_core::Entry;
    ///
    /// let entry = Entry::new("v").with_version(42);
    /// assert_eq!(entry.meta.version, Some(42));
    /// assert_eq!(Entry::new("v").meta.version, None);
    /// ```
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Entry {
        self.meta.version = Some(version);
        self
    }

    /// Sets the creation time.
    ///
    /// ```
    /// use cache_core::{Entry, Timestamp};
    ///
    /// let mut entry = Entry::new("v").with_created_at(Timestamp::from_millis(1_000));
    /// assert_eq!(entry.meta.created_at, Timestamp::from_millis(1_000));
    /// entry.meta.stamp(Timestamp::from_millis(9_000)); // what a tier does on put
    /// assert_eq!(entry.meta.created_at, Timestamp::from_millis(1_000), "kept");
    /// ```
    #[must_use]
    pub fn with_created_at(mut self, created_at: Timestamp) -> Entry {
        self.meta.created_at = created_at;
        self
    }

    /// Size of the value in bytes.
    ///
    /// ```
    /// use cache_core::Entry;
    ///
    /// assert_eq!(Entry::new(vec![0u8; 4096]).size(), 4096);
    /// assert_eq!(Entry::new("héllo").size(), 6, "bytes, not characters");
    /// ```
    pub fn size(&self) -> u64 {
        self.value.len() as u64
    }

    /// Whether the entry has expired at `now`.
    ///
    /// ```
    /// use cache_core::{Entry, Timestamp};
    ///
    /// let at = Timestamp::from_millis(2_000);
    /// assert!(!Entry::new("v").with_expiry(at).is_expired(Timestamp::from_millis(1_999)));
    /// assert!(Entry::new("v").with_expiry(at).is_expired(at));
    /// assert!(!Entry::new("no expiry").is_expired(Timestamp::MAX));
    /// ```
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.meta.is_expired(now)
    }
}

impl EntryMeta {
    /// Whether an entry with this metadata has expired at `now` (expiry is inclusive).
    ///
    /// ```
    /// use cache_core::{EntryMeta, Timestamp};
    ///
    /// let mut meta = EntryMeta::default();
    /// meta.expires_at = Some(Timestamp::from_millis(100));
    /// assert!(!meta.is_expired(Timestamp::from_millis(99)));
    /// assert!(meta.is_expired(Timestamp::from_millis(100)));
    /// assert!(!EntryMeta::default().is_expired(Timestamp::MAX), "no expiry: never");
    /// ```
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Fills in `created_at` from `now` if it was not set.
    ///
    /// ```
    /// use cache_core::{EntryMeta, Timestamp};
    ///
    /// let mut meta = EntryMeta::default();
    /// meta.stamp(Timestamp::from_millis(1_000));
    /// assert_eq!(meta.created_at, Timestamp::from_millis(1_000));
    /// meta.stamp(Timestamp::from_millis(2_000));
    /// assert_eq!(meta.created_at, Timestamp::from_millis(1_000), "a set time is kept");
    /// ```
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
