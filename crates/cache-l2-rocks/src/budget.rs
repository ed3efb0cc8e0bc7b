//! The byte budget: an in-memory insertion-order (FIFO) queue of live records and their sizes.
//!
//! RocksDB's own size accounting is approximate (SST sizes include garbage, tombstones and
//! metadata, and memtables are not counted), so the tier accounts every record it writes:
//! a record is charged [`charge`] bytes, and inserting past the budget evicts the oldest records
//! first. The tier deletes the evicted keys in the same `WriteBatch` as the insert.
//!
//! On open the queue is rebuilt by iterating the database, ordered by the records' creation time
//! (the insertion order itself is not stored).
//!
//! Layout, for RAM per entry: each live record is one 72-byte node in an arena (`Vec`), holding
//! its key once, its size, its expiry and the links of a doubly-linked list in insertion order;
//! a `hashbrown::HashTable` of 4-byte node indices finds a node by key. A change (insert, with
//! the records it displaced) unlinks nodes without freeing them, so it can be undone exactly
//! (in reverse order, the unlinked nodes' links are still right: "dancing links") if the RocksDB
//! write fails; [`Budget::commit`] frees them once the write succeeded.

use cache_core::Timestamp;
use hashbrown::HashTable;

use crate::keys::{STORAGE_KEY_LEN, StorageKey};

/// Bytes a record of `record_len` bytes is charged: the RocksDB key plus the record.
pub(crate) fn charge(record_len: usize) -> u64 {
    (STORAGE_KEY_LEN + record_len) as u64
}

/// No node: the end of the list.
const NIL: u32 = u32::MAX;

/// What the budget knows about one live record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
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
    /// The node inserted.
    node: u32,
    /// The node of the key's previous record, unlinked.
    previous: Option<u32>,
    /// Nodes evicted to make room, oldest first, unlinked.
    victims: Vec<u32>,
    /// Records evicted to make room, oldest first.
    pub(crate) evicted: Vec<Victim>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    key: StorageKey,
    size: u64,
    /// Expiry in milliseconds, 0 for none (as in the record format).
    expires_ms: u64,
    prev: u32,
    next: u32,
}

impl Node {
    fn slot(&self) -> Slot {
        Slot {
            size: self.size,
            expires_at: (self.expires_ms != 0).then(|| Timestamp::from_millis(self.expires_ms)),
        }
    }
}

fn hash(key: &StorageKey) -> u64 {
    // Bytes 16..24 start the BLAKE3 key hash: already uniform.
    let mut b = [0u8; 8];
    b.copy_from_slice(&key.0[16..24]);
    u64::from_le_bytes(b)
}

/// Live records in insertion order and their total charge.
#[derive(Debug)]
pub(crate) struct Budget {
    capacity: u64,
    nodes: Vec<Node>,
    /// Indices of `nodes` that are free for reuse.
    free: Vec<u32>,
    index: HashTable<u32>,
    /// Oldest and newest live nodes.
    head: u32,
    tail: u32,
    bytes: u64,
}

impl Budget {
    pub(crate) fn new(capacity: u64) -> Budget {
        Budget {
            capacity,
            nodes: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
        }
    }

    /// Charged bytes of every live record.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Live records.
    pub(crate) fn len(&self) -> u64 {
        self.index.len() as u64
    }

    #[cfg(test)]
    fn find(&self, key: &StorageKey) -> Option<u32> {
        let nodes = &self.nodes;
        self.index.find(hash(key), |&i| nodes[i as usize].key == *key).copied()
    }

    /// Removes `key` from the index and unlinks its node, which stays allocated.
    fn detach(&mut self, key: &StorageKey) -> Option<u32> {
        let nodes = &self.nodes;
        let i =
            self.index.find_entry(hash(key), |&i| nodes[i as usize].key == *key).ok()?.remove().0;
        self.unlink(i);
        Some(i)
    }

