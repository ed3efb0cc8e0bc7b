//! The known real traces: where they are, where to download them, how to check them, and
//! `cache-bench traces fetch|verify`.
//!
//! The download is done by `curl` and the check by `sha256sum` (both spawned), so the tool has
//! no HTTP client or hashing dependency.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use cache_bench::{
    reference::Capacity,
    trace::{TraceFormat, open_decompressed},
};

/// The environment variable naming a traces directory (used when `../shared/traces` is absent).
pub(crate) const ENV: &str = "TIERED_CACHE_TRACES";

/// A trace the shared README describes, with its capacities, published numbers and sources.
pub(crate) struct Known {
    /// The file name in `shared/traces`.
    pub(crate) file: &'static str,
    /// Other names accepted for it (the form a public mirror serves).
    pub(crate) also: &'static [&'static str],
    pub(crate) format: TraceFormat,
    pub(crate) capacities: Vec<Capacity>,
    pub(crate) quick: Vec<Capacity>,
    /// Published hit % per policy, per capacity (`None` where not published).
    pub(crate) published: Vec<(&'static str, Vec<Option<f64>>)>,
    /// The public download, or `None` when no public mirror is known.
    pub(crate) url: Option<&'static str>,
    /// The name the download is stored under.
    pub(crate) download_as: &'static str,
    /// sha256 of `file` as in `shared/traces/SHA256SUMS`.
    pub(crate) sha256: &'static str,
    /// sha256 of the decompressed content (the same whatever the compression).
    pub(crate) content_sha256: &'static str,
    /// Where the trace comes from, for the missing-traces section.
    pub(crate) origin: &'static str,
}

impl Known {
    /// The path of this trace in `dir`, under its own name or an accepted one.
    pub(crate) fn find(&self, dir: &Path) -> Option<PathBuf> {
        std::iter::once(self.file)
            .chain(self.also.iter().copied())
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
    }
}

/// The known traces, in report order.
pub(crate) fn known() -> Vec<Known> {
    const MIB: u64 = 1 << 20;
    let cp_total = 113_872.0;
    let cp = |m: [u32; 4]| m.map(|m| Some((1.0 - f64::from(m) / cp_total) * 100.0)).to_vec();
    vec![
        Known {
            file: "OLTP.lis.zst",
            also: &["OLTP.lis.gz", "OLTP.lis"],
            format: TraceFormat::Arc,
            capacities: [250, 500, 1000, 2000, 5000].map(Capacity::Entries).to_vec(),
            quick: vec![Capacity::Entries(1000)],
            published: vec![
                ("LRU", [16.47, 23.45, 32.83, 42.47, 53.65].map(Some).to_vec()),
                ("W-TinyLFU", vec![Some(24.88), Some(33.73), Some(40.01), Some(46.09), None]),
                ("ARC", vec![None, None, Some(38.93), Some(46.08), Some(55.25)]),
                ("S3-FIFO", vec![None, None, Some(40.84), Some(47.01), Some(55.88)]),
            ],
            url: Some(
                "https://github.com/bitfaster/cache-datasets/releases/download/v1.0/OLTP.lis.gz",
            ),
            download_as: "OLTP.lis.gz",
            sha256: "2a81096104b6de28aae54558b764bb32fe2ac3beb8a7dcdee1259af8798d3531",
            content_sha256: "01fc36ce7c40a4741e30bd1f999402295fbea829f00f3591ad6732feb078808f",
            origin: "ARC paper trace (Megiddo and Modha, FAST'03); mirror: the BitFaster.Caching \
                     datasets (gzip; the check is on the decompressed content)",
        },
        Known {
            file: "cloudPhysicsIO.oracleGeneral.bin",
            also: &[],
            format: TraceFormat::OracleGeneral,
            capacities: [128, 256, 512, 1024].map(|m| Capacity::Bytes(m * MIB)).to_vec(),
            quick: vec![Capacity::Bytes(128 * MIB)],
            published: vec![
                ("LRU", cp([93_374, 89_783, 81_722, 71_704])),
                ("FIFO", cp([93_403, 89_386, 84_025, 72_140])),
                ("ARC", cp([90_252, 85_861, 74_297, 64_772])),
                ("S3-FIFO", cp([89_307, 82_387, 76_791, 70_355])),
                ("SIEVE", cp([91_699, 86_720, 76_707, 64_376])),
                ("Belady", cp([79_256, 70_724, 61_594, 48_974])),
            ],
            url: Some(
                "https://raw.githubusercontent.com/1a1a11a/libCacheSim/develop/data/cloudPhysicsIO.oracleGeneral.bin",
            ),
            download_as: "cloudPhysicsIO.oracleGeneral.bin",
            sha256: "65438dd7b2d3dec7ffe8a5c9348045da92de3311f339b7b59c9a0a44e6050dea",
            content_sha256: "65438dd7b2d3dec7ffe8a5c9348045da92de3311f339b7b59c9a0a44e6050dea",
            origin: "CloudPhysics block IO (FAST'15) as shipped in libCacheSim's data/ folder",
        },
        Known {
            file: "web07.trace.xz",
            also: &[],
            format: TraceFormat::Cache2k,
            capacities: [1000, 5000].map(Capacity::Entries).to_vec(),
            quick: [1000, 5000].map(Capacity::Entries).to_vec(),
            published: vec![
                ("LRU", vec![Some(50.41), Some(62.67)]),
                ("ARC", vec![Some(53.04), Some(64.31)]),
                ("FIFO", vec![Some(47.69), Some(60.54)]),
                ("SIEVE", vec![Some(53.25), Some(64.00)]),
                ("S3-FIFO", vec![Some(54.11), Some(64.01)]),
            ],
            url: Some(
                "https://raw.githubusercontent.com/ben-manes/caffeine/master/simulator/src/main/resources/com/github/benmanes/caffeine/cache/simulator/parser/cache2k/web07.trace.xz",
            ),
            download_as: "web07.trace.xz",
            sha256: "e50bb13aa66d1cc71877c8ea92c577be0d0ab5b2b4f7a16c87046af1097bd46a",
            content_sha256: "6959eddd318157e012862ba6c87f32d5a878c6c08dddbf999a42d2d378294ab1",
            origin: "cache2k (headissue GmbH, CC BY 4.0; originally trace-mt-20130703.trc.bin.gz \
                     in cache2k/cache2k-benchmark), in the .trace.xz form of Caffeine's simulator",
        },
        Known {
            file: "orm-busy.trace.xz",
            also: &[],
            format: TraceFormat::Cache2k,
            capacities: [5000, 20_000].map(Capacity::Entries).to_vec(),
            quick: Vec::new(),
            published: vec![
                ("LRU", vec![Some(85.46), Some(93.60)]),
                ("ARC", vec![Some(85.74), Some(93.59)]),
                ("FIFO", vec![Some(84.29), Some(92.17)]),
                ("SIEVE", vec![Some(85.52), Some(93.94)]),
                ("S3-FIFO", vec![Some(86.64), Some(94.13)]),
            ],
            url: Some(
                "https://raw.githubusercontent.com/ben-manes/caffeine/master/simulator/src/main/resources/com/github/benmanes/caffeine/cache/simulator/parser/cache2k/orm-busy.trace.xz",
            ),
            download_as: "orm-busy.trace.xz",
            sha256: "0b1d6593387d713c98cc20a5b8c4128eaa983f94dcd70069b032dc1af9c2ceb3",
            content_sha256: "016768842d9dc66a8633242bb619b2c695927766e31e5ce382a6e3ce8e98ab26",
            origin: "cache2k (headissue GmbH, CC BY 4.0; originally \
                     trace-mt-db-20160419-busy.trc.bin.bz2 in cache2k/cache2k-benchmark), in the \
                     .trace.xz form of Caffeine's simulator",
        },
    ]
}

