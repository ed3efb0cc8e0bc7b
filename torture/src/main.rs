//! `cache-torture`: the reliability campaigns behind `cargo xtask torture [--quick]`.
//!
//! Each campaign is one module with a `run(&Ctx) -> Result<Section>` function; `main` runs the
//! selected ones in order, prints every section as Markdown, writes the whole report to `--out`,
//! and exits non-zero when any campaign recorded a failure (a wrong value served, an
//! acknowledged entry lost, a panic, an undetected corruption, a stall past the timeout, ...).
//!
//! The crash campaign re-runs this binary as its child process (`cache-torture crash-child
//! ...`), so the child drives the tier in a separate process that can be killed with SIGKILL; the
//! power-loss campaign does the same (`power-child`) with the NVMe tier's IO journal on.

// A command-line tool reports to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod corruption;
mod crash;
mod full_disk;
mod fuzz;
mod hostile;
mod outage;
mod power;
mod report;
mod secrets;
mod soak;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::Result;
use clap::{Parser, ValueEnum};

use crate::report::{Report, Section};

/// The campaigns, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Campaign {
    Crash,
    Power,
    Corruption,
    Outage,
    FullDisk,
    Fuzz,
    Hostile,
    Secrets,
    Soak,
}

impl Campaign {
    /// What runs without `--only`: everything; the soak only in the quick form (its 2-minute
    /// run), since its full form takes an hour of its own (`--only soak`).
    fn default_set(quick: bool) -> Vec<Campaign> {
        Campaign::ALL.into_iter().filter(|c| quick || *c != Campaign::Soak).collect()
    }

    const ALL: [Campaign; 9] = [
        Campaign::Crash,
        Campaign::Power,
        Campaign::Corruption,
        Campaign::Outage,
        Campaign::FullDisk,
        Campaign::Fuzz,
        Campaign::Hostile,
        Campaign::Secrets,
        Campaign::Soak,
    ];

    fn run(self, ctx: &Ctx) -> Result<Section> {
        match self {
            Campaign::Crash => crash::run(ctx),
            Campaign::Power => power::run(ctx),
            Campaign::Corruption => corruption::run(ctx),
            Campaign::Outage => outage::run(ctx),
            Campaign::FullDisk => full_disk::run(ctx),
            Campaign::Fuzz => fuzz::run(ctx),
            Campaign::Hostile => hostile::run(ctx),
            Campaign::Secrets => secrets::run(ctx),
            Campaign::Soak => soak::run(ctx),
        }
    }
}

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(name = "cache-torture", about = "Reliability campaigns for the tiered cache")]
struct Args {
    /// The short form that runs in CI (a few minutes in a debug build).
    #[arg(long)]
    quick: bool,
    /// Run only these campaigns (comma-separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Campaign>,
    /// Seed for every random choice; default: derived from the time, and printed.
    #[arg(long)]
    seed: Option<u64>,
    /// Where to write the Markdown report.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Scratch directory for tier directories (default: a fresh temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Length of the soak in seconds (default: 120 in the quick form, 3600 in the full one).
    #[arg(long)]
    soak_secs: Option<u64>,
}

/// What every campaign gets.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The short CI form.
    pub(crate) quick: bool,
    /// Seed for every random choice.
    pub(crate) seed: u64,
    /// A scratch directory the campaign may fill (removed at the end).
    pub(crate) work_dir: PathBuf,
    /// This binary, for campaigns that run a child process.
    pub(crate) exe: PathBuf,
    /// The soak's length, if given (`--soak-secs`).
    pub(crate) soak: Option<std::time::Duration>,
    /// The report's directory (of `--out`), where campaigns put extra files (the soak's plot).
    pub(crate) out_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("crash-child") {
        return match crash::child_main(&raw[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crash-child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if raw.get(1).map(String::as_str) == Some("power-child") {
        return match power::child_main(&raw[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("power-child: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if raw.get(1).map(String::as_str) == Some("hostile-child") {
        // Output is read by the parent; the exit status says whether the tier opened.
        return match hostile::child_main(&raw[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the campaigns; `Ok(false)` when any of them recorded a failure.
fn run(args: Args) -> Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id())
    });
    let scratch = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new().prefix("torture-").tempdir_in(dir)?
        }
        None => tempfile::Builder::new().prefix("torture-").tempdir()?,
    };
    let ctx = Ctx {
        quick: args.quick,
        seed,
        work_dir: scratch.path().to_path_buf(),
        exe: std::env::current_exe()?,
        soak: args.soak_secs.map(std::time::Duration::from_secs),
        out_dir: args.out.as_ref().and_then(|o| o.parent()).map(Path::to_path_buf),
    };
    let campaigns =
        if args.only.is_empty() { Campaign::default_set(args.quick) } else { args.only };
    let mut report = Report::new(args.quick, seed);
    eprintln!("cache-torture: {} form, seed {seed}", if args.quick { "quick" } else { "full" });
    for campaign in campaigns {
        eprintln!("==> {campaign:?}");
        let started = Instant::now();
        let section = match campaign.run(&ctx) {
            Ok(section) => section,
            Err(e) => Section::errored(format!("{campaign:?}"), &e),
        };
        let section = section.took(started.elapsed());
        println!("{}", section.to_markdown());
        report.push(section);
    }
    let markdown = report.to_markdown();
    if let Some(out) = &args.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, &markdown)?;
        eprintln!("report written to {}", out.display());
    }
    let failures = report.failures();
    if failures.is_empty() {
        eprintln!("cache-torture: all campaigns passed");
        Ok(true)
    } else {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        Ok(false)
    }
}
