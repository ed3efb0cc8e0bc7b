//! The systems a workload runs through, behind one enum: our tiered stack, each tier alone,
//! raw moka, foyer's `HybridCache` and raw `object_store` on the local filesystem.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use bytes::Bytes;
use cache_core::{Entry, Key, Namespace, Tier};
use cache_l1::{ENTRY_OVERHEAD, EvictionPolicy, MemoryTier, entry_weight};
use cache_l2_nvme::{Durability, NvmeTier, NvmeTierBuilder};
use cache_l3_object::{ObjectTier, ObjectTierBuilder};
use cache_tiered::{
    TierOptions, TieredCache, WritePolicy,
    policy::{DemotionFilter, PromoteNever},
};
use foyer::DeviceBuilder as _;
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, path::Path as ObjPath,
};
use serde::{Deserialize, Serialize};

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SystemKind {
    /// Our stack: RAM (`MemoryTier`) over the NVMe tier, which is written on eviction.
    Tiered,
    /// Our stack with the object tier (local filesystem) under RAM + NVMe.
    Tiered3,
    /// Our stack with the library's default policies: TinyLFU RAM, every eviction demoted to
    /// the NVMe tier (FIFO reclaim), every NVMe hit promoted.
    TieredDefaults,
    /// `MemoryTier` alone.
    L1,
    /// The NVMe tier alone.
    Nvme,
    /// The NVMe tier alone with hit-based reinsertion at reclaim.
    NvmeReinsert,
    /// The object tier alone (local filesystem).
    Object,
    /// `moka::future::Cache` with the same weigher as `MemoryTier`.
    Moka,
    /// `moka::sync::Cache` (the API `MemoryTier` runs on) with the same weigher.
    MokaSync,
    /// foyer's `HybridCache` with the same RAM and disk budgets as `tiered`.
    Foyer,
    /// Raw `object_store` `LocalFileSystem` gets and puts (no budget, no eviction).
    ObjectStore,
}

impl SystemKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SystemKind::Tiered => "tiered (ram+nvme)",
            SystemKind::Tiered3 => "tiered (ram+nvme+object)",
            SystemKind::TieredDefaults => "tiered, defaults (ram+nvme)",
            SystemKind::L1 => "l1 (ram)",
            SystemKind::Nvme => "nvme",
            SystemKind::NvmeReinsert => "nvme (reinsert hits)",
            SystemKind::Object => "object (local fs)",
            SystemKind::Moka => "moka",
            SystemKind::MokaSync => "moka (sync)",
            SystemKind::Foyer => "foyer hybrid",
            SystemKind::ObjectStore => "object_store (local fs)",
        }
    }
}

/// Budgets of a system, in bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Budgets {
    /// RAM budget.
    pub(crate) ram: u64,
    /// Disk budget.
    pub(crate) disk: u64,
    /// Disk reads bypass the page cache: the NVMe tier reads hits with `O_DIRECT`, foyer's
    /// device opens its files with it.
    #[serde(default)]
    pub(crate) direct_reads: bool,
}

/// The seed of `MemoryTier`'s key hash in every bench system: with a fixed seed moka's TinyLFU
/// admits and evicts the same way on every run (a replay is then reproducible, as far as the
/// tiers' own threads allow).
pub(crate) const HASH_SEED: u64 = 0x5EED_CA5E;

/// Raw moka's hasher: SipHash with fixed keys instead of `RandomState`'s random ones, for the
/// same reason.
pub(crate) type FixedHash = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

/// Raw moka's weigher: `MemoryTier`'s weight of the entry.
fn moka_weight(k: &Key, v: &Bytes) -> u32 {
    u32::try_from(entry_weight(k, v.len())).unwrap_or(u32::MAX)
}

