//! Exact reference policies for checking a replay against published numbers: LRU, FIFO,
//! S3-FIFO, ARC, SIEVE and Belady with libCacheSim's semantics, plus `OPT`, an upper bound on
//! the hits of any cache of the same capacity.
//!
//! Common rules (libCacheSim's `cache_get_base`): a request for an id in the cache is a hit;
//! objects are identified by id alone and keep the size they were inserted with. On a miss an
//! object that fits is inserted after evicting until it fits; an object larger than the whole
//! capacity is not inserted (and counts as a miss). With an entries capacity every object weighs
//! 1, as with libCacheSim's `ignore_obj_size`.
//!
//! Per policy, following libCacheSim's source (`libCacheSim/cache/eviction/*.c`):
//!
//! - **LRU**, **FIFO**: one queue; LRU moves a hit to the head.
//! - **S3-FIFO** (`S3FIFOv0.c`, the SOSP'23 algorithm, `move-to-main-threshold=2`): a small FIFO
//!   of 10 % of the capacity, a main FIFO of the rest and a ghost FIFO of evicted ids bounded by
//!   90 % of the capacity (in the capacity's unit). Hits count a frequency. New objects go to the
//!   small queue, ids found in the ghost to main. The small queue is evicted while main is within
//!   its share: its oldest object moves to main if it was hit at least twice, else its id goes to
//!   the ghost. Main evicts FIFO, reinserting an object hit since with its frequency capped at 3
//!   and decremented. An object at least as large as the small queue is not admitted there.
//! - **ARC** (`ARC.c`): T1/T2 with ghosts B1/B2 bounded in the capacity's unit; the target `p`
//!   is a float that a ghost hit moves by `max(|B2|/|B1|, 1)` (or the reverse), as in the paper.
//! - **SIEVE** (`Sieve.c`): one FIFO with a visited bit and a hand that sweeps from the tail to
//!   the head, clearing bits, and evicts the first unvisited object.
//! - **Belady** (`Belady.c`): on a miss the object is always inserted, evicting the cached object
//!   whose next access is farthest (never accessed again counts as farthest). Ties between
//!   objects that are never accessed again are broken as libCacheSim's binary heap breaks them
//!   (its `pqueue.c` is reproduced here), which matters with sizes.
//!
//! **OPT** is an upper bound, not a policy a cache can run: with an entries capacity it is the
//! exact optimum of a demand cache that may decline to insert (Belady's rule over the cached
//! objects and the incoming one); with a bytes capacity, where the exact optimum is NP-hard, it is
//! the PFOO-U bound of Berger et al. (SIGMETRICS'18): the largest number of reuse intervals whose
//! byte-time `size × length` fits in `capacity × requests`. No cache of that capacity that only
//! fills on a miss can hit more often, so a result above OPT is a bug (or a cache given more room
//! than the capacity), never a result.

use std::collections::{BinaryHeap, HashMap};

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
    pub fn weight(self, req: &Request) -> u64 {
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

/// A reference policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Least recently used: hits move to the head.
    Lru,
    /// First in, first out: hits change nothing.
    Fifo,
    /// S3-FIFO (libCacheSim's `S3FIFOv0`, the published algorithm).
    S3Fifo,
    /// Adaptive replacement cache.
    Arc,
    /// SIEVE.
    Sieve,
    /// Belady's farthest-next-access rule, always inserting (libCacheSim's `Belady`).
    Belady,
    /// The upper bound on hits: exact optimum with bypass (entries) or PFOO-U (bytes).
    Opt,
}

impl Policy {
    /// Every policy, in table order.
    pub const ALL: [Policy; 7] = [
        Policy::Lru,
        Policy::Fifo,
        Policy::S3Fifo,
        Policy::Arc,
        Policy::Sieve,
        Policy::Belady,
        Policy::Opt,
    ];

    /// `LRU`, `FIFO`, `S3-FIFO`, `ARC`, `SIEVE`, `Belady` or `OPT`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Lru => "LRU",
            Policy::Fifo => "FIFO",
            Policy::S3Fifo => "S3-FIFO",
            Policy::Arc => "ARC",
            Policy::Sieve => "SIEVE",
            Policy::Belady => "Belady",
            Policy::Opt => "OPT",
        }
    }

    /// Whether the policy reads the future (the next access of each request).
    pub fn needs_future(self) -> bool {
        matches!(self, Policy::Belady | Policy::Opt)
    }
}

