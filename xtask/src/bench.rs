//! `cargo xtask bench [--quick] [ARGS...]`: runs the criterion benches of `cache-bench`.
//!
//! Today this runs the `l1_get_hit` bench; `--quick` shortens criterion's warm-up and
//! measurement (1 s + 3 s per benchmark) for a first look, and any other arguments go to
//! criterion (e.g. a benchmark name filter, `--save-baseline NAME`, `--baseline NAME`).
//! Benches build in the release-like `bench` profile; numbers on the 2-core shared machines are
//! noisy (±20 %), so compare medians from runs made back to back.

use anyhow::Result;
use xshell::cmd;

/// The criterion bench this task runs.
const BENCH: &str = "l1_get_hit";

/// Runs `cargo xtask bench <args>`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut criterion_args: Vec<&str> =
        args.iter().map(String::as_str).filter(|a| *a != "--quick").collect();
    if quick {
        criterion_args.extend(["--warm-up-time", "1", "--measurement-time", "3"]);
    }
    let sh = crate::shell()?;
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} bench -p cache-bench --bench {BENCH} -- {criterion_args...}").run()?;
    Ok(())
}