/// `../shared/traces` if it exists (from the working directory, then from the workspace root),
/// else the directory named by `TIERED_CACHE_TRACES`, else none.
pub(crate) fn default_dir() -> Option<PathBuf> {
    let beside = PathBuf::from("../shared/traces");
    if beside.is_dir() {
        return Some(beside);
    }
    let from_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    if from_root.is_dir() {
        return Some(from_root);
    }
    std::env::var_os(ENV).map(PathBuf::from).filter(|p| p.is_dir())
}

/// One short section listing every known trace that is not in `dir` (empty when none is
/// missing).
pub(crate) fn missing_section(dir: Option<&Path>) -> String {
    let missing: Vec<Known> =
        known().into_iter().filter(|k| dir.is_none_or(|d| k.find(d).is_none())).collect();
    if missing.is_empty() {
        return String::new();
    }
    let mut md = String::new();
    let _ = writeln!(md, "### Traces not found\n");
    let _ = writeln!(
        md,
        "{} Their rows are missing above; the built-in workloads do not need them. \
         `cache-bench traces fetch --dir DIR` downloads them (with `curl`) and checks their \
         sha256; then pass `--traces DIR` or set `{ENV}=DIR`.\n",
        match dir {
            Some(d) => format!("Not in {}.", d.display()),
            None => format!(
                "No traces directory: neither `../shared/traces` exists nor does `{ENV}` name one."
            ),
        }
    );
    let rows: Vec<Vec<String>> = missing
        .iter()
        .map(|k| {
            vec![
                format!("`{}`", k.file),
                k.origin.to_owned(),
                k.url.map_or("no known public mirror".into(), |u| format!("<{u}>")),
                format!("`{}`", k.sha256),
            ]
        })
        .collect();
    md.push_str(&cache_bench_table(
        &["file", "from", "download", "sha256 (shared/traces/SHA256SUMS)"],
        &rows,
    ));
    md.push('\n');
    md
}

fn cache_bench_table(header: &[&str], rows: &[Vec<String>]) -> String {
    crate::output::table(header, rows)
}

