//! The typed layer on real tiers: zero-copy rkyv hits from the NVMe tier's mapping, codec and
//! schema changes as counted misses, and the same API over a `TieredCache` and `Arc<dyn Tier>`.

use std::{path::Path, sync::Arc};

use cache_core::{Entry, Tier};
use cache_l1::MemoryTier;
use cache_l2_nvme::{NvmeTier, NvmeTierBuilder};
use cache_tiered::{TierOptions, TieredCache, WritePolicy};
use cache_typed::{Codec, Json, Postcard, Rkyv, TypedCache};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct KvBlock {
    sequence: u64,
    layer: u32,
    values: Vec<f32>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Answer {
    text: String,
    tokens: u32,
}

async fn open_nvme(dir: &Path) -> NvmeTier {
    NvmeTierBuilder::new(dir, 64 << 20).open().await.expect("open the NVMe tier")
}

async fn nvme(dir: &Path) -> Arc<NvmeTier> {
    Arc::new(open_nvme(dir).await)
}

/// The address ranges of the process's mappings of files under `dir` (`/proc/self/maps`).
#[cfg(target_os = "linux")]
fn file_mappings_under(dir: &Path) -> Vec<std::ops::Range<usize>> {
    let dir = dir.canonicalize().expect("canonical tier directory");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let path = fields.nth(4)?;
            if !Path::new(path).starts_with(&dir) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?)
        })
        .collect()
}

/// A hit is read in place: the archived value lies in the bytes the tier returned, and those
/// bytes lie in the tier's memory mapping of a segment file.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn rkyv_hits_from_nvme_are_read_in_the_segment_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let disk = nvme(dir.path()).await;
    let blocks: TypedCache<(u64, u32), KvBlock, Rkyv, _> =
        TypedCache::new(disk.clone(), "kv-cache", Rkyv::new()).unwrap();
    // Keys of several lengths put values at different offsets of the segment.
    for layer in 0..8u32 {
        let block = KvBlock { sequence: 7, layer, values: (0..256).map(|i| i as f32).collect() };
        let _ = blocks.put(&(7, layer), &block).await.unwrap();
    }
    // Written to the segment (a hit from the pending buffer would be a copy).
    disk.flush().await.unwrap();
    let mappings = file_mappings_under(dir.path());
    assert!(!mappings.is_empty(), "the tier maps its segment files");
    for layer in 0..8u32 {
        let hit = blocks.get(&(7, layer)).await.unwrap().expect("a hit");
        assert_eq!((hit.sequence.to_native(), hit.layer.to_native()), (7, layer));
        assert_eq!(hit.values[255], 255.0);
        let archived = &*hit as *const ArchivedKvBlock as usize;
        let bytes = hit.bytes();
        let value = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        assert!(value.contains(&archived), "the archived value is inside the returned bytes");
        let floats = hit.values.as_ptr() as usize;
        assert!(value.contains(&floats), "so are its vector's elements");
        assert!(
            mappings.iter().any(|m| m.start <= value.start && value.end <= m.end),
            "the returned bytes {value:x?} lie in a segment mapping {mappings:x?}"
        );
        // The raw tier hands out the very same bytes: nothing was copied on the way.
        let raw = disk.get(&blocks.key(&(7, layer)).unwrap()).await.unwrap().unwrap();
        assert_eq!(raw.value.as_ptr(), bytes.as_ptr());
        assert_eq!(hit.deserialize().unwrap().values.len(), 256);
    }
    assert_eq!(blocks.codec().realigned(), 0);
    assert_eq!(blocks.stats().hits, 8);
    disk.close().await.unwrap();
}

#[tokio::test]
async fn another_codec_or_schema_is_a_counted_miss_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let answer = Answer { text: "42".into(), tokens: 1 };
    {
        let disk = nvme(dir.path()).await;
        let json: TypedCache<str, Answer, Json, _> =
            TypedCache::new(disk.clone(), "answers", Json).unwrap();
        let _ = json.put("q", &answer).await.unwrap();
        disk.close().await.unwrap();
    }
    let disk = nvme(dir.path()).await;
    let json: TypedCache<str, Answer, Json, _> =
        TypedCache::new(disk.clone(), "answers", Json).unwrap();
    assert_eq!(json.get("q").await.unwrap(), Some(answer.clone()), "the tag survives a reopen");

    let postcard: TypedCache<str, Answer, Postcard, _> =
        TypedCache::new(disk.clone(), "answers", Postcard).unwrap();
    assert_eq!(postcard.get("q").await.unwrap(), None);
    let json_v2: TypedCache<str, Answer, Json, _> =
        TypedCache::new(disk.clone(), "answers", Json).unwrap().schema_version(2);
    assert_eq!(json_v2.get("q").await.unwrap(), None);
    for stats in [postcard.stats(), json_v2.stats()] {
        assert_eq!((stats.hits, stats.misses, stats.stale, stats.undecodable), (0, 1, 1, 0));
    }

    // An untyped entry carries no tag; one with the right tag but foreign bytes does not decode.
    let key = json.key("raw").unwrap();
    let _ = disk.put(key.clone(), Entry::new("not tagged")).await.unwrap();
    assert_eq!(json.get("raw").await.unwrap(), None);
    let _ = disk.put(key, Entry::new("{not json").with_version(json.user_tag())).await.unwrap();
    assert_eq!(json.get("raw").await.unwrap(), None);
    let stats = json.stats();
    assert_eq!((stats.hits, stats.misses, stats.stale, stats.undecodable), (1, 2, 1, 1));

    // The loader path overwrites a stale entry with the current encoding.
    let loaded = postcard.get_or_load("q", || async { Ok(answer.clone()) }).await.unwrap();
    assert_eq!(loaded, answer);
    assert_eq!(postcard.get("q").await.unwrap(), Some(answer));
    assert_eq!(json.get("q").await.unwrap(), None);
    disk.close().await.unwrap();
}

#[tokio::test]
async fn over_a_tiered_cache_and_a_dyn_tier() {
    let dir = tempfile::tempdir().unwrap();
    let stack = TieredCache::builder()
        .tier(MemoryTier::builder(1 << 20).build())
        .tier(TierOptions::new(open_nvme(dir.path()).await).write(WritePolicy::Through))
        .build()
        .unwrap();
    let stack = Arc::new(stack);
    let answers: TypedCache<(String, u8), Answer, Postcard, TieredCache> =
        TypedCache::new(stack.clone(), "answers", Postcard).unwrap();
    let key = ("what is 6 x 7?".to_owned(), 1);
    let answer = Answer { text: "42".into(), tokens: 1 };
    let _ = answers.put(&key, &answer).await.unwrap();
    assert_eq!(answers.get(&key).await.unwrap(), Some(answer.clone()));

    let shared: Arc<dyn Tier> = stack.clone();
    let same: TypedCache<(String, u8), Answer, Postcard> =
        TypedCache::new(shared, "answers", Postcard).unwrap();
    assert_eq!(same.get(&key).await.unwrap(), Some(answer));
    same.remove(&key).await.unwrap();
    assert_eq!(answers.get(&key).await.unwrap(), None);
    assert_eq!(<Postcard as Codec<Answer>>::TAG.id(), *b"PCRD");
    stack.close().await.unwrap();
}
