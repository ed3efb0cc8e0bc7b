//! Random operation sequences against each tier and the tiered cache, checked against a map
//! model.
//!
//! The model holds, per key, the write that a get may return (or none). A cache may drop
//! entries, so a miss is always fine; a hit must be exactly the latest write of that key —
//! value bytes, expiry and version — not removed, not cleared and not expired by the manual
//! clock. A put the tier stores sets the expectation; a put it rejects (too large, already
//! expired) clears it (a rejected write supersedes the older value); a put refused with
//! `Invalid` leaves it as it was (the contract: nothing changed). `contains` must not report a
//! key the model says is gone. Persistent tiers are closed and reopened now and then, and must
//! still never serve a wrong value.

use std::{path::Path, sync::Arc, time::Duration, time::Instant};

use anyhow::Result;
use bytes::Bytes;
use cache_core::{
    Clock, Entry, ErrorKind, Key, ManualClock, Namespace, PutOutcome, Tier, Timestamp,
};
use cache_l1::MemoryTier;
use cache_l2_nvme::{Durability, NvmeTierBuilder};
use cache_l2_rocks::RocksTier;
use cache_l3_object::ObjectTierBuilder;
use cache_tiered::{TierOptions, TieredCache, WritePolicy};
use object_store::{ObjectStore, memory::InMemory};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{QuietPanics, TargetStats};
use crate::Ctx;

/// The namespaces and key bytes: includes the pairs that would collide if the namespace/key
/// split were ambiguous (`"a"`+`"b/c"`, `"a/b"`+`"c"`, `"a:b"`+`"c"`, `"a"`+`"b:c"`).
const NAMESPACES: [&str; 3] = ["a", "a/b", "a:b"];
const KEY_COUNT: usize = 24;

fn key_bytes(i: usize) -> Vec<u8> {
    match i {
        0 => b"c".to_vec(),
        1 => b"b/c".to_vec(),
        2 => b"b:c".to_vec(),
        3 => Vec::new(),
        4 => vec![0, 0xff, b'/', b'.', b'.'],
        _ => format!("k{i}").into_bytes(),
    }
}

/// Which subject a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Nvme,
    Rocks,
    Object,
    Tiered,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Memory => "ops: moka L1 (`MemoryTier`)",
            Kind::Nvme => "ops: NVMe tier",
            Kind::Rocks => "ops: RocksDB tier",
            Kind::Object => "ops: object tier (in-memory store)",
            Kind::Tiered => "ops: tiered cache (L1 → NVMe → object, write-behind)",
        }
    }
}

/// Everything a subject needs to be (re)opened.
struct Subject {
    kind: Kind,
    dir: std::path::PathBuf,
    clock: Arc<ManualClock>,
    store: Arc<dyn ObjectStore>,
}

impl Subject {
    async fn open(&self) -> Result<Arc<dyn Tier>> {
        let clock: Arc<dyn Clock> = self.clock.clone();
        Ok(match self.kind {
            Kind::Memory => Arc::new(MemoryTier::builder(256 * 1024).clock(clock).build()),
            Kind::Nvme => Arc::new(nvme(&self.dir, clock).await?),
            Kind::Rocks => Arc::new(
                RocksTier::builder(&self.dir, 1 << 20)
                    .block_cache_bytes(1 << 20)
                    .clock(clock)
                    .open()
                    .await?,
            ),
            Kind::Object => Arc::new(
                ObjectTierBuilder::new(self.store.clone())
                    .prefix("fuzz")
                    .budget(2 << 20)
                    .clock(clock)
                    .build()
                    .await?,
            ),
            Kind::Tiered => {
                let l1 = MemoryTier::builder(64 * 1024).clock(clock.clone()).build();
                let l2 = nvme(&self.dir, clock.clone()).await?;
                let l3 = ObjectTierBuilder::new(self.store.clone())
                    .prefix("fuzz-tiered")
                    .clock(clock.clone())
                    .build()
                    .await?;
                Arc::new(
                    TieredCache::builder()
                        .clock(clock)
                        .tier(l1)
                        .tier(l2)
                        .tier(TierOptions::new(l3).write(WritePolicy::behind()))
                        .build()?,
                )
            }
        })
    }

    fn persistent(&self) -> bool {
        matches!(self.kind, Kind::Nvme | Kind::Rocks | Kind::Object)
    }
}

async fn nvme(dir: &Path, clock: Arc<dyn Clock>) -> cache_core::Result<cache_l2_nvme::NvmeTier> {
    NvmeTierBuilder::new(dir, 1 << 20).durability(Durability::None).clock(clock).open().await
}

