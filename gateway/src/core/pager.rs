//! Keeps memory bounded when durable queues grow: message bodies already in
//! the store are dropped from memory and read back when consumers get near.
//!
//! One thread watches the memory gauge. Above half the high-watermark it
//! pages out the bodies of stored messages (newest first, largest queues
//! first), keeping the next [`HEAD`] messages of each queue in memory; below
//! it again, it reads those head messages back ahead of consumers. A queue of
//! ten million 1 KiB messages then costs its index (about a hundred bytes per
//! message), not ten gigabytes. Only bodies whose writes are durable are
//! dropped, so a read-back always finds them.
//!
//! Queues that keep nothing (non-durable, FIFO, or with `storage.engine =
//! "memory"`) are never paged; publishers to them are slowed at the
//! high-watermark instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::queue::{Queue, QueueEnv};

/// Messages at the head of each queue kept in memory while paging.
pub const HEAD: usize = 512;
/// How often the gauge is checked.
const TICK: Duration = Duration::from_millis(20);

/// The running pager; stops when dropped.
#[derive(Debug)]
pub struct Pager {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pager {
    /// Starts paging for the queues of `env`, whose gauge slows publishers at
    /// `high_watermark` bytes.
    pub fn start(env: QueueEnv, high_watermark: usize) -> Pager {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tether-pager".into())
            .spawn(move || run(&env, high_watermark, &s))
            .ok();
        Pager { stop, thread }
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn live_queues(env: &QueueEnv) -> Vec<Arc<Queue>> {
    let mut list = env.pageable.lock();
    list.retain(|w| w.upgrade().is_some_and(|q| !q.is_deleted()));
    list.iter().filter_map(std::sync::Weak::upgrade).collect()
}

fn run(env: &QueueEnv, high_watermark: usize, stop: &AtomicBool) {
    if !env.store.is_persistent() {
        return;
    }
    let page_out_at = high_watermark / 2;
    // Hysteresis: page out down to 40%, page in only below 35%.
    let target = high_watermark / 5 * 2;
    let page_in_below = high_watermark / 20 * 7;
    let mut done = env.store.done();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let used = env.memory.used();
        if used > page_out_at {
            let queues = live_queues(env);
            // Sequence numbers first, then the ticket: every entry below a
            // limit was submitted before the ticket was read.
            let mut limits: Vec<(Arc<Queue>, u64, usize)> = queues
                .into_iter()
                .map(|q| {
                    let next = q.next_seq();
                    let bytes = q.ready_bytes();
                    (q, next, bytes)
                })
                .collect();
            let ticket = env.store.submitted();
            let deadline = Instant::now() + Duration::from_secs(5);
            while *done.borrow_and_update() < ticket && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if *done.borrow() < ticket {
                continue;
            }
            limits.sort_by_key(|(_, _, bytes)| std::cmp::Reverse(*bytes));
            for keep in [HEAD, 0] {
                for (q, below, _) in &limits {
                    let over = env.memory.used().saturating_sub(target);
                    if over == 0 {
                        break;
                    }
                    q.page_out(keep, *below, over);
                }
                if env.memory.used() <= target {
                    break;
                }
            }
        } else if used < page_in_below {
            for q in live_queues(env) {
                if env.memory.used() >= page_in_below {
                    break;
                }
                if q.wants_page_in(HEAD) {
                    q.page_in(HEAD);
                }
            }
        }
    }
}
