//! The power-loss campaign: the crash campaign's workload on the NVMe tier, with the tier's IO
//! journal on (`cache-l2-nvme`'s `io-trace` feature), killed with SIGKILL; the parent then
//! rebuilds the directory a power cut at that moment could have left, reopens it and checks
//! every key against the model (the crash campaign's `check`).
//!
//! The journal lists every persistent write (with its bytes), sync, creation, rename, unlink and
//! directory sync of the child, in order. Before each child starts, the parent copies the
//! directory (the baseline: what the parent's own reopen left, taken as durable). After the kill
//! it first replays the whole journal onto the baseline and compares the result with the files
//! the killed child left in the page cache: a difference outside the journal's last operation
//! means a write that bypassed the IO layer, and fails the campaign. Then it rebuilds a power
//! cut:
//!
//! - a byte written after the last completed sync of its file (one whose start was journaled
//!   after the write) is *unsynced*: it is reverted to what the file held before (zeros in the
//!   preallocated segments; nothing, for bytes past the synced length). In a *torn* trial some
//!   512-byte sectors of unsynced writes hold random bytes instead; in a *reordered* trial each
//!   unsynced sector is, at random, reverted, written or random (the disk wrote back some of
//!   the cache, in any order). The device is assumed never to damage bytes a completed sync made
//!   durable, even in a sector it tears.
//! - a file's length grown by unsynced writes or `fallocate` is the synced length or the full
//!   one (at random);
//! - creations, renames and unlinks after the last completed directory sync happened or not: a
//!   random prefix of them is kept (none, all, or some), as a journaling file system commits
//!   metadata in order.
//!
//! What was acknowledged: every round whose `flush` returned; with `Durability::EveryWrite`, a
//! round whose operations all returned (each one waits for its sync); with periodic group
//! commit, a round the child marked in the journal once all its writes were in the files
//! (`wait_written`), when a sync pass started after that mark and completed. Losing any of
//! those is a failure, for every durability level; a value that is neither the acknowledged
//! one nor the in-flight round's is always one.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use cache_core::{Entry, Tier, Timestamp};
use cache_l2_nvme::{Durability, io_trace};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

use crate::{
    Ctx,
    crash::{self, Figures, KEYS, MAX_ROUNDS, Op, State, Subject, value},
    report::{Section, Table},
};

#[cfg(test)]
mod tests;

/// A fresh directory once the files pass this (nothing is ever evicted; baselines stay small).
const ROTATE_BYTES: u64 = 6 << 20;
/// Sector size of the simulated disk.
const SECTOR: u64 = 512;
/// The lock file holds no data and is not journaled.
const LOCK: &str = "LOCK";

fn durability(mode: u64) -> Durability {
    [Durability::None, Durability::Periodic(Duration::from_millis(2)), Durability::EveryWrite]
        [(mode % 3) as usize]
}

/// The child: `power-child DIR START_ROUND SEED BASE_MS MODE` (the journal's directory is in
/// the environment).
pub(crate) fn child_main(args: &[String]) -> Result<()> {
    let [dir, start, seed, base_ms, mode] = args else {
        bail!("usage: power-child DIR START_ROUND SEED BASE_MS MODE");
    };
    let (start, seed, base_ms, mode): (u64, u64, u64, u64) =
        (start.parse()?, seed.parse()?, base_ms.parse()?, mode.parse()?);
    if !io_trace::enabled() {
        bail!("the IO journal is off: set {}", io_trace::ENV);
    }
    let dir = PathBuf::from(dir);
    let durability = durability(mode);
    let mut rng = StdRng::seed_from_u64(seed ^ start);
    crash::runtime()?.block_on(async move {
        let tier = crash::nvme_builder(&dir, durability).open().await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
        for round in start..start + MAX_ROUNDS {
            for (i, (k, op)) in crash::round_ops(seed, round, base_ms).into_iter().enumerate() {
                match op {
                    Op::Put { version, expires_ms, len } => {
                        let mut entry = Entry::new(value::encode(k, version, expires_ms, len))
                            .with_version(version);
                        if expires_ms != 0 {
                            entry = entry.with_expiry(Timestamp::from_millis(expires_ms));
                        }
                        crash::put(&tier, None, k, entry).await?;
                    }
                    Op::Remove => {
                        tier.remove(&crash::key(k)).await.with_context(|| format!("remove {k}"))?
                    }
                }
                if durability == Durability::EveryWrite {
                    // Synced before it returned: acknowledged on its own.
                    writeln!(out, "did {round} {i}")?;
                    out.flush()?;
                }
            }
            match durability {
                Durability::EveryWrite => {
                    writeln!(out, "done {round}")?;
                    out.flush()?;
                }
                Durability::Periodic(_) => {
                    // Everything of the round is in the files: a sync pass that starts from
                    // now on makes it durable. Give the syncer a chance before the barrier.
                    tier.wait_written().await.context("wait_written")?;
                    io_trace::mark(&format!("written {round}"));
                    tokio::time::sleep(Duration::from_micros(rng.random_range(0..4_000))).await;
                }
                _ => {}
            }
            tier.flush().await.context("flush")?;
            writeln!(out, "ack {round}")?;
            out.flush()?;
        }
        writeln!(out, "done")?;
        out.flush()?;
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    })
}

