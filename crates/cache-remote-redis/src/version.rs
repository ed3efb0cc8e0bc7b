//! [`Versions`]: per-key versions and the fences that keep a node from serving an older value.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use cache_core::{Clock, Key, KeyHash, Namespace, NamespaceId};
use parking_lot::Mutex;

/// Bits of a version below the clock part: the node's tag.
const TAG_BITS: u32 = 12;
/// Counter values per millisecond in the clock part.
const TICKS_PER_MS: u64 = 1 << 10;

/// The fences a node keeps; see [`Versions`].
#[derive(Debug, Default)]
struct Fences {
    /// Per key: its namespace, the lowest version it may be served at, and the order stamp of
    /// its last update (an entry of `order` with another stamp is outdated).
    keys: HashMap<KeyHash, (NamespaceId, u64, u64)>,
    /// Keys by last update, oldest first, with the order stamp of that update.
    order: VecDeque<(KeyHash, u64)>,
    /// The next order stamp.
    stamp: u64,
    /// Per namespace: the lowest version any of its keys may be served at.
    floors: HashMap<NamespaceId, u64>,
}

/// Per-key versions and fences of one node.
///
/// # Versions
///
/// A version is a hybrid logical clock stamp: the upper 52 bits are the clock's milliseconds
/// times 1,024 plus a counter, the lower 12 bits a tag of the node that took it. A node's stamps
/// strictly increase, and [`Versions::observe`] moves its clock past every version it reads or
/// hears about, so a write made after a node learnt of another write (by a message or by reading
/// the value) gets a higher version, whatever the two machines' clocks say. Two writes made
/// concurrently on two nodes are ordered by their stamps: the later clock wins (ties by tag).
///
/// # Fences
///
/// A fence is the lowest version of a key a node may still serve. Publishing or hearing of a put
/// at version `v` fences the key at `v`; a remove at `v` fences it at `v + 1`; a namespace clear
/// at `v` (and a conservative resync, at the node's clock) raises the namespace's floor to
/// `v + 1`. [`Versions::min_version`] is the larger of the key's fence and its namespace's
/// floor; an entry without a version counts as version 0.
///
/// A reader that checks every value against `min_version` before serving it never serves an
/// older value than one it was told about, whatever copy a promotion, a demotion or a fill from
/// a shared tier left behind after the message dropped the local copies.
///
/// The fences are bounded ([`InvalidatorBuilder::fences`](crate::InvalidatorBuilder::fences),
/// 2^18 keys by default, about 100 bytes each). When a key's fence has to go, the oldest one
/// (by last update) goes and raises its namespace's floor to its version: the node then misses
/// on every entry of that namespace written before it, rather than risk an older value.
#[derive(Debug)]
pub struct Versions {
    clock: Arc<dyn Clock>,
    tag: u64,
    /// The clock part of the last stamp taken or observed.
    last: AtomicU64,
    capacity: usize,
    fences: Mutex<Fences>,
    evicted: AtomicU64,
}

impl Versions {
    /// Versions of a node with the given tag (its low 12 bits are used), reading `clock`, with
    /// room for `capacity` key fences.
    pub fn new(clock: Arc<dyn Clock>, tag: u64, capacity: usize) -> Versions {
        Versions {
            clock,
            tag: tag & ((1 << TAG_BITS) - 1),
            last: AtomicU64::new(0),
            capacity: capacity.max(1),
            fences: Mutex::default(),
            evicted: AtomicU64::new(0),
        }
    }

