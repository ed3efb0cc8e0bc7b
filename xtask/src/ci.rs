//! `cargo xtask ci [--fast] [--fail-fast]`: the CI recipe, the same locally, in `.ci/run` and
//! in GitHub Actions.
//!
//! Steps, in order:
//!
//! 1. `fmt`: `cargo fmt --all --check`
//! 2. `clippy`: `cargo clippy --workspace --all-targets --all-features -- -D warnings`
//! 3. `doc`: `RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
//!    --exclude cache-l2-rocks`. A doc build resolves features without dev-dependencies, which
//!    changes the build of `librocksdb-sys` and would compile RocksDB's C++ a second time (about
//!    ten minutes here); clippy's `missing_docs` still covers that crate
//! 4. `nextest`: `cargo nextest run --workspace --all-features --profile ci`, with an S3 server
//!    for the integration tests in `tests/`: the one named by `AWS_ENDPOINT` and `S3_BUCKET` if
//!    both are set (MinIO in GitHub Actions), else a local SeaweedFS that this step starts (or
//!    reuses, see `s3.rs`), with its variables exported to the tests
//! 5. `doctest`: `cargo test --doc --workspace --all-features` (nextest does not run doctests)
//! 6. `tidy`: `cargo xtask tidy`, in process
//! 7. `bench-smoke`: see [`bench_smoke`]
//!
//! `--fast` skips `clippy`, `doc` and `bench-smoke`, keeping the steps that catch broken
//! behaviour (formatting, all tests, doctests, tidy): run `cargo xtask ci --fast` before a
//! push, and let CI run the rest. Every step runs even after a failure, so one run reports
//! everything; `--fail-fast` stops at the first failure instead. A server this run started is
//! stopped at the end, also on failure or panic (it lives in a guard).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

use crate::s3::TestServer;

/// What every step gets.
struct Ctx {
    sh: Shell,
    cargo: String,
    /// The S3 server for the tests; dropping it stops a server this run started.
    s3: Option<TestServer>,
}

/// One step of the recipe.
struct Step {
    name: &'static str,
    /// The command, for the step header.
    display: &'static str,
    /// Skipped by `--fast`.
    slow: bool,
    run: fn(&mut Ctx) -> Result<()>,
}

const STEPS: &[Step] = &[
    Step { name: "fmt", display: "cargo fmt --all --check", slow: false, run: fmt },
    Step {
        name: "clippy",
        display: "cargo clippy --workspace --all-targets --all-features -- -D warnings",
        slow: true,
        run: clippy,
    },
    Step {
        name: "doc",
        display: "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps --all-features --exclude cache-l2-rocks",
        slow: true,
        run: doc,
    },
    Step {
        name: "nextest",
        display: "cargo nextest run --workspace --all-features --profile ci (with an S3 server)",
        slow: false,
        run: nextest,
    },
    Step {
        name: "doctest",
        display: "cargo test --doc --workspace --all-features",
        slow: false,
        run: doctest,
    },
    Step { name: "tidy", display: "cargo xtask tidy", slow: false, run: tidy },
    Step {
        name: "torture",
        display: "cargo xtask torture --quick (reliability campaigns, dev profile)",
        slow: false,
        run: torture,
    },
    Step {
        name: "bench-smoke",
        display: "cargo test --benches --no-run; cache-bench run/replay/compare/report, tiny",
        slow: true,
        run: bench_smoke,
    },
];

/// How a step ended.
enum Outcome {
    Passed(Duration),
    Failed(Duration, anyhow::Error),
    Skipped(&'static str),
}

/// Runs `cargo xtask ci <args>`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let (mut fast, mut fail_fast) = (false, false);
    for arg in args {
        match arg.as_str() {
            "--fast" => fast = true,
            "--fail-fast" => fail_fast = true,
            other => {
                bail!("unknown option `{other}`; usage: cargo xtask ci [--fast] [--fail-fast]")
            }
        }
    }

    let start = Instant::now();
    let mut ctx = Ctx { sh: crate::shell()?, cargo: crate::cargo(), s3: None };
    let mut outcomes = Vec::new();
    let mut stopped = false;
    for (i, step) in STEPS.iter().enumerate() {
        if stopped {
            outcomes.push(Outcome::Skipped("not run (--fail-fast)"));
            continue;
        }
        if fast && step.slow {
            outcomes.push(Outcome::Skipped("skipped (--fast)"));
            continue;
        }
        eprintln!("\n==> [{}/{}] {}: {}", i + 1, STEPS.len(), step.name, step.display);
        let step_start = Instant::now();
        let result = (step.run)(&mut ctx);
        let took = step_start.elapsed();
        match result {
            Ok(()) => {
                eprintln!("<== {}: ok in {:.1}s", step.name, took.as_secs_f64());
                outcomes.push(Outcome::Passed(took));
            }
            Err(e) => {
                eprintln!("<== {}: FAILED in {:.1}s: {e:#}", step.name, took.as_secs_f64());
                outcomes.push(Outcome::Failed(took, e));
                stopped = fail_fast;
            }
        }
    }
    // Stop the S3 server (if this run started it) before the summary.
    drop(ctx);

