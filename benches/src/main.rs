//! `cache-bench`: synthetic workloads, trace replay, cross-system comparison and the report.
//!
//! ```text
//! cache-bench run      [workload flags] [--system tiered] [--ram 64MiB --disk 256MiB] [--config FILE]
//! cache-bench replay   --trace PATH [--format FORMAT] | --workload NAME   --capacity 1000,2000 | 128MiB [--strict]
//! cache-bench compare  [workload flags] [--systems tiered,l1,nvme,object,moka,foyer,object-store]
//! cache-bench report   [--traces DIR] [--quick] [--out docs/benchmarks.md] [--strict]
//! cache-bench compression [--values 2000] [--rounds 5]
//! cache-bench read-through [--quick]
//! cache-bench traces   fetch|verify [--dir DIR]
//! ```
//!
//! Built-in workloads (`--workload`): zipf-0.7, zipf-0.9, zipf-1.1, scan, loop, shift. Trace
//! formats (`--format`, guessed from the name where possible): arc, oracle-general, cache2k,
//! u32be, u64be, csv (`--csv-key-col`, `--csv-size-col`, `--csv-delimiter`), txt, lirs,
//! adapt-size, meta-kv. See `benches/README.md`.
//!
//! Results go to `target/bench/*.json` (and SVG plots beside them); tables go to stdout.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports to the terminal"
)]

mod compression;
mod output;
mod read_through;
mod replay;
mod systems;
mod traces;
mod workload;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::{
    output::{table, write_json},
    replay::{ReplayArgs, parse_size},
    systems::{Budgets, System, SystemKind},
    workload::{RunResult, Workload},
};

#[derive(Debug, Parser)]
#[command(
    name = "cache-bench",
    about = "Workloads, trace replays and comparisons of the tiered cache"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A synthetic workload through one system.
    Run(RunArgs),
    /// Replays a real trace at one or more capacities (a list gives a miss-ratio curve).
    Replay(ReplayArgs),
    /// One synthetic workload through several systems in the same run, as ratios to a baseline.
    Compare(CompareArgs),
    /// Every known trace at its README capacities, plus a comparison, as Markdown.
    Report(replay::ReportArgs),
    /// Downloads (`fetch`) or checks (`verify`) the known real traces.
    Traces(traces::TracesArgs),
    /// What per-record compression saves and costs, per codec, on generated realistic values.
    Compression(compression::CompressionArgs),
    /// `CachedObjectStore` (RAM → NVMe) against reading its origin directly, on a Parquet-like
    /// read pattern; origins: a local directory, the same behind a simulated remote latency,
    /// and S3 when `AWS_ENDPOINT` and `S3_BUCKET` are set.
    ReadThrough(read_through::ReadThroughArgs),
}

/// The budgets of a run, from flags or the TOML file.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
struct StackArgs {
    /// RAM budget (e.g. `64MiB`).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    ram: u64,
    /// Disk budget of the NVMe tier and of foyer's disk (e.g. `256MiB`).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    disk: u64,
    /// Where the disk tiers put their files (default `target/bench/data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Disk reads bypass the page cache, so a disk hit costs a device read: the NVMe tier
    /// reads hits with `O_DIRECT` (`NvmeTierBuilder::direct_reads`) and foyer opens its device
    /// files with `O_DIRECT`. The data directory must be on a filesystem that has it.
    #[arg(long)]
    direct_reads: bool,
}

impl Default for StackArgs {
    fn default() -> StackArgs {
        StackArgs { ram: 64 << 20, disk: 256 << 20, data_dir: None, direct_reads: false }
    }
}

impl StackArgs {
    fn budgets(&self) -> Budgets {
        Budgets { ram: self.ram, disk: self.disk, direct_reads: self.direct_reads }
    }
    fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| output::out_dir().join("data"))
    }
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    workload: Workload,
    #[command(flatten)]
    stack: StackArgs,
    /// The system to run.
    #[arg(long, value_enum, default_value_t = SystemKind::Tiered)]
    system: SystemKind,
    /// A TOML file with a `[workload]` and a `[stack]` table (and `system = "tiered"`); it
    /// replaces the flags' values.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RunFile {
    workload: Option<Workload>,
    stack: Option<StackArgs>,
    system: Option<SystemKind>,
}

#[derive(Debug, Clone, clap::Args)]
struct CompareArgs {
    #[command(flatten)]
    workload: Workload,
    #[command(flatten)]
    stack: StackArgs,
    /// The systems, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tiered,l1,nvme,object,moka,foyer,object-store"
    )]
    systems: Vec<SystemKind>,
    /// The system the ratios are relative to.
    #[arg(long, value_enum, default_value_t = SystemKind::Moka)]
    baseline: SystemKind,
    /// Runs of each system, interleaved (system A, B, C, then A, B, C again, ...). Each row
    /// reports the median run, and each ratio is the median of the per-round ratios.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Traces(args) = cli.command {
        return traces::run(args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Replay(args) => replay::replay(args).await,
            Command::Compare(args) => {
                let results = compare(&args).await?;
                println!("{}", compare_table(&results, args.baseline.name()));
                Ok(())
            }
            Command::Report(args) => replay::report(args).await,
            Command::Compression(args) => compression::run(args).await,
            Command::ReadThrough(args) => read_through::run(args).await,
            Command::Traces(_) => unreachable!("handled before the runtime"),
        }
    })
}

