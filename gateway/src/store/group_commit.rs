//! Group commit: many submitters, one writer thread, one fsync per batch.
//!
//! Submitters append their operations to a shared buffer (a short mutex hold,
//! no I/O) and get a ticket. The writer thread takes everything buffered,
//! writes it as one atomic batch, syncs it, and publishes the highest ticket
//! done. While one fsync runs, the next batch accumulates, so throughput grows
//! with load instead of collapsing to one fsync per message.
//!
//! With [`SyncPolicy::Interval`] a batch is reported done once written to the
//! operating system (it survives a crash of the process, not of the machine),
//! and the writer syncs every interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::{Lsn, Op, Ops, Space, StoreError, StoreStats, note};

/// When batches are synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every batch, before it is reported done.
    Always,
    /// Every so often; batches are reported done once written to the OS.
    Interval(Duration),
}

/// A key-value engine the writer drives.
pub trait Engine: Send + Sync + 'static {
    /// Writes `ops` atomically; with `sync`, durably.
    fn apply(&self, ops: &[Op], sync: bool) -> Result<(), StoreError>;
    /// Makes everything applied so far durable.
    fn sync(&self) -> Result<(), StoreError>;
    /// Reads one key.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StoreError>;
    /// Visits every key with `prefix` in order.
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], Bytes),
    ) -> Result<(), StoreError>;
    /// Bytes on disk.
    fn disk_usage(&self) -> u64;
    /// Housekeeping while writes are quiet (flushing journals, reclaiming the
    /// space of removed data). Called from the writer thread after it has
    /// been idle for [`IDLE`], at most once per quiet spell.
    fn maintain(&self) {}
}

/// How long the writer must be idle before it runs [`Engine::maintain`].
pub const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Pending {
    ops: Vec<Op>,
    /// The last ticket handed out.
    last: Lsn,
    closed: bool,
}

struct Shared<E> {
    engine: E,
    pending: Mutex<Pending>,
    more: Condvar,
    done_tx: watch::Sender<Lsn>,
    /// The first ticket whose batch failed (0: none). Every later batch is
    /// refused too: after a failed write the engine's state is not trusted.
    first_failed: AtomicU64,
    failed: AtomicBool,
    first_error: Mutex<Option<String>>,
    policy: SyncPolicy,
    batches: AtomicU64,
    ops: AtomicU64,
    syncs: AtomicU64,
    /// Batches by size (see [`StoreStats::batch_sizes`]).
    batch_sizes: [AtomicU64; crate::metrics::BATCH_BUCKETS + 1],
}

/// The group-commit front of an [`Engine`].
pub struct GroupCommit<E: Engine> {
    shared: Arc<Shared<E>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl<E: Engine> std::fmt::Debug for GroupCommit<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("policy", &self.shared.policy)
            .field("done", &*self.shared.done_tx.borrow())
            .finish()
    }
}

impl<E: Engine> GroupCommit<E> {
    /// Starts the writer thread over `engine`.
    pub fn start(engine: E, policy: SyncPolicy) -> Self {
        let (done_tx, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            engine,
            pending: Mutex::new(Pending::default()),
            more: Condvar::new(),
            done_tx,
            first_failed: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            policy,
            batches: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            batch_sizes: std::array::from_fn(|_| AtomicU64::new(0)),
        });
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("tether-store".into())
            .spawn(move || writer_loop(&s))
            .expect("spawn the storage writer thread");
        GroupCommit {
            shared,
            writer: Mutex::new(Some(writer)),
        }
    }

    /// The engine (for reads).
    pub fn engine(&self) -> &E {
        &self.shared.engine
    }

    /// Buffers `ops`; returns their ticket.
    pub fn submit(&self, ops: Ops) -> Lsn {
        if ops.is_empty() {
            return 0;
        }
        let lsn = {
            let mut p = self.shared.pending.lock();
            if p.closed {
                return 0;
            }
            let was_empty = p.ops.is_empty();
            p.ops.extend(ops);
            p.last += 1;
            if was_empty {
                self.shared.more.notify_one();
            }
            p.last
        };
        note(lsn);
        lsn
    }

    /// The highest ticket handed out.
    pub fn submitted(&self) -> Lsn {
        self.shared.pending.lock().last
    }

    /// Watches the highest ticket done.
    pub fn done(&self) -> watch::Receiver<Lsn> {
        self.shared.done_tx.subscribe()
    }

    /// The outcome of a done ticket.
    pub fn outcome(&self, lsn: Lsn) -> Result<(), StoreError> {
        if !self.shared.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let first = self.shared.first_failed.load(Ordering::Acquire);
        if first != 0 && lsn >= first {
            let e = self.shared.first_error.lock().clone().unwrap_or_default();
            return Err(StoreError::Failed(e));
        }
        Ok(())
    }

    /// `Err` once a write has failed.
    pub fn health(&self) -> Result<(), StoreError> {
        if self.shared.failed.load(Ordering::Acquire) {
            let e = self.shared.first_error.lock().clone().unwrap_or_default();
            return Err(StoreError::Failed(e));
        }
        Ok(())
    }

    /// Waits (blocking) until everything submitted so far is written and synced.
    pub fn flush(&self) -> Result<(), StoreError> {
        let target = self.shared.pending.lock().last;
        let mut rx = self.done();
        while *rx.borrow_and_update() < target {
            if self.writer.lock().is_none() {
                return Err(StoreError::Closed);
            }
            // The writer publishes after each batch; poll briefly between.
            std::thread::sleep(Duration::from_millis(1));
        }
        self.shared.engine.sync()?;
        self.health()
    }

    /// Write counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            ops: self.shared.ops.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            batch_sizes: std::array::from_fn(|i| {
                self.shared.batch_sizes[i].load(Ordering::Relaxed)
            }),
        }
    }

    /// Writes what is buffered, syncs, and stops the writer.
    pub fn close(&self) {
        {
            let mut p = self.shared.pending.lock();
            p.closed = true;
            self.shared.more.notify_one();
        }
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join();
        }
    }
}

