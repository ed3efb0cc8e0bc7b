//! Time-to-idle ([`NvmeTierBuilder::time_to_idle`](crate::NvmeTierBuilder::time_to_idle)): the
//! time of each entry's last read or write, kept in RAM beside the index.
//!
//! The index has no room for a timestamp (13 bytes a bucket), and a read must not become a
//! write to the log, so the last access lives in a table of its own, sharded like the index
//! and built only when a time-to-idle is set: about 17 bytes an entry (a 4-byte tag, an 8-byte
//! time, hashbrown's control byte and its spare room).
//!
//! A missing time means "fresh": a read starts the entry's idle time at that read. So losing a
//! time can only make an entry live longer, never expire early, which keeps the table's
//! bookkeeping simple: a put records its time before the record becomes visible, a tier opened
//! on an existing directory gives every indexed entry the open time, and the table drops the
//! times of keys the tier no longer holds whenever it grows past twice the index.

use std::{collections::HashMap, hash::BuildHasherDefault, time::Duration};

use cache_core::Timestamp;
use parking_lot::Mutex;

use crate::{format::SHARDS, index::TagHasher};

type Times = HashMap<u32, Timestamp, BuildHasherDefault<TagHasher>>;

/// The last access of every entry, by (shard, tag).
#[derive(Debug)]
pub(crate) struct IdleTimes {
    idle: Duration,
    shards: Box<[Mutex<Times>]>,
}

impl IdleTimes {
    /// An empty table for a time-to-idle of `idle`.
    pub(crate) fn new(idle: Duration) -> IdleTimes {
        IdleTimes { idle, shards: (0..SHARDS).map(|_| Mutex::new(Times::default())).collect() }
    }

    /// Records an access of (shard, tag) at `now`. `held` tells whether a tag is still pending
    /// or indexed; it is asked only when the shard's table has grown past twice the shard's
    /// share of the `indexed` entries, plus 64, to drop the times of keys that left the tier.
    pub(crate) fn touch(
        &self,
        shard: usize,
        tag: u32,
        now: Timestamp,
        indexed: u64,
        held: impl Fn(u32) -> bool,
    ) {
        let mut times = self.shards[shard].lock();
        times.insert(tag, now);
        let limit = indexed.saturating_mul(2) / SHARDS as u64 + 64;
        if times.len() as u64 > limit {
            times.retain(|t, _| held(*t));
        }
    }

    /// Whether (shard, tag) has gone unread and unwritten for the time-to-idle at `now`
    /// (inclusive, as expiry is); an entry with no recorded access is not idle.
    pub(crate) fn is_idle(&self, shard: usize, tag: u32, now: Timestamp) -> bool {
        self.shards[shard]
            .lock()
            .get(&tag)
            .is_some_and(|last| last.saturating_add(self.idle) <= now)
    }

    /// A read at `now`: `false` if the entry is idle (its time stays, so a copy still pending
    /// stays idle once indexed), otherwise its idle time restarts and `true`.
    pub(crate) fn read(&self, shard: usize, tag: u32, now: Timestamp) -> bool {
        let mut times = self.shards[shard].lock();
        match times.get_mut(&tag) {
            Some(last) if last.saturating_add(self.idle) <= now => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                times.insert(tag, now);
                true
            }
        }
    }

    /// Gives every tag of `shard` the access time `at` (a tier opened on an existing directory:
    /// the idle time of what it recovered starts at the open).
    pub(crate) fn start_all(
        &self,
        shard: usize,
        tags: impl IntoIterator<Item = u32>,
        at: Timestamp,
    ) {
        let mut times = self.shards[shard].lock();
        times.extend(tags.into_iter().map(|t| (t, at)));
    }

    /// Bytes of RAM the table holds (an estimate from its capacity).
    pub(crate) fn memory_bytes(&self) -> u64 {
        let per = (size_of::<(u32, Timestamp)>() + 1) as u64;
        self.shards.iter().map(|s| s.lock().capacity() as u64 * per).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    fn at(ms: u64) -> Timestamp {
        T0.saturating_add(Duration::from_millis(ms))
    }

    #[test]
    fn a_read_restarts_the_idle_time_and_an_idle_entry_is_dropped() {
        let t = IdleTimes::new(Duration::from_secs(10));
        t.touch(3, 7, T0, 1, |_| true);
        assert!(!t.is_idle(3, 7, at(9_999)));
        assert!(t.read(3, 7, at(9_999)), "idle for 9.999 s of 10");
        assert!(t.is_idle(3, 7, at(19_999)), "10 s after the read: idle, inclusive");
        assert!(!t.read(3, 7, at(19_999)));
        assert!(!t.read(3, 7, at(19_999)), "a read of an idle entry does not revive it");
        assert!(!t.is_idle(3, 8, at(100_000)), "never recorded: a missing time is fresh");
        assert!(t.read(3, 8, at(100_000)), "and a read starts it");
        assert!(t.is_idle(3, 8, at(110_000)));
    }

    #[test]
    fn times_of_keys_that_left_are_dropped_when_the_table_grows() {
        let t = IdleTimes::new(Duration::from_secs(10));
        for tag in 0..64 {
            t.touch(0, tag, T0, 0, |_| false);
        }
        assert_eq!(t.shards[0].lock().len(), 64, "at the limit: nothing dropped");
        t.touch(0, 64, T0, 0, |tag| tag % 2 == 0);
        let times = t.shards[0].lock();
        assert_eq!(times.len(), 33, "past it: only the held tags (0, 2, ..., 64) stay");
        assert!(times.keys().all(|tag| tag % 2 == 0));
    }

    #[test]
    fn recovered_entries_start_idle_at_the_open() {
        let t = IdleTimes::new(Duration::from_secs(10));
        t.start_all(1, [1, 2], T0);
        assert!(t.is_idle(1, 2, at(10_000)));
        assert!(!t.is_idle(1, 3, at(10_000)), "not recorded: fresh");
    }
}