/// A built system.
pub(crate) enum System {
    /// The stack, and its NVMe tier (to wait for its writer in replays).
    Tiered(TieredCache, Option<Arc<NvmeTier>>),
    /// One tier, and the same tier as an NVMe tier if it is one.
    Tier(Arc<dyn Tier>, Option<Arc<NvmeTier>>),
    Moka(moka::future::Cache<Key, Bytes, FixedHash>),
    MokaSync(moka::sync::Cache<Key, Bytes, FixedHash>),
    Foyer(foyer::HybridCache<u64, Vec<u8>>),
    Store(Arc<dyn ObjectStore>),
}

/// The namespace every bench key lives in.
pub(crate) fn namespace() -> Namespace {
    Namespace::new("bench").expect("valid namespace")
}

/// The key bytes of id `id`.
pub(crate) fn key(ns: &Namespace, id: u64) -> Key {
    ns.key(Bytes::copy_from_slice(&id.to_le_bytes())).expect("short key")
}

/// What `MemoryTier`'s weigher charges for an entry of `value` bytes with a bench key.
pub(crate) fn l1_weight(value: u64) -> u64 {
    ENTRY_OVERHEAD + "bench".len() as u64 + 8 + value
}

/// The NVMe record size of an entry of `value` bytes with a bench key (header, metadata,
/// namespace and key, as `Record::encoded_len` counts them). The tier's budget also pays for
/// segment headers and the unused tail of each segment, which this does not count.
pub(crate) fn nvme_weight(value: u64) -> u64 {
    let value = usize::try_from(value).unwrap_or(usize::MAX);
    cache_core::Record::encoded_len(&key(&namespace(), 0), value) as u64
}

fn nvme(dir: &Path, budgets: Budgets) -> Result<NvmeTier> {
    nvme_with(dir, budgets, false)
}

fn nvme_with(dir: &Path, budgets: Budgets, reinsert_hits: bool) -> Result<NvmeTier> {
    let _ = std::fs::remove_dir_all(dir);
    NvmeTierBuilder::new(dir, budgets.disk.max(cache_l2_nvme::MIN_SEGMENT_SIZE))
        .durability(Durability::None)
        .reinsert_hits(reinsert_hits)
        .direct_reads(budgets.direct_reads)
        .open_blocking()
        .with_context(|| format!("opening the NVMe tier in {}", dir.display()))
}

async fn object(dir: &Path, budget: Option<u64>) -> Result<ObjectTier> {
    let _ = std::fs::remove_dir_all(dir);
    let mut b = ObjectTierBuilder::local(dir).prefix("bench").local_fsync(false);
    if let Some(budget) = budget {
        b = b.budget(budget.max(1));
    }
    b.build().await.with_context(|| format!("opening the object tier in {}", dir.display()))
}

