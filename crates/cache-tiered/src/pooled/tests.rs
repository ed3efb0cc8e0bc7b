//! Tests of [`PooledCache`]: the conformance suite, routing, build errors, and tenants that
//! cannot evict each other.

use std::sync::Arc;

use cache_core::{
    Entry, ErrorKind, Key, Namespace, Tier,
    testkit::{TestTier, TierSpec},
};
use cache_l1::{EvictionPolicy, MemoryTier};

use super::PooledCache;
use crate::{TierOptions, TieredCache, WritePolicy, policy::DemotionFilter};

fn ram(capacity: u64) -> MemoryTier {
    MemoryTier::builder(capacity).eviction_policy(EvictionPolicy::Lru).hash_seed(7).build()
}

mod conformance_of_a_pool {
    use super::*;

    /// Half the budget for the namespace the capacity check writes, half for the rest.
    async fn factory(spec: TierSpec) -> TestTier {
        let half = spec.capacity_bytes / 2;
        let ram = |capacity| MemoryTier::builder(capacity).clock(spec.dyn_clock()).build();
        let cache = PooledCache::builder()
            .pool("cap", ram(half), [Namespace::new("cap").unwrap()])
            .shared(ram(spec.capacity_bytes - half))
            .build()
            .expect("build");
        TestTier::new(cache)
    }

    cache_core::conformance_suite!(factory);
}

#[tokio::test]
async fn each_namespace_reaches_its_own_pool_only() {
    let (a, b) = (Namespace::new("a").unwrap(), Namespace::new("b").unwrap());
    let pool_a = Arc::new(ram(1 << 20));
    let shared = Arc::new(ram(1 << 20));
    let cache = PooledCache::builder()
        .pool_arc("a", pool_a.clone(), [a.clone()])
        .shared_arc(shared.clone())
        .build()
        .unwrap();
    let (ka, kb) = (a.key("k").unwrap(), b.key("k").unwrap());
    assert!(cache.put(ka.clone(), Entry::new("in a")).await.unwrap().is_stored());
    assert!(cache.put(kb.clone(), Entry::new("in shared")).await.unwrap().is_stored());
    assert_eq!(pool_a.get(&ka).await.unwrap().unwrap().value, "in a");
    assert_eq!(pool_a.get(&kb).await.unwrap(), None);
    assert_eq!(shared.get(&kb).await.unwrap().unwrap().value, "in shared");
    assert_eq!(shared.get(&ka).await.unwrap(), None);
    assert_eq!((cache.pool_of(&a), cache.pool_of(&b)), ("a", "shared"));

    let many = cache.get_many(&[kb.clone(), ka.clone()]).await.unwrap();
    assert_eq!(many[0].as_ref().unwrap().value, "in shared");
    assert_eq!(many[1].as_ref().unwrap().value, "in a");
    cache.clear_namespace(&a).await.unwrap();
    assert_eq!(cache.get(&ka).await.unwrap(), None);
    assert!(cache.contains(&kb).await.unwrap(), "a clear of one pool's namespace stays there");

    let pools = cache.pools();
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0].namespaces, vec![a]);
    assert_eq!(cache.stats().inserts, pools[0].stats.inserts + pools[1].stats.inserts);
    assert_eq!(cache.usage().capacity, Some(2 << 20));
    cache.close().await.unwrap();
    assert_eq!(cache.get(&ka).await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(shared.get(&kb).await.unwrap_err().kind(), ErrorKind::Closed, "closes its pools");
}

#[test]
fn bad_pool_layouts_are_refused_with_a_reason() {
    let ns = |n: &str| Namespace::new(n).unwrap();
    let err = |b: super::PooledBuilder| b.build().unwrap_err();
    let e = err(PooledCache::builder().pool("a", ram(1 << 20), [ns("a")]));
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("shared cache"), "{e}");
    let e = err(PooledCache::builder()
        .pool("a", ram(1 << 20), [ns("a")])
        .pool("b", ram(1 << 20), [ns("b"), ns("a")])
        .shared(ram(1 << 20)));
    assert!(e.message().contains("\"a\" is given to two pools, \"a\" and \"b\""), "{e}");
    let e = err(PooledCache::builder()
        .pool("a", ram(1 << 20), [ns("a")])
        .pool("a", ram(1 << 20), [ns("b")])
        .shared(ram(1 << 20)));
    assert!(e.message().contains("two pools are named \"a\""), "{e}");
    let e = err(PooledCache::builder().pool("shared", ram(1 << 20), [ns("a")]).shared(ram(1)));
    assert!(e.message().contains("\"shared\" is taken"), "{e}");
    let e = err(PooledCache::builder().pool("a", ram(1 << 20), []).shared(ram(1 << 20)));
    assert!(e.message().contains("serves no namespace"), "{e}");
}