/// The next access of a request that is never accessed again.
pub const NEVER: u64 = u64::MAX;

/// For each request, the position of the next request for the same id (or [`NEVER`]), from one
/// backward pass.
pub fn next_accesses(trace: &[Request]) -> Vec<u64> {
    let mut seen: HashMap<u64, u64> = HashMap::with_capacity(trace.len() / 4);
    let mut next = vec![NEVER; trace.len()];
    for (i, r) in trace.iter().enumerate().rev() {
        if let Some(j) = seen.insert(r.id, i as u64) {
            next[i] = j;
        }
    }
    next
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    id: u64,
    weight: u64,
    /// Towards the head (newer).
    prev: u32,
    /// Towards the tail (older).
    next: u32,
    freq: u32,
    list: u8,
}

/// Nodes of every list of one cache.
#[derive(Debug, Default)]
struct Slab {
    nodes: Vec<Node>,
    free: Vec<u32>,
}

impl Slab {
    fn alloc(&mut self, id: u64, weight: u64, list: u8) -> u32 {
        let node = Node { id, weight, prev: NIL, next: NIL, freq: 0, list };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 objects")
            }
        }
    }

    fn release(&mut self, i: u32) {
        self.free.push(i);
    }

    fn get(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    fn get_mut(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[i as usize]
    }
}

/// A doubly-linked list threaded through a [`Slab`]; the head is the newest end.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    weight: u64,
}

impl List {
    const EMPTY: List = List { head: NIL, tail: NIL, weight: 0 };

    fn push_head(&mut self, s: &mut Slab, i: u32) {
        let old = self.head;
        {
            let n = s.get_mut(i);
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            s.get_mut(old).prev = i;
        }
        self.head = i;
        self.weight += s.get(i).weight;
    }

    fn unlink(&mut self, s: &mut Slab, i: u32) {
        let Node { prev, next, weight, .. } = *s.get(i);
        if prev == NIL {
            self.head = next;
        } else {
            s.get_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            s.get_mut(next).prev = prev;
        }
        self.weight -= weight;
    }
}

/// LRU or FIFO.
#[derive(Debug)]
struct Queue {
    lru: bool,
    limit: u64,
    map: HashMap<u64, u32>,
    slab: Slab,
    list: List,
}

impl Queue {
    fn access(&mut self, id: u64, w: u64) -> bool {
        if let Some(&i) = self.map.get(&id) {
            if self.lru && self.list.head != i {
                self.list.unlink(&mut self.slab, i);
                self.list.push_head(&mut self.slab, i);
            }
            return true;
        }
        if w > self.limit {
            return false;
        }
        while self.list.weight + w > self.limit {
            let t = self.list.tail;
            self.list.unlink(&mut self.slab, t);
            self.map.remove(&self.slab.get(t).id);
            self.slab.release(t);
        }
        let i = self.slab.alloc(id, w, 0);
        self.list.push_head(&mut self.slab, i);
        self.map.insert(id, i);
        false
    }
}

/// SIEVE.
#[derive(Debug)]
struct Sieve {
    limit: u64,
    map: HashMap<u64, u32>,
    slab: Slab,
    list: List,
    hand: u32,
}

impl Sieve {
    fn access(&mut self, id: u64, w: u64) -> bool {
        if let Some(&i) = self.map.get(&id) {
            self.slab.get_mut(i).freq = 1;
            return true;
        }
        if w > self.limit {
            return false;
        }
        while self.list.weight + w > self.limit {
            self.evict();
        }
        let i = self.slab.alloc(id, w, 0);
        self.list.push_head(&mut self.slab, i);
        self.map.insert(id, i);
        false
    }

    fn evict(&mut self) {
        let mut o = if self.hand == NIL { self.list.tail } else { self.hand };
        while self.slab.get(o).freq > 0 {
            let n = self.slab.get_mut(o);
            n.freq -= 1;
            o = if n.prev == NIL { self.list.tail } else { n.prev };
        }
        self.hand = self.slab.get(o).prev;
        self.list.unlink(&mut self.slab, o);
        self.map.remove(&self.slab.get(o).id);
        self.slab.release(o);
    }
}

const SMALL: u8 = 0;
const MAIN: u8 = 1;

/// S3-FIFO as libCacheSim's `S3FIFOv0`.
#[derive(Debug)]
struct S3Fifo {
    limit: u64,
    small_cap: u64,
    main_cap: u64,
    ghost_cap: u64,
    map: HashMap<u64, u32>,
    ghost_map: HashMap<u64, u32>,
    slab: Slab,
    small: List,
    main: List,
    ghost: List,
}

