//! `cache-coherent`: many nodes over shared tiers.
//!
//! Each node of a deployment runs a [`TieredCache`](cache_tiered::TieredCache) whose top tiers
//! are its own (RAM, local disk) and whose lower tiers are shared by every node (a
//! [`RedisTier`](cache_remote_redis::RedisTier) on one server, an object tier on one bucket).
//! [`CoherentCache`] wraps that cache with an [`Invalidator`](cache_remote_redis::Invalidator):
//! every put, remove and namespace clear is versioned, written to the tiers, and published; the
//! other nodes drop their local copies and refuse older versions from then on. [`Affinity`]
//! maps a key to its owner node in a member list, for routers that want each key to land where
//! it is most likely cached.
//!
//! ```no_run
//! use cache_coherent::CoherentCache;
//! use cache_core::{Entry, Key, Namespace};
//! use cache_l1::MemoryTier;
//! use cache_remote_redis::{Invalidator, RedisTier};
//! use cache_tiered::TieredCache;
//!
//! # async fn f() -> cache_core::Result<()> {
//! let url = "redis://127.0.0.1:6379/";
//! let shared = RedisTier::builder(url).prefix("prod").build().await?;
//! let cache = TieredCache::builder()
//!     .tier(MemoryTier::builder(256 << 20).build()) // this node's own
//!     .tier(shared) // every node's
//!     .build()?;
//! let answers = Namespace::new("llm/answers")?;
//! let coherent = CoherentCache::builder(
//!     cache,
//!     Invalidator::builder(url).prefix("prod").watch(answers.clone()),
//! )
//! .local_tiers(1)
//! .build()
//! .await?;
//! let key = answers.key("what is 6 x 7?")?;
//! coherent.put_report(key.clone(), Entry::new("42")).await?; // other nodes drop their copies
//! assert_eq!(coherent.get(&key).await?.unwrap().value, "42");
//! # Ok(()) }
//! ```
//!
//! # What it guarantees
//!
//! Versions are hybrid logical clock stamps ([`Versions`](cache_remote_redis::invalidate::Versions)):
//! a node's stamps grow, and move past every version it reads or hears about. A put at version
//! `v` fences the key at `v` on the writing node before it touches the tiers, and on every other
//! node when its message arrives, before that node drops its local copies. Every read checks
//! the entry it found, in whichever tier, against the fence: an older entry is a miss (and its
//! local copies are dropped). So:
//!
//! - once a write is acknowledged by every node (its message applied), no node serves an older
//!   value of the key, whatever a promotion, a demotion, a write-behind job or a fill from a
//!   shared tier that read the old value puts back into a local tier afterwards;
//! - two nodes writing one key at the same time end with every node serving the write with the
//!   higher version, or missing (when the shared tiers kept the other write, which every node
//!   then refuses), never the lower one;
//! - a dropped local copy stays dropped: the drops go through the tiered cache's
//!   [`front`](cache_tiered::TieredCache::front) view, ordered with its promotions and
//!   demotions, so one that read the old value before the drop is not written after it;
//! - a node's own messages never drop its own fresh write;
//! - a node that may have missed messages (reconnect, a sequence gap) clears its local copies
//!   of every watched namespace and refuses entries written before the resync in any tier, so
//!   nothing stale survives it (the price: misses until the keys are written or loaded again);
//! - a message that cannot be published (the server is down) does not fail the write: the
//!   namespace is announced as lost when the server is back, and the other nodes clear it.
//!
//! What it does not guarantee:
//!
//! - nothing is coherent while a node is cut off from the server: it serves its local copies
//!   until it resyncs;
//! - versions come from the nodes' clocks: of two concurrent writes the one with the later
//!   clock wins, and a node whose clock runs ahead wins writes that come later in real time
//!   until the others have heard of it (a write made *after* hearing of another always wins);
//! - loads through [`CoherentCache::get_or_load`] are fills, not changes, and are not
//!   published; the version is taken before the loader runs, so a concurrent put wins;
//! - writes made on the tiered cache directly ([`CoherentCache::cache`]) are neither versioned
//!   nor published; unversioned entries count as version 0 and are refused once a key is
//!   fenced;
//! - fences are bounded (2^18 keys by default); a fence dropped for room raises its
//!   namespace's floor instead, so the node misses on that namespace's older entries;
//! - Redis pub/sub is at-most-once: a lost message is detected (sequence numbers, reconnects)
//!   and answered conservatively, never replayed.
//!
//! # Modules
//!
//! - `coherent`: [`CoherentCache`] and its builder.
//! - `affinity`: [`Affinity`], key ownership by rendezvous hashing.

mod affinity;
mod coherent;

pub use crate::{
    affinity::Affinity,
    coherent::{CoherentCache, CoherentCacheBuilder, CoherentPut, CoherentStats},
};
