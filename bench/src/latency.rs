//! Latency recording with HdrHistogram, and the summary a report carries.
//!
//! Each worker records into its own [`Latencies`] (no sharing on the hot
//! path); the scenario merges them at the end and reports a
//! [`LatencySummary`]. Values are microseconds, from 1 µs to 10 minutes with
//! three significant digits; anything longer is counted as 10 minutes.
//!
//! Latencies are measured from stamps in the payload: a sender writes the
//! send time into the first bytes of each message ([`stamp`]) and a receiver
//! in the same process reads it back ([`stamped_at`]), whatever the protocol
//! in between.

use std::sync::OnceLock;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// The longest latency told apart from longer ones, in microseconds.
const HIGHEST_US: u64 = 10 * 60 * 1_000_000;

/// Bytes at the front of every payload: the send time (see [`stamp`]).
pub const STAMP_LEN: usize = 8;

/// The instant payload timestamps count from (fixed at first use).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Writes `at` into the first [`STAMP_LEN`] bytes of `payload` (nanoseconds
/// since this process's epoch, little endian). Payloads shorter than that
/// carry no time.
pub fn stamp(payload: &mut [u8], at: Instant) {
    if let Some(head) = payload.get_mut(..STAMP_LEN) {
        let nanos =
            u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX);
        head.copy_from_slice(&nanos.to_le_bytes());
    }
}

/// The send time [`stamp`] wrote into `payload`, if it carries one.
pub fn stamped_at(payload: &[u8]) -> Option<Instant> {
    let head: [u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
    let nanos = u64::from_le_bytes(head);
    (nanos != 0).then(|| epoch() + Duration::from_nanos(nanos))
}

/// Recorded latencies.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty recorder.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts.
        Latencies(Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds"))
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.clamp(1, HIGHEST_US));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Count and percentiles.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// What a report says about one latency distribution (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_as_the_instant_written() {
        let at = Instant::now() + Duration::from_millis(3);
        let mut payload = [0u8; 16];
        stamp(&mut payload, at);
        let back = stamped_at(&payload).unwrap();
        assert!(back.max(at) - back.min(at) < Duration::from_micros(1));
        assert_eq!(stamped_at(&payload[..4]), None);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latencies::new();
        // 1..=1000 ms, one sample each.
        for i in 1..=1000 {
            l.record(Duration::from_millis(i));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        // Three significant digits: within 0.1 %.
        assert!((s.p50_ms - 500.0).abs() <= 0.5, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() <= 1.0, "{s:?}");
    }

    #[test]
    fn merged_recorders_summarise_together_and_extremes_saturate() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        a.record(Duration::ZERO);
        b.record(Duration::from_secs(3600));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 2);
        assert!(s.max_ms >= 599_000.0 && s.max_ms <= 601_000.0, "{s:?}");
        assert_eq!(Latencies::new().summary(), LatencySummary::default());
    }
}