/// The hot tenant reads a working set of 200 keys that fits its pool; the flooder writes a new
/// key four times per hot read. Returns the hot tenant's hit ratio, in percent.
async fn hot_hit_ratio(cache: &dyn Tier, flood: bool) -> f64 {
    let hot = Namespace::new("tenant/hot").unwrap();
    let noisy = Namespace::new("tenant/noisy").unwrap();
    let value = Entry::new(vec![1u8; 1024]);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let (mut hits, mut reads, mut fresh) = (0u64, 0u64, 0u64);
    for _ in 0..6_000 {
        // xorshift: the same sequence in every run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key: Key = hot.key(format!("hot-{}", rng % 200)).unwrap();
        reads += 1;
        if cache.get(&key).await.unwrap().is_some() {
            hits += 1;
        } else {
            let _ = cache.put(key, value.clone()).await.unwrap();
        }
        if flood {
            for _ in 0..4 {
                fresh += 1;
                let key = noisy.key(format!("flood-{fresh}")).unwrap();
                if cache.get(&key).await.unwrap().is_none() {
                    let _ = cache.put(key, value.clone()).await.unwrap();
                }
            }
        }
        // Run evictions and background work now, so every run holds what its budget holds.
        cache.flush().await.unwrap();
    }
    100.0 * hits as f64 / reads as f64
}

const POOL: u64 = 300 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_move_another_pools_hit_ratio() {
    let hot = Namespace::new("tenant/hot").unwrap();
    let pooled =
        || PooledCache::builder().pool("hot", ram(POOL), [hot.clone()]).shared(ram(POOL)).build();
    let alone = hot_hit_ratio(&pooled().unwrap(), false).await;
    let flooded = hot_hit_ratio(&pooled().unwrap(), true).await;
    // The same bytes without pools: the flood pushes the hot set out.
    let unpooled = hot_hit_ratio(&ram(2 * POOL), true).await;
    assert!(alone > 90.0, "the working set fits its pool: {alone:.2} %");
    assert!((alone - flooded).abs() <= 1.0, "alone {alone:.2} %, flooded {flooded:.2} %");
    assert!(unpooled < alone - 20.0, "without pools: {unpooled:.2} % against {alone:.2} %");
}

/// The same with a RAM → NVMe stack per pool, the stack `docs/benchmarks.md` measures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_move_another_stacks_hit_ratio() {
    let hot = Namespace::new("tenant/hot").unwrap();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let stack = |dir: &tempfile::TempDir| {
        let disk = cache_l2_nvme::NvmeTier::builder(dir.path(), 256 << 10).reinsert_hits(true);
        async move {
            TieredCache::builder()
                .tier(ram(48 << 10))
                .tier(TierOptions::new(disk.open().await.unwrap()).write(WritePolicy::OnEviction))
                .demotion_filter(DemotionFilter::tiny_lfu())
                .build()
                .unwrap()
        }
    };
    let pooled = |hot_dir, shared_dir| {
        let hot = hot.clone();
        async move {
            PooledCache::builder()
                .pool("hot", stack(hot_dir).await, [hot])
                .shared(stack(shared_dir).await)
                .build()
                .unwrap()
        }
    };
    let alone = hot_hit_ratio(&pooled(&dirs[0], &dirs[1]).await, false).await;
    let flooded = hot_hit_ratio(&pooled(&dirs[2], &dirs[3]).await, true).await;
    assert!(alone > 80.0, "the working set fits its pool's stack: {alone:.2} %");
    assert!((alone - flooded).abs() <= 1.0, "alone {alone:.2} %, flooded {flooded:.2} %");
}
