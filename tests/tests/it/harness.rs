//! Finds the S3 server the tests run against and builds `object_store` clients for it.
//!
//! The server is described by environment variables, which `cargo xtask s3 start` prints
//! (`eval "$(cargo xtask s3 env)"`) and `cargo xtask ci` exports to the test processes:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `AWS_ENDPOINT` | base URL, e.g. `http://127.0.0.1:8333` (required) |
//! | `S3_BUCKET` (or `AWS_BUCKET`) | bucket to use; it must exist (required) |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | credentials (required) |
//! | `AWS_REGION` | signing region (default `us-east-1`) |
//! | `AWS_ALLOW_HTTP` | `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`); unset: allowed for an `http://` endpoint |
//! | `TIERED_CACHE_S3_PID` | pid of the local server, for tests that stop or restart it (optional) |
//! | `TIERED_CACHE_S3_STATE` | path of the xtask's `server.json` for that server (optional) |
//!
//! The `AWS_*` and bucket variables are read by `cache_l3_object::S3Env`, as everywhere else.
//!
//! A test starts with [`skip_unless_s3!`], which yields an [`S3Env`]. Without a server it
//! prints why and returns early, so a plain `cargo test` stays green on a laptop; when `CI` is
//! set (as in `.ci/run` and GitHub Actions) it panics instead, so CI never skips silently.
//! [`S3Test::with_env`] then builds a client, checks it with a preflight write (a wrong
//! endpoint, bucket or key fails there, with advice), and gives the test a key prefix of its own
//! ([`unique_prefix`]), so reruns and concurrent tests never collide. [`s3_test!`] does both
//! steps in one line.

use std::{env, path::PathBuf, sync::Arc, time::Duration};

use futures::TryStreamExt;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
};

/// Base URL of the S3 server.
pub(crate) const ENV_ENDPOINT: &str = "AWS_ENDPOINT";
/// Bucket the tests write to.
pub(crate) const ENV_BUCKET: &str = "S3_BUCKET";
/// Access key id.
pub(crate) const ENV_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Secret access key.
pub(crate) const ENV_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Pid of the local server started by `cargo xtask s3 start` (absent for external servers).
pub(crate) const ENV_SERVER_PID: &str = "TIERED_CACHE_S3_PID";
/// Path of the xtask's state file for the local server (absent for external servers).
pub(crate) const ENV_SERVER_STATE: &str = "TIERED_CACHE_S3_STATE";
/// Set (to anything but empty, `0` or `false`) on CI machines: missing S3 settings then fail.
pub(crate) const ENV_CI: &str = "CI";

/// The region used when `AWS_REGION` is unset.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";
/// The top-level key prefix every test object lives under.
pub(crate) const ROOT_PREFIX: &str = "tiered-cache-it";

/// Where the S3 server is and how to sign for it, read from the environment.
#[derive(Clone)]
pub(crate) struct S3Env {
    /// Base URL, e.g. `http://127.0.0.1:8333`.
    pub(crate) endpoint: String,
    /// The bucket (already created by the server's launcher).
    pub(crate) bucket: String,
    /// Access key id.
    pub(crate) access_key_id: String,
    /// Secret access key.
    pub(crate) secret_access_key: String,
    /// Signing region.
    pub(crate) region: String,
    /// Whether plain HTTP is allowed.
    pub(crate) allow_http: bool,
    /// Pid of the local server, if the xtask started it (lets a test stop or restart it).
    pub(crate) server_pid: Option<u32>,
    /// The xtask's `server.json` for that server.
    pub(crate) server_state: Option<PathBuf>,
}

impl std::fmt::Debug for S3Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret into test logs.
        f.debug_struct("S3Env")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("server_pid", &self.server_pid)
            .field("server_state", &self.server_state)
            .finish_non_exhaustive()
    }
}

impl S3Env {
    /// Reads the settings, or says which variables are missing.
    ///
    /// # Errors
    /// A message naming the missing variables.
    pub(crate) fn from_env() -> Result<S3Env, String> {
        let s3 = cache_l3_object::S3Env::from_env().map_err(|e| e.to_string())?;
        let var = |name: &str| env::var(name).ok().filter(|v| !v.is_empty());
        Ok(S3Env {
            endpoint: s3.endpoint,
            bucket: s3.bucket,
            access_key_id: s3.access_key_id,
            secret_access_key: s3.secret_access_key.expose().to_owned(),
            region: s3.region,
            allow_http: s3.allow_http,
            server_pid: var(ENV_SERVER_PID).and_then(|pid| pid.parse().ok()),
            server_state: var(ENV_SERVER_STATE).map(PathBuf::from),
        })
    }

