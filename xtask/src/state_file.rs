//! The state files of the throw-away test servers (`s3.rs`, `redis.rs`): a lock that serializes
//! `start`/`stop` across processes, and a JSON file describing the running server.

use std::{
    fs::{self, File, OpenOptions},
    path::Path,
};

use anyhow::{Context, Result};
use serde_json::Value;

/// Takes the lock file `dir/lock` (creating `dir`), held until the returned file is dropped.
pub(crate) fn lock(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// The JSON state at `path`, parsed by `from_json`; `None` when there is no file.
pub(crate) fn read<T>(
    path: &Path,
    from_json: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    from_json(&value)
        .map(Some)
        .with_context(|| format!("{} lacks a field; delete it", path.display()))
}
