//! Classification of Redis failures into cache-core error kinds.

use std::time::Duration;

use cache_core::{Error, ErrorKind};

use crate::tier::TIER;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisError {
    /// The call did not finish within the operation timeout.
    #[error("redis {op} did not answer within {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    /// The client or the server reported an error.
    #[error("redis {op} failed")]
    Client {
        op: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// The server answered with something the scripts never return.
    #[error("redis {op} answered unexpectedly: {what}")]
    Unexpected { op: &'static str, what: String },
}

impl RedisError {
    pub(crate) fn client(op: &'static str, source: redis::RedisError) -> RedisError {
        RedisError::Client { op, source }
    }

    /// The kind a caller acts on: `Unavailable` for anything a later retry (or the next tier)
    /// can get past, `Invalid` for configuration the server refuses, `Internal` otherwise.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            RedisError::Timeout { .. } => ErrorKind::Unavailable,
            RedisError::Unexpected { .. } => ErrorKind::Internal,
            RedisError::Client { source, .. } => classify(source),
        }
    }
}

fn classify(e: &redis::RedisError) -> ErrorKind {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return ErrorKind::Unavailable;
    }
    match e.kind() {
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => {
            return ErrorKind::Invalid;
        }
        redis::ErrorKind::Io => return ErrorKind::Unavailable,
        _ => {}
    }
    match e.code() {
        // Out of memory under `maxmemory` with a `noeviction` policy, a busy script, a server
        // loading its data set, a failover: all pass with time.
        Some(
            "OOM" | "BUSY" | "LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY",
        ) => ErrorKind::Unavailable,
        Some("NOAUTH" | "WRONGPASS" | "NOPERM") => ErrorKind::Invalid,
        _ => ErrorKind::Internal,
    }
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Error {
        let kind = e.kind();
        let message = e.to_string();
        match e {
            RedisError::Client { source, .. } => {
                Error::new(kind, TIER, message).with_source(source)
            }
            other => Error::new(kind, TIER, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let timeout = RedisError::Timeout { op: "get", timeout: Duration::from_millis(5) };
        assert_eq!(timeout.kind(), ErrorKind::Unavailable);
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(RedisError::client("get", io).kind(), ErrorKind::Unavailable);
        let auth =
            redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "bad password"));
        assert_eq!(RedisError::client("get", auth).kind(), ErrorKind::Invalid);
        let err: Error = RedisError::Unexpected { op: "get", what: "an integer".into() }.into();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.to_string().contains("an integer"), "{err}");
    }
}