    /// Puts a detached node back: its links are right if everything detached after it has been
    /// reattached already (reverse order).
    fn reattach(&mut self, i: u32) {
        let Node { prev, next, size, key, .. } = self.nodes[i as usize];
        if prev == NIL {
            self.head = i
        } else {
            self.nodes[prev as usize].next = i
        }
        if next == NIL {
            self.tail = i
        } else {
            self.nodes[next as usize].prev = i
        }
        self.bytes += size;
        let nodes = &self.nodes;
        self.index.insert_unique(hash(&key), i, |&j| hash(&nodes[j as usize].key));
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, size, .. } = self.nodes[i as usize];
        if prev == NIL {
            self.head = next
        } else {
            self.nodes[prev as usize].next = next
        }
        if next == NIL {
            self.tail = prev
        } else {
            self.nodes[next as usize].prev = prev
        }
        self.bytes -= size;
    }

    /// Records `key` as the newest entry with `size` charged bytes and evicts the oldest
    /// records until the total fits the budget. `size` must not exceed the capacity.
    ///
    /// Pass the returned change to [`Budget::commit`] once the write succeeded, or to
    /// [`Budget::undo`] (most recent first) if it failed.
    pub(crate) fn insert(
        &mut self,
        key: StorageKey,
        size: u64,
        expires_at: Option<Timestamp>,
    ) -> Change {
        debug_assert!(size <= self.capacity);
        let previous = self.detach(&key);
        let node = Node {
            key,
            size,
            expires_ms: expires_at.map_or(0, |t| t.as_millis().max(1)),
            prev: self.tail,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 live records")
            }
        };
        self.reattach(i);
        let mut victims = Vec::new();
        let mut evicted = Vec::new();
        while self.bytes > self.capacity && self.head != i {
            let oldest = self.head;
            let victim = self.nodes[oldest as usize];
            let detached = self.detach(&victim.key);
            debug_assert_eq!(detached, Some(oldest));
            victims.push(oldest);
            evicted.push(Victim { key: victim.key, slot: victim.slot() });
        }
        Change { node: i, previous, victims, evicted }
    }

    /// Frees the nodes `change` displaced: the write it describes succeeded.
    pub(crate) fn commit(&mut self, change: Change) {
        self.free.extend(change.previous);
        self.free.extend(change.victims);
    }

    /// Reverts `change` (the most recent change not yet undone).
    pub(crate) fn undo(&mut self, change: Change) {
        for &victim in change.victims.iter().rev() {
            self.reattach(victim);
        }
        let key = self.nodes[change.node as usize].key;
        let detached = self.detach(&key);
        debug_assert_eq!(detached, Some(change.node));
        self.free.push(change.node);
        if let Some(previous) = change.previous {
            self.reattach(previous);
        }
    }

    /// Forgets `key`; returns its slot if it was live.
    pub(crate) fn take(&mut self, key: &StorageKey) -> Option<Slot> {
        let i = self.detach(key)?;
        self.free.push(i);
        Some(self.nodes[i as usize].slot())
    }

    /// The slot of `key`, if live.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &StorageKey) -> Option<Slot> {
        self.find(key).map(|i| self.nodes[i as usize].slot())
    }

    /// Live keys, oldest first.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<StorageKey> {
        let mut out = Vec::new();
        let mut i = self.head;
        while i != NIL {
            out.push(self.nodes[i as usize].key);
            i = self.nodes[i as usize].next;
        }
        out
    }

    /// Forgets every record whose key starts with `prefix`; returns how many there were.
    ///
    /// This walks the in-memory list (no disk IO); the tier deletes the range on disk.
    pub(crate) fn remove_namespace(&mut self, prefix: &[u8]) -> u64 {
        let mut keys = Vec::new();
        let mut i = self.head;
        while i != NIL {
            let node = &self.nodes[i as usize];
            if node.key.namespace_prefix() == prefix {
                keys.push(node.key);
            }
            i = node.next;
        }
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

    /// Random inserts, removes, batches of changes committed or undone, against a plain model:
    /// a vector of (key, size) in insertion order.
    #[test]
    fn matches_a_simple_model() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let capacity = 500;
        let mut b = Budget::new(capacity);
        let mut model: Vec<(StorageKey, u64)> = Vec::new();
        for step in 0..20_000 {
            match rand(10) {
                0 => {
                    let key = k(rand(40) as u8);
                    let taken = b.take(&key).map(|s| s.size);
                    let pos = model.iter().position(|(mk, _)| *mk == key);
                    assert_eq!(taken, pos.map(|p| model.remove(p).1), "step {step}");
                }
                _ => {
                    // A batch of 1 – 3 inserts, committed or undone as a whole.
                    let before = model.clone();
                    let mut changes = Vec::new();
                    for _ in 0..=rand(3) {
                        let key = k(rand(40) as u8);
                        let size = 1 + rand(120);
                        let expires = (rand(2) == 0).then(|| Timestamp::from_millis(1 + rand(9)));
                        let change = b.insert(key, size, expires);
                        model.retain(|(mk, _)| *mk != key);
                        model.push((key, size));
                        let mut evicted = Vec::new();
                        while model.iter().map(|(_, s)| s).sum::<u64>() > capacity {
                            evicted.push(model.remove(0).0);
                        }
                        let got: Vec<_> = change.evicted.iter().map(|v| v.key).collect();
                        assert_eq!(got, evicted, "step {step}");
                        assert_eq!(b.get(&key).and_then(|s| s.expires_at), expires);
                        changes.push(change);
                    }
                    if rand(4) == 0 {
                        for change in changes.into_iter().rev() {
                            b.undo(change);
                        }
                        model = before;
                    } else {
                        for change in changes {
                            b.commit(change);
                        }
                    }
                }
            }
            let keys: Vec<_> = model.iter().map(|(mk, _)| *mk).collect();
            assert_eq!(b.keys(), keys, "step {step}");
            assert_eq!(b.bytes(), model.iter().map(|(_, s)| s).sum::<u64>(), "step {step}");
            assert_eq!(b.len(), model.len() as u64);
            assert!(b.bytes() <= capacity);
        }
        // Freed nodes are reused: the arena holds at most the live records plus what one
        // batch displaced (at most every live record) and inserted.
        assert!(b.nodes.len() <= 2 * 40 + 4, "{} nodes", b.nodes.len());
    }
}