/// A progress bar over `total` steps fed from `counter` until the returned handle is aborted.
pub(crate) fn progress(
    label: &str,
    total: u64,
    counter: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    // A fixed count gets a bar; a timed run (total 0) gets a counter.
    let (bar, template) = if total > 0 {
        (ProgressBar::new(total), "{msg:>24} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
    } else {
        (ProgressBar::no_length(), "{msg:>24} {spinner} {pos} ops {per_sec} {elapsed}")
    };
    bar.set_style(
        ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    tokio::spawn(async move {
        struct Finish(ProgressBar);
        impl Drop for Finish {
            fn drop(&mut self) {
                self.0.finish_and_clear();
            }
        }
        let bar = Finish(bar);
        loop {
            bar.0.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn run_one(kind: SystemKind, w: &Workload, stack: &StackArgs) -> Result<RunResult> {
    let system = Arc::new(System::build(kind, stack.budgets(), &stack.dir()).await?);
    let counter = Arc::new(AtomicU64::new(0));
    let total = match w.duration_secs {
        Some(_) => 0,
        None => w.ops,
    };
    let bar = progress(kind.name(), total, counter.clone());
    let rec = workload::drive(system.clone(), w, counter).await;
    bar.abort();
    let _ = bar.await;
    let rec = rec.with_context(|| format!("running {}", kind.name()))?;
    system.settle().await?;
    for line in system.tier_lines() {
        tracing_line(&line);
    }
    let result = RunResult::new(kind.name(), &rec, system.tier_served());
    if let Ok(system) = Arc::try_unwrap(system) {
        system.close().await?;
    }
    Ok(result)
}

/// Prints a per-tier line to stderr when `CACHE_BENCH_VERBOSE` is set.
fn tracing_line(line: &str) {
    if std::env::var_os("CACHE_BENCH_VERBOSE").is_some() {
        eprintln!("  {line}");
    }
}

fn run_table(results: &[RunResult]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.system.clone(),
                format!("{}", r.ops),
                format!("{:.0}", r.ops_per_s),
                format!("{:.2}", r.hit_ratio * 100.0),
                format!("{:.1}", r.get_p50_us),
                format!("{:.1}", r.get_p99_us),
                format!("{:.1}", r.get_p999_us),
                format!("{:.1}", r.put_p50_us),
                format!("{:.1}", r.put_p99_us),
            ]
        })
        .collect();
    table(
        &[
            "system",
            "ops",
            "ops/s",
            "hit %",
            "get p50 µs",
            "get p99 µs",
            "get p99.9 µs",
            "put p50 µs",
            "put p99 µs",
        ],
        &rows,
    )
}

async fn run(mut args: RunArgs) -> Result<()> {
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: RunFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(w) = file.workload {
            args.workload = w;
        }
        if let Some(s) = file.stack {
            args.stack = s;
        }
        if let Some(s) = file.system {
            args.system = s;
        }
    }
    let result = run_one(args.system, &args.workload, &args.stack).await?;
    println!("{}", run_table(std::slice::from_ref(&result)));
    for (tier, served) in &result.served_by_tier {
        println!("  served by {tier}: {served}");
    }
    let path = write_json(
        "run.json",
        &serde_json::json!({ "workload": args.workload, "stack": args.stack, "result": result }),
    )?;
    println!("results: {}", path.display());
    Ok(())
}

/// Runs the comparison and writes `compare.json` and `compare-latency.svg`.
pub(crate) async fn compare(args: &CompareArgs) -> Result<Vec<RunResult>> {
    if args.systems.is_empty() {
        bail!("no systems to compare");
    }
    let rounds = args.repeat.max(1);
    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); args.systems.len()];
    for round in 0..rounds {
        for (i, &kind) in args.systems.iter().enumerate() {
            eprintln!("compare: {} (round {}/{rounds}) ...", kind.name(), round + 1);
            runs[i].push(run_one(kind, &args.workload, &args.stack).await?);
        }
    }
    let results: Vec<RunResult> = runs.into_iter().map(RunResult::median_of).collect();
    write_json(
        "compare.json",
        &serde_json::json!({
            "workload": args.workload,
            "stack": args.stack,
            "baseline": args.baseline.name(),
            "results": results,
        }),
    )?;
    let series: Vec<output::Series> = results
        .iter()
        .map(|r| (r.system.clone(), r.get_cdf.iter().map(|&(p, us)| (us.max(0.01), p)).collect()))
        .collect();
    output::line_chart(
        &output::out_dir().join("compare-latency.svg"),
        "get latency CDF",
        "latency (µs, log)",
        "percentile",
        &series,
        true,
    )?;
    Ok(results)
}

/// The comparison table with throughput and p99 ratios to `baseline`.
pub(crate) fn compare_table(results: &[RunResult], baseline: &str) -> String {
    let base = results.iter().find(|r| r.system == baseline);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let ratio = |f: fn(&RunResult) -> f64| {
                base.map_or_else(|| "–".to_owned(), |b| format!("{:.2}×", f(r) / f(b).max(1e-9)))
            };
            vec![
                r.system.clone(),
                format!("{:.0}", r.ops_per_s),
                base.map_or_else(|| "–".to_owned(), |b| format!("{:.2}×", r.throughput_ratio(b))),
                format!("{:.2}", r.hit_ratio * 100.0),
                format!("{:.1}", r.get_p50_us),
                format!("{:.1}", r.get_p99_us),
                ratio(|r| r.get_p99_us),
                format!("{:.1}", r.put_p99_us),
            ]
        })
        .collect();
    table(
        &[
            "system",
            "ops/s",
            &format!("ops/s vs {baseline}"),
            "hit %",
            "get p50 µs",
            "get p99 µs",
            &format!("p99 vs {baseline}"),
            "put p99 µs",
        ],
        &rows,
    )
}
