//! `replay` and `report`: built-in workloads and real traces through the reference policies and
//! our caches, with the optimum beside every row and results above it flagged as bugs.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::{Context, Result, bail};
use cache_bench::{
    reference::{Capacity, Policy, next_accesses, simulate_with},
    synthetic,
    trace::{CsvOptions, Request, TraceFormat, load_with, summary},
};
use serde::{Deserialize, Serialize};

use crate::{
    CompareArgs, StackArgs, compare, compare_table,
    output::{self, table, write_json},
    progress,
    systems::{Budgets, System, SystemKind, l1_weight, namespace, nvme_weight},
    traces::{self, Known},
    workload::{KeyDist, Workload, value_pool},
};

/// What a trace is replayed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ReplaySystem {
    /// Exact LRU (reference).
    Lru,
    /// Exact FIFO (reference).
    Fifo,
    /// Exact S3-FIFO (reference, libCacheSim's published algorithm).
    S3Fifo,
    /// Exact ARC (reference).
    Arc,
    /// Exact SIEVE (reference).
    Sieve,
    /// Belady's farthest-next-access rule, always inserting (reference).
    Belady,
    /// The upper bound on hits at this capacity (added whenever one of our systems runs).
    Opt,
    /// Raw moka with `MemoryTier`'s weigher.
    Moka,
    /// `MemoryTier` alone.
    L1,
    /// The NVMe tier alone.
    Nvme,
    /// The NVMe tier alone, re-inserting entries hit since they were written at reclaim.
    NvmeReinsert,
    /// Our tiered stack as a small and a main queue: LRU RAM, NVMe with reinsertion written on
    /// eviction, the TinyLFU-or-second-chance filter between them, no promotion.
    Tiered,
    /// Our tiered stack with the library's default policies.
    TieredDefaults,
}

impl ReplaySystem {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ReplaySystem::Moka => "moka",
            ReplaySystem::L1 => "l1",
            ReplaySystem::Nvme => "nvme (FIFO)",
            ReplaySystem::NvmeReinsert => "nvme (reinsert hits)",
            ReplaySystem::Tiered => "tiered (ram+nvme)",
            ReplaySystem::TieredDefaults => "tiered, defaults",
            r => r.policy().map_or("?", Policy::name),
        }
    }

    /// The reference policy behind a reference row.
    pub(crate) fn policy(self) -> Option<Policy> {
        Some(match self {
            ReplaySystem::Lru => Policy::Lru,
            ReplaySystem::Fifo => Policy::Fifo,
            ReplaySystem::S3Fifo => Policy::S3Fifo,
            ReplaySystem::Arc => Policy::Arc,
            ReplaySystem::Sieve => Policy::Sieve,
            ReplaySystem::Belady => Policy::Belady,
            ReplaySystem::Opt => Policy::Opt,
            _ => return None,
        })
    }

    /// Whether this is one of our systems (or moka), whose results are checked against OPT.
    pub(crate) fn is_ours(self) -> bool {
        self.policy().is_none()
    }

    /// The reference policies, in table order.
    pub(crate) const REFERENCES: [ReplaySystem; 7] = [
        ReplaySystem::Lru,
        ReplaySystem::Fifo,
        ReplaySystem::S3Fifo,
        ReplaySystem::Arc,
        ReplaySystem::Sieve,
        ReplaySystem::Belady,
        ReplaySystem::Opt,
    ];
}

/// Parses `1000` (a count), `64KiB`, `128MiB`, `2GiB` or `512B` (bytes).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)]
        .into_iter()
        .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, m)))
        .unwrap_or((s, 1));
    num.trim().replace('_', "").parse::<u64>().map(|n| n * mult).map_err(|e| format!("{s:?}: {e}"))
}

/// `1000` is entries; `128MiB` (any byte suffix) is bytes.
fn parse_capacity(s: &str) -> Result<Capacity, String> {
    let n = parse_size(s)?;
    Ok(if s.trim().ends_with('B') { Capacity::Bytes(n) } else { Capacity::Entries(n) })
}

fn parse_workload(s: &str) -> Result<String, String> {
    match synthetic::by_name(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err(format!(
            "unknown workload {s:?}: expected one of {}",
            synthetic::names().join(", ")
        )),
    }
}

/// Flags of `replay`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The trace file (read in place; `.zst` and `.xz` are decompressed on the fly).
    #[arg(long, required_unless_present_any = ["all_traces", "workload"], conflicts_with = "workload")]
    trace: Option<PathBuf>,
    /// A built-in workload instead of a file: zipf-0.7, zipf-0.9, zipf-1.1, scan, loop, shift.
    #[arg(long, value_parser = parse_workload)]
    workload: Option<String>,
    /// Its format (guessed from the name when omitted).
    #[arg(long)]
    format: Option<TraceFormat>,
    #[command(flatten)]
    csv: CsvArgs,
    /// Capacities: `1000` (entries) or `128MiB` (bytes); several give a miss-ratio curve.
    #[arg(long, value_delimiter = ',', value_parser = parse_capacity, default_value = "1000")]
    capacity: Vec<Capacity>,
    /// What to replay through (OPT is added whenever one of our systems is listed).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "lru,fifo,s3-fifo,arc,sieve,belady,opt,moka,l1,tiered"
    )]
    systems: Vec<ReplaySystem>,
    /// Share of the tiered stack's capacity given to RAM (the rest goes to NVMe).
    #[arg(long, default_value_t = 0.1)]
    ram_fraction: f64,
    /// Replay only the first N requests.
    #[arg(long)]
    limit: Option<usize>,
    /// Replay every known trace in this directory at its README capacities instead.
    #[arg(long)]
    all_traces: Option<PathBuf>,
    /// Where the disk tiers put their files (default `target/bench/data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Exit non-zero when one of our systems hits more often than OPT (a bug, not a result).
    #[arg(long)]
    strict: bool,
}

/// Column choice of the `csv` format.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CsvArgs {
    /// `csv`: the 1-based column of the key.
    #[arg(long, default_value_t = 1)]
    csv_key_col: usize,
    /// `csv`: the 1-based column of the object size; 0 for none (every object weighs 512
    /// bytes, as does a line without that column).
    #[arg(long, default_value_t = 2)]
    csv_size_col: usize,
    /// `csv`: the field delimiter (one character; `\t` for a tab).
    #[arg(long, default_value = ",")]
    csv_delimiter: String,
    /// `csv`: the first line is a header (default: guessed, a header when its size field is
    /// not a number).
    #[arg(long, conflicts_with = "csv_no_header")]
    csv_header: bool,
    /// `csv`: the first line is data, not a header.
    #[arg(long)]
    csv_no_header: bool,
}

