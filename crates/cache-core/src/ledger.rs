//! A byte budget kept in the process for a tier whose store does not bound itself (an object
//! store, a shared Redis): an account of the entries this tier instance wrote, least recently
//! used first, which picks what to delete when a write would exceed the budget.

use std::collections::{BTreeMap, HashMap};

use crate::key::{KeyHash, NamespaceId};

/// The account of a tier's byte budget: each entry's size under its key hash, in least recently
/// used order. Not thread-safe by itself: a tier keeps it under a lock.
///
/// ```
/// use cache_core::{Key, Ledger};
///
/// let (a, b) = (Key::new("ns", "a").unwrap(), Key::new("ns", "b").unwrap());
/// let mut ledger = Ledger::new(100);
/// assert!(ledger.insert(a.namespace().id(), *a.hash(), 60).is_empty());
/// let victims = ledger.insert(b.namespace().id(), *b.hash(), 60);
/// assert_eq!(victims[0].hash, *a.hash(), "over the budget: the least recently used goes");
/// assert_eq!((ledger.used(), ledger.entries()), (60, 1));
/// ```
#[derive(Debug)]
pub struct Ledger {
    capacity: u64,
    used: u64,
    next: u64,
    slots: HashMap<KeyHash, Slot>,
    order: BTreeMap<u64, KeyHash>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    ns: NamespaceId,
    size: u64,
    seq: u64,
}

/// An entry [`Ledger::insert`] chose to evict: the tier deletes it, and if the delete fails
/// puts it back with [`Ledger::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Victim {
    /// Its namespace.
    pub ns: NamespaceId,
    /// Its key hash.
    pub hash: KeyHash,
    size: u64,
    seq: u64,
}

impl Ledger {
    /// An empty account of `capacity` bytes.
    pub fn new(capacity: u64) -> Ledger {
        Ledger { capacity, used: 0, next: 0, slots: HashMap::new(), order: BTreeMap::new() }
    }

    /// The budget in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes accounted for.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Entries accounted for.
    pub fn entries(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Records a written entry (replacing any earlier size) and picks the least recently used
    /// others to evict so the account fits the capacity again. The new entry itself is never
    /// picked: the tier checks that one entry fits before it writes.
    pub fn insert(&mut self, ns: NamespaceId, hash: KeyHash, size: u64) -> Vec<Victim> {
        self.remove(&hash);
        let seq = self.bump();
        self.slots.insert(hash, Slot { ns, size, seq });
        self.order.insert(seq, hash);
        self.used += size;
        let mut victims = Vec::new();
        while self.used > self.capacity {
            let Some((_, &victim)) = self.order.iter().next() else { break };
            if victim == hash {
                break;
            }
            let slot = self.take(&victim).expect("ordered entries have slots");
            victims.push(Victim { ns: slot.ns, hash: victim, size: slot.size, seq: slot.seq });
        }
        victims
    }

    /// Marks the entry under `hash` as used now (a hit).
    pub fn touch(&mut self, hash: &KeyHash) {
        let seq = self.next;
        if let Some(slot) = self.slots.get_mut(hash) {
            self.order.remove(&slot.seq);
            slot.seq = seq;
            self.order.insert(seq, *hash);
            self.next += 1;
        }
    }

    /// Forgets the entry under `hash` (it was removed or found gone).
    pub fn remove(&mut self, hash: &KeyHash) {
        self.take(hash);
    }

    /// Puts back a victim whose delete failed, at its old place in the order (unless its key
    /// was written again meanwhile).
    pub fn restore(&mut self, v: Victim) {
        if self.slots.contains_key(&v.hash) {
            return;
        }
        self.slots.insert(v.hash, Slot { ns: v.ns, size: v.size, seq: v.seq });
        self.order.insert(v.seq, v.hash);
        self.used += v.size;
    }

    /// Forgets every entry of namespace `ns`.
    pub fn clear_namespace(&mut self, ns: NamespaceId) {
        let gone: Vec<KeyHash> =
            self.slots.iter().filter(|(_, s)| s.ns == ns).map(|(h, _)| *h).collect();
        for hash in gone {
            self.remove(&hash);
        }
    }

    fn bump(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }

    fn take(&mut self, hash: &KeyHash) -> Option<Slot> {
        let slot = self.slots.remove(hash)?;
        self.order.remove(&slot.seq);
        self.used -= slot.size;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u8) -> KeyHash {
        KeyHash([i; 32])
    }

    #[test]
    fn evicts_least_recently_used() {
        let ns = NamespaceId([0; 16]);
        let mut l = Ledger::new(100);
        assert!(l.insert(ns, h(1), 40).is_empty());
        assert!(l.insert(ns, h(2), 40).is_empty());
        l.touch(&h(1));
        let v = l.insert(ns, h(3), 40);
        assert_eq!(v.iter().map(|v| v.hash).collect::<Vec<_>>(), vec![h(2)]);
        assert_eq!(l.used(), 80);
        // Rewriting replaces the size.
        assert!(l.insert(ns, h(3), 10).is_empty());
        assert_eq!(l.used(), 50);
        l.restore(v[0]);
        assert_eq!(l.used(), 90);
        let v = l.insert(ns, h(4), 60);
        assert_eq!(v.iter().map(|v| v.hash).collect::<Vec<_>>(), vec![h(2), h(1)]);
        assert_eq!(l.used(), 70);
        l.clear_namespace(ns);
        assert_eq!((l.used(), l.entries(), l.order.len()), (0, 0, 0));
    }

    #[test]
    fn a_restored_victim_written_again_meanwhile_keeps_its_new_size() {
        let ns = NamespaceId([1; 16]);
        let mut l = Ledger::new(50);
        assert!(l.insert(ns, h(1), 40).is_empty());
        let v = l.insert(ns, h(2), 40);
        assert_eq!(v.len(), 1);
        assert!(l.insert(ns, h(1), 5).is_empty(), "key 1 written again, smaller");
        l.restore(v[0]);
        assert_eq!((l.used(), l.entries()), (45, 2), "the later write wins");
    }
}
