//! The one public error type of the workspace: a kind that tells the caller what to do, plus context.

use std::{borrow::Cow, error::Error as StdError, fmt, sync::Arc};

/// What went wrong, phrased as what the caller should do about it.
///
/// Adding a kind is an architecture-level decision (see ARCHITECTURE.md): callers match on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A bad argument or configuration (oversized key, bad namespace, bad config). Fix the input;
    /// retrying will not help. Nothing was changed.
    Invalid,
    /// Stored bytes failed validation (checksum, bounds, version). The entry is treated as absent
    /// and counted; a tiered cache falls through to the next tier.
    Corrupted,
    /// The backing store is temporarily unreachable, slow past its timeout or overloaded. Retry
    /// later or fall through to the next tier.
    Unavailable,
    /// The tier was closed; open a new one.
    Closed,
    /// A local IO failure (disk full, permission denied, missing directory).
    Io,
    /// The tier does not support this optional capability.
    Unsupported,
    /// A bug or a broken invariant inside the tier. Please report it.
    Internal,
}

impl ErrorKind {
    /// Every kind, in a stable order (used to index per-kind counters).
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Invalid,
        ErrorKind::Corrupted,
        ErrorKind::Unavailable,
        ErrorKind::Closed,
        ErrorKind::Io,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];

    /// A short lowercase name, stable for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Corrupted => "corrupted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            ErrorKind::Invalid => 0,
            ErrorKind::Corrupted => 1,
            ErrorKind::Unavailable => 2,
            ErrorKind::Closed => 3,
            ErrorKind::Io => 4,
            ErrorKind::Unsupported => 5,
            ErrorKind::Internal => 6,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every tier returns.
///
/// It is cheap to clone (the source sits behind an `Arc`), so a single-flight loader's error can
/// reach every waiter.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    tier: &'static str,
    message: Cow<'static, str>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` raised by `tier` (a short static name such as `"l1"` or `"nvme"`).
    pub fn new(
        kind: ErrorKind,
        tier: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error { kind, tier, message: message.into(), source: None }
    }

    /// Shorthand for an [`ErrorKind::Invalid`] error.
    pub fn invalid(tier: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::Invalid, tier, message)
    }

    /// Shorthand for an [`ErrorKind::Corrupted`] error.
    pub fn corrupted(tier: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::Corrupted, tier, message)
    }

    /// Shorthand for an [`ErrorKind::Closed`] error.
    pub fn closed(tier: &'static str) -> Error {
        Error::new(ErrorKind::Closed, tier, "the tier is closed")
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// Attaches an already shared cause.
    #[must_use]
    pub fn with_shared_source(
        mut self,
        source: Arc<dyn StdError + Send + Sync + 'static>,
    ) -> Error {
        self.source = Some(source);
        self
    }

    /// Replaces the name of the tier the error is attributed to.
    #[must_use]
    pub fn with_tier(mut self, tier: &'static str) -> Error {
        self.tier = tier;
        self
    }

    /// Attributes the error to `name` if it is attributed to `default`: how a tier that its
    /// builder named tags the errors its crate raised under the crate's default name, while a
    /// record's or a key's own errors keep theirs.
    #[must_use]
    pub fn renamed(self, default: &str, name: &'static str) -> Error {
        if self.tier == default { self.with_tier(name) } else { self }
    }

    /// What the caller should do.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The tier that raised it.
    pub fn tier(&self) -> &'static str {
        self.tier
    }

    /// The human-readable message (without the source).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("tier", &self.tier).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.tier, self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_changes_only_the_default_attribution() {
        let closed = Error::closed("nvme").renamed("nvme", "disk-a");
        assert_eq!((closed.kind(), closed.tier()), (ErrorKind::Closed, "disk-a"));
        let corrupt = Error::corrupted("record", "bad checksum").renamed("nvme", "disk-a");
        assert_eq!(corrupt.tier(), "record", "a record's own error keeps its attribution");
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Error>();
    }

    #[test]
    fn display_names_tier_kind_message_and_source() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::new(ErrorKind::Io, "nvme", "cannot append to segment 7").with_source(io);
        assert_eq!(err.to_string(), "nvme (io): cannot append to segment 7: disk on fire");
        assert!(err.source().is_some());
    }

    #[test]
    fn kind_indexes_are_dense_and_ordered() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