impl System {
    /// Builds `kind` with `budgets`, its files under `dir` (removed first).
    pub(crate) async fn build(kind: SystemKind, budgets: Budgets, dir: &Path) -> Result<System> {
        let dir = dir.join(format!("{kind:?}").to_lowercase());
        Ok(match kind {
            SystemKind::Tiered | SystemKind::Tiered3 => {
                // A small queue in front of a main queue (see cache-tiered's docs): an LRU RAM
                // tier as the small queue, the NVMe tier with hit-based reinsertion as the
                // main queue, W-TinyLFU's demotion filter between them, and no promotion.
                let disk = Arc::new(nvme_with(&dir.join("nvme"), budgets, true)?);
                let mut b = TieredCache::builder()
                    .demotion_queue_len(1 << 16)
                    .demotion_filter(DemotionFilter::tiny_lfu())
                    .promotion(PromoteNever)
                    .tier(
                        MemoryTier::builder(budgets.ram.max(1))
                            .eviction_policy(EvictionPolicy::Lru)
                            .hash_seed(HASH_SEED)
                            .build(),
                    )
                    .tier(TierOptions::from_arc(disk.clone()).write(WritePolicy::OnEviction));
                if kind == SystemKind::Tiered3 {
                    b = b.tier(object(&dir.join("object"), None).await?);
                }
                System::Tiered(b.build()?, Some(disk))
            }
            SystemKind::TieredDefaults => {
                let disk = Arc::new(nvme(&dir.join("nvme"), budgets)?);
                let b = TieredCache::builder()
                    .demotion_queue_len(1 << 16)
                    .tier(MemoryTier::builder(budgets.ram.max(1)).hash_seed(HASH_SEED).build())
                    .tier(TierOptions::from_arc(disk.clone()).write(WritePolicy::OnEviction));
                System::Tiered(b.build()?, Some(disk))
            }
            SystemKind::L1 => System::Tier(
                Arc::new(MemoryTier::builder(budgets.ram.max(1)).hash_seed(HASH_SEED).build()),
                None,
            ),
            SystemKind::Nvme | SystemKind::NvmeReinsert => {
                let t = Arc::new(nvme_with(&dir, budgets, kind == SystemKind::NvmeReinsert)?);
                System::Tier(t.clone(), Some(t))
            }
            SystemKind::Object => {
                System::Tier(Arc::new(object(&dir, Some(budgets.disk)).await?), None)
            }
            SystemKind::Moka => System::Moka(
                moka::future::Cache::builder()
                    .max_capacity(budgets.ram.max(1))
                    .weigher(moka_weight)
                    .build_with_hasher(FixedHash::default()),
            ),
            SystemKind::MokaSync => System::MokaSync(
                moka::sync::Cache::builder()
                    .max_capacity(budgets.ram.max(1))
                    .weigher(moka_weight)
                    .build_with_hasher(FixedHash::default()),
            ),
            SystemKind::Foyer => {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                let device = foyer::FsDeviceBuilder::new(&dir)
                    .with_direct(budgets.direct_reads)
                    .with_capacity(usize::try_from(budgets.disk.max(4 << 20))?)
                    .build()
                    .context("foyer device")?;
                let block = (budgets.disk / 16).clamp(64 << 10, 16 << 20).next_power_of_two() / 2;
                let cache = foyer::HybridCacheBuilder::new()
                    .with_name("bench")
                    .memory(usize::try_from(budgets.ram.max(1))?)
                    .with_weighter(|_k: &u64, v: &Vec<u8>| 8 + v.len() + ENTRY_OVERHEAD as usize)
                    .storage()
                    .with_io_engine_config(foyer::PsyncIoEngineConfig::new())
                    .with_engine_config(
                        foyer::BlockEngineConfig::new(device)
                            .with_block_size(usize::try_from(block.max(64 << 10))?),
                    )
                    .build()
                    .await
                    .context("building foyer")?;
                System::Foyer(cache)
            }
            SystemKind::ObjectStore => {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                System::Store(Arc::new(LocalFileSystem::new_with_prefix(&dir)?))
            }
        })
    }

    /// Looks `id` up; whether it hit.
    pub(crate) async fn get(&self, ns: &Namespace, id: u64) -> Result<bool> {
        Ok(match self {
            System::Tiered(c, _) => c.get(&key(ns, id)).await?.is_some(),
            System::Tier(t, _) => t.get(&key(ns, id)).await?.is_some(),
            System::Moka(m) => m.get(&key(ns, id)).await.is_some(),
            System::MokaSync(m) => m.get(&key(ns, id)).is_some(),
            System::Foyer(f) => f.get(&id).await?.is_some(),
            System::Store(s) => match s.get(&obj_path(id)).await {
                Ok(r) => {
                    let _ = r.bytes().await?;
                    true
                }
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            },
        })
    }

