//! Exact reference policies (LRU and FIFO) for checking a replay against published numbers.
//!
//! Semantics follow libCacheSim: a request for an id in the cache is a hit (LRU moves it to
//! the head; the stored size is kept, objects are identified by id alone). On a miss the
//! object is inserted, evicting from the tail until it fits; an object larger than the whole
//! capacity is not inserted. With an entries capacity every object weighs 1.

use std::collections::HashMap;

use crate::trace::Request;

/// How a reference cache is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capacity {
    /// At most this many objects.
    Entries(u64),
    /// At most this many bytes of object data.
    Bytes(u64),
}

impl Capacity {
    /// The weight of `req` under this bound.
    fn weight(self, req: &Request) -> u64 {
        match self {
            Capacity::Entries(_) => 1,
            Capacity::Bytes(_) => u64::from(req.size),
        }
    }

    /// The bound itself.
    pub fn limit(self) -> u64 {
        match self {
            Capacity::Entries(n) | Capacity::Bytes(n) => n,
        }
    }

    /// `1000 entries` or `128 MiB`.
    pub fn label(self) -> String {
        match self {
            Capacity::Entries(n) => format!("{n} entries"),
            Capacity::Bytes(n) if n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
            Capacity::Bytes(n) => format!("{n} B"),
        }
    }
}

/// The replacement order of a reference cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Least recently used: hits move to the head.
    Lru,
    /// First in, first out: hits change nothing.
    Fifo,
}

impl Policy {
    /// `LRU` or `FIFO`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Lru => "LRU",
            Policy::Fifo => "FIFO",
        }
    }
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    id: u64,
    weight: u64,
    prev: u32,
    next: u32,
}

/// An exact LRU or FIFO cache of ids: a hash map into a doubly-linked list kept in a slab.
#[derive(Debug)]
pub struct ReferenceCache {
    policy: Policy,
    capacity: Capacity,
    map: HashMap<u64, u32>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Most recently used (or inserted) end.
    head: u32,
    /// The next victim.
    tail: u32,
    used: u64,
    hits: u64,
    misses: u64,
}

impl ReferenceCache {
    /// An empty cache.
    pub fn new(policy: Policy, capacity: Capacity) -> ReferenceCache {
        ReferenceCache {
            policy,
            capacity,
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            used: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Serves one request; returns whether it hit.
    pub fn access(&mut self, req: &Request) -> bool {
        if let Some(&i) = self.map.get(&req.id) {
            self.hits += 1;
            if self.policy == Policy::Lru && self.head != i {
                self.unlink(i);
                self.push_head(i);
            }
            return true;
        }
        self.misses += 1;
        let weight = self.capacity.weight(req);
        let limit = self.capacity.limit();
        if weight > limit {
            return false;
        }
        while self.used + weight > limit {
            self.evict();
        }
        let node = Node { id: req.id, weight, prev: NIL, next: NIL };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 objects")
            }
        };
        self.push_head(i);
        self.map.insert(req.id, i);
        self.used += weight;
        false
    }

    fn evict(&mut self) {
        let i = self.tail;
        assert_ne!(i, NIL, "evicting from an empty cache");
        self.unlink(i);
        let node = self.nodes[i as usize];
        self.map.remove(&node.id);
        self.used -= node.weight;
        self.free.push(i);
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn push_head(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            self.nodes[old as usize].prev = i;
        }
        self.head = i;
    }

    /// Hits so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Misses so far.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Weight held (objects or bytes).
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// The outcome of a reference replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceResult {
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
}

impl ReferenceResult {
    /// Hits divided by requests.
    pub fn hit_ratio(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 { 0.0 } else { self.hits as f64 / n as f64 }
    }
}

/// Replays `trace` through a fresh reference cache.
pub fn simulate(trace: &[Request], policy: Policy, capacity: Capacity) -> ReferenceResult {
    let mut cache = ReferenceCache::new(policy, capacity);
    for req in trace {
        cache.access(req);
    }
    ReferenceResult { hits: cache.hits(), misses: cache.misses() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(ids: &[(u64, u32)]) -> Vec<Request> {
        ids.iter().map(|&(id, size)| Request { id, size }).collect()
    }

    #[test]
    fn lru_and_fifo_differ_on_a_hit() {
        // Capacity 2: a b a c a -> LRU keeps a (hits 2), FIFO evicts a at c (hits 1).
        let t = reqs(&[(1, 1), (2, 1), (1, 1), (3, 1), (1, 1)]);
        assert_eq!(simulate(&t, Policy::Lru, Capacity::Entries(2)).hits, 2);
        assert_eq!(simulate(&t, Policy::Fifo, Capacity::Entries(2)).hits, 1);
    }

    #[test]
    fn bytes_evict_until_it_fits_and_skip_oversized() {
        let mut c = ReferenceCache::new(Policy::Lru, Capacity::Bytes(100));
        for r in reqs(&[(1, 40), (2, 40), (3, 50)]) {
            c.access(&r);
        }
        // 3 needed 50: evicting 1 freed enough.
        assert_eq!((c.len(), c.used()), (2, 90));
        assert!(!c.access(&Request { id: 9, size: 101 }));
        assert_eq!((c.len(), c.used()), (2, 90));
        assert!(c.access(&Request { id: 2, size: 40 }));
        assert!(!c.access(&Request { id: 1, size: 40 }));
        // 3 was least recently used.
        assert!(!c.access(&Request { id: 3, size: 50 }));
    }
}