impl CsvArgs {
    fn options(&self) -> Result<CsvOptions> {
        let delimiter = match self.csv_delimiter.as_str() {
            "\\t" | "tab" => b'\t',
            d if d.len() == 1 => d.as_bytes()[0],
            d => bail!("--csv-delimiter must be one character, not {d:?}"),
        };
        if self.csv_key_col == 0 {
            bail!("CSV columns are counted from 1");
        }
        Ok(CsvOptions {
            key_col: self.csv_key_col - 1,
            size_col: self.csv_size_col.checked_sub(1),
            delimiter,
            header: match (self.csv_header, self.csv_no_header) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        })
    }
}

/// One replay result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReplayResult {
    pub(crate) trace: String,
    pub(crate) capacity: Capacity,
    pub(crate) system: ReplaySystem,
    pub(crate) requests: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) hit_ratio: f64,
    pub(crate) elapsed_s: f64,
    /// OPT's hits at the same capacity, when it was computed.
    #[serde(default)]
    pub(crate) opt_hits: Option<u64>,
    /// Belady's hits at the same capacity, when it was computed.
    #[serde(default)]
    pub(crate) belady_hits: Option<u64>,
}

impl ReplayResult {
    /// More hits than OPT: impossible for a cache of this capacity, so a bug.
    pub(crate) fn above_opt(&self) -> bool {
        self.system.is_ours() && self.opt_hits.is_some_and(|opt| self.hits > opt)
    }

    /// More hits than Belady's rule with a bytes capacity: possible (with sizes the rule is not
    /// optimal, and a cache may decline to insert), but worth a look.
    pub(crate) fn above_belady(&self) -> bool {
        self.system.is_ours()
            && matches!(self.capacity, Capacity::Bytes(_))
            && self.belady_hits.is_some_and(|b| self.hits > b)
    }

    /// `73.10`, `73.10 ⚠ above OPT`, or `73.10 (above Belady)`.
    pub(crate) fn cell(&self) -> String {
        if self.above_opt() {
            format!("{:.2} ⚠ above OPT", self.hit_ratio * 100.0)
        } else if self.above_belady() {
            format!("{:.2} (above Belady)", self.hit_ratio * 100.0)
        } else {
            format!("{:.2}", self.hit_ratio * 100.0)
        }
    }
}

/// The `tiered` row's gap at one (trace, capacity): its hit % minus the best of every other
/// result there except the oracles (Belady, OPT) and the library-defaults stack, and of the
/// `published` figures (again without Belady's); `+0.52 (vs S3-FIFO)`. The composition issue's line is −0.5.
fn gap_cell(results: &[ReplayResult], capacity: Capacity, published: &[(&str, f64)]) -> String {
    let at = |s: ReplaySystem| {
        results
            .iter()
            .find(|r| r.capacity == capacity && r.system == s)
            .map(|r| r.hit_ratio * 100.0)
    };
    let Some(tiered) = at(ReplaySystem::Tiered) else { return "–".into() };
    let ours = results.iter().filter(|r| {
        r.capacity == capacity
            && !matches!(
                r.system,
                ReplaySystem::Tiered
                    | ReplaySystem::TieredDefaults
                    | ReplaySystem::Belady
                    | ReplaySystem::Opt
            )
    });
    let best = ours
        .map(|r| (r.system.name(), r.hit_ratio * 100.0))
        .chain(published.iter().copied().filter(|(p, _)| !matches!(*p, "Belady" | "OPT")))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((name, v)) => format!("{:+.2} (vs {name})", tiered - v),
        None => "–".into(),
    }
}

/// Fills `opt_hits` and `belady_hits` of every result from the OPT and Belady rows of the same
/// trace and capacity.
fn mark_opt(results: &mut [ReplayResult]) {
    let of = |results: &[ReplayResult], system| -> Vec<(String, Capacity, u64)> {
        results
            .iter()
            .filter(|r| r.system == system)
            .map(|r| (r.trace.clone(), r.capacity, r.hits))
            .collect()
    };
    let opts = of(results, ReplaySystem::Opt);
    let beladys = of(results, ReplaySystem::Belady);
    let find = |v: &[(String, Capacity, u64)], r: &ReplayResult| {
        v.iter().find(|(t, c, _)| *t == r.trace && *c == r.capacity).map(|&(_, _, h)| h)
    };
    for r in results.iter_mut() {
        r.opt_hits = find(&opts, r);
        r.belady_hits = find(&beladys, r);
    }
}

/// The stack budgets that give `capacity` for a trace of mean object size `avg`.
///
/// Inexact: the tiers' own per-entry costs at the mean size are only an estimate (see
/// `l1_weight` and `nvme_weight`); a result above OPT flags a budget that came out too large.
fn budgets(capacity: Capacity, avg: f64, ram_fraction: f64) -> (Budgets, Budgets) {
    let (ram, disk) = match capacity {
        Capacity::Entries(n) => {
            (n as f64 * l1_weight(avg as u64) as f64, n as f64 * nvme_weight(avg as u64) as f64)
        }
        Capacity::Bytes(b) => (
            b as f64 * l1_weight(avg as u64) as f64 / avg,
            b as f64 * nvme_weight(avg as u64) as f64 / avg,
        ),
    };
    let alone = Budgets { ram: ram as u64, disk: disk as u64, direct_reads: false };
    let f = ram_fraction.clamp(0.0, 1.0);
    let split =
        Budgets { ram: (ram * f) as u64, disk: (disk * (1.0 - f)) as u64, direct_reads: false };
    (alone, split)
}