    /// Stores `value` under `id`.
    pub(crate) async fn put(&self, ns: &Namespace, id: u64, value: Bytes) -> Result<()> {
        match self {
            System::Tiered(c, _) => {
                let _ = c.put(key(ns, id), Entry::new(value)).await?;
            }
            System::Tier(t, _) => {
                // A value larger than a tier's budget is `Invalid`: a rejection, not a failure.
                match t.put(key(ns, id), Entry::new(value)).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == cache_core::ErrorKind::Invalid => {}
                    Err(e) => return Err(e.into()),
                }
            }
            System::Moka(m) => m.insert(key(ns, id), value).await,
            System::MokaSync(m) => m.insert(key(ns, id), value),
            System::Foyer(f) => {
                f.insert(id, value.to_vec());
            }
            System::Store(s) => {
                s.put(&obj_path(id), PutPayload::from_bytes(value)).await?;
            }
        }
        Ok(())
    }

    /// Brings a system to the state its configured capacity describes, after each request of
    /// a single-threaded replay: moka's pending evictions run, queued demotions are written,
    /// and the NVMe writer has written what was put (its pending buffer is RAM outside the
    /// disk budget). Without it a replay measures how far background work lagged, not the
    /// policy, and two runs differ.
    pub(crate) async fn replay_step(&self) -> Result<()> {
        match self {
            System::Tiered(c, nvme) => {
                // Background work first: a promotion writes the RAM tier, and must be in moka's
                // write log before its pending tasks run, not before or after them depending on
                // the worker's timing. Then the evictions those tasks make are demoted.
                c.quiesce().await;
                c.tiers()[0].flush().await?;
                c.quiesce().await;
                if let Some(n) = nvme
                    && n.pending_writes() > 0
                {
                    n.wait_written().await?;
                }
            }
            System::Tier(_, Some(n)) => {
                if n.pending_writes() > 0 {
                    n.wait_written().await?;
                }
            }
            System::Tier(t, None) => t.flush().await?,
            System::Moka(m) => m.run_pending_tasks().await,
            System::MokaSync(m) => m.run_pending_tasks(),
            System::Foyer(_) | System::Store(_) => {}
        }
        Ok(())
    }

    /// Waits for background work (demotions, maintenance) so counters settle.
    pub(crate) async fn settle(&self) -> Result<()> {
        match self {
            System::Tiered(c, _) => {
                c.quiesce().await;
                c.flush().await?;
            }
            System::Tier(t, _) => t.flush().await?,
            System::Moka(m) => m.run_pending_tasks().await,
            System::MokaSync(m) => m.run_pending_tasks(),
            System::Foyer(_) | System::Store(_) => {}
        }
        Ok(())
    }

    /// Closes what needs closing.
    pub(crate) async fn close(self) -> Result<()> {
        match self {
            System::Tiered(c, _) => c.close().await?,
            System::Tier(t, _) => t.close().await?,
            System::Foyer(f) => f.close().await?,
            System::Moka(_) | System::MokaSync(_) | System::Store(_) => {}
        }
        Ok(())
    }

    /// One line per tier of the tiered stack: what it served, promoted, demoted, dropped.
    pub(crate) fn tier_lines(&self) -> Vec<String> {
        match self {
            System::Tiered(c, _) => c
                .tiered_stats()
                .tiers
                .iter()
                .map(|t| {
                    format!(
                        "{}: served {}, promotions {}, demotions {} (skipped clean {}, dropped {}, superseded {}), served from queue {}, \
                         write failures {}, rejections {:?}, tier stats {:?}",
                        t.tier.tier,
                        t.served,
                        t.promotions,
                        t.demotions,
                        t.demotions_skipped_clean,
                        t.demotions_dropped,
                        t.demotions_superseded,
                        t.served_from_queue,
                        t.write_failures,
                        t.rejections,
                        t.tier,
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Per-tier served counts of the tiered stack, for the report.
    pub(crate) fn tier_served(&self) -> Vec<(String, u64)> {
        match self {
            System::Tiered(c, _) => {
                c.tiered_stats().tiers.iter().map(|t| (t.tier.tier.to_owned(), t.served)).collect()
            }
            _ => Vec::new(),
        }
    }
}

fn obj_path(id: u64) -> ObjPath {
    ObjPath::from(format!("bench/{:02x}/{id:016x}", id & 0xff))
}
