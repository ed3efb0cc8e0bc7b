//! The secrets campaign: S3 credentials never appear in `Debug` output, error messages or logs.
//!
//! Recognisable fake credentials (and the real ones of the S3 server, when configured) go
//! through every path that could print them: `Debug` of the configuration, the builder and the
//! tier; the errors of a wrong endpoint, wrong credentials against the real server, a server that
//! never answers (timeouts), and of gets and puts against an unreachable server, each in
//! `Display`, alternate `Display`, `Debug` and source-chain form. Meanwhile a `tracing`
//! subscriber (with the `log` bridge) captures every event at TRACE level into a buffer; a canary
//! event proves the capture works. Every captured text is searched for each secret.
//!
//! The access key id is an identifier, not a secret (AWS prints it in its own error messages),
//! and is shown by `Debug` on purpose; the table says where it appears.

use std::{
    io::Write,
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use anyhow::Result;
use cache_core::{Entry, Key, Tier};
use cache_l3_object::{ObjectTierBuilder, S3Config};
use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::{
    Ctx,
    outage::{S3Env, on_ci},
    report::{Section, Table},
};

const FAKE_KEY_ID: &str = "AKIATORTUREFAKEKEYID7";
const FAKE_SECRET: &str = "torture-FAKE-SECRET-9f8e7d6c5b4a39281706";
const FAKE_TOKEN: &str = "torture-FAKE-SESSION-TOKEN-0a1b2c3d4e5f";

/// Whether the log subscriber records events (only while this campaign runs).
static CAPTURE: AtomicBool = AtomicBool::new(false);

/// A shared buffer the log subscriber writes into.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn take(&self) -> String {
        self.0
            .lock()
            .map(|mut b| String::from_utf8_lossy(&std::mem::take(&mut *b)).into_owned())
            .unwrap_or_default()
    }
}

/// Collected texts, each with where it came from.
#[derive(Default)]
struct Texts(Vec<(String, String)>);

impl Texts {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    /// Every rendering of an error: Display, alternate, Debug and each source.
    fn error(&mut self, what: &str, e: &cache_core::Error) {
        let mut all = format!("{e}\n{e:#}\n{e:?}\n{e:#?}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            all.push_str(&format!("\n{s}\n{s:?}"));
            source = s.source();
        }
        self.add(what, all);
    }

    fn result<T: std::fmt::Debug>(&mut self, what: &str, r: &cache_core::Result<T>) {
        match r {
            Ok(v) => self.add(format!("{what} (succeeded)"), format!("{v:?}")),
            Err(e) => self.error(what, e),
        }
    }
}

/// Runs the campaign.
pub(crate) fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "Secrets",
        "fake and real S3 credentials through Debug output, errors (wrong endpoint, wrong \
         credentials, timeouts, failed gets and puts) and every log event at TRACE level",
    );
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // Every level, but only while this campaign captures: later campaigns pay nothing.
    let installed = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_filter(tracing_subscriber::filter::filter_fn(|_| CAPTURE.load(Relaxed))),
        )
        .try_init()
        .is_ok();
    s.check(installed, "could not install the log subscriber (another one was already set)");
    CAPTURE.store(true, Relaxed);
    let control = format!("x{FAKE_SECRET}y");
    s.check(
        control.contains(FAKE_SECRET),
        "the search does not find a secret planted in a control text",
    );

    let env = S3Env::from_env();
    let mut secrets: Vec<(&str, String)> =
        vec![("fake secret key", FAKE_SECRET.into()), ("fake session token", FAKE_TOKEN.into())];
    if let Some(env) = &env {
        secrets
            .push(("real secret key (from AWS_SECRET_ACCESS_KEY)", env.secret_access_key.clone()));
    } else {
        s.note("no S3 server configured: only the fake credentials were checked, against a closed port and a silent listener");
        s.check(!on_ci(), "no S3 server configured under CI=true");
    }

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut texts = Texts::default();
    rt.block_on(collect(&mut texts, env.as_ref(), ctx))?;
    tracing::info!(canary = "secrets-campaign-canary", "log capture check");
    log_bridge_canary();
    CAPTURE.store(false, Relaxed);
    let logs = buffer.take();
    let canary = logs.contains("secrets-campaign-canary");
    let bridged = logs.contains("secrets-campaign-log-canary");
    s.check(
        canary,
        "the TRACE capture did not record the canary event: the log check would be vacuous",
    );
    s.check(bridged, "the `log` bridge did not record its canary: `log` records would be missed");
    let log_lines = logs.lines().count();
    texts.add(format!("log events at TRACE ({log_lines} lines)"), logs);

    let mut table = Table::new([
        "what was checked",
        "bytes",
        "secrets found",
        "access key id shown",
        "verdict",
    ]);
    for (what, text) in &texts.0 {
        let found: Vec<&str> = secrets
            .iter()
            .filter(|(_, v)| !v.is_empty() && text.contains(v.as_str()))
            .map(|(n, _)| *n)
            .collect();
        let key_ids = [Some(FAKE_KEY_ID), env.as_ref().map(|e| e.access_key_id.as_str())];
        let shown = key_ids.iter().flatten().any(|id| text.contains(id));
        table.row(vec![
            what.clone(),
            text.len().to_string(),
            if found.is_empty() { "none".into() } else { found.join(", ") },
            if shown { "yes" } else { "no" }.into(),
            if found.is_empty() { "ok" } else { "**LEAK**" }.into(),
        ]);
        s.check(found.is_empty(), format!("{what}: contains {}", found.join(", ")));
    }
    s.tables.push(table);
    s.note(format!(
        "secrets searched for: {} (each as a whole string); the log capture installs a `tracing` \
         subscriber at TRACE with the `log` bridge, and {log_lines} lines were captured, canaries \
         included",
        secrets.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    ));
    s.note(
        "the access key id is an identifier, not a secret: `S3Config`'s Debug shows it on purpose",
    );
    Ok(s)
}