/// How unsynced bytes come back after the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Every unsynced byte reverted.
    Reverted,
    /// Reverted, with some unsynced sectors random.
    Torn,
    /// Each unsynced sector reverted, written or random.
    Reordered,
}

impl Damage {
    const ALL: [Damage; 3] = [Damage::Reverted, Damage::Torn, Damage::Reordered];

    fn name(self) -> &'static str {
        match self {
            Damage::Reverted => "reverted",
            Damage::Torn => "torn sectors",
            Damage::Reordered => "reordered write-back",
        }
    }
}

type Files = BTreeMap<String, Vec<u8>>;

/// Reads every file of `dir` but the lock file.
fn read_dir(dir: &Path) -> Result<Files> {
    let mut files = Files::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(files) };
    for item in rd {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name != LOCK && item.file_type()?.is_file() {
            files.insert(name, std::fs::read(item.path())?);
        }
    }
    Ok(files)
}

/// Replaces the files of `dir` (but the lock file) with `files`.
fn write_dir(dir: &Path, files: &Files) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        if item.file_name() != LOCK {
            std::fs::remove_file(item.path())?;
        }
    }
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// One file as the journal saw it.
#[derive(Debug, Default)]
struct Inode {
    /// Content when the child started (empty for files it created).
    base: Vec<u8>,
    /// Writes and allocations, with their journal position.
    changes: Vec<(usize, Change)>,
    /// Journal position of the start of the last completed sync (changes before it are durable).
    synced_before: usize,
}

#[derive(Debug)]
enum Change {
    Alloc(u64),
    Write(u64, Vec<u8>),
}

#[derive(Debug)]
enum NameOp {
    Bind(String, usize),
    Rename(String, String),
    Unlink(String),
}

/// The journal, replayed.
#[derive(Debug, Default)]
struct Replay {
    inodes: Vec<Inode>,
    /// Baseline names.
    base_names: BTreeMap<String, usize>,
    /// Name operations with their journal position.
    name_ops: Vec<(usize, NameOp)>,
    /// Journal position of the start of the last completed directory sync.
    dir_synced_before: usize,
    /// Files named by the last operation that changes names or lengths, and the byte range of
    /// the last write (either may not have run, or only in part, when the kill came).
    last_touched: Vec<String>,
    last_write: Option<(String, usize, usize)>,
    /// Rounds the periodic syncer made durable: marked written, then a whole pass.
    periodic_durable: Vec<u64>,
    events: usize,
}

fn name_of(path: &Path, dir: &Path) -> Result<String> {
    if path.parent() != Some(dir) {
        bail!("the journal names {} outside the tier directory", path.display());
    }
    Ok(path.file_name().context("a file name")?.to_string_lossy().into_owned())
}