    /// The settings for a test, or `None` (after printing why) if there is no server and `CI`
    /// is not set. Use it through [`skip_unless_s3!`].
    ///
    /// # Panics
    /// If the settings are missing and `CI` is set.
    pub(crate) fn for_test(test: &str) -> Option<S3Env> {
        match S3Env::from_env() {
            Ok(env) => Some(env),
            Err(why) if on_ci() => panic!(
                "S3 tests need a server, but {why}. Run `cargo xtask s3 start` and \
                 `eval \"$(cargo xtask s3 env)\"` before the tests, or run `cargo xtask ci`, \
                 which does both; on GitHub Actions set {ENV_ENDPOINT}, {ENV_BUCKET}, \
                 {ENV_ACCESS_KEY_ID} and {ENV_SECRET_ACCESS_KEY} for the MinIO service"
            ),
            Err(why) => {
                #[expect(clippy::print_stderr, reason = "the one place a skip is reported")]
                {
                    eprintln!(
                        "skipping {test}: {why} (no S3 server; `cargo xtask s3 start` and \
                         `eval \"$(cargo xtask s3 env)\"` run it; with CI set this fails)"
                    );
                }
                None
            }
        }
    }

    /// A builder configured for this server: endpoint, region, bucket, credentials, path-style
    /// requests and plain HTTP. Adjust it (e.g. `with_retry`) and call `build`.
    ///
    /// To change client options, use [`S3Env::builder_with_client_options`]:
    /// `with_client_options` replaces all client options, including `allow_http`.
    pub(crate) fn builder(&self) -> AmazonS3Builder {
        self.builder_with_client_options(ClientOptions::new())
    }

    /// [`S3Env::builder`] with the given client options (timeouts, pooling, ...). It applies
    /// `with_allow_http` after them, which they would otherwise override.
    pub(crate) fn builder_with_client_options(&self, options: ClientOptions) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_allow_http(self.allow_http)
    }

    /// A client for this server with short timeouts suited to a loopback server.
    ///
    /// # Panics
    /// If the builder rejects the settings.
    pub(crate) fn store(&self) -> AmazonS3 {
        self.builder_with_client_options(test_client_options())
            .build()
            .unwrap_or_else(|e| panic!("building an S3 client for {self:?}: {e}"))
    }
}

/// Client options for tests: fail in seconds rather than minutes when the server is gone.
pub(crate) fn test_client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60))
}

/// Whether `CI` says we run on a CI machine.
pub(crate) fn on_ci() -> bool {
    env::var(ENV_CI).is_ok_and(|v| is_true(&v))
}