    eprintln!("\n==> summary");
    let mut failed = Vec::new();
    for (step, outcome) in STEPS.iter().zip(&outcomes) {
        match outcome {
            Outcome::Passed(took) => {
                eprintln!("  {:<12} ok      {:>7.1}s", step.name, took.as_secs_f64())
            }
            Outcome::Failed(took, e) => {
                eprintln!("  {:<12} FAILED  {:>7.1}s  {e:#}", step.name, took.as_secs_f64());
                failed.push(step.name);
            }
            Outcome::Skipped(why) => eprintln!("  {:<12} {why}", step.name),
        }
    }
    eprintln!("  total {:.1}s", start.elapsed().as_secs_f64());
    if failed.is_empty() { Ok(()) } else { bail!("ci failed: {}", failed.join(", ")) }
}

fn fmt(ctx: &mut Ctx) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    cmd!(sh, "{cargo} fmt --all --check").run()?;
    Ok(())
}

fn clippy(ctx: &mut Ctx) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    cmd!(sh, "{cargo} clippy --workspace --all-targets --all-features -- -D warnings").run()?;
    Ok(())
}

fn doc(ctx: &mut Ctx) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    cmd!(sh, "{cargo} doc --workspace --no-deps --all-features --exclude cache-l2-rocks")
        .env("RUSTDOCFLAGS", "-D warnings")
        .run()?;
    Ok(())
}

fn nextest(ctx: &mut Ctx) -> Result<()> {
    if ctx.s3.is_none() {
        ctx.s3 = Some(TestServer::for_tests(&ctx.sh)?);
    }
    let Ctx { sh, cargo, s3 } = ctx;
    let mut command = cmd!(sh, "{cargo} nextest run --workspace --all-features --profile ci");
    for (name, value) in s3.as_ref().map(TestServer::env).unwrap_or_default() {
        command = command.env(name, value);
    }
    command.run()?;
    Ok(())
}

fn doctest(ctx: &mut Ctx) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    cmd!(sh, "{cargo} test --doc --workspace --all-features").run()?;
    Ok(())
}

fn torture(ctx: &mut Ctx) -> Result<()> {
    if ctx.s3.is_none() {
        ctx.s3 = Some(TestServer::for_tests(&ctx.sh)?);
    }
    let Ctx { sh, s3, .. } = ctx;
    crate::torture::run_with(sh, true, &[], s3.as_ref().map(TestServer::env).unwrap_or_default())
}

fn tidy(_: &mut Ctx) -> Result<()> {
    crate::tidy::run()
}

/// BENCH SMOKE STEP: compiles every bench target, then runs each `cache-bench` subcommand once
/// with tiny sizes (well under a minute in all).
///
/// Everything is built with `cargo test`/`cargo run` (the dev profile the `nextest` step already
/// built), not `cargo bench` or `--release`: a release build of RocksDB and foyer alone costs
/// about ten minutes on the 2-core CI machines. The smoke writes its results under
/// `target/bench/smoke/` (never `docs/`), and `replay` reads a small CSV trace it writes there, so
/// the step does not need the shared traces (the `report` smoke skips traces that are missing).
fn bench_smoke(ctx: &mut Ctx) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    cmd!(sh, "{cargo} test --workspace --all-features --benches --no-run").run()?;
    let out = crate::target_dir().join("bench").join("smoke");
    std::fs::create_dir_all(&out)?;
    let trace = out.join("smoke-trace.csv");
    let mut csv = String::from("id,size\n");
    for i in 0u64..5000 {
        // A skewed little trace: ids repeat with period 97 and 1009.
        let id = if i % 3 == 0 { i % 97 } else { i % 1009 };
        csv.push_str(&format!("{id},{}\n", 256 + (id % 7) * 512));
    }
    std::fs::write(&trace, csv)?;
    let _env = sh.push_env("CACHE_BENCH_OUT", &out);
    let bench = |args: &[&str]| {
        cmd!(sh, "{cargo} run -q -p cache-bench --bin cache-bench -- {args...}").run()
    };
    let tiny = ["--keys", "2000", "--ops", "3000", "--ram", "1MiB", "--disk", "4MiB"];
    let trace = trace.to_str().unwrap_or("target/bench/smoke/smoke-trace.csv");
    let started = Instant::now();
    bench(&[&["run", "--system", "tiered"][..], &tiny].concat())?;
    bench(&["replay", "--trace", trace, "--capacity", "100,400,1MiB"])?;
    bench(&[&["compare"][..], &tiny].concat())?;
    bench(&[
        "report",
        "--quick",
        "--limit",
        "2000",
        "--compare-ops",
        "2000",
        "--traces",
        "../shared/traces",
    ])?;
    println!("bench smoke: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