fn replay(baseline: &Files, events: Vec<io_trace::Event>, dir: &Path) -> Result<Replay> {
    use io_trace::Event as E;
    // A failed operation is dropped with its event.
    let mut evs: Vec<E> = Vec::with_capacity(events.len());
    for e in events {
        if e == E::Failed {
            evs.pop();
        } else {
            evs.push(e);
        }
    }
    let mut r = Replay { events: evs.len(), ..Replay::default() };
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (name, bytes) in baseline {
        r.inodes.push(Inode { base: bytes.clone(), ..Inode::default() });
        names.insert(name.clone(), r.inodes.len() - 1);
    }
    r.base_names = names.clone();
    let mut syncing: HashMap<usize, usize> = HashMap::new();
    let mut dir_syncing = None;
    let mut marked: Option<(u64, usize)> = None;
    let mut pass_from = None;
    let lookup = |names: &BTreeMap<String, usize>, name: &str| {
        names.get(name).copied().with_context(|| format!("the journal uses {name}, not a file"))
    };
    for (i, e) in evs.into_iter().enumerate() {
        match e {
            E::Create { path, .. } => {
                let name = name_of(&path, dir)?;
                r.inodes.push(Inode::default());
                let id = r.inodes.len() - 1;
                names.insert(name.clone(), id);
                r.last_touched = vec![name.clone()];
                r.last_write = None;
                r.name_ops.push((i, NameOp::Bind(name, id)));
            }
            E::Alloc { path, len } => {
                let name = name_of(&path, dir)?;
                let id = lookup(&names, &name)?;
                r.inodes[id].changes.push((i, Change::Alloc(len)));
                r.last_touched = vec![name];
                r.last_write = None;
            }
            E::Write { path, offset, data } => {
                let name = name_of(&path, dir)?;
                let id = lookup(&names, &name)?;
                let range = (name, offset as usize, offset as usize + data.len());
                r.inodes[id].changes.push((i, Change::Write(offset, data)));
                r.last_touched.clear();
                r.last_write = Some(range);
            }
            E::SyncBegin { path } => {
                let id = lookup(&names, &name_of(&path, dir)?)?;
                syncing.insert(id, i);
            }
            E::SyncEnd { path } => {
                let id = lookup(&names, &name_of(&path, dir)?)?;
                if let Some(from) = syncing.remove(&id) {
                    r.inodes[id].synced_before = r.inodes[id].synced_before.max(from);
                }
            }
            E::Rename { from, to } => {
                let (a, b) = (name_of(&from, dir)?, name_of(&to, dir)?);
                let id = names.remove(&a).with_context(|| format!("rename of absent {a}"))?;
                names.insert(b.clone(), id);
                r.last_touched = vec![a.clone(), b.clone()];
                r.last_write = None;
                r.name_ops.push((i, NameOp::Rename(a, b)));
            }
            E::Unlink { path } => {
                let name = name_of(&path, dir)?;
                names.remove(&name);
                r.last_touched = vec![name.clone()];
                r.last_write = None;
                r.name_ops.push((i, NameOp::Unlink(name)));
            }
            E::DirSyncBegin { .. } => dir_syncing = Some(i),
            E::DirSyncEnd { .. } => {
                if let Some(from) = dir_syncing.take() {
                    r.dir_synced_before = r.dir_synced_before.max(from);
                }
            }
            E::PassBegin => pass_from = Some(i),
            E::PassEnd => {
                if let (Some(from), Some((round, at))) = (pass_from.take(), marked)
                    && from > at
                {
                    r.periodic_durable.push(round);
                    marked = None;
                }
            }
            E::Mark(label) => {
                if let Some(round) = label.strip_prefix("written ").and_then(|n| n.parse().ok()) {
                    marked = Some((round, i));
                }
            }
            E::Failed => unreachable!("dropped above"),
        }
    }
    Ok(r)
}

/// What one rebuild did.
#[derive(Debug, Default)]
struct Cut {
    unsynced_bytes: u64,
    torn_sectors: u64,
    kept_sectors: u64,
    name_ops_dropped: u64,
    name_ops_kept: u64,
}

