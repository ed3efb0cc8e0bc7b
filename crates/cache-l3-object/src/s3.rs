//! S3 and compatible servers (feature `s3`): [`S3Config`], where a server is and how to talk to
//! it, and [`Secret`] for its keys. [`ObjectTierBuilder::s3`] builds a tier on one.
//!
//! The whole module needs `object_store`'s AWS client (reqwest, hyper, rustls), so it is behind
//! the `s3` feature: the embedded default (a local directory) builds without it.

use std::{fmt, sync::Arc, time::Duration};

use cache_core::{Error, Result};
use object_store::{
    ClientConfigKey, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey},
};

#[cfg(doc)]
use crate::ObjectTierBuilder;
use crate::{builder::MIB, tier::TIER};

mod env;

pub use self::env::{S3Env, S3EnvError};

/// S3's smallest part (except the last one) of a multipart upload.
pub(crate) const S3_MIN_PART: usize = 5 * MIB as usize;

/// A secret string (a key or token): shown as `"***"` by `Debug`, never in any message.
///
/// Available with the `s3` feature.
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

/// Where an S3-compatible server is and how to talk to it (AWS S3, MinIO, SeaweedFS, R2, …).
///
/// Fields left unset come from the environment when built with [`S3Config::from_env`]
/// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` and every other
/// variable [`AmazonS3Builder::from_env`] reads; `S3_BUCKET` is accepted for the bucket too).
/// `Debug` never shows the secret key or the session token. Available with the `s3` feature.
///
/// ```
/// use cache_l3_object::S3Config;
/// let s3 = S3Config::new("cache")
///     .with_endpoint("http://127.0.0.1:8333")
///     .with_region("us-east-1")
///     .with_credentials("KEY", "SECRET")
///     .with_allow_http(true)
///     .with_path_style(true);
/// assert!(!format!("{s3:?}").contains("SECRET"));
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    from_env: bool,
    endpoint: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
    allow_http: Option<bool>,
    path_style: Option<bool>,
}

impl S3Config {
    /// A bucket, configured explicitly (nothing is read from the environment).
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config { bucket: Some(bucket.into()), ..S3Config::default() }
    }

    /// Everything the environment says, through [`AmazonS3Builder::from_env`]; explicit settings
    /// given afterwards take precedence.
    pub fn from_env() -> S3Config {
        S3Config { from_env: true, ..S3Config::default() }
    }

    /// The server's URL, e.g. `http://127.0.0.1:9000`. Unset means AWS.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> S3Config {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The region (`us-east-1` for most self-hosted servers).
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> S3Config {
        self.region = Some(region.into());
        self
    }

    /// The bucket.
    #[must_use]
    pub fn with_bucket(mut self, bucket: impl Into<String>) -> S3Config {
        self.bucket = Some(bucket.into());
        self
    }

    /// Static credentials.
    #[must_use]
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<Secret>,
    ) -> S3Config {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }

    /// A session token for temporary credentials.
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<Secret>) -> S3Config {
        self.session_token = Some(token.into());
        self
    }

    /// Whether plain `http://` endpoints are allowed (off by default).
    #[must_use]
    pub fn with_allow_http(mut self, allow: bool) -> S3Config {
        self.allow_http = Some(allow);
        self
    }

    /// Path-style requests (`endpoint/bucket/key`, what MinIO and SeaweedFS expect) rather than
    /// virtual-hosted style (`bucket.endpoint/key`). object_store's default is path style.
    #[must_use]
    pub fn with_path_style(mut self, path_style: bool) -> S3Config {
        self.path_style = Some(path_style);
        self
    }

    /// The bucket, if known before building.
    pub fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    /// The store this configuration describes, with the builder's HTTP settings.
    pub(crate) fn build(
        &self,
        request_timeout: Duration,
        connect_timeout: Duration,
        retry: RetryConfig,
    ) -> Result<Arc<AmazonS3>> {
        let mut b =
            if self.from_env { AmazonS3Builder::from_env() } else { AmazonS3Builder::new() };
        let bucket = self
            .bucket
            .clone()
            .or_else(|| b.get_config_value(&AmazonS3ConfigKey::Bucket))
            .or_else(|| self.from_env.then(|| std::env::var("S3_BUCKET").ok()).flatten())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                Error::invalid(TIER, "no bucket is configured: set it, or AWS_BUCKET or S3_BUCKET")
            })?;
        b = b.with_bucket_name(bucket);
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(region) = &self.region {
            b = b.with_region(region);
        }
        if let Some(id) = &self.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &self.secret_access_key {
            b = b.with_secret_access_key(secret.expose());
        }
        if let Some(token) = &self.session_token {
            b = b.with_token(token.expose());
        }
        if let Some(path_style) = self.path_style {
            b = b.with_virtual_hosted_style_request(!path_style);
        }
        // Set client options one key at a time: `with_client_options` would replace all of
        // them, `allow_http` from the environment included.
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        b = b
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), ms(request_timeout))
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                ms(connect_timeout),
            )
            .with_retry(retry);
        if let Some(allow) = self.allow_http {
            b = b.with_allow_http(allow);
        }
        if let Some(endpoint) = b.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            let allow_http = b
                .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            check_endpoint(&endpoint, allow_http)?;
        }
        let store = b
            .build()
            .map_err(|e| Error::invalid(TIER, "the S3 configuration is invalid").with_source(e))?;
        Ok(Arc::new(store))
    }
}