impl S3Fifo {
    fn new(limit: u64) -> S3Fifo {
        // libCacheSim: `(int64_t)(cache_size * 0.1)`, the rest to main, `cache_size * 0.9` ghost.
        let small_cap = (limit as f64 * 0.1) as u64;
        S3Fifo {
            limit,
            small_cap,
            main_cap: limit - small_cap,
            ghost_cap: (limit as f64 * 0.9) as u64,
            map: HashMap::new(),
            ghost_map: HashMap::new(),
            slab: Slab::default(),
            small: List::EMPTY,
            main: List::EMPTY,
            ghost: List::EMPTY,
        }
    }

    fn access(&mut self, id: u64, w: u64) -> bool {
        if let Some(&i) = self.map.get(&id) {
            self.slab.get_mut(i).freq += 1;
            return true;
        }
        let mut hit_on_ghost = false;
        if let Some(g) = self.ghost_map.remove(&id) {
            self.ghost.unlink(&mut self.slab, g);
            self.slab.release(g);
            hit_on_ghost = true;
        }
        if w > self.small_cap || w > self.limit {
            return false;
        }
        while self.small.weight + self.main.weight + w > self.limit {
            self.evict();
        }
        let list = if hit_on_ghost {
            MAIN
        } else if w >= self.small_cap {
            // libCacheSim refuses an object that would fill the small queue on its own.
            return false;
        } else {
            SMALL
        };
        let i = self.slab.alloc(id, w, list);
        if list == MAIN {
            self.main.push_head(&mut self.slab, i);
        } else {
            self.small.push_head(&mut self.slab, i);
        }
        self.map.insert(id, i);
        false
    }

    fn evict(&mut self) {
        if self.main.weight > self.main_cap || self.small.weight == 0 {
            self.evict_main();
        } else {
            self.evict_small();
        }
    }

    fn evict_small(&mut self) {
        while self.small.weight > 0 {
            let t = self.small.tail;
            self.small.unlink(&mut self.slab, t);
            if self.slab.get(t).freq >= 2 {
                let n = self.slab.get_mut(t);
                n.freq = 0;
                n.list = MAIN;
                self.main.push_head(&mut self.slab, t);
            } else {
                let Node { id, weight, .. } = *self.slab.get(t);
                self.map.remove(&id);
                self.slab.release(t);
                self.ghost_insert(id, weight);
                return;
            }
        }
    }

    fn evict_main(&mut self) {
        while self.main.weight > 0 {
            let t = self.main.tail;
            self.main.unlink(&mut self.slab, t);
            let f = self.slab.get(t).freq;
            if f >= 1 {
                self.slab.get_mut(t).freq = f.min(3) - 1;
                self.main.push_head(&mut self.slab, t);
            } else {
                self.map.remove(&self.slab.get(t).id);
                self.slab.release(t);
                return;
            }
        }
    }

    /// libCacheSim's `ghost_fifo->get`: a FIFO of ids with their weights.
    fn ghost_insert(&mut self, id: u64, w: u64) {
        if self.ghost_cap == 0 || w > self.ghost_cap {
            return;
        }
        while self.ghost.weight + w > self.ghost_cap {
            let t = self.ghost.tail;
            self.ghost.unlink(&mut self.slab, t);
            self.ghost_map.remove(&self.slab.get(t).id);
            self.slab.release(t);
        }
        let g = self.slab.alloc(id, w, 2);
        self.ghost.push_head(&mut self.slab, g);
        self.ghost_map.insert(id, g);
    }
}

const T1: u8 = 0;
const B1: u8 = 1;
const T2: u8 = 2;
const B2: u8 = 3;

/// ARC as libCacheSim's `ARC.c`.
#[derive(Debug)]
struct Arc {
    limit: u64,
    map: HashMap<u64, u32>,
    slab: Slab,
    t1: List,
    b1: List,
    t2: List,
    b2: List,
    p: f64,
    /// The last ghost hit's list (libCacheSim keeps these flags until the next request that finds
    /// its id in the table).
    in_b1: bool,
    in_b2: bool,
}