/// What a get may return for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    id: u64,
    len: usize,
    expires_at: Option<Timestamp>,
    version: Option<u64>,
}

struct Model {
    keys: Vec<Key>,
    state: Vec<Option<Expect>>,
    next_id: u64,
}

fn value_for(id: u64, key: usize, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&(key as u32).to_le_bytes());
    v.extend((12..len).map(|i| (id as usize).wrapping_mul(31).wrapping_add(i) as u8));
    v.into()
}

/// Checks a hit against the model; `Err` describes a violation.
fn check_hit(model: &Model, k: usize, e: &Entry, now: Timestamp) -> Result<(), String> {
    let v = &e.value;
    let live = model.state[k].filter(|x| x.expires_at.is_none_or(|t| t > now));
    let Some(expect) = live else {
        return Err(format!(
            "key {k} ({:?}) served a value (len {}) the model says is gone (state {:?}, now {})",
            model.keys[k],
            v.len(),
            model.state[k],
            now.as_millis()
        ));
    };
    if v.len() < 12 {
        return Err(format!("key {k}: a {}-byte value no write produced", v.len()));
    }
    let id = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
    let key = u32::from_le_bytes(v[8..12].try_into().expect("4 bytes")) as usize;
    if key != k {
        return Err(format!("key {k} served the value of key {key} (write {id})"));
    }
    if id != expect.id {
        return Err(format!("key {k} served write {id}, the latest is {}", expect.id));
    }
    if *v != value_for(id, k, expect.len) {
        return Err(format!("key {k}: write {id} came back with other bytes"));
    }
    if e.meta.expires_at != expect.expires_at || e.meta.version != expect.version {
        return Err(format!(
            "key {k}: write {id} came back with expiry {:?} / version {:?}, written {:?} / {:?}",
            e.meta.expires_at, e.meta.version, expect.expires_at, expect.version
        ));
    }
    Ok(())
}

/// Runs `ops` operations on every subject.
pub(super) fn run_all(ctx: &Ctx, rng: &mut StdRng, ops: u64) -> Result<Vec<TargetStats>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut out = Vec::new();
    for (i, kind) in
        [Kind::Memory, Kind::Nvme, Kind::Rocks, Kind::Object, Kind::Tiered].into_iter().enumerate()
    {
        // The memory tier is cheap: give it more of the budget.
        let n = if kind == Kind::Memory { ops * 3 } else { ops };
        let subject = Subject {
            kind,
            dir: ctx.work_dir.join(format!("fuzz-ops-{i}")),
            clock: ManualClock::new(Timestamp::from_millis(1_700_000_000_000)),
            store: Arc::new(InMemory::new()),
        };
        let mut sub_rng = StdRng::seed_from_u64(rng.random());
        out.push(run_one(&rt, &subject, &mut sub_rng, n)?);
    }
    Ok(out)
}

fn run_one(
    rt: &tokio::runtime::Runtime,
    subject: &Subject,
    rng: &mut StdRng,
    ops: u64,
) -> Result<TargetStats> {
    let mut t = TargetStats::new(subject.kind.name());
    let started = Instant::now();
    let mut keys = Vec::new();
    for ns in NAMESPACES {
        for i in 0..KEY_COUNT {
            keys.push(Key::new(ns, key_bytes(i))?);
        }
    }
    let mut model = Model { state: vec![None; keys.len()], keys, next_id: 1 };
    let mut tier = Some(rt.block_on(subject.open())?);
    for i in 0..ops {
        let Some(current) = tier.clone() else { break };
        let op = rng.random_range(0..1000u32);
        t.execs += 1;
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(step(&*current, subject, &mut model, rng, op))
        }));
        match step {
            Ok(Ok(Step::Checked(n))) => t.accepted += n,
            Ok(Ok(Step::Done)) => {}
            Ok(Ok(Step::Restart)) => {
                drop(current);
                let old = tier.take().expect("present");
                rt.block_on(old.close())?;
                drop(old);
                tier = Some(rt.block_on(subject.open())?);
                if subject.kind == Kind::Memory {
                    model.state.fill(None);
                }
            }
            Ok(Err(Violation::Wrong(what))) => {
                t.wrong += 1;
                t.problem(format!("op #{i}: {what}"));
            }
            Ok(Err(Violation::Crash(what))) => {
                t.crashes += 1;
                t.problem(format!("op #{i}: {what}"));
            }
            Err(_) => {
                t.crashes += 1;
                let msg = QuietPanics::take().unwrap_or_default();
                t.problem(format!("op #{i} (code {op}): panic: {msg}"));
            }
        }
        if t.crashes + t.wrong > 20 {
            t.problem("stopped after 20 problems".into());
            break;
        }
    }
    if let Some(tier) = tier {
        rt.block_on(tier.close())?;
    }
    t.took = started.elapsed();
    Ok(t)
}