/// Replays `trace` through one of our systems, one request at a time; `(hits, misses)`.
pub(crate) async fn replay_system(
    label: &str,
    trace: &[Request],
    capacity: Capacity,
    system: ReplaySystem,
    ram_fraction: f64,
    data_dir: &Path,
) -> Result<(u64, u64)> {
    let avg = trace.iter().map(|r| f64::from(r.size)).sum::<f64>() / trace.len().max(1) as f64;
    let (alone, split) = budgets(capacity, avg.max(1.0), ram_fraction);
    let (kind, b) = match system {
        ReplaySystem::Moka => (SystemKind::Moka, alone),
        ReplaySystem::L1 => (SystemKind::L1, alone),
        ReplaySystem::Nvme => (SystemKind::Nvme, alone),
        ReplaySystem::NvmeReinsert => (SystemKind::NvmeReinsert, alone),
        ReplaySystem::Tiered => (SystemKind::Tiered, split),
        ReplaySystem::TieredDefaults => (SystemKind::TieredDefaults, split),
        r => bail!("{} is a reference policy, not a system", r.name()),
    };
    let cache = System::build(kind, b, data_dir).await?;
    let pool = value_pool(trace.iter().map(|r| r.size).max().unwrap_or(1));
    let ns = namespace();
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress(label, trace.len() as u64, counter.clone());
    let (mut hits, mut misses) = (0u64, 0u64);
    for (i, r) in trace.iter().enumerate() {
        if cache.get(&ns, r.id).await? {
            hits += 1;
        } else {
            misses += 1;
            cache.put(&ns, r.id, pool.slice(..r.size as usize)).await?;
        }
        cache.replay_step().await?;
        if i % 1024 == 0 {
            counter.store(i as u64, Ordering::Relaxed);
        }
    }
    bar.abort();
    let _ = bar.await;
    cache.close().await?;
    Ok((hits, misses))
}

/// Every capacity through every system; the next accesses are computed once when a policy
/// reads the future. OPT is computed whenever one of our systems runs.
async fn replay_many(
    name: &str,
    trace: &[Request],
    capacities: &[Capacity],
    systems: &[ReplaySystem],
    ram_fraction: f64,
    data_dir: &Path,
) -> Result<Vec<ReplayResult>> {
    let mut systems = systems.to_vec();
    if systems.iter().any(|s| s.is_ours()) && !systems.contains(&ReplaySystem::Opt) {
        systems.push(ReplaySystem::Opt);
    }
    let next = if systems.iter().any(|s| s.policy().is_some_and(Policy::needs_future)) {
        next_accesses(trace)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for &c in capacities {
        for &s in &systems {
            let start = Instant::now();
            let (hits, misses) = match s.policy() {
                Some(p) => {
                    let r = simulate_with(trace, &next, p, c);
                    (r.hits, r.misses)
                }
                None => {
                    let label = format!("{name} {} {}", s.name(), c.label());
                    replay_system(&label, trace, c, s, ram_fraction, data_dir).await?
                }
            };
            out.push(ReplayResult {
                trace: name.to_owned(),
                capacity: c,
                system: s,
                requests: hits + misses,
                hits,
                misses,
                hit_ratio: hits as f64 / (hits + misses).max(1) as f64,
                elapsed_s: start.elapsed().as_secs_f64(),
                opt_hits: None,
                belady_hits: None,
            });
        }
    }
    mark_opt(&mut out);
    Ok(out)
}

/// The systems of `results`, in first-seen order.
fn systems_of(results: &[ReplayResult]) -> Vec<ReplaySystem> {
    let mut v: Vec<ReplaySystem> = Vec::new();
    for r in results {
        if !v.contains(&r.system) {
            v.push(r.system);
        }
    }
    v
}

fn replay_table(results: &[ReplayResult]) -> String {
    let systems = systems_of(results);
    let mut caps: Vec<Capacity> = Vec::new();
    for r in results {
        if !caps.contains(&r.capacity) {
            caps.push(r.capacity);
        }
    }
    let rows: Vec<Vec<String>> = caps
        .iter()
        .map(|c| {
            let mut row = vec![c.label()];
            for s in &systems {
                row.push(results.iter().find(|r| r.capacity == *c && r.system == *s).map_or_else(
                    || "–".to_owned(),
                    |r| format!("{} ({} misses)", r.cell(), r.misses),
                ));
            }
            row
        })
        .collect();
    let mut header = vec!["capacity"];
    header.extend(systems.iter().map(|s| s.name()));
    table(&header, &rows)
}

fn mrc_plot(name: &str, results: &[ReplayResult]) -> Result<PathBuf> {
    let series: Vec<output::Series> = systems_of(results)
        .iter()
        .map(|s| {
            let pts = results
                .iter()
                .filter(|r| r.system == *s)
                .map(|r| (r.capacity.limit() as f64, 1.0 - r.hit_ratio))
                .collect();
            (s.name().to_owned(), pts)
        })
        .collect();
    let file = format!("mrc-{}.svg", name.split('.').next().unwrap_or(name));
    let path = output::out_dir().join(file);
    std::fs::create_dir_all(output::out_dir())?;
    output::line_chart(
        &path,
        &format!("miss-ratio curve: {name}"),
        "capacity (log)",
        "miss ratio",
        &series,
        true,
    )?;
    Ok(path)
}

fn load_trace(
    path: &Path,
    format: Option<TraceFormat>,
    csv: &CsvOptions,
    limit: Option<usize>,
) -> Result<Vec<Request>> {
    let format = match format.or_else(|| TraceFormat::guess(path)) {
        Some(f) => f,
        None => bail!(
            "cannot guess the format of {}: pass --format ({})",
            path.display(),
            TraceFormat::ALL.map(TraceFormat::as_str).join(", ")
        ),
    };
    let mut t =
        load_with(path, format, csv).with_context(|| format!("reading {}", path.display()))?;
    if let Some(n) = limit {
        t.truncate(n);
    }
    Ok(t)
}

/// The results above OPT, as a Markdown section (empty when there are none and `always` is
/// false).
fn above_opt_section(results: &[ReplayResult], always: bool) -> String {
    let bad: Vec<&ReplayResult> = results.iter().filter(|r| r.above_opt()).collect();
    let mut md = String::new();
    if bad.is_empty() && !always {
        return md;
    }
    let _ = writeln!(md, "## Results above the optimum: bugs, not results\n");
    if bad.is_empty() {
        let _ = writeln!(
            md,
            "None: no result of moka or of our tiers has more hits than OPT at the same capacity.\n"
        );
        return md;
    }
    let _ = writeln!(
        md,
        "No cache that holds at most the capacity can hit more often than OPT, so each row below \
         is a bug (in the tier, or in the budget the replay gave it: `budgets()` estimates the \
         tiers' per-entry costs), not a hit ratio to publish.\n"
    );
    let rows: Vec<Vec<String>> = bad
        .iter()
        .map(|r| {
            vec![
                r.trace.clone(),
                r.capacity.label(),
                r.system.name().to_owned(),
                r.hits.to_string(),
                r.opt_hits.map_or("–".into(), |h| h.to_string()),
                format!("{:+}", r.hits as i64 - r.opt_hits.unwrap_or(0) as i64),
            ]
        })
        .collect();
    md.push_str(&table(&["trace", "capacity", "system", "hits", "OPT hits", "excess"], &rows));
    md.push('\n');
    md
}

fn strict_check(results: &[ReplayResult]) -> Result<()> {
    let n = results.iter().filter(|r| r.above_opt()).count();
    if n > 0 {
        bail!("--strict: {n} result(s) above OPT (listed in the report)");
    }
    Ok(())
}

/// `cache-bench replay`.
pub(crate) async fn replay(args: ReplayArgs) -> Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| output::out_dir().join("data"));
    if let Some(dir) = &args.all_traces {
        let mut all = Vec::new();
        let md = traces_report(
            dir,
            false,
            &args.systems,
            args.ram_fraction,
            &data_dir,
            args.limit,
            &mut all,
        )
        .await?;
        println!("{md}");
        print!("{}", above_opt_section(&all, false));
        return if args.strict { strict_check(&all) } else { Ok(()) };
    }
    let (name, trace) = if let Some(w) = &args.workload {
        let w = synthetic::by_name(w).expect("checked by the parser");
        let mut t = w.generate();
        if let Some(n) = args.limit {
            t.truncate(n);
        }
        println!("{}: {}", w.name, w.describe());
        (w.name.to_owned(), t)
    } else {
        let path = args.trace.clone().expect("clap requires --trace or --workload");
        let t = load_trace(&path, args.format, &args.csv.options()?, args.limit)?;
        (path.file_name().and_then(|n| n.to_str()).unwrap_or("trace").to_owned(), t)
    };
    let (n, unique, bytes) = summary(&trace);
    println!("{name}: {n} requests, {unique} unique ids, {bytes} bytes requested");
    let results =
        replay_many(&name, &trace, &args.capacity, &args.systems, args.ram_fraction, &data_dir)
            .await?;
    println!("{}", replay_table(&results));
    print!("{}", above_opt_section(&results, false));
    let json = write_json("replay.json", &results)?;
    if args.capacity.len() > 1 {
        println!("miss-ratio curve: {}", mrc_plot(&name, &results)?.display());
    }
    println!("results: {}", json.display());
    if args.strict { strict_check(&results) } else { Ok(()) }
}