/// Checks that `endpoint` is an `http://` or `https://` URL with a host, and that plain HTTP is
/// allowed if it is `http://`: object_store would otherwise fail at the first request with a
/// message that does not name the endpoint.
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<()> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .filter(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains(char::is_whitespace)
        });
    if rest.is_none() {
        return Err(Error::invalid(
            TIER,
            format!("the S3 endpoint {endpoint:?} is not an http:// or https:// URL with a host"),
        ));
    }
    if endpoint.starts_with("http://") && !allow_http {
        return Err(Error::invalid(
            TIER,
            format!(
                "the S3 endpoint {endpoint:?} is plain http:// but plain HTTP is not allowed: use \
                 https://, or allow it with S3Config::with_allow_http(true) or AWS_ALLOW_HTTP=true"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cache_core::ErrorKind;

    use super::*;
    use crate::ObjectTierBuilder;

    #[test]
    fn debug_never_shows_secrets() {
        let cfg = S3Config::new("bucket")
            .with_endpoint("http://127.0.0.1:8333")
            .with_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI-very-secret")
            .with_session_token("session-token-secret");
        let builder = ObjectTierBuilder::s3(cfg.clone()).prefix("p");
        for text in [format!("{cfg:?}"), format!("{cfg:#?}"), format!("{builder:?}")] {
            assert!(!text.contains("wJalrXUtnFEMI-very-secret"), "{text}");
            assert!(!text.contains("session-token-secret"), "{text}");
            assert!(text.contains("AKIDEXAMPLE"), "the key id is not secret: {text}");
        }
    }

    #[tokio::test]
    async fn bad_endpoints_are_named() {
        let cases = [
            (S3Config::new("b").with_endpoint("not a url").with_allow_http(true), "not an http"),
            (S3Config::new("b").with_endpoint("ftp://host").with_allow_http(true), "not an http"),
            (S3Config::new("b").with_endpoint("http://").with_allow_http(true), "not an http"),
            (S3Config::new("b").with_endpoint("http://127.0.0.1:9"), "plain HTTP is not allowed"),
        ];
        for (cfg, needle) in cases {
            let cfg = cfg.with_credentials("k", "s");
            let err = ObjectTierBuilder::s3(cfg.clone()).build().await.expect_err(needle);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{cfg:?}: {err}");
            assert!(err.to_string().contains(needle), "{cfg:?}: {err}");
        }
    }

    #[tokio::test]
    async fn bad_s3_settings_are_invalid() {
        let cases = [
            ObjectTierBuilder::s3(S3Config::new("b")).request_timeout(Duration::ZERO),
            ObjectTierBuilder::s3(S3Config::new("b")).connect_timeout(Duration::ZERO),
            ObjectTierBuilder::s3(S3Config::new("b")).part_size(1024),
            ObjectTierBuilder::s3(S3Config::default()),
        ];
        for b in cases {
            let text = format!("{b:?}");
            let err = b.build().await.expect_err(&text);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{text}: {err}");
        }
    }
}
