//! The byte budget: an in-memory insertion-order (FIFO) queue of live records and their sizes.
//!
//! RocksDB's own size accounting is approximate (SST sizes include garbage, tombstones and
//! metadata, and memtables are not counted), so the tier accounts every record it writes:
//! a record is charged [`charge`] bytes, and inserting past the budget evicts the oldest records
//! first. The tier deletes the evicted keys in the same `WriteBatch` as the insert.
//!
//! On open the queue is rebuilt by iterating the database, ordered by the records' creation time
//! (the insertion order itself is not stored).

use std::collections::{BTreeMap, HashMap};

use cache_core::Timestamp;

use crate::keys::{STORAGE_KEY_LEN, StorageKey};

/// Bytes a record of `record_len` bytes is charged: the RocksDB key plus the record.
pub(crate) fn charge(record_len: usize) -> u64 {
    (STORAGE_KEY_LEN + record_len) as u64
}

/// What the budget knows about one live record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    seq: u64,
    /// Charged bytes.
    pub(crate) size: u64,
    /// When the record expires, if ever.
    pub(crate) expires_at: Option<Timestamp>,
}

/// A record the budget let go of to make room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Victim {
    pub(crate) key: StorageKey,
    pub(crate) slot: Slot,
}

/// One insert, with what it displaced, so a failed write can be undone.
#[derive(Debug)]
pub(crate) struct Change {
    key: StorageKey,
    previous: Option<Slot>,
    /// Records evicted to make room, oldest first.
    pub(crate) evicted: Vec<Victim>,
}

/// Live records in insertion order and their total charge.
#[derive(Debug)]
pub(crate) struct Budget {
    capacity: u64,
    entries: HashMap<StorageKey, Slot>,
    order: BTreeMap<u64, StorageKey>,
    next_seq: u64,
    bytes: u64,
}

impl Budget {
    pub(crate) fn new(capacity: u64) -> Budget {
        Budget { capacity, entries: HashMap::new(), order: BTreeMap::new(), next_seq: 0, bytes: 0 }
    }

    /// Charged bytes of every live record.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Live records.
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Records `key` as the newest entry with `size` charged bytes and evicts the oldest
    /// records until the total fits the budget. `size` must not exceed the capacity.
    pub(crate) fn insert(
        &mut self,
        key: StorageKey,
        size: u64,
        expires_at: Option<Timestamp>,
    ) -> Change {
        debug_assert!(size <= self.capacity);
        let previous = self.take(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(key, Slot { seq, size, expires_at });
        self.order.insert(seq, key);
        self.bytes += size;
        let mut evicted = Vec::new();
        while self.bytes > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            let slot = self.entries.remove(&oldest).expect("queue and map agree");
            self.bytes -= slot.size;
            evicted.push(Victim { key: oldest, slot });
        }
        Change { key, previous, evicted }
    }

    /// Reverts `change` (the most recent change not yet undone).
    pub(crate) fn undo(&mut self, change: Change) {
        let _ = self.take(&change.key);
        if let Some(slot) = change.previous {
            self.restore(change.key, slot);
        }
        for victim in change.evicted {
            self.restore(victim.key, victim.slot);
        }
    }

    fn restore(&mut self, key: StorageKey, slot: Slot) {
        self.entries.insert(key, slot);
        self.order.insert(slot.seq, key);
        self.bytes += slot.size;
    }

    /// Forgets `key`; returns its slot if it was live.
    pub(crate) fn take(&mut self, key: &StorageKey) -> Option<Slot> {
        let slot = self.entries.remove(key)?;
        self.order.remove(&slot.seq);
        self.bytes -= slot.size;
        Some(slot)
    }

    /// The slot of `key`, if live.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &StorageKey) -> Option<Slot> {
        self.entries.get(key).copied()
    }

    /// Forgets every record whose key starts with `prefix`; returns how many there were.
    ///
    /// This scans the in-memory map (no disk IO); the tier deletes the range on disk.
    pub(crate) fn remove_namespace(&mut self, prefix: &[u8]) -> u64 {
        let keys: Vec<StorageKey> =
            self.entries.keys().filter(|k| k.namespace_prefix() == prefix).copied().collect();
        for key in &keys {
            let _ = self.take(key);
        }
        keys.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u8) -> StorageKey {
        let mut raw = [0u8; STORAGE_KEY_LEN];
        raw[16] = i;
        raw[47] = i;
        StorageKey(raw)
    }

    #[test]
    fn evicts_oldest_first_and_overwrite_moves_to_back() {
        let mut b = Budget::new(100);
        assert!(b.insert(k(1), 40, None).evicted.is_empty());
        assert!(b.insert(k(2), 40, None).evicted.is_empty());
        // Overwriting 1 makes it the newest; 2 is now the oldest.
        assert!(b.insert(k(1), 40, None).evicted.is_empty());
        assert_eq!(b.bytes(), 80);
        let change = b.insert(k(3), 40, None);
        let evicted: Vec<_> = change.evicted.iter().map(|v| v.key).collect();
        assert_eq!(evicted, vec![k(2)]);
        assert_eq!(b.bytes(), 80);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn undo_restores_everything() {
        let mut b = Budget::new(100);
        let _ = b.insert(k(1), 60, None);
        let _ = b.insert(k(2), 30, None);
        let change = b.insert(k(2), 90, None);
        assert_eq!(change.evicted.len(), 1);
        b.undo(change);
        assert_eq!(b.bytes(), 90);
        assert_eq!(b.get(&k(1)).map(|s| s.size), Some(60));
        assert_eq!(b.get(&k(2)).map(|s| s.size), Some(30));
        // Order is kept: 1 is still the oldest.
        let change = b.insert(k(3), 20, None);
        assert_eq!(change.evicted[0].key, k(1));
    }

    #[test]
    fn remove_namespace_only_touches_the_prefix() {
        let mut b = Budget::new(1000);
        let mut other = k(9);
        other.0[0] = 1;
        let _ = b.insert(k(1), 10, None);
        let _ = b.insert(k(2), 10, None);
        let _ = b.insert(other, 10, None);
        assert_eq!(b.remove_namespace(&[0u8; 16]), 2);
        assert_eq!(b.len(), 1);
        assert_eq!(b.bytes(), 10);
    }
}
