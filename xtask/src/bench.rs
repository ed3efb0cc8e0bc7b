//! `cargo xtask bench [--quick] [--micro] [ARGS...]`: the `cache-bench` report, or the criterion
//! micro-benches.
//!
//! - `cargo xtask bench`: builds the `cache-bench` binary in release and runs
//!   `cache-bench report` on the embedded default stack (RAM + an NVMe directory under
//!   `target/bench/` + the local filesystem as object store; no server needed), then writes
//!   `docs/benchmarks.md` and prints it. The report always starts with the built-in synthetic
//!   workloads (no file needed); real traces come from `../shared/traces` if it exists, else
//!   from `$TIERED_CACHE_TRACES` (cache-bench picks the default; missing traces are listed once
//!   with where to download them). Extra arguments go to `cache-bench report` (e.g. `--out
//!   PATH`, `--traces DIR`, `--strict` to fail on a hit ratio above the optimum).
//! - `--quick`: fewer capacities and a shorter comparison (a couple of minutes on 2 cores); the
//!   report goes to `target/bench/benchmarks-quick.md` unless `--out` is given.
//! - `--micro [ARGS...]`: the criterion bench `l1_get_hit` as before; `--quick` then shortens
//!   criterion's warm-up and measurement (1 s + 3 s), and ARGS go to criterion.
//!
//! Numbers on the 2-core shared machines are noisy (±20 %): compare runs made back to back.

use anyhow::Result;
use xshell::cmd;

/// The criterion bench `--micro` runs.
const BENCH: &str = "l1_get_hit";

/// Runs `cargo xtask bench <args>`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let micro = args.iter().any(|a| a == "--micro");
    let rest: Vec<&str> =
        args.iter().map(String::as_str).filter(|a| !matches!(*a, "--quick" | "--micro")).collect();
    let sh = crate::shell()?;
    let cargo = crate::cargo();
    if micro {
        let mut criterion_args = rest;
        if quick {
            criterion_args.extend(["--warm-up-time", "1", "--measurement-time", "3"]);
        }
        cmd!(sh, "{cargo} bench -p cache-bench --bench {BENCH} -- {criterion_args...}").run()?;
        return Ok(());
    }
    cmd!(sh, "{cargo} build --release -p cache-bench --bin cache-bench").run()?;
    let bin = crate::target_dir().join("release").join("cache-bench");
    let mut report_args: Vec<&str> = vec!["report"];
    if quick {
        report_args.push("--quick");
    }
    if !rest.contains(&"--out") {
        report_args.extend([
            "--out",
            if quick { "target/bench/benchmarks-quick.md" } else { "docs/benchmarks.md" },
        ]);
    }
    report_args.extend(rest);
    cmd!(sh, "{bin} {report_args...}").run()?;
    Ok(())
}
