//! The object-storage tier (`cache-l3-object`) against the real S3 server: the whole
//! conformance suite, a 32 MiB multipart value, 200 concurrent puts and gets, a conditional-create
//! race, byte-range reads, bulk namespace clears, expired and corrupt objects deleted, wrong
//! credentials at start-up, and a server that stops answering mid-test (SIGSTOP of the local
//! server, or `docker pause` of the container named by `TIERED_CACHE_S3_CONTAINER`).
//!
//! Every tier gets a prefix of its own ([`unique_prefix`]), so tests run concurrently and reruns
//! never see each other's objects.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{
    Entry, ErrorKind, Key, ManualClock, Namespace, Tier, Timestamp,
    testkit::{TestTier, TierFactory, TierSpec},
};
use cache_l3_object::{CreateOutcome, ObjectTier, ObjectTierBuilder, Op, S3Config};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

use crate::harness::{Resume, S3Env, signal, skip_unless_s3, unique_prefix};

const MIB: usize = 1024 * 1024;

/// The tier's S3 settings for `env`, given explicitly (not read from the environment).
fn s3_config(env: &S3Env) -> S3Config {
    S3Config::new(&env.bucket)
        .with_endpoint(&env.endpoint)
        .with_region(&env.region)
        .with_credentials(&env.access_key_id, env.secret_access_key.as_str())
        .with_allow_http(env.allow_http)
        .with_path_style(true)
}

/// A builder for a tier under a fresh prefix named after `test`, with timeouts generous enough
/// for a loaded CI machine.
fn builder(env: &S3Env, test: &str) -> ObjectTierBuilder {
    ObjectTierBuilder::s3(s3_config(env))
        .prefix(unique_prefix(test).to_string())
        .operation_timeout(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
}

/// Deletes everything under `prefix` (at the end of a passing test).
async fn cleanup(env: &S3Env, prefix: &str) {
    let store = env.store();
    let prefix = Path::from(prefix);
    let locations = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
    store.delete_stream(locations).try_collect::<Vec<_>>().await.expect("cleaning up");
}

fn pattern(len: usize, seed: usize) -> Bytes {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect::<Vec<_>>().into()
}

/// Runs one conformance check against S3: each tier the check builds gets a fresh prefix
/// (deleted afterwards) and the check's budget and clock, and with `sealed` the suite's key
/// provider and LZ4 (encryption at rest after compression).
fn conformance(
    test: &str,
    sealed: bool,
    check: fn(&dyn TierFactory) -> futures::future::BoxFuture<'_, ()>,
) {
    let Some(env) = S3Env::for_test(test) else { return };
    let prefixes = Arc::new(Mutex::new(Vec::<String>::new()));
    let factory = {
        let (env, prefixes, test) = (env.clone(), prefixes.clone(), test.to_owned());
        move |spec: TierSpec| {
            let prefix = unique_prefix(&test).to_string();
            prefixes.lock().unwrap().push(prefix.clone());
            let b = builder(&env, &test)
                .prefix(prefix)
                .budget(spec.capacity_bytes)
                .clock(spec.dyn_clock())
                // The 8 MiB conformance value goes up in two parts.
                .multipart_threshold(5 * MIB as u64)
                .part_size(5 * MIB);
            let b = if sealed {
                b.compression(cache_core::Compression::Lz4)
                    .encryption(cache_core::testkit::suite_keys())
            } else {
                b
            };
            async move { TestTier::new(b.build().await.expect("building the S3 tier")) }
        }
    };
    cache_core::testkit::block_on(async {
        check(&factory).await;
        let done: Vec<String> = prefixes.lock().unwrap().clone();
        for prefix in &done {
            cleanup(&env, prefix).await;
        }
    });
}

/// One `#[test]` per conformance check (the list of `cache_core::conformance_suite!`; the macro
/// itself cannot skip when no server is configured).
macro_rules! s3_conformance {
    ($module:ident, $sealed:expr; $($check:ident),* $(,)?) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    super::conformance(
                        concat!("l3_", stringify!($module), "_", stringify!($check)),
                        $sealed,
                        |f| Box::pin(cache_core::testkit::$check(f)),
                    );
                }
            )*
        }
    };
}