impl Replay {
    /// Whether the file `name` the killed child left (`left`) is the journal's replay
    /// (`replayed`), but for the last operation, which may not have run or only in part.
    fn explains(&self, name: &str, left: Option<&Vec<u8>>, replayed: Option<&Vec<u8>>) -> bool {
        if left == replayed || self.last_touched.iter().any(|n| n == name) {
            return true;
        }
        let (Some(l), Some(a), Some((n, from, to))) = (left, replayed, &self.last_write) else {
            return false;
        };
        if n != name || l.len() < (*from).min(a.len()) || l.len() > a.len() {
            return false;
        }
        // Outside the last write's range, every byte must match; inside it, either version.
        let (from, to) = (*from, *to);
        l[..from.min(l.len())] == a[..from.min(l.len())]
            && l.len().saturating_sub(to) == a.len().saturating_sub(to)
            && (to >= l.len() || l[to..] == a[to..])
    }

    /// The files with every journaled operation applied (what the page cache held).
    fn everything(&self) -> Files {
        self.rebuild(None, &mut Cut::default())
    }

    /// The files a power cut leaves (`rng` decides the uncertain parts), or with `None` every
    /// operation applied.
    fn rebuild(&self, cut: Option<(&mut StdRng, Damage)>, stats: &mut Cut) -> Files {
        let mut cut = cut;
        // Names: the durable prefix, then a random prefix of the rest.
        let durable = self.name_ops.iter().filter(|(i, _)| *i < self.dir_synced_before).count();
        let unsure = self.name_ops.len() - durable;
        let keep = match &mut cut {
            None => unsure,
            Some((rng, _)) => match rng.random_range(0..4) {
                0 => 0,
                1 => unsure,
                _ => rng.random_range(0..=unsure),
            },
        };
        stats.name_ops_kept += keep as u64;
        stats.name_ops_dropped += (unsure - keep) as u64;
        let mut names = self.base_names.clone();
        for (_, op) in &self.name_ops[..durable + keep] {
            match op {
                NameOp::Bind(name, id) => {
                    names.insert(name.clone(), *id);
                }
                NameOp::Rename(a, b) => {
                    if let Some(id) = names.remove(a) {
                        names.insert(b.clone(), id);
                    }
                }
                NameOp::Unlink(name) => {
                    names.remove(name);
                }
            }
        }
        let mut out = Files::new();
        for (name, id) in names {
            let inode = &self.inodes[id];
            let mut bytes = inode.base.clone();
            let mut full_len = bytes.len() as u64;
            let mut synced_len = bytes.len() as u64;
            for (at, change) in &inode.changes {
                let synced = *at < inode.synced_before;
                let end = match change {
                    Change::Alloc(len) => *len,
                    Change::Write(off, data) => off + data.len() as u64,
                };
                full_len = full_len.max(end);
                if synced {
                    synced_len = synced_len.max(end);
                }
                if bytes.len() < end as usize {
                    bytes.resize(end as usize, 0);
                }
                let Change::Write(off, data) = change else { continue };
                let off = *off as usize;
                match (&mut cut, synced) {
                    (None, _) | (_, true) => bytes[off..off + data.len()].copy_from_slice(data),
                    (Some((rng, damage)), false) => {
                        stats.unsynced_bytes += data.len() as u64;
                        // Sector by sector, on the file's sector boundaries.
                        let mut s = off;
                        while s < off + data.len() {
                            let next = ((s as u64 / SECTOR + 1) * SECTOR) as usize;
                            let e = next.min(off + data.len());
                            let roll = rng.random_range(0..12);
                            let what = match damage {
                                Damage::Reverted => 0,
                                Damage::Torn => u32::from(roll < 3) * 2,
                                Damage::Reordered => roll % 3,
                            };
                            match what {
                                0 => {}
                                1 => {
                                    stats.kept_sectors += 1;
                                    bytes[s..e].copy_from_slice(&data[s - off..e - off]);
                                }
                                _ => {
                                    stats.torn_sectors += 1;
                                    rng.fill_bytes(&mut bytes[s..e]);
                                }
                            }
                            s = e;
                        }
                    }
                }
            }
            let mut len = full_len;
            if let Some((rng, _)) = &mut cut
                && synced_len < full_len
                && rng.random_bool(0.5)
            {
                len = synced_len;
            }
            bytes.truncate(len as usize);
            out.insert(name, bytes);
        }
        out
    }
}

