//! Per-queue rates for the admin API, from totals sampled every
//! [`SAMPLE_EVERY`] by one small task: nothing is counted per message
//! beyond the counters queues keep anyway.
//!
//! The task samples only while the admin API is in use (a queue listing or
//! overview in the last [`IDLE_AFTER`]); otherwise it forgets its samples,
//! so a gateway nobody watches keeps no per-queue state here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::core::Core;

/// How often totals are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Sampling stops this long after the last request that wanted rates.
pub const IDLE_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    enqueued: u64,
    delivered: u64,
}

/// The last two samples of one queue.
#[derive(Debug, Clone, Copy)]
struct Pair {
    newest: Sample,
    older: Option<Sample>,
}

impl Pair {
    /// Messages per second (enqueued, delivered) between the two samples.
    fn rates(&self) -> (f64, f64) {
        let Some(older) = self.older else {
            return (0.0, 0.0);
        };
        let secs = self.newest.at.duration_since(older.at).as_secs_f64();
        if secs <= 0.0 {
            return (0.0, 0.0);
        }
        let per = |new: u64, old: u64| new.saturating_sub(old) as f64 / secs;
        (
            per(self.newest.enqueued, older.enqueued),
            per(self.newest.delivered, older.delivered),
        )
    }
}

#[derive(Debug, Default)]
struct Samples {
    /// By queue identity (a queue deleted and recreated starts afresh).
    by_queue: HashMap<u64, Pair>,
    last_wanted: Option<Instant>,
}

/// Sampled queue rates (see the module docs).
#[derive(Debug, Default)]
pub struct QueueRates {
    samples: Mutex<Samples>,
    wake: Notify,
}

impl QueueRates {
    /// Starts the sampling task for `core`'s queues; it ends with `shutdown`.
    pub fn start(core: Arc<Core>, shutdown: CancellationToken) -> Arc<Self> {
        let rates = Arc::new(QueueRates::default());
        let weak = Arc::downgrade(&rates);
        tokio::spawn(async move {
            loop {
                let Some(rates) = weak.upgrade() else { return };
                if rates.wanted() {
                    rates.sample(&core);
                } else {
                    rates.samples.lock().by_queue.clear();
                }
                let wait = if rates.wanted() {
                    tokio::time::sleep(SAMPLE_EVERY)
                } else {
                    // Idle: wait for someone to ask.
                    tokio::time::sleep(IDLE_AFTER)
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wait => {}
                    _ = rates.wake.notified() => {}
                }
            }
        });
        rates
    }

    /// Notes that rates are wanted; wakes the sampler if it was idle.
    pub fn touch(&self) {
        let was_idle = {
            let mut s = self.samples.lock();
            let idle = !Self::recent(s.last_wanted);
            s.last_wanted = Some(Instant::now());
            idle
        };
        if was_idle {
            self.wake.notify_one();
        }
    }

    /// Enqueued and delivered messages per second of queue `uid`, over the
    /// last sampling interval (0 until two samples exist).
    pub fn rates(&self, uid: u64) -> (f64, f64) {
        self.samples
            .lock()
            .by_queue
            .get(&uid)
            .map_or((0.0, 0.0), Pair::rates)
    }

    fn wanted(&self) -> bool {
        Self::recent(self.samples.lock().last_wanted)
    }

    fn recent(at: Option<Instant>) -> bool {
        at.is_some_and(|t| t.elapsed() < IDLE_AFTER)
    }

    /// Takes one sample of every queue; forgets queues that are gone.
    fn sample(&self, core: &Core) {
        let now = Instant::now();
        let totals: Vec<(u64, u64, u64)> = super::admin::all_queues(core)
            .iter()
            .map(|l| {
                let s = l.queue.stats();
                (l.queue.uid(), s.enqueued, s.delivered)
            })
            .collect();
        self.record(now, &totals);
    }

    fn record(&self, now: Instant, totals: &[(u64, u64, u64)]) {
        let mut s = self.samples.lock();
        let mut next = HashMap::with_capacity(totals.len());
        for &(uid, enqueued, delivered) in totals {
            let newest = Sample {
                at: now,
                enqueued,
                delivered,
            };
            let older = s.by_queue.get(&uid).map(|p| p.newest);
            next.insert(uid, Pair { newest, older });
        }
        s.by_queue = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_last_two_samples() {
        let r = QueueRates::default();
        let t0 = Instant::now();
        r.record(t0, &[(1, 100, 50)]);
        assert_eq!(r.rates(1), (0.0, 0.0), "one sample says nothing yet");
        r.record(t0 + Duration::from_secs(5), &[(1, 150, 60), (2, 7, 7)]);
        assert_eq!(r.rates(1), (10.0, 2.0));
        assert_eq!(r.rates(2), (0.0, 0.0));
        r.record(t0 + Duration::from_secs(10), &[(2, 17, 7)]);
        assert_eq!(r.rates(1), (0.0, 0.0), "a queue that is gone is forgotten");
        assert_eq!(r.rates(2), (2.0, 0.0));
    }
}
