//! The reference LRU and FIFO reproduce the published numbers of the shared traces' README.
//!
//! The traces are read from `../shared/traces/` beside the repository. Without that directory
//! the tests fail under `CI=true` (CI must never skip them silently) and skip with a printed
//! reason otherwise.

use std::path::PathBuf;

use cache_bench::{
    reference::{Capacity, Policy, simulate},
    trace::{Request, TraceFormat, load},
};

const MIB: u64 = 1 << 20;

/// The traces directory, or `None` (with the reason printed) when it is missing outside CI.
fn traces_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    if dir.join("README.md").is_file() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true but the shared traces are missing: expected {} (the `shared/` directory \
         beside the repository, with OLTP.lis.zst and cloudPhysicsIO.oracleGeneral.bin)",
        dir.display()
    );
    #[expect(clippy::print_stderr, reason = "the reason a test is skipped")]
    {
        eprintln!(
            "SKIPPED: the shared traces are not at {} (set CI=true to make this a failure)",
            dir.display()
        );
    }
    None
}

fn trace(name: &str, format: TraceFormat) -> Option<Vec<Request>> {
    let path = traces_dir()?.join(name);
    Some(load(&path, format).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
}

/// Hit % with two decimals, as the README prints it.
fn pct(hits: u64, total: u64) -> String {
    format!("{:.2}", hits as f64 * 100.0 / total as f64)
}

#[test]
fn oltp_lru_entries() {
    let Some(t) = trace("OLTP.lis.zst", TraceFormat::Arc) else { return };
    assert_eq!(t.len(), 914_145);
    for (entries, expected) in
        [(250, "16.47"), (500, "23.45"), (1000, "32.83"), (2000, "42.47"), (5000, "53.65")]
    {
        let r = simulate(&t, Policy::Lru, Capacity::Entries(entries));
        assert_eq!(pct(r.hits, t.len() as u64), expected, "OLTP LRU @{entries} entries");
    }
}

#[test]
fn cloudphysics_lru_and_fifo_bytes() {
    let Some(t) = trace("cloudPhysicsIO.oracleGeneral.bin", TraceFormat::OracleGeneral) else {
        return;
    };
    assert_eq!(t.len(), 113_872);
    let rows = [
        (Policy::Lru, [93_374, 89_783, 81_722, 71_704]),
        (Policy::Fifo, [93_403, 89_386, 84_025, 72_140]),
    ];
    for (policy, misses) in rows {
        for (mib, expected) in [128, 256, 512, 1024].into_iter().zip(misses) {
            let r = simulate(&t, policy, Capacity::Bytes(mib * MIB));
            assert_eq!(r.misses, expected, "cloudPhysicsIO {} @{mib} MiB", policy.name());
        }
    }
}

#[test]
fn web07_lru_entries() {
    let Some(t) = trace("web07.trace.xz", TraceFormat::Cache2k) else { return };
    assert_eq!(t.len(), 76_118);
    for (entries, expected) in [(1000, "50.41"), (5000, "62.67")] {
        let r = simulate(&t, Policy::Lru, Capacity::Entries(entries));
        assert_eq!(pct(r.hits, t.len() as u64), expected, "web07 LRU @{entries}");
    }
}

#[test]
#[ignore = "slow: run with --ignored"]
fn orm_busy_lru_entries() {
    let Some(t) = trace("orm-busy.trace.xz", TraceFormat::Cache2k) else { return };
    assert_eq!(t.len(), 5_000_000);
    for (entries, expected) in [(5000, "85.46"), (20_000, "93.60")] {
        let r = simulate(&t, Policy::Lru, Capacity::Entries(entries));
        assert_eq!(pct(r.hits, t.len() as u64), expected, "orm-busy LRU @{entries}");
    }
}
