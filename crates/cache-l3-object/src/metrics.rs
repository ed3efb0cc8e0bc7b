//! Request metrics: calls to the object store by type, failures, bytes up and down, latency.
//!
//! These complement the tier's [`TierStats`](cache_core::TierStats) (hits, misses, errors by
//! kind): they count what the tier asked of the object store, which is what a bill or a
//! rate limit is about. Latency goes into one [`hdrhistogram`] per request type (microseconds,
//! two significant digits), each behind its own short lock.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// A type of request to the object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// A whole-object GET.
    Get,
    /// A ranged GET (range reads, `contains`).
    GetRange,
    /// A single-request PUT (conditional creates included).
    Put,
    /// Starting a multipart upload.
    MultipartStart,
    /// Uploading one part of a multipart upload.
    MultipartPart,
    /// Completing (or aborting) a multipart upload.
    MultipartComplete,
    /// A DELETE of one object or one bulk-delete batch.
    Delete,
    /// One page of a listing.
    List,
}

impl Op {
    /// Every type, in a stable order.
    pub const ALL: [Op; 8] = [
        Op::Get,
        Op::GetRange,
        Op::Put,
        Op::MultipartStart,
        Op::MultipartPart,
        Op::MultipartComplete,
        Op::Delete,
        Op::List,
    ];

    /// A short lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetRange => "get range",
            Op::Put => "put",
            Op::MultipartStart => "multipart start",
            Op::MultipartPart => "multipart part",
            Op::MultipartComplete => "multipart complete",
            Op::Delete => "delete",
            Op::List => "list",
        }
    }

    const fn index(self) -> usize {
        match self {
            Op::Get => 0,
            Op::GetRange => 1,
            Op::Put => 2,
            Op::MultipartStart => 3,
            Op::MultipartPart => 4,
            Op::MultipartComplete => 5,
            Op::Delete => 6,
            Op::List => 7,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one request type.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OpMetrics {
    /// Requests made (failed ones included).
    pub requests: u64,
    /// Requests that failed or timed out (a "not found" is not a failure).
    pub failures: u64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Mean latency.
    pub mean: Duration,
}

/// A snapshot of the tier's request metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectMetrics {
    /// Per request type, in [`Op::ALL`] order.
    pub ops: [OpMetrics; Op::ALL.len()],
    /// Bytes sent to the object store (object bodies).
    pub bytes_up: u64,
    /// Bytes received from the object store (object bodies).
    pub bytes_down: u64,
}

impl ObjectMetrics {
    /// The counters of one request type.
    pub fn op(&self, op: Op) -> &OpMetrics {
        &self.ops[op.index()]
    }

    /// Requests of every type.
    pub fn requests(&self) -> u64 {
        self.ops.iter().map(|o| o.requests).sum()
    }
}

/// The live counters.
#[derive(Debug)]
pub(crate) struct Metrics {
    requests: [AtomicU64; Op::ALL.len()],
    failures: [AtomicU64; Op::ALL.len()],
    latency: [Mutex<Histogram<u64>>; Op::ALL.len()],
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// Latencies above an hour are recorded as an hour.
const MAX_MICROS: u64 = 3_600_000_000;

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            requests: Default::default(),
            failures: Default::default(),
            latency: Op::ALL.map(|_| {
                Mutex::new(
                    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid histogram bounds"),
                )
            }),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        }
    }

    /// Records one finished request.
    pub(crate) fn record(&self, op: Op, elapsed: Duration, failed: bool) {
        let i = op.index();
        self.requests[i].fetch_add(1, Relaxed);
        if failed {
            self.failures[i].fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(MAX_MICROS).clamp(1, MAX_MICROS);
        self.latency[i].lock().saturating_record(micros);
    }

    pub(crate) fn add_up(&self, n: u64) {
        self.bytes_up.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_down(&self, n: u64) {
        self.bytes_down.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ObjectMetrics {
        let ops = Op::ALL.map(|op| {
            let i = op.index();
            let h = self.latency[i].lock();
            let us = Duration::from_micros;
            let (p50, p99, max, mean) = if h.is_empty() {
                (0, 0, 0, 0.0)
            } else {
                (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max(), h.mean())
            };
            OpMetrics {
                requests: self.requests[i].load(Relaxed),
                failures: self.failures[i].load(Relaxed),
                p50: us(p50),
                p99: us(p99),
                max: us(max),
                mean: Duration::from_secs_f64(mean / 1e6),
            }
        });
        ObjectMetrics {
            ops,
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_snapshot() {
        let m = Metrics::new();
        m.record(Op::Get, Duration::from_millis(2), false);
        m.record(Op::Get, Duration::from_millis(4), true);
        m.record(Op::Put, Duration::ZERO, false);
        m.add_up(10);
        m.add_down(20);
        let s = m.snapshot();
        assert_eq!(s.op(Op::Get).requests, 2);
        assert_eq!(s.op(Op::Get).failures, 1);
        assert!(s.op(Op::Get).max >= Duration::from_millis(4));
        assert!(s.op(Op::Get).p50 >= Duration::from_millis(1));
        assert_eq!(s.op(Op::Put).requests, 1);
        assert_eq!(s.op(Op::Delete), &OpMetrics::default());
        assert_eq!((s.bytes_up, s.bytes_down, s.requests()), (10, 20, 3));
    }
}
