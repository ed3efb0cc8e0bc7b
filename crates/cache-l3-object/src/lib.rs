//! `cache-l3-object`: the object-storage tier of the tiered cache, shared by many machines,
//! on [`object_store`]: S3 and compatible servers (MinIO, SeaweedFS, R2, …), the local
//! filesystem (the embedded default, which needs no server), memory, or any other
//! [`ObjectStore`](object_store::ObjectStore).
//!
//! [`ObjectTier`] implements [`cache_core::Tier`] and can be used on its own:
//!
//! ```
//! use cache_core::{Entry, Key, Tier};
//! use cache_l3_object::ObjectTierBuilder;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let l3 = ObjectTierBuilder::local(dir.path()).prefix("cache").build().await?;
//! let key = Key::new("llm/answers", "what is 6 x 7?")?;
//! l3.put(key.clone(), Entry::new("42")).await?;
//! assert_eq!(l3.get(&key).await?.unwrap().value, "42");
//! // Part of a value, without downloading the whole object:
//! assert_eq!(l3.get_range(&key, 1..2).await?.unwrap(), "2");
//! # Ok::<(), cache_core::Error>(()) }).unwrap();
//! ```
//!
//! On an S3-compatible server (here configured from `AWS_*` variables), with the `s3` feature:
//!
//! ```no_run
//! # #[cfg(feature = "s3")] {
//! use std::time::Duration;
//! use cache_l3_object::{ObjectTierBuilder, S3Config};
//! # async fn f() -> cache_core::Result<()> {
//! let l3 = ObjectTierBuilder::s3(S3Config::from_env().with_path_style(true))
//!     .prefix("tiered-cache/prod")
//!     .operation_timeout(Duration::from_secs(2))
//!     .build()  // lists the prefix once: wrong credentials fail here, with `Invalid`
//!     .await?;
//! # Ok(()) }
//! # }
//! ```
//!
//! # Features
//!
//! - `s3` (off by default): S3 and compatible servers, `S3Config` and `ObjectTierBuilder::s3`.
//!   It enables `object_store`'s AWS client (reqwest, hyper, rustls), which the local
//!   filesystem and memory stores do not need.
//! - `testkit`: the fault-injecting store of the `fault` module.
//!
//! # Layout
//!
//! Each entry is one object, `{prefix}/{namespace id}/{fan-out}/{key hash}`: the namespace's
//! 32-hex-digit identifier, the first byte of the key hash in hex, and the key's 64-hex-digit
//! BLAKE3 hash. Keys and namespaces never become path components themselves, so any string is
//! safe. An object holds one cache-core record (header, metadata, namespace, key, value); its
//! checksum is verified on every read, and a corrupt object (or one holding another key) is a
//! miss, counted in `StatsSnapshot::corrupted`, and deleted. Records are uploaded in two
//! pieces, the small head and the value, so a value is not copied on `put`.
//!
//! # Large values
//!
//! Records of at least [`multipart_threshold`](ObjectTierBuilder::multipart_threshold) bytes
//! (16 MiB by default) go up by multipart upload in parts of
//! [`part_size`](ObjectTierBuilder::part_size), with at most
//! [`part_concurrency`](ObjectTierBuilder::part_concurrency) parts in flight; a failed upload
//! is aborted. [`ObjectTier::get_range`] reads part of a value with ranged GETs.
//!
//! A value that is not in memory as a whole goes in with [`Tier::put_stream`]. A value of at
//! least the multipart threshold (and of 256 KiB) is written while it arrives:
//! - on a store that uploads parts by index (S3 from [`ObjectTierBuilder::s3`], the in-memory
//!   store, or any store given to [`ObjectTierBuilder::new_multipart`]), as a multipart upload
//!   holding about `part_size × (part_concurrency + 2)` bytes whatever its length (a 1 GiB
//!   KV-cache blob, in the default 8 MiB parts four at a time, holds at most about 48 MiB). The
//!   record's head is uploaded last, as part 0, because its checksum covers the chunk table at
//!   the end;
//! - on a local directory ([`ObjectTierBuilder::local`]), into a staging file beside the
//!   object, one piece at a time; the head is written last, then the file is synced (with
//!   [`local_fsync`](ObjectTierBuilder::local_fsync)) and renamed into place. A crash leaves at
//!   most the staging file, whose name (ending in `#` and digits) the store never lists.
//!
//! [`ObjectTier::stream_buffer_peak`] reports the most held. Over any other store, in a sealed
//! namespace and with conditional create, the value is gathered first and put whole.
//!
//! # Encryption at rest
//!
//! With [`encryption`](ObjectTierBuilder::encryption) and a
//! [`KeyProvider`](cache_core::KeyProvider), the value of every record of a namespace the
//! provider has a key for is compressed (if the tier compresses), then sealed with
//! XChaCha20-Poly1305 under that namespace's key before it is uploaded: the bucket, its
//! replicas and backups hold ciphertext for those values. The head of each object (namespace,
//! key, creation time, expiry, version) stays readable, so the tier can check and expire
//! records without the key, and the sealed value is bound to it: moved to another key or
//! namespace, it does not open. An object that does not open (no key of its id, a wrong key, a
//! changed or truncated byte), or a plaintext object in a namespace the provider seals, is a
//! corrupt object as above: a miss, counted, and deleted. Give every process that shares the
//! bucket and prefix, and every persistent tier of a stack, the same provider. A sealed value
//! has no chunk table, so a ranged read of it downloads the whole object.
//!
//! # Write-once keys
//!
//! With [`conditional_create`](ObjectTierBuilder::conditional_create) every put is a
//! conditional create (`PutMode::Create`, `If-None-Match: *` on S3): the first writer of a key
//! wins. `build` writes a probe object twice and fails with `Unsupported` if the store accepts
//! the second write, so a server that ignores the condition is reported rather than trusted. A
//! losing `Tier::put` is an `Invalid` error (cache-core's `PutOutcome` has no "already exists");
//! [`ObjectTier::put_if_absent`] returns a [`CreateOutcome`] instead.
//!
//! # Timeouts, retries and failures
//!
//! Every object-store call runs under a `tokio::time::timeout` of
//! [`operation_timeout`](ObjectTierBuilder::operation_timeout) (10 s by default), so a slow or
//! dead server, or a stuck non-HTTP store, never holds a call longer. A read of a whole object
//! (`get` of a value) is bounded by progress instead: its response must start within the
//! operation timeout, each piece of its body must follow the last within it, and the whole body
//! must arrive at 16 MiB/s at least (a 1 GiB value may take 64 s more), so a large value is not
//! cut off by a timeout sized for small ones. On S3 the HTTP client
//! also has a per-request timeout, a connect timeout and a retry policy (object_store's
//! `ClientOptions` and `RetryConfig`). Failures map to cache-core kinds: timeouts, connection
//! errors and 5xx are `Unavailable` (fall through to the next tier), bad credentials or a
//! missing bucket are `Invalid` with a message saying what to check, local filesystem errors
//! are `Io`. Credentials never appear in `Debug` output or error messages. A tokio runtime with
//! the time driver enabled is required.
//!
//! # Expiry and lifecycle rules
//!
//! An entry past its expiry (by the tier's clock) is a miss; the object is deleted in the
//! background (unless it was rewritten since it was read), and [`Tier::flush`] waits for those
//! deletes. Objects that are never read again are not found this way: give the bucket a
//! lifecycle rule that expires objects under the tier's prefix some days after creation,
//! longer than the longest TTL you use (on AWS, `aws s3api put-bucket-lifecycle-configuration`
//! with a rule `{"Filter": {"Prefix": "tiered-cache/"}, "Status": "Enabled", "Expiration":
//! {"Days": 7}}`; MinIO has `mc ilm rule add --expire-days 7`). A lifecycle rule also bounds
//! the bucket's total size, which the tier's own budget cannot do across machines.
//!
//! There is no time-to-idle: objects are immutable, so recording a read would cost a PUT per
//! GET, and the replicas sharing a bucket would each see only their own reads. Use a TTL and
//! a lifecycle rule.
//!
//! # Byte budget
//!
//! Unbounded by default (`usage()` then reports no capacity and zero bytes: the tier cannot
//! know what other machines stored). With [`budget`](ObjectTierBuilder::budget), the tier
//! keeps an in-process account of the objects it wrote, least recently used first, and deletes
//! the oldest to stay within it; `usage().bytes_used` is that account. The budget is per tier
//! instance: objects written by other processes or by earlier runs are not counted, and
//! concurrent writes and evictions of one key can make the account briefly count an object
//! that is gone (never the reverse).
//!
//! # Metrics
//!
//! Besides the cache-core stats (hits, misses, errors by kind, …), [`ObjectTier::metrics`]
//! counts requests by type, failures, bytes up and down, and latency percentiles.
//!
//! # Performance
//!
//! What the tier adds to the store's own call per request: the object path, the timeout,
//! stats and metrics, and the record checksum (xxh3) on get and put (with encryption, also
//! sealing or opening the value). `benches/object.rs`
//! compares it with raw `object_store` calls on the same store (`cargo bench -p
//! cache-l3-object --bench object`); `docs/tiers/object.md` has the figures and how they were
//! taken.
//!
//! # Modules
//!
//! - `builder`: [`ObjectTierBuilder`].
//! - `s3` (feature `s3`): `S3Config` and `Secret`.
//! - `tier`: [`ObjectTier`] and its [`Tier`] implementation.
//! - `layout`: object paths and the two-piece record encoding.
//! - `error`: classification of object-store failures.
//! - `metrics`: [`ObjectMetrics`].
//! - `fault` (feature `testkit`): `FaultyStore`, an `ObjectStore`
//!   wrapper that injects latency, errors and hangs.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod error;
#[cfg(any(test, feature = "testkit"))]
pub mod fault;
mod layout;
mod metrics;
#[cfg(feature = "s3")]
mod s3;
mod tier;

#[cfg(doc)]
use cache_core::Tier;

pub use cache_core::Compression;

#[cfg(feature = "s3")]
pub use crate::s3::{S3Config, S3Env, S3EnvError, Secret};
pub use crate::{
    builder::ObjectTierBuilder,
    metrics::{ObjectMetrics, Op, OpMetrics},
    tier::{CreateOutcome, ObjectTier},
};
pub use object_store;

#[cfg(test)]
mod tests;