/// The last column of the hit-ratio tables: see [`gap_cell`].
const GAP_HEADER: &str = "tiered − best other";

/// Our systems in the built-in section.
const BUILTIN_SYSTEMS: [ReplaySystem; 6] = [
    ReplaySystem::Moka,
    ReplaySystem::L1,
    ReplaySystem::Nvme,
    ReplaySystem::NvmeReinsert,
    ReplaySystem::Tiered,
    ReplaySystem::TieredDefaults,
];

/// The built-in workloads section, as Markdown; its results are appended to `all`.
async fn builtin_report(
    quick: bool,
    ram_fraction: f64,
    data_dir: &Path,
    limit: Option<usize>,
    all: &mut Vec<ReplayResult>,
) -> Result<String> {
    let caps: Vec<Capacity> = if quick {
        vec![Capacity::Entries(1000)]
    } else {
        vec![Capacity::Entries(1000), Capacity::Entries(5000)]
    };
    let mut systems = ReplaySystem::REFERENCES.to_vec();
    systems.extend(BUILTIN_SYSTEMS);
    let mut md = String::new();
    let _ = writeln!(md, "## Hit ratios on built-in workloads\n");
    let _ = writeln!(
        md,
        "Synthetic traces generated from fixed seeds (SplitMix64, no file needed: the same \
         requests on every machine), {} B objects, replayed one request at a time (a get, and on a \
         miss a put). LRU … Belady are this tool's exact simulators (libCacheSim semantics); OPT \
         is the optimum of a cache of that many entries that may decline to insert, so no cache \
         can beat it (Belady's rule always inserts, so a cache that declines, as moka's admission \
         does, may beat Belady but not OPT: results are checked against OPT). `moka` and `l1` get the capacity as a byte budget through `MemoryTier`'s \
         per-entry weight, `nvme` through its record size, and `tiered` splits it {:.0} % RAM / \
         {:.0} % NVMe. Hit %. The last column is the tiered row minus the best other result at \
         that capacity (not Belady, OPT or the defaults stack).\n",
        synthetic::VALUE_SIZE,
        ram_fraction * 100.0,
        (1.0 - ram_fraction) * 100.0
    );
    let mut rows = Vec::new();
    for w in synthetic::builtin() {
        eprintln!("built-in workload {} ...", w.name);
        let mut trace = w.generate();
        if let Some(n) = limit {
            trace.truncate(n);
        }
        let results = replay_many(w.name, &trace, &caps, &systems, ram_fraction, data_dir).await?;
        for c in &caps {
            let mut row = vec![w.name.to_owned(), c.label()];
            for s in &systems {
                row.push(
                    results
                        .iter()
                        .find(|r| r.capacity == *c && r.system == *s)
                        .map_or("–".into(), ReplayResult::cell),
                );
            }
            row.push(gap_cell(&results, *c, &[]));
            rows.push(row);
        }
        all.extend(results);
    }
    let mut header = vec!["workload", "capacity"];
    header.extend(systems.iter().map(|s| s.name()));
    header.push(GAP_HEADER);
    md.push_str(&table(&header, &rows));
    let _ = writeln!(md);
    for w in synthetic::builtin() {
        let _ = writeln!(
            md,
            "- `{}`: {}, {} requests (`cache-bench replay --workload {}`).",
            w.name,
            w.describe(),
            w.requests,
            w.name
        );
    }
    let _ = writeln!(md);
    Ok(md)
}

/// The per-trace section of the report, as Markdown; results are appended to `all`.
async fn traces_report(
    dir: &Path,
    quick: bool,
    systems: &[ReplaySystem],
    ram_fraction: f64,
    data_dir: &Path,
    limit: Option<usize>,
    all: &mut Vec<ReplayResult>,
) -> Result<String> {
    let mut md = String::new();
    let mut found = Vec::new();
    for k in traces::known() {
        let Some(path) = k.find(dir) else { continue };
        let caps = if quick { &k.quick } else { &k.capacities };
        if caps.is_empty() {
            let _ = writeln!(md, "### {}\n\nskipped in `--quick` mode.\n", k.file);
            continue;
        }
        eprintln!("replaying {} ...", path.display());
        let trace = load_trace(&path, Some(k.format), &CsvOptions::default(), limit)?;
        found.push(k.file);
        md.push_str(&known_section(&k, &trace, caps, systems, ram_fraction, data_dir, all).await?);
    }
    if found.is_empty() {
        let _ = writeln!(md, "No known trace in {}.\n", dir.display());
    }
    write_json("replay-traces.json", &all)?;
    Ok(md)
}