enum Step {
    Done,
    /// This many hits were checked against the model.
    Checked(u64),
    Restart,
}

enum Violation {
    Wrong(String),
    Crash(String),
}

fn unexpected(what: &str, e: &cache_core::Error) -> Violation {
    if e.kind() == ErrorKind::Internal {
        Violation::Crash(format!("{what}: internal error: {e}"))
    } else {
        Violation::Wrong(format!("{what}: unexpected error: {e}"))
    }
}

fn random_len(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..=69 => rng.random_range(12..200),
        70..=94 => rng.random_range(200..8192),
        95..=98 => rng.random_range(8192..200_000),
        // Larger than the NVMe and RocksDB budgets: refused with `Invalid` there.
        _ => rng.random_range(1_100_000..1_300_000),
    }
}

fn new_entry(
    model: &mut Model,
    rng: &mut StdRng,
    clock: &ManualClock,
    k: usize,
    small: bool,
) -> (Entry, Expect) {
    let id = model.next_id;
    model.next_id += 1;
    let len = if small { rng.random_range(12..512) } else { random_len(rng) };
    let now = clock.now();
    let expires_at = match rng.random_range(0..100) {
        0..=49 => None,
        50..=94 => Some(now.saturating_add(Duration::from_millis(rng.random_range(1..5000)))),
        // Already expired: the tier must reject it and drop the older value.
        _ => Some(Timestamp::from_millis(now.as_millis() - rng.random_range(0..2))),
    };
    let version = rng.random_bool(0.3).then(|| rng.random());
    let mut entry = Entry::new(value_for(id, k, len)).with_created_at(now);
    entry.meta.expires_at = expires_at;
    entry.meta.version = version;
    (entry, Expect { id, len, expires_at, version })
}

fn apply_put(
    model: &mut Model,
    k: usize,
    expect: Expect,
    result: cache_core::Result<PutOutcome>,
) -> Result<(), Violation> {
    match result {
        Ok(PutOutcome::Stored) => model.state[k] = Some(expect),
        Ok(PutOutcome::Rejected(_)) => model.state[k] = None,
        // Refused as too large for the tier: nothing changed, the older value may stay.
        Err(e) if e.kind() == ErrorKind::Invalid => {}
        Err(e) => return Err(unexpected("put", &e)),
    }
    Ok(())
}

