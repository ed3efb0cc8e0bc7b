//! [`FaultyStore`]: an [`ObjectStore`] wrapper that injects latency, errors and hangs, on a
//! schedule or at random with a seed, to test outages (feature `testkit`).
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use cache_l3_object::fault::{Fault, FaultOp, FaultRule, FaultyStore};
//! use object_store::memory::InMemory;
//!
//! let store = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
//! // The next two GETs hang like a dead server; every call is 5 ms slower; 10 % of PUTs fail.
//! store.inject(FaultRule::new(Fault::Hang).on(FaultOp::Get).times(2));
//! store.inject(FaultRule::new(Fault::Latency(Duration::from_millis(5))));
//! store.inject(FaultRule::new(Fault::Unavailable).on(FaultOp::Put).with_probability(0.1));
//! ```

use std::{
    fmt,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart, path::Path,
};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Which calls a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultOp {
    /// Every call.
    Any,
    /// `get_opts` (whole, ranged and HEAD reads).
    Get,
    /// `put_opts`.
    Put,
    /// Starting a multipart upload, each part and its completion.
    Multipart,
    /// `delete_stream` (single and bulk deletes).
    Delete,
    /// `list` and `list_with_delimiter`.
    List,
    /// `copy_opts` and renames.
    Copy,
}

/// What happens to a call a rule hits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call is delayed, then proceeds.
    Latency(Duration),
    /// The call fails as a server answering 503 would.
    Unavailable,
    /// The call fails as wrong credentials would (403).
    PermissionDenied,
    /// The call fails with "not found".
    NotFound,
    /// The call never completes, like a server that accepted the connection and died.
    Hang,
}

/// When a rule fires, among the calls it applies to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Schedule {
    /// Every call.
    Always,
    /// Calls number `skip` to `skip + count - 1` (counting from 0).
    Calls {
        /// Matching calls let through first.
        skip: u64,
        /// Matching calls faulted after those.
        count: u64,
    },
    /// Each call with this probability, drawn from the store's seeded generator.
    Random(f64),
}

/// A fault, the calls it applies to and when it fires.
#[derive(Debug, Clone)]
pub struct FaultRule {
    fault: Fault,
    op: FaultOp,
    schedule: Schedule,
    seen: u64,
}

impl FaultRule {
    /// `fault` on every call.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule { fault, op: FaultOp::Any, schedule: Schedule::Always, seen: 0 }
    }

    /// Only on calls of type `op`.
    #[must_use]
    pub fn on(mut self, op: FaultOp) -> FaultRule {
        self.op = op;
        self
    }

    /// Only on the next `n` matching calls.
    #[must_use]
    pub fn times(mut self, n: u64) -> FaultRule {
        let skip = match self.schedule {
            Schedule::Calls { skip, .. } => skip,
            _ => 0,
        };
        self.schedule = Schedule::Calls { skip, count: n };
        self
    }

    /// Lets `n` matching calls through first (then faults as `times` says, or forever).
    #[must_use]
    pub fn after(mut self, n: u64) -> FaultRule {
        let count = match self.schedule {
            Schedule::Calls { count, .. } => count,
            _ => u64::MAX,
        };
        self.schedule = Schedule::Calls { skip: n, count };
        self
    }

    /// On each matching call with probability `p`.
    #[must_use]
    pub fn with_probability(mut self, p: f64) -> FaultRule {
        self.schedule = Schedule::Random(p.clamp(0.0, 1.0));
        self
    }

    fn fires(&mut self, op: FaultOp, rng: &mut StdRng) -> bool {
        if self.op != FaultOp::Any && self.op != op {
            return false;
        }
        let n = self.seen;
        self.seen += 1;
        match self.schedule {
            Schedule::Always => true,
            Schedule::Calls { skip, count } => n >= skip && n - skip < count,
            Schedule::Random(p) => rng.random::<f64>() < p,
        }
    }
}

/// What to do to one call.
#[derive(Debug, Default)]
struct Action {
    delay: Duration,
    fail: Option<Fault>,
}

