//! The full-disk campaign: the NVMe and RocksDB tiers on a 32 MiB tmpfs the campaign mounts
//! itself, with budgets far above it. Puts go on until the filesystem is full; then every put
//! must fail with a clear error naming the cause, every value stored before must still read
//! back exactly, and once space is freed (a filler file deleted) puts must succeed again, also
//! after a reopen. The tmpfs is unmounted at the end, also when a check or the campaign fails.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`); without it the section fails with a note that
//! names the environment as the cause.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use bytes::Bytes;
use cache_core::{Entry, ErrorKind, Key, Tier};
use cache_l2_nvme::NvmeTierBuilder;
use cache_l2_rocks::RocksTier;

use crate::{
    Ctx,
    crash::value,
    report::{Section, Table},
};

/// Size of the filesystem.
const FS_SIZE: &str = "32 MiB";
/// The same, as `mount -o size=` takes it.
const FS_SIZE_OPT: &str = "size=32m";
/// The budget given to each tier: far above the filesystem, so the disk fills first.
const BUDGET: u64 = 1 << 30;
/// Value size of the fill.
const VALUE: usize = 16 << 10;
/// A file written before the fill and deleted to free space.
const FILLER: usize = 6 << 20;
/// Puts after the space is freed (well below the filler's size).
const AFTER: u32 = 64;
/// Puts tried after the first failure, which must fail cleanly too (or store, if space showed up).
const AFTER_FAILURE: u32 = 16;
/// How long a tier may take to resume service once space is freed.
const RESUME_DEADLINE: Duration = Duration::from_secs(30);

/// Unmounts the tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it: detach it so it goes away when released.
            Command::new("umount").arg("-l").arg(&self.0).status().ok();
        }
    }
}

/// Runs the campaign.
pub(crate) fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "full disk",
        format!(
            "the NVMe and RocksDB tiers on a {FS_SIZE} tmpfs, budget {} MiB, filled with {} KiB \
             values until puts fail, then a {} MiB filler file deleted",
            BUDGET >> 20,
            VALUE >> 10,
            FILLER >> 20
        ),
    );
    let mnt = ctx.work_dir.join("full-disk-mnt");
    std::fs::create_dir_all(&mnt)?;
    let out =
        Command::new("mount").args(["-t", "tmpfs", "-o", FS_SIZE_OPT, "tmpfs"]).arg(&mnt).output();
    let mounted = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => Some(format!("cannot run mount: {e}")),
    };
    if let Some(why) = mounted {
        s.note(format!(
            "SKIPPED, environment failure: mounting a {FS_SIZE} tmpfs was refused ({why}); \
             the campaign needs root or CAP_SYS_ADMIN"
        ));
        s.check(false, format!("environment: cannot mount a tmpfs: {why}"));
        return Ok(s);
    }
    let _mount = Mount(mnt.clone());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut table = Table::new([
        "subject",
        "puts acknowledged until full",
        "first error",
        "later puts or barriers failed cleanly",
        "acknowledged values intact when full",
        "puts acknowledged after freeing space",
        "service resumed after",
        "puts or barriers failed before it resumed",
        "values intact after reopen",
    ]);
    for subject in [Subject::Nvme, Subject::Rocks] {
        let dir = mnt.join(subject.name());
        let r = rt.block_on(trial(subject, &dir, &mnt));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::remove_file(mnt.join("filler")).ok();
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                s.check(false, format!("{}: {e:#}", subject.name()));
                continue;
            }
        };
        let name = subject.name();
        table.row(vec![
            name.to_owned(),
            r.stored.to_string(),
            r.first_error.clone().unwrap_or_else(|| "none".to_owned()),
            format!("{} of {}", r.later_failed, r.later_tried),
            format!("{} of {}", r.intact_when_full, r.stored),
            format!("{} of {AFTER}", r.stored_after),
            r.resumed_after
                .map_or_else(|| "never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
            r.failed_after.to_string(),
            format!("{} of {}", r.intact_after_reopen, r.stored + r.stored_after),
        ]);
        s.check(r.first_error.is_some(), format!("{name}: the disk never filled up"));
        s.check(
            r.clear_error,
            format!("{name}: the error does not say the disk is full: {:?}", r.first_error),
        );
        s.check(r.stored > 0, format!("{name}: nothing was stored before the disk filled"));
        s.check(
            r.intact_when_full == r.stored,
            format!(
                "{name}: {} of {} stored values intact when full",
                r.intact_when_full, r.stored
            ),
        );
        s.check(
            r.stored_after == AFTER,
            format!("{name}: {} of {AFTER} puts stored after space was freed", r.stored_after),
        );
        s.check(
            r.intact_after_reopen == r.stored + r.stored_after,
            format!(
                "{name}: {} of {} values intact after reopen",
                r.intact_after_reopen,
                r.stored + r.stored_after
            ),
        );
        for p in r.problems {
            s.check(false, format!("{name}: {p}"));
        }
    }
    s.tables.push(table);
    s.note(
        "Values are written as put + `flush` every 4 puts (every put after the first failure); \
         a value is acknowledged once a `flush` after it succeeded, because the NVMe tier \
         accepts a put before writing it and reports a failed write at the next `flush`. \
         Acknowledged values must read back exactly (key, version and checksum are in the \
         value bytes), before and after a reopen; values accepted but never acknowledged may \
         be missing, never wrong. A clear error is `Io` with a message that names the cause \
         (no space, disk full).",
    );
    Ok(s)
}