async fn step(
    tier: &dyn Tier,
    subject: &Subject,
    model: &mut Model,
    rng: &mut StdRng,
    op: u32,
) -> Result<Step, Violation> {
    let clock = &subject.clock;
    let k = rng.random_range(0..model.keys.len());
    let key = model.keys[k].clone();
    match op {
        // put
        0..=339 => {
            let (entry, expect) = new_entry(model, rng, clock, k, false);
            let result = tier.put(key, entry).await;
            apply_put(model, k, expect, result)?;
            Ok(Step::Done)
        }
        // put_many over distinct keys, small values
        340..=389 => {
            let n = rng.random_range(1..6);
            let mut ks: Vec<usize> =
                (0..n).map(|_| rng.random_range(0..model.keys.len())).collect();
            ks.sort_unstable();
            ks.dedup();
            let mut items = Vec::new();
            let mut expects = Vec::new();
            for &k in &ks {
                let (entry, expect) = new_entry(model, rng, clock, k, true);
                items.push((model.keys[k].clone(), entry));
                expects.push(expect);
            }
            match tier.put_many(items).await {
                Ok(outcomes) => {
                    if outcomes.len() != ks.len() {
                        return Err(Violation::Wrong(format!(
                            "put_many of {} items returned {} outcomes",
                            ks.len(),
                            outcomes.len()
                        )));
                    }
                    for ((k, expect), outcome) in ks.into_iter().zip(expects).zip(outcomes) {
                        apply_put(model, k, expect, Ok(outcome))?;
                    }
                    Ok(Step::Done)
                }
                Err(e) => Err(unexpected("put_many", &e)),
            }
        }
        // get
        390..=689 => match tier.get(&key).await {
            Ok(None) => Ok(Step::Done),
            Ok(Some(e)) => check_hit(model, k, &e, clock.now())
                .map(|()| Step::Checked(1))
                .map_err(Violation::Wrong),
            Err(e) => Err(unexpected("get", &e)),
        },
        // get_many
        690..=739 => {
            let ks: Vec<usize> = (0..rng.random_range(1..8))
                .map(|_| rng.random_range(0..model.keys.len()))
                .collect();
            let keys: Vec<Key> = ks.iter().map(|&k| model.keys[k].clone()).collect();
            let got = tier.get_many(&keys).await.map_err(|e| unexpected("get_many", &e))?;
            if got.len() != ks.len() {
                return Err(Violation::Wrong(format!(
                    "get_many of {} keys returned {}",
                    ks.len(),
                    got.len()
                )));
            }
            let now = clock.now();
            let mut checked = 0;
            for (k, e) in ks.into_iter().zip(got) {
                if let Some(e) = e {
                    check_hit(model, k, &e, now)
                        .map_err(|w| Violation::Wrong(format!("get_many: {w}")))?;
                    checked += 1;
                }
            }
            Ok(Step::Checked(checked))
        }
        // get_record: the stored bytes must be this key's record
        740..=769 => match tier.get_record(&key).await {
            Ok(None) => Ok(Step::Done),
            Ok(Some(r)) => {
                if !r.matches(&key) {
                    return Err(Violation::Wrong(format!(
                        "get_record of key {k} returned another key's record"
                    )));
                }
                check_hit(model, k, &r.to_entry(), clock.now())
                    .map(|()| Step::Checked(1))
                    .map_err(|w| Violation::Wrong(format!("get_record: {w}")))
            }
            Err(e) => Err(unexpected("get_record", &e)),
        },
        // contains
        770..=809 => match tier.contains(&key).await {
            Ok(true) => {
                let now = clock.now();
                if model.state[k].is_some_and(|x| x.expires_at.is_none_or(|t| t > now)) {
                    Ok(Step::Done)
                } else {
                    Err(Violation::Wrong(format!(
                        "contains({k}) is true for a key the model says is gone"
                    )))
                }
            }
            Ok(false) => Ok(Step::Done),
            Err(e) => Err(unexpected("contains", &e)),
        },
        // remove
        810..=889 => {
            tier.remove(&key).await.map_err(|e| unexpected("remove", &e))?;
            model.state[k] = None;
            Ok(Step::Done)
        }
        // clear a namespace
        890..=909 => {
            let ns =
                Namespace::new(NAMESPACES[rng.random_range(0..NAMESPACES.len())]).expect("valid");
            tier.clear_namespace(&ns).await.map_err(|e| unexpected("clear_namespace", &e))?;
            for (i, key) in model.keys.iter().enumerate() {
                if key.namespace() == &ns {
                    model.state[i] = None;
                }
            }
            Ok(Step::Done)
        }
        // flush (the barrier); afterwards the budget holds
        910..=929 => {
            tier.flush().await.map_err(|e| unexpected("flush", &e))?;
            let usage = tier.usage();
            match usage.capacity {
                Some(cap) if usage.bytes_used > cap && subject.kind != Kind::Tiered => {
                    Err(Violation::Wrong(format!(
                        "after flush {} bytes are used of a {cap}-byte budget",
                        usage.bytes_used
                    )))
                }
                _ => Ok(Step::Done),
            }
        }
        // time passes
        930..=994 => {
            clock.advance(Duration::from_millis(rng.random_range(1..1500)));
            Ok(Step::Done)
        }
        // close and reopen (persistent tiers) or start empty (RAM)
        _ if subject.persistent() || subject.kind == Kind::Memory => Ok(Step::Restart),
        _ => Ok(Step::Done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let keys = (0..3).map(|i| Key::new("a", key_bytes(i)).unwrap()).collect::<Vec<_>>();
        Model { state: vec![None; keys.len()], keys, next_id: 1 }
    }

    #[test]
    fn the_model_refuses_stale_foreign_and_expired_values() {
        let mut m = model();
        let now = Timestamp::from_millis(1000);
        let e = |id, k, len| Entry::new(value_for(id, k, len));
        // Nothing written: any hit is wrong.
        assert!(check_hit(&m, 0, &e(1, 0, 20), now).is_err());
        m.state[0] = Some(Expect { id: 2, len: 20, expires_at: None, version: None });
        assert!(check_hit(&m, 0, &e(2, 0, 20), now).is_ok());
        assert!(check_hit(&m, 0, &e(1, 0, 20), now).is_err(), "an older write");
        assert!(check_hit(&m, 0, &e(2, 1, 20), now).is_err(), "another key's value");
        assert!(check_hit(&m, 0, &e(2, 0, 21), now).is_err(), "other bytes");
        m.state[0] = Some(Expect { id: 2, len: 20, expires_at: Some(now), version: None });
        let hit = e(2, 0, 20).with_expiry(now);
        assert!(check_hit(&m, 0, &hit, now).is_err(), "expired at its expiry time");
    }
}
