//! The crate's private error enum and its mapping into [`cache_core::Error`].

use std::{io, path::PathBuf};

use cache_core::{Error, ErrorKind};

/// The name this tier reports in errors, stats and metrics.
pub(crate) const TIER: &str = "nvme";

/// Everything that can go wrong inside the tier, with the path involved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NvmeError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The directory is locked by another opener.
    #[error("the cache directory {} is locked by another process (or another tier in this one)", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The disk has no space left.
    #[error("the disk is full: cannot {op} {}", path.display())]
    DiskFull {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Any other IO failure.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file of the tier does not validate.
    #[error("{} is not a valid file of this tier: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A record too large for the budget or the format.
    #[error("a record of {len} bytes does not fit: {why}")]
    TooLarge {
        /// The encoded record length.
        len: u64,
        /// The limit that was hit.
        why: String,
    },
}

/// Builds an IO error for `op` on `path`, recognising a full disk.
pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> NvmeError {
    let path = path.into();
    if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT) {
        NvmeError::DiskFull { op, path, source }
    } else {
        NvmeError::Io { op, path, source }
    }
}

impl From<NvmeError> for Error {
    fn from(e: NvmeError) -> Error {
        let kind = match &e {
            NvmeError::Config(_) | NvmeError::TooLarge { .. } => ErrorKind::Invalid,
            NvmeError::Locked { .. } => ErrorKind::Unavailable,
            NvmeError::DiskFull { .. } | NvmeError::Io { .. } => ErrorKind::Io,
            NvmeError::BadFile { .. } => ErrorKind::Corrupted,
        };
        let message = e.to_string();
        match e {
            NvmeError::DiskFull { source, .. } | NvmeError::Io { source, .. } => {
                Error::new(kind, TIER, message).with_source(source)
            }
            _ => Error::new(kind, TIER, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_says_the_disk_is_full_and_names_the_path() {
        let e: Error =
            io_err("append to segment", "/d/0.seg", io::Error::from_raw_os_error(libc::ENOSPC))
                .into();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(
            e.to_string()
                .starts_with("nvme (io): the disk is full: cannot append to segment /d/0.seg"),
            "{e}"
        );
        let e: Error = io_err("open", "/d/x", io::Error::from_raw_os_error(libc::EACCES)).into();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("cannot open /d/x"), "{e}");
    }
}
