//! The crash campaign: a child process drives a subject (the NVMe tier, the RocksDB tier, also
//! with a simulated power cut of its write-ahead log, the tiered cache of a memory tier over an
//! NVMe tier, or the object tier on a local directory) with rounds of puts, overwrites, removes
//! and TTL puts, each round ended by the sync barrier (`flush`), and prints `ack <round>` after
//! each barrier. The parent kills it with SIGKILL at a random moment (one kill in ten during
//! start-up and recovery, before the child reports ready), reopens the directory itself and reads
//! every key.
//!
//! The parent recomputes every round's operations from the seed, so it knows, for every key, the
//! state after the last acknowledged round and the operation of the one round that may have been
//! in flight. A value read must be exactly one of those two (its bytes name key and version and
//! carry a checksum, see [`value`]); anything else is a wrong or corrupt value. An absent key is
//! lost when the acknowledged state has an unexpired value and the in-flight round does not
//! remove or expire it. Nothing is evicted: the directory is replaced before its files reach a
//! quarter of the budget, and the parent checks the bound.

pub(crate) mod value;

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Weak, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use cache_core::{Compression, Entry, Key, PutOutcome, Rejection, Tier, Timestamp, system_clock};
use cache_l1::MemoryTier;
use cache_l2_nvme::{Durability as NvmeDurability, NvmeTier, NvmeTierBuilder};
use cache_l2_rocks::{Durability as RocksDurability, RocksTier};
use cache_l3_object::ObjectTierBuilder;
use cache_tiered::{TierOptions, TierWrite, TieredCache, WritePolicy};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::{
    Ctx,
    report::{Section, Table},
};

/// Keys the workload touches.
pub(crate) const KEYS: u32 = 128;
/// Distinct keys written per round (one barrier per round).
const OPS_PER_ROUND: usize = 12;
/// A child stops writing after this many rounds (and waits to be killed), which bounds what one
/// child adds to the directory.
pub(crate) const MAX_ROUNDS: u64 = 300;
/// Largest value written.
const MAX_VALUE: usize = 1500;
/// The budget of the NVMe tiers and of the RocksDB tier.
pub(crate) const BUDGET: u64 = 128 << 20;
/// NVMe segment size (small, so every open starts a cheap new segment).
const SEGMENT: u64 = 256 << 10;
/// A fresh directory is used once the files of the current one exceed this (a quarter of the
/// budget), so neither tier ever has to evict.
const ROTATE_BYTES: u64 = BUDGET / 4;
/// The memory tier's budget in the tiered subject (far above the live data).
const L1_BUDGET: u64 = 64 << 20;

/// What is crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Nvme,
    Rocks,
    /// The RocksDB tier, with a power cut simulated after the kill: every write-ahead log file
    /// is cut back to the length its last completed sync covered (see [`cut_wal`]).
    RocksPower,
    Tiered,
    /// The object tier on a local directory (object_store's `LocalFileSystem`).
    Object,
}

impl Subject {
    const ALL: [Subject; 5] =
        [Subject::Nvme, Subject::Rocks, Subject::RocksPower, Subject::Tiered, Subject::Object];