impl Arc {
    fn new(limit: u64) -> Arc {
        Arc {
            limit,
            map: HashMap::new(),
            slab: Slab::default(),
            t1: List::EMPTY,
            b1: List::EMPTY,
            t2: List::EMPTY,
            b2: List::EMPTY,
            p: 0.0,
            in_b1: false,
            in_b2: false,
        }
    }

    fn access(&mut self, id: u64, w: u64) -> bool {
        let mut ghost_hit = false;
        if let Some(&i) = self.map.get(&id) {
            self.in_b1 = false;
            self.in_b2 = false;
            match self.slab.get(i).list {
                T1 => {
                    self.t1.unlink(&mut self.slab, i);
                    self.slab.get_mut(i).list = T2;
                    self.t2.push_head(&mut self.slab, i);
                    return true;
                }
                T2 => {
                    self.t2.unlink(&mut self.slab, i);
                    self.t2.push_head(&mut self.slab, i);
                    return true;
                }
                B1 => {
                    self.in_b1 = true;
                    let delta = (self.b2.weight as f64 / self.b1.weight as f64).max(1.0);
                    self.p = (self.p + delta).min(self.limit as f64);
                    self.b1.unlink(&mut self.slab, i);
                }
                _ => {
                    self.in_b2 = true;
                    let delta = (self.b1.weight as f64 / self.b2.weight as f64).max(1.0);
                    self.p = (self.p - delta).max(0.0);
                    self.b2.unlink(&mut self.slab, i);
                }
            }
            self.map.remove(&id);
            self.slab.release(i);
            ghost_hit = true;
        }
        if w > self.limit {
            return false;
        }
        while self.t1.weight + self.t2.weight + w > self.limit {
            if ghost_hit {
                self.replace();
            } else {
                self.evict_miss_on_all_queues(w);
            }
        }
        let i = self.slab.alloc(id, w, if ghost_hit { T2 } else { T1 });
        if ghost_hit {
            self.t2.push_head(&mut self.slab, i);
            self.in_b1 = false;
            self.in_b2 = false;
        } else {
            self.t1.push_head(&mut self.slab, i);
        }
        self.map.insert(id, i);
        false
    }

    /// REPLACE of the paper: T1's LRU to B1 or T2's LRU to B2.
    fn replace(&mut self) {
        let t1 = self.t1.weight as f64;
        let from_t1 = (self.t1.weight > 0 && (t1 > self.p || (t1 == self.p && self.in_b2)))
            || self.t2.weight == 0;
        let (from, to) = if from_t1 { (T1, B1) } else { (T2, B2) };
        let i = self.list(from).tail;
        let mut src = *self.list(from);
        src.unlink(&mut self.slab, i);
        *self.list_mut(from) = src;
        self.slab.get_mut(i).list = to;
        let mut dst = *self.list(to);
        dst.push_head(&mut self.slab, i);
        *self.list_mut(to) = dst;
    }

    /// Case IV of the paper, with libCacheSim's tests on ghost sizes for variable sizes.
    fn evict_miss_on_all_queues(&mut self, w: u64) {
        if self.t1.weight + self.b1.weight + w > self.limit {
            if self.b1.weight > 0 {
                self.drop_tail(B1);
                self.replace();
            } else {
                self.drop_tail(T1);
            }
        } else {
            let total = self.t1.weight + self.b1.weight + self.t2.weight + self.b2.weight;
            if total >= 2 * self.limit && self.b2.weight > 0 {
                self.drop_tail(B2);
            }
            self.replace();
        }
    }

    fn drop_tail(&mut self, list: u8) {
        let i = self.list(list).tail;
        let mut l = *self.list(list);
        l.unlink(&mut self.slab, i);
        *self.list_mut(list) = l;
        self.map.remove(&self.slab.get(i).id);
        self.slab.release(i);
    }

    fn list(&self, l: u8) -> &List {
        match l {
            T1 => &self.t1,
            B1 => &self.b1,
            T2 => &self.t2,
            _ => &self.b2,
        }
    }

    fn list_mut(&mut self, l: u8) -> &mut List {
        match l {
            T1 => &mut self.t1,
            B1 => &mut self.b1,
            T2 => &mut self.t2,
            _ => &mut self.b2,
        }
    }
}

/// libCacheSim's `pqueue.c` (a binary max-heap, 1-based, with positions kept in the nodes),
/// reproduced operation for operation so that ties break the same way.
#[derive(Debug, Default)]
struct Pqueue {
    /// `d[0]` is unused.
    d: Vec<u32>,
    pri: Vec<u64>,
    pos: Vec<usize>,
    id: Vec<u64>,
    free: Vec<u32>,
}

