//! Project automation for the tiered cache, run as `cargo xtask <task>`.
//!
//! Tasks (one module each):
//!
//! - `ci [--fast] [--fail-fast] [--only STEP,...]`: the whole CI recipe (see `ci.rs`): a check of the
//!   prerequisites, then fmt, clippy, doc, the feature check, nextest, doctests, tidy,
//!   cargo-deny, the quick torture run and the bench smoke; `.ci/run` (which first installs what
//!   a fresh machine lacks) and the GitHub workflow both call it.
//! - `tidy`: dependency-direction, manifest (lints, MSRV, unused dependencies) and `//!` header
//!   rules (see `tidy.rs`); also a `#[test]`, so `cargo nextest run` enforces it.
//! - `s3 start|stop|env|status`: a throw-away SeaweedFS S3 server on 127.0.0.1 for the
//!   integration tests in `tests/` (see `s3.rs`).
//! - `redis start|stop|env|status`: a throw-away `redis-server` on 127.0.0.1 for the Redis
//!   tier's tests (see `redis.rs`).
//! - `torture [--quick] [-- ARGS]`: the reliability campaigns (crash, corruption, outage, full
//!   disk, fuzzing, hostile input, secrets) of the `cache-torture` binary (see `torture.rs`).
//! - `bench [--quick | --micro] [ARGS...]`: the `cache-bench` report (trace replays and the
//!   side-by-side comparison), or with `--micro` the criterion benches (see `bench.rs`).
//!
//! Keep this crate's dependencies to `anyhow`, `serde_json` and `xshell`: it is built before
//! anything else in CI, so every dependency here delays every CI run.

// A command-line tool reports to the terminal; this is the only crate allowed to print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod redis;
mod s3;
mod state_file;
mod tidy;
mod torture;

use std::{
    env,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Result, bail};
use xshell::Shell;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  ci [--fast] [--fail-fast] [--only STEP,...]
                              run the CI recipe: check the prerequisites, then fmt, clippy,
                              doc, features (each crate, each feature alone), nextest (with a
                              local S3 server), doctests, tidy, deny (cargo-deny: licenses,
                              bans, sources), torture --quick, bench smoke
                              --fast: skip clippy, doc, features, deny and the bench smoke
                              --fail-fast: stop at the first failing step
                              --only STEP,...: run only the named steps
  tidy                        check dependency direction, manifests (lints, rust-version,
                              unused dependencies) and `//!` file headers
  s3 start|stop|env|status    manage the local SeaweedFS S3 server used by `tests/`
  redis start|stop|env|status manage the local redis-server used by the Redis tier's tests
  torture [--quick] [-- ARGS] the reliability campaigns; --quick: the short form CI runs;
                              report in target/torture/ (full run: copy into RELIABILITY.md)
  bench [--quick|--micro]     the cache-bench report (trace replays, comparison with moka
                              and foyer); --micro: the criterion benches
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("ci") => ci::run(&rest),
        Some("tidy") => {
            if !rest.is_empty() {
                bail!("`tidy` takes no arguments\n\n{USAGE}");
            }
            tidy::run()
        }
        Some("s3") => s3::run(&rest),
        Some("redis") => redis::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("torture") => torture::run(&rest),
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}

/// The workspace root (the parent of this crate's directory).
fn project_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// The cargo binary that runs us (`CARGO`), so nested calls use the same toolchain.
fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The build directory: `CARGO_TARGET_DIR` if set, else `target/` under the root.
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => project_root().join(dir),
        None => project_root().join("target"),
    }
}

/// A shell rooted at the workspace root.
fn shell() -> Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    Ok(sh)
}
