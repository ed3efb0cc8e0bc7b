//! [`S3Env`]: an S3 server as the standard environment variables describe it, every value
//! explicit. The one reader of those variables for the test harness, the torture campaigns
//! and the benches.

use std::fmt;

use object_store::aws::AmazonS3Builder;

use crate::s3::{S3Config, Secret};

/// The server's base URL.
const ENDPOINT: &str = "AWS_ENDPOINT";
/// The bucket; [`AWS_BUCKET`] is read when it is unset.
const S3_BUCKET: &str = "S3_BUCKET";
/// The bucket, as object_store's own `from_env` names it.
const AWS_BUCKET: &str = "AWS_BUCKET";
const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
const REGION: &str = "AWS_REGION";
const ALLOW_HTTP: &str = "AWS_ALLOW_HTTP";
/// The region when `AWS_REGION` is unset.
const DEFAULT_REGION: &str = "us-east-1";

/// An S3-compatible server described by the environment, with every value read up front
/// (unlike [`S3Config::from_env`], which lets object_store read the environment when the tier
/// is built), so a caller can name the endpoint, build raw clients and say what is missing.
///
/// | variable | meaning |
/// | --- | --- |
/// | `AWS_ENDPOINT` | base URL, e.g. `http://127.0.0.1:8333` (required) |
/// | `S3_BUCKET`, else `AWS_BUCKET` | the bucket (required) |
/// | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | static credentials (required) |
/// | `AWS_REGION` | signing region (default `us-east-1`) |
/// | `AWS_ALLOW_HTTP` | `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case; unset: allowed when the endpoint is `http://` |
///
/// An empty variable counts as unset. This is what `cargo xtask s3 env` prints. Requests are
/// path-style (what MinIO, SeaweedFS and Garage expect). Available with the `s3` feature.
///
/// ```
/// use cache_l3_object::S3Env;
/// let vars = [
///     ("AWS_ENDPOINT", "http://127.0.0.1:8333"),
///     ("AWS_BUCKET", "cache"),
///     ("AWS_ACCESS_KEY_ID", "KEY"),
///     ("AWS_SECRET_ACCESS_KEY", "SECRET"),
/// ];
/// let env = S3Env::from_vars(|name| {
///     vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
/// })?;
/// assert_eq!((env.bucket.as_str(), env.region.as_str(), env.allow_http), ("cache", "us-east-1", true));
/// assert!(!format!("{env:?}").contains("SECRET"));
/// # Ok::<(), cache_l3_object::S3EnvError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct S3Env {
    /// Base URL of the server.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (`Debug` shows `"***"`).
    pub secret_access_key: Secret,
    /// Signing region.
    pub region: String,
    /// Whether plain `http://` is allowed.
    pub allow_http: bool,
}

/// Why the environment does not describe an S3 server: the required variables that are
/// unset, or a value that cannot be read.
///
/// ```
/// let err = cache_l3_object::S3Env::from_vars(|_| None).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "AWS_ENDPOINT, S3_BUCKET (or AWS_BUCKET), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY not set"
/// );
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3EnvError {
    /// These required variables are unset or empty.
    Missing(Vec<&'static str>),
    /// A variable holds a value that is not one of its accepted forms.
    BadValue {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

impl fmt::Display for S3EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3EnvError::Missing(names) => write!(f, "{} not set", names.join(", ")),
            S3EnvError::BadValue { name, value } => write!(
                f,
                "{name}={value:?} is neither true (true, 1, yes, on) nor false (false, 0, no, off)"
            ),
        }
    }
}

impl std::error::Error for S3EnvError {}

