//! The corruption campaign: random bit flips, truncations and garbage appended to the files of
//! the NVMe tier (segments, the index snapshot), the RocksDB tier (stored records through the
//! raw database, and SST files), and stored objects (a local directory, and the S3 server when
//! its environment is set).
//!
//! Each trial fills a fresh subject with self-checking values (see [`crate::crash::value`]),
//! damages it, reopens it and reads every key. A damaged record must be a miss or a
//! `Corrupted` error (detected); any value served must be exactly the one written for its key
//! (else it is wrong); undamaged records that became unreadable are reported as collateral.
//! Every trial runs under `catch_unwind`, and a panic hook counts panics on any thread.

use std::{
    collections::{HashMap, HashSet},
    fs::OpenOptions,
    os::unix::fs::FileExt,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};
use bytes::Bytes;
use cache_core::{Entry, ErrorKind, Key, Namespace, RecordHeader, Tier};
use cache_l2_nvme::NvmeTierBuilder;
use cache_l2_rocks::{RocksTier, StorageKey};
use cache_l3_object::{ObjectTier, ObjectTierBuilder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

use crate::{
    Ctx,
    crash::value,
    report::{Section, Table},
};

/// Records damaged per trial (for the kinds that pick records).
const DAMAGE_PER_TRIAL: usize = 6;
const SEGMENT: u64 = 256 << 10;
const BUDGET: u64 = 64 << 20;
const NVME_SEGMENT_HEADER: usize = 64;
/// Magic and length of an NVMe sync point (FORMAT.md).
const NVME_SYNC_POINT_MAGIC: &[u8] = b"TCSP";
const NVME_SYNC_POINT_LEN: usize = 32;

/// What the reads of one trial found.
#[derive(Debug, Default, Clone)]
struct Tally {
    trials: u64,
    damaged: u64,
    detected: u64,
    wrong: u64,
    /// Damaged records served intact (damage the tier could not see).
    undetected: u64,
    /// Undamaged records that read as a miss or an error.
    collateral: u64,
    /// Errors other than `Corrupted`.
    other_errors: u64,
    /// Opens refused with a clear `Corrupted` error (every record counts as detected or lost).
    refused_opens: u64,
    /// Opens refused with any other error.
    bad_opens: u64,
    counted: u64,
    panics: u64,
    problems: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.trials += o.trials;
        self.damaged += o.damaged;
        self.detected += o.detected;
        self.wrong += o.wrong;
        self.undetected += o.undetected;
        self.collateral += o.collateral;
        self.other_errors += o.other_errors;
        self.refused_opens += o.refused_opens;
        self.bad_opens += o.bad_opens;
        self.counted += o.counted;
        self.panics += o.panics;
        for p in o.problems {
            if self.problems.len() < 5 {
                self.problems.push(p);
            }
        }
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn key(k: u32) -> Key {
    Key::new("corrupt", format!("key-{k}")).expect("a valid key")
}

fn expected_value(k: u32, rng_len: usize) -> Bytes {
    value::encode(k, u64::from(k) + 1, 0, rng_len)
}

/// Reads every key of `expected` and classifies the result.
async fn read_all(
    tier: &dyn Tier,
    expected: &HashMap<u32, Bytes>,
    damaged: &HashSet<u32>,
) -> Tally {
    let mut t = Tally { damaged: damaged.len() as u64, ..Tally::default() };
    let mut keys: Vec<u32> = expected.keys().copied().collect();
    keys.sort_unstable();
    for k in keys {
        let hit = damaged.contains(&k);
        match tier.get(&key(k)).await {
            Ok(Some(e)) if e.value == expected[&k] => {
                if hit {
                    t.undetected += 1;
                    t.problems.push(format!("damaged key {k} was served intact"));
                }
            }
            Ok(Some(e)) => {
                t.wrong += 1;
                t.problems.push(format!(
                    "key {k}: wrong value served ({} bytes, decodes as {:?})",
                    e.value.len(),
                    value::decode(&e.value)
                ));
            }
            Ok(None) => {
                if hit {
                    t.detected += 1;
                } else {
                    t.collateral += 1;
                }
            }
            Err(e) if e.kind() == ErrorKind::Corrupted => {
                if hit {
                    t.detected += 1;
                } else {
                    t.collateral += 1;
                }
            }
            Err(e) => {
                t.other_errors += 1;
                t.problems.push(format!("key {k}: {e}"));
            }
        }
    }
    let stats = tier.stats();
    t.counted += stats.corrupted + stats.errors_of(ErrorKind::Corrupted);
    t
}

/// A refused open: every damaged record counts as detected, every other one as collateral.
fn refused(e: &cache_core::Error, expected: usize, damaged: &HashSet<u32>) -> Tally {
    let mut t = Tally { damaged: damaged.len() as u64, ..Tally::default() };
    if e.kind() == ErrorKind::Corrupted {
        t.refused_opens = 1;
        t.detected = damaged.len() as u64;
        t.collateral = (expected - damaged.len()) as u64;
        t.counted = 1;
    } else {
        t.bad_opens = 1;
        t.problems.push(format!("open failed without saying corrupted: {e}"));
    }
    t
}

fn flip_bit(path: &Path, at: u64, rng: &mut StdRng) -> Result<()> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8];
    f.read_exact_at(&mut b, at)?;
    b[0] ^= 1 << rng.random_range(0..8);
    f.write_all_at(&b, at)?;
    Ok(())
}

