//! `cargo xtask tidy`: workspace rules that review would otherwise have to remember.
//!
//! - **Dependency direction** (read from `cargo metadata`):
//!   `cache-core` has no normal dependency on a runtime or backing store (`tokio`, `moka`,
//!   `rocksdb`, `object_store`, `memmap2`) nor on any other internal crate; an optional one is
//!   allowed only behind the `testkit` feature (the conformance suite needs tokio).
//!   The tier crates (`cache-l1`, `cache-l2-nvme`, `cache-l2-rocks`, `cache-l3-object`,
//!   `cache-remote-redis`) never depend on each other or on `cache-tiered`, not even as a
//!   dev-dependency: comparisons between tiers, and with peers, live in `benches/`.
//! - **Lints and MSRV**: every member's `Cargo.toml` has `[lints] workspace = true` and
//!   `rust-version.workspace = true`, so the workspace's `rust-version` is the one MSRV
//!   (`cargo xtask ci` checks that the running rustc is at least that).
//! - **Unused dependencies**: every dependency a member declares is named in its sources as a
//!   path (`name::…`, `use name`, `extern crate name`, with `-` read as `_`): normal
//!   dependencies in `src/` (and the other library and binary targets), build dependencies in the
//!   build script, dev-dependencies anywhere in the crate (`src/`, `tests/`, `benches/`,
//!   `examples/`). A dependency used only through a feature or a macro goes into
//!   [`UNUSED_DEP_EXEMPTIONS`] with the reason.
//! - **File headers**: every `.rs` file under `crates/`, `xtask/`, `tests/`, `benches/` and
//!   `torture/` starts with a `//!` line saying what the file is for.
//!
//! The same checks run as the `tidy` unit test of this crate, so `cargo nextest run` enforces
//! them too.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::cmd;

/// The contract crate.
const CORE: &str = "cache-core";
/// Crates `cache-core` must not depend on (normal dependencies).
const CORE_FORBIDDEN: &[&str] = &["tokio", "moka", "rocksdb", "object_store", "memmap2"];
/// The only `cache-core` feature allowed to enable a forbidden optional dependency.
const CORE_TEST_FEATURE: &str = "testkit";
/// The tier crates: each depends on `cache-core` and its backing crate, never on a sibling.
const TIERS: &[&str] =
    &["cache-l1", "cache-l2-nvme", "cache-l2-rocks", "cache-l3-object", "cache-remote-redis"];
/// The crate that composes the tiers; no tier may depend on it.
const COMPOSER: &str = "cache-tiered";
/// Directories (relative to the root) whose `.rs` files must start with `//!`.
const HEADER_DIRS: &[&str] = &["crates", "xtask", "tests", "benches", "torture"];
/// Dependencies that are declared but never named as a path in the crate's sources, and why
/// that is right: (package, dependency, reason). A dependency that is only there to turn on a
/// feature of another crate, or whose macros expand to paths of a re-exporting crate, belongs
/// here; one that is simply unused belongs nowhere.
const UNUSED_DEP_EXEMPTIONS: &[(&str, &str, &str)] = &[];
/// Source directories of a crate that hold dev-dependency users besides its targets.
const DEV_DIRS: &[&str] = &["src", "tests", "benches", "examples"];

