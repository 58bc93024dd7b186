//! Wake-ups for queue deadlines: message TTL, idle-queue expiry, and (with the
//! SQS semantics) visibility timeouts and delays.
//!
//! One task keeps a heap of `(when, queue)` and calls [`Queue::on_timer`] when
//! a deadline passes. It is never on the publish or delivery path: a queue
//! registers only when its *earliest* deadline moves earlier, so a queue with a
//! constant TTL registers once per head, not once per message.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{OnceLock, Weak};
use std::time::Instant;

use tokio::sync::mpsc;

use super::queue::Queue;

struct Timer {
    at: Instant,
    seq: u64,
    queue: Weak<Queue>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, we want the earliest first.
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

/// A deadline request: run `queue.on_timer()` at this instant.
type Request = (Instant, Weak<Queue>);

/// Hands queue deadlines to the timer task, started on first use.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// `None` inside when there was no runtime to start the task on.
    tx: OnceLock<Option<mpsc::UnboundedSender<Request>>>,
}

impl Scheduler {
    /// Asks for `queue.on_timer()` to run at (or soon after) `at`. Without a
    /// tokio runtime (unit tests) this does nothing; queues still expire
    /// messages lazily when they are pulled.
    pub fn schedule(&self, at: Instant, queue: Weak<Queue>) {
        let tx = self.tx.get_or_init(|| {
            let handle = tokio::runtime::Handle::try_current().ok()?;
            let (tx, rx) = mpsc::unbounded_channel();
            handle.spawn(run(rx));
            Some(tx)
        });
        if let Some(tx) = tx {
            let _ = tx.send((at, queue));
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut heap: BinaryHeap<Timer> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = heap.peek().map(|t| t.at);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((at, queue)) => {
                    seq += 1;
                    heap.push(Timer { at, seq, queue });
                }
                None => return,
            },
            _ = sleep_until(next) => {
                let now = Instant::now();
                while heap.peek().is_some_and(|t| t.at <= now) {
                    if let Some(t) = heap.pop()
                        && let Some(q) = t.queue.upgrade() {
                            q.on_timer(now);
                        }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