/// Between 1 and `max` random bytes.
fn garbage(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.random_range(1..=max.max(1));
    (0..len).map(|_| rng.random()).collect()
}

fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    let f = OpenOptions::new().append(true).open(path)?;
    let len = f.metadata()?.len();
    f.write_all_at(bytes, len)?;
    Ok(())
}

/// The ways a subject is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// One random bit flipped in each of a few records.
    BitFlip,
    /// A file (or a stored record) cut short at a random point.
    Truncate,
    /// Random bytes appended to a file (or a stored record).
    Append,
    /// Random bytes written right after the last record of the NVMe log (a torn tail).
    TailGarbage,
    /// A bit flipped in the NVMe index snapshot.
    SnapshotFlip,
}

impl Damage {
    fn name(self) -> &'static str {
        match self {
            Damage::BitFlip => "bit flips",
            Damage::Truncate => "truncation",
            Damage::Append => "garbage appended",
            Damage::TailGarbage => "garbage after the log tail",
            Damage::SnapshotFlip => "bit flip in the index snapshot",
        }
    }
}

/// Runs the campaign.
pub(crate) fn run(ctx: &Ctx) -> Result<Section> {
    let trials: u64 = if ctx.quick { 3 } else { 25 };
    let entries: u32 = if ctx.quick { 300 } else { 1000 };
    // Every object is a file or a request of its own: fewer per trial.
    let object_entries = entries / 5;
    let mut s = Section::new(
        "corruption",
        format!(
            "random damage to stored data, {trials} trials per subject and kind, {entries} \
             entries per trial on disk tiers and {object_entries} on object stores"
        ),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string();
        }
    }));
    let mut rows: Vec<(String, Damage, Tally)> = Vec::new();
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ 0xc0_44_0e);
    let s3 = s3_store();
    let mut subjects: Vec<Subject> =
        vec![Subject::Nvme, Subject::Rocks, Subject::RocksSst, Subject::Local];
    match &s3 {
        Ok(_) => subjects.push(Subject::S3),
        Err(why) => s.note(format!("S3 objects skipped: {why}")),
    }
    for subject in subjects {
        for damage in subject.damages() {
            let mut total = Tally::default();
            for trial in 0..trials {
                let dir = ctx.work_dir.join(format!("corrupt-{}-{trial}", subject.slug()));
                let seed: u64 = rng.random();
                let before = PANICS.load(Ordering::SeqCst);
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let n = if subject.is_object() { object_entries } else { entries };
                    rt.block_on(run_trial(subject, damage, &dir, n, seed, s3.as_ref().ok()))
                }));
                let mut t = match result {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        let mut t = Tally::default();
                        t.problems.push(format!("trial {trial}: {e:#}"));
                        t.bad_opens += 1;
                        t
                    }
                    Err(_) => Tally::default(),
                };
                t.trials = 1;
                t.panics = PANICS.load(Ordering::SeqCst) - before;
                if t.panics > 0 {
                    let last = LAST_PANIC.lock().map(|l| l.clone()).unwrap_or_default();
                    t.problems.push(format!("trial {trial}: panic: {last}"));
                }
                total.add(t);
                std::fs::remove_dir_all(&dir).ok();
            }
            rows.push((subject.name().to_owned(), damage, total));
        }
    }
    std::panic::set_hook(previous_hook);
    let mut table = Table::new([
        "subject",
        "damage",
        "trials",
        "records damaged",
        "detected",
        "wrong values served",
        "undamaged records lost",
        "opens refused (Corrupted)",
        "counted corrupt",
        "other errors",
        "panics",
    ]);
    for (subject, damage, t) in &rows {
        let what = format!("{subject}, {}", damage.name());
        table.row(vec![
            subject.clone(),
            damage.name().to_owned(),
            t.trials.to_string(),
            t.damaged.to_string(),
            t.detected.to_string(),
            t.wrong.to_string(),
            t.collateral.to_string(),
            t.refused_opens.to_string(),
            t.counted.to_string(),
            (t.other_errors + t.bad_opens).to_string(),
            t.panics.to_string(),
        ]);
        s.check(t.wrong == 0, format!("{what}: {} wrong values served", t.wrong));
        s.check(
            t.detected == t.damaged && t.undetected == 0,
            format!("{what}: {} of {} damaged records detected", t.detected, t.damaged),
        );
        s.check(t.panics == 0, format!("{what}: {} panics", t.panics));
        s.check(
            t.other_errors + t.bad_opens == 0,
            format!("{what}: {} errors other than Corrupted", t.other_errors + t.bad_opens),
        );
        s.check(
            t.detected == 0 || t.counted > 0,
            format!("{what}: damage detected but never counted in the tier's stats"),
        );
        for p in &t.problems {
            s.check(false, format!("{what}: {}", crate::crash::scrub(ctx, p)));
        }
    }
    s.tables.push(table);
    s.note(
        "Detected: the damaged record read as a miss or a `Corrupted` error. Counted corrupt: \
         the tier's `corrupted` counter plus `Corrupted` errors (plus the NVMe recovery's \
         corrupt records and removed segments), summed over trials. Undamaged records lost: \
         records the damage made unreadable although their own bytes are intact (the rest of a \
         segment after a damaged record header, the other records of a damaged RocksDB block, a \
         database that refuses to open).",
    );
    s.note(
        "NVMe trials alternate a clean close (index snapshot) and a drop (segment scan) before \
         the damage. RocksDB records are damaged through the raw database; SST damage hits \
         the bytes of stored values (SSTs are uncompressed) after a full compaction.",
    );
    Ok(s)
}