#[derive(Debug, Clone, Copy)]
enum Subject {
    Nvme,
    Rocks,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Nvme => "nvme",
            Subject::Rocks => "rocks",
        }
    }

    async fn open(self, dir: &Path) -> Result<Arc<dyn Tier>> {
        Ok(match self {
            Subject::Nvme => {
                Arc::new(NvmeTierBuilder::new(dir, BUDGET).segment_size(1 << 20).open().await?)
            }
            Subject::Rocks => Arc::new(
                RocksTier::builder(dir, BUDGET)
                    .write_buffer_bytes(1 << 20)
                    .block_cache_bytes(1 << 20)
                    .open()
                    .await?,
            ),
        })
    }
}

#[derive(Debug, Default)]
struct Outcome {
    stored: u32,
    first_error: Option<String>,
    clear_error: bool,
    later_tried: u32,
    later_failed: u32,
    intact_when_full: u32,
    stored_after: u32,
    /// Time from freeing space to the first put stored.
    resumed_after: Option<Duration>,
    /// Puts or barriers that failed after space was freed, before service resumed.
    failed_after: usize,
    intact_after_reopen: u32,
    problems: Vec<String>,
}

fn key(i: u32) -> Key {
    Key::new("full", format!("key-{i}")).expect("a valid key")
}

fn val(i: u32) -> Bytes {
    value::encode(i, u64::from(i), 0, VALUE)
}

/// Reads keys `keys` back; the number read back exactly. A wrong value is always a problem, a
/// missing one only when `must` (the key was acknowledged by a barrier).
async fn intact(tier: &dyn Tier, keys: &[u32], must: bool, problems: &mut Vec<String>) -> u32 {
    let mut n = 0;
    for &i in keys {
        match tier.get(&key(i)).await {
            Ok(Some(e)) if e.value == val(i) => n += 1,
            Ok(Some(_)) => problems.push(format!("key {i}: a wrong value was served")),
            Ok(None) if !must => {}
            Ok(None) => {
                if problems.len() < 5 {
                    problems.push(format!("key {i}: an acknowledged value is missing"));
                }
            }
            Err(e) => {
                if problems.len() < 5 {
                    problems.push(format!("key {i}: {e}"));
                }
            }
        }
    }
    n
}

