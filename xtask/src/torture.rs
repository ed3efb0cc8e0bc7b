//! `cargo xtask torture [--quick] [-- ARGS]`: the reliability campaigns of `cache-torture`.
//!
//! The quick form runs in `cargo xtask ci` in the dev profile (the one the `nextest` step has
//! already built, so RocksDB is not compiled again) and writes `target/torture/quick.md`; it
//! includes the soak's 2-minute form. The full form builds in release, takes under 30 minutes
//! (without the soak, whose full form is an hour of its own: `-- --only soak`, length with
//! `--soak-secs`) and writes `target/torture/full.md`; copy its tables into `RELIABILITY.md`
//! with the seed it printed. The soak also writes `soak.md` and `soak.svg` next to the report.
//! Both forms start (or reuse) the local S3 server for the outage and soak campaigns.

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

use crate::s3::TestServer;

/// Runs `cargo xtask torture <args>`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let (own, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut quick = false;
    for arg in own {
        match arg.as_str() {
            "--quick" => quick = true,
            other => {
                bail!("unknown option `{other}`; usage: cargo xtask torture [--quick] [-- ARGS]")
            }
        }
    }
    let sh = crate::shell()?;
    let server = TestServer::for_tests(&sh)?;
    run_with(&sh, quick, passthrough, server.env())
}

/// Runs the campaigns with the S3 server's environment `env`.
pub(crate) fn run_with(
    sh: &Shell,
    quick: bool,
    passthrough: &[String],
    env: &[(&'static str, String)],
) -> Result<()> {
    let cargo = crate::cargo();
    let out = crate::target_dir().join("torture").join(if quick { "quick.md" } else { "full.md" });
    let work = crate::target_dir().join("torture").join("work");
    std::fs::create_dir_all(&work)?;
    let profile: &[&str] = if quick { &[] } else { &["--release"] };
    let form: &[&str] = if quick { &["--quick"] } else { &[] };
    let mut command = cmd!(
        sh,
        "{cargo} run -q {profile...} -p cache-torture -- {form...} --out {out} --work-dir {work} {passthrough...}"
    );
    for (name, value) in env {
        command = command.env(name, value);
    }
    command.run()?;
    eprintln!("torture report: {}", out.display());
    Ok(())
}
