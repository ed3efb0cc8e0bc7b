//! [`Affinity`]: which node of a member list owns a key, by rendezvous hashing.

use std::hash::{Hash, Hasher};

use cache_core::Key;
use rendezvous_hash::{IdNode, Node, NodeHasher, RendezvousNodes};
use xxhash_rust::xxh3::Xxh3;

/// The member scores: xxh3 over the item and the member, stable across processes.
#[derive(Debug, Clone, Copy, Default)]
struct StableHasher;

impl NodeHasher<String> for StableHasher {
    fn hash<T: Hash>(&self, node: &String, item: &T) -> u64 {
        let mut h = Xxh3::new();
        item.hash(&mut h);
        h.write(node.as_bytes());
        h.finish()
    }
}

/// A member list and the owner of each key in it.
///
/// A building block for routing, not a cluster manager: it does not discover members, watch
/// their health or agree on the list. Give every router (a load balancer hook, a client
/// library) the same member list and each maps a key to the same owner, so requests for a key
/// reach the node most likely to hold it in its RAM and disk tiers. Every node still serves
/// every key (through the shared tiers), so a router with a stale list costs hit ratio, never
/// correctness.
///
/// Rendezvous (highest random weight) hashing scores every member against the key and picks
/// the highest: adding or removing a member moves only the keys that member wins or held
/// (about 1/n of them), whichever member it is, and [`Affinity::owners`] gives a ranked list
/// of fallbacks for free. Jump consistent hashing is faster for large lists but numbers its
/// buckets, so only the last member can leave without moving keys; a member list of named
/// nodes needs rendezvous. The ranking is [`rendezvous_hash`] (MIT, no dependencies); the
/// scores are xxh3 over the key's hash and the member's name, so they are the same in every
/// process and build, unlike the standard library's randomly keyed hasher.
///
/// ```
/// use cache_coherent::Affinity;
/// use cache_core::Key;
///
/// let members = Affinity::new(["node-a:8080", "node-b:8080", "node-c:8080"]);
/// let key = Key::new("llm/answers", "what is 6 x 7?").unwrap();
/// let owner = members.owner(&key).unwrap();
/// // The same list gives the same owner everywhere; the runner-up takes over if it leaves.
/// let ranked = members.owners(&key, 2);
/// assert_eq!(ranked[0], owner);
/// let mut without = members.clone();
/// without.remove(owner);
/// assert_eq!(without.owner(&key), Some(ranked[1]));
/// ```
pub struct Affinity {
    members: RendezvousNodes<IdNode<String>, StableHasher>,
}

impl Clone for Affinity {
    fn clone(&self) -> Affinity {
        Affinity::new(self.members())
    }
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.members()).finish()
    }
}

impl Affinity {
    /// A list of the given members (names or addresses; duplicates count once).
    pub fn new<I, S>(members: I) -> Affinity
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut affinity = Affinity { members: RendezvousNodes::new(StableHasher) };
        for m in members {
            affinity.insert(m);
        }
        affinity
    }

    /// Adds a member; `false` if it was there already.
    pub fn insert(&mut self, member: impl Into<String>) -> bool {
        let member = member.into();
        if self.members.contains(&member) {
            return false;
        }
        self.members.insert(IdNode::new(member));
        true
    }

    /// Removes a member; `false` if it was not there.
    pub fn remove(&mut self, member: &str) -> bool {
        self.members.remove(&member.to_owned()).is_some()
    }

    /// The members, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|n| n.node_id().as_str())
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member that owns `key`, or `None` for an empty list.
    pub fn owner(&self, key: &Key) -> Option<&str> {
        self.ranked(key).next()
    }

    /// The first `n` members for `key`, best first: the owner, then the members that would
    /// own it if those before left (for replicas or fallbacks).
    pub fn owners(&self, key: &Key, n: usize) -> Vec<&str> {
        self.ranked(key).take(n).collect()
    }

    fn ranked(&self, key: &Key) -> impl Iterator<Item = &str> {
        self.members.calc_candidates(&key.hash().0).map(|n| n.node_id().as_str())
    }
}

#[cfg(test)]
mod tests;