impl<E: Engine> Drop for GroupCommit<E> {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop<E: Engine>(s: &Shared<E>) {
    let mut batch: Vec<Op> = Vec::new();
    let mut done: Lsn = 0;
    let mut unsynced_since: Option<Instant> = None;
    // Writes happened since the last maintenance.
    let mut dirty = false;
    loop {
        let upto;
        let closing;
        {
            let mut p = s.pending.lock();
            loop {
                if !p.ops.is_empty() || p.closed {
                    break;
                }
                match (s.policy, unsynced_since) {
                    (SyncPolicy::Interval(every), Some(since)) => {
                        let due = since + every;
                        if Instant::now() >= due {
                            break;
                        }
                        s.more.wait_until(&mut p, due);
                    }
                    _ if dirty => {
                        if s.more.wait_for(&mut p, IDLE).timed_out() && p.ops.is_empty() {
                            dirty = false;
                            drop(p);
                            s.engine.maintain();
                            p = s.pending.lock();
                        }
                    }
                    _ => s.more.wait(&mut p),
                }
            }
            std::mem::swap(&mut p.ops, &mut batch);
            upto = p.last;
            closing = p.closed;
        }
        if batch.is_empty() {
            // Only an interval sync (or the final one) is due.
            if unsynced_since.take().is_some() {
                sync(s);
            }
            if closing {
                return;
            }
            continue;
        }
        let always = s.policy == SyncPolicy::Always;
        let result = if s.failed.load(Ordering::Acquire) {
            Err(StoreError::Failed(
                s.first_error.lock().clone().unwrap_or_default(),
            ))
        } else {
            s.engine.apply(&batch, always)
        };
        s.batches.fetch_add(1, Ordering::Relaxed);
        s.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let bucket = crate::metrics::log2_bucket(batch.len() as u64, crate::metrics::BATCH_BUCKETS);
        s.batch_sizes[bucket].fetch_add(1, Ordering::Relaxed);
        dirty = true;
        match result {
            Ok(()) if always => {
                s.syncs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {
                unsynced_since.get_or_insert_with(Instant::now);
            }
            Err(e) => fail(s, done + 1, e),
        }
        batch.clear();
        if batch.capacity() > 64 * 1024 {
            batch = Vec::new();
        }
        done = upto;
        s.done_tx.send_replace(done);
        if let SyncPolicy::Interval(every) = s.policy
            && unsynced_since.is_some_and(|t| t.elapsed() >= every)
        {
            unsynced_since = None;
            sync(s);
        }
        if closing {
            // Whatever was submitted concurrently with close is refused, and
            // the last batch is made durable.
            if unsynced_since.take().is_some() {
                sync(s);
            }
            return;
        }
    }
}

fn sync<E: Engine>(s: &Shared<E>) {
    match s.engine.sync() {
        Ok(()) => {
            s.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            // Interval mode already reported these batches done: say loudly
            // that they may not survive a power loss, and refuse what follows.
            let next = s.pending.lock().last + 1;
            fail(s, next, e);
        }
    }
}

fn fail<E: Engine>(s: &Shared<E>, from: Lsn, e: StoreError) {
    let first = {
        let mut fe = s.first_error.lock();
        let first = fe.is_none();
        fe.get_or_insert_with(|| e.to_string());
        first
    };
    let _ = s
        .first_failed
        .compare_exchange(0, from, Ordering::AcqRel, Ordering::Acquire);
    s.failed.store(true, Ordering::Release);
    if first {
        tracing::error!(error = %e, "storage write failed; publishes are refused until restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Key;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicUsize;

    /// An engine in memory that counts syncs and can be told to fail.
    #[derive(Default)]
    struct Fake {
        data: Mutex<BTreeMap<(u8, Vec<u8>), Bytes>>,
        applies: AtomicUsize,
        fail: AtomicBool,
        maintained: AtomicUsize,
    }

    impl Engine for Fake {
        fn apply(&self, ops: &[Op], _sync: bool) -> Result<(), StoreError> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(StoreError::Io("No space left on device".into()));
            }
            self.applies.fetch_add(1, Ordering::Relaxed);
            // Slow enough that submissions pile up behind it.
            std::thread::sleep(Duration::from_millis(2));
            let mut d = self.data.lock();
            for op in ops {
                match op {
                    Op::Put(sp, k, v) => {
                        d.insert((*sp as u8, k.to_vec()), v.clone());
                    }
                    Op::Remove(sp, k) => {
                        d.remove(&(*sp as u8, k.to_vec()));
                    }
                    Op::RemovePrefix(sp, p) => {
                        d.retain(|(s, k), _| *s != *sp as u8 || !k.starts_with(p))
                    }
                }
            }
            Ok(())
        }
        fn sync(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
            Ok(self.data.lock().get(&(space as u8, key.to_vec())).cloned())
        }
        fn scan(
            &self,
            _space: Space,
            _prefix: &[u8],
            _visit: &mut dyn FnMut(&[u8], Bytes),
        ) -> Result<(), StoreError> {
            Ok(())
        }
        fn disk_usage(&self) -> u64 {
            0
        }
        fn maintain(&self) {
            self.maintained.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn put(k: u8) -> Ops {
        let mut ops = Ops::new();
        ops.push(Op::Put(
            Space::Meta,
            Key::from_slice(&[k]),
            Bytes::from_static(b"v"),
        ));
        ops
    }

    #[test]
    fn concurrent_submissions_share_batches() {
        let gc = Arc::new(GroupCommit::start(Fake::default(), SyncPolicy::Always));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let gc = gc.clone();
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        gc.submit(put(t * 50 + i));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        gc.flush().unwrap();
        let applies = gc.engine().applies.load(Ordering::Relaxed);
        assert!(applies < 200, "200 submissions took {applies} batches");
        let stats = gc.stats();
        assert_eq!(stats.ops, 200);
        // Every batch is in exactly one size bucket.
        assert_eq!(stats.batch_sizes.iter().sum::<u64>(), stats.batches);
        assert_eq!(gc.engine().data.lock().len(), 200);
    }

    #[test]
    fn tickets_complete_in_order_and_tracked_sees_them() {
        let gc = GroupCommit::start(Fake::default(), SyncPolicy::Always);
        let (_, lsn) = crate::store::tracked(|| {
            gc.submit(put(1));
            gc.submit(put(2))
        });
        assert_eq!(lsn, 2);
        let mut rx = gc.done();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { rx.wait_for(|d| *d >= lsn).await.unwrap() });
        assert_eq!(gc.outcome(lsn), Ok(()));
        let (_, none) = crate::store::tracked(|| 5);
        assert_eq!(none, 0);
    }

    #[test]
    fn a_failed_batch_fails_its_tickets_and_later_ones() {
        let gc = GroupCommit::start(Fake::default(), SyncPolicy::Always);
        let ok = gc.submit(put(1));
        gc.flush().unwrap();
        assert_eq!(gc.outcome(ok), Ok(()));
        gc.engine().fail.store(true, Ordering::Relaxed);
        let bad = gc.submit(put(2));
        assert!(gc.flush().is_err());
        assert!(matches!(gc.outcome(bad), Err(StoreError::Failed(e)) if e.contains("No space")));
        assert!(gc.health().is_err());
        // Once failed, later writes are refused even if the disk recovers.
        gc.engine().fail.store(false, Ordering::Relaxed);
        let later = gc.submit(put(3));
        let _ = gc.flush();
        assert!(gc.outcome(later).is_err());
        assert_eq!(gc.outcome(ok), Ok(()));
    }

    #[test]
    fn maintenance_runs_once_per_quiet_spell() {
        let gc = GroupCommit::start(Fake::default(), SyncPolicy::Always);
        // Nothing written yet: nothing to maintain.
        std::thread::sleep(IDLE + Duration::from_millis(200));
        assert_eq!(gc.engine().maintained.load(Ordering::Relaxed), 0);
        gc.submit(put(1));
        gc.flush().unwrap();
        let start = Instant::now();
        while gc.engine().maintained.load(Ordering::Relaxed) == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "never maintained");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(IDLE + Duration::from_millis(200));
        assert_eq!(gc.engine().maintained.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn interval_policy_reports_before_syncing() {
        let gc = GroupCommit::start(
            Fake::default(),
            SyncPolicy::Interval(Duration::from_millis(20)),
        );
        let lsn = gc.submit(put(1));
        let mut rx = gc.done();
        let start = Instant::now();
        while *rx.borrow_and_update() < lsn {
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        // The interval sync follows.
        let start = Instant::now();
        while gc.stats().syncs == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "no interval sync");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
