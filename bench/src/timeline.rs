//! The timeline of a run: warm-up, the measured window, then stop.
//!
//! Workers run from the start and check [`Timeline::stopped`] to finish;
//! they count what they do on [`Meter`]s, which the driver reads at both edges
//! of the window ([`Timeline::drive`]), so warm-up work is never in a rate.
//! A latency sample counts when the operation both started and finished inside
//! the window ([`Timeline::in_window`]).
//!
//! A [`Pacer`] schedules a fixed-rate sender's messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::probe::CpuMark;

/// A monotonically growing count shared by workers.
#[derive(Debug, Default)]
pub struct Meter(AtomicU64);

impl Meter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// When the run measures, and the signal that tells workers to stop.
#[derive(Debug)]
pub struct Timeline {
    measure_from: Instant,
    measure_until: Instant,
    stop_tx: watch::Sender<bool>,
}

impl Timeline {
    /// A timeline starting now: `warmup`, then `duration` measured.
    pub fn start(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Timeline {
            measure_from,
            measure_until: measure_from + duration,
            stop_tx: watch::channel(false).0,
        }
    }

    /// Whether an operation that started at `started` and finished at
    /// `finished` falls inside the measured window.
    pub fn in_window(&self, started: Instant, finished: Instant) -> bool {
        started >= self.measure_from && finished <= self.measure_until
    }

    /// Whether workers should stop.
    pub fn is_stopped(&self) -> bool {
        *self.stop_tx.borrow()
    }

    /// Resolves once workers should stop.
    pub async fn stopped(&self) {
        let mut rx = self.stop_tx.subscribe();
        // The sender lives in `self`, so this only ends by seeing `true`.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Stops the workers now (also used when one of them fails).
    pub fn stop(&self) {
        self.stop_tx.send_replace(true);
    }

    /// Passes a worker's result through, stopping the run if it failed (one
    /// failing connection ends the run rather than skewing it).
    pub fn stop_on_error<T>(&self, r: Result<T, crate::Error>) -> Result<T, crate::Error> {
        if r.is_err() {
            self.stop();
        }
        r
    }

    /// Waits through the warm-up, reads `meters` at the start of the window,
    /// waits through the window, reads them again and stops the workers.
    /// Returns the count in the window of each meter and the window's length
    /// as actually measured. Ends early (with what was counted so far) if a
    /// worker stops the run.
    pub async fn drive(&self, meters: &[&Meter]) -> (Vec<u64>, Duration) {
        let (counts, window, _) = self.drive_cpu(meters, None).await;
        (counts, window)
    }

    /// [`Timeline::drive`], also reading CPU time at the same two instants as
    /// the meters: the broker's (`broker_pid`) and this process's, in seconds.
    /// Read by the driver itself, so however late a busy runtime wakes it,
    /// counts and CPU cover the same window.
    pub async fn drive_cpu(
        &self,
        meters: &[&Meter],
        broker_pid: Option<u32>,
    ) -> (Vec<u64>, Duration, (Option<f64>, f64)) {
        let read = || meters.iter().map(|m| m.get()).collect::<Vec<_>>();
        tokio::select! {
            _ = tokio::time::sleep_until(self.measure_from) => {}
            _ = self.stopped() => {
                return (vec![0; meters.len()], Duration::ZERO, (broker_pid.map(|_| 0.0), 0.0));
            }
        }
        let (before, cpu_from, from) = (read(), CpuMark::now(broker_pid), Instant::now());
        tokio::select! {
            _ = tokio::time::sleep_until(self.measure_until) => {}
            _ = self.stopped() => {}
        }
        let (after, cpu_to, until) = (read(), CpuMark::now(broker_pid), Instant::now());
        self.stop();
        let counts = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        (counts, until - from, cpu_from.until(&cpu_to))
    }
}

/// Waits for every worker of a run, handing each one's result to `each`;
/// returns the first failure once all have finished (a failed worker stopped
/// the run, so the others end soon after).
pub async fn join_workers<T: 'static>(
    workers: &mut tokio::task::JoinSet<Result<T, crate::Error>>,
    mut each: impl FnMut(T),
) -> Result<(), crate::Error> {
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        match joined.map_err(crate::Error::from).and_then(|r| r) {
            Ok(v) => each(v),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The schedule of one sender at a fixed rate (or none, at maximum rate).
///
/// At a fixed rate message `k` is due at `start + k / rate`, and its stamp is
/// that scheduled time rather than the time it actually left: a broker that
/// stalls the sender cannot hide the stall from the latencies (coordinated
/// omission). Senders of one run are spread evenly over the first interval.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Option<Duration>,
    due: Instant,
}

impl Pacer {
    /// The schedule of sender `index` of `of`, each sending `rate` messages
    /// per second (0: as fast as possible).
    pub fn new(rate: f64, index: usize, of: usize) -> Self {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        let offset = interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(index as f64 / of.max(1) as f64)
        });
        Pacer {
            interval,
            due: Instant::now() + offset,
        }
    }

    /// If a message may go at `now`: the time to stamp it with (its
    /// scheduled time, or `now` at maximum rate), advancing the schedule.
    pub fn next(&mut self, now: Instant) -> Option<Instant> {
        match self.interval {
            None => Some(now),
            Some(_) if self.due > now => None,
            Some(iv) => {
                let at = self.due;
                self.due += iv;
                Some(at)
            }
        }
    }

    /// When the next message is due (`None` at maximum rate: then only the
    /// broker is worth waiting for).
    pub fn next_due(&self) -> Option<Instant> {
        self.interval.map(|_| self.due)
    }

    /// When a sender that may send (`can_send`: its window has room) should
    /// wake to send again: the next due time at a fixed rate, otherwise (at
    /// maximum rate, or with a full window) not before the broker answers,
    /// which is an hour away as far as the timer is concerned.
    pub fn wake_at(&self, can_send: bool, now: Instant) -> Instant {
        self.next_due()
            .filter(|_| can_send)
            .unwrap_or(now + Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // On tokio's paused clock: sleeps end exactly when due, so the test
    // does not depend on how busy the machine is.
    #[tokio::test(start_paused = true)]
    async fn drive_counts_only_the_measured_window() {
        let ms = Duration::from_millis;
        let tl = Timeline::start(ms(40), ms(80));
        let m = Meter::default();
        m.add(5); // warm-up
        let meters = [&m];
        let (counts, window) = tokio::join!(tl.drive(&meters), async {
            tokio::time::sleep(ms(80)).await;
            m.add(7);
        })
        .0;
        assert_eq!(counts, vec![7]);
        assert_eq!(window, ms(80));
        assert!(tl.is_stopped());
        // After the window, nothing is in it.
        let now = Instant::now();
        assert!(!tl.in_window(now, now + ms(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_stamps_scheduled_times_and_catches_up_after_a_stall() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        // 100/s, second of two senders: first message due half an interval in.
        let mut p = Pacer::new(100.0, 1, 2);
        assert_eq!(p.next(t0), None);
        assert_eq!(p.next_due(), Some(t0 + ms(5)));
        // 30 ms late: three messages are due, stamped when they were due.
        let late = t0 + ms(30);
        let stamps: Vec<_> = std::iter::from_fn(|| p.next(late)).collect();
        assert_eq!(stamps, vec![t0 + ms(5), t0 + ms(15), t0 + ms(25)]);
        let mut max = Pacer::new(0.0, 0, 1);
        assert_eq!((max.next(late), max.next_due()), (Some(late), None));
    }
}