    fn name(self) -> &'static str {
        match self {
            Subject::Nvme => "nvme",
            Subject::Rocks => "rocks",
            Subject::RocksPower => "rocks-power-cut",
            Subject::Tiered => "tiered",
            Subject::Object => "object-local",
        }
    }

    fn is_rocks(self) -> bool {
        matches!(self, Subject::Rocks | Subject::RocksPower)
    }

    fn parse(s: &str) -> Result<Subject> {
        Subject::ALL.into_iter().find(|x| x.name() == s).with_context(|| format!("subject {s}"))
    }

    /// The configuration used by the child in `mode` (rotating through durability levels and,
    /// for the tiered cache, write policies).
    pub(crate) fn mode_name(self, mode: u64) -> &'static str {
        match (self, mode % 3) {
            (Subject::Nvme, 0) => "durability none",
            (Subject::Nvme, 1) => "durability periodic 2 ms",
            (Subject::Nvme, _) => "durability every write",
            (Subject::Rocks, 0) => "no WAL",
            (Subject::Rocks, 1) => "WAL",
            (Subject::Rocks, _) => "WAL synced",
            (Subject::RocksPower, 0) => "no WAL, power cut",
            (Subject::RocksPower, 1) => "WAL, power cut",
            (Subject::RocksPower, _) => "WAL synced, power cut",
            (Subject::Tiered, 0) => "L2 write-through, periodic",
            (Subject::Tiered, 1) => "L2 write-behind, periodic",
            (Subject::Tiered, _) => "L2 write-behind, durability none",
            (Subject::Object, 0) => "local fsync",
            (Subject::Object, 1) => "no fsync",
            (Subject::Object, _) => "local fsync, LZ4",
        }
    }
}

pub(crate) fn nvme_builder(dir: &Path, durability: NvmeDurability) -> NvmeTierBuilder {
    NvmeTierBuilder::new(dir, BUDGET).segment_size(SEGMENT).durability(durability)
}

/// A put that must be stored, or rejected only because the entry had already expired (the key
/// then reads absent, as the model expects). In the tiered cache, every tier must have stored or
/// queued it, so a full write-behind queue cannot pass for a loss.
pub(crate) async fn put(
    tier: &dyn Tier,
    tiered: Option<&TieredCache>,
    k: u32,
    entry: Entry,
) -> Result<()> {
    let ok = |w: &TierWrite| {
        matches!(w, TierWrite::Stored | TierWrite::Deferred)
            || *w == TierWrite::Rejected(Rejection::Expired)
    };
    if let Some(cache) = tiered {
        let report = cache.put_report(key(k), entry).await.with_context(|| format!("put {k}"))?;
        if !report.tiers.iter().all(|(_, w)| ok(w)) {
            bail!("put {k}: not stored everywhere: {report:?}");
        }
    } else {
        match tier.put(key(k), entry).await.with_context(|| format!("put {k}"))? {
            PutOutcome::Stored | PutOutcome::Rejected(Rejection::Expired) => {}
            other => bail!("put {k}: {other:?}"),
        }
    }
    Ok(())
}

/// Opens `subject` in `dir` as the child in `mode` configures it.
async fn open_with_handle(subject: Subject, dir: &Path, mode: u64) -> Result<Opened> {
    let (mut handle, mut l2_handle) = (None, None);
    let periodic = NvmeDurability::Periodic(Duration::from_millis(2));
    let tier: Arc<dyn Tier> = match subject {
        Subject::Nvme => {
            let durability =
                [NvmeDurability::None, periodic, NvmeDurability::EveryWrite][(mode % 3) as usize];
            Arc::new(nvme_builder(dir, durability).open().await?)
        }
        Subject::Rocks | Subject::RocksPower => {
            // No write-ahead log, the log unsynced, the log synced per write.
            let (log, durability) = [
                (false, RocksDurability::None),
                (true, RocksDurability::None),
                (true, RocksDurability::EveryWrite),
            ][(mode % 3) as usize];
            Arc::new(
                RocksTier::builder(dir, BUDGET)
                    .write_ahead_log(log)
                    .durability(durability)
                    .write_buffer_bytes(1 << 20)
                    .block_cache_bytes(1 << 20)
                    .open()
                    .await?,
            )
        }
        Subject::Object => {
            std::fs::create_dir_all(dir)?;
            let builder = ObjectTierBuilder::local(dir).local_fsync(mode % 3 != 1);
            let builder =
                if mode % 3 == 2 { builder.compression(Compression::Lz4) } else { builder };
            Arc::new(builder.build().await?)
        }
        Subject::Tiered => {
            let (durability, write) = match mode % 3 {
                0 => (periodic, WritePolicy::Through),
                1 => (periodic, WritePolicy::behind()),
                _ => (NvmeDurability::None, WritePolicy::behind()),
            };
            let l2 = Arc::new(nvme_builder(dir, durability).open().await?);
            l2_handle = Some(Arc::downgrade(&l2));
            let cache = TieredCache::builder()
                .tier(MemoryTier::builder(L1_BUDGET).build())
                .tier(TierOptions::from_arc(l2).write(write))
                .build()?;
            handle = Some(cache.clone());
            Arc::new(cache)
        }
    };
    Ok(Opened { tier, tiered: handle, l2: l2_handle })
}