    /// A new version, higher than every version this node took or observed before.
    ///
    /// ```
    /// use cache_core::system_clock;
    /// use cache_remote_redis::invalidate::Versions;
    ///
    /// let versions = Versions::new(system_clock(), 7, 1024);
    /// let (a, b) = (versions.next(), versions.next());
    /// assert!(b > a);
    /// versions.observe(b + (1 << 40)); // a later write heard from another node
    /// assert!(versions.next() > b + (1 << 40));
    /// ```
    pub fn next(&self) -> u64 {
        let now = self.clock.now().as_millis().saturating_mul(TICKS_PER_MS);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return (next << TAG_BITS) | self.tag,
                Err(seen) => last = seen,
            }
        }
    }

    /// Moves this node's clock past `version` (one read from a tier or heard in a message), so
    /// its later stamps are higher.
    pub fn observe(&self, version: u64) {
        self.last.fetch_max(version >> TAG_BITS, Ordering::AcqRel);
    }

    /// The lowest version of `key` this node may serve (0 when nothing is known).
    pub fn min_version(&self, key: &Key) -> u64 {
        let fences = self.fences.lock();
        let floor = fences.floors.get(&key.namespace().id()).copied().unwrap_or(0);
        let fence = fences.keys.get(key.hash()).map_or(0, |f| f.1);
        floor.max(fence)
    }

    /// Whether an entry of `key` at `version` (`None` counts as 0) may be served.
    pub fn admits(&self, key: &Key, version: Option<u64>) -> bool {
        version.unwrap_or(0) >= self.min_version(key)
    }

    /// Records a put of `key` at `version`: older versions are no longer served.
    pub fn fence_put(&self, key: &Key, version: u64) {
        self.observe(version);
        self.fence(key, version);
    }

    /// Records a remove of `key` at `version`: that version and older ones are no longer served.
    pub fn fence_remove(&self, key: &Key, version: u64) {
        self.observe(version);
        self.fence(key, version.saturating_add(1));
    }

    /// Records a clear of `namespace` at `version`: entries of it at that version or older are
    /// no longer served.
    pub fn fence_clear(&self, namespace: &Namespace, version: u64) {
        self.observe(version);
        self.raise_floor(namespace.id(), version.saturating_add(1));
    }

    /// How many key fences were dropped for room (each raised its namespace's floor).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// How many key fences are held.
    pub fn len(&self) -> usize {
        self.fences.lock().keys.len()
    }

    /// Whether no key fence is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fence(&self, key: &Key, min: u64) {
        let mut f = self.fences.lock();
        let f = &mut *f;
        let stamp = f.stamp;
        f.stamp += 1;
        let ns = key.namespace().id();
        let entry = f.keys.entry(*key.hash()).or_insert((ns, 0, stamp));
        entry.1 = entry.1.max(min);
        entry.2 = stamp;
        f.order.push_back((*key.hash(), stamp));
        while f.keys.len() > self.capacity {
            let Some((hash, stamp)) = f.order.pop_front() else { break };
            if f.keys.get(&hash).is_some_and(|e| e.2 == stamp) {
                let (ns, min, _) = f.keys.remove(&hash).expect("checked above");
                let floor = f.floors.entry(ns).or_insert(0);
                *floor = (*floor).max(min);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Outdated order entries (keys fenced again since) are dropped once they dominate.
        if f.order.len() > 2 * self.capacity.max(f.keys.len()) {
            let keys = &f.keys;
            f.order.retain(|(hash, stamp)| keys.get(hash).is_some_and(|e| e.2 == *stamp));
        }
    }

    pub(crate) fn raise_floor(&self, namespace: NamespaceId, min: u64) {
        let mut f = self.fences.lock();
        let floor = f.floors.entry(namespace).or_insert(0);
        *floor = (*floor).max(min);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cache_core::{ManualClock, Timestamp};

    use super::*;

    fn versions(capacity: usize) -> (Arc<ManualClock>, Versions) {
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let v = Versions::new(clock.clone(), 3, capacity);
        (clock, v)
    }

    #[test]
    fn stamps_grow_with_the_clock_and_past_what_was_observed() {
        let (clock, v) = versions(16);
        let a = v.next();
        let b = v.next();
        assert!(b > a, "two stamps in one millisecond still grow");
        assert_eq!(a & 0xfff, 3, "the tag is the low bits");
        clock.advance(Duration::from_millis(5));
        let c = v.next();
        assert!(c >> TAG_BITS >= 1_000_005 * TICKS_PER_MS);
        // Another node's clock is an hour ahead: our next stamp still beats its write.
        let theirs = ((1_000_005 + 3_600_000) * TICKS_PER_MS) << TAG_BITS | 9;
        v.observe(theirs);
        assert!(v.next() > theirs);
        // A clock that goes back does not make stamps go back.
        clock.set(Timestamp::from_millis(10));
        assert!(v.next() > theirs);
    }

    #[test]
    fn fences_refuse_older_versions() {
        let (_, v) = versions(16);
        let ns = Namespace::new("n").unwrap();
        let (k, other) = (ns.key("k").unwrap(), ns.key("other").unwrap());
        let (v1, v2, v3) = (v.next(), v.next(), v.next());
        assert!(v.admits(&k, None), "nothing known: anything goes");
        v.fence_put(&k, v2);
        assert!(!v.admits(&k, Some(v1)));
        assert!(!v.admits(&k, None));
        assert!(v.admits(&k, Some(v2)));
        v.fence_put(&k, v1); // a late message of an older put lowers nothing
        assert!(!v.admits(&k, Some(v1)));
        v.fence_remove(&k, v2);
        assert!(!v.admits(&k, Some(v2)), "the removed version is gone");
        assert!(v.admits(&k, Some(v3)));
        assert!(v.admits(&other, Some(v1)), "other keys are untouched");
        v.fence_clear(&ns, v3);
        assert!(!v.admits(&other, Some(v3)));
        assert!(v.admits(&other, Some(v.next())));
        let elsewhere = Namespace::new("m").unwrap().key("k").unwrap();
        assert!(v.admits(&elsewhere, Some(v1)), "other namespaces are untouched");
    }

    #[test]
    fn a_dropped_fence_raises_its_namespace_floor() {
        let (_, v) = versions(2);
        let ns = Namespace::new("n").unwrap();
        let keys: Vec<Key> = (0..3).map(|i| ns.key(format!("k{i}")).unwrap()).collect();
        let stamps: Vec<u64> = keys.iter().map(|_| v.next()).collect();
        v.fence_put(&keys[0], stamps[0]);
        v.fence_put(&keys[1], stamps[1]);
        v.fence_put(&keys[0], stamps[2]); // k0 is now the most recently fenced
        v.fence_put(&keys[2], stamps[2]);
        assert_eq!(v.len(), 2);
        assert_eq!(v.evicted(), 1);
        // k1's fence went, and its version became the namespace's floor.
        assert!(!v.admits(&keys[1], Some(stamps[0])));
        assert!(v.admits(&keys[1], Some(stamps[1])));
        assert!(!v.admits(&keys[0], Some(stamps[1])), "k0 keeps its own fence");
        for i in 0..100 {
            v.fence_put(&keys[i % 2], v.next());
        }
        assert!(v.fences.lock().order.len() <= 4 + 1, "outdated order entries are dropped");
    }
}