impl S3Env {
    /// Reads the process environment.
    ///
    /// ```no_run
    /// let env = cache_l3_object::S3Env::from_env()?;
    /// println!("S3 at {}", env.endpoint);
    /// # Ok::<(), cache_l3_object::S3EnvError>(())
    /// ```
    ///
    /// # Errors
    /// [`S3EnvError`] naming every missing variable, or a bad `AWS_ALLOW_HTTP`.
    pub fn from_env() -> Result<S3Env, S3EnvError> {
        S3Env::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (the process environment in
    /// [`S3Env::from_env`]; a map in tests).
    ///
    /// # Errors
    /// As for [`S3Env::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<S3Env, S3EnvError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let endpoint = var(ENDPOINT);
        let bucket = var(S3_BUCKET).or_else(|| var(AWS_BUCKET));
        let access_key_id = var(ACCESS_KEY_ID);
        let secret = var(SECRET_ACCESS_KEY);
        let missing: Vec<&'static str> = [
            (endpoint.is_none(), ENDPOINT),
            (bucket.is_none(), "S3_BUCKET (or AWS_BUCKET)"),
            (access_key_id.is_none(), ACCESS_KEY_ID),
            (secret.is_none(), SECRET_ACCESS_KEY),
        ]
        .into_iter()
        .filter_map(|(missing, name)| missing.then_some(name))
        .collect();
        let (Some(endpoint), Some(bucket), Some(access_key_id), Some(secret)) =
            (endpoint, bucket, access_key_id, secret)
        else {
            return Err(S3EnvError::Missing(missing));
        };
        let allow_http = match var(ALLOW_HTTP) {
            None => endpoint.starts_with("http://"),
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => return Err(S3EnvError::BadValue { name: ALLOW_HTTP, value }),
            },
        };
        Ok(S3Env {
            endpoint,
            bucket,
            access_key_id,
            secret_access_key: Secret::new(secret),
            region: var(REGION).unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            allow_http,
        })
    }

    /// The tier's configuration for this server (path-style requests).
    ///
    /// ```
    /// # let env = cache_l3_object::S3Env::from_vars(|n| Some(match n {
    /// #     "AWS_ENDPOINT" => "http://127.0.0.1:8333".into(),
    /// #     "AWS_ALLOW_HTTP" => "true".into(),
    /// #     _ => "x".into() }))?;
    /// let config = env.config();
    /// assert_eq!(config.bucket(), Some(env.bucket.as_str()));
    /// # Ok::<(), cache_l3_object::S3EnvError>(())
    /// ```
    pub fn config(&self) -> S3Config {
        S3Config::new(&self.bucket)
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_credentials(&self.access_key_id, self.secret_access_key.clone())
            .with_allow_http(self.allow_http)
            .with_path_style(true)
    }

    /// A raw `object_store` client builder for this server (path-style requests). Client
    /// options set on it later with `with_client_options` replace `allow_http`: set it again
    /// after them.
    ///
    /// ```
    /// # let env = cache_l3_object::S3Env::from_vars(|n| Some(match n {
    /// #     "AWS_ENDPOINT" => "http://127.0.0.1:8333".into(),
    /// #     "AWS_ALLOW_HTTP" => "true".into(),
    /// #     _ => "x".into() }))?;
    /// let store = env.builder().build().expect("a client");
    /// # let _ = store;
    /// # Ok::<(), cache_l3_object::S3EnvError>(())
    /// ```
    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(self.secret_access_key.expose())
            .with_virtual_hosted_style_request(false)
            .with_allow_http(self.allow_http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<S3Env, S3EnvError> {
        S3Env::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    const BASE: [(&str, &str); 4] = [
        ("AWS_ENDPOINT", "http://127.0.0.1:8333"),
        ("S3_BUCKET", "tests"),
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars: Vec<_> = extra.to_vec();
        vars.extend(BASE.iter().filter(|(n, _)| !extra.iter().any(|(e, _)| e == n)));
        vars
    }

    #[test]
    fn bucket_from_either_variable() {
        assert_eq!(env(&BASE).unwrap().bucket, "tests");
        let aws_only = with(&[("S3_BUCKET", ""), ("AWS_BUCKET", "aws")]);
        assert_eq!(env(&aws_only).unwrap().bucket, "aws");
        let both = with(&[("AWS_BUCKET", "aws")]);
        assert_eq!(env(&both).unwrap().bucket, "tests", "S3_BUCKET wins");
    }

    #[test]
    fn allow_http_forms() {
        for (value, allowed) in [("true", true), ("1", true), ("YES", true), (" on ", true)] {
            assert_eq!(env(&with(&[("AWS_ALLOW_HTTP", value)])).unwrap().allow_http, allowed);
        }
        for value in ["false", "0", "No", "OFF"] {
            assert!(!env(&with(&[("AWS_ALLOW_HTTP", value)])).unwrap().allow_http, "{value}");
        }
        assert_eq!(
            env(&with(&[("AWS_ALLOW_HTTP", "maybe")])).unwrap_err(),
            S3EnvError::BadValue { name: "AWS_ALLOW_HTTP", value: "maybe".into() }
        );
        assert!(env(&BASE).unwrap().allow_http, "unset: an http:// endpoint is allowed");
        let https = with(&[("AWS_ENDPOINT", "https://s3.example")]);
        assert!(!env(&https).unwrap().allow_http, "unset: https needs no plain HTTP");
    }

    #[test]
    fn missing_variables_are_named_and_empty_is_unset() {
        let err = env(&[("AWS_ENDPOINT", "http://h"), ("AWS_ACCESS_KEY_ID", " ")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "S3_BUCKET (or AWS_BUCKET), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY not set"
        );
        let e = env(&BASE).unwrap();
        assert_eq!(e.region, "us-east-1");
        assert_eq!(env(&with(&[("AWS_REGION", "eu-west-3")])).unwrap().region, "eu-west-3");
        assert_eq!(e.config().bucket(), Some("tests"));
    }
}
