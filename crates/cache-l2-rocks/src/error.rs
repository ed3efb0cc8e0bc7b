//! The tier's private error detail, mapped into [`cache_core::Error`] with a kind that says what
//! the caller should do.

use std::path::PathBuf;

use cache_core::{Error, ErrorKind};

use crate::tier::TIER;

/// What went wrong inside the RocksDB tier.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RocksError {
    /// RocksDB's `LOCK` file is held: another process, or another tier in this process, has the
    /// directory open.
    #[error(
        "rocksdb directory {} is already open by another process (or by another tier in this process)",
        path.display()
    )]
    Locked { path: PathBuf, source: rocksdb::Error },
    /// Opening the database failed for another reason.
    #[error("cannot open rocksdb directory {}", path.display())]
    Open { path: PathBuf, source: rocksdb::Error },
    /// The directory could not be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// A RocksDB call failed.
    #[error("rocksdb {op} failed in {}", path.display())]
    Backend { op: &'static str, path: PathBuf, source: rocksdb::Error },
    /// A blocking task panicked or was cancelled.
    #[error("a blocking rocksdb task did not complete")]
    Join { source: tokio::task::JoinError },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl RocksError {
    /// Classifies an error from `DB::open` on `path`.
    pub(crate) fn open(path: PathBuf, source: rocksdb::Error) -> RocksError {
        let message = source.to_string();
        // RocksDB reports a held LOCK file as "While lock file: …/LOCK: Resource temporarily
        // unavailable" (another process) or "lock hold by current process" (this process).
        if message.contains("LOCK")
            && (message.contains("lock hold by current process")
                || message.contains("While lock file")
                || message.contains("Resource temporarily unavailable"))
        {
            RocksError::Locked { path, source }
        } else {
            RocksError::Open { path, source }
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            RocksError::Locked { .. } | RocksError::CreateDir { .. } => ErrorKind::Io,
            RocksError::Open { source, .. } | RocksError::Backend { source, .. } => {
                rocks_kind(source)
            }
            RocksError::Join { .. } => ErrorKind::Internal,
            RocksError::Config(_) => ErrorKind::Invalid,
        }
    }
}

fn rocks_kind(e: &rocksdb::Error) -> ErrorKind {
    use rocksdb::ErrorKind as K;
    match e.kind() {
        K::Corruption => ErrorKind::Corrupted,
        K::InvalidArgument => ErrorKind::Invalid,
        K::NotSupported => ErrorKind::Unsupported,
        K::Busy | K::TryAgain | K::TimedOut | K::Incomplete => ErrorKind::Unavailable,
        K::ShutdownInProgress | K::ColumnFamilyDropped => ErrorKind::Closed,
        K::IOError => ErrorKind::Io,
        _ => ErrorKind::Internal,
    }
}

impl From<RocksError> for Error {
    fn from(e: RocksError) -> Error {
        let err = Error::new(e.kind(), TIER, e.to_string());
        match e {
            RocksError::Locked { source, .. }
            | RocksError::Open { source, .. }
            | RocksError::Backend { source, .. } => err.with_source(source),
            RocksError::CreateDir { source, .. } => err.with_source(source),
            RocksError::Join { source } => err.with_source(source),
            RocksError::Config(_) => err,
        }
    }
}