/// What is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Nvme,
    Rocks,
    RocksSst,
    Local,
    S3,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Nvme => "nvme segments",
            Subject::Rocks => "rocks records",
            Subject::RocksSst => "rocks SST files",
            Subject::Local => "objects (local directory)",
            Subject::S3 => "objects (S3 server)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Subject::Nvme => "nvme",
            Subject::Rocks => "rocks",
            Subject::RocksSst => "sst",
            Subject::Local => "local",
            Subject::S3 => "s3",
        }
    }

    fn is_object(self) -> bool {
        matches!(self, Subject::Local | Subject::S3)
    }

    fn damages(self) -> Vec<Damage> {
        let mut v = vec![Damage::BitFlip, Damage::Truncate, Damage::Append];
        if self == Subject::Nvme {
            v.extend([Damage::TailGarbage, Damage::SnapshotFlip]);
        }
        v
    }
}

/// An S3 client from the environment `cargo xtask s3 env` prints, or why there is none.
fn s3_store() -> Result<Arc<dyn ObjectStore>, String> {
    let env = cache_l3_object::S3Env::from_env()
        .map_err(|e| format!("{e} (run through `cargo xtask torture`)"))?;
    let store = env.builder().build().map_err(|e| format!("cannot build an S3 client: {e}"))?;
    Ok(Arc::new(store))
}

