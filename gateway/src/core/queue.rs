//! A core queue: the one buffer between publishers and every kind of consumer.
//!
//! An MQTT session, a shared-subscription group, an AMQP queue and an SQS queue
//! are all a [`Queue`]. Publishers [`enqueue`](Queue::enqueue) from their own
//! task (there is no router task); consumers [`pull`](Queue::pull) batches from
//! theirs when woken. A pulled message is either gone (no-ack / QoS 0) or
//! *leased* under a tag until it is acked, rejected, or released back; leased
//! messages keep their receive count, so redelivery is visible to the consumer.
//!
//! The queue knows nothing about sockets or protocols; it owns only its entries,
//! its consumers' wake-ups and its limits.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::sync::Notify;

use super::bytestr::ByteStr;
use super::message::{Qos, SharedMessage, now_ms};

/// MQTT subscription identifiers carried to a delivery (usually zero or one).
pub type SubIds = SmallVec<[u32; 2]>;

/// What a binding adds to a message routed through it, merged per queue when
/// several bindings of one queue match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryHints {
    /// QoS to deliver at to MQTT consumers: min(published, granted), max over bindings.
    pub qos: Qos,
    /// Keep the RETAIN flag on delivery (MQTT retain-as-published).
    pub retain_as_published: bool,
    /// Subscription identifiers of the matching MQTT subscriptions.
    pub sub_ids: SubIds,
}

/// What to do when a queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the oldest ready message to make room.
    #[default]
    DropHead,
    /// Refuse the new message (the publisher is told when it asked to be).
    RejectPublish,
    /// Silently drop the new message.
    DropNew,
}

/// Bounds on what a queue holds.
#[derive(Debug, Clone, Default)]
pub struct QueueLimits {
    /// Most ready messages.
    pub max_messages: Option<usize>,
    /// Most ready message bytes.
    pub max_bytes: Option<usize>,
    /// Most ready QoS 0 messages; beyond it new QoS 0 messages are dropped.
    pub max_best_effort: Option<usize>,
    /// Policy when `max_messages` or `max_bytes` is reached.
    pub overflow: Overflow,
}

/// Fixed properties of a queue.
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// Survives a restart (with the durable store).
    pub durable: bool,
    /// Deleted when its last consumer goes away.
    pub auto_delete: bool,
    /// Size limits and overflow policy.
    pub limits: QueueLimits,
    /// QoS 0 messages are dropped while no consumer is attached (an offline MQTT
    /// session does not queue QoS 0 messages).
    pub best_effort_needs_consumer: bool,
}

/// Why a message did not enter a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full and its policy drops new messages, or the QoS 0 cap was hit.
    Overflow,
    /// QoS 0 message for a queue without consumers.
    NoConsumer,
    /// The message had already expired.
    Expired,
    /// The queue has been deleted.
    Deleted,
}

/// Result of [`Queue::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// The message is in the queue.
    Queued,
    /// The message was discarded.
    Dropped(DropReason),
    /// The queue refused it (`reject-publish`); the publisher should be told.
    Rejected,
}

/// How pulled messages are handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullMode {
    /// Removed from the queue as they are pulled (AMQP no-ack).
    NoAck,
    /// Leased to `owner` until acked, rejected or released (AMQP manual ack).
    Lease {
        /// Who holds the lease (a channel, a session).
        owner: u64,
    },
    /// MQTT: entries whose QoS (capped at `max_qos`) is 0 are removed; others are
    /// leased to `owner`.
    ByQos {
        /// Who holds the lease.
        owner: u64,
        /// Highest QoS the consumer accepts.
        max_qos: Qos,
    },
}