/// Runs every check, prints each problem, and fails if there is any.
pub(crate) fn run() -> Result<()> {
    let problems = check()?;
    if problems.is_empty() {
        println!("tidy: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    bail!("tidy found {} problem(s)", problems.len())
}

/// Runs every check on the workspace and returns the problems found.
fn check() -> Result<Vec<String>> {
    let root = crate::project_root();
    let metadata = cargo_metadata(&root)?;
    let mut problems = check_dependencies(&metadata)?;
    problems.extend(check_inherited(&metadata)?);
    problems.extend(check_unused_dependencies(&metadata)?);
    problems.extend(check_file_headers(&root)?);
    Ok(problems)
}

fn cargo_metadata(root: &Path) -> Result<Value> {
    let sh = crate::shell()?;
    let cargo = crate::cargo();
    let manifest = root.join("Cargo.toml");
    // `--no-deps`: declared dependencies of the members are all we need, and it needs no
    // resolution (no network, no lock file update).
    let json = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps --manifest-path {manifest}")
        .quiet()
        .read()
        .context("running `cargo metadata`")?;
    serde_json::from_str(&json).context("parsing `cargo metadata` output")
}

/// One declared dependency of a workspace member.
struct Dependency<'a> {
    name: &'a str,
    /// The name the crate is known by in the dependent's code if renamed (`rename = …`).
    rename: Option<&'a str>,
    /// `None` for a normal dependency, else `"dev"` or `"build"`.
    kind: Option<&'a str>,
    optional: bool,
}

/// The workspace members' package objects, by name.
fn members(metadata: &Value) -> Result<Vec<(&str, &Value)>> {
    let packages = metadata["packages"].as_array().context("metadata has no `packages`")?;
    let member_ids: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .context("metadata has no `workspace_members`")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| member_ids.contains(&id)))
        .map(|p| Ok((p["name"].as_str().context("package without a name")?, p)))
        .collect()
}