fn values(entries: u32, rng: &mut StdRng) -> HashMap<u32, Bytes> {
    (0..entries).map(|k| (k, expected_value(k, rng.random_range(value::MIN_LEN..1500)))).collect()
}

async fn run_trial(
    subject: Subject,
    damage: Damage,
    dir: &Path,
    entries: u32,
    seed: u64,
    s3: Option<&Arc<dyn ObjectStore>>,
) -> Result<Tally> {
    let mut rng = StdRng::seed_from_u64(seed);
    let expected = values(entries, &mut rng);
    match subject {
        Subject::Nvme => nvme_trial(damage, dir, &expected, &mut rng).await,
        Subject::Rocks => rocks_record_trial(damage, dir, &expected, &mut rng).await,
        Subject::RocksSst => rocks_sst_trial(damage, dir, &expected, &mut rng).await,
        Subject::Local => {
            let tier = ObjectTierBuilder::local(dir).build().await?;
            object_trial(damage, Raw::Fs(dir.to_path_buf()), tier, &expected, &mut rng).await
        }
        Subject::S3 => {
            let store = s3.context("no S3 store")?.clone();
            let prefix = format!("torture-corruption-{seed:016x}");
            let tier = ObjectTierBuilder::new(store.clone()).prefix(prefix).build().await?;
            let t =
                object_trial(damage, Raw::Store(store), tier.clone(), &expected, &mut rng).await;
            // Leave nothing behind on the shared server.
            tier.clear_namespace(&Namespace::new("corrupt")?).await?;
            t
        }
    }
}

/// One NVMe record in a segment file.
struct SegRecord {
    path: PathBuf,
    start: usize,
    len: usize,
    key: u32,
}

fn nvme_records(dir: &Path) -> Result<Vec<SegRecord>> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let mut out = Vec::new();
    for path in segs {
        let data = std::fs::read(&path)?;
        let mut at = NVME_SEGMENT_HEADER;
        loop {
            if data.get(at..at + 4) == Some(NVME_SYNC_POINT_MAGIC) {
                // A sync point between records (segment format 2; FORMAT.md).
                at += NVME_SYNC_POINT_LEN;
                continue;
            }
            let Ok(h) = RecordHeader::parse(data.get(at..).unwrap_or_default()) else { break };
            let Some(len) = h.total_len().map(|l| l as usize) else { break };
            if at + len > data.len() {
                break;
            }
            let v = h.value_len as usize;
            if let Some(d) = value::decode(&data[at + len - v..at + len]) {
                out.push(SegRecord { path: path.clone(), start: at, len, key: d.key });
            }
            at += len;
        }
    }
    Ok(out)
}