/// Figures of one durability level.
#[derive(Debug, Default)]
struct Level {
    f: Figures,
    cuts_by_damage: [u64; 3],
    rounds_acked_by_level: u64,
    ops_acked_alone: u64,
    /// Acknowledged entries lost in reordered write-back trials (also in `f.lost`).
    lost_reordered: u64,
    events: u64,
    cut: Cut,
    bypass: u64,
}

/// Runs the campaign.
pub(crate) fn run(ctx: &Ctx) -> Result<Section> {
    let cuts: u64 = if ctx.quick { 30 } else { 1000 };
    let mut s = Section::new(
        "power",
        format!(
            "simulated power cuts of a child driving the NVMe tier with its IO journal on (the \
             crash workload: {KEYS} keys, a `flush` per round); after SIGKILL the directory is \
             rebuilt as a power cut would leave it and every key is checked; {cuts} cuts"
        ),
    );
    let exe = ctx.work_dir.join("cache-torture-power-child");
    std::fs::copy(&ctx.exe, &exe)
        .with_context(|| format!("copying {} to {}", ctx.exe.display(), exe.display()))?;
    let rt = crash::runtime()?;
    let mut levels: [Level; 3] = Default::default();
    campaign(ctx, &rt, &exe, cuts, &mut levels)?;
    let mut table = Table::new([
        "durability",
        "cuts",
        "reverted / torn / reordered",
        "acked rounds",
        "of which by the level's own sync",
        "operations of the interrupted round acknowledged alone",
        "keys checked",
        "acked entries expected",
        "in-flight values seen",
        "wrong or corrupt values served",
        "acked entries lost",
        "of which in reordered write-back",
        "read errors",
        "unsynced bytes rebuilt",
        "torn sectors",
        "name operations dropped / kept",
        "corrupt records counted",
        "reopen median",
    ]);
    for (mode, l) in levels.iter().enumerate() {
        let f = &l.f;
        let mut reopen = f.reopen.clone();
        reopen.sort();
        let name = Subject::Nvme.mode_name(mode as u64);
        table.row(vec![
            name.to_owned(),
            f.kills.to_string(),
            format!("{} / {} / {}", l.cuts_by_damage[0], l.cuts_by_damage[1], l.cuts_by_damage[2]),
            f.acked_rounds.to_string(),
            l.rounds_acked_by_level.to_string(),
            l.ops_acked_alone.to_string(),
            f.keys_checked.to_string(),
            f.expected_present.to_string(),
            f.in_flight_seen.to_string(),
            (f.wrong + f.corrupt).to_string(),
            f.lost.to_string(),
            l.lost_reordered.to_string(),
            f.read_errors.to_string(),
            l.cut.unsynced_bytes.to_string(),
            l.cut.torn_sectors.to_string(),
            format!("{} / {}", l.cut.name_ops_dropped, l.cut.name_ops_kept),
            f.counted_corrupt.to_string(),
            format!("{:.1} ms", crash::percentile(&reopen, 0.5).as_secs_f64() * 1e3),
        ]);
        s.check(f.wrong == 0, format!("{name}: {} wrong values served", f.wrong));
        s.check(f.corrupt == 0, format!("{name}: {} corrupt values served", f.corrupt));
        s.check(
            f.lost == 0,
            format!(
                "{name}: {} acknowledged entries lost ({} in reordered write-back)",
                f.lost, l.lost_reordered
            ),
        );
        s.check(
            f.counted_corrupt == 0,
            format!(
                "{name}: {} records counted corrupt (a power cut damages only unsynced writes, \
                 which the scan must take for torn, not corrupt)",
                f.counted_corrupt
            ),
        );
        s.check(f.read_errors == 0, format!("{name}: {} reads failed", f.read_errors));
        s.check(f.acked_rounds > 0, format!("{name}: no round was ever acknowledged"));
        s.check(
            l.bypass == 0,
            format!(
                "{name}: {} files differ from the journal's replay (an unjournaled write)",
                l.bypass
            ),
        );
        s.check(
            f.max_dir_bytes < crash::BUDGET / 2,
            format!("{name}: the directory reached {} bytes, eviction possible", f.max_dir_bytes),
        );
        for p in &f.problems {
            s.check(false, format!("{name}: {}", crash::scrub(ctx, p)));
        }
        s.note(format!("{name}: {} journal events replayed; {} directories", l.events, f.dirs));
    }
    let total: u64 = levels.iter().map(|l| l.f.kills).sum();
    s.check(total == cuts, format!("{total} cuts of {cuts}"));
    s.tables.push(table);
    s.note(
        "Unsynced: written after the start of the last completed sync of its file. Reverted: \
         every unsynced byte holds what it held before (zeros in a preallocated segment). Torn: \
         a quarter of the unsynced 512-byte sectors random instead. Reordered: each unsynced \
         sector reverted, written or random. Lengths grown by unsynced writes are kept or cut \
         back, and the creations, renames and unlinks after the last directory sync are kept as \
         a random prefix (none, all, or some).",
    );
    s.note(
        "Acknowledged: rounds whose `flush` returned; with every-write durability, rounds whose \
         operations all returned, and in the interrupted round each operation that returned; \
         with periodic durability, rounds marked written in the journal \
         before a sync pass that then completed. Before every rebuild, the journal replayed in \
         full must give the files the killed child left (so no write bypassed the IO layer).",
    );
    Ok(s)
}

