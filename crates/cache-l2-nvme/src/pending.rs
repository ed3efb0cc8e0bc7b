//! The staged-write buffer: records accepted by `put` but not yet written by the writer thread.
//!
//! With [`Durability::None`](crate::Durability::None) and
//! [`Durability::Periodic`](crate::Durability::Periodic), `put` encodes its record, enters it
//! here (under the queue lock, so the buffer and the writer's queue agree on the order of two
//! puts of one key), queues it and returns. `get` looks here before the index, so a reader sees
//! its own writes. The writer drops an entry after the record's index update is published (or
//! after its write failed), and only if the entry is still the same version: a later put of the
//! same key keeps its own entry.
//!
//! The buffer is bounded in bytes by a semaphore: a put waits (asynchronously) for room, it is
//! never dropped. Its permits are returned by the writer, once per batch.

use std::{
    collections::HashMap,
    hash::BuildHasherDefault,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

use parking_lot::Mutex;

use crate::{format::SHARDS, index::TagHasher, parts::Parts};

/// (version, record, read since it was entered).
type Shard = HashMap<u32, (u64, Parts, bool), BuildHasherDefault<TagHasher>>;

/// Records queued but not yet written, by (shard, tag).
#[derive(Debug)]
pub(crate) struct Pending {
    shards: Box<[Mutex<Shard>]>,
    /// Entries held (lets a read skip the lookup when nothing is pending).
    len: AtomicUsize,
    /// The version the next entry gets; only read and bumped under the queue lock.
    next_seq: AtomicU64,
}

impl Pending {
    /// An empty buffer.
    pub(crate) fn new() -> Pending {
        Pending {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            len: AtomicUsize::new(0),
            next_seq: AtomicU64::new(1),
        }
    }

    /// Enters `record` for (shard, tag), replacing an older version; returns its version (never
    /// 0). Called with the writer's queue lock held.
    pub(crate) fn insert(&self, shard: usize, tag: u32, record: Parts) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if self.shards[shard].lock().insert(tag, (seq, record, false)).is_none() {
            self.len.fetch_add(1, Ordering::AcqRel);
        }
        seq
    }

    /// The pending record for (shard, tag), if any.
    pub(crate) fn get(&self, shard: usize, tag: u32) -> Option<Parts> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.shards[shard].lock().get(&tag).map(|(_, b, _)| b.clone())
    }

    /// Like [`Pending::get`], and remembers that the record was read, so the writer can carry
    /// the hit into the index (for hit-based reinsertion).
    pub(crate) fn read(&self, shard: usize, tag: u32) -> Option<Parts> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut s = self.shards[shard].lock();
        let (_, b, hit) = s.get_mut(&tag)?;
        *hit = true;
        Some(b.clone())
    }

    /// Whether anything is pending for (shard, tag).
    pub(crate) fn contains(&self, shard: usize, tag: u32) -> bool {
        self.len.load(Ordering::Acquire) != 0 && self.shards[shard].lock().contains_key(&tag)
    }

    /// Drops the entry for (shard, tag) if it is still version `seq`; `true` if it was read
    /// while pending.
    pub(crate) fn remove_if(&self, shard: usize, tag: u32, seq: u64) -> bool {
        let mut s = self.shards[shard].lock();
        if s.get(&tag).is_some_and(|(v, _, _)| *v == seq) {
            let hit = s.remove(&tag).is_some_and(|(_, _, hit)| hit);
            self.len.fetch_sub(1, Ordering::AcqRel);
            return hit;
        }
        false
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}