/// How much one pull may take.
#[derive(Debug, Clone, Copy)]
pub struct PullLimits {
    /// Messages in total.
    pub max: usize,
    /// Messages that become leased (the consumer's remaining credit).
    pub max_leased: usize,
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub msg: SharedMessage,
    /// The lease tag to ack with, or `None` when nothing needs acknowledging.
    pub tag: Option<u64>,
    /// QoS to deliver at (MQTT).
    pub qos: Qos,
    /// MQTT retain-as-published for this delivery.
    pub retain_as_published: bool,
    /// MQTT subscription identifiers.
    pub sub_ids: SubIds,
    /// The message was delivered before (to anyone) from this queue.
    pub redelivered: bool,
    /// How many times this queue has handed it out, this time included.
    pub delivery_count: u32,
}

/// A consumer's doorbell: the queue rings it when a message arrives for a
/// consumer that ran dry. Several consumers of one connection may share a
/// [`Notify`]; each keeps its own pending flag.
#[derive(Debug)]
pub struct Wakeup {
    notify: Arc<Notify>,
    pending: AtomicBool,
}

impl Wakeup {
    /// A doorbell that rings `notify`.
    pub fn new(notify: Arc<Notify>) -> Arc<Self> {
        Arc::new(Wakeup {
            notify,
            pending: AtomicBool::new(false),
        })
    }

    /// Rings the bell (idempotent until taken).
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Whether the bell rang since the last call; clears it.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }
}

/// Identifies a consumer attached to one queue.
pub type ConsumerId = u64;

#[derive(Debug)]
struct Entry {
    msg: SharedMessage,
    seq: u64,
    hints: DeliveryHints,
    deliveries: u32,
    first_delivery_ms: u64,
}

impl Entry {
    fn size(&self) -> usize {
        self.msg.size()
    }
}

#[derive(Debug)]
struct Leased {
    entry: Entry,
    owner: u64,
}

#[derive(Debug)]
struct ConsumerSlot {
    id: ConsumerId,
    wakeup: Arc<Wakeup>,
    waiting: bool,
}

/// Counters a queue keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages accepted.
    pub enqueued: u64,
    /// Messages handed to consumers (including redeliveries).
    pub delivered: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Dropped because the queue was full (drop-head or drop-new) or over the QoS 0 cap.
    pub dropped_overflow: u64,
    /// QoS 0 messages dropped because no consumer was attached.
    pub dropped_no_consumer: u64,
    /// Refused under `reject-publish`.
    pub rejected: u64,
    /// Expired before delivery.
    pub expired: u64,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Entry>,
    leased: HashMap<u64, Leased, ahash::RandomState>,
    consumers: Vec<ConsumerSlot>,
    next_consumer: usize,
    next_seq: u64,
    next_tag: u64,
    next_consumer_id: u64,
    ready_bytes: usize,
    ready_best_effort: usize,
    deleted: bool,
    stats: QueueStats,
}

/// Gateway-wide count of bytes held in queues, with a high-watermark at which
/// publishers are paused.
#[derive(Debug)]
pub struct MemoryGauge {
    bytes: AtomicUsize,
    high_watermark: usize,
    below: Notify,
}

impl MemoryGauge {
    /// A gauge that reports "over" above `high_watermark` bytes.
    pub fn new(high_watermark: usize) -> Self {
        MemoryGauge {
            bytes: AtomicUsize::new(0),
            high_watermark,
            below: Notify::new(),
        }
    }

    fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::Relaxed);
        if before > self.high_watermark && before - n <= self.high_watermark {
            self.below.notify_waiters();
        }
    }

    /// Bytes currently queued.
    pub fn used(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether publishers should pause.
    pub fn is_over(&self) -> bool {
        self.used() > self.high_watermark
    }

    /// Waits until usage is at or below the high-watermark.
    pub async fn wait_below(&self) {
        loop {
            let notified = self.below.notified();
            if !self.is_over() {
                return;
            }
            // Re-check periodically as well: a notification can race with the check.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), notified).await;
        }
    }
}

/// Where a queue is bound from, so deleting it removes exactly its bindings
/// (without scanning every exchange's table).
#[derive(Debug, Clone)]
pub struct BoundFrom {
    /// The exchange.
    pub exchange: std::sync::Weak<super::exchange::Exchange>,
    /// The binding key.
    pub key: ByteStr,
    /// Its spelling.
    pub key_form: super::message::KeyForm,
}