fn campaign(
    ctx: &Ctx,
    rt: &tokio::runtime::Runtime,
    exe: &Path,
    cuts: u64,
    levels: &mut [Level; 3],
) -> Result<()> {
    let seed = ctx.seed ^ 0x9073_5e11;
    let mut rng = StdRng::seed_from_u64(seed);
    let stderr_path = ctx.work_dir.join("power.stderr");
    let journal_dir = ctx.work_dir.join("power-journal");
    let mut dir = PathBuf::new();
    let mut dirs = 0u64;
    let mut model: HashMap<u32, State> = HashMap::new();
    let mut next_round = 0u64;
    let max_delay_us = if cfg!(debug_assertions) { 60_000 } else { 40_000 };
    for cut in 0..cuts {
        if cut == 0 || crash::dir_bytes(&dir) > ROTATE_BYTES {
            if cut > 0 {
                std::fs::remove_dir_all(&dir).ok();
            }
            dir = ctx.work_dir.join(format!("power-{dirs}"));
            dirs += 1;
            model = (0..KEYS).map(|k| (k, None)).collect();
        }
        let mode = cut % 3;
        let level = &mut levels[mode as usize];
        if level.f.dirs < dirs {
            level.f.dirs += 1;
        }
        level.f.corrupt_expected = true;
        let baseline = read_dir(&dir)?;
        std::fs::remove_dir_all(&journal_dir).ok();
        std::fs::create_dir_all(&journal_dir)?;
        let base_ms = crash::now_ms();
        let mut cmd = Command::new(exe);
        cmd.arg("power-child")
            .arg(&dir)
            .args([next_round.to_string(), seed.to_string(), base_ms.to_string(), mode.to_string()])
            .env(io_trace::ENV, &journal_dir);
        let spawned = Instant::now();
        let mut child = crash::spawn_command(cmd, exe, &stderr_path)?;
        let pid = child.proc.id();
        if rng.random_ratio(1, 10) {
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
                        bail!("power child of cut {cut} never got ready: {}", err.trim());
                    }
                }
            }
            // A round with a sync per write takes far longer: kill later, so some rounds are
            // acknowledged by their writes' own syncs before their `flush`.
            let max = if mode == 2 { max_delay_us * 8 } else { max_delay_us };
            std::thread::sleep(Duration::from_micros(rng.random_range(0..max)));
        }
        child.proc.kill().ok();
        let status = child.proc.wait()?;
        child.reader.join().ok();
        let lines: Vec<String> = child.lines.try_iter().collect();
        let what = format!("cut {cut} ({})", Subject::Nvme.mode_name(mode));
        if status.signal() != Some(libc::SIGKILL) && !lines.iter().any(|l| l == "done") {
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            level.f.problem(format!(
                "{what}: the child ended on its own ({status}) after {:?}: {}",
                spawned.elapsed(),
                err.trim()
            ));
        }
        level.f.kills += 1;
        let journal = std::fs::read(io_trace::journal_path(&journal_dir, pid)).unwrap_or_default();
        let events = io_trace::read(&journal).map_err(anyhow::Error::msg)?;
        let r = replay(&baseline, events, &dir).with_context(|| format!("{what}: the journal"))?;
        level.events += r.events as u64;

        // Every file the child left must be the journal's replay (but the last operation's).
        let left = read_dir(&dir)?;
        let all = r.everything();
        let differ: std::collections::BTreeSet<&String> = left
            .keys()
            .chain(all.keys())
            .filter(|n| !r.explains(n, left.get(*n), all.get(*n)))
            .collect();
        if !differ.is_empty() {
            level.bypass += differ.len() as u64;
            level.f.problem(format!("{what}: files differ from the journal's replay: {differ:?}"));
        }

        // The acknowledged rounds.
        let flushed =
            lines.iter().filter_map(|l| l.strip_prefix("ack ")?.parse::<u64>().ok()).max();
        let mut durable = flushed;
        let by_level = match durability(mode) {
            Durability::EveryWrite => {
                lines.iter().filter_map(|l| l.strip_prefix("done ")?.parse::<u64>().ok()).max()
            }
            Durability::Periodic(_) => r.periodic_durable.iter().copied().max(),
            _ => None,
        };
        if let Some(b) = by_level
            && durable.is_none_or(|d| b > d)
        {
            durable = Some(b);
            level.rounds_acked_by_level += 1;
        }
        let pending = match durable {
            Some(last) => {
                for round in next_round..=last {
                    for (k, op) in crash::round_ops(seed, round, base_ms) {
                        model.insert(k, op.state());
                    }
                    level.f.acked_rounds += 1;
                }
                last + 1
            }
            None => next_round,
        };
        // With a sync per write, each operation that returned is acknowledged on its own.
        let did = lines
            .iter()
            .filter_map(|l| {
                let (round, i) = l.strip_prefix("did ")?.split_once(' ')?;
                (round.parse::<u64>().ok()? == pending).then(|| i.parse::<usize>().ok())?
            })
            .max()
            .map_or(0, |i| i + 1);
        let mut in_flight: HashMap<u32, Op> = HashMap::new();
        for (i, (k, op)) in crash::round_ops(seed, pending, base_ms).into_iter().enumerate() {
            if i < did {
                model.insert(k, op.state());
                level.ops_acked_alone += 1;
            } else {
                in_flight.insert(k, op);
            }
        }

        // The power cut.
        let damage = Damage::ALL[rng.random_range(0..3)];
        level.cuts_by_damage[damage as usize] += 1;
        let files = r.rebuild(Some((&mut rng, damage)), &mut level.cut);
        write_dir(&dir, &files)?;
        let what = format!("{what}, {}", damage.name());
        let lost_before = level.f.lost;
        let bad = rt.block_on(crash::check(
            Subject::Nvme,
            &dir,
            mode,
            cut,
            &what,
            &mut model,
            &in_flight,
            &mut level.f,
        ))?;
        if damage == Damage::Reordered {
            level.lost_reordered += level.f.lost - lost_before;
        }
        if !bad.is_empty()
            && let Some(keep) = std::env::var_os("TORTURE_KEEP_DIR")
        {
            let to = PathBuf::from(keep).join(format!("power-cut-{cut}"));
            std::fs::create_dir_all(&to)?;
            write_dir(&to.join("dir"), &files)?;
            std::fs::write(to.join("journal"), &journal)?;
            for (name, bytes) in &baseline {
                std::fs::create_dir_all(to.join("baseline"))?;
                std::fs::write(to.join("baseline").join(name), bytes)?;
            }
        }
        level.f.max_dir_bytes = level.f.max_dir_bytes.max(crash::dir_bytes(&dir));
        next_round = pending + 1;
    }
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&journal_dir).ok();
    Ok(())
}