impl Action {
    /// Delays, then fails or lets the call proceed; never returns for [`Fault::Hang`].
    async fn run(self, path: &str) -> Result<()> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match self.fail {
            None | Some(Fault::Latency(_)) => Ok(()),
            Some(Fault::Hang) => futures::future::pending().await,
            Some(Fault::Unavailable) => Err(object_store::Error::Generic {
                store: "FaultyStore",
                source:
                    "injected fault: Server returned non-2xx status code: 503 Service Unavailable"
                        .into(),
            }),
            Some(Fault::PermissionDenied) => Err(object_store::Error::PermissionDenied {
                path: path.to_owned(),
                source: "injected fault: access denied".into(),
            }),
            Some(Fault::NotFound) => Err(object_store::Error::NotFound {
                path: path.to_owned(),
                source: "injected fault: not found".into(),
            }),
        }
    }
}

struct Rules {
    rules: Vec<FaultRule>,
    rng: StdRng,
}

/// The rules and counter, shared with the multipart uploads a store starts.
struct Shared {
    rules: Mutex<Rules>,
    injected: AtomicU64,
}

impl Shared {
    fn decide(&self, op: FaultOp) -> Action {
        let mut guard = self.rules.lock();
        let Rules { rules, rng } = &mut *guard;
        let mut action = Action::default();
        for rule in rules.iter_mut() {
            if action.fail.is_some() {
                break;
            }
            if rule.fires(op, rng) {
                match &rule.fault {
                    Fault::Latency(d) => action.delay += *d,
                    other => action.fail = Some(other.clone()),
                }
            }
        }
        if !action.delay.is_zero() || action.fail.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        action
    }
}

/// An [`ObjectStore`] that injects faults into the calls it passes to another one.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl FaultyStore {
    /// A wrapper with no faults yet and random seed 0.
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultyStore {
        FaultyStore::with_seed(inner, 0)
    }

    /// A wrapper whose random schedules draw from a generator seeded with `seed`.
    pub fn with_seed(inner: Arc<dyn ObjectStore>, seed: u64) -> FaultyStore {
        let rules = Rules { rules: Vec::new(), rng: StdRng::seed_from_u64(seed) };
        FaultyStore {
            inner,
            shared: Arc::new(Shared { rules: Mutex::new(rules), injected: AtomicU64::new(0) }),
        }
    }

    /// Adds a rule (rules are checked in the order added; latencies add up, the first failure
    /// wins).
    pub fn inject(&self, rule: FaultRule) {
        self.shared.rules.lock().rules.push(rule);
    }

    /// Removes every rule: the store is healthy again.
    pub fn clear(&self) {
        self.shared.rules.lock().rules.clear();
    }

    /// A full outage until [`FaultyStore::clear`]: every call hangs.
    pub fn outage(&self) {
        self.inject(FaultRule::new(Fault::Hang));
    }

    /// How many calls had a fault injected.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::Relaxed)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn decide(&self, op: FaultOp) -> Action {
        self.shared.decide(op)
    }

    fn faulted_stream<T: Send + 'static>(
        &self,
        op: FaultOp,
        path: String,
        stream: impl FnOnce() -> BoxStream<'static, Result<T>> + Send + 'static,
    ) -> BoxStream<'static, Result<T>> {
        let action = self.decide(op);
        let mut stream = Some(stream);
        futures::stream::once(async move { action.run(&path).await })
            .flat_map(move |r| match (r, stream.take()) {
                (Ok(()), Some(stream)) => stream(),
                (Ok(()), None) => futures::stream::empty().boxed(),
                (Err(e), _) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &format_args!("{}", self.inner))
            .field("rules", &self.shared.rules.lock().rules)
            .field("injected", &self.injected())
            .finish()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    shared: Arc<Shared>,
    path: String,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyUpload")
            .field("inner", &self.inner)
            .field("path", &self.path)
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let action = self.shared.decide(FaultOp::Multipart);
        let path = self.path.clone();
        let part = self.inner.put_part(data);
        Box::pin(async move {
            action.run(&path).await?;
            part.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.shared.decide(FaultOp::Multipart).run(&self.path).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.decide(FaultOp::Put).run(location.as_ref()).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.decide(FaultOp::Multipart).run(location.as_ref()).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        let shared = self.shared.clone();
        Ok(Box::new(FaultyUpload { inner, shared, path: location.to_string() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.decide(FaultOp::Get).run(location.as_ref()).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.decide(FaultOp::Get).run(location.as_ref()).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        self.faulted_stream(FaultOp::Delete, String::new(), move || inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        let path = prefix.as_ref().map(|p| p.to_string()).unwrap_or_default();
        self.faulted_stream(FaultOp::List, path, move || inner.list(prefix.as_ref()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let path = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.decide(FaultOp::List).run(&path).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.decide(FaultOp::Copy).run(to.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }
}