async fn known_section(
    k: &Known,
    trace: &[Request],
    caps: &[Capacity],
    systems: &[ReplaySystem],
    ram_fraction: f64,
    data_dir: &Path,
    all: &mut Vec<ReplayResult>,
) -> Result<String> {
    let mut md = String::new();
    let (n, unique, _) = summary(trace);
    // The NVMe tier's reclaim policies are reported on the block trace the published
    // byte-capacity results use.
    let mut systems = systems.to_vec();
    if k.file.starts_with("cloudPhysicsIO") {
        systems.extend([ReplaySystem::Nvme, ReplaySystem::NvmeReinsert]);
    }
    let results = replay_many(k.file, trace, caps, &systems, ram_fraction, data_dir).await?;
    let systems = systems_of(&results);
    let mut header: Vec<String> = vec!["capacity".into()];
    header.extend(k.published.iter().map(|(p, _)| format!("{p} (published)")));
    header.extend(systems.iter().map(|s| s.name().to_owned()));
    header.push(GAP_HEADER.to_owned());
    let rows: Vec<Vec<String>> = caps
        .iter()
        .map(|c| {
            let i = k.capacities.iter().position(|x| x == c);
            let mut row = vec![c.label()];
            for (_, vals) in &k.published {
                row.push(i.and_then(|i| vals[i]).map_or("–".into(), |v| format!("{v:.2}")));
            }
            for s in &systems {
                row.push(
                    results
                        .iter()
                        .find(|r| r.capacity == *c && r.system == *s)
                        .map_or("–".into(), ReplayResult::cell),
                );
            }
            let published: Vec<(&str, f64)> = k
                .published
                .iter()
                .filter_map(|(p, vals)| i.and_then(|i| vals[i]).map(|v| (*p, v)))
                .collect();
            row.push(gap_cell(&results, *c, &published));
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let _ = writeln!(
        md,
        "### {} ({} requests, {} unique, hit %)\n\n{}",
        k.file,
        n,
        unique,
        table(&header, &rows)
    );
    if matches!(caps.first(), Some(Capacity::Bytes(_))) {
        let _ = writeln!(
            md,
            "With sizes, Belady's rule is not optimal and OPT is the PFOO-U upper bound (reuse \
             intervals by increasing byte-time until `capacity × requests` is spent): no cache of \
             this capacity can beat it, but none may reach it either. A result between Belady and \
             OPT reads `(above Belady)`: possible, since a cache may favour small objects or \
             decline to insert, but worth a look.\n"
        );
    }
    if caps.len() > 1 {
        let _ = mrc_plot(k.file, &results)?;
    }
    if systems.contains(&ReplaySystem::Tiered) {
        md.push_str(&splits_table(k.file, trace, caps, ram_fraction, &results, data_dir).await?);
    }
    all.extend(results);
    Ok(md)
}

/// The RAM shares of the tiered stack the splits table adds to the report's own.
const OTHER_SPLITS: [f64; 2] = [0.25, 0.05];

/// The tiered stack at other RAM / NVMe splits of the same capacity, next to the report's split
/// and its RAM tier alone.
async fn splits_table(
    file: &str,
    trace: &[Request],
    caps: &[Capacity],
    ram_fraction: f64,
    results: &[ReplayResult],
    data_dir: &Path,
) -> Result<String> {
    let at = |c: &Capacity, s| {
        results
            .iter()
            .find(|r| r.capacity == *c && r.system == s)
            .map_or("–".into(), |r| r.cell())
    };
    let mut rows = Vec::new();
    for c in caps {
        let mut row = vec![c.label(), at(c, ReplaySystem::Tiered)];
        for f in OTHER_SPLITS {
            let (hits, misses) =
                replay_system(file, trace, *c, ReplaySystem::Tiered, f, data_dir).await?;
            row.push(format!("{:.2}", hits as f64 * 100.0 / (hits + misses).max(1) as f64));
        }
        row.push(at(c, ReplaySystem::L1));
        rows.push(row);
    }
    let own = format!("tiered {:.0} / {:.0}", ram_fraction * 100.0, (1.0 - ram_fraction) * 100.0);
    let others: Vec<String> = OTHER_SPLITS
        .iter()
        .map(|f| format!("tiered {:.0} / {:.0}", f * 100.0, (1.0 - f) * 100.0))
        .collect();
    let mut header = vec!["capacity", own.as_str()];
    header.extend(others.iter().map(String::as_str));
    header.push("l1 alone");
    Ok(format!(
        "The tiered stack at other RAM % / NVMe % splits of the same capacity (hit %):\n\n{}\n",
        table(&header, &rows)
    ))
}

/// Flags of `report`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReportArgs {
    /// The traces directory. Default: `../shared/traces` if it exists, else the directory in
    /// `TIERED_CACHE_TRACES`, else none (the report then lists where to download the traces).
    #[arg(long)]
    traces: Option<PathBuf>,
    /// Fewer capacities and a shorter comparison (a couple of minutes on 2 cores).
    #[arg(long)]
    quick: bool,
    /// Where to write the Markdown report (stdout only when omitted).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Share of the tiered stack's capacity given to RAM in the replays.
    #[arg(long, default_value_t = 0.1)]
    ram_fraction: f64,
    /// Replay only the first N requests of each trace (smoke runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Operations of the comparison workload.
    #[arg(long)]
    compare_ops: Option<u64>,
    /// Skip the real traces section.
    #[arg(long)]
    no_traces: bool,
    /// Skip the throughput comparisons (hit ratios only).
    #[arg(long)]
    no_compare: bool,
    /// Exit non-zero (after writing the report) when one of our systems hits more often than OPT.
    #[arg(long)]
    strict: bool,
}

/// `cache-bench report`.
pub(crate) async fn report(args: ReportArgs) -> Result<()> {
    let data_dir = output::out_dir().join("data");
    let cmd: Vec<String> = std::env::args().skip(1).collect();
    let mut md = String::new();
    let mut all: Vec<ReplayResult> = Vec::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask bench{}`, which runs:\n\n```text\ncache-bench {}\n```\n",
        if args.quick { " --quick" } else { "" },
        cmd.join(" ")
    );
    let _ = writeln!(
        md,
        "Machine: {} cores. {} build. Do not edit by hand: re-run the command above.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) { "Debug (numbers are not meaningful)" } else { "Release" }
    );
    md.push_str(
        &builtin_report(args.quick, args.ram_fraction, &data_dir, args.limit, &mut all).await?,
    );
    if !args.no_traces {
        let dir = args.traces.clone().or_else(traces::default_dir);
        let _ = writeln!(md, "## Hit ratios on real traces\n");
        if let Some(n) = args.limit {
            let _ = writeln!(
                md,
                "Only the first {n} requests of each trace are replayed: the published numbers \
                 do not apply to these rows.\n"
            );
        }
        let _ = writeln!(
            md,
            "Each trace is replayed once per capacity: a get, and on a miss a put of the object \
             (its trace size, or 512 bytes where the trace has none). LRU … Belady are this \
             tool's exact simulators (libCacheSim semantics) and must equal the published columns \
             of the same policy (the traces' README; cloudPhysicsIO's miss counts converted to hit \
             %); OPT is the upper bound at the capacity. `moka` and `l1` get the byte budget of \
             the capacity at the trace's mean object size including `MemoryTier`'s per-entry \
             overhead, the NVMe tier the capacity in exact record bytes; `tiered` splits the same \
             capacity {:.0} % RAM / {:.0} % NVMe as a small queue in front of a main queue (LRU \
             RAM, NVMe with hit-based reinsertion written on eviction, the demotion filter \
             `DemotionFilter::tiny_lfu()` between them: W-TinyLFU's frequency test, no \
             promotion); `tiered, defaults` is the same split with the library's default \
             policies (TinyLFU RAM, every eviction demoted, FIFO reclaim, every NVMe hit \
             promoted). Every system runs one request at a time and its background work \
             (moka's pending evictions, demotions, the NVMe writer) is waited for after each, so \
             it holds exactly what its budget holds and the result is the same on every run. \
             The last column is the tiered row minus the best other result at that capacity (our \
             tiers alone, moka, the exact simulators and the published figures; not Belady, OPT \
             or the defaults stack), the policy it must reach.\n",
            args.ram_fraction * 100.0,
            (1.0 - args.ram_fraction) * 100.0
        );
        let systems = [
            ReplaySystem::REFERENCES.as_slice(),
            &[
                ReplaySystem::Moka,
                ReplaySystem::L1,
                ReplaySystem::NvmeReinsert,
                ReplaySystem::Tiered,
                ReplaySystem::TieredDefaults,
            ],
        ]
        .concat();
        if let Some(dir) = &dir {
            md.push_str(
                &traces_report(
                    dir,
                    args.quick,
                    &systems,
                    args.ram_fraction,
                    &data_dir,
                    args.limit,
                    &mut all,
                )
                .await?,
            );
        }
        md.push_str(&traces::missing_section(dir.as_deref()));
    }
    if !args.no_compare {
        md.push_str(&compare_sections(&args, &data_dir).await?);
        let (values, rounds) = if args.quick { (300, 1) } else { (2_000, 5) };
        md.push_str(&crate::compression::section(values, rounds, &data_dir).await?);
        md.push_str(&crate::read_through::section(args.quick, &data_dir).await?);
    }
    md.push_str(&above_opt_section(&all, true));
    println!("{md}");
    if let Some(out) = &args.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
    }
    if args.strict { strict_check(&all) } else { Ok(()) }
}

async fn compare_sections(args: &ReportArgs, data_dir: &Path) -> Result<String> {
    let mut md = String::new();
    let (secs, keys) = if args.quick { (3.0, 50_000) } else { (10.0, 200_000) };
    let workload = Workload {
        keys,
        dist: KeyDist::Zipf,
        zipf_s: 0.99,
        value_min: 1024,
        value_max: 1024,
        read_ratio: 0.9,
        concurrency: 4,
        ops: args.compare_ops.unwrap_or(0),
        duration_secs: if args.compare_ops.is_some() { None } else { Some(secs) },
        warmup_ops: args.compare_ops.map_or(keys, |n| n / 2),
        ..Workload::default()
    };
    let stack = StackArgs {
        ram: 16 << 20,
        disk: 128 << 20,
        data_dir: Some(data_dir.to_path_buf()),
        direct_reads: false,
    };
    let mut systems = vec![
        SystemKind::Tiered,
        SystemKind::L1,
        SystemKind::Nvme,
        SystemKind::Moka,
        SystemKind::MokaSync,
        SystemKind::Foyer,
    ];
    if !args.quick {
        systems.extend([SystemKind::Tiered3, SystemKind::Object, SystemKind::ObjectStore]);
    }
    let rounds = if args.quick { 1 } else { 3 };
    let cargs = CompareArgs {
        workload: workload.clone(),
        stack: stack.clone(),
        systems,
        baseline: SystemKind::Moka,
        repeat: rounds,
    };
    let results = compare(&cargs).await?;
    let find = |kind: SystemKind| results.iter().find(|r| r.system == kind.name());
    let _ = writeln!(md, "## Throughput and latency: `compare`\n");
    let _ = writeln!(
        md,
        "One workload through every system in the same run: {} keys, zipf s = {}, {}-byte values, \
         {:.0} % reads (a read miss fills the key), {} tasks on a {}-thread tokio runtime, {} \
         after {} single-task warm-up operations, {} interleaved round(s) per system (each row \
         is the median round; each ratio the median of the per-round ratios). RAM budget {} MiB, \
         disk budget {} MiB (foyer gets the same two). Latencies are HDR histograms of each \
         call. Ratios are against raw moka's `future::Cache`; `moka (sync)` is its \
         `sync::Cache`, the API `MemoryTier` runs on.\n",
        workload.keys,
        workload.zipf_s,
        workload.value_min,
        workload.read_ratio * 100.0,
        workload.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        workload.duration_secs.map_or_else(
            || format!("{} operations", workload.ops),
            |s| format!("{s} s per system")
        ),
        workload.warmup_ops,
        rounds,
        stack.ram >> 20,
        stack.disk >> 20,
    );
    md.push_str(&compare_table(&results, SystemKind::Moka.name()));
    if let (Some(f), Some(t)) = (find(SystemKind::Foyer), find(SystemKind::Tiered)) {
        let _ = writeln!(
            md,
            "\nAgainst foyer: tiered throughput {:.2}×, get p50 {:.2}×, get p99 {:.2}× (lower is better for latency).",
            t.ops_per_s / f.ops_per_s.max(1e-9),
            t.get_p50_us / f.get_p50_us.max(1e-9),
            t.get_p99_us / f.get_p99_us.max(1e-9),
        );
    }
    if let (Some(m), Some(l)) = (find(SystemKind::MokaSync), find(SystemKind::L1)) {
        let _ = writeln!(
            md,
            "\nAgainst moka (sync), median rows: l1 throughput {:.2}×, put p99 {:.2}×, get p99 \
             {:.2}×.",
            l.ops_per_s / m.ops_per_s.max(1e-9),
            l.put_p99_us / m.put_p99_us.max(1e-9),
            l.get_p99_us / m.get_p99_us.max(1e-9),
        );
    }
    let _ = writeln!(
        md,
        "\nNotes: the NVMe tier runs with `Durability::None` and the object tiers without fsync \
         (`local_fsync(false)`), so disk numbers measure the page cache as much as the device. \
         moka and our tiers use the same `Key` type; foyer uses `u64` keys and `Vec<u8>` values \
         (its `StorageKey` needs serde). The `moka` rows are moka without an eviction listener; \
         `l1` and `tiered` need one (evictions are counted and demoted), and moka takes a \
         per-key lock on every write when a listener is set, the main cost of `l1` over \
         `moka (sync)` in this workload of many fills; gets that hit are measured alone by \
         `cargo xtask bench --micro`. Plots (SVG) and JSON are written under `target/bench/`.\n"
    );
    if args.compare_ops.is_none() {
        md.push_str(&hybrid_section(args.quick, data_dir).await?);
    }
    Ok(md)
}

/// The side-by-side with foyer's `HybridCache` that issue-level targets are stated in: zipf
/// s = 0.9, 4 KiB and 64 KiB values, RAM much smaller than the working set and the working set
/// within the disk budget; the NVMe tier alone is in the table too.
async fn hybrid_section(quick: bool, data_dir: &Path) -> Result<String> {
    let mut md = String::new();
    let (secs, rounds) = if quick { (3.0, 1) } else { (10.0, 3) };
    let ram: u64 = 16 << 20;
    let disk: u64 = 256 << 20;
    let _ = writeln!(md, "\n## RAM + disk side by side with foyer: `compare --baseline foyer`\n");
    let _ = writeln!(
        md,
        "zipf s = 0.9, 90 % reads (a read miss fills the key), 4 tasks, {secs} s per run after a \
         single-task fill of every key, {rounds} interleaved round(s) per system (rows: the median \
         round; ratios: the median of the per-round ratios against foyer). RAM {} MiB, disk {} MiB \
         for both stacks: the working set is about 10× RAM and fits the disk. `nvme` is the NVMe \
         tier alone with the same disk budget. Each size runs twice: with the disk's pages in the \
         page cache (the default: the budget fits the machine's RAM, so after the fill every \
         disk hit is a memory read), and with `--direct-reads`, where every disk hit reads the \
         device (the NVMe tier reads hits with `O_DIRECT`, foyer opens its device files with \
         `O_DIRECT`), which is what a disk much larger than RAM gives and where a RAM tier earns \
         its place. This machine's disk is a virtio device that its host may cache: a direct read \
         here measures the virtio path, not a flash device.\n",
        ram >> 20,
        disk >> 20
    );
    let modes = [(false, ""), (true, ", disk reads bypassing the page cache (`--direct-reads`)")];
    for ((value, keys), (direct_reads, mode)) in [(4096u32, 40_000u64), (64 << 10, 3_000)]
        .into_iter()
        .flat_map(|size| modes.into_iter().map(move |mode| (size, mode)))
    {
        let workload = Workload {
            keys,
            dist: KeyDist::Zipf,
            zipf_s: 0.9,
            value_min: value,
            value_max: value,
            read_ratio: 0.9,
            concurrency: 4,
            ops: 0,
            duration_secs: Some(secs),
            warmup_ops: keys * 2,
            ..Workload::default()
        };
        let cargs = CompareArgs {
            workload,
            stack: StackArgs { ram, disk, data_dir: Some(data_dir.to_path_buf()), direct_reads },
            systems: vec![SystemKind::Tiered, SystemKind::Nvme, SystemKind::Foyer],
            baseline: SystemKind::Foyer,
            repeat: rounds,
        };
        let results = compare(&cargs).await?;
        let _ = writeln!(
            md,
            "### {} KiB values, {keys} keys (working set {} MiB){mode}\n",
            value >> 10,
            (u64::from(value) * keys) >> 20
        );
        md.push_str(&compare_table(&results, SystemKind::Foyer.name()));
        let hits: Vec<String> =
            results.iter().map(|r| format!("{} {:.2} %", r.system, r.hit_ratio * 100.0)).collect();
        let _ = writeln!(md, "\nHit ratios: {}.\n", hits.join(", "));
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    //! Determinism of our systems: the same trace replayed twice, one request at a time, must
    //! give the same hits.

    use super::*;

    /// The first 20,000 requests of `zipf-0.9` at 1,000 entries, `n` times through `system`.
    async fn runs(system: ReplaySystem, n: usize) -> Vec<u64> {
        let trace: Vec<Request> =
            synthetic::by_name("zipf-0.9").unwrap().generate().into_iter().take(10_000).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for _ in 0..n {
            let (hits, _) = replay_system(
                "determinism",
                &trace,
                Capacity::Entries(1000),
                system,
                0.1,
                dir.path(),
            )
            .await
            .unwrap();
            runs.push(hits);
        }
        eprintln!("{}: hits of {n} runs: {runs:?}", system.name());
        runs
    }

    async fn twice(system: ReplaySystem) -> (u64, u64) {
        let r = runs(system, 2).await;
        (r[0], r[1])
    }

    #[test]
    fn above_opt_is_flagged_only_for_our_systems() {
        let r = |system, hits| ReplayResult {
            trace: "t".into(),
            capacity: Capacity::Entries(10),
            system,
            requests: 100,
            hits,
            misses: 100 - hits,
            hit_ratio: hits as f64 / 100.0,
            elapsed_s: 0.0,
            opt_hits: None,
            belady_hits: None,
        };
        let mut v =
            vec![r(ReplaySystem::Opt, 50), r(ReplaySystem::Moka, 51), r(ReplaySystem::L1, 50)];
        mark_opt(&mut v);
        assert!(v[1].above_opt() && !v[2].above_opt() && !v[0].above_opt());
        assert_eq!(v[1].cell(), "51.00 ⚠ above OPT");
        assert!(strict_check(&v).is_err());
        assert!(above_opt_section(&v, false).contains("moka"));
        assert!(above_opt_section(&v[2..], false).is_empty());
    }

    // Determinism: a single-threaded replay through any of our systems gives the same hits on
    // every run. That needs the fixed hash seeds of `systems.rs` (moka's TinyLFU sketch hashes
    // keys) and `System::replay_step` after every request: without it, moka's pending
    // evictions, the queued demotions and the NVMe writer run on their own schedule, and a get
    // sees more than the configured capacity holds by however far they lagged (before it,
    // debug runs of 20,000 requests spread by 1-2 %: l1 8485-8564 hits, nvme 6894-6948,
    // tiered 7435-7475; release runs of the whole zipf-0.9 by 12 points, once above OPT).

    /// A loop over 1,011 keys fits a 5,000-entry stack: after the first pass (cold misses)
    /// every request hits, since until the NVMe tier first evicts, every entry the RAM tier
    /// lets go is demoted. (With the second chance alone, the second pass missed too: each key
    /// was dropped once into the ghost first. Before the ghost was sized by the NVMe tier's
    /// capacity, it started at its minimum while the tier was empty, forgot every key before it
    /// came back, and the stack stayed empty: 0 % hits.)
    #[tokio::test(flavor = "current_thread")]
    async fn the_tiered_stack_keeps_a_loop_that_fits() {
        let trace: Vec<Request> =
            synthetic::by_name("loop").unwrap().generate().into_iter().take(20_000).collect();
        let dir = tempfile::tempdir().unwrap();
        let run = |s| replay_system("loop", &trace, Capacity::Entries(5000), s, 0.1, dir.path());
        assert_eq!(run(ReplaySystem::Tiered).await.unwrap(), (20_000 - 1011, 1011));
        assert_eq!(run(ReplaySystem::L1).await.unwrap(), (20_000 - 1011, 1011));
    }

    /// A loop over 1,011 keys at 1,000 entries: LRU and FIFO keep nothing (0 % hits), and
    /// the stack keeps most of what fits. Once the NVMe tier evicts, an entry the RAM tier
    /// lets go is demoted only if it is more frequent than a victim below, which a key of a
    /// loop never is, and entries the NVMe tier reinserts stay, so the NVMe tier keeps its part
    /// of the loop; the LRU RAM tier keeps none of the rest. (With the second chance alone and
    /// reinsertion capped at half a segment this was 0 %; with one hit bit per NVMe entry
    /// instead of a count of up to three, 79.03 %; with the second chance and its climber as
    /// well, 76.79 %.)
    #[tokio::test(flavor = "current_thread")]
    async fn the_tiered_stack_keeps_part_of_a_loop_larger_than_it() {
        let trace: Vec<Request> =
            synthetic::by_name("loop").unwrap().generate().into_iter().take(20_000).collect();
        let dir = tempfile::tempdir().unwrap();
        let run = replay_system(
            "loop",
            &trace,
            Capacity::Entries(1000),
            ReplaySystem::Tiered,
            0.1,
            dir.path(),
        );
        assert_eq!(run.await.unwrap(), (20_000 - 4224, 4224), "78.88 % hits (S3-FIFO 84.73 %)");
    }

    /// The tiered stack against its own parts on two real traces at the capacities the
    /// composition issue names, as exact miss counts (a single-threaded replay is
    /// deterministic): the figures of `docs/benchmarks.md`. Over OLTP at 1,000 entries the
    /// stack beats its RAM tier alone by 8 points and S3-FIFO (40.84 %), the best published
    /// policy there; over cloudPhysicsIO at 1 GiB it is 0.4 points below moka alone (52.02 %)
    /// and 8 above its NVMe tier alone. Needs the traces (`../shared/traces`, or
    /// `TIERED_CACHE_TRACES`); without them the test says so and passes, except under
    /// `CI=true`, where they must be there.
    #[tokio::test(flavor = "current_thread")]
    async fn the_tiered_stack_against_its_parts_on_real_traces() {
        let Some(dir) = traces::default_dir() else {
            assert!(std::env::var_os("CI").is_none(), "CI=true, but no traces directory");
            eprintln!("skipped: no traces directory (../shared/traces or {})", traces::ENV);
            return;
        };
        let data = tempfile::tempdir().unwrap();
        let load =
            |file: &str| load_trace(&dir.join(file), None, &CsvOptions::default(), None).unwrap();
        let oltp = load("OLTP.lis.zst");
        let run =
            |trace, s| replay_system("t", trace, Capacity::Entries(1000), s, 0.1, data.path());
        let (tiered_hits, tiered_misses) = run(&oltp, ReplaySystem::Tiered).await.unwrap();
        assert_eq!(tiered_misses, 540_302, "OLTP @ 1,000 entries: 40.90 % hits");
        let (l1_hits, _) = run(&oltp, ReplaySystem::L1).await.unwrap();
        assert!(tiered_hits > l1_hits, "OLTP: tiered {tiered_hits} hits, l1 alone {l1_hits}");

        let cloud = load("cloudPhysicsIO.oracleGeneral.bin");
        let gib = Capacity::Bytes(1 << 30);
        let (_, misses) =
            replay_system("t", &cloud, gib, ReplaySystem::Tiered, 0.1, data.path()).await.unwrap();
        assert_eq!(misses, 55_142, "cloudPhysicsIO @ 1 GiB: 51.58 % hits");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nvme_replays_deterministically() {
        for s in [ReplaySystem::Nvme, ReplaySystem::NvmeReinsert] {
            let (a, b) = twice(s).await;
            assert_eq!(a, b, "{}: two runs, {a} and {b} hits", s.name());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn l1_replays_deterministically() {
        let (a, b) = twice(ReplaySystem::L1).await;
        assert_eq!(a, b, "l1: two runs, {a} and {b} hits");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn moka_replays_deterministically() {
        let (a, b) = twice(ReplaySystem::Moka).await;
        assert_eq!(a, b, "moka: two runs, {a} and {b} hits");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tiered_replays_deterministically() {
        for s in [ReplaySystem::Tiered, ReplaySystem::TieredDefaults] {
            let (a, b) = twice(s).await;
            assert_eq!(a, b, "{}: two runs, {a} and {b} hits", s.name());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "measurement: prints the hits of 5 runs per system"]
    async fn spread_of_five_runs() {
        for s in [ReplaySystem::Moka, ReplaySystem::L1, ReplaySystem::Nvme, ReplaySystem::Tiered] {
            runs(s, 5).await;
        }
    }
}