impl Pqueue {
    fn new() -> Pqueue {
        Pqueue { d: vec![NIL], ..Pqueue::default() }
    }

    fn node(&mut self, id: u64, pri: u64) -> u32 {
        match self.free.pop() {
            Some(n) => {
                self.pri[n as usize] = pri;
                self.id[n as usize] = id;
                n
            }
            None => {
                self.pri.push(pri);
                self.pos.push(0);
                self.id.push(id);
                u32::try_from(self.pri.len() - 1).expect("fewer than 2^32 objects")
            }
        }
    }

    fn p(&self, slot: usize) -> u64 {
        self.pri[self.d[slot] as usize]
    }

    fn set(&mut self, slot: usize, n: u32) {
        self.d[slot] = n;
        self.pos[n as usize] = slot;
    }

    fn bubble_up(&mut self, mut i: usize) {
        let moving = self.d[i];
        let mp = self.pri[moving as usize];
        while i > 1 && self.p(i / 2) < mp {
            let parent = self.d[i / 2];
            self.set(i, parent);
            i /= 2;
        }
        self.set(i, moving);
    }

    fn maxchild(&self, i: usize) -> usize {
        let c = 2 * i;
        if c >= self.d.len() {
            return 0;
        }
        if c + 1 < self.d.len() && self.p(c) < self.p(c + 1) { c + 1 } else { c }
    }

    fn percolate_down(&mut self, mut i: usize) {
        let moving = self.d[i];
        let mp = self.pri[moving as usize];
        loop {
            let c = self.maxchild(i);
            if c == 0 || mp >= self.p(c) {
                break;
            }
            let child = self.d[c];
            self.set(i, child);
            i = c;
        }
        self.set(i, moving);
    }

    fn insert(&mut self, n: u32) {
        self.d.push(n);
        let i = self.d.len() - 1;
        self.bubble_up(i);
    }

    fn change_priority(&mut self, n: u32, pri: u64) {
        let old = self.pri[n as usize];
        self.pri[n as usize] = pri;
        let posn = self.pos[n as usize];
        if old < pri {
            self.bubble_up(posn);
        } else {
            self.percolate_down(posn);
        }
    }

    fn pop(&mut self) -> u32 {
        let head = self.d[1];
        let last = self.d.pop().expect("non-empty heap");
        if self.d.len() > 1 {
            self.d[1] = last;
            self.percolate_down(1);
        }
        self.free.push(head);
        head
    }
}

/// Belady as libCacheSim's `Belady.c`.
#[derive(Debug)]
struct Belady {
    limit: u64,
    used: u64,
    /// id -> (heap node, weight).
    map: HashMap<u64, (u32, u64)>,
    pq: Pqueue,
}

impl Belady {
    fn access(&mut self, id: u64, w: u64, next: u64) -> bool {
        if let Some(&(n, _)) = self.map.get(&id) {
            self.pq.change_priority(n, next);
            return true;
        }
        if w > self.limit {
            return false;
        }
        while self.used + w > self.limit {
            let n = self.pq.pop();
            let victim = self.pq.id[n as usize];
            let (_, vw) = self.map.remove(&victim).expect("heap and map agree");
            self.used -= vw;
        }
        let n = self.pq.node(id, next);
        self.pq.insert(n);
        self.map.insert(id, (n, w));
        self.used += w;
        false
    }
}

/// The exact optimum of a unit-size demand cache that may decline to insert.
#[derive(Debug)]
struct OptEntries {
    limit: u64,
    /// id -> its current next access.
    map: HashMap<u64, u64>,
    /// (next access, id), with stale entries skipped lazily.
    heap: BinaryHeap<(u64, u64)>,
}

impl OptEntries {
    fn access(&mut self, id: u64, next: u64) -> bool {
        if let Some(cur) = self.map.get_mut(&id) {
            *cur = next;
            self.heap.push((next, id));
            return true;
        }
        if self.limit == 0 {
            return false;
        }
        if self.map.len() as u64 >= self.limit {
            // The cached object needed last (a stale heap entry is skipped).
            let (far, victim) = loop {
                let (n, v) = self.heap.pop().expect("a full cache has heap entries");
                if self.map.get(&v) == Some(&n) {
                    break (n, v);
                }
            };
            if next >= far {
                self.heap.push((far, victim));
                return false;
            }
            self.map.remove(&victim);
        }
        self.map.insert(id, next);
        self.heap.push((next, id));
        false
    }
}