async fn nvme_trial(
    damage: Damage,
    dir: &Path,
    expected: &HashMap<u32, Bytes>,
    rng: &mut StdRng,
) -> Result<Tally> {
    let open = || NvmeTierBuilder::new(dir, BUDGET).segment_size(SEGMENT).open();
    let tier = open().await?;
    for (k, v) in expected {
        anyhow::ensure!(tier.put(key(*k), Entry::new(v.clone())).await?.is_stored(), "put {k}");
    }
    // The snapshot flip needs a snapshot; the others alternate the two recovery paths.
    if damage == Damage::SnapshotFlip || rng.random_bool(0.5) {
        tier.close().await?;
    } else {
        tier.flush().await?;
    }
    drop(tier);
    let records = nvme_records(dir)?;
    anyhow::ensure!(records.len() == expected.len(), "found {} records", records.len());
    let mut damaged = HashSet::new();
    match damage {
        Damage::BitFlip => {
            for r in records.choose_multiple(rng, DAMAGE_PER_TRIAL) {
                let at = r.start + rng.random_range(0..r.len);
                flip_bit(&r.path, at as u64, rng)?;
                damaged.insert(r.key);
            }
        }
        Damage::Truncate => {
            let victim = records.choose(rng).context("no records")?;
            let in_seg: Vec<&SegRecord> =
                records.iter().filter(|r| r.path == victim.path).collect();
            let end = in_seg.iter().map(|r| r.start + r.len).max().unwrap_or(0);
            let cut = rng.random_range(NVME_SEGMENT_HEADER..end);
            OpenOptions::new().write(true).open(&victim.path)?.set_len(cut as u64)?;
            damaged.extend(in_seg.iter().filter(|r| r.start + r.len > cut).map(|r| r.key));
        }
        Damage::Append => {
            let victim = records.choose(rng).context("no records")?;
            append(&victim.path, &garbage(rng, 4096))?;
        }
        Damage::TailGarbage => {
            let last = records.iter().max_by_key(|r| (&r.path, r.start)).context("no records")?;
            let f = OpenOptions::new().write(true).open(&last.path)?;
            let room = f.metadata()?.len() as usize - (last.start + last.len);
            let g = garbage(rng, room.min(2048));
            f.write_all_at(&g, (last.start + last.len) as u64)?;
        }
        Damage::SnapshotFlip => {
            let snap = dir.join("index.snap");
            let len = std::fs::metadata(&snap).context("no index snapshot after close")?.len();
            flip_bit(&snap, rng.random_range(0..len), rng)?;
        }
    }
    let tier = match open().await {
        Ok(t) => t,
        Err(e) => return Ok(refused(&e, expected.len(), &damaged)),
    };
    let mut t = read_all(&tier, expected, &damaged).await;
    let report = tier.recovery_report();
    // Damage past the last sync point that survived it is taken for an interrupted write
    // (torn): detected and reported all the same.
    t.counted += report.corrupt_records + report.torn_records + report.bad_segments;
    tier.close().await?;
    Ok(t)
}

async fn open_rocks(dir: &Path) -> cache_core::Result<RocksTier> {
    RocksTier::builder(dir, BUDGET).block_cache_bytes(1 << 20).open().await
}

async fn fill_rocks(dir: &Path, expected: &HashMap<u32, Bytes>, compact: bool) -> Result<()> {
    let tier = open_rocks(dir).await?;
    let items: Vec<(Key, Entry)> =
        expected.iter().map(|(k, v)| (key(*k), Entry::new(v.clone()))).collect();
    let outcomes = tier.put_many(items).await?;
    anyhow::ensure!(outcomes.iter().all(|o| o.is_stored()), "put_many rejected some");
    if compact {
        tier.compact().await?;
    }
    tier.close().await?;
    Ok(())
}

async fn rocks_record_trial(
    damage: Damage,
    dir: &Path,
    expected: &HashMap<u32, Bytes>,
    rng: &mut StdRng,
) -> Result<Tally> {
    fill_rocks(dir, expected, rng.random_bool(0.5)).await?;
    let mut keys: Vec<u32> = expected.keys().copied().collect();
    keys.sort_unstable();
    let victims: Vec<u32> = keys.choose_multiple(rng, DAMAGE_PER_TRIAL).copied().collect();
    {
        let options = RocksTier::builder(dir, BUDGET).rocksdb_options();
        let db = rocksdb::DB::open(&options, dir)?;
        for &k in &victims {
            let sk = StorageKey::new(&key(k));
            let mut v = db.get(sk)?.context("a stored record")?;
            match damage {
                Damage::BitFlip => {
                    let at = rng.random_range(0..v.len());
                    v[at] ^= 1 << rng.random_range(0..8);
                }
                Damage::Truncate => v.truncate(rng.random_range(0..v.len())),
                _ => v.extend(garbage(rng, 256)),
            }
            db.put(sk, v)?;
        }
        db.flush()?;
    }
    let damaged: HashSet<u32> = victims.into_iter().collect();
    let tier = match open_rocks(dir).await {
        Ok(t) => t,
        Err(e) => return Ok(refused(&e, expected.len(), &damaged)),
    };
    // Records the open found unparseable are dropped and counted then; the rest on read.
    let t = read_all(&tier, expected, &damaged).await;
    tier.close().await?;
    Ok(t)
}