fn is_true(value: &str) -> bool {
    !matches!(value.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no" | "off")
}

/// Yields the [`S3Env`] for this test, or returns from the test (printing why) when no server
/// is configured and `CI` is not set; panics when `CI` is set. An optional argument names the
/// test in the skip message (default: the module path).
///
/// ```ignore
/// #[tokio::test]
/// async fn round_trip() {
///     let env = skip_unless_s3!("round_trip");
///     // ... env.store(), env.builder() ...
/// }
/// ```
macro_rules! skip_unless_s3 {
    () => {
        $crate::harness::skip_unless_s3!(module_path!())
    };
    ($test:expr) => {
        match $crate::harness::S3Env::for_test($test) {
            Some(env) => env,
            None => return,
        }
    };
}
pub(crate) use skip_unless_s3;

/// [`skip_unless_s3!`] then [`S3Test::with_env`]: yields a checked [`S3Test`] with a fresh
/// prefix named after the test, or returns from the test as [`skip_unless_s3!`] does.
///
/// ```ignore
/// #[tokio::test]
/// async fn round_trip() {
///     let t = s3_test!("round_trip");
///     t.store.put(&t.path("a"), payload).await.unwrap();
///     t.cleanup().await;
/// }
/// ```
macro_rules! s3_test {
    ($test:expr) => {
        $crate::harness::S3Test::with_env($crate::harness::skip_unless_s3!($test), $test).await
    };
}
pub(crate) use s3_test;

/// A fresh key prefix for one test: `tiered-cache-it/<test>/<run id>`.
///
/// The run id combines the wall clock, the pid and a counter, so reruns, concurrent test
/// processes and several calls in one test all get distinct prefixes.
pub(crate) fn unique_prefix(test: &str) -> Path {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    // A unique name, not a cache timestamp: no injected clock needed.
    #[allow(clippy::disallowed_methods)]
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let run = format!(
        "{}-{:09}-{}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let test: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    Path::from_iter([ROOT_PREFIX, &test, &run])
}

/// One test's view of the server: the settings, a checked client, and a key prefix of its own.
#[derive(Debug, Clone)]
pub(crate) struct S3Test {
    /// The server settings.
    pub(crate) env: S3Env,
    /// A client checked by a preflight write.
    pub(crate) store: Arc<AmazonS3>,
    /// This test's prefix; put every object under it ([`S3Test::path`]).
    pub(crate) prefix: Path,
}

impl S3Test {
    /// Builds a client for `env`, picks a fresh prefix for `test`, and checks the client with a
    /// preflight write and delete under that prefix.
    ///
    /// # Panics
    /// If the preflight write fails, with a message that says what to check.
    pub(crate) async fn with_env(env: S3Env, test: &str) -> S3Test {
        let store = Arc::new(env.store());
        let prefix = unique_prefix(test);
        let probe = prefix.clone().join("preflight");
        if let Err(e) = store.put(&probe, PutPayload::from_static(b"preflight")).await {
            panic!(
                "preflight write to s3://{}/{probe} at {} failed: {e}\n\
                 Check that the server runs (`cargo xtask s3 status`), that the bucket exists and \
                 that the credentials match ({ENV_ACCESS_KEY_ID}/{ENV_SECRET_ACCESS_KEY}); \
                 `eval \"$(cargo xtask s3 env)\"` sets them for the local server",
                env.bucket, env.endpoint
            );
        }
        if let Err(e) = store.delete(&probe).await {
            panic!("preflight delete of s3://{}/{probe} failed: {e}", env.bucket);
        }
        S3Test { env, store, prefix }
    }

    /// The location `name` (which may contain `/`) under this test's prefix.
    pub(crate) fn path(&self, name: &str) -> Path {
        name.split('/').fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// Deletes every object under this test's prefix (call it at the end of a passing test;
    /// a failing test leaves its objects behind for inspection).
    ///
    /// # Panics
    /// If listing or deleting fails.
    pub(crate) async fn cleanup(&self) {
        let locations: Vec<Path> = self
            .store
            .list(Some(&self.prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("listing {}: {e}", self.prefix));
        for location in locations {
            self.store
                .delete(&location)
                .await
                .unwrap_or_else(|e| panic!("deleting {location}: {e}"));
        }
    }
}

/// Sends a signal to the server process (`kill -STOP` / `kill -CONT`).
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Resumes a stopped server when dropped, so a failing test never leaves it stopped.
pub(crate) struct Resume(pub(crate) u32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, RetryConfig, path::Path};

    use super::S3Env;

    fn unreachable_env() -> S3Env {
        S3Env {
            // Port 9 (discard) is closed on the test machines: requests fail to connect.
            endpoint: "http://127.0.0.1:9".to_owned(),
            bucket: "no-bucket".to_owned(),
            access_key_id: "key".to_owned(),
            secret_access_key: "secret".to_owned(),
            region: super::DEFAULT_REGION.to_owned(),
            allow_http: true,
            server_pid: None,
            server_state: None,
        }
    }

    /// The builder keeps plain HTTP allowed (the `with_client_options` pitfall): a request to a
    /// closed port fails to connect instead of being refused by the client for using HTTP.
    /// Needs no server.
    #[tokio::test]
    async fn builder_allows_http() {
        let store = unreachable_env()
            .builder()
            .with_retry(RetryConfig { max_retries: 0, ..RetryConfig::default() })
            .build()
            .expect("builder accepts the settings");
        let err = store.get(&Path::from("x")).await.expect_err("nothing listens on port 9");
        let message = format!("{err:?}").to_lowercase();
        assert!(!message.contains("https"), "plain HTTP was refused: {err}");
        assert!(message.contains("connect"), "expected a connection error: {err}");
    }
}
