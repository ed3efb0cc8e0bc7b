//! The outage campaign: a three-tier cache (moka → NVMe → object storage) under load from
//! several tasks while the object store is stopped, slowed or answering errors.
//!
//! Scenarios:
//!
//! - **stopped**: the real S3 server is frozen with SIGSTOP for a few seconds (the pid comes from
//!   `TIERED_CACHE_S3_PID`), then resumed with SIGCONT — by a guard, so also on an error or a
//!   panic, and by a detached `sh -c 'sleep; kill -CONT'` as a last resort if this process dies.
//!   The object tier is `ObjectTierBuilder::s3` with short HTTP and operation timeouts.
//! - **slow** (latency under the timeout), **very slow** (over it) and **errors** (every call
//!   answers 503): through `cache_l3_object::fault::FaultyStore` wrapped around the real S3
//!   store, or around a local-filesystem store when no S3 server is configured (then
//!   **stopped** is skipped: a failure under `CI=true`, a note otherwise).
//!
//! Load: four tasks, each doing about one operation per millisecond: gets of keys stored in every tier, gets of keys stored only in the
//! object tier (promotion is off, so they keep reaching it), gets of absent keys, and puts of
//! fresh keys. Every hit is checked byte for byte. Figures per scenario: gets served, gets that
//! failed (default, non-strict mode: must be 0), wrong values (0), the longest get and put
//! (must stay under the tier timeout plus [`MARGIN`]), faults the cache counted in the object
//! tier (must be > 0 while the fault lasts), and recovery: how long after the fault ended a put
//! and a get reached the object store again.

use std::{
    future::Future,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use cache_core::{Entry, ErrorKind, Key, Tier};
use cache_l1::MemoryTier;
use cache_l2_nvme::NvmeTierBuilder;
use cache_l3_object::{
    ObjectTier, ObjectTierBuilder, S3Config,
    fault::{Fault, FaultRule, FaultyStore},
};
use cache_tiered::{TierOptions, TierWrite, TieredCache, policy::PromoteNever};
use object_store::{ObjectStore, aws::AmazonS3Builder, local::LocalFileSystem};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    Ctx,
    fuzz::thousands,
    report::{Section, Table},
};

/// The object tier's timeout, both its own operation timeout and the tiered cache's per-tier
/// timeout.
const TIMEOUT: Duration = Duration::from_millis(1000);
/// What a call may take beyond [`TIMEOUT`]: the timer's wake-up and the task's rescheduling on
/// a busy 2-vCPU machine (measured worst cases are in the report).
const MARGIN: Duration = Duration::from_millis(500);
/// Load tasks.
const TASKS: usize = 4;
const VALUE_LEN: usize = 2048;

/// The S3 server from the environment, as `cargo xtask s3 env` prints it.
#[derive(Clone)]
pub(crate) struct S3Env {
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) region: String,
    pub(crate) allow_http: bool,
    pub(crate) pid: Option<u32>,
}

impl std::fmt::Debug for S3Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Env")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl S3Env {
    /// The settings, or `None` if a required variable is missing.
    pub(crate) fn from_env() -> Option<S3Env> {
        let s3 = cache_l3_object::S3Env::from_env().ok()?;
        Some(S3Env {
            endpoint: s3.endpoint,
            bucket: s3.bucket,
            access_key_id: s3.access_key_id,
            secret_access_key: s3.secret_access_key.expose().to_owned(),
            region: s3.region,
            allow_http: s3.allow_http,
            pid: std::env::var("TIERED_CACHE_S3_PID").ok().and_then(|p| p.parse().ok()),
        })
    }

    /// The tier's configuration for this server.
    pub(crate) fn config(&self) -> S3Config {
        S3Config::new(&self.bucket)
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_credentials(&self.access_key_id, self.secret_access_key.as_str())
            .with_allow_http(self.allow_http)
            .with_path_style(true)
    }

    /// A raw client with short timeouts and no retries.
    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        let options = object_store::ClientOptions::new()
            .with_timeout(TIMEOUT)
            .with_connect_timeout(Duration::from_millis(500));
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_allow_http(self.allow_http)
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .build()?;
        Ok(Arc::new(store))
    }
}

/// Whether `CI` says we run on a CI machine.
pub(crate) fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no" | "off")
    })
}

