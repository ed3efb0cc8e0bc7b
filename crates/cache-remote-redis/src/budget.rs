//! The optional byte budget: an in-process account of the entries this tier instance wrote,
//! least recently used first (the same scheme as the object tier's budget).

use std::collections::{BTreeMap, HashMap};

use cache_core::{KeyHash, NamespaceId};

/// The account.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) capacity: u64,
    pub(crate) used: u64,
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

/// An entry chosen for eviction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Victim {
    pub(crate) ns: NamespaceId,
    pub(crate) hash: KeyHash,
    size: u64,
    seq: u64,
}

impl Ledger {
    pub(crate) fn new(capacity: u64) -> Ledger {
        Ledger { capacity, used: 0, next: 0, slots: HashMap::new(), order: BTreeMap::new() }
    }

    pub(crate) fn entries(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Records a written entry (replacing any earlier size) and picks the least recently used
    /// others to evict so the account fits the capacity again.
    pub(crate) fn insert(&mut self, ns: NamespaceId, hash: KeyHash, size: u64) -> Vec<Victim> {
        self.remove(&hash);
        let seq = self.bump();
        self.slots.insert(hash, Slot { ns, size, seq });
        self.order.insert(seq, hash);
        self.used += size;
        let mut victims = Vec::new();
        while self.used > self.capacity {
            let Some((_, &victim)) = self.order.iter().next() else { break };
            if victim == hash {
                break; // only the new entry is left; it fits by itself (checked on put)
            }
            let slot = self.take(&victim).expect("ordered entries have slots");
            victims.push(Victim { ns: slot.ns, hash: victim, size: slot.size, seq: slot.seq });
        }
        victims
    }

    fn bump(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }

    pub(crate) fn touch(&mut self, hash: &KeyHash) {
        let seq = self.next;
        if let Some(slot) = self.slots.get_mut(hash) {
            self.order.remove(&slot.seq);
            slot.seq = seq;
            self.order.insert(seq, *hash);
            self.next += 1;
        }
    }

    pub(crate) fn remove(&mut self, hash: &KeyHash) {
        self.take(hash);
    }

    fn take(&mut self, hash: &KeyHash) -> Option<Slot> {
        let slot = self.slots.remove(hash)?;
        self.order.remove(&slot.seq);
        self.used -= slot.size;
        Some(slot)
    }

    /// Puts back a victim whose delete failed, at its old place (unless it was written again).
    pub(crate) fn restore(&mut self, v: Victim) {
        if self.slots.contains_key(&v.hash) {
            return;
        }
        self.slots.insert(v.hash, Slot { ns: v.ns, size: v.size, seq: v.seq });
        self.order.insert(v.seq, v.hash);
        self.used += v.size;
    }

    pub(crate) fn clear_namespace(&mut self, ns: NamespaceId) {
        let gone: Vec<KeyHash> =
            self.slots.iter().filter(|(_, s)| s.ns == ns).map(|(h, _)| *h).collect();
        for hash in gone {
            self.remove(&hash);
        }
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
        assert_eq!(l.used, 80);
        assert!(l.insert(ns, h(3), 10).is_empty());
        assert_eq!(l.used, 50);
        l.restore(v[0]);
        assert_eq!(l.used, 90);
        l.clear_namespace(ns);
        assert_eq!((l.used, l.entries()), (0, 0));
    }
}