async fn rocks_sst_trial(
    damage: Damage,
    dir: &Path,
    expected: &HashMap<u32, Bytes>,
    rng: &mut StdRng,
) -> Result<Tally> {
    fill_rocks(dir, expected, true).await?;
    let mut ssts: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    ssts.sort();
    let sst = ssts.choose(rng).context("no SST file after compaction")?.clone();
    let data = std::fs::read(&sst)?;
    let found = value::find_all(&data);
    anyhow::ensure!(!found.is_empty(), "no values found in {}", sst.display());
    let mut damaged = HashSet::new();
    match damage {
        Damage::BitFlip => {
            for (at, d) in found.choose_multiple(rng, DAMAGE_PER_TRIAL) {
                let len = expected[&d.key].len();
                flip_bit(&sst, (at + rng.random_range(0..len)) as u64, rng)?;
                damaged.insert(d.key);
            }
        }
        Damage::Truncate => {
            let (at, _) = found.choose(rng).context("a value")?;
            OpenOptions::new().write(true).open(&sst)?.set_len(*at as u64)?;
            // Every record of the file is gone (its index and footer are at the end).
            damaged.extend(found.iter().map(|(_, d)| d.key));
        }
        _ => append(&sst, &garbage(rng, 4096))?,
    }
    let tier = match open_rocks(dir).await {
        Ok(t) => t,
        Err(e) => return Ok(refused(&e, expected.len(), &damaged)),
    };
    let t = read_all(&tier, expected, &damaged).await;
    tier.close().await?;
    Ok(t)
}

/// Raw access to stored objects, to damage them.
enum Raw {
    /// The local directory the tier stores into.
    Fs(PathBuf),
    /// The object store itself.
    Store(Arc<dyn ObjectStore>),
}

impl Raw {
    async fn read(&self, path: &object_store::path::Path) -> Result<Vec<u8>> {
        Ok(match self {
            Raw::Fs(root) => std::fs::read(root.join(path.as_ref()))?,
            Raw::Store(store) => store.get(path).await?.bytes().await?.to_vec(),
        })
    }

    async fn write(&self, path: &object_store::path::Path, bytes: Vec<u8>) -> Result<()> {
        match self {
            Raw::Fs(root) => std::fs::write(root.join(path.as_ref()), bytes)?,
            Raw::Store(store) => {
                store.put(path, PutPayload::from(bytes)).await?;
            }
        }
        Ok(())
    }
}

async fn object_trial(
    damage: Damage,
    raw: Raw,
    tier: ObjectTier,
    expected: &HashMap<u32, Bytes>,
    rng: &mut StdRng,
) -> Result<Tally> {
    for (k, v) in expected {
        anyhow::ensure!(tier.put(key(*k), Entry::new(v.clone())).await?.is_stored(), "put {k}");
    }
    let mut keys: Vec<u32> = expected.keys().copied().collect();
    keys.sort_unstable();
    let victims: Vec<u32> = keys.choose_multiple(rng, DAMAGE_PER_TRIAL).copied().collect();
    for &k in &victims {
        let path = tier.object_path(&key(k));
        let mut v = raw.read(&path).await?;
        match damage {
            Damage::BitFlip => {
                let at = rng.random_range(0..v.len());
                v[at] ^= 1 << rng.random_range(0..8);
            }
            Damage::Truncate => v.truncate(rng.random_range(0..v.len())),
            _ => v.extend(garbage(rng, 256)),
        }
        raw.write(&path, v).await?;
    }
    let damaged: HashSet<u32> = victims.into_iter().collect();
    let t = read_all(&tier, expected, &damaged).await;
    Ok(t)
}
