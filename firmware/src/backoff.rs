//! Bounded exponential backoff with jitter, for reconnecting.
//!
//! After the `k`-th consecutive failure the ceiling is
//! `min(max_ms, initial_ms * 2^k)` and the delay is drawn uniformly from
//! `[ceiling / 2, ceiling]` ("equal jitter"): never more than `max_ms`, never
//! less than half the ceiling, so a fleet that lost its gateway at the same
//! moment does not come back in lockstep, and no device hammers it.
//!
//! Randomness comes from the caller: a seed for the built-in xorshift
//! generator ([`Backoff::new`]), or a random word per call
//! ([`Backoff::next_delay_with`]) from a hardware RNG. This module owns no
//! clock; it only computes durations.

/// Limits of the reconnect backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first delay in milliseconds (at least 1).
    pub initial_ms: u32,
    /// Largest delay in milliseconds, whatever the number of failures.
    pub max_ms: u32,
}

impl BackoffConfig {
    /// 500 ms after the first failure, doubling up to one minute.
    pub const DEFAULT: Self = Self {
        initial_ms: 500,
        max_ms: 60_000,
    };
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Reconnect backoff state: the number of consecutive failures and the
/// jitter generator.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u8,
    rng: u32,
}

impl Backoff {
    /// A backoff with these limits whose jitter comes from `seed` (any value;
    /// give each device a different one, e.g. from its hardware RNG or unique id).
    pub const fn new(config: BackoffConfig, seed: u32) -> Self {
        Self {
            config,
            failures: 0,
            // xorshift32 must not start at 0.
            rng: if seed == 0 { 0x9E37_79B9 } else { seed },
        }
    }

    /// The limits.
    pub const fn config(&self) -> BackoffConfig {
        self.config
    }

    /// Consecutive failures since the last [`reset`](Self::reset).
    pub const fn failures(&self) -> u8 {
        self.failures
    }

    /// The ceiling the next delay is drawn under: `min(max, initial * 2^failures)`.
    pub const fn ceiling(&self) -> u32 {
        let initial = if self.config.initial_ms == 0 {
            1
        } else {
            self.config.initial_ms
        };
        // 2^31 ms is 24 days: beyond that the ceiling is `max_ms` anyway.
        let ceiling = if self.failures >= 31 {
            u32::MAX
        } else {
            initial.saturating_mul(1 << self.failures)
        };
        if ceiling < self.config.max_ms {
            ceiling
        } else {
            self.config.max_ms
        }
    }

    /// Records a failure and returns how long to wait before the next
    /// attempt, using the built-in generator for jitter.
    pub fn next_delay(&mut self) -> u32 {
        // xorshift32 (Marsaglia): tiny, and good enough to spread a fleet.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        self.next_delay_with(x)
    }

    /// Records a failure and returns how long to wait before the next
    /// attempt, using `random` (any 32 random bits) for jitter.
    pub fn next_delay_with(&mut self, random: u32) -> u32 {
        let ceiling = self.ceiling();
        let floor = ceiling / 2;
        let span = ceiling - floor;
        let jitter = if span == u32::MAX {
            random
        } else {
            random % (span + 1)
        };
        self.failures = self.failures.saturating_add(1);
        floor + jitter
    }

    /// Forgets the failures (call after a successful connection).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}
