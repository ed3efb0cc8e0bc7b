//! Failures of object-store calls, classified into [`cache_core::ErrorKind`]s.
//!
//! | object_store says | kind |
//! |---|---|
//! | `NotFound` | handled by the caller: a miss, or an already deleted object; elsewhere (a listing, a put) a missing bucket: `Invalid` |
//! | timeout (ours or the HTTP client's), connection error, HTTP 5xx, 408, 429 | `Unavailable` |
//! | `Unauthenticated`, `PermissionDenied`, HTTP 401/403 | `Invalid` (the credentials or the bucket policy are wrong) |
//! | HTTP 404 on a bucket-level request, other 4xx, a bad path or config key | `Invalid` |
//! | `AlreadyExists`, `Precondition` | handled by the caller: a conditional create lost |
//! | `NotSupported`, `NotImplemented` | `Unsupported` |
//! | a local filesystem failure | `Io` |
//!
//! Messages never contain credentials: object_store's errors carry the method, URL and status,
//! and request signatures go in headers, which are not part of them.

use std::{error::Error as StdError, time::Duration};

use cache_core::{Error, ErrorKind};

use crate::{metrics::Op, tier::TIER};

/// A failed call to the object store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObjectError {
    /// The call did not finish within the tier's operation timeout.
    #[error("{op} did not finish within {}ms: the object store is slow or unreachable", timeout.as_millis())]
    Timeout { op: Op, timeout: Duration },
    /// The store refused the credentials or the request.
    #[error(
        "{op} was refused with access denied: check the credentials (access key id and secret) and the bucket's permissions"
    )]
    AccessDenied {
        op: Op,
        #[source]
        source: object_store::Error,
    },
    /// The store could not be reached or failed on its side.
    #[error("{op} failed: the object store is unreachable or failing")]
    Unavailable {
        op: Op,
        #[source]
        source: object_store::Error,
    },
    /// The request was malformed for this store, or the bucket does not exist.
    #[error("{op} was rejected by the object store: {hint}")]
    Rejected {
        op: Op,
        hint: &'static str,
        #[source]
        source: object_store::Error,
    },
    /// The store cannot do this.
    #[error("{op} is not supported by this object store")]
    Unsupported {
        op: Op,
        #[source]
        source: object_store::Error,
    },
    /// A local filesystem failure.
    #[error("{op} failed on the local filesystem")]
    Io {
        op: Op,
        #[source]
        source: object_store::Error,
    },
    /// Something the store should not have said.
    #[error("{op} failed unexpectedly")]
    Unexpected {
        op: Op,
        #[source]
        source: object_store::Error,
    },
}

impl ObjectError {
    /// Classifies a failure of `op`. `AlreadyExists` and `Precondition` should be handled by
    /// the caller first (reaching here they are unexpected), and so should `NotFound` where it
    /// means a missing object; elsewhere it is a missing bucket.
    pub(crate) fn classify(op: Op, source: object_store::Error) -> ObjectError {
        use object_store::Error as E;
        match &source {
            E::Unauthenticated { .. } | E::PermissionDenied { .. } => {
                ObjectError::AccessDenied { op, source }
            }
            E::NotSupported { .. } | E::NotImplemented { .. } => {
                ObjectError::Unsupported { op, source }
            }
            // Callers handle "not found" where it means a missing object (get, head, delete);
            // reaching here (a listing, a put, an upload), it means a missing bucket.
            E::NotFound { .. } => ObjectError::Rejected {
                op,
                hint: "not found: check the bucket name and the endpoint",
                source,
            },
            E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => {
                ObjectError::Rejected { op, hint: "invalid path or configuration", source }
            }
            E::Generic { store, source: inner } => {
                if *store == "LocalFileSystem" {
                    return ObjectError::Io { op, source };
                }
                match http_class(inner.as_ref()) {
                    HttpClass::Unavailable => ObjectError::Unavailable { op, source },
                    HttpClass::Denied => ObjectError::AccessDenied { op, source },
                    HttpClass::NotFound => ObjectError::Rejected {
                        op,
                        hint: "not found: check the bucket name and the endpoint",
                        source,
                    },
                    HttpClass::ClientError => ObjectError::Rejected {
                        op,
                        hint: "the request was refused: check the configuration",
                        source,
                    },
                    HttpClass::Unknown if has_io_error(inner.as_ref()) => {
                        ObjectError::Io { op, source }
                    }
                    HttpClass::Unknown => ObjectError::Unavailable { op, source },
                }
            }
            _ => ObjectError::Unexpected { op, source },
        }
    }

