//! Crash safety under SIGKILL: a child process (this test binary, re-executed with an
//! environment variable) writes rounds of puts and removes, each ended by a barrier, and prints
//! `ack <round>` after each barrier. The parent kills it at a random moment, reopens the
//! directory and checks every key: its value must be the one after the last acknowledged round,
//! or the one the next (unacknowledged, possibly partial) round gave it — never anything else,
//! and never absent if the acknowledged state has it.
//!
//! `NVME_CRASH_KILLS` overrides the number of kills (default 200).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use bytes::Bytes;
use cache_core::{Entry, Key, Tier, testkit::block_on};
use cache_l2_nvme::{Durability, NvmeTier, NvmeTierBuilder};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

const CHILD_ENV: &str = "NVME_CRASH_CHILD_DIR";
const START_ENV: &str = "NVME_CRASH_START";
const DURABILITY_ENV: &str = "NVME_CRASH_DURABILITY";
const KEYS: u32 = 64;
const OPS_PER_ROUND: usize = 16;
const BUDGET: u64 = 512 << 20;

fn key(k: u32) -> Key {
    Key::new("crash", format!("key-{k}")).unwrap()
}

fn value(k: u32, round: u64) -> Bytes {
    let tag = format!("k{k}-r{round};");
    let len = 20 + ((u64::from(k) * 131 + round * 17) % 700) as usize;
    Bytes::from(tag.into_bytes().into_iter().cycle().take(len).collect::<Vec<_>>())
}

/// The operations of one round: distinct keys, each put (`Some`) or removed (`None`).
fn round_ops(round: u64) -> Vec<(u32, Option<Bytes>)> {
    let mut rng = StdRng::seed_from_u64(round ^ 0x5eed);
    let mut keys: Vec<u32> = (0..KEYS).collect();
    keys.shuffle(&mut rng);
    keys.truncate(OPS_PER_ROUND);
    keys.into_iter()
        .map(|k| (k, if rng.random_range(0..5) == 0 { None } else { Some(value(k, round)) }))
        .collect()
}

async fn open(dir: &str, durability: Durability) -> NvmeTier {
    NvmeTierBuilder::new(dir, BUDGET)
        .segment_size(256 << 10)
        .durability(durability)
        .open()
        .await
        .expect("open")
}

/// The child: does nothing unless re-executed by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let durability = match std::env::var(DURABILITY_ENV).unwrap().as_str() {
        "none" => Durability::None,
        "every" => Durability::EveryWrite,
        _ => Durability::Periodic(Duration::from_millis(2)),
    };
    block_on(async move {
        let tier = open(&dir, durability).await;
        let mut out = std::io::stdout().lock();
        writeln!(out, "\nready").unwrap();
        out.flush().unwrap();
        // A child that is somehow never killed stops on its own.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for round in start.. {
            if std::time::Instant::now() > deadline {
                break;
            }
            for (k, op) in round_ops(round) {
                match op {
                    Some(v) => assert!(tier.put(key(k), Entry::new(v)).await.unwrap().is_stored()),
                    None => tier.remove(&key(k)).await.unwrap(),
                }
            }
            tier.flush().await.unwrap();
            writeln!(out, "ack {round}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let kills: usize =
        std::env::var("NVME_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(0xc0ffee);
    let mut model: HashMap<u32, Option<Bytes>> = (0..KEYS).map(|k| (k, None)).collect();
    let mut next_round = 0u64;
    let (mut acked_rounds, mut partial_seen) = (0u64, 0u64);
    for iteration in 0..kills {
        let durability = ["none", "periodic", "every"][iteration % 3];
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir_str)
            .env(START_ENV, next_round.to_string())
            .env(DURABILITY_ENV, durability)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        loop {
            let line = rx.recv_timeout(Duration::from_secs(20)).expect("child never got ready");
            // libtest may print "test crash_child ... " before the child's first line.
            let ready = line.ends_with("ready");
            lines.push(line);
            if ready {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..15_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let last_ack =
            lines.iter().filter_map(|l| l.strip_prefix("ack ")?.parse::<u64>().ok()).max();
        // Rounds next_round..=acked are acknowledged; round `pending` may be partly applied.
        let (pending, acked_through) = match last_ack {
            Some(r) => (r + 1, Some(r)),
            None => (next_round, None),
        };
        if let Some(r) = acked_through {
            for round in next_round..=r {
                for (k, op) in round_ops(round) {
                    model.insert(k, op);
                }
                acked_rounds += 1;
            }
        }
        let pending_ops: HashMap<u32, Option<Bytes>> = round_ops(pending).into_iter().collect();
        block_on(async {
            let tier = open(&dir_str, Durability::None).await;
            for k in 0..KEYS {
                let got = tier.get(&key(k)).await.unwrap().map(|e| e.value);
                let durable = &model[&k];
                let in_flight = pending_ops.get(&k);
                let ok = &got == durable || in_flight.is_some_and(|v| &got == v);
                assert!(
                    ok,
                    "iteration {iteration} ({durability}), key {k}: read {got:?}, acknowledged \
                     {durable:?}, in flight {in_flight:?}"
                );
                if &got != durable {
                    partial_seen += 1;
                }
                model.insert(k, got);
            }
            assert_eq!(tier.stats().corrupted, 0, "a crash is not corruption");
            // Alternate clean closes (snapshot path next time) and drops (scan path).
            if iteration % 2 == 0 {
                tier.close().await.unwrap();
            }
        });
        next_round = pending + 1;
    }
    assert!(acked_rounds > 0, "the children acknowledged some rounds");
    let mut out = std::io::stderr().lock();
    writeln!(
        out,
        "{kills} kills, {acked_rounds} acknowledged rounds, {partial_seen} in-flight values seen"
    )
    .unwrap();
}