/// Resumes the stopped server when dropped (also on an error or a panic).
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32, for_at_most: Duration) -> Result<Stopped> {
        // A last resort if this process dies while the server is stopped.
        Command::new("sh")
            .arg("-c")
            .arg(format!("sleep {}; kill -CONT {pid} 2>/dev/null", for_at_most.as_secs() + 5))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("spawning the SIGCONT watchdog")?;
        signal(pid, "-STOP")?;
        Ok(Stopped(pid))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status()?;
    if !status.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

/// Counters the load tasks share; `take` reads and resets them at a phase boundary.
#[derive(Default)]
struct Counters {
    gets_ok: AtomicU64,
    gets_failed: AtomicU64,
    hits: AtomicU64,
    wrong: AtomicU64,
    longest_get_us: AtomicU64,
    puts: AtomicU64,
    puts_failed: AtomicU64,
    puts_reached_store: AtomicU64,
    longest_put_us: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Phase {
    gets_ok: u64,
    gets_failed: u64,
    hits: u64,
    wrong: u64,
    longest_get: Duration,
    puts: u64,
    puts_failed: u64,
    puts_reached_store: u64,
    longest_put: Duration,
}

impl Counters {
    fn take(&self) -> Phase {
        let t = |a: &AtomicU64| a.swap(0, Relaxed);
        Phase {
            gets_ok: t(&self.gets_ok),
            gets_failed: t(&self.gets_failed),
            hits: t(&self.hits),
            wrong: t(&self.wrong),
            longest_get: Duration::from_micros(t(&self.longest_get_us)),
            puts: t(&self.puts),
            puts_failed: t(&self.puts_failed),
            puts_reached_store: t(&self.puts_reached_store),
            longest_put: Duration::from_micros(t(&self.longest_put_us)),
        }
    }
}

fn value(kind: &str, i: u64) -> Bytes {
    let tag = format!("{kind}:{i}:");
    let mut v = tag.clone().into_bytes();
    v.extend((v.len()..VALUE_LEN).map(|j| (i as usize * 13 + j) as u8));
    v.into()
}

fn key(kind: &str, i: u64) -> Result<Key> {
    Ok(Key::new("outage", format!("{kind}-{i}"))?)
}

/// One scenario's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Stopped,
    Slow,
    VerySlow,
    Errors,
}

impl Scenario {
    fn describe(self) -> String {
        match self {
            Scenario::Stopped => "S3 server stopped (SIGSTOP)".into(),
            Scenario::Slow => format!("every call +{} ms (under the timeout)", slow().as_millis()),
            Scenario::VerySlow => {
                format!("every call +{} ms (over the timeout)", very_slow().as_millis())
            }
            Scenario::Errors => "every call answers 503".into(),
        }
    }
}

fn slow() -> Duration {
    TIMEOUT * 3 / 10
}

fn very_slow() -> Duration {
    TIMEOUT * 3
}

struct Stack {
    cache: TieredCache,
    object: Arc<dyn Tier>,
    faulty: Option<Arc<FaultyStore>>,
}

async fn stack(
    dir: &std::path::Path,
    object: Arc<dyn Tier>,
    faulty: Option<Arc<FaultyStore>>,
) -> Result<Stack> {
    let nvme = NvmeTierBuilder::new(dir, 8 << 20).open().await?;
    let cache = TieredCache::builder()
        .promotion(PromoteNever)
        .tier(MemoryTier::builder(64 * 1024).build())
        .tier(TierOptions::new(nvme).timeout(TIMEOUT))
        .tier(TierOptions::from_arc(object.clone()).timeout(TIMEOUT))
        .build()?;
    Ok(Stack { cache, object, faulty })
}

/// Sizes of one run.
struct Plan {
    hot: u64,
    cold: u64,
    before: Duration,
    fault: Duration,
    after: Duration,
}

/// Runs the campaign.
pub(crate) fn run(ctx: &Ctx) -> Result<Section> {
    let plan = if ctx.quick {
        Plan {
            hot: 100,
            cold: 100,
            before: Duration::from_secs(1),
            fault: Duration::from_secs(2),
            after: Duration::from_secs(1),
        }
    } else {
        Plan {
            hot: 400,
            cold: 400,
            before: Duration::from_secs(2),
            fault: Duration::from_secs(5),
            after: Duration::from_secs(3),
        }
    };
    let mut s = Section::new(
        "Outage",
        format!(
            "a moka → NVMe → object-storage cache under load from {TASKS} tasks while the object \
             store is stopped, slowed or failing; object-tier timeout {} ms (operation and \
             per-tier), allowed margin {} ms",
            TIMEOUT.as_millis(),
            MARGIN.as_millis()
        ),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let env = S3Env::from_env();
    let backend = if env.is_some() { "the S3 server" } else { "a local-filesystem store" };
    let mut table = Table::new([
        "scenario",
        "backend",
        "gets served",
        "hits",
        "gets failed",
        "wrong values",
        "longest get",
        "longest put",
        "puts stored in object tier / total",
        "faults counted",
        "faults injected",
        "recovery",
    ]);
    let bound = TIMEOUT + MARGIN;
    let run_id = format!("{:x}-{}", ctx.seed, std::process::id());
    let scenarios = [Scenario::Stopped, Scenario::Slow, Scenario::VerySlow, Scenario::Errors];
    for (n, scenario) in scenarios.into_iter().enumerate() {
        let prefix = format!("torture/outage/{run_id}/{n}");
        let dir = ctx.work_dir.join(format!("outage-{n}"));
        let result = rt.block_on(async {
            let (object, faulty): (Arc<dyn Tier>, Option<Arc<FaultyStore>>) = match (scenario, &env)
            {
                (Scenario::Stopped, Some(env)) => {
                    if env.pid.is_none() {
                        return Ok(None);
                    }
                    let build = || {
                        ObjectTierBuilder::s3(env.config())
                            .prefix(&prefix)
                            .operation_timeout(TIMEOUT)
                            .request_timeout(TIMEOUT)
                            .connect_timeout(Duration::from_millis(500))
                            .build()
                    };
                    (Arc::new(retry_unavailable(build).await?), None)
                }
                (Scenario::Stopped, None) => return Ok(None),
                (_, Some(env)) => {
                    let faulty = Arc::new(FaultyStore::with_seed(env.store()?, ctx.seed));
                    (Arc::new(object_tier(faulty.clone(), &prefix).await?), Some(faulty))
                }
                (_, None) => {
                    let root = ctx.work_dir.join(format!("outage-objects-{n}"));
                    std::fs::create_dir_all(&root)?;
                    let inner = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
                    let faulty = Arc::new(FaultyStore::with_seed(inner, ctx.seed));
                    (Arc::new(object_tier(faulty.clone(), &prefix).await?), Some(faulty))
                }
            };
            let st = stack(&dir, object, faulty).await?;
            let out = scenario_run(&st, scenario, &plan, env.as_ref(), ctx.seed ^ n as u64).await;
            // Delete what this scenario wrote to the bucket, and close.
            if let Ok(ns) = cache_core::Namespace::new("outage") {
                let _ = st.object.clear_namespace(&ns).await;
            }
            let _ = st.cache.close().await;
            out.map(Some)
        });
        let Some(r) = result.with_context(|| format!("scenario {scenario:?}"))? else {
            let why = if env.is_none() {
                "no S3 server configured (AWS_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY)"
            } else {
                "TIERED_CACHE_S3_PID is not set (an external server cannot be stopped)"
            };
            table.row(vec![
                scenario.describe(),
                "-".into(),
                "skipped".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            s.note(format!("{}: skipped: {why}", scenario.describe()));
            s.check(!on_ci(), format!("{}: skipped under CI=true: {why}", scenario.describe()));
            continue;
        };
        let name = scenario.describe();
        let f = &r.during;
        let all = [r.before, r.during, r.after];
        let gets_ok: u64 = all.iter().map(|p| p.gets_ok).sum();
        let gets_failed: u64 = all.iter().map(|p| p.gets_failed).sum();
        let wrong: u64 = all.iter().map(|p| p.wrong).sum();
        let hits: u64 = all.iter().map(|p| p.hits).sum();
        let longest_get = all.iter().map(|p| p.longest_get).max().unwrap_or_default();
        let longest_put = all.iter().map(|p| p.longest_put).max().unwrap_or_default();
        table.row(vec![
            name.clone(),
            backend.into(),
            thousands(gets_ok),
            thousands(hits),
            gets_failed.to_string(),
            wrong.to_string(),
            format!("{:.0} ms", longest_get.as_secs_f64() * 1e3),
            format!("{:.0} ms", longest_put.as_secs_f64() * 1e3),
            format!(
                "before {}/{}, during {}/{}, after {}/{}",
                r.before.puts_reached_store,
                r.before.puts,
                f.puts_reached_store,
                f.puts,
                r.after.puts_reached_store,
                r.after.puts
            ),
            thousands(r.faults),
            r.injected.map_or("-".into(), thousands),
            r.recovery
                .map_or("not recovered".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)),
        ]);
        let outside = (r.before.puts - r.before.puts_reached_store)
            + (r.after.puts - r.after.puts_reached_store);
        if outside > 0 {
            s.note(format!(
                "{name}: {outside} puts outside the fault window did not reach the object tier: \
                 the shared server was disturbed by another run (served from the tiers above, as \
                 in an outage)"
            ));
        }
        s.check(gets_failed == 0, format!("{name}: {gets_failed} gets failed in default mode"));
        s.check(wrong == 0, format!("{name}: {wrong} wrong values served"));
        let puts_failed: u64 = all.iter().map(|p| p.puts_failed).sum();
        s.check(puts_failed == 0, format!("{name}: {puts_failed} puts failed in default mode"));
        s.check(
            longest_get <= bound && longest_put <= bound,
            format!(
                "{name}: a call stalled {:?} (get) / {:?} (put), over the {bound:?} bound",
                longest_get, longest_put
            ),
        );
        s.check(f.gets_ok > 0, format!("{name}: no get was served while the fault lasted"));
        if scenario == Scenario::Slow {
            s.check(
                f.puts_reached_store > 0,
                format!("{name}: no put reached the slowed (not failed) store"),
            );
        } else {
            s.check(r.faults > 0, format!("{name}: the cache counted no fault in the object tier"));
        }
        s.check(
            r.recovery.is_some(),
            format!("{name}: puts and gets did not reach the store again"),
        );
        // The after phase is reported, not checked: the server is shared, and another run may
        // stop it for a moment; `recovery` above is the check that puts and gets reach it again.
    }
    s.tables.push(table);
    s.note(format!(
        "phases: {} s of load before the fault, {} s with it, recovery, then {} s after; {} keys in \
         every tier and {} only in the object tier (promotion off, so their gets keep reaching it)",
        plan.before.as_secs(),
        plan.fault.as_secs(),
        plan.after.as_secs(),
        plan.hot,
        plan.cold
    ));
    s.note(format!(
        "bound for a single get or put: the {} ms tier timeout + {} ms margin for timer wake-up and \
         rescheduling on 2 vCPUs; `gets served` counts hits and misses returned without error; \
         `faults counted` is the cache's fault counter for the object tier over the whole run",
        TIMEOUT.as_millis(),
        MARGIN.as_millis()
    ));
    s.note(
        "recovery: time from the end of the fault until a put was stored in the object tier and a \
         get of an object-only key hit there; the S3 server is shared with other test runs, which \
         may stop it briefly, so a put outside the fault window can fail too (it is then counted, \
         never an error to the caller)",
    );
    Ok(s)
}

async fn object_tier(store: Arc<FaultyStore>, prefix: &str) -> Result<ObjectTier> {
    let build =
        || ObjectTierBuilder::new(store.clone()).prefix(prefix).operation_timeout(TIMEOUT).build();
    retry_unavailable(build).await
}

/// Builds a tier, retrying for up to 20 s while the start-up check finds the store
/// unavailable: the server is shared, and another run may have it stopped for a moment.
async fn retry_unavailable<F, Fut>(build: F) -> Result<ObjectTier>
where
    F: Fn() -> Fut,
    Fut: Future<Output = cache_core::Result<ObjectTier>>,
{
    let started = Instant::now();
    loop {
        match build().await {
            Err(e)
                if e.kind() == ErrorKind::Unavailable
                    && started.elapsed() < Duration::from_secs(20) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return Ok(other?),
        }
    }
}

struct Outcome {
    before: Phase,
    during: Phase,
    after: Phase,
    faults: u64,
    injected: Option<u64>,
    recovery: Option<Duration>,
}

async fn scenario_run(
    st: &Stack,
    scenario: Scenario,
    plan: &Plan,
    env: Option<&S3Env>,
    seed: u64,
) -> Result<Outcome> {
    // Fill: hot keys through the cache (every tier), cold keys in the object tier only.
    let mut fills = Vec::new();
    for part in 0..8u64 {
        let cache = st.cache.clone();
        let object = st.object.clone();
        let (hot, cold) = (plan.hot, plan.cold);
        fills.push(tokio::spawn(async move {
            for i in (part..hot).step_by(8) {
                let _ = cache.put(key("hot", i)?, Entry::new(value("hot", i))).await?;
            }
            for i in (part..cold).step_by(8) {
                // The shared server may be briefly slow or stopped by another run: retry.
                let mut attempt = 0;
                let outcome = loop {
                    attempt += 1;
                    match object.put(key("cold", i)?, Entry::new(value("cold", i))).await {
                        Err(e) if e.kind() == ErrorKind::Unavailable && attempt < 20 => {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        other => break other?,
                    }
                };
                anyhow::ensure!(outcome.is_stored(), "filling the object tier: {outcome:?}");
            }
            anyhow::Ok(())
        }));
    }
    for f in fills {
        f.await??;
    }
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        tasks.push(tokio::spawn(load(
            st.cache.clone(),
            counters.clone(),
            stop.clone(),
            StdRng::seed_from_u64(seed ^ (t as u64) << 32),
            t as u64,
            (plan.hot, plan.cold),
        )));
    }
    let faults_at_start = object_faults(&st.cache);
    tokio::time::sleep(plan.before).await;
    let before = counters.take();
    // The fault.
    let mut stopped = None;
    match scenario {
        Scenario::Stopped => {
            let pid = env.and_then(|e| e.pid).context("no server pid")?;
            stopped = Some(Stopped::stop(pid, plan.fault)?);
        }
        Scenario::Slow => inject(st, FaultRule::new(Fault::Latency(slow()))),
        Scenario::VerySlow => inject(st, FaultRule::new(Fault::Latency(very_slow()))),
        Scenario::Errors => inject(st, FaultRule::new(Fault::Unavailable)),
    }
    tokio::time::sleep(plan.fault).await;
    drop(stopped);
    if let Some(f) = &st.faulty {
        f.clear();
    }
    let ended = Instant::now();
    let during = counters.take();
    // Recovery: a put stored in the object tier and a get of an object-only key that hits.
    let mut recovery = None;
    let mut probe = 0u64;
    while ended.elapsed() < Duration::from_secs(15) {
        probe += 1;
        let k = key("probe", probe)?;
        let report = st.cache.put_report(k, Entry::new(value("probe", probe))).await?;
        let stored = matches!(report.tiers.last(), Some((_, TierWrite::Stored)));
        let i = probe % plan.cold;
        let hit = st.object.get(&key("cold", i)?).await.ok().flatten();
        if stored && hit.is_some_and(|e| e.value == value("cold", i)) {
            recovery = Some(ended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Calls that started during the fault finish within the bound; then count afresh.
    tokio::time::sleep(TIMEOUT + MARGIN).await;
    let _ = counters.take();
    tokio::time::sleep(plan.after).await;
    let after = counters.take();
    stop.store(true, Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(Outcome {
        before,
        during,
        after,
        faults: object_faults(&st.cache) - faults_at_start,
        injected: st.faulty.as_ref().map(|f| f.injected()),
        recovery,
    })
}

fn inject(st: &Stack, rule: FaultRule) {
    if let Some(f) = &st.faulty {
        f.inject(rule);
    }
}

fn object_faults(cache: &TieredCache) -> u64 {
    cache.tiered_stats().tiers.last().map_or(0, |t| t.total_faults())
}

/// One load task: gets of hot, cold and absent keys, and puts of fresh keys.
async fn load(
    cache: TieredCache,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
    mut rng: StdRng,
    task: u64,
    (hot, cold): (u64, u64),
) -> Result<()> {
    let mut puts = 0u64;
    while !stop.load(Relaxed) {
        // At most about one operation per millisecond per task: a steady load that leaves the
        // runtime's two workers time to run the timers, even when every call fails at once.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let roll = rng.random_range(0..100);
        if roll < 20 {
            puts += 1;
            let i = task << 40 | puts;
            let started = Instant::now();
            let result = cache.put_report(key("put", i)?, Entry::new(value("put", i))).await;
            c.longest_put_us.fetch_max(started.elapsed().as_micros() as u64, Relaxed);
            c.puts.fetch_add(1, Relaxed);
            match result {
                Ok(report) => {
                    if matches!(report.tiers.last(), Some((_, TierWrite::Stored))) {
                        c.puts_reached_store.fetch_add(1, Relaxed);
                    }
                }
                Err(_) => {
                    c.puts_failed.fetch_add(1, Relaxed);
                }
            }
            continue;
        }
        let (kind, i) = match roll {
            20..=69 => ("hot", rng.random_range(0..hot)),
            70..=89 => ("cold", rng.random_range(0..cold)),
            _ => ("absent", rng.random_range(0..1_000_000)),
        };
        let started = Instant::now();
        let result = cache.get(&key(kind, i)?).await;
        c.longest_get_us.fetch_max(started.elapsed().as_micros() as u64, Relaxed);
        match result {
            Ok(hit) => {
                c.gets_ok.fetch_add(1, Relaxed);
                if let Some(e) = hit {
                    c.hits.fetch_add(1, Relaxed);
                    if kind == "absent" || e.value != value(kind, i) {
                        c.wrong.fetch_add(1, Relaxed);
                    }
                }
            }
            Err(_) => {
                c.gets_failed.fetch_add(1, Relaxed);
            }
        }
    }
    Ok(())
}
