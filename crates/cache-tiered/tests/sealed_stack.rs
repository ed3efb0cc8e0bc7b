//! Encryption at rest through the whole stack: RAM → NVMe → object tier on a local directory,
//! both persistent tiers given one key provider. Values demoted to disk and uploaded to the
//! object tier are ciphertext in every file; a namespace the provider leaves alone stays
//! readable; everything reads back through the stack, also after a restart of the disk tiers.

use std::{path::Path, sync::Arc};

use bytes::Bytes;
use cache_core::KeyProvider;
use cache_tiered::prelude::*;

fn keys() -> Arc<dyn KeyProvider> {
    let tenant = Namespace::new("tenant-a").unwrap();
    Arc::new(NamespaceKeys::new().with_key(
        &tenant,
        KeyId(1),
        EncryptionKey::from_bytes([0x11; 32]),
    ))
}

/// Values that do not compress and whose 16-byte windows are all distinct.
fn value(i: u32) -> Bytes {
    let mut state = u64::from(i) << 32 | 0x9e37;
    (0..2048)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect::<Vec<_>>()
        .into()
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

async fn stack(nvme: &Path, objects: &Path) -> TieredCache {
    let disk = NvmeTierBuilder::new(nvme, 64 << 20)
        .segment_size(1 << 20)
        .encryption(keys())
        .open()
        .await
        .unwrap();
    let bucket = ObjectTierBuilder::local(objects).encryption(keys()).build().await.unwrap();
    TieredCache::builder()
        .tier(MemoryTier::builder(64 << 10).build())
        .tier(TierOptions::new(disk).write(WritePolicy::OnEviction))
        .tier(TierOptions::new(bucket).write(WritePolicy::Through))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disks_and_buckets_hold_ciphertext_for_a_sealed_namespace() {
    let (nvme, objects) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n = 300;
    let key = |ns: &str, i: u32| Key::new(ns, format!("item-{i}")).unwrap();
    let cache = stack(nvme.path(), objects.path()).await;
    for i in 0..n {
        for ns in ["tenant-a", "public"] {
            let v = value(i + u32::from(ns == "public") * 10_000);
            assert!(cache.put(key(ns, i), Entry::new(v)).await.unwrap().is_stored());
        }
    }
    cache.quiesce().await;
    let disk = cache.tiers()[1].clone();
    assert!(disk.usage().entries.unwrap() > 100, "the RAM tier demoted most entries to disk");
    for i in 0..n {
        assert_eq!(cache.get(&key("tenant-a", i)).await.unwrap().unwrap().value, value(i));
    }
    cache.close().await.unwrap();

    let (on_disk, in_bucket) = (all_bytes(nvme.path()), all_bytes(objects.path()));
    let found = |files: &[u8], v: &Bytes| files.windows(16).any(|w| w == &v[1000..1016]);
    for i in (0..n).step_by(7) {
        assert!(!found(&in_bucket, &value(i)), "tenant value {i} in the bucket in plaintext");
        assert!(!found(&on_disk, &value(i)), "tenant value {i} on disk in plaintext");
    }
    // The control: the namespace without a key is stored as it was, so the search can fail.
    assert!(found(&in_bucket, &value(10_000)));

    // The disk tiers reopened with the provider read everything back; the RAM tier is new.
    let cache = stack(nvme.path(), objects.path()).await;
    for i in 0..n {
        assert_eq!(cache.get(&key("tenant-a", i)).await.unwrap().unwrap().value, value(i), "{i}");
    }
    let corrupted: u64 = cache.tiers().iter().map(|t| t.stats().corrupted).sum();
    assert_eq!(corrupted, 0);
    cache.close().await.unwrap();
}