    /// The kind a caller sees.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            ObjectError::Timeout { .. } | ObjectError::Unavailable { .. } => ErrorKind::Unavailable,
            ObjectError::AccessDenied { .. } | ObjectError::Rejected { .. } => ErrorKind::Invalid,
            ObjectError::Unsupported { .. } => ErrorKind::Unsupported,
            ObjectError::Io { .. } => ErrorKind::Io,
            ObjectError::Unexpected { .. } => ErrorKind::Internal,
        }
    }

    /// The public error: this error's message, with the object store's error as its source.
    pub(crate) fn into_core(self) -> Error {
        let err = Error::new(self.kind(), TIER, self.to_string());
        match self {
            ObjectError::Timeout { .. } => err,
            ObjectError::AccessDenied { source, .. }
            | ObjectError::Unavailable { source, .. }
            | ObjectError::Rejected { source, .. }
            | ObjectError::Unsupported { source, .. }
            | ObjectError::Io { source, .. }
            | ObjectError::Unexpected { source, .. } => err.with_source(source),
        }
    }
}

impl From<ObjectError> for Error {
    fn from(e: ObjectError) -> Error {
        e.into_core()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpClass {
    Unavailable,
    Denied,
    NotFound,
    ClientError,
    Unknown,
}

/// Looks through an error chain for an HTTP failure: a transport error from the HTTP client or
/// a status code in object_store's retry error (whose type is private, so its message is read).
fn http_class(err: &(dyn StdError + 'static)) -> HttpClass {
    let mut cur = Some(err);
    while let Some(e) = cur {
        // The HTTP client exists only with the AWS client (`s3` feature).
        #[cfg(feature = "s3")]
        if e.downcast_ref::<object_store::client::HttpError>().is_some() {
            return HttpClass::Unavailable;
        }
        if let Some(status) = status_in(&e.to_string()) {
            return match status {
                401 | 403 => HttpClass::Denied,
                404 => HttpClass::NotFound,
                408 | 429 | 500..=599 => HttpClass::Unavailable,
                400..=499 => HttpClass::ClientError,
                _ => HttpClass::Unknown,
            };
        }
        cur = e.source();
    }
    HttpClass::Unknown
}

/// The status code in "... status code: 503 Service Unavailable ..." or
/// "... error response: ..." messages of object_store's HTTP client.
fn status_in(message: &str) -> Option<u16> {
    const MARK: &str = "status code: ";
    let at = message.find(MARK)? + MARK.len();
    message.get(at..at + 3)?.parse().ok()
}

fn has_io_error(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(store: &'static str, message: &str) -> object_store::Error {
        object_store::Error::Generic { store, source: message.to_owned().into() }
    }

    #[test]
    fn classification() {
        let cases = [
            (
                generic("S3", "Server returned non-2xx status code: 503 Service Unavailable: "),
                ErrorKind::Unavailable,
            ),
            (
                generic(
                    "S3",
                    "Error performing list request: Server returned non-2xx status code: 403 Forbidden: ",
                ),
                ErrorKind::Invalid,
            ),
            (
                generic("S3", "Server returned non-2xx status code: 404 Not Found: NoSuchBucket"),
                ErrorKind::Invalid,
            ),
            (
                generic("S3", "Server returned non-2xx status code: 429 Too Many Requests"),
                ErrorKind::Unavailable,
            ),
            (generic("S3", "something odd"), ErrorKind::Unavailable),
            (
                object_store::Error::NotFound {
                    path: "bucket".into(),
                    source: "NoSuchBucket".into(),
                },
                ErrorKind::Invalid,
            ),
            (generic("LocalFileSystem", "disk full"), ErrorKind::Io),
            (
                object_store::Error::PermissionDenied { path: "p".into(), source: "no".into() },
                ErrorKind::Invalid,
            ),
            (
                object_store::Error::NotImplemented {
                    operation: "x".into(),
                    implementer: "y".into(),
                },
                ErrorKind::Unsupported,
            ),
            (
                object_store::Error::NotModified { path: "p".into(), source: "no".into() },
                ErrorKind::Internal,
            ),
        ];
        for (err, kind) in cases {
            let text = err.to_string();
            let core = ObjectError::classify(Op::Get, err).into_core();
            assert_eq!(core.kind(), kind, "{text}");
            assert!(core.message().starts_with("get "), "{}", core.message());
            assert!(!core.message().ends_with('.'));
        }
    }

    #[test]
    fn access_denied_says_check_the_credentials() {
        let err = ObjectError::classify(
            Op::List,
            object_store::Error::Unauthenticated { path: "p".into(), source: "bad".into() },
        )
        .into_core();
        assert!(err.message().contains("check the credentials"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn timeout_is_unavailable() {
        let err =
            ObjectError::Timeout { op: Op::Put, timeout: Duration::from_millis(250) }.into_core();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(
            err.message(),
            "put did not finish within 250ms: the object store is slow or unreachable"
        );
    }
}
