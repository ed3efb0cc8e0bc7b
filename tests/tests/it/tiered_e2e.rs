//! The tiered cache end to end with three real tiers: moka, an NVMe directory, and the S3
//! server: read-through and promotion, a process restart that keeps the disk and object tiers'
//! contents, and an outage of the S3 server under load.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{Entry, ErrorKind, Key, Tier};
use cache_l1::MemoryTier;
use cache_l2_nvme::{NvmeTier, NvmeTierBuilder};
use cache_l3_object::{ObjectTier, ObjectTierBuilder, S3Config};
use cache_tiered::{TierOptions, TierWrite, TieredCache};

use crate::harness::{Resume, S3Env, signal, skip_unless_s3, unique_prefix};

fn s3(env: &S3Env, prefix: &str, timeout: Duration) -> ObjectTierBuilder {
    let config = S3Config::new(&env.bucket)
        .with_endpoint(&env.endpoint)
        .with_region(&env.region)
        .with_credentials(&env.access_key_id, env.secret_access_key.as_str())
        .with_allow_http(env.allow_http)
        .with_path_style(true);
    ObjectTierBuilder::s3(config)
        .prefix(prefix)
        .operation_timeout(timeout)
        .request_timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
}

async fn stack(
    l1_bytes: u64,
    dir: &std::path::Path,
    object: ObjectTier,
    object_timeout: Duration,
) -> (TieredCache, Arc<NvmeTier>) {
    let nvme = Arc::new(NvmeTierBuilder::new(dir, 64 << 20).open().await.expect("open nvme"));
    let cache = TieredCache::builder()
        .tier(MemoryTier::builder(l1_bytes).build())
        .tier(TierOptions::from_arc(nvme.clone()))
        .tier(TierOptions::new(object).timeout(object_timeout))
        .build()
        .expect("build tiered cache");
    (cache, nvme)
}

fn value(i: usize) -> Bytes {
    (0..4096).map(|j| ((i * 7 + j) % 251) as u8).collect::<Vec<_>>().into()
}

fn key(i: usize) -> Key {
    Key::new("e2e", format!("k{i}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tiers_read_through_and_survive_a_restart() {
    let env = skip_unless_s3!("three_tiers_read_through_and_survive_a_restart");
    let prefix = unique_prefix("tiered_e2e_restart").to_string();
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(30);
    let object = s3(&env, &prefix, timeout).build().await.expect("s3 tier");
    // RAM holds ~16 of the 100 entries, so most gets come from the lower tiers.
    let (cache, _) = stack(16 * 4300, dir.path(), object, timeout).await;
    for i in 0..100 {
        let report = cache.put_report(key(i), Entry::new(value(i))).await.unwrap();
        assert!(report.tiers.iter().all(|(_, w)| *w == TierWrite::Stored), "{report:?}");
    }
    for i in (0..100).rev() {
        assert_eq!(cache.get(&key(i)).await.unwrap().expect("hit").value, value(i), "key {i}");
    }
    cache.quiesce().await;
    let stats = cache.tiered_stats();
    assert!(stats.tiers[1].served > 0, "the disk tier served gets: {stats:?}");
    assert!(stats.tiers[0].promotions > 0, "hits below RAM were promoted");
    for i in 0..10 {
        cache.remove(&key(i)).await.unwrap();
    }
    cache.close().await.unwrap();
    drop(cache);

    // A new process: empty RAM, the same disk directory and object prefix.
    let object = s3(&env, &prefix, timeout).build().await.expect("s3 tier");
    let (cache, nvme) = stack(16 * 4300, dir.path(), object, timeout).await;
    for i in 0..100 {
        let got = cache.get(&key(i)).await.unwrap();
        if i < 10 {
            assert!(got.is_none(), "removed key {i} came back after restart");
        } else {
            assert_eq!(got.expect("kept across restart").value, value(i), "key {i}");
        }
    }
    assert!(nvme.stats().hits > 0, "the reopened disk tier served");
    // The object tier alone still has everything that was not removed.
    let object = s3(&env, &prefix, timeout).build().await.expect("s3 tier");
    assert_eq!(object.get(&key(50)).await.unwrap().expect("in s3").value, value(50));
    assert_eq!(object.clear_namespace_count(key(0).namespace()).await.unwrap(), 90);
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_is_skipped_while_ram_and_disk_keep_serving() {
    let env = skip_unless_s3!("s3_outage_is_skipped_while_ram_and_disk_keep_serving");
    let Some(pid) = env.server_pid else {
        #[expect(clippy::print_stderr, reason = "reporting a skip")]
        {
            eprintln!(
                "skipping: TIERED_CACHE_S3_PID is not set (an external server cannot be stopped)"
            );
        }
        return;
    };
    let prefix = unique_prefix("tiered_e2e_outage").to_string();
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(1500);
    let object = s3(&env, &prefix, timeout).build().await.expect("s3 tier");
    let (cache, _) = stack(8 * 4300, dir.path(), object, timeout).await;
    for i in 0..40 {
        let _ = cache.put(key(i), Entry::new(value(i))).await.unwrap();
    }
    signal(pid, "-STOP");
    let resume = Resume(pid);
    let mut longest = Duration::ZERO;
    for round in 0..3 {
        for i in 0..40 {
            let start = Instant::now();
            let got = cache.get(&key(i)).await.expect("default mode never fails a get");
            longest = longest.max(start.elapsed());
            assert_eq!(got.expect("RAM and disk still serve").value, value(i), "round {round}");
        }
    }
    // A key no tier above S3 has: a miss after at most the timeout, counted as a fault.
    let start = Instant::now();
    assert!(cache.get(&key(1000)).await.unwrap().is_none());
    let stall = start.elapsed();
    assert!(stall <= timeout + Duration::from_millis(700), "stalled {stall:?}");
    // A put during the outage: stored above, the failure reported.
    let report = cache.put_report(key(2000), Entry::new(value(2000))).await.unwrap();
    assert!(matches!(report.tiers[2].1, TierWrite::Failed(ErrorKind::Unavailable)), "{report:?}");
    assert_eq!(cache.get(&key(2000)).await.unwrap().unwrap().value, value(2000));
    drop(resume);
    let faults = cache.tiered_stats().tiers[2].total_faults();
    assert!(faults >= 2, "faults counted: {faults}");
    assert!(longest < timeout, "gets served from RAM and disk never waited for S3 ({longest:?})");
    cache.close().await.unwrap();
}