/// An opened subject.
struct Opened {
    tier: Arc<dyn Tier>,
    /// The tiered cache's own handle (for `put_report`).
    tiered: Option<TieredCache>,
    /// The tiered cache's NVMe tier, to wait until a dropped cache has released it.
    l2: Option<Weak<NvmeTier>>,
}

/// One planned operation on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Put `version` (expiring at `expires_ms`, 0 for never), `len` bytes.
    Put { version: u64, expires_ms: u64, len: usize },
    /// Remove the key.
    Remove,
}

/// What a key holds: `None` (absent) or a version and its expiry (0 = never).
pub(crate) type State = Option<(u64, u64)>;

impl Op {
    pub(crate) fn state(self) -> State {
        match self {
            Op::Put { version, expires_ms, .. } => Some((version, expires_ms)),
            Op::Remove => None,
        }
    }
}

pub(crate) fn key(k: u32) -> Key {
    Key::new("crash", format!("key-{k}")).expect("a valid key")
}

/// The operations of `round`, on distinct keys, derived from the seed. `base_ms` is the time the
/// child was started (TTL puts expire relative to it, so the parent knows their expiry).
pub(crate) fn round_ops(seed: u64, round: u64, base_ms: u64) -> Vec<(u32, Op)> {
    let mut rng = StdRng::seed_from_u64(seed ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut keys: Vec<u32> = (0..KEYS).collect();
    keys.shuffle(&mut rng);
    keys.truncate(OPS_PER_ROUND);
    keys.into_iter()
        .enumerate()
        .map(|(i, k)| {
            let version = round * OPS_PER_ROUND as u64 + i as u64 + 1;
            let len = rng.random_range(value::MIN_LEN..MAX_VALUE);
            let op = match rng.random_range(0..100) {
                0..12 => Op::Remove,
                // Short TTLs: some expire while the child runs, some before the parent reads.
                12..20 => Op::Put { version, expires_ms: base_ms + rng.random_range(30..600), len },
                20..35 => Op::Put { version, expires_ms: base_ms + 3_600_000, len },
                _ => Op::Put { version, expires_ms: 0, len },
            };
            (k, op)
        })
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    system_clock().now().as_millis()
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// The child process: `crash-child SUBJECT DIR START_ROUND SEED BASE_MS MODE`.
pub(crate) fn child_main(args: &[String]) -> Result<()> {
    let [subject, dir, start, seed, base_ms, mode] = args else {
        bail!("usage: crash-child SUBJECT DIR START_ROUND SEED BASE_MS MODE");
    };
    let subject = Subject::parse(subject)?;
    let (start, seed, base_ms, mode): (u64, u64, u64, u64) =
        (start.parse()?, seed.parse()?, base_ms.parse()?, mode.parse()?);
    let dir = PathBuf::from(dir);
    runtime()?.block_on(async move {
        let Opened { tier, tiered, .. } = open_with_handle(subject, &dir, mode).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
        for round in start..start + MAX_ROUNDS {
            for (k, op) in round_ops(seed, round, base_ms) {
                match op {
                    Op::Put { version, expires_ms, len } => {
                        let mut entry = Entry::new(value::encode(k, version, expires_ms, len))
                            .with_version(version);
                        if expires_ms != 0 {
                            entry = entry.with_expiry(Timestamp::from_millis(expires_ms));
                        }
                        put(&*tier, tiered.as_ref(), k, entry).await?;
                    }
                    Op::Remove => {
                        tier.remove(&key(k)).await.with_context(|| format!("remove {k}"))?
                    }
                }
            }
            tier.flush().await.context("flush")?;
            if subject == Subject::RocksPower {
                // What that barrier's sync covered: the log files as they are now.
                for (name, len) in wal_files(&dir)? {
                    writeln!(out, "wal {name} {len}")?;
                }
            }
            writeln!(out, "ack {round}")?;
            out.flush()?;
        }
        writeln!(out, "done")?;
        out.flush()?;
        // Wait to be killed (a parent that has gone away leaves no process behind for long).
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    })
}

/// Figures of one subject.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) kills: u64,
    pub(crate) early_kills: u64,
    pub(crate) acked_rounds: u64,
    pub(crate) keys_checked: u64,
    pub(crate) expected_present: u64,
    pub(crate) in_flight_seen: u64,
    pub(crate) wrong: u64,
    pub(crate) corrupt: u64,
    pub(crate) lost: u64,
    pub(crate) read_errors: u64,
    pub(crate) reopen: Vec<Duration>,
    pub(crate) dirs: u64,
    pub(crate) max_dir_bytes: u64,
    pub(crate) problems: Vec<String>,
    /// Records the reopened tier counted corrupt are expected (torn sectors after a power cut),
    /// not a problem; they are summed in `counted_corrupt`.
    pub(crate) corrupt_expected: bool,
    pub(crate) counted_corrupt: u64,
    /// Write-ahead log bytes a simulated power cut removed (the RocksDB power-cut subject).
    pub(crate) wal_bytes_cut: u64,
    /// Log files cut.
    pub(crate) wal_files_cut: u64,
    /// Cuts that left a torn sector (zeros) after the synced end.
    pub(crate) wal_torn: u64,
}

impl Figures {
    pub(crate) fn problem(&mut self, what: String) {
        if self.problems.len() < 10 {
            self.problems.push(what);
        }
    }
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `text` without this machine's path to the scratch directory (reports go into the
/// repository).
pub(crate) fn scrub(ctx: &Ctx, text: &str) -> String {
    text.replace(&ctx.work_dir.display().to_string(), "<work>")
}

/// Runs the campaign.
pub(crate) fn run(ctx: &Ctx) -> Result<Section> {
    let kills: u64 = if ctx.quick { 20 } else { 1000 };
    let mut s = Section::new(
        "crash",
        format!(
            "SIGKILL of a child process driving each subject with puts, overwrites, removes and \
             TTL puts ({OPS_PER_ROUND} keys of {KEYS} per round, one `flush` barrier per round); \
             {kills} kills per subject"
        ),
    );
    // Another build may replace the binary while the campaign runs: spawn a private copy.
    let exe = ctx.work_dir.join("cache-torture-crash-child");
    std::fs::copy(&ctx.exe, &exe)
        .with_context(|| format!("copying {} to {}", ctx.exe.display(), exe.display()))?;
    let rt = runtime()?;
    let mut table = Table::new([
        "subject",
        "kills",
        "of which during start-up",
        "acked rounds",
        "keys checked",
        "acked entries expected",
        "in-flight values seen",
        "wrong or corrupt values served",
        "acked entries lost",
        "read errors",
        "reopen median",
        "reopen max",
    ]);
    for (i, subject) in Subject::ALL.into_iter().enumerate() {
        let seed = ctx.seed.wrapping_add(i as u64);
        let f = campaign(ctx, &rt, &exe, subject, kills, seed)?;
        let mut reopen = f.reopen.clone();
        reopen.sort();
        table.row(vec![
            subject.name().to_owned(),
            f.kills.to_string(),
            f.early_kills.to_string(),
            f.acked_rounds.to_string(),
            f.keys_checked.to_string(),
            f.expected_present.to_string(),
            f.in_flight_seen.to_string(),
            (f.wrong + f.corrupt).to_string(),
            f.lost.to_string(),
            f.read_errors.to_string(),
            format!("{:.1} ms", percentile(&reopen, 0.5).as_secs_f64() * 1e3),
            format!("{:.1} ms", percentile(&reopen, 1.0).as_secs_f64() * 1e3),
        ]);
        let name = subject.name();
        s.check(f.kills == kills, format!("{name}: {} kills of {kills}", f.kills));
        s.check(f.wrong == 0, format!("{name}: {} wrong values served", f.wrong));
        s.check(f.corrupt == 0, format!("{name}: {} corrupt values served", f.corrupt));
        s.check(f.lost == 0, format!("{name}: {} acknowledged entries lost", f.lost));
        s.check(f.read_errors == 0, format!("{name}: {} reads failed", f.read_errors));
        s.check(f.acked_rounds > 0, format!("{name}: no round was ever acknowledged"));
        s.check(
            f.max_dir_bytes < BUDGET / 2,
            format!("{name}: the directory reached {} bytes, eviction possible", f.max_dir_bytes),
        );
        for p in &f.problems {
            s.check(false, format!("{name}: {}", scrub(ctx, p)));
        }
        if subject == Subject::RocksPower {
            s.check(
                f.wal_bytes_cut > 0,
                format!("{name}: no kill left unsynced log bytes to cut: the cut was never tried"),
            );
            s.note(format!(
                "{name}: after each kill the write-ahead log was cut back to what the last \
                 completed sync covered (the length of each log file the child printed after its \
                 last acknowledged barrier; a file created since was emptied or removed): {} \
                 bytes in {} files cut, {} cuts with a torn sector of zeros after the \
                 synced end. RocksDB syncs SST files and the MANIFEST before it relies on them; \
                 their unsynced writes are not reverted (no fault-injecting file system here)",
                f.wal_bytes_cut, f.wal_files_cut, f.wal_torn
            ));
        }
        s.note(format!(
            "{name}: {} directories (a fresh one once the files pass {} MiB; largest seen {:.1} \
             MiB against a {} MiB budget, so nothing was evicted)",
            f.dirs,
            ROTATE_BYTES >> 20,
            f.max_dir_bytes as f64 / f64::from(1 << 20),
            BUDGET >> 20
        ));
    }
    s.tables.push(table);
    s.note(
        "A value read must be exactly the acknowledged one or the one the interrupted round wrote \
         (key, version and checksum are in the value bytes); an older version, a foreign or \
         damaged value, or an expired one is counted wrong. An acknowledged entry is lost when \
         it is absent although it has not expired and the interrupted round did not remove it.",
    );
    s.note(
        "Configurations rotate per kill: nvme durability none / periodic 2 ms / every write; \
         rocks (and rocks with a power cut) no WAL / WAL / synced WAL; tiered (memory over \
         NVMe) write-through / \
         write-behind, with `flush` as the barrier. The parent alternates a clean close and a \
         plain drop after checking, so both the snapshot and the scan recovery paths run.",
    );
    s.note(
        "Reopen time is the parent's open of the directory after the kill (NVMe: snapshot or \
         segment scan; RocksDB: WAL replay; tiered: NVMe open plus building the cache).",
    );
    Ok(s)
}

/// Where one child's output and stderr go.
pub(crate) struct Child {
    pub(crate) proc: std::process::Child,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) reader: std::thread::JoinHandle<()>,
}

#[expect(clippy::too_many_arguments, reason = "the child's command line")]
fn spawn(
    exe: &Path,
    stderr: &Path,
    subject: Subject,
    dir: &Path,
    start: u64,
    seed: u64,
    base_ms: u64,
    mode: u64,
) -> Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg("crash-child").arg(subject.name()).arg(dir).args([
        start.to_string(),
        seed.to_string(),
        base_ms.to_string(),
        mode.to_string(),
    ]);
    spawn_command(cmd, exe, stderr)
}