/// Flags of `traces`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TracesArgs {
    #[command(subcommand)]
    action: TracesAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum TracesAction {
    /// Downloads every known trace missing from DIR with `curl` and checks its sha256.
    Fetch {
        /// Where to put them (default: the traces directory `report` would use, else
        /// `../shared/traces`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Checks the sha256 of every known trace in DIR.
    Verify {
        /// The traces directory (default: the one `report` would use).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `cache-bench traces`.
pub(crate) fn run(args: TracesArgs) -> Result<()> {
    match args.action {
        TracesAction::Fetch { dir } => {
            let dir = dir.or_else(default_dir).unwrap_or_else(|| PathBuf::from("../shared/traces"));
            fetch(&dir)
        }
        TracesAction::Verify { dir } => {
            let Some(dir) = dir.or_else(default_dir) else {
                bail!("no traces directory: pass --dir or set {ENV}");
            };
            let bad = verify(&dir)?;
            if bad > 0 {
                bail!("{bad} trace(s) failed the check");
            }
            Ok(())
        }
    }
}

fn fetch(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut failed = 0;
    for k in known() {
        if let Some(p) = k.find(dir) {
            eprintln!("{}: present ({})", k.file, p.display());
            continue;
        }
        let Some(url) = k.url else {
            eprintln!("{}: no known public mirror; skipped", k.file);
            failed += 1;
            continue;
        };
        let dest = dir.join(k.download_as);
        let part = dir.join(format!("{}.part", k.download_as));
        eprintln!("{}: curl -fL -o {} {url}", k.file, dest.display());
        let status = Command::new("curl")
            .args(["-fL", "--retry", "3", "-o"])
            .arg(&part)
            .arg(url)
            .status()
            .context("running curl (is it installed?)")?;
        if !status.success() {
            let _ = std::fs::remove_file(&part);
            eprintln!("{}: curl failed ({status})", k.file);
            failed += 1;
            continue;
        }
        std::fs::rename(&part, &dest)?;
        match content_sha256(&dest, k.format) {
            Ok(h) if h == k.content_sha256 => eprintln!("{}: sha256 of the content ok", k.file),
            Ok(h) => {
                eprintln!(
                    "{}: content sha256 {h}, expected {}; removed {}",
                    k.file,
                    k.content_sha256,
                    dest.display()
                );
                let _ = std::fs::remove_file(&dest);
                failed += 1;
            }
            Err(e) => {
                eprintln!("{}: cannot check: {e:#}", k.file);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} trace(s) not fetched");
    }
    Ok(())
}

/// Checks every known trace in `dir`; returns how many failed.
fn verify(dir: &Path) -> Result<usize> {
    let mut bad = 0;
    for k in known() {
        let Some(p) = k.find(dir) else {
            eprintln!("{}: missing", k.file);
            continue;
        };
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == k.file {
            let h = file_sha256(&p)?;
            if h == k.sha256 {
                println!("{}: ok (sha256 {h})", p.display());
                continue;
            }
        }
        // Another compression of the same trace: compare the decompressed content.
        let h = content_sha256(&p, k.format)?;
        if h == k.content_sha256 {
            println!("{}: ok (sha256 of the decompressed content {h})", p.display());
        } else {
            println!(
                "{}: MISMATCH (content sha256 {h}, expected {})",
                p.display(),
                k.content_sha256
            );
            bad += 1;
        }
    }
    Ok(bad)
}

fn file_sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("running sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    hex_of(&out.stdout)
}

/// sha256 of the decompressed bytes of `path`, streamed into `sha256sum`.
fn content_sha256(path: &Path, _format: TraceFormat) -> Result<String> {
    let mut input =
        open_decompressed(path).with_context(|| format!("opening {}", path.display()))?;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stdin.write_all(&buf[..n])?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("sha256sum failed");
    }
    hex_of(&out.stdout)
}

fn hex_of(stdout: &[u8]) -> Result<String> {
    let s = String::from_utf8_lossy(stdout);
    match s.split_whitespace().next() {
        Some(h) if h.len() == 64 => Ok(h.to_owned()),
        _ => bail!("unexpected sha256sum output {s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_section_lists_each_trace_once() {
        let dir = tempfile::tempdir().unwrap();
        let md = missing_section(Some(dir.path()));
        for k in known() {
            assert_eq!(md.matches(&format!("`{}`", k.file)).count(), 1, "{}", k.file);
            assert!(md.contains(k.sha256));
        }
        std::fs::write(dir.path().join("web07.trace.xz"), b"x").unwrap();
        assert!(!missing_section(Some(dir.path())).contains("`web07.trace.xz`"));
        assert!(missing_section(None).contains(ENV));
    }

    #[test]
    fn content_hash_ignores_the_compression() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("t.lis");
        std::fs::write(&plain, b"1 1 0 0\n").unwrap();
        let xz = dir.path().join("t.lis.xz");
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(b"1 1 0 0\n").unwrap();
        std::fs::write(&xz, enc.finish().unwrap()).unwrap();
        let a = content_sha256(&plain, TraceFormat::Arc).unwrap();
        assert_eq!(a, content_sha256(&xz, TraceFormat::Arc).unwrap());
        assert_eq!(a, file_sha256(&plain).unwrap());
    }
}