s3_conformance!(conformance, false;
    put_get_remove,
    overwrite,
    contains,
    get_range,
    empty_value,
    large_value,
    ttl_expiry,
    namespace_isolation,
    clear_namespace,
    capacity_respected,
    concurrent_readers_writers,
    oversized_rejected,
    close_then_use,
    batch_get_put,
    stats_counted,
    record_round_trip,
    compressed_records,
    streamed_put,
);

// The same suite with every namespace but one sealed at rest, and the sealed-records check.
s3_conformance!(sealed_conformance, true;
    put_get_remove,
    overwrite,
    contains,
    get_range,
    empty_value,
    large_value,
    ttl_expiry,
    namespace_isolation,
    clear_namespace,
    capacity_respected,
    concurrent_readers_writers,
    oversized_rejected,
    close_then_use,
    batch_get_put,
    stats_counted,
    record_round_trip,
    compressed_records,
    streamed_put,
    sealed_records,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_value_of_32_mib_round_trips() {
    let env = skip_unless_s3!("multipart_value_of_32_mib_round_trips");
    let tier = builder(&env, "l3_multipart_32mib")
        .multipart_threshold(16 * MIB as u64)
        .part_size(8 * MIB)
        .part_concurrency(3)
        .build()
        .await
        .unwrap();
    let key = Key::new("l3-it", "thirty-two").unwrap();
    let value = pattern(32 * MIB, 1);
    assert!(tier.put(key.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    let m = tier.metrics();
    assert_eq!(m.op(Op::MultipartStart).requests, 1);
    assert_eq!(m.op(Op::MultipartPart).requests, 5, "32 MiB plus the record head in 8 MiB parts");
    assert_eq!(m.op(Op::MultipartComplete).requests, 1);
    assert_eq!(m.op(Op::Put).requests, 0);
    let got = tier.get(&key).await.unwrap().expect("hit");
    assert!(got.value == value, "the 32 MiB value differs");
    let tail = tier.get_range(&key, 32 * MIB as u64 - 10..32 * MIB as u64).await.unwrap().unwrap();
    assert_eq!(tail, value.slice(32 * MIB - 10..));
    cleanup(&env, tier.prefix()).await;
}

/// A value of 64 MiB, generated piece by piece, goes up in 5 MiB parts while it is produced:
/// the tier never holds more than part 0, the part being filled and the parts in flight. A
/// body that fails half-way aborts the upload and leaves the earlier value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_put_of_64_mib_uploads_in_bounded_memory() {
    let env = skip_unless_s3!("a_streamed_put_of_64_mib_uploads_in_bounded_memory");
    let part = 5 * MIB;
    let tier = builder(&env, "l3_streamed_64mib")
        .multipart_threshold(part as u64)
        .part_size(part)
        .part_concurrency(2)
        .build()
        .await
        .unwrap();
    let key = Key::new("l3-it", "streamed").unwrap();
    let len = 64 * MIB;
    let piece = 256 << 10;
    let value = pattern(len, 3);
    let body = |fail_at: Option<usize>| {
        let value = value.clone();
        futures::stream::iter((0..len / piece).map(move |i| match fail_at {
            Some(at) if i == at => Err(cache_core::Error::new(ErrorKind::Io, "body", "broken")),
            _ => Ok(value.slice(i * piece..(i + 1) * piece)),
        }))
        .boxed()
    };
    let meta = cache_core::EntryMeta::default();
    assert!(tier.put(key.clone(), Entry::new("earlier")).await.unwrap().is_stored());
    let err = tier.put_stream(key.clone(), meta, len as u64, body(Some(130))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert_eq!(tier.get(&key).await.unwrap().expect("the earlier value").value, "earlier");

    let before = tier.metrics();
    let put = tier.put_stream(key.clone(), meta, len as u64, body(None)).await.unwrap();
    assert!(put.is_stored());
    let m = tier.metrics();
    let record = cache_core::Record::encoded_len(&key, len);
    assert_eq!(
        m.op(Op::MultipartPart).requests - before.op(Op::MultipartPart).requests,
        record.div_ceil(part) as u64,
        "64 MiB, the head and the chunk table in 5 MiB parts"
    );
    assert_eq!(m.op(Op::Put).requests, before.op(Op::Put).requests);
    let peak = tier.stream_buffer_peak();
    assert!(peak <= (part * 4 + piece) as u64, "held {peak} bytes at most, parts of {part}");
    assert!(peak >= part as u64, "part 0 is held until the end: {peak}");
    let got = tier.get(&key).await.unwrap().expect("hit");
    assert!(got.value == value, "the streamed 64 MiB value differs");
    let across = (5 * MIB - 3) as u64..(5 * MIB + 3) as u64;
    let range = tier.get_range(&key, across.clone()).await.unwrap().unwrap();
    assert_eq!(range, value.slice(across.start as usize..across.end as usize));
    cleanup(&env, tier.prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_puts_and_gets() {
    let env = skip_unless_s3!("two_hundred_concurrent_puts_and_gets");
    let tier = Arc::new(builder(&env, "l3_concurrent_200").build().await.unwrap());
    let ns = Namespace::new("l3-it/concurrent").unwrap();
    let tasks: Vec<_> = (0..200usize)
        .map(|i| {
            let (tier, ns) = (tier.clone(), ns.clone());
            tokio::spawn(async move {
                let key = ns.key(format!("k{i}")).unwrap();
                let value = pattern(1024 + i * 37, i);
                assert!(
                    tier.put(key.clone(), Entry::new(value.clone())).await.unwrap().is_stored()
                );
                let got = tier.get(&key).await.unwrap().expect("hit after put");
                assert!(got.value == value, "key {i}");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // And 200 gets in flight at once.
    let gets: Vec<_> = (0..200usize)
        .map(|i| {
            let (tier, ns) = (tier.clone(), ns.clone());
            tokio::spawn(async move { tier.get(&ns.key(format!("k{i}")).unwrap()).await })
        })
        .collect();
    for (i, task) in gets.into_iter().enumerate() {
        let got = task.await.unwrap().unwrap().expect("hit");
        assert!(got.value == pattern(1024 + i * 37, i), "key {i}");
    }
    let stats = tier.stats();
    assert_eq!((stats.hits, stats.inserts), (400, 200));
    assert_eq!(tier.clear_namespace_count(&ns).await.unwrap(), 200, "one bulk delete");
    cleanup(&env, tier.prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_race_has_one_winner() {
    let env = skip_unless_s3!("conditional_create_race_has_one_winner");
    let prefix = unique_prefix("l3_create_race");
    // Five writers, each with a tier of its own (as five machines would be). `build` checks that
    // the server enforces conditional create.
    let mut tiers = Vec::new();
    for _ in 0..5 {
        let tier = builder(&env, "unused")
            .prefix(prefix.to_string())
            .conditional_create(true)
            .build()
            .await
            .expect("the server supports conditional create");
        tiers.push(Arc::new(tier));
    }
    let key = Key::new("l3-it", "write-once").unwrap();
    let racers: Vec<_> = tiers
        .iter()
        .enumerate()
        .map(|(i, tier)| {
            let (tier, key) = (tier.clone(), key.clone());
            tokio::spawn(async move {
                let outcome = tier.put_if_absent(key, Entry::new(format!("writer {i}"))).await;
                (i, outcome)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (i, outcome) = racer.await.unwrap();
        match outcome.unwrap() {
            CreateOutcome::Created => winners.push(i),
            CreateOutcome::AlreadyExists => {}
            other => panic!("writer {i}: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let stored = tiers[0].get(&key).await.unwrap().expect("the winner's value");
    assert_eq!(stored.value, format!("writer {}", winners[0]));
    // Through `Tier::put`, a losing write is an error and changes nothing.
    let err = tiers[1].put(key.clone(), Entry::new("late")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(tiers[2].get(&key).await.unwrap().unwrap().value, stored.value);
    cleanup(&env, prefix.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_range_reads_only_what_is_asked() {
    let env = skip_unless_s3!("byte_range_reads_only_what_is_asked");
    let tier = builder(&env, "l3_range").build().await.unwrap();
    let key = Key::new("l3-it", "ranged").unwrap();
    let value = pattern(6 * MIB + 3, 2);
    assert!(tier.put(key.clone(), Entry::new(value.clone())).await.unwrap().is_stored());
    let before = tier.metrics().bytes_down;
    for r in [0..1, 1000..5000, 5 * MIB as u64..5 * MIB as u64 + 100] {
        let got = tier.get_range(&key, r.clone()).await.unwrap().expect("hit");
        assert_eq!(got, value.slice(r.start as usize..r.end as usize), "{r:?}");
    }
    // Each range is verified: it downloads the record's head, its chunk table (97 entries of
    // 8 bytes) and the one 64 KiB chunk it falls in, not the 6 MiB value.
    let downloaded = tier.metrics().bytes_down - before;
    let per_range = (64 * 1024 + 97 * 8 + 1024) as u64;
    assert!(downloaded <= 3 * per_range, "range reads downloaded {downloaded} bytes");
    let len = value.len() as u64;
    assert_eq!(
        tier.get_range(&key, len - 2..len + 50).await.unwrap().unwrap(),
        value.slice(value.len() - 2..)
    );
    assert!(tier.get_range(&Key::new("l3-it", "absent").unwrap(), 0..10).await.unwrap().is_none());
    cleanup(&env, tier.prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_corrupt_objects_are_misses_and_deleted() {
    let env = skip_unless_s3!("expired_and_corrupt_objects_are_misses_and_deleted");
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let tier = builder(&env, "l3_expired_corrupt").clock(clock.clone()).build().await.unwrap();
    let store = tier.store().clone();
    let head = |path: Path| {
        let store = store.clone();
        async move { store.head(&path).await }
    };

    // Expired: a miss, and the object goes in the background (flush waits for it). The delete
    // first compares the object's ETag with the one the read saw (so a rewrite is kept): this
    // checks that it matches for an unchanged object on a real server, whose ETags are MD5s
    // rather than the memory store's counters.
    let short = Key::new("l3-it", "short-lived").unwrap();
    let entry = Entry::new("soon gone").with_ttl(&*clock, Duration::from_secs(5));
    assert!(tier.put(short.clone(), entry).await.unwrap().is_stored());
    let path = tier.object_path(&short);
    clock.advance(Duration::from_secs(5));
    assert!(tier.get(&short).await.unwrap().is_none(), "an expired entry is a miss");
    tier.flush().await.unwrap();
    assert!(
        matches!(head(path.clone()).await, Err(object_store::Error::NotFound { .. })),
        "the expired object is deleted"
    );
    assert_eq!(tier.stats().expirations, 1);

    // Corrupt: one flipped byte makes a counted miss, and the object is deleted.
    let key = Key::new("l3-it", "corrupt").unwrap();
    assert!(tier.put(key.clone(), Entry::new(pattern(4096, 3))).await.unwrap().is_stored());
    let path = tier.object_path(&key);
    let mut bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    store.put(&path, Bytes::from(bytes).into()).await.unwrap();
    let corrupted = tier.stats().corrupted;
    assert!(tier.get(&key).await.unwrap().is_none(), "a corrupt object is a miss");
    assert_eq!(tier.stats().corrupted, corrupted + 1);
    assert!(
        matches!(head(path).await, Err(object_store::Error::NotFound { .. })),
        "the corrupt object is deleted"
    );
    cleanup(&env, tier.prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_from_the_environment() {
    let env = skip_unless_s3!("configured_from_the_environment");
    // AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP and
    // S3_BUCKET, as the harness reads them.
    let tier = ObjectTierBuilder::s3(S3Config::from_env().with_path_style(true))
        .prefix(unique_prefix("l3_from_env").to_string())
        .build()
        .await
        .expect("a tier configured from the environment");
    let key = Key::new("l3-it", "env").unwrap();
    assert!(tier.put(key.clone(), Entry::new("from env")).await.unwrap().is_stored());
    assert_eq!(tier.get(&key).await.unwrap().unwrap().value, "from env");
    cleanup(&env, tier.prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_start_up() {
    let env = skip_unless_s3!("wrong_credentials_fail_at_start_up");
    let wrong_secret = format!("{}-wrong", env.secret_access_key);
    let cases = [
        (
            "wrong secret",
            S3Config::new(&env.bucket).with_credentials(&env.access_key_id, wrong_secret.as_str()),
        ),
        (
            "unknown key",
            S3Config::new(&env.bucket).with_credentials("TCUNKNOWNKEY0000", wrong_secret.as_str()),
        ),
    ];
    for (what, config) in cases {
        let config = config
            .with_endpoint(&env.endpoint)
            .with_region(&env.region)
            .with_allow_http(env.allow_http)
            .with_path_style(true);
        let start = Instant::now();
        let err = ObjectTierBuilder::s3(config).build().await.expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Invalid, "{what}: {err}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("check the credentials"), "{what}: {text}");
        assert!(!text.contains(&wrong_secret), "{what}: the secret leaked: {text}");
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: auth failures are not retried");
    }
    // A bucket that does not exist is a configuration error too.
    let missing = s3_config(&env).with_bucket("tiered-cache-no-such-bucket");
    let err = ObjectTierBuilder::s3(missing).build().await.expect_err("missing bucket");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}

/// Names the container of the S3 server (the MinIO job of the GitHub workflow), so the outage
/// test can `docker pause` it where there is no local pid to stop.
const ENV_SERVER_CONTAINER: &str = "TIERED_CACHE_S3_CONTAINER";

/// A server that answers nothing until this is dropped: the local server's process stopped
/// with SIGSTOP, or its container frozen with `docker pause`. Either way it keeps its sockets
/// and never replies, as a hung or partitioned server would.
enum Paused {
    /// Resumes the process when dropped.
    Process {
        _resume: Resume,
    },
    Container(String),
}

impl Paused {
    /// Pauses the server `env` describes, or says why it cannot.
    fn pause(env: &S3Env) -> Result<Paused, &'static str> {
        if let Some(pid) = env.server_pid {
            signal(pid, "-STOP");
            return Ok(Paused::Process { _resume: Resume(pid) });
        }
        match std::env::var(ENV_SERVER_CONTAINER) {
            Ok(name) if !name.is_empty() => {
                docker(&["pause", &name]);
                Ok(Paused::Container(name))
            }
            _ => Err("neither TIERED_CACHE_S3_PID nor TIERED_CACHE_S3_CONTAINER is set"),
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Paused::Container(name) = self {
            docker(&["unpause", name]);
        }
    }
}

fn docker(args: &[&str]) {
    let status = std::process::Command::new("docker").args(args).status().expect("running docker");
    assert!(status.success(), "docker {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_mid_test_is_unavailable_within_the_timeout() {
    let env = skip_unless_s3!("server_stopped_mid_test_is_unavailable_within_the_timeout");
    if env.server_pid.is_none() && std::env::var_os(ENV_SERVER_CONTAINER).is_none() {
        // An external server we cannot pause: on CI this must not pass silently.
        assert!(
            !crate::harness::on_ci(),
            "the outage test needs TIERED_CACHE_S3_PID (the local server) or \
             TIERED_CACHE_S3_CONTAINER (a server in a container) on CI"
        );
        #[expect(clippy::print_stderr, reason = "reporting a skip")]
        {
            eprintln!(
                "skipping: neither TIERED_CACHE_S3_PID nor TIERED_CACHE_S3_CONTAINER is set (an \
                 external server cannot be stopped)"
            );
        }
        return;
    }
    let timeout = Duration::from_millis(1500);
    let tier: ObjectTier = builder(&env, "l3_server_stopped")
        .operation_timeout(timeout)
        .request_timeout(Duration::from_millis(700))
        .build()
        .await
        .unwrap();
    let key = Key::new("l3-it", "outage").unwrap();
    assert!(tier.put(key.clone(), Entry::new("before")).await.unwrap().is_stored());

    // The server keeps its sockets but answers nothing. Other tests sharing the server only see
    // a pause of a few seconds (nextest runs this test alone).
    let resume = Paused::pause(&env).expect("checked above");
    for (what, result) in [
        ("get", tier.get(&key).await.map(|_| ())),
        ("put", tier.put(key.clone(), Entry::new("during")).await.map(|_| ())),
    ] {
        let start = Instant::now();
        let err = result.expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{what}: {err}");
        assert!(start.elapsed() <= timeout + Duration::from_millis(500), "{what}");
    }
    let start = Instant::now();
    let err = tier.contains(&key).await.unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(elapsed <= timeout + Duration::from_millis(500), "contains took {elapsed:?}");
    drop(resume);

    // The server is back: the tier recovers without being rebuilt. The put that timed out may
    // or may not have landed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match tier.get(&key).await {
            Ok(got) => break got,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the tier did not recover: {e}"),
        }
    };
    let value = got.expect("the value survived the outage").value;
    assert!(value == "before" || value == "during", "{value:?}");
    assert!(tier.stats().errors_of(ErrorKind::Unavailable) >= 3);
    cleanup(&env, tier.prefix()).await;
}
