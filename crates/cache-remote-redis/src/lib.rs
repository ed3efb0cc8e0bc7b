//! `cache-remote-redis`: a shared network tier of the tiered cache on a Redis or Valkey server,
//! and cross-node invalidation of the per-node tiers over Redis pub/sub.
//!
//! [`RedisTier`] implements [`cache_core::Tier`]. Several nodes that point at one server share
//! its entries; each keeps its own RAM and disk tiers above it, and an [`Invalidator`] per node
//! drops its local copies when another node writes, removes or clears (see [`invalidate`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use cache_core::{Entry, Key, Tier};
//! use cache_remote_redis::RedisTier;
//!
//! # async fn f() -> cache_core::Result<()> {
//! let redis = RedisTier::builder("redis://127.0.0.1:6379/")
//!     .prefix("tiered-cache/prod")
//!     .operation_timeout(Duration::from_millis(250))
//!     .build() // connects and PINGs: an unreachable server fails here with `Unavailable`
//!     .await?;
//! let key = Key::new("llm/answers", "what is 6 x 7?")?;
//! redis.put(key.clone(), Entry::new("42")).await?;
//! assert_eq!(redis.get(&key).await?.unwrap().value, "42");
//! # Ok(()) }
//! ```
//!
//! # Client
//!
//! The [`redis`] crate (redis-rs, BSD-3-Clause) with its tokio `ConnectionManager`: the most
//! used Rust client, maintained by the Redis company, speaking to Redis and Valkey alike. The
//! manager multiplexes every call of every task over one connection (Redis answers in order,
//! so concurrent calls pipeline by themselves) and reconnects in the background with
//! exponential backoff. `fred` has more features (pools, sentinel, client-side caching) than a
//! cache tier needs, and more dependencies.
//!
//! # Layout
//!
//! Each entry is one Redis string holding one cache-core record (header, metadata, namespace,
//! key, value), the same bytes the disk and object tiers store, so records move between tiers
//! without re-encoding. Its key is `{prefix}:{namespace id}:{epoch}:{key hash}`, from the
//! namespace's 32-hex-digit identifier and the key's 64-hex-digit BLAKE3 hash: user strings
//! never become Redis keys. Every read decodes the record, verifies its checksum and compares
//! the stored namespace and key with the requested ones; a corrupt record, or one of another
//! key, is a miss, counted in `StatsSnapshot::corrupted`, and deleted.
//!
//! # Encryption at rest
//!
//! With [`encryption`](RedisTierBuilder::encryption), the value of every record of a namespace
//! the [`KeyProvider`](cache_core::KeyProvider) has a key for is compressed (if
//! [`compression`](RedisTierBuilder::compression) says so), then sealed with XChaCha20-Poly1305
//! before it leaves the process: the server, its replicas, its RDB and AOF files and the wire
//! hold its ciphertext. The record's head (namespace, key, creation time, expiry, version)
//! stays readable on the server and authenticates the value, so a sealed value copied to
//! another key or namespace does not open. A record that does not open (an unknown key id, a
//! wrong key, altered or truncated bytes) or a plaintext record in a sealed namespace is
//! corrupt, as above: a counted miss, deleted, never the ciphertext as a value. Give every node
//! on the server and every persistent tier of the stack the same provider: a record moved in
//! from another tier is stored as it is only if this tier can open it, and re-sealed otherwise.
//!
//! # Namespaces
//!
//! Each namespace has an epoch at `{prefix}:{namespace id}:epoch`. `clear_namespace`
//! increments it (one `INCR`, in a script): every entry of the old epoch is unreachable at
//! once, on every node, and a background task then `SCAN`s for the namespace's keys of older
//! epochs and `UNLINK`s them to give the memory back (`flush` waits for it). A `SCAN` pass walks
//! the whole keyspace, so passes are coalesced: one per namespace at a time, and any clears made
//! meanwhile cause one more pass, not one each. Gets and puts read the epoch
//! and the entry in one round trip, atomically, so a put that races a clear is either cleared
//! or written under the new epoch: with a Lua script, or, once the tier knows the namespace's
//! epoch, with plain pipelined commands (`GET`/`SET` of the entry under the known epoch, then
//! `GET` of the epoch; epochs only grow, so an unchanged epoch proves the entry was read or
//! written under it, and a changed one makes the tier learn it and redo the call with the
//! script). The alternative, `SCAN` + `UNLINK` as the
//! clear itself, walks the whole keyspace (SCAN cannot be limited to a prefix, only filtered),
//! takes time in proportion to the server's total key count, and races concurrent puts: a put
//! landing behind the cursor survives the clear. The epoch makes the clear O(1) and exact; the
//! price is one more small key per namespace and memory held by dead entries until the sweep
//! (or their expiry) removes them. A lost epoch key (evicted by an `allkeys-*` policy) reads
//! as an empty namespace, and the next put restarts it at an epoch taken from the server's
//! clock, so entries of a forgotten epoch are never read again.
//!
//! The scripts build entry keys from the epoch, so the tier needs a standalone server (or a
//! primary with replicas, or Sentinel); Redis Cluster is not supported.
//!
//! # Expiry
//!
//! The tier's clock decides: an entry past its expiry is a miss. Entries with a TTL are
//! written with `PX` set to the time left plus the [expiry slack](RedisTierBuilder::expiry_slack)
//! (5 s by default), so Redis reclaims them by itself shortly after they expire but never
//! drops one the tier's clock still calls live.
//!
//! There is no time-to-idle: on the tier's clock it would need a write of each entry's last
//! read with every `GET`. Redis's own `maxmemory-policy` (`volatile-lru`, `allkeys-lru`)
//! already lets the least recently read entries go first when memory runs out.
//!
//! # Capacity
//!
//! Redis has no byte budget per client: memory is bounded by the server's `maxmemory` and its
//! `maxmemory-policy`. Use `volatile-lru` (or `-lfu`) with TTLs on the entries, which never
//! evicts the epoch keys, or `allkeys-lru`, which may (see above: that only loses entries).
//! Under `noeviction` a full server refuses writes, and puts fail with `Unavailable`. Without a
//! budget, `usage()` reports no capacity and zero bytes (the tier cannot know what other nodes
//! wrote). With [`budget`](RedisTierBuilder::budget) the tier keeps an in-process account of
//! the entries it wrote, least recently used first, deletes the oldest to stay within it, and
//! `usage()` reports that account.
//!
//! # Batches, timeouts and failures
//!
//! `get_many` sends one script call per 256 keys and `put_many` one per 64 entries (or 4 MiB),
//! all in flight at once on the multiplexed connection. Every call runs under a
//! `tokio::time::timeout` of [`operation_timeout`](RedisTierBuilder::operation_timeout) (2 s by
//! default), which is also the connection's response timeout. A refused or broken connection, a
//! timeout, or a server that is loading, out of memory or failing over is `Unavailable` (a miss
//! for the tiered cache, which falls through to the next tier), never a hang; while the
//! connection manager reconnects, calls fail at once. Refused credentials are `Invalid`.
//! Passwords in the URL never appear in `Debug` output or error messages.
//!
//! # Performance
//!
//! `benches/redis.rs` compares the tier with raw `GET`/`SET` of the same record bytes on the
//! same server and connection, 64 requests in flight, in 9 interleaved pairs of rounds, and
//! times a namespace clear:
//!
//! ```text
//! cargo xtask redis start && eval "$(cargo xtask redis env)"
//! cargo bench -p cache-remote-redis --bench redis
//! ```
//!
//! The measured ratios, and the timings of a namespace clear against `SCAN` + `UNLINK`, are in
//! `docs/tiers/redis.md`.
//!
//! # Modules
//!
//! - `builder`: [`RedisTierBuilder`].
//! - `tier`: [`RedisTier`] and its [`Tier`](cache_core::Tier) implementation.
//! - `layout`: key names and the Lua scripts.
//! - `error`: classification of Redis failures.
//! - [`invalidate`]: [`Invalidator`], cross-node invalidation of local tiers over pub/sub, and
//!   [`Versions`](invalidate::Versions), the per-key versions and fences it keeps.

mod builder;
mod error;
pub mod invalidate;
mod layout;
mod tier;
mod version;

pub use crate::{
    builder::RedisTierBuilder,
    invalidate::{Invalidator, InvalidatorBuilder, InvalidatorStats},
    tier::RedisTier,
};
pub use cache_core::Compression;
pub use redis;
