//! Counters and histograms that live in the process (the rest of `/metrics` is read from the
//! store at scrape time): reconcile pass durations, probe outcomes, source fetches, outbox
//! deliveries. Lock-free atomics; rendering is in `api::metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the pass-duration histogram buckets.
pub const PASS_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pass_buckets: [AtomicU64; 9],
    pass_count: AtomicU64,
    pass_micros: AtomicU64,
    pub probes_ok: AtomicU64,
    pub probes_failed: AtomicU64,
    pub source_fetches: AtomicU64,
    pub source_fetch_errors: AtomicU64,
    pub deliveries_ok: AtomicU64,
    pub deliveries_failed: AtomicU64,
    pub deliveries_dead: AtomicU64,
}

/// A consistent-enough copy of the pass histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Cumulative counts per bucket of `PASS_BUCKETS`.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Metrics {
    pub fn observe_pass(&self, elapsed: std::time::Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in PASS_BUCKETS.iter().zip(&self.pass_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.pass_count.fetch_add(1, Ordering::Relaxed);
        self.pass_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn observe_probe(&self, ok: bool) {
        let counter = if ok {
            &self.probes_ok
        } else {
            &self.probes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pass_histogram(&self) -> Histogram {
        Histogram {
            buckets: self
                .pass_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.pass_count.load(Ordering::Relaxed),
            sum_seconds: self.pass_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