/// Puts and barriers: a put may be accepted before its write happens (the NVMe tier writes in
/// the background and reports a failed write at the next `flush`), so a value counts as stored
/// once a `flush` after it has succeeded.
struct Writer<'a> {
    tier: &'a dyn Tier,
    next: u32,
    /// Acknowledged by a successful barrier.
    acked: Vec<u32>,
    /// Accepted since the last successful barrier (may be lost if that barrier fails).
    pending: Vec<u32>,
}

impl Writer<'_> {
    /// Puts the next value, and every `every` puts runs the barrier.
    async fn step(&mut self, every: u32) -> cache_core::Result<()> {
        let i = self.next;
        self.next += 1;
        let outcome = self.tier.put(key(i), Entry::new(val(i))).await?;
        if outcome.is_stored() {
            self.pending.push(i);
        }
        if self.next.is_multiple_of(every) {
            self.barrier().await?;
        }
        Ok(())
    }

    async fn barrier(&mut self) -> cache_core::Result<()> {
        self.tier.flush().await?;
        self.acked.append(&mut self.pending);
        Ok(())
    }
}

async fn trial(subject: Subject, dir: &Path, mnt: &Path) -> Result<Outcome> {
    let scrub =
        |e: &cache_core::Error| e.to_string().replace(&mnt.display().to_string(), "<tmpfs>");
    let mut o = Outcome::default();
    std::fs::write(mnt.join("filler"), vec![0x5au8; FILLER]).context("writing the filler")?;
    let tier = subject.open(dir).await?;
    let mut w = Writer { tier: &*tier, next: 0, acked: Vec::new(), pending: Vec::new() };
    // 32 MiB cannot hold more than 2048 values of 16 KiB.
    while w.next < 4096 {
        if let Err(e) = w.step(4).await {
            let msg = e.to_string().to_lowercase();
            o.clear_error = e.kind() == ErrorKind::Io
                && ["no space", "disk is full", "enospc"].iter().any(|m| msg.contains(m));
            // The report names the filesystem, not this machine's path to it.
            o.first_error = Some(format!("{:?}: {}", e.kind(), scrub(&e)));
            break;
        }
    }
    // Puts and barriers after the first failure fail cleanly too (or store, if space showed up).
    for _ in 0..AFTER_FAILURE {
        o.later_tried += 1;
        if w.step(1).await.is_err() {
            o.later_failed += 1;
        }
    }
    let unacked = std::mem::take(&mut w.pending);
    o.stored = w.acked.len() as u32;
    o.intact_when_full = intact(&*tier, &w.acked, true, &mut o.problems).await;
    intact(&*tier, &unacked, false, &mut o.problems).await;
    // Free space, then write again. A tier may take a while to notice the space (RocksDB
    // polls for it after a write error): retry until a put and its barrier succeed.
    std::fs::remove_file(mnt.join("filler"))?;
    let freed = Instant::now();
    let mut first_failure = None;
    while o.stored_after < AFTER && freed.elapsed() < RESUME_DEADLINE {
        let before = w.acked.len();
        match w.step(1).await {
            Ok(()) => {
                o.stored_after += (w.acked.len() - before) as u32;
                o.resumed_after.get_or_insert(freed.elapsed());
            }
            Err(e) => {
                o.failed_after += 1;
                first_failure.get_or_insert_with(|| scrub(&e));
                w.pending.clear();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if o.stored_after < AFTER
        && let Some(first) = first_failure
    {
        o.problems
            .push(format!("puts still failed {RESUME_DEADLINE:?} after space was freed: {first}"));
    }
    let acked = w.acked.clone();
    if let Err(e) = tier.close().await {
        o.problems.push(format!("close after the disk was full: {}", scrub(&e)));
    }
    drop(tier);
    let tier = subject.open(dir).await.context("reopening")?;
    o.intact_after_reopen = intact(&*tier, &acked, true, &mut o.problems).await;
    intact(&*tier, &unacked, false, &mut o.problems).await;
    tier.close().await?;
    Ok(o)
}
