//! A backend's recent traffic for the status page: requests per second,
//! error ratio and latency percentiles over the last 10–20 seconds.
//!
//! Kept cheaply: two 10-second slots used in turn, each a request count,
//! an error count and a latency histogram of [`BUCKETS`] power-of-two
//! buckets (0.25 ms … ~9 min), all relaxed atomics in the backend's
//! [`super::Shared`] state. A request costs one clock-free slot check and
//! three atomic adds (the proxy passes the time it already took for the
//! access log); reading, done only by the admin API, sums the finished slot
//! and the current one. A slot is cleared by the first request that finds
//! it a period old; the few counts that race with a clear are lost, which
//! a status page can afford. Percentiles are the upper bound of the bucket
//! they fall in (at most 2× the true value, as a coarse histogram gives).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Latency buckets: bucket `i` holds latencies below `0.25 ms × 2^i`.
pub const BUCKETS: usize = 22;
/// How long a slot collects.
pub const PERIOD: Duration = Duration::from_secs(10);

/// The process's time origin for slot periods.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

#[derive(Debug, Default)]
struct Slot {
    /// The period (10-second step since [`ORIGIN`]) this slot counts, + 1
    /// (0: never used).
    period: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU32; BUCKETS],
}

impl Slot {
    fn clear(&self, period: u64) {
        self.requests.store(0, Relaxed);
        self.errors.store(0, Relaxed);
        for b in &self.latency {
            b.store(0, Relaxed);
        }
        self.period.store(period + 1, Relaxed);
    }
}

/// A backend's recent requests (see the module docs).
#[derive(Debug, Default)]
pub struct Window {
    slots: [Slot; 2],
}

/// What a [`Window`] shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Requests per second.
    pub rps: f64,
    /// Failed share of requests (0 when there were none).
    pub error_ratio: f64,
    /// Median latency in milliseconds (`None` without requests).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
}

fn bucket(latency: Duration) -> usize {
    let quarter_ms = (latency.as_micros() / 250) as u64;
    ((u64::BITS - quarter_ms.leading_zeros()) as usize).min(BUCKETS - 1)
}

fn bucket_upper_ms(i: usize) -> f64 {
    0.25 * f64::from(1u32 << i)
}

fn period_at(at: Instant) -> u64 {
    (at.saturating_duration_since(*ORIGIN).as_secs()) / PERIOD.as_secs()
}

impl Window {
    /// Counts a request that ended at `at` after `latency`; `error`: it
    /// failed (a 5xx answer, or no answer from the backend).
    pub fn record(&self, at: Instant, latency: Duration, error: bool) {
        let period = period_at(at);
        let slot = &self.slots[(period % 2) as usize];
        if slot.period.load(Relaxed) != period + 1 {
            slot.clear(period);
        }
        slot.requests.fetch_add(1, Relaxed);
        if error {
            slot.errors.fetch_add(1, Relaxed);
        }
        slot.latency[bucket(latency)].fetch_add(1, Relaxed);
    }

    /// The last full period and the current one, as seen at `now`.
    pub fn summary(&self, now: Instant) -> Summary {
        let period = period_at(now);
        let mut requests = 0u64;
        let mut errors = 0u64;
        let mut latency = [0u64; BUCKETS];
        for slot in &self.slots {
            let p = slot.period.load(Relaxed);
            if p == 0 || p + 1 < period + 1 || p > period + 1 {
                continue; // unused, older than the last full period, or ahead
            }
            requests += slot.requests.load(Relaxed);
            errors += slot.errors.load(Relaxed);
            for (sum, b) in latency.iter_mut().zip(&slot.latency) {
                *sum += u64::from(b.load(Relaxed));
            }
        }
        let into_current = now.saturating_duration_since(*ORIGIN).as_secs_f64()
            - (period * PERIOD.as_secs()) as f64;
        let span = (PERIOD.as_secs_f64() + into_current).max(1.0);
        let pct = |q: f64| -> Option<f64> {
            let total: u64 = latency.iter().sum();
            if total == 0 {
                return None;
            }
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            latency.iter().enumerate().find_map(|(i, n)| {
                seen += n;
                (seen >= rank).then(|| bucket_upper_ms(i))
            })
        };
        Summary {
            rps: requests as f64 / span,
            error_ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double() {
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_micros(249)), 0);
        assert_eq!(bucket(Duration::from_micros(250)), 1);
        assert_eq!(bucket(Duration::from_millis(1)), 3);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
        assert_eq!(bucket_upper_ms(3), 2.0);
    }

    #[test]
    fn rates_ratios_and_percentiles_over_the_recent_periods() {
        let w = Window::default();
        let start = *ORIGIN + PERIOD * 7;
        for i in 0..100 {
            let lat = if i < 98 { 1 } else { 100 };
            w.record(start, Duration::from_millis(lat), i % 10 == 0);
        }
        let s = w.summary(start + Duration::from_secs(5));
        assert!((s.rps - 100.0 / 15.0).abs() < 0.01, "{s:?}");
        assert!((s.error_ratio - 0.1).abs() < 1e-9, "{s:?}");
        assert_eq!(s.p50_ms, Some(2.0));
        assert_eq!(s.p99_ms, Some(128.0));
        // One period on, the requests still count (the last full period).
        let s = w.summary(start + PERIOD);
        assert!(s.rps > 0.0);
        // Two periods on, they are gone; a new request clears the old slot.
        let later = start + PERIOD * 2;
        assert_eq!(w.summary(later).p50_ms, None);
        w.record(later, Duration::from_millis(3), false);
        let s = w.summary(later);
        assert_eq!((s.p50_ms, s.error_ratio), (Some(4.0), 0.0));
    }
}