/// Starts `cmd` (a child of this binary) with its stdout read line by line into a channel and
/// its stderr written to `stderr`.
pub(crate) fn spawn_command(mut cmd: Command, exe: &Path, stderr: &Path) -> Result<Child> {
    let mut proc = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(File::create(stderr)?))
        .spawn()
        .with_context(|| format!("spawning {}", exe.display()))?;
    let stdout = proc.stdout.take().context("child stdout")?;
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(Child { proc, lines, reader })
}

fn campaign(
    ctx: &Ctx,
    rt: &tokio::runtime::Runtime,
    exe: &Path,
    subject: Subject,
    kills: u64,
    seed: u64,
) -> Result<Figures> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc1a5_4c4a);
    let mut f = Figures::default();
    let stderr_path = ctx.work_dir.join(format!("crash-{}.stderr", subject.name()));
    let mut dir = PathBuf::new();
    let mut model: HashMap<u32, State> = HashMap::new();
    let mut next_round = 0u64;
    let mut history: HashMap<u32, Vec<String>> = HashMap::new();
    // Kill delays after "ready": release builds run a round in a few ms, debug ones slower.
    let max_delay_us = if cfg!(debug_assertions) { 60_000 } else { 40_000 };
    for kill in 0..kills {
        if kill == 0 || dir_bytes(&dir) > ROTATE_BYTES {
            if kill > 0 {
                std::fs::remove_dir_all(&dir).ok();
            }
            dir = ctx.work_dir.join(format!("crash-{}-{}", subject.name(), f.dirs));
            f.dirs += 1;
            model = (0..KEYS).map(|k| (k, None)).collect();
        }
        let mode = kill % 3;
        // What the parent's own close left is durable: the log files as they are now.
        let mut synced = if subject == Subject::RocksPower { wal_files(&dir)? } else { Vec::new() };
        let base_ms = now_ms();
        let spawned = Instant::now();
        let mut child = spawn(exe, &stderr_path, subject, &dir, next_round, seed, base_ms, mode)?;
        let early = rng.random_ratio(1, 10);
        if early {
            f.early_kills += 1;
            std::thread::sleep(Duration::from_micros(rng.random_range(0..30_000)));
        } else {
            loop {
                match child.lines.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) if line == "ready" => break,
                    Ok(_) => {}
                    Err(_) => {
                        child.proc.kill().ok();
                        child.proc.wait().ok();
                        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                        bail!(
                            "{} child of kill {kill} ({}) never got ready: {}",
                            subject.name(),
                            subject.mode_name(mode),
                            err.trim()
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..max_delay_us)));
        }
        child.proc.kill().ok();
        let status = child.proc.wait()?;
        child.reader.join().ok();
        let lines: Vec<String> = child.lines.try_iter().collect();
        if status.signal() != Some(libc::SIGKILL) && !lines.iter().any(|l| l == "done") {
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            f.problem(format!(
                "kill {kill} ({}): the child ended on its own ({status}) after {:?}: {}",
                subject.mode_name(mode),
                spawned.elapsed(),
                err.trim()
            ));
        }
        f.kills += 1;
        if subject == Subject::RocksPower {
            let mut reported = Vec::new();
            for line in &lines {
                if let Some(wal) = line.strip_prefix("wal ") {
                    let (name, len) = wal.rsplit_once(' ').context("a wal line")?;
                    reported.push((name.to_owned(), len.parse()?));
                } else if line.starts_with("ack ") {
                    synced = std::mem::take(&mut reported);
                }
            }
            let cut = cut_wal(&dir, &synced, &mut rng)?;
            f.wal_bytes_cut += cut.bytes;
            f.wal_files_cut += cut.files;
            f.wal_torn += u64::from(cut.torn);
        }
        let last_ack =
            lines.iter().filter_map(|l| l.strip_prefix("ack ")?.parse::<u64>().ok()).max();
        let pending = match last_ack {
            Some(r) => {
                for round in next_round..=r {
                    for (k, op) in round_ops(seed, round, base_ms) {
                        model.insert(k, op.state());
                        history.entry(k).or_default().push(format!("kill {kill}: {op:?}"));
                    }
                    f.acked_rounds += 1;
                }
                r + 1
            }
            None => next_round,
        };
        let in_flight: HashMap<u32, Op> = round_ops(seed, pending, base_ms).into_iter().collect();
        let what = format!("kill {kill} ({})", subject.mode_name(mode));
        let bad =
            rt.block_on(check(subject, &dir, mode, kill, &what, &mut model, &in_flight, &mut f))?;
        for k in bad.iter().take(3) {
            let h = history.get(k).map_or(&[][..], |h| &h[h.len().saturating_sub(4)..]);
            f.problem(format!("{what}: key {k}: last acknowledged operations {h:?}"));
        }
        if !bad.is_empty()
            && let Some(keep) = std::env::var_os("TORTURE_KEEP_DIR")
        {
            // Keep the evidence for a post-mortem.
            Command::new("cp").arg("-a").arg(&dir).arg(keep).status().ok();
        }
        f.max_dir_bytes = f.max_dir_bytes.max(dir_bytes(&dir));
        next_round = pending + 1;
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(f)
}