/// A queue of messages with leases; see the module docs.
#[derive(Debug)]
pub struct Queue {
    name: ByteStr,
    options: QueueOptions,
    state: Mutex<State>,
    memory: Arc<MemoryGauge>,
    /// The queue's bindings (control plane only; never touched when routing).
    pub(crate) bound_from: Mutex<Vec<BoundFrom>>,
}

impl Queue {
    /// A new empty queue.
    pub fn new(name: ByteStr, options: QueueOptions, memory: Arc<MemoryGauge>) -> Arc<Self> {
        Arc::new(Queue {
            name,
            options,
            state: Mutex::new(State::default()),
            memory,
            bound_from: Mutex::new(Vec::new()),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &ByteStr {
        &self.name
    }

    /// The options it was declared with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Adds a message, applying limits. Wakes one waiting consumer.
    pub fn enqueue(&self, msg: &SharedMessage, hints: DeliveryHints) -> EnqueueOutcome {
        self.enqueue_inner(msg, hints, true)
    }

    /// Adds a message without applying size limits (retained messages sent on
    /// subscribe, which the retained store already bounds).
    pub fn enqueue_unbounded(&self, msg: &SharedMessage, hints: DeliveryHints) -> EnqueueOutcome {
        self.enqueue_inner(msg, hints, false)
    }

    fn enqueue_inner(
        &self,
        msg: &SharedMessage,
        hints: DeliveryHints,
        bounded: bool,
    ) -> EnqueueOutcome {
        let size = msg.size();
        let best_effort = hints.qos == 0;
        let mut dropped_bytes = 0;
        let wake;
        {
            let mut st = self.state.lock();
            if st.deleted {
                return EnqueueOutcome::Dropped(DropReason::Deleted);
            }
            if best_effort && self.options.best_effort_needs_consumer && st.consumers.is_empty() {
                st.stats.dropped_no_consumer += 1;
                return EnqueueOutcome::Dropped(DropReason::NoConsumer);
            }
            let unbounded = QueueLimits::default();
            let limits = if bounded {
                &self.options.limits
            } else {
                &unbounded
            };
            if best_effort
                && limits
                    .max_best_effort
                    .is_some_and(|m| st.ready_best_effort >= m)
            {
                st.stats.dropped_overflow += 1;
                return EnqueueOutcome::Dropped(DropReason::Overflow);
            }
            let full = |st: &State| {
                limits.max_messages.is_some_and(|m| st.ready.len() >= m)
                    || limits.max_bytes.is_some_and(|m| st.ready_bytes + size > m)
            };
            if full(&st) {
                match limits.overflow {
                    Overflow::RejectPublish => {
                        st.stats.rejected += 1;
                        return EnqueueOutcome::Rejected;
                    }
                    Overflow::DropNew => {
                        st.stats.dropped_overflow += 1;
                        return EnqueueOutcome::Dropped(DropReason::Overflow);
                    }
                    Overflow::DropHead => {
                        while full(&st) {
                            let Some(old) = pop_ready(&mut st) else { break };
                            dropped_bytes += old.size();
                            st.stats.dropped_overflow += 1;
                        }
                    }
                }
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            st.ready_bytes += size;
            if best_effort {
                st.ready_best_effort += 1;
            }
            st.ready.push_back(Entry {
                msg: msg.clone(),
                seq,
                hints,
                deliveries: 0,
                first_delivery_ms: 0,
            });
            st.stats.enqueued += 1;
            wake = take_waiting_consumer(&mut st);
        }
        self.memory.add(size);
        if dropped_bytes > 0 {
            self.memory.sub(dropped_bytes);
        }
        if let Some(w) = wake {
            w.wake();
        }
        EnqueueOutcome::Queued
    }

    /// Attaches a consumer; the queue rings `wakeup` when messages arrive after a
    /// pull found it empty.
    pub fn attach(&self, wakeup: Arc<Wakeup>) -> ConsumerId {
        let mut st = self.state.lock();
        st.next_consumer_id += 1;
        let id = st.next_consumer_id;
        st.consumers.push(ConsumerSlot {
            id,
            wakeup: wakeup.clone(),
            waiting: true,
        });
        let has_ready = !st.ready.is_empty();
        drop(st);
        if has_ready {
            wakeup.wake();
        }
        id
    }

    /// Detaches a consumer. Returns how many consumers remain.
    pub fn detach(&self, id: ConsumerId) -> usize {
        let mut st = self.state.lock();
        st.consumers.retain(|c| c.id != id);
        st.consumers.len()
    }

    /// Takes up to `limits` messages for consumer `id`. If the queue ran dry before
    /// the consumer's limits were reached, the consumer is woken by the next
    /// arrival. Expired messages met on the way are dropped.
    pub fn pull(
        &self,
        id: ConsumerId,
        limits: PullLimits,
        mode: PullMode,
        out: &mut Vec<Delivery>,
    ) -> usize {
        let now = Instant::now();
        let mut freed = 0usize;
        let mut taken = 0usize;
        let mut leased = 0usize;
        let mut st = self.state.lock();
        while taken < limits.max {
            let Some(front) = st.ready.front() else { break };
            if front.msg.is_expired(now) {
                if let Some(e) = pop_ready(&mut st) {
                    freed += e.size();
                }
                st.stats.expired += 1;
                continue;
            }
            let qos = match mode {
                PullMode::NoAck => 0,
                PullMode::Lease { .. } => 1,
                PullMode::ByQos { max_qos, .. } => front.hints.qos.min(max_qos),
            };
            let needs_lease = !matches!(mode, PullMode::NoAck) && qos > 0;
            if needs_lease && leased >= limits.max_leased {
                break;
            }
            let Some(mut entry) = pop_ready(&mut st) else {
                break;
            };
            entry.deliveries += 1;
            if entry.first_delivery_ms == 0 {
                entry.first_delivery_ms = now_ms();
            }
            st.stats.delivered += 1;
            let mut delivery = Delivery {
                msg: entry.msg.clone(),
                tag: None,
                qos,
                retain_as_published: entry.hints.retain_as_published,
                sub_ids: entry.hints.sub_ids.clone(),
                redelivered: entry.deliveries > 1,
                delivery_count: entry.deliveries,
            };
            if needs_lease {
                let owner = match mode {
                    PullMode::Lease { owner } | PullMode::ByQos { owner, .. } => owner,
                    PullMode::NoAck => 0,
                };
                st.next_tag += 1;
                let tag = st.next_tag;
                delivery.tag = Some(tag);
                st.leased.insert(tag, Leased { entry, owner });
                leased += 1;
            } else {
                freed += entry.size();
            }
            out.push(delivery);
            taken += 1;
        }
        let ran_dry = st.ready.is_empty() && taken < limits.max && leased < limits.max_leased;
        if ran_dry {
            if let Some(slot) = st.consumers.iter_mut().find(|c| c.id == id) {
                slot.waiting = true;
            }
        }
        drop(st);
        if freed > 0 {
            self.memory.sub(freed);
        }
        taken
    }

    /// Marks consumer `id` as wanting messages: it will be woken by the next
    /// arrival, or right away if messages are ready.
    pub fn want_more(&self, id: ConsumerId) {
        let mut st = self.state.lock();
        let ready = !st.ready.is_empty();
        let Some(slot) = st.consumers.iter_mut().find(|c| c.id == id) else {
            return;
        };
        if ready {
            slot.waiting = false;
            let w = slot.wakeup.clone();
            drop(st);
            w.wake();
        } else {
            slot.waiting = true;
        }
    }

    /// Acknowledges a leased message: it is gone for good. Returns false for an
    /// unknown tag.
    pub fn ack(&self, tag: u64) -> bool {
        let removed = {
            let mut st = self.state.lock();
            let removed = st.leased.remove(&tag);
            if removed.is_some() {
                st.stats.acked += 1;
            }
            removed
        };
        match removed {
            Some(l) => {
                self.memory.sub(l.entry.size());
                true
            }
            None => false,
        }
    }

    /// Returns a leased message to the queue (in its original order) or, without
    /// `requeue`, discards it. Returns false for an unknown tag.
    pub fn reject(&self, tag: u64, requeue: bool) -> bool {
        let mut st = self.state.lock();
        let Some(l) = st.leased.remove(&tag) else {
            return false;
        };
        if requeue {
            insert_ready(&mut st, l.entry);
            let wake = take_waiting_consumer(&mut st);
            drop(st);
            if let Some(w) = wake {
                w.wake();
            }
        } else {
            drop(st);
            self.memory.sub(l.entry.size());
        }
        true
    }

    /// Puts every message leased to `owner` back in the queue, marked redelivered.
    /// Returns how many.
    pub fn release_owner(&self, owner: u64) -> usize {
        let mut st = self.state.lock();
        let tags: Vec<u64> = st
            .leased
            .iter()
            .filter(|(_, l)| l.owner == owner)
            .map(|(t, _)| *t)
            .collect();
        let mut entries: Vec<Entry> = tags
            .iter()
            .filter_map(|t| st.leased.remove(t))
            .map(|l| l.entry)
            .collect();
        // Reinsert newest first so each lands at the front in order.
        entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
        let n = entries.len();
        for e in entries {
            insert_ready(&mut st, e);
        }
        let wakes: SmallVec<[Arc<Wakeup>; 4]> = if n > 0 {
            st.consumers
                .iter_mut()
                .filter(|c| c.waiting)
                .map(|c| {
                    c.waiting = false;
                    c.wakeup.clone()
                })
                .collect()
        } else {
            SmallVec::new()
        };
        drop(st);
        wakes.iter().for_each(|w| w.wake());
        n
    }

    /// The message behind a lease tag, if the lease is still held (used to resend
    /// in-flight MQTT messages when a session resumes).
    pub fn leased_message(&self, tag: u64) -> Option<Delivery> {
        let st = self.state.lock();
        st.leased.get(&tag).map(|l| Delivery {
            msg: l.entry.msg.clone(),
            tag: Some(tag),
            qos: l.entry.hints.qos,
            retain_as_published: l.entry.hints.retain_as_published,
            sub_ids: l.entry.hints.sub_ids.clone(),
            redelivered: true,
            delivery_count: l.entry.deliveries,
        })
    }

    /// Removes every ready message; returns how many.
    pub fn purge(&self) -> usize {
        let mut st = self.state.lock();
        let n = st.ready.len();
        let bytes = st.ready_bytes;
        st.ready.clear();
        st.ready_bytes = 0;
        st.ready_best_effort = 0;
        drop(st);
        self.memory.sub(bytes);
        n
    }

    /// Marks the queue deleted and drops everything in it; further publishes are
    /// dropped. Returns the consumers' wake-ups so owners can notice.
    pub fn delete(&self) -> Vec<Arc<Wakeup>> {
        let mut st = self.state.lock();
        st.deleted = true;
        let bytes = st.ready_bytes + st.leased.values().map(|l| l.entry.size()).sum::<usize>();
        st.ready.clear();
        st.leased.clear();
        st.ready_bytes = 0;
        st.ready_best_effort = 0;
        let wakes = st.consumers.drain(..).map(|c| c.wakeup).collect();
        drop(st);
        self.memory.sub(bytes);
        wakes
    }

    /// Whether [`Queue::delete`] was called.
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Ready (not leased) messages.
    pub fn ready_len(&self) -> usize {
        self.state.lock().ready.len()
    }

    /// Leased (in flight) messages.
    pub fn leased_len(&self) -> usize {
        self.state.lock().leased.len()
    }

    /// Attached consumers.
    pub fn consumer_count(&self) -> usize {
        self.state.lock().consumers.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> QueueStats {
        self.state.lock().stats
    }
}

fn pop_ready(st: &mut State) -> Option<Entry> {
    let e = st.ready.pop_front()?;
    st.ready_bytes -= e.size();
    if e.hints.qos == 0 {
        st.ready_best_effort -= 1;
    }
    Some(e)
}

/// Inserts a returning entry at its place by sequence number (usually the front).
fn insert_ready(st: &mut State, e: Entry) {
    st.ready_bytes += e.size();
    if e.hints.qos == 0 {
        st.ready_best_effort += 1;
    }
    match st.ready.front() {
        None => st.ready.push_back(e),
        Some(f) if f.seq > e.seq => st.ready.push_front(e),
        Some(_) => {
            let at = st.ready.partition_point(|x| x.seq < e.seq);
            st.ready.insert(at, e);
        }
    }
}

/// Picks the next waiting consumer round-robin and clears its waiting flag.
fn take_waiting_consumer(st: &mut State) -> Option<Arc<Wakeup>> {
    let n = st.consumers.len();
    for i in 0..n {
        let at = (st.next_consumer + i) % n;
        if st.consumers[at].waiting {
            st.consumers[at].waiting = false;
            st.next_consumer = (at + 1) % n;
            return Some(st.consumers[at].wakeup.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::{KeyForm, Message};
    use bytes::Bytes;

    fn msg(n: u64, qos: u8) -> SharedMessage {
        Arc::new(Message {
            id: n,
            routing_key: ByteStr::from("t"),
            key_form: KeyForm::Mqtt,
            payload: Bytes::from(format!("m{n}")),
            qos,
            retain: false,
            persistent: false,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        })
    }

    fn hints(qos: u8) -> DeliveryHints {
        DeliveryHints {
            qos,
            ..Default::default()
        }
    }

    fn queue(limits: QueueLimits) -> Arc<Queue> {
        Queue::new(
            ByteStr::from("q"),
            QueueOptions {
                limits,
                ..Default::default()
            },
            Arc::new(MemoryGauge::new(usize::MAX)),
        )
    }

    fn pull_all(q: &Queue, mode: PullMode) -> Vec<Delivery> {
        let mut out = Vec::new();
        q.pull(
            0,
            PullLimits {
                max: usize::MAX,
                max_leased: usize::MAX,
            },
            mode,
            &mut out,
        );
        out
    }

    fn ids(d: &[Delivery]) -> Vec<u64> {
        d.iter().map(|d| d.msg.id).collect()
    }

    #[test]
    fn messages_come_out_in_order() {
        let q = queue(QueueLimits::default());
        for i in 1..=5 {
            assert_eq!(q.enqueue(&msg(i, 1), hints(1)), EnqueueOutcome::Queued);
        }
        assert_eq!(ids(&pull_all(&q, PullMode::NoAck)), [1, 2, 3, 4, 5]);
        assert_eq!(q.ready_len(), 0);
    }

    #[test]
    fn drop_head_keeps_the_newest() {
        let q = queue(QueueLimits {
            max_messages: Some(2),
            ..Default::default()
        });
        for i in 1..=4 {
            q.enqueue(&msg(i, 1), hints(1));
        }
        assert_eq!(q.stats().dropped_overflow, 2);
        assert_eq!(ids(&pull_all(&q, PullMode::NoAck)), [3, 4]);
    }

    #[test]
    fn reject_publish_refuses_when_full() {
        let q = queue(QueueLimits {
            max_messages: Some(1),
            overflow: Overflow::RejectPublish,
            ..Default::default()
        });
        assert_eq!(q.enqueue(&msg(1, 1), hints(1)), EnqueueOutcome::Queued);
        assert_eq!(q.enqueue(&msg(2, 1), hints(1)), EnqueueOutcome::Rejected);
    }

    #[test]
    fn best_effort_cap_drops_only_qos0() {
        let q = queue(QueueLimits {
            max_best_effort: Some(1),
            ..Default::default()
        });
        q.enqueue(&msg(1, 0), hints(0));
        assert_eq!(
            q.enqueue(&msg(2, 0), hints(0)),
            EnqueueOutcome::Dropped(DropReason::Overflow)
        );
        assert_eq!(q.enqueue(&msg(3, 1), hints(1)), EnqueueOutcome::Queued);
    }

    #[test]
    fn leased_messages_requeue_in_order_and_count_redelivery() {
        let q = queue(QueueLimits::default());
        for i in 1..=3 {
            q.enqueue(&msg(i, 1), hints(1));
        }
        let got = pull_all(&q, PullMode::Lease { owner: 7 });
        assert_eq!(q.leased_len(), 3);
        assert!(q.ack(got[1].tag.unwrap()));
        assert_eq!(q.release_owner(7), 2);
        let again = pull_all(&q, PullMode::Lease { owner: 8 });
        assert_eq!(ids(&again), [1, 3]);
        assert!(again.iter().all(|d| d.redelivered && d.delivery_count == 2));
    }

    #[test]
    fn by_qos_leases_only_acknowledged_qos() {
        let q = queue(QueueLimits::default());
        q.enqueue(&msg(1, 0), hints(0));
        q.enqueue(&msg(2, 1), hints(1));
        q.enqueue(&msg(3, 2), hints(2));
        let got = pull_all(
            &q,
            PullMode::ByQos {
                owner: 1,
                max_qos: 1,
            },
        );
        let tags: Vec<bool> = got.iter().map(|d| d.tag.is_some()).collect();
        assert_eq!(tags, [false, true, true]);
        assert_eq!(got[2].qos, 1);
    }

    #[test]
    fn lease_credit_stops_the_pull() {
        let q = queue(QueueLimits::default());
        for i in 1..=3 {
            q.enqueue(&msg(i, 1), hints(1));
        }
        let mut out = Vec::new();
        q.pull(
            0,
            PullLimits {
                max: 10,
                max_leased: 2,
            },
            PullMode::Lease { owner: 1 },
            &mut out,
        );
        assert_eq!(ids(&out), [1, 2]);
    }

    #[test]
    fn waiting_consumer_is_woken_by_arrival() {
        let q = queue(QueueLimits::default());
        let notify = Arc::new(Notify::new());
        let w = Wakeup::new(notify);
        let id = q.attach(w.clone());
        assert!(!w.take());
        q.enqueue(&msg(1, 0), hints(0));
        assert!(w.take());
        let mut out = Vec::new();
        q.pull(
            id,
            PullLimits {
                max: 10,
                max_leased: 10,
            },
            PullMode::NoAck,
            &mut out,
        );
        // Ran dry: the next arrival rings again.
        q.enqueue(&msg(2, 0), hints(0));
        assert!(w.take());
    }

    #[test]
    fn best_effort_without_consumer_is_dropped_when_configured() {
        let q = Queue::new(
            ByteStr::from("s"),
            QueueOptions {
                best_effort_needs_consumer: true,
                ..Default::default()
            },
            Arc::new(MemoryGauge::new(usize::MAX)),
        );
        assert_eq!(
            q.enqueue(&msg(1, 0), hints(0)),
            EnqueueOutcome::Dropped(DropReason::NoConsumer)
        );
        assert_eq!(q.enqueue(&msg(2, 1), hints(1)), EnqueueOutcome::Queued);
    }

    #[test]
    fn memory_gauge_tracks_queued_bytes() {
        let gauge = Arc::new(MemoryGauge::new(usize::MAX));
        let q = Queue::new(ByteStr::from("q"), QueueOptions::default(), gauge.clone());
        q.enqueue(&msg(1, 1), hints(1));
        assert!(gauge.used() > 0);
        let got = pull_all(&q, PullMode::Lease { owner: 1 });
        assert!(gauge.used() > 0);
        q.ack(got[0].tag.unwrap());
        assert_eq!(gauge.used(), 0);
    }
}