/// The PFOO-U upper bound on hits for a byte capacity.
fn pfoo_upper(trace: &[Request], limit: u64) -> u64 {
    let mut last: HashMap<u64, u64> = HashMap::with_capacity(trace.len() / 4);
    let mut costs: Vec<u128> = Vec::new();
    for (i, r) in trace.iter().enumerate() {
        if let Some(j) = last.insert(r.id, i as u64)
            && u64::from(r.size) <= limit
        {
            costs.push(u128::from(r.size) * u128::from(i as u64 - j));
        }
    }
    costs.sort_unstable();
    let budget = u128::from(limit) * trace.len() as u128;
    let mut used = 0u128;
    let mut hits = 0u64;
    for c in costs {
        used += c;
        if used > budget {
            break;
        }
        hits += 1;
    }
    hits
}

#[derive(Debug)]
enum Inner {
    Queue(Queue),
    Sieve(Sieve),
    S3Fifo(S3Fifo),
    Arc(Arc),
    Belady(Belady),
    Opt(OptEntries),
}

/// An exact reference cache of ids (for `Policy::Opt`, entries capacities only).
#[derive(Debug)]
pub struct ReferenceCache {
    capacity: Capacity,
    inner: Inner,
    hits: u64,
    misses: u64,
}

impl ReferenceCache {
    /// An empty cache.
    ///
    /// # Panics
    /// For `Policy::Opt` with a bytes capacity, which is a bound computed over the whole trace
    /// ([`simulate`] gives it), not a cache.
    pub fn new(policy: Policy, capacity: Capacity) -> ReferenceCache {
        let limit = capacity.limit();
        let queue = |lru| Queue {
            lru,
            limit,
            map: HashMap::new(),
            slab: Slab::default(),
            list: List::EMPTY,
        };
        let inner = match policy {
            Policy::Lru => Inner::Queue(queue(true)),
            Policy::Fifo => Inner::Queue(queue(false)),
            Policy::Sieve => Inner::Sieve(Sieve {
                limit,
                map: HashMap::new(),
                slab: Slab::default(),
                list: List::EMPTY,
                hand: NIL,
            }),
            Policy::S3Fifo => Inner::S3Fifo(S3Fifo::new(limit)),
            Policy::Arc => Inner::Arc(Arc::new(limit)),
            Policy::Belady => {
                Inner::Belady(Belady { limit, used: 0, map: HashMap::new(), pq: Pqueue::new() })
            }
            Policy::Opt => {
                assert!(
                    matches!(capacity, Capacity::Entries(_)),
                    "OPT with a bytes capacity is a bound over the whole trace: use simulate"
                );
                Inner::Opt(OptEntries { limit, map: HashMap::new(), heap: BinaryHeap::new() })
            }
        };
        ReferenceCache { capacity, inner, hits: 0, misses: 0 }
    }

