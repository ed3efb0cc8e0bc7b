//! A hill climber that tunes how strict [`DemotionFilter::TinyLfu`]'s frequency test is.
//!
//! Frequency admission keeps a hot set against scans and loops, but on workloads whose reuse
//! is mostly recent it lets in keys that merely were requested a little more often than what
//! the tier below let go, and they push out better entries (S3-FIFO's second chance alone does
//! better there). Which is better depends on the workload and the capacity, so the filter
//! measures it, as Caffeine sizes its window: the frequency test demotes a candidate only if
//! its estimate exceeds the victim's by a *bias* (0 to 15 with 4-bit counters; 15 turns the
//! test off), and every sample of requests the climber compares the stack's hit ratio with the
//! previous sample's: if it fell, the bias moves the other way; otherwise it keeps going. It
//! starts with the test off, as S3-FIFO, and moves toward frequency from there. On the real
//! traces of `docs/benchmarks.md` the hit ratio varies more from one sample to the next than
//! between biases, so the climber wanders instead of settling, and W-TinyLFU's test alone
//! (`DemotionFilter::tiny_lfu`) hit more often; the climber earns its place where the working set
//! moves as a whole.
//!
//! [`DemotionFilter::TinyLfu`]: super::DemotionFilter::TinyLfu

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The largest bias: a 4-bit estimate can never exceed another by more than 15, so at this
/// bias the frequency test never demotes.
pub(crate) const MAX_BIAS: u64 = 15;

/// The fewest requests in one sample: fewer would compare noise.
pub(crate) const MIN_SAMPLE: u64 = 4096;

/// Samples span this many times the entries the two tiers hold.
const SAMPLE_PER_ENTRY: u64 = 4;

/// Tunes the frequency test's bias by the hit ratio it gives.
pub(crate) struct Climber {
    /// The current bias, read on every demotion.
    bias: AtomicU64,
    /// Requests and hits since the sample started.
    requests: AtomicU64,
    hits: AtomicU64,
    /// Requests per sample.
    sample: AtomicU64,
    state: Mutex<State>,
}

struct State {
    /// The previous sample's hit ratio, if there was one.
    previous: Option<f64>,
    /// +1 toward a stricter test, -1 toward a looser one.
    direction: i64,
}

impl std::fmt::Debug for Climber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Climber")
            .field("bias", &self.bias())
            .field("sample", &self.sample.load(Ordering::Relaxed))
            .finish()
    }
}

impl Climber {
    /// A climber starting at the largest bias (the second chance alone) and moving toward the
    /// frequency test first.
    pub(crate) fn new() -> Climber {
        Climber {
            bias: AtomicU64::new(MAX_BIAS),
            requests: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            sample: AtomicU64::new(MIN_SAMPLE),
            state: Mutex::new(State { previous: None, direction: -1 }),
        }
    }

    /// How much more often than the victim a candidate must have been requested.
    pub(crate) fn bias(&self) -> u64 {
        self.bias.load(Ordering::Relaxed)
    }

    /// Sets the bias (tests of the filter at a given bias).
    #[cfg(test)]
    pub(crate) fn set_bias(&self, bias: u64) {
        self.bias.store(bias.min(MAX_BIAS), Ordering::Relaxed);
    }

    /// Sizes the samples for a stack holding about `entries` entries.
    pub(crate) fn set_entries(&self, entries: u64) {
        let sample = entries.saturating_mul(SAMPLE_PER_ENTRY).max(MIN_SAMPLE);
        self.sample.store(sample, Ordering::Relaxed);
    }

    /// Counts one request of the stack, a hit or a miss; at the end of a sample, moves the
    /// bias.
    pub(crate) fn record(&self, hit: bool) {
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n < self.sample.load(Ordering::Relaxed) {
            return;
        }
        // One caller closes the sample; the others go on counting into the next.
        let Some(mut state) = self.state.try_lock() else { return };
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let hits = self.hits.swap(0, Ordering::Relaxed);
        if requests == 0 {
            return;
        }
        let ratio = hits as f64 / requests as f64;
        let Some(previous) = state.previous.replace(ratio) else {
            // The first sample is the baseline: a run shorter than two samples keeps the
            // starting bias rather than a move nothing measured.
            return;
        };
        if ratio < previous {
            state.direction = -state.direction;
        }
        let bias = self.bias().saturating_add_signed(state.direction).min(MAX_BIAS);
        self.bias.store(bias, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(c: &Climber, ratio: f64) {
        let hits = (ratio * MIN_SAMPLE as f64) as u64;
        for i in 0..MIN_SAMPLE {
            c.record(i < hits);
        }
    }

    #[test]
    fn the_bias_keeps_moving_while_the_hit_ratio_improves_and_turns_back_when_it_falls() {
        let c = Climber::new();
        assert_eq!(c.bias(), MAX_BIAS, "it starts with the frequency test off");
        sample(&c, 0.30);
        assert_eq!(c.bias(), MAX_BIAS, "the first sample is the baseline");
        sample(&c, 0.30);
        assert_eq!(c.bias(), MAX_BIAS - 1, "then it moves toward the frequency test");
        sample(&c, 0.35);
        assert_eq!(c.bias(), MAX_BIAS - 2, "better: keep going");
        sample(&c, 0.32);
        assert_eq!(c.bias(), MAX_BIAS - 1, "worse: turn back");
        sample(&c, 0.33);
        assert_eq!(c.bias(), MAX_BIAS, "better again: keep going");
        sample(&c, 0.34);
        assert_eq!(c.bias(), MAX_BIAS, "the bias stops at the maximum");
    }

    #[test]
    fn the_bias_stops_at_zero_and_samples_follow_the_capacity() {
        let c = Climber::new();
        for _ in 0..41 {
            sample(&c, 0.5);
        }
        assert_eq!(c.bias(), 0, "an unchanged ratio keeps the direction, down to plain TinyLFU");
        c.set_entries(10_000);
        assert_eq!(c.sample.load(Ordering::Relaxed), 40_000);
        c.set_entries(10);
        assert_eq!(c.sample.load(Ordering::Relaxed), MIN_SAMPLE);
    }
}