/// The RocksDB write-ahead log files of `dir` (`*.log`) and their lengths, by name.
fn wal_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let Ok(listing) = std::fs::read_dir(dir) else { return Ok(out) };
    for item in listing {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            out.push((name, item.metadata()?.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// What [`cut_wal`] did.
#[derive(Debug, Default)]
struct Cut {
    bytes: u64,
    files: u64,
    torn: bool,
}

/// Leaves `dir`'s write-ahead log as a power cut after the last completed sync could have:
/// each log file is cut back to the length `synced` gives it (a file created since, to
/// nothing, or it is removed: its directory entry was never synced), and in half of the cuts
/// the rest of the sector after the synced end is written back as zeros (a torn write that
/// reached the disk as a zeroed block). RocksDB syncs its SST files and MANIFEST itself before
/// it relies on them; those are left as written.
///
/// Not random bytes, although a file system may expose stale blocks there: RocksDB 11.8
/// (librocksdb-sys 0.19) never returns from `DB::open` on a log whose tail holds a random
/// record header of a recyclable type with a length past the end of the file, in every
/// `wal_recovery_mode` (RELIABILITY.md, Findings).
fn cut_wal(dir: &Path, synced: &[(String, u64)], rng: &mut StdRng) -> Result<Cut> {
    let mut cut = Cut::default();
    for (name, len) in wal_files(dir)? {
        let keep = synced.iter().find(|(n, _)| *n == name).map_or(0, |(_, l)| *l);
        if len <= keep {
            continue;
        }
        let path = dir.join(&name);
        cut.files += 1;
        cut.bytes += len - keep;
        if keep == 0 && rng.random_bool(0.5) {
            std::fs::remove_file(&path)?;
            continue;
        }
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(keep)?;
        if rng.random_bool(0.5) {
            let torn = (512 - keep % 512).min(len - keep);
            std::os::unix::fs::FileExt::write_all_at(&file, &vec![0u8; torn as usize], keep)?;
            cut.torn = true;
        }
    }
    Ok(cut)
}

/// Reopens `dir`, reads every key against the model, and updates the model to what was read.
#[expect(clippy::too_many_arguments, reason = "the campaign's state, passed explicitly")]
pub(crate) async fn check(
    subject: Subject,
    dir: &Path,
    mode: u64,
    kill: u64,
    what: &str,
    model: &mut HashMap<u32, State>,
    in_flight: &HashMap<u32, Op>,
    f: &mut Figures,
) -> Result<Vec<u32>> {
    let started = Instant::now();
    let mut bad = Vec::new();
    let Opened { tier, tiered, l2 } =
        open_with_handle(subject, dir, mode).await.with_context(|| format!("{what}: reopen"))?;
    f.reopen.push(started.elapsed());
    for k in 0..KEYS {
        let acked = model[&k];
        let pending = in_flight.get(&k).map(|op| op.state());
        let before = now_ms();
        let got = tier.get(&key(k)).await;
        let after = now_ms();
        f.keys_checked += 1;
        if acked.is_some_and(|(_, e)| e == 0 || e > after) {
            f.expected_present += 1;
        }
        let allowed: Vec<State> = std::iter::once(acked).chain(pending).collect();
        let observed = match got {
            Err(e) => {
                bad.push(k);
                f.read_errors += 1;
                f.problem(format!("{what}: key {k}: read failed: {e}"));
                continue;
            }
            Ok(Some(entry)) => {
                let Some(d) = value::decode(&entry.value) else {
                    bad.push(k);
                    f.corrupt += 1;
                    f.problem(format!("{what}: key {k}: a corrupt value was served"));
                    continue;
                };
                let state = Some((d.version, d.expires_ms));
                if d.key != k || entry.meta.version != Some(d.version) {
                    bad.push(k);
                    f.wrong += 1;
                    f.problem(format!(
                        "{what}: key {k}: served the value of key {} version {} (meta {:?})",
                        d.key, d.version, entry.meta.version
                    ));
                    continue;
                }
                if !allowed.contains(&state) {
                    bad.push(k);
                    f.wrong += 1;
                    f.problem(format!(
                        "{what}: key {k}: served version {}; acknowledged {acked:?}, in flight \
                         {pending:?}",
                        d.version
                    ));
                    continue;
                }
                if d.expires_ms != 0 && d.expires_ms <= before {
                    bad.push(k);
                    f.wrong += 1;
                    f.problem(format!(
                        "{what}: key {k}: served version {} after expiry",
                        d.version
                    ));
                    continue;
                }
                if Some(state) == pending && state != acked {
                    f.in_flight_seen += 1;
                }
                state
            }
            Ok(None) => {
                let may_be_absent = allowed.iter().any(|s| match s {
                    None => true,
                    Some((_, e)) => *e != 0 && *e <= after,
                });
                if !may_be_absent {
                    bad.push(k);
                    f.lost += 1;
                    f.problem(format!(
                        "{what}: key {k}: absent; acknowledged {acked:?}, in flight {pending:?}"
                    ));
                }
                None
            }
        };
        model.insert(k, observed);
    }
    let stats = tier.stats();
    if f.corrupt_expected {
        f.counted_corrupt += stats.corrupted;
    } else if stats.corrupted != 0 {
        f.problem(format!("{what}: the reopened tier counted {} corrupt records", stats.corrupted));
    }
    if let Some(cap) = stats.usage.capacity
        && stats.usage.bytes_used > cap
    {
        f.problem(format!("{what}: usage {} over the budget {cap}", stats.usage.bytes_used));
    }
    // Alternate a clean close (NVMe snapshot next time) and a plain drop (segment scan).
    if kill.is_multiple_of(2) {
        tier.close().await.with_context(|| format!("{what}: close"))?;
    } else if subject.is_rocks() {
        // A RocksDB handle must be released before the next child opens the directory.
        tier.close().await.ok();
    }
    drop((tier, tiered));
    // The tiered cache's background tasks let go of the NVMe tier (and its directory lock)
    // shortly after the last handle is dropped; the next child needs the directory.
    // `strong_count` drops to zero before the tier's `Drop` has joined its writer, which
    // releases the lock, so wait for the lock (the `LOCK` file of `FORMAT.md`) itself.
    if let Some(l2) = l2 {
        let deadline = Instant::now() + Duration::from_secs(5);
        let lock = File::open(dir.join("LOCK"))?;
        loop {
            if l2.strong_count() == 0 && lock.try_lock().is_ok() {
                lock.unlock()?;
                break;
            }
            if Instant::now() > deadline {
                f.problem(format!(
                    "{what}: the dropped tiered cache holds its directory after 5 s"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(bad)
}