    /// Serves one request whose next access is `next` (from [`next_accesses`]; ignored by the
    /// policies that do not read the future); returns whether it hit.
    pub fn access(&mut self, req: &Request, next: u64) -> bool {
        let w = self.capacity.weight(req);
        let hit = match &mut self.inner {
            Inner::Queue(c) => c.access(req.id, w),
            Inner::Sieve(c) => c.access(req.id, w),
            Inner::S3Fifo(c) => c.access(req.id, w),
            Inner::Arc(c) => c.access(req.id, w),
            Inner::Belady(c) => c.access(req.id, w, next),
            Inner::Opt(c) => c.access(req.id, next),
        };
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
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
        match &self.inner {
            Inner::Queue(c) => c.map.len(),
            Inner::Sieve(c) => c.map.len(),
            Inner::S3Fifo(c) => c.map.len(),
            Inner::Arc(c) => c.t1_t2_len(),
            Inner::Belady(c) => c.map.len(),
            Inner::Opt(c) => c.map.len(),
        }
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Weight held (objects or bytes).
    pub fn used(&self) -> u64 {
        match &self.inner {
            Inner::Queue(c) => c.list.weight,
            Inner::Sieve(c) => c.list.weight,
            Inner::S3Fifo(c) => c.small.weight + c.main.weight,
            Inner::Arc(c) => c.t1.weight + c.t2.weight,
            Inner::Belady(c) => c.used,
            Inner::Opt(c) => c.map.len() as u64,
        }
    }
}

impl Arc {
    fn t1_t2_len(&self) -> usize {
        self.map.values().filter(|&&i| matches!(self.slab.get(i).list, T1 | T2)).count()
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

/// Replays `trace` through a fresh reference cache (computing next accesses when needed).
pub fn simulate(trace: &[Request], policy: Policy, capacity: Capacity) -> ReferenceResult {
    if policy.needs_future() {
        simulate_with(trace, &next_accesses(trace), policy, capacity)
    } else {
        simulate_with(trace, &[], policy, capacity)
    }
}

/// [`simulate`] with the next accesses already computed (`next` may be empty for policies that
/// do not read the future).
///
/// # Panics
/// If `policy` reads the future and `next` is not as long as `trace`.
pub fn simulate_with(
    trace: &[Request],
    next: &[u64],
    policy: Policy,
    capacity: Capacity,
) -> ReferenceResult {
    if let (Policy::Opt, Capacity::Bytes(limit)) = (policy, capacity) {
        let hits = pfoo_upper(trace, limit);
        return ReferenceResult { hits, misses: trace.len() as u64 - hits };
    }
    if policy.needs_future() {
        assert_eq!(next.len(), trace.len(), "next accesses of another trace");
    }
    let mut cache = ReferenceCache::new(policy, capacity);
    for (i, req) in trace.iter().enumerate() {
        cache.access(req, next.get(i).copied().unwrap_or(NEVER));
    }
    ReferenceResult { hits: cache.hits(), misses: cache.misses() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(ids: &[(u64, u32)]) -> Vec<Request> {
        ids.iter().map(|&(id, size)| Request { id, size }).collect()
    }

    fn units(ids: &[u64]) -> Vec<Request> {
        ids.iter().map(|&id| Request { id, size: 1 }).collect()
    }

    fn hits(t: &[Request], p: Policy, c: u64) -> u64 {
        simulate(t, p, Capacity::Entries(c)).hits
    }

    #[test]
    fn lru_and_fifo_differ_on_a_hit() {
        // Capacity 2: a b a c a -> LRU keeps a (hits 2), FIFO evicts a at c (hits 1).
        let t = units(&[1, 2, 1, 3, 1]);
        assert_eq!(hits(&t, Policy::Lru, 2), 2);
        assert_eq!(hits(&t, Policy::Fifo, 2), 1);
    }

    #[test]
    fn bytes_evict_until_it_fits_and_skip_oversized() {
        let mut c = ReferenceCache::new(Policy::Lru, Capacity::Bytes(100));
        for r in reqs(&[(1, 40), (2, 40), (3, 50)]) {
            c.access(&r, NEVER);
        }
        // 3 needed 50: evicting 1 freed enough.
        assert_eq!((c.len(), c.used()), (2, 90));
        assert!(!c.access(&Request { id: 9, size: 101 }, NEVER));
        assert_eq!((c.len(), c.used()), (2, 90));
        assert!(c.access(&Request { id: 2, size: 40 }, NEVER));
        assert!(!c.access(&Request { id: 1, size: 40 }, NEVER));
        // 3 was least recently used.
        assert!(!c.access(&Request { id: 3, size: 50 }, NEVER));
    }

    #[test]
    fn next_accesses_by_one_backward_pass() {
        assert_eq!(next_accesses(&units(&[1, 2, 1, 1, 3])), [2, NEVER, 3, NEVER, NEVER]);
    }

    #[test]
    fn belady_and_opt_on_a_loop_one_larger_than_the_cache() {
        // 0 1 2 three times at capacity 2. LRU and FIFO never hit. Belady (always inserting):
        // at 2 it evicts 1 (next at 4, 0's at 3); hits 0 (3); at 1 it evicts 0 (next 6 > 2's 5);
        // hits 2 (5); at 0 it evicts 2 (8 > 1's 7); hits 1 (7); 2 misses: 3 hits. OPT declines
        // to insert 2 (next 5, later than 0 and 1), then hits 0 1, declines 2 again and hits 0 1:
        // 4 hits.
        let t = units(&[0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert_eq!(hits(&t, Policy::Lru, 2), 0);
        assert_eq!(hits(&t, Policy::Fifo, 2), 0);
        assert_eq!(hits(&t, Policy::Belady, 2), 3);
        assert_eq!(hits(&t, Policy::Opt, 2), 4);
        // A longer loop of n + 1 keys at capacity n: after the first pass both miss once per
        // pass (OPT declines key n; Belady evicts the key needed last, which is then the one
        // miss of the next pass), so both hit n of every n + 1 requests.
        let n = 100u64;
        let t: Vec<Request> = units(&(0..10 * (n + 1)).map(|i| i % (n + 1)).collect::<Vec<_>>());
        assert_eq!(hits(&t, Policy::Lru, n), 0);
        assert_eq!(hits(&t, Policy::Fifo, n), 0);
        let belady = hits(&t, Policy::Belady, n);
        let opt = hits(&t, Policy::Opt, n);
        assert_eq!(opt, 9 * n, "OPT on the loop");
        assert_eq!(belady, 9 * n, "Belady on the loop");
    }

    #[test]
    fn sieve_keeps_visited_objects_and_moves_the_hand() {
        // Capacity 3: 1 2 3 1 (1 visited) 4: the hand starts at the tail (1), clears it, moves
        // to 2 and evicts it; the hand stays at 3. 1 hits, 2 misses: the hand evicts 3. Hits: 2.
        let t = units(&[1, 2, 3, 1, 4, 1, 2, 4]);
        let r = simulate(&t, Policy::Sieve, Capacity::Entries(3));
        assert_eq!(r.hits, 3, "1, 1 and 4 hit");
        // FIFO evicts 1 at 4 and then 2 at 1's return.
        assert_eq!(hits(&t, Policy::Fifo, 3), 2);
    }

    #[test]
    fn s3fifo_moves_twice_hit_objects_to_main_and_sends_ghost_hits_to_main() {
        // Capacity 20: small 2, main 18, ghost 18. 1 is hit twice in the small queue, then a
        // scan of 100 one-time keys: 1 moves to main when it reaches the small queue's tail and
        // survives the scan. LRU loses it.
        let mut ids = vec![1, 1, 1];
        ids.extend(1000..1100);
        ids.push(1);
        let t = units(&ids);
        assert_eq!(hits(&t, Policy::S3Fifo, 20), 3);
        assert_eq!(hits(&t, Policy::Lru, 20), 2);
        // A scan key evicted to the ghost and requested again goes straight to main, so a second
        // scan does not push it out: 1099 was evicted last, so it is in the ghost.
        let mut ids2 = ids.clone();
        ids2.push(1099);
        ids2.extend(2000..2100);
        ids2.push(1099);
        let t2 = units(&ids2);
        assert_eq!(hits(&t2, Policy::S3Fifo, 20), 4, "1, 1, 1 and the second 1099");
    }

    #[test]
    fn arc_moves_hits_to_t2_and_adapts_on_ghost_hits() {
        // Capacity 2: 1 2 1 (1 to T2) 3 (2 to B1) 1 (hit) 2 (B1 hit: p = 1, T2's 1 to B2) 1 (B2
        // hit: p = 0, T1's 3 to B1) 3 (B1 hit). Hits: the 1 at 2 and at 4.
        let t = units(&[1, 2, 1, 3, 1, 2, 1, 3]);
        assert_eq!(hits(&t, Policy::Arc, 2), 2);
        // A scan does not flush T2: 1 and 2 hit twice, then 50 one-time keys, then 1 and 2.
        let mut ids = vec![1, 2, 1, 2];
        ids.extend(100..150);
        ids.extend([1, 2]);
        let t = units(&ids);
        assert_eq!(hits(&t, Policy::Arc, 4), 4);
        assert_eq!(hits(&t, Policy::Lru, 4), 2);
    }

    #[test]
    fn opt_bounds_every_policy() {
        let mut x = 12345u64;
        let ids: Vec<u64> = (0..5000)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 33) % 300
            })
            .collect();
        let t = units(&ids);
        for c in [10, 50, 150] {
            let opt = hits(&t, Policy::Opt, c);
            for p in Policy::ALL {
                assert!(hits(&t, p, c) <= opt, "{} above OPT at {c}", p.name());
            }
        }
        let sized: Vec<Request> =
            ids.iter().map(|&id| Request { id, size: 1 + (id % 7) as u32 * 100 }).collect();
        for c in [2_000, 20_000] {
            let opt = simulate(&sized, Policy::Opt, Capacity::Bytes(c)).hits;
            for p in Policy::ALL {
                let h = simulate(&sized, p, Capacity::Bytes(c)).hits;
                assert!(h <= opt, "{} above the bound at {c} B: {h} > {opt}", p.name());
            }
        }
    }
}