fn log_bridge_canary() {
    // What a dependency that uses the `log` crate (reqwest, for one) would emit.
    log::info!("secrets-campaign-log-canary");
}

fn fake(endpoint: &str) -> S3Config {
    S3Config::new("torture-bucket")
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials(FAKE_KEY_ID, FAKE_SECRET)
        .with_session_token(FAKE_TOKEN)
        .with_allow_http(true)
        .with_path_style(true)
}

async fn collect(t: &mut Texts, env: Option<&S3Env>, ctx: &Ctx) -> Result<()> {
    let short = Duration::from_millis(800);
    // Debug of the configuration and the builder.
    let cfg = fake("http://127.0.0.1:9");
    t.add("`S3Config` Debug (fake credentials)", format!("{cfg:?}"));
    t.add("`S3Config` pretty Debug `{:#?}`", format!("{cfg:#?}"));
    let builder =
        ObjectTierBuilder::s3(cfg.clone()).prefix("torture/secrets").operation_timeout(short);
    t.add("`ObjectTierBuilder` Debug", format!("{builder:?}"));

    // A tier built without the start-up check, against a closed port: Debug and failing calls.
    let tier =
        ObjectTierBuilder::s3(cfg.clone()).operation_timeout(short).preflight(false).build().await;
    t.result("tier on a closed port: build without start-up check", &tier);
    if let Ok(tier) = &tier {
        t.add("`ObjectTier` Debug (fake credentials)", format!("{tier:?}"));
        let key = Key::new("secrets", "k")?;
        t.result("get against a closed port", &tier.get(&key).await);
        t.result("put against a closed port", &tier.put(key.clone(), Entry::new("v")).await);
        t.result("remove against a closed port", &tier.remove(&key).await);
        t.add("tier stats after the failures", format!("{:?}", tier.stats()));
    }
    // Wrong endpoint: the start-up check fails.
    let r = ObjectTierBuilder::s3(cfg.clone()).operation_timeout(short).build().await;
    t.result("error: wrong endpoint (closed port), start-up check", &r);
    let r = ObjectTierBuilder::s3(fake("not a url")).build().await;
    t.result("error: malformed endpoint", &r);

    // A server that accepts connections and never answers: timeouts.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let silent_url = format!("http://{}", silent.local_addr()?);
    let r = ObjectTierBuilder::s3(fake(&silent_url))
        .operation_timeout(short)
        .request_timeout(short)
        .build()
        .await;
    t.result("error: timeout (silent server), start-up check", &r);
    let tier = ObjectTierBuilder::s3(fake(&silent_url))
        .operation_timeout(short)
        .preflight(false)
        .build()
        .await;
    if let Ok(tier) = &tier {
        let key = Key::new("secrets", "k")?;
        t.result("get timing out (silent server)", &tier.get(&key).await);
        t.result("put timing out (silent server)", &tier.put(key, Entry::new("v")).await);
    }

    if let Some(env) = env {
        // Wrong credentials against the real server.
        let wrong = fake(&env.endpoint).with_bucket(&env.bucket);
        let r =
            ObjectTierBuilder::s3(wrong).operation_timeout(Duration::from_secs(5)).build().await;
        t.result("error: fake credentials against the real server", &r);
        let wrong_secret = env.config().with_credentials(&env.access_key_id, FAKE_SECRET);
        let r = ObjectTierBuilder::s3(wrong_secret)
            .operation_timeout(Duration::from_secs(5))
            .build()
            .await;
        t.result("error: real key id with a wrong secret against the real server", &r);
        // The real credentials: Debug, errors, a round trip.
        let real = env.config();
        t.add("`S3Config` Debug (real credentials)", format!("{real:?} {real:#?}"));
        let from_env = S3Config::from_env();
        t.add("`S3Config::from_env()` Debug", format!("{from_env:?}"));
        let prefix = format!("torture/secrets/{:x}-{}", ctx.seed, std::process::id());
        let tier = ObjectTierBuilder::s3(real.clone()).prefix(&prefix).build().await;
        t.result("tier on the real server (real credentials)", &tier);
        if let Ok(tier) = tier {
            t.add("`ObjectTier` Debug (real credentials)", format!("{tier:?}"));
            let key = Key::new("secrets", "k")?;
            t.result("put on the real server", &tier.put(key.clone(), Entry::new("v")).await);
            t.result("get on the real server", &tier.get(&key).await);
            t.add("object-tier metrics", format!("{:?}", tier.metrics()));
            let _ = tier.remove(&key).await;
        }
        let r =
            ObjectTierBuilder::s3(real.clone().with_bucket("no-such-bucket-torture")).build().await;
        t.result("error: real credentials, missing bucket", &r);
        let r = ObjectTierBuilder::s3(real.clone().with_endpoint(&silent_url))
            .operation_timeout(short)
            .request_timeout(short)
            .build()
            .await;
        t.result("error: real credentials, timeout (silent server)", &r);
        let r = ObjectTierBuilder::s3(real.with_endpoint("http://127.0.0.1:9"))
            .operation_timeout(short)
            .build()
            .await;
        t.result("error: real credentials, closed port", &r);
    }
    drop(silent);
    Ok(())
}