fn dependencies(package: &Value) -> Vec<Dependency<'_>> {
    package["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some(Dependency {
                name: d["name"].as_str()?,
                rename: d["rename"].as_str(),
                kind: d["kind"].as_str(),
                optional: d["optional"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

/// The features of `package` (other than `allowed`) that enable the optional dependency `dep`.
fn features_enabling<'a>(package: &'a Value, dep: &str, allowed: &str) -> Vec<&'a str> {
    let Some(features) = package["features"].as_object() else {
        return Vec::new();
    };
    features
        .iter()
        .filter(|(name, _)| name.as_str() != allowed)
        .filter(|(_, enables)| {
            enables.as_array().into_iter().flatten().filter_map(Value::as_str).any(|e| {
                let target = e.strip_prefix("dep:").unwrap_or(e);
                let target = target.split('/').next().unwrap_or(target);
                target.trim_end_matches('?') == dep
            })
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Checks the direction of dependencies between the workspace's crates.
fn check_dependencies(metadata: &Value) -> Result<Vec<String>> {
    let members = members(metadata)?;
    let internal: Vec<&str> = members.iter().map(|(name, _)| *name).collect();
    let mut problems = Vec::new();
    for (name, package) in &members {
        if *name == CORE {
            let normal = dependencies(package).into_iter().filter(|d| d.kind.is_none());
            for dep in normal {
                let forbidden = CORE_FORBIDDEN.contains(&dep.name) || internal.contains(&dep.name);
                if !forbidden {
                    continue;
                }
                if !dep.optional {
                    problems.push(format!(
                        "{CORE} depends on `{}`: the contract crate does no IO and depends on \
                         no runtime, backing store or other internal crate \
                         (move the dependency to [dev-dependencies] or behind `{CORE_TEST_FEATURE}`)",
                        dep.name
                    ));
                    continue;
                }
                for feature in features_enabling(package, dep.name, CORE_TEST_FEATURE) {
                    problems.push(format!(
                        "{CORE}'s feature `{feature}` enables `{}`: only `{CORE_TEST_FEATURE}` \
                         may pull in a runtime or backing store",
                        dep.name
                    ));
                }
            }
        } else if TIERS.contains(name) {
            for dep in dependencies(package) {
                if dep.name != *name && (TIERS.contains(&dep.name) || dep.name == COMPOSER) {
                    let (kind, fix) = match dep.kind {
                        Some("dev") => (
                            "dev-depends",
                            "a comparison with another tier or a peer belongs in benches/"
                                .to_owned(),
                        ),
                        _ => ("depends", format!("composition belongs in {COMPOSER}")),
                    };
                    problems.push(format!(
                        "tier crate {name} {kind} on `{}`: tiers depend on {CORE} and their \
                         backing crate only; {fix}",
                        dep.name
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// Checks that every member inherits the workspace lint table and `rust-version`.
fn check_inherited(metadata: &Value) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (name, package) in members(metadata)? {
        let manifest = PathBuf::from(package["manifest_path"].as_str().context("no manifest")?);
        let text = fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        if !inherits_workspace_lints(&text) {
            problems.push(format!(
                "{} (package {name}) lacks `[lints] workspace = true`",
                relative(&manifest).display()
            ));
        }
        if !inherits_workspace_rust_version(&text) {
            problems.push(format!(
                "{} (package {name}) lacks `rust-version.workspace = true` in [package]: the \
                 workspace's rust-version is the MSRV of every crate",
                relative(&manifest).display()
            ));
        }
    }
    Ok(problems)
}

/// Whether a manifest's `[package]` table has `rust-version.workspace = true` (or the inline
/// form).
fn inherits_workspace_rust_version(manifest: &str) -> bool {
    let squash = |line: &str| line.split('#').next().unwrap_or("").replace([' ', '\t'], "");
    let mut table: Option<String> = None;
    for line in manifest.lines().map(squash) {
        if line.starts_with('[') {
            table = Some(line);
        } else if table.as_deref() == Some("[package]")
            && (line == "rust-version.workspace=true" || line == "rust-version={workspace=true}")
        {
            return true;
        }
    }
    false
}

/// Checks that every declared dependency of every member is named in its sources.
fn check_unused_dependencies(metadata: &Value) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (name, package) in members(metadata)? {
        let manifest = PathBuf::from(package["manifest_path"].as_str().context("no manifest")?);
        let dir = manifest.parent().context("manifest without a directory")?;
        // The files of the library and binary targets (which may live outside `src/`), of the
        // build script, and every Rust file of the crate (for dev-dependencies).
        let (mut normal, mut build, mut all) = (Vec::new(), Vec::new(), Vec::new());
        for target in package["targets"].as_array().into_iter().flatten() {
            let Some(src) = target["src_path"].as_str().map(Path::new) else { continue };
            let kinds: Vec<&str> =
                target["kind"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let root = src.parent().unwrap_or(src);
            if kinds.contains(&"custom-build") {
                build.push(src.to_path_buf());
            } else if kinds.iter().any(|k| matches!(*k, "lib" | "rlib" | "bin" | "proc-macro")) {
                collect_rust_files(root, &mut normal)?;
            }
        }
        for sub in DEV_DIRS {
            collect_rust_files(&dir.join(sub), &mut all)?;
        }
        all.extend(normal.iter().cloned());
        all.extend(build.iter().cloned());
        let read = |files: &mut Vec<PathBuf>| -> Result<String> {
            files.sort();
            files.dedup();
            let mut text = String::new();
            for file in files.iter() {
                text += &fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                text.push('\n');
            }
            Ok(text)
        };
        let (normal, build, all) = (read(&mut normal)?, read(&mut build)?, read(&mut all)?);
        let mut seen = Vec::new();
        for dep in dependencies(package) {
            let ident = dep.rename.unwrap_or(dep.name).replace('-', "_");
            let (text, where_) = match dep.kind {
                None => (&normal, "its library and binary sources"),
                Some("build") => (&build, "its build script"),
                _ => (&all, "any of its sources"),
            };
            if seen.contains(&(dep.name, dep.kind)) || names_crate(text, &ident) {
                continue;
            }
            seen.push((dep.name, dep.kind));
            if UNUSED_DEP_EXEMPTIONS.iter().any(|(p, d, _)| p == &name && d == &dep.name) {
                continue;
            }
            let section = match dep.kind {
                None => "[dependencies]",
                Some("build") => "[build-dependencies]",
                _ => "[dev-dependencies]",
            };
            problems.push(format!(
                "{}: {section} `{}` is never named in {where_} (no `{ident}::` or `use {ident}`): \
                 remove it, or list it in UNUSED_DEP_EXEMPTIONS (xtask/src/tidy.rs) with the reason",
                relative(&manifest).display(),
                dep.name
            ));
        }
    }
    Ok(problems)
}

/// Whether `text` names the crate `ident` as a path: `ident::…` (not as the tail of a longer
/// path), `use ident` or `extern crate ident`.
fn names_crate(text: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(ident).any(|(at, _)| {
        let before = &text[..at];
        let after = &text[at + ident.len()..];
        if before.ends_with(|c: char| is_ident(c) || c == ':') || after.starts_with(is_ident) {
            return false;
        }
        if after.starts_with("::") {
            return true;
        }
        let word = before.trim_end();
        let last = word.rsplit(|c: char| !is_ident(c)).next().unwrap_or("");
        word.len() < before.len()
            && (last == "use"
                || (last == "crate" && word[..word.len() - 5].trim_end().ends_with("extern")))
    })
}

/// Whether a manifest has `[lints]` with `workspace = true` (or the dotted/inline forms).
fn inherits_workspace_lints(manifest: &str) -> bool {
    let squash = |line: &str| line.split('#').next().unwrap_or("").replace([' ', '\t'], "");
    // The current table header; `None` before the first one (the root table).
    let mut table: Option<String> = None;
    for line in manifest.lines().map(squash) {
        if line.starts_with('[') {
            table = Some(line);
        } else if match table.as_deref() {
            None => line == "lints.workspace=true" || line == "lints={workspace=true}",
            Some(table) => table == "[lints]" && line == "workspace=true",
        } {
            return true;
        }
    }
    false
}

/// Checks that every Rust file starts with a `//!` line.
fn check_file_headers(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for dir in HEADER_DIRS {
        collect_rust_files(&root.join(dir), &mut files)?;
    }
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        if !text.starts_with("//!") {
            problems.push(format!(
                "{} does not start with a `//!` line saying what the file is for",
                relative(&file).display()
            ));
        }
    }
    Ok(problems)
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            // Build output and hidden directories hold no sources of ours.
            if name != "target" && !name.starts_with('.') {
                collect_rust_files(&path, out)?;
            }
        } else if file_type.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `path` relative to the workspace root, for messages.
fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(crate::project_root()).map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{
        check, check_dependencies, inherits_workspace_lints, inherits_workspace_rust_version,
        names_crate,
    };

    /// The real workspace passes every rule (so `cargo nextest run` enforces tidy).
    #[test]
    fn tidy() {
        let problems = check().expect("tidy checks run");
        assert!(problems.is_empty(), "`cargo xtask tidy` found problems:\n{}", problems.join("\n"));
    }

    fn package(
        name: &str,
        deps: serde_json::Value,
        features: serde_json::Value,
    ) -> serde_json::Value {
        json!({ "id": name, "name": name, "dependencies": deps, "features": features })
    }

    fn dep(name: &str, kind: Option<&str>, optional: bool) -> serde_json::Value {
        json!({ "name": name, "kind": kind, "optional": optional })
    }

    fn metadata(packages: Vec<serde_json::Value>) -> serde_json::Value {
        let ids: Vec<_> = packages.iter().map(|p| p["id"].clone()).collect();
        json!({ "packages": packages, "workspace_members": ids })
    }

    #[test]
    fn dependency_rules() {
        let core_ok = package(
            "cache-core",
            json!([
                dep("bytes", None, false),
                dep("tokio", None, true),
                dep("tokio", Some("dev"), false),
                dep("moka", Some("dev"), false)
            ]),
            json!({ "testkit": ["dep:tokio"] }),
        );
        let tier_ok = package(
            "cache-l1",
            json!([dep("cache-core", None, false), dep("cache-core", Some("dev"), false)]),
            json!({}),
        );
        let tiered = package(
            "cache-tiered",
            json!([dep("cache-l1", None, true), dep("cache-l2-nvme", None, true)]),
            json!({}),
        );
        let fine = metadata(vec![core_ok, tier_ok.clone(), tiered.clone()]);
        assert_eq!(check_dependencies(&fine).unwrap(), Vec::<String>::new());

        let core_bad = package(
            "cache-core",
            json!([
                dep("moka", None, false),
                dep("cache-l1", None, false),
                dep("tokio", None, true)
            ]),
            json!({ "testkit": ["dep:tokio"], "rt": ["tokio/rt"] }),
        );
        let tier_bad = package(
            "cache-l3-object",
            json!([dep("cache-l1", None, false), dep("cache-tiered", None, true)]),
            json!({}),
        );
        let tier_dev_bad = package(
            "cache-l2-rocks",
            json!([dep("cache-core", None, false), dep("cache-l2-nvme", Some("dev"), false)]),
            json!({}),
        );
        let bad = metadata(vec![core_bad, tier_ok, tier_bad, tier_dev_bad, tiered]);
        let problems = check_dependencies(&bad).unwrap();
        let expected = [
            "cache-core depends on `moka`",
            "cache-core depends on `cache-l1`",
            "cache-core's feature `rt` enables `tokio`",
            "tier crate cache-l3-object depends on `cache-l1`",
            "tier crate cache-l3-object depends on `cache-tiered`",
            "tier crate cache-l2-rocks dev-depends on `cache-l2-nvme`",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, prefix) in problems.iter().zip(expected) {
            assert!(problem.starts_with(prefix), "{problem:?} should start with {prefix:?}");
        }
    }

    #[test]
    fn lint_table_forms() {
        assert!(inherits_workspace_lints("[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"));
        assert!(inherits_workspace_lints("lints.workspace = true\n[package]\nname = \"x\"\n"));
        assert!(!inherits_workspace_lints("[package]\nlints.workspace = true\n"));
        assert!(inherits_workspace_lints("lints = { workspace = true } # inherit\n"));
        assert!(!inherits_workspace_lints("[lints]\n[features]\nworkspace = true\n"));
        assert!(!inherits_workspace_lints("[lints.rust]\nmissing_docs = \"warn\"\n"));
    }

    #[test]
    fn rust_version_forms() {
        assert!(inherits_workspace_rust_version("[package]\nrust-version.workspace = true\n"));
        assert!(inherits_workspace_rust_version("[package]\nrust-version = { workspace = true }"));
        assert!(!inherits_workspace_rust_version("[package]\nrust-version = \"1.95\"\n"));
        assert!(!inherits_workspace_rust_version("[lints]\nrust-version.workspace = true\n"));
        assert!(!inherits_workspace_rust_version("[package]\n# rust-version.workspace = true\n"));
    }

    #[test]
    fn crate_names_as_paths() {
        assert!(names_crate("use bytes::Bytes;", "bytes"));
        assert!(names_crate("fn f() -> bytes::Bytes {}", "bytes"));
        assert!(names_crate("#[tokio::main]", "tokio"));
        assert!(names_crate("pub use object_store;", "object_store"));
        assert!(names_crate("extern crate   libc;", "libc"));
        assert!(names_crate("//! [`moka::future::Cache`]", "moka"));
        // Words and other paths that only look like the crate.
        assert!(!names_crate("a budget in bytes (key + value)", "bytes"));
        assert!(!names_crate("let bytes = v.len();", "bytes"));
        assert!(!names_crate("use cache_core::bytes::Bytes;", "bytes"));
        assert!(!names_crate("my_bytes::f()", "bytes"));
        assert!(!names_crate("bytes_used::f()", "bytes"));
        assert!(!names_crate("reuse bytes", "bytes"));
        assert!(!names_crate("crate bytes", "bytes"));
    }
}
