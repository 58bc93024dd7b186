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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::sync::Notify;

use super::bytestr::ByteStr;
use super::dead_letter::{DeadLetterTarget, DeathReason, dead_lettered};
use super::message::{Qos, SharedMessage, now_ms};
use super::scheduler::Scheduler;
use crate::store::codec::{
    EntryRecord, Reader, Writer, decode_message, encode_message, instant_to_ms, ms_to_instant,
};
use crate::store::memory::MemoryStore;
use crate::store::{Key, Op, Ops, SharedStore, Space, keys};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest ready message to make room.
    #[default]
    DropHead,
    /// Refuse the new message (the publisher is told when it asked to be).
    RejectPublish,
    /// Refuse the new message and dead-letter it.
    RejectPublishDlx,
    /// Silently drop the new message.
    DropNew,
}

/// Bounds on what a queue holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
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

/// Fixed properties of a queue, from its declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QueueOptions {
    /// Survives a restart (with the durable store).
    pub durable: bool,
    /// Belongs to one connection, which alone may use it; deleted with it.
    pub exclusive: bool,
    /// Deleted when its last consumer goes away.
    pub auto_delete: bool,
    /// Size limits and overflow policy.
    pub limits: QueueLimits,
    /// QoS 0 messages are dropped while no consumer is attached (an offline MQTT
    /// session does not queue QoS 0 messages).
    pub best_effort_needs_consumer: bool,
    /// Per-queue message TTL (`x-message-ttl`).
    pub message_ttl: Option<Duration>,
    /// Delete the queue after it has been unused this long (`x-expires`).
    pub expires: Option<Duration>,
    /// Highest message priority honoured (`x-max-priority`); `None` for FIFO.
    pub max_priority: Option<u8>,
    /// Only one consumer receives at a time (`x-single-active-consumer`).
    pub single_active_consumer: bool,
    /// Deliveries after which a returned message is dead-lettered instead of
    /// requeued (`x-delivery-limit`).
    pub delivery_limit: Option<u32>,
    /// Where rejected, expired and overflowing messages go.
    pub dead_letter: Option<DeadLetterTarget>,
    /// Initial values of the settings SQS lets clients change later.
    pub settings: LiveSettings,
    /// FIFO queue: strict order per message group, a group is locked while any
    /// of its messages is in flight, and sends are deduplicated.
    pub fifo: bool,
    /// Publisher flow control (MQTT session and shared-group queues, bridge
    /// outboxes): see [`FlowControl`]. Set from the configuration; kept with
    /// a durable queue's options so a recovered outbox still has it.
    pub flow: Option<FlowControl>,
}

/// Publisher flow control for a queue with consumers.
///
/// When `high` messages (or `high_best_effort` QoS 0 ones) are ready while a
/// consumer is attached, the queue is congested: [`Queue::enqueue_flow`] says so, and publishers that honour it
/// pause (see [`Queue::wait_uncongested`]) until it drains to half of both,
/// instead of filling it up to its limit, where its overflow policy drops
/// messages. A queue congested for longer than `timeout` (its consumer has
/// stopped draining) stops pausing publishers until it drains, so one stuck
/// subscriber cannot hold them for longer than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowControl {
    /// Ready messages at which publishers pause.
    pub high: usize,
    /// Ready QoS 0 messages at which publishers pause.
    pub high_best_effort: usize,
    /// Longest a congestion pauses publishers.
    pub timeout: Duration,
}

/// Queue settings that may change after declaration (SQS SetQueueAttributes).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LiveSettings {
    /// How long a leased message stays invisible before it returns (SQS
    /// VisibilityTimeout, AMQP `x-visibility-timeout`); `None`: until released.
    pub visibility_timeout: Option<Duration>,
    /// Delay before a new message becomes visible (SQS DelaySeconds).
    pub delay: Duration,
    /// Messages older than this are deleted (SQS MessageRetentionPeriod).
    pub retention: Option<Duration>,
    /// Move a message to another queue once it has been received this many times.
    pub redrive: Option<Redrive>,
    /// FIFO: deduplicate by the SHA-256 of the body when no id is given.
    pub content_based_dedup: bool,
    /// FIFO: deduplication ids are scoped per message group (else per queue).
    pub dedup_per_group: bool,
    /// How long a deduplication id is remembered.
    pub dedup_window: Duration,
}

/// A redrive policy: after `max_receive_count` receives, the next receive moves
/// the message to `target` (a queue in the same vhost) instead of delivering it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redrive {
    /// Receives allowed before the move.
    pub max_receive_count: u32,
    /// The dead-letter queue's name.
    pub target: ByteStr,
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
    /// SQS ReceiveMessage: leased for `visibility`, after which it returns.
    Receive {
        /// The visibility timeout of this receive.
        visibility: Duration,
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
    /// When this queue first handed it out (ms since the epoch).
    pub first_delivery_ms: u64,
    /// Its position in the queue (SQS SequenceNumber for FIFO queues).
    pub seq: u64,
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

    /// Rings the bell. The [`Notify`] keeps at most one permit, so ringing
    /// again before the consumer looks costs little; a consumer that never
    /// calls [`Wakeup::take`] is still woken every time.
    pub fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.notify.notify_one();
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
    /// The message; `None` while paged out (its body is in the store).
    msg: Option<SharedMessage>,
    /// The message's id.
    msg_id: u64,
    /// Bytes it counts for in limits (`Message::size`).
    size: u32,
    /// Its body's length (what `x-max-length-bytes` counts).
    body_len: u32,
    seq: u64,
    hints: DeliveryHints,
    deliveries: u32,
    first_delivery_ms: u64,
    expires_at: Option<Instant>,
    /// Deleted (not dead-lettered) at this instant: SQS retention.
    drop_at: Option<Instant>,
    level: u8,
    /// Has a record in the store.
    stored: bool,
    /// Read back from the store after a restart: it may have been delivered
    /// before, so it goes out marked redelivered.
    recovered: bool,
}

impl Entry {
    /// An entry for `msg`, resident, not yet numbered or stored.
    fn new(msg: &SharedMessage, hints: DeliveryHints, level: u8) -> Self {
        Entry {
            msg: Some(msg.clone()),
            msg_id: msg.id,
            size: u32::try_from(msg.size()).unwrap_or(u32::MAX),
            body_len: u32::try_from(msg.payload.len()).unwrap_or(u32::MAX),
            seq: 0,
            hints,
            deliveries: 0,
            first_delivery_ms: 0,
            expires_at: None,
            drop_at: None,
            level,
            stored: false,
            recovered: false,
        }
    }

    fn size(&self) -> usize {
        self.size as usize
    }

    /// Bytes it holds in memory (counted by the memory gauge): nothing while
    /// paged out.
    fn resident(&self) -> usize {
        if self.msg.is_some() { self.size() } else { 0 }
    }

    fn body_len(&self) -> usize {
        self.body_len as usize
    }

    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    fn is_past_retention(&self, now: Instant) -> bool {
        self.drop_at.is_some_and(|t| t <= now)
    }

    /// The FIFO group (FIFO queues never page their entries out).
    fn group(&self) -> Option<&ByteStr> {
        self.msg.as_ref()?.group_id()
    }
}

/// Stands in for a paged-out message in a delivery until it is read back.
static PAGED_OUT: std::sync::LazyLock<SharedMessage> = std::sync::LazyLock::new(|| {
    Arc::new(super::message::Message {
        id: 0,
        routing_key: ByteStr::from_static(""),
        key_form: super::message::KeyForm::Amqp,
        exchange: ByteStr::from_static(""),
        payload: bytes::Bytes::new(),
        qos: 0,
        retain: false,
        persistent: false,
        priority: 0,
        published_at_ms: 0,
        expires_at: None,
        origin: 0,
        props: None,
    })
});

#[derive(Debug)]
struct Leased {
    entry: Entry,
    owner: u64,
    /// When the lease ends on its own (visibility timeout).
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct ConsumerSlot {
    id: ConsumerId,
    wakeup: Arc<Wakeup>,
    waiting: bool,
}

/// A ready message as [`Queue::peek`] shows it.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The message.
    pub msg: SharedMessage,
    /// How many times this queue has handed it out so far.
    pub receive_count: u32,
    /// Its position in the queue.
    pub seq: u64,
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
    /// Sent to the dead-letter exchange.
    pub dead_lettered: u64,
}

impl std::ops::AddAssign for QueueStats {
    fn add_assign(&mut self, o: QueueStats) {
        self.enqueued += o.enqueued;
        self.delivered += o.delivered;
        self.acked += o.acked;
        self.dropped_overflow += o.dropped_overflow;
        self.dropped_no_consumer += o.dropped_no_consumer;
        self.rejected += o.rejected;
        self.expired += o.expired;
        self.dead_lettered += o.dead_lettered;
    }
}

/// A queue's sizes and counters, read under one lock (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages ready for delivery.
    pub ready: usize,
    /// Messages waiting out their delay.
    pub delayed: usize,
    /// Messages leased (in flight).
    pub leased: usize,
    /// Attached consumers.
    pub consumers: usize,
    /// The counters.
    pub stats: QueueStats,
}

#[derive(Debug)]
struct State {
    /// Ready messages by priority level (index 0 is the lowest).
    levels: SmallVec<[VecDeque<Entry>; 1]>,
    ready_count: usize,
    ready_bytes: usize,
    /// Body bytes of ready messages (what `x-max-length-bytes` counts).
    ready_body_bytes: usize,
    ready_best_effort: usize,
    leased: HashMap<u64, Leased, ahash::RandomState>,
    consumers: Vec<ConsumerSlot>,
    next_consumer: usize,
    next_seq: u64,
    next_tag: u64,
    /// Sequence numbers and lease tags below these are reserved in the store,
    /// so after a restart neither is reused (SQS sequence numbers keep
    /// increasing; an old receipt handle never names a new lease).
    reserved_seq: u64,
    reserved_tag: u64,
    next_consumer_id: u64,
    deleted: bool,
    stats: QueueStats,
    /// Earliest deadline handed to the scheduler.
    timer_at: Option<Instant>,
    /// Last time the queue was used (for `x-expires`).
    last_used: Instant,
    /// The consumer holding exclusive access, if any.
    exclusive_consumer: Option<ConsumerId>,
    /// Messages not yet visible (delay), by when they become visible.
    delayed: BTreeMap<(Instant, u64), Entry>,
    delayed_bytes: usize,
    /// Lease deadlines, for visibility timeouts.
    lease_deadlines: BTreeSet<(Instant, u64)>,
    /// FIFO group locks and deduplication, made on first use (most queues are
    /// not FIFO, and an MQTT session queue should cost little).
    fifo: Option<Box<FifoState>>,
    /// Settings that may change after declaration.
    live: LiveSettings,
    /// Flow control: when the queue became congested (reached `high`).
    congested_since: Option<Instant>,
    /// Flow control: a publisher waits for this queue to drain.
    flow_waiting: bool,
}

/// What a FIFO queue keeps beyond a plain one.
#[derive(Debug, Default)]
struct FifoState {
    /// In-flight messages per message group (a group with any is locked).
    locked_groups: HashMap<ByteStr, u32, ahash::RandomState>,
    /// Remembered deduplication ids and what they stood for.
    dedup: HashMap<(Option<ByteStr>, ByteStr), Deduped, ahash::RandomState>,
    dedup_order: VecDeque<(Instant, (Option<ByteStr>, ByteStr))>,
}

/// The FIFO state of `st`, made if it has none yet.
fn fifo_mut(st: &mut State) -> &mut FifoState {
    st.fifo.get_or_insert_with(Box::default)
}

/// Whether FIFO group `g` has messages in flight.
fn group_locked(st: &State, g: &ByteStr) -> bool {
    st.fifo
        .as_ref()
        .is_some_and(|f| f.locked_groups.contains_key(g))
}

/// A deduplication record: the message a deduplication id first stood for.
#[derive(Debug, Clone, Copy)]
struct Deduped {
    message_id: u64,
    seq: u64,
}

/// Per-send options beyond the message itself (SQS SendMessage).
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Per-message delay, overriding the queue's.
    pub delay: Option<Duration>,
    /// FIFO deduplication id (else content-based, if enabled).
    pub dedup_id: Option<ByteStr>,
}

/// Result of [`Queue::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued at this position.
    Queued {
        /// Its sequence number.
        seq: u64,
    },
    /// A duplicate of an earlier message within the deduplication window: not
    /// queued again; the earlier message's id and position.
    Duplicate {
        /// The earlier message's id.
        message_id: u64,
        /// Its sequence number.
        seq: u64,
    },
    /// Refused or dropped by the queue.
    Refused(EnqueueOutcome),
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
        if n == 0 {
            return;
        }
        let before = self.bytes.fetch_sub(n, Ordering::Relaxed);
        if before > self.high_watermark && before - n <= self.high_watermark {
            self.below.notify_waiters();
        }
    }

    /// The threshold above which publishers are paused.
    pub fn high_watermark(&self) -> usize {
        self.high_watermark
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

/// What every queue shares: the memory gauge, the deadline scheduler and the
/// store. Cloning it clones one pointer (a queue keeps a clone).
#[derive(Debug, Clone)]
pub struct QueueEnv(Arc<EnvParts>);

impl std::ops::Deref for QueueEnv {
    type Target = EnvParts;

    fn deref(&self) -> &EnvParts {
        &self.0
    }
}

/// The parts of a [`QueueEnv`].
#[derive(Debug)]
pub struct EnvParts {
    /// Gateway-wide queued bytes.
    pub memory: Arc<MemoryGauge>,
    /// Timer service for TTLs and idle expiry.
    pub scheduler: Arc<Scheduler>,
    /// Where durable queues keep their entries.
    pub store: SharedStore,
    /// Entries read back at start-up, by queue id, until their queue is rebuilt.
    pub recovered: Arc<Mutex<HashMap<u64, RecoveredQueue>>>,
    /// Queues that may page message bodies out (see [`super::pager`]).
    pub pageable: Arc<Mutex<Vec<Weak<Queue>>>>,
    /// Rung when a congested queue that a publisher waits on drains (or loses
    /// its consumers); waiters re-check their own queue.
    pub flow: Arc<Notify>,
}

impl QueueEnv {
    /// An environment with a gauge at `high_watermark` bytes and no storage.
    pub fn new(high_watermark: usize) -> Self {
        Self::with_store(high_watermark, Arc::new(MemoryStore::default()))
    }

    /// An environment whose durable queues keep their entries in `store`.
    pub fn with_store(high_watermark: usize, store: SharedStore) -> Self {
        QueueEnv(Arc::new(EnvParts {
            memory: Arc::new(MemoryGauge::new(high_watermark)),
            scheduler: Arc::new(Scheduler::default()),
            store,
            recovered: Arc::new(Mutex::new(HashMap::new())),
            pageable: Arc::new(Mutex::new(Vec::new())),
            flow: Arc::new(Notify::new()),
        }))
    }
}

/// One queue entry read back from the store.
#[derive(Debug)]
pub struct RecoveredEntry {
    /// Its position.
    pub seq: u64,
    /// What the queue kept about it.
    pub record: EntryRecord,
    /// The message, when read already (else it is paged in on demand).
    pub msg: Option<SharedMessage>,
}

/// A FIFO deduplication record read back from the store.
#[derive(Debug)]
pub struct RecoveredDedup {
    /// The group scope, if deduplication is per group.
    pub scope: Option<ByteStr>,
    /// The deduplication id.
    pub id: ByteStr,
    /// The message it stood for.
    pub message_id: u64,
    /// Its position.
    pub seq: u64,
    /// When it is forgotten (ms since the epoch).
    pub until_ms: u64,
}

/// Everything stored for one queue.
#[derive(Debug, Default)]
pub struct RecoveredQueue {
    /// Entries in sequence order.
    pub entries: Vec<RecoveredEntry>,
    /// Deduplication records.
    pub dedup: Vec<RecoveredDedup>,
    /// Reserved sequence number and lease tag bounds.
    pub counters: Option<(u64, u64)>,
}

/// Sequence numbers (or lease tags) reserved in the store at a time.
const COUNTER_BLOCK: u64 = 1 << 16;

/// Where a queue is bound from, so deleting it removes exactly its bindings
/// (without scanning every exchange's table).
#[derive(Debug, Clone)]
pub struct BoundFrom {
    /// The exchange.
    pub exchange: Weak<super::exchange::Exchange>,
    /// The binding key.
    pub key: ByteStr,
    /// Its spelling.
    pub key_form: super::message::KeyForm,
}

/// Messages a queue gave up on, to dead-letter once its lock is released.
type Dead = SmallVec<[(Entry, DeathReason); 2]>;

/// A queue of messages with leases; see the module docs.
#[derive(Debug)]
pub struct Queue {
    name: ByteStr,
    /// Random identity of this incarnation (receipt handles of a deleted and
    /// recreated queue of the same name are invalid).
    uid: u64,
    /// Shared by queues made alike (every MQTT session queue).
    options: Arc<QueueOptions>,
    /// The connection owning an exclusive queue.
    owner: Option<u64>,
    /// The store keeping this queue's persistent entries (keyed by `uid`);
    /// `None` for queues that keep nothing.
    store: Option<SharedStore>,
    me: Weak<Queue>,
    state: Mutex<State>,
    env: QueueEnv,
    /// The queue's bindings (control plane only; never touched when routing).
    pub(crate) bound_from: Mutex<Vec<BoundFrom>>,
    /// The vhost that declared it, for dead-lettering and idle expiry.
    pub(crate) vhost: OnceLock<Weak<super::vhost::VHost>>,
}

impl Queue {
    /// A new empty queue.
    pub fn new(name: ByteStr, options: QueueOptions, env: &QueueEnv) -> Arc<Self> {
        Self::with_owner(name, options, None, env)
    }

    /// A new empty queue with options shared with other queues (each MQTT
    /// session has a queue; one copy of their options serves them all).
    pub fn new_shared(name: ByteStr, options: Arc<QueueOptions>, env: &QueueEnv) -> Arc<Self> {
        Self::build(name, options, None, env, None)
    }

    /// A new empty queue owned by connection `owner` (exclusive queues).
    pub fn with_owner(
        name: ByteStr,
        options: QueueOptions,
        owner: Option<u64>,
        env: &QueueEnv,
    ) -> Arc<Self> {
        Self::build(name, Arc::new(options), owner, env, None)
    }

    /// A durable queue rebuilt after a restart under its old identity, with
    /// the entries the store kept for it.
    pub fn restored(name: ByteStr, options: QueueOptions, uid: u64, env: &QueueEnv) -> Arc<Self> {
        Self::restored_shared(name, Arc::new(options), uid, env)
    }

    /// [`Queue::restored`] with options shared with other queues.
    pub fn restored_shared(
        name: ByteStr,
        options: Arc<QueueOptions>,
        uid: u64,
        env: &QueueEnv,
    ) -> Arc<Self> {
        let q = Self::build(name, options, None, env, Some(uid));
        let kept = env.recovered.lock().remove(&uid);
        if let Some(kept) = kept {
            q.restore(kept);
        }
        q
    }

    fn build(
        name: ByteStr,
        options: Arc<QueueOptions>,
        owner: Option<u64>,
        env: &QueueEnv,
        uid: Option<u64>,
    ) -> Arc<Self> {
        let levels = options.max_priority.map_or(1, |m| usize::from(m) + 1);
        let store = (options.durable && !options.exclusive && env.store.is_persistent())
            .then(|| env.store.clone());
        let q = Arc::new_cyclic(|me| Queue {
            name,
            // Never 0, so a receipt handle of 0 names no queue.
            uid: uid.unwrap_or_else(|| rand::random::<u64>().max(1)),
            owner,
            store,
            me: me.clone(),
            state: Mutex::new(State {
                levels: (0..levels).map(|_| VecDeque::new()).collect(),
                ready_count: 0,
                ready_bytes: 0,
                ready_body_bytes: 0,
                ready_best_effort: 0,
                leased: HashMap::default(),
                consumers: Vec::new(),
                next_consumer: 0,
                next_seq: 0,
                next_tag: 0,
                reserved_seq: 0,
                reserved_tag: 0,
                next_consumer_id: 0,
                deleted: false,
                stats: QueueStats::default(),
                timer_at: None,
                last_used: Instant::now(),
                exclusive_consumer: None,
                delayed: BTreeMap::new(),
                delayed_bytes: 0,
                lease_deadlines: BTreeSet::new(),
                fifo: None,
                live: options.settings.clone(),
                congested_since: None,
                flow_waiting: false,
            }),
            options,
            env: env.clone(),
            bound_from: Mutex::new(Vec::new()),
            vhost: OnceLock::new(),
        });
        if let Some(idle) = q.options.expires {
            q.env
                .scheduler
                .schedule(Instant::now() + idle, Arc::downgrade(&q));
        }
        if q.pageable() {
            q.env.pageable.lock().push(Arc::downgrade(&q));
        }
        q
    }

    /// The queue's name.
    pub fn name(&self) -> &ByteStr {
        &self.name
    }

    /// This incarnation's random identity (also its key in the store).
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// Whether the queue keeps its persistent messages in the store.
    pub fn is_stored(&self) -> bool {
        self.store.is_some()
    }

    /// The options it was declared with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// The connection that owns this exclusive queue.
    pub fn owner(&self) -> Option<u64> {
        self.owner
    }

    /// Adds a message, applying limits. Wakes one waiting consumer.
    pub fn enqueue(&self, msg: &SharedMessage, hints: DeliveryHints) -> EnqueueOutcome {
        self.enqueue_flow(msg, hints).0
    }

    /// [`Queue::enqueue`], also saying whether the queue is now congested (see
    /// [`FlowControl`]): the publisher should pause until
    /// [`Queue::wait_uncongested`] returns.
    pub fn enqueue_flow(
        &self,
        msg: &SharedMessage,
        hints: DeliveryHints,
    ) -> (EnqueueOutcome, bool) {
        let mut congested = false;
        let outcome =
            match self.enqueue_inner(msg, hints, true, &SendOptions::default(), &mut congested) {
                Sent::Queued { .. } | Sent::Duplicate { .. } => EnqueueOutcome::Queued,
                Sent::Refused(o) => o,
            };
        (outcome, congested)
    }

    /// Waits until this queue is no longer congested: drained to half its
    /// flow threshold, without consumers, deleted, or congested for longer
    /// than the flow timeout. Returns at once for a queue without flow control.
    pub async fn wait_uncongested(&self) {
        let Some(flow) = self.options.flow else {
            return;
        };
        loop {
            let notified = self.env.flow.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until = {
                let mut st = self.state.lock();
                match st.congested_since {
                    Some(since)
                        if !st.deleted
                            && !st.consumers.is_empty()
                            && since.elapsed() < flow.timeout =>
                    {
                        st.flow_waiting = true;
                        since + flow.timeout
                    }
                    _ => return,
                }
            };
            if tokio::time::timeout_at(until.into(), notified)
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Ends a congestion once the queue has drained to half its threshold (or
    /// lost its consumers), waking waiting publishers. Called with the lock held;
    /// returns whether to ring [`QueueEnv::flow`] after unlocking.
    fn flow_check(&self, st: &mut State) -> bool {
        let Some(flow) = self.options.flow else {
            return false;
        };
        let drained =
            st.ready_count <= flow.high / 2 && st.ready_best_effort <= flow.high_best_effort / 2;
        if st.congested_since.is_none() || (!drained && !st.consumers.is_empty() && !st.deleted) {
            return false;
        }
        st.congested_since = None;
        std::mem::take(&mut st.flow_waiting)
    }

    /// Adds a message without applying size limits (retained messages sent on
    /// subscribe, which the retained store already bounds).
    pub fn enqueue_unbounded(&self, msg: &SharedMessage, hints: DeliveryHints) -> EnqueueOutcome {
        match self.enqueue_inner(msg, hints, false, &SendOptions::default(), &mut false) {
            Sent::Queued { .. } | Sent::Duplicate { .. } => EnqueueOutcome::Queued,
            Sent::Refused(o) => o,
        }
    }

    /// Sends a message straight to this queue with SQS options (delay,
    /// deduplication), reporting its sequence number or the duplicate it matched.
    pub fn send(&self, msg: &SharedMessage, options: &SendOptions) -> Sent {
        let hints = DeliveryHints {
            qos: msg.qos,
            ..Default::default()
        };
        self.enqueue_inner(msg, hints, true, options, &mut false)
    }

    fn enqueue_inner(
        &self,
        msg: &SharedMessage,
        hints: DeliveryHints,
        bounded: bool,
        send: &SendOptions,
        congested: &mut bool,
    ) -> Sent {
        let size = msg.size();
        let best_effort = hints.qos == 0;
        let now = Instant::now();
        let ttl_deadline = self.options.message_ttl.map(|ttl| now + ttl);
        let expires_at = match (msg.expires_at, ttl_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut dead = Dead::new();
        let mut dropped_bytes = 0usize;
        let wake;
        let mut schedule = None;
        let outcome;
        // Encoded outside the lock; only what the store keeps is encoded.
        let body =
            (self.store.is_some() && msg.persistent && hints.qos > 0).then(|| encode_message(msg));
        let mut ops = Ops::new();
        {
            let mut st = self.state.lock();
            if st.deleted {
                return Sent::Refused(EnqueueOutcome::Dropped(DropReason::Deleted));
            }
            if expires_at.is_some_and(|t| t <= now) {
                st.stats.expired += 1;
                return Sent::Refused(EnqueueOutcome::Dropped(DropReason::Expired));
            }
            if best_effort && self.options.best_effort_needs_consumer && st.consumers.is_empty() {
                st.stats.dropped_no_consumer += 1;
                return Sent::Refused(EnqueueOutcome::Dropped(DropReason::NoConsumer));
            }
            let dedup_key = if self.options.fifo {
                dedup_key(&st, msg, send)
            } else {
                None
            };
            if let Some(key) = &dedup_key {
                self.forget_old_dedup(&mut st, now, &mut ops);
                if let Some(d) = st.fifo.as_ref().and_then(|f| f.dedup.get(key)) {
                    return Sent::Duplicate {
                        message_id: d.message_id,
                        seq: d.seq,
                    };
                }
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
                return Sent::Refused(EnqueueOutcome::Dropped(DropReason::Overflow));
            }
            let full = |st: &State| {
                limits.max_messages.is_some_and(|m| st.ready_count >= m)
                    || limits
                        .max_bytes
                        .is_some_and(|m| st.ready_body_bytes + msg.payload.len() > m)
            };
            let level = self.level_of(msg);
            let entry = Entry {
                expires_at,
                drop_at: st.live.retention.map(|r| now + r),
                ..Entry::new(msg, hints, level)
            };
            let mut admit = true;
            if full(&st) {
                match limits.overflow {
                    Overflow::RejectPublish => {
                        st.stats.rejected += 1;
                        return Sent::Refused(EnqueueOutcome::Rejected);
                    }
                    Overflow::RejectPublishDlx => {
                        st.stats.rejected += 1;
                        dead.push((entry_copy(&entry), DeathReason::MaxLen));
                        admit = false;
                    }
                    Overflow::DropNew => {
                        st.stats.dropped_overflow += 1;
                        return Sent::Refused(EnqueueOutcome::Dropped(DropReason::Overflow));
                    }
                    Overflow::DropHead => {
                        while full(&st) {
                            let Some(old) = pop_oldest(&mut st) else {
                                break;
                            };
                            st.stats.dropped_overflow += 1;
                            dropped_bytes += old.resident();
                            dead.push((old, DeathReason::MaxLen));
                        }
                    }
                }
            }
            if admit {
                let mut entry = entry;
                let seq = st.next_seq;
                entry.seq = seq;
                st.next_seq += 1;
                if seq >= st.reserved_seq {
                    st.reserved_seq = seq + COUNTER_BLOCK;
                    self.reserve_counters(&st, &mut ops);
                }
                st.stats.enqueued += 1;
                st.last_used = now;
                self.env.memory.add(size);
                if let Some(key) = dedup_key {
                    let until = now + st.live.dedup_window;
                    if self.store.is_some() {
                        ops.push(Op::Put(
                            Space::Meta,
                            self.dedup_store_key(&key),
                            encode_dedup(msg.id, seq, instant_to_ms(until)),
                        ));
                    }
                    let fifo = fifo_mut(&mut st);
                    fifo.dedup.insert(
                        key.clone(),
                        Deduped {
                            message_id: msg.id,
                            seq,
                        },
                    );
                    fifo.dedup_order.push_back((until, key));
                }
                let delay = send.delay.unwrap_or(st.live.delay);
                // The earliest of expiry, retention and (below) visibility.
                let drop_at = st.live.retention.map(|r| now + r);
                let mut deadline = match (expires_at, drop_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Some(body) = body {
                    entry.stored = true;
                    let visible_at = (!delay.is_zero()).then(|| now + delay);
                    let key = keys::entry_key(self.uid, seq);
                    let record = record_of(&entry, visible_at, None);
                    ops.push(Op::Put(Space::Index, key.clone(), record.encode()));
                    ops.push(Op::Put(Space::Body, key, body));
                }
                if delay.is_zero() {
                    push_ready(&mut st, entry);
                    if let Some(flow) = self.options.flow
                        && (st.ready_count >= flow.high
                            || st.ready_best_effort >= flow.high_best_effort)
                        && !st.consumers.is_empty()
                    {
                        let since = *st.congested_since.get_or_insert(now);
                        *congested = now.duration_since(since) < flow.timeout;
                    }
                    wake = self.take_waiting_consumer(&mut st);
                } else {
                    let visible_at = now + delay;
                    st.delayed_bytes += size;
                    st.delayed.insert((visible_at, seq), entry);
                    deadline = Some(deadline.map_or(visible_at, |d| d.min(visible_at)));
                    wake = None;
                }
                schedule = deadline.filter(|t| st.timer_at.is_none_or(|at| *t < at));
                if let Some(t) = schedule {
                    st.timer_at = Some(t);
                }
                outcome = Sent::Queued { seq };
            } else {
                wake = None;
                outcome = Sent::Refused(EnqueueOutcome::Rejected);
            }
            self.commit(&mut ops);
        }
        if let Some(t) = schedule {
            self.env.scheduler.schedule(t, self.me.clone());
        }
        if let Some(w) = wake {
            w.wake();
        }
        self.env.memory.sub(dropped_bytes);
        self.dispatch_dead(dead, false);
        outcome
    }

    fn level_of(&self, msg: &SharedMessage) -> u8 {
        self.options.max_priority.map_or(0, |m| msg.priority.min(m))
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
        st.last_used = Instant::now();
        let active = !self.options.single_active_consumer || st.consumers.len() == 1;
        let has_ready = st.ready_count > 0;
        drop(st);
        if has_ready && active {
            wakeup.wake();
        }
        id
    }

    /// Attaches a consumer unless exclusivity forbids it: an `exclusive` consumer
    /// needs a queue without consumers, and nobody may join an exclusive one.
    /// `None` when refused.
    pub fn attach_checked(&self, wakeup: Arc<Wakeup>, exclusive: bool) -> Option<ConsumerId> {
        {
            let mut st = self.state.lock();
            if st.exclusive_consumer.is_some() || (exclusive && !st.consumers.is_empty()) {
                return None;
            }
            if exclusive {
                // Reserve before attaching so a racing attach sees it.
                st.exclusive_consumer = Some(0);
            }
        }
        let id = self.attach(wakeup);
        if exclusive {
            self.state.lock().exclusive_consumer = Some(id);
        }
        Some(id)
    }

    /// Detaches a consumer. Returns how many consumers remain.
    pub fn detach(&self, id: ConsumerId) -> usize {
        let mut st = self.state.lock();
        let was_active = st.consumers.first().is_some_and(|c| c.id == id);
        st.consumers.retain(|c| c.id != id);
        if st.exclusive_consumer == Some(id) {
            st.exclusive_consumer = None;
        }
        let remaining = st.consumers.len();
        let now = Instant::now();
        st.last_used = now;
        // With a single active consumer, the next one in line takes over.
        let wake = (self.options.single_active_consumer && was_active && st.ready_count > 0)
            .then(|| st.consumers.first().map(|c| c.wakeup.clone()))
            .flatten();
        let idle_check = (remaining == 0)
            .then_some(())
            .and(self.options.expires)
            .map(|d| now + d);
        let drained = self.flow_check(&mut st);
        drop(st);
        if drained {
            self.env.flow.notify_waiters();
        }
        if let Some(w) = wake {
            w.wake();
        }
        if let Some(t) = idle_check {
            self.env.scheduler.schedule(t, self.me.clone());
        }
        remaining
    }

    /// Records a use of the queue that is not a consumer (declare, get), which
    /// postpones `x-expires`.
    pub fn touch(&self) {
        let now = Instant::now();
        self.state.lock().last_used = now;
        if let Some(d) = self.options.expires {
            self.env.scheduler.schedule(now + d, self.me.clone());
        }
    }

    /// Takes up to `limits` messages for consumer `id` (0 for a one-off get). If
    /// the queue ran dry before the consumer's limits were reached, the consumer
    /// is woken by the next arrival. Expired messages met on the way are dropped
    /// or dead-lettered; messages received too often move to the redrive queue.
    pub fn pull(
        &self,
        id: ConsumerId,
        limits: PullLimits,
        mode: PullMode,
        out: &mut Vec<Delivery>,
    ) -> usize {
        let now = Instant::now();
        let now_wall = now_ms();
        let mut freed = 0usize;
        let mut taken = 0usize;
        let mut leased = 0usize;
        let mut dead = Dead::new();
        let mut ops = Ops::new();
        // Deliveries whose message is paged out: read back after unlocking.
        let mut to_load: SmallVec<[(usize, u64); 8]> = SmallVec::new();
        let mut after_load = Ops::new();
        let first_out = out.len();
        let mut st = self.state.lock();
        // Receive counts are stored where they decide something (SQS receives,
        // delivery limits, redrive); otherwise a restart marks every message
        // it recovers as possibly delivered, which costs no write per delivery.
        let count_matters = matches!(mode, PullMode::Receive { .. })
            || self.options.delivery_limit.is_some()
            || st.live.redrive.is_some();
        let inactive = self.options.single_active_consumer
            && id != 0
            && st.consumers.first().is_none_or(|c| c.id != id);
        let (owner, deadline) = match mode {
            PullMode::NoAck => (0, None),
            PullMode::Lease { owner } => (owner, st.live.visibility_timeout.map(|v| now + v)),
            PullMode::Receive { visibility } => (0, Some(now + visibility)),
            PullMode::ByQos { owner, .. } => (owner, st.live.visibility_timeout.map(|v| now + v)),
        };
        // FIFO: groups with messages in flight before this pull are skipped.
        let locked: SmallVec<[ByteStr; 4]> = if self.options.fifo {
            st.fifo
                .as_ref()
                .map(|f| f.locked_groups.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            SmallVec::new()
        };
        let mut skip = 0usize;
        while taken < limits.max && !inactive {
            let Some(front) = peek_ready_at(&st, skip) else {
                break;
            };
            if front.is_past_retention(now) {
                if let Some(e) = take_ready_at(&mut st, skip) {
                    freed += e.resident();
                    self.forget(&e, &mut ops);
                }
                continue;
            }
            if front.is_expired(now) {
                if let Some(e) = take_ready_at(&mut st, skip) {
                    st.stats.expired += 1;
                    freed += e.resident();
                    dead.push((e, DeathReason::Expired));
                }
                continue;
            }
            if self.options.fifo && front.group().is_some_and(|g| locked.contains(g)) {
                skip += 1;
                continue;
            }
            if let Some(r) = &st.live.redrive
                && front.deliveries >= r.max_receive_count
                && !matches!(mode, PullMode::NoAck)
            {
                if let Some(e) = take_ready_at(&mut st, skip) {
                    freed += e.resident();
                    dead.push((e, DeathReason::MaxReceives));
                }
                continue;
            }
            let qos = match mode {
                PullMode::NoAck => 0,
                PullMode::Lease { .. } | PullMode::Receive { .. } => 1,
                PullMode::ByQos { max_qos, .. } => front.hints.qos.min(max_qos),
            };
            let needs_lease = !matches!(mode, PullMode::NoAck) && qos > 0;
            if needs_lease && leased >= limits.max_leased {
                break;
            }
            let Some(mut entry) = take_ready_at(&mut st, skip) else {
                break;
            };
            entry.deliveries += 1;
            if entry.first_delivery_ms == 0 {
                entry.first_delivery_ms = now_wall;
            }
            st.stats.delivered += 1;
            if entry.msg.is_none() {
                to_load.push((out.len(), entry.seq));
            }
            let mut delivery = Delivery {
                msg: entry.msg.clone().unwrap_or_else(|| PAGED_OUT.clone()),
                tag: None,
                qos,
                retain_as_published: entry.hints.retain_as_published,
                sub_ids: entry.hints.sub_ids.clone(),
                redelivered: entry.deliveries > 1 || entry.recovered,
                delivery_count: entry.deliveries,
                first_delivery_ms: entry.first_delivery_ms,
                seq: entry.seq,
            };
            if needs_lease {
                st.next_tag += 1;
                let tag = st.next_tag;
                if tag >= st.reserved_tag {
                    st.reserved_tag = tag + COUNTER_BLOCK;
                    self.reserve_counters(&st, &mut ops);
                }
                delivery.tag = Some(tag);
                if let Some(g) = entry.group().filter(|_| self.options.fifo) {
                    *fifo_mut(&mut st)
                        .locked_groups
                        .entry(g.clone())
                        .or_insert(0) += 1;
                }
                if let Some(d) = deadline {
                    st.lease_deadlines.insert((d, tag));
                }
                if entry.stored && count_matters {
                    let lease = matches!(mode, PullMode::Receive { .. })
                        .then_some((tag, deadline))
                        .and_then(|(t, d)| d.map(|d| (t, d)));
                    let record = record_of(&entry, None, lease);
                    ops.push(Op::Put(
                        Space::Index,
                        keys::entry_key(self.uid, entry.seq),
                        record.encode(),
                    ));
                }
                st.leased.insert(
                    tag,
                    Leased {
                        entry,
                        owner,
                        deadline,
                    },
                );
                leased += 1;
            } else if entry.msg.is_none() {
                // Forgotten only once its body has been read back below.
                self.forget(&entry, &mut after_load);
            } else {
                freed += entry.resident();
                self.forget(&entry, &mut ops);
            }
            out.push(delivery);
            taken += 1;
        }
        if id == 0 {
            st.last_used = now;
        }
        let schedule = deadline
            .filter(|_| leased > 0)
            .filter(|t| st.timer_at.is_none_or(|at| *t < at));
        if let Some(t) = schedule {
            st.timer_at = Some(t);
        }
        let ran_dry = inactive
            || (st.ready_count == skip && taken < limits.max && leased < limits.max_leased);
        if ran_dry && let Some(slot) = st.consumers.iter_mut().find(|c| c.id == id) {
            slot.waiting = true;
        }
        let drained = self.flow_check(&mut st);
        self.commit(&mut ops);
        drop(st);
        if drained {
            self.env.flow.notify_waiters();
        }
        if let Some(t) = schedule {
            self.env.scheduler.schedule(t, self.me.clone());
        }
        self.env.memory.sub(freed);
        self.dispatch_dead(dead, false);
        // Newest first, so removing a failed one keeps the others' indices.
        for (i, seq) in to_load.into_iter().rev() {
            match self.load(seq) {
                Some(m) => out[i].msg = m,
                None => {
                    // Its body is gone or unreadable (logged by `load`): drop
                    // the entry rather than deliver an empty message.
                    let d = out.remove(i);
                    if let Some(tag) = d.tag {
                        self.ack(tag);
                    }
                    taken -= 1;
                }
            }
        }
        debug_assert!(out.len() >= first_out);
        self.commit(&mut after_load);
        taken
    }

    /// Marks consumer `id` as wanting messages: it will be woken by the next
    /// arrival, or right away if messages are ready.
    pub fn want_more(&self, id: ConsumerId) {
        let mut st = self.state.lock();
        let ready = st.ready_count > 0;
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
        let (removed, wake) = {
            let mut st = self.state.lock();
            let removed = unlease(&mut st, tag);
            if let Some(l) = &removed {
                st.stats.acked += 1;
                if l.entry.stored {
                    let mut ops = Ops::new();
                    self.forget(&l.entry, &mut ops);
                    self.commit(&mut ops);
                }
            }
            let wake = self.wake_for_unlocked(&mut st, removed.as_ref());
            (removed, wake)
        };
        if let Some(w) = wake {
            w.wake();
        }
        match removed {
            Some(l) => {
                self.env.memory.sub(l.entry.resident());
                true
            }
            None => false,
        }
    }

    /// Returns a leased message to the queue (in its original order) or, without
    /// `requeue`, dead-letters or discards it. A message delivered more often
    /// than the delivery limit is dead-lettered instead of requeued. Returns
    /// false for an unknown tag.
    pub fn reject(&self, tag: u64, requeue: bool) -> bool {
        let mut dead = Dead::new();
        let mut st = self.state.lock();
        let Some(l) = unlease(&mut st, tag) else {
            return false;
        };
        let mut wake = None;
        if !requeue {
            dead.push((l.entry, DeathReason::Rejected));
        } else if self.over_delivery_limit(&l.entry) {
            dead.push((l.entry, DeathReason::DeliveryLimit));
        } else {
            insert_ready(&mut st, l.entry);
            wake = self.take_waiting_consumer(&mut st);
        }
        drop(st);
        if let Some(w) = wake {
            w.wake();
        }
        self.dispatch_dead(dead, true);
        true
    }

    fn over_delivery_limit(&self, e: &Entry) -> bool {
        self.options
            .delivery_limit
            .is_some_and(|limit| e.deliveries > limit)
    }

    /// Puts every message leased to `owner` back in the queue, marked redelivered
    /// (or dead-lettered past the delivery limit). Returns how many.
    pub fn release_owner(&self, owner: u64) -> usize {
        let mut dead = Dead::new();
        let mut st = self.state.lock();
        let tags: Vec<u64> = st
            .leased
            .iter()
            .filter(|(_, l)| l.owner == owner)
            .map(|(t, _)| *t)
            .collect();
        let mut entries: Vec<Entry> = tags
            .iter()
            .filter_map(|t| unlease(&mut st, *t))
            .map(|l| l.entry)
            .collect();
        // Reinsert newest first so each lands at the front in order.
        entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
        let n = entries.len();
        for e in entries {
            if self.over_delivery_limit(&e) {
                dead.push((e, DeathReason::DeliveryLimit));
            } else {
                insert_ready(&mut st, e);
            }
        }
        let wakes: SmallVec<[Arc<Wakeup>; 4]> = if n > 0 {
            let sac = self.options.single_active_consumer;
            st.consumers
                .iter_mut()
                .take(if sac { 1 } else { usize::MAX })
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
        self.dispatch_dead(dead, true);
        n
    }

    /// The message behind a lease tag, if the lease is still held (used to resend
    /// in-flight MQTT messages when a session resumes).
    pub fn leased_message(&self, tag: u64) -> Option<Delivery> {
        let mut d = {
            let st = self.state.lock();
            st.leased.get(&tag).map(|l| Delivery {
                msg: l.entry.msg.clone().unwrap_or_else(|| PAGED_OUT.clone()),
                tag: Some(tag),
                qos: l.entry.hints.qos,
                retain_as_published: l.entry.hints.retain_as_published,
                sub_ids: l.entry.hints.sub_ids.clone(),
                redelivered: true,
                delivery_count: l.entry.deliveries,
                first_delivery_ms: l.entry.first_delivery_ms,
                seq: l.entry.seq,
            })?
        };
        if Arc::ptr_eq(&d.msg, &PAGED_OUT) {
            d.msg = self.load(d.seq)?;
        }
        Some(d)
    }

    /// Changes when a leased message becomes visible again (SQS
    /// ChangeMessageVisibility); zero returns it now. False when `tag` is not
    /// in flight.
    pub fn change_visibility(&self, tag: u64, timeout: Duration) -> bool {
        let now = Instant::now();
        let mut st = self.state.lock();
        if !st.leased.contains_key(&tag) {
            return false;
        }
        if timeout.is_zero() {
            let Some(l) = unlease(&mut st, tag) else {
                return false;
            };
            if l.entry.stored {
                let mut ops = Ops::new();
                ops.push(Op::Put(
                    Space::Index,
                    keys::entry_key(self.uid, l.entry.seq),
                    record_of(&l.entry, None, None).encode(),
                ));
                self.commit(&mut ops);
            }
            insert_ready(&mut st, l.entry);
            let wake = self.take_waiting_consumer(&mut st);
            drop(st);
            if let Some(w) = wake {
                w.wake();
            }
            return true;
        }
        let deadline = now + timeout;
        let old = st.leased.get(&tag).and_then(|l| l.deadline);
        if let Some(old) = old {
            st.lease_deadlines.remove(&(old, tag));
        }
        st.lease_deadlines.insert((deadline, tag));
        if let Some(l) = st.leased.get_mut(&tag) {
            l.deadline = Some(deadline);
        }
        if let Some(l) = st.leased.get(&tag)
            && l.entry.stored
        {
            let mut ops = Ops::new();
            ops.push(Op::Put(
                Space::Index,
                keys::entry_key(self.uid, l.entry.seq),
                record_of(&l.entry, None, Some((tag, deadline))).encode(),
            ));
            self.commit(&mut ops);
        }
        let schedule = st.timer_at.is_none_or(|at| deadline < at);
        if schedule {
            st.timer_at = Some(deadline);
        }
        drop(st);
        if schedule {
            self.env.scheduler.schedule(deadline, self.me.clone());
        }
        true
    }

    /// The settings clients may change.
    pub fn settings(&self) -> LiveSettings {
        self.state.lock().live.clone()
    }

    /// Changes settings (SQS SetQueueAttributes); they apply to later sends and
    /// receives.
    pub fn update_settings(&self, f: impl FnOnce(&mut LiveSettings)) {
        f(&mut self.state.lock().live);
    }

    /// Messages waiting out their delay.
    pub fn delayed_len(&self) -> usize {
        self.state.lock().delayed.len()
    }

    /// Deletes every message, in flight and delayed included (SQS PurgeQueue).
    /// Returns how many.
    pub fn purge_all(&self) -> usize {
        let mut st = self.state.lock();
        let n = st.ready_count + st.delayed.len() + st.leased.len();
        let bytes = resident_bytes(&st);
        self.forget_all(false);
        st.levels.iter_mut().for_each(VecDeque::clear);
        st.ready_count = 0;
        st.ready_bytes = 0;
        st.ready_body_bytes = 0;
        st.ready_best_effort = 0;
        st.delayed.clear();
        st.delayed_bytes = 0;
        st.leased.clear();
        st.lease_deadlines.clear();
        if let Some(f) = st.fifo.as_mut() {
            f.locked_groups.clear();
        }
        drop(st);
        self.env.memory.sub(bytes);
        n
    }

    /// With FIFO, when acking or returning a message unlocks its group while
    /// the group has ready messages, a waiting consumer should look again.
    fn wake_for_unlocked(&self, st: &mut State, l: Option<&Leased>) -> Option<Arc<Wakeup>> {
        let g = l?.entry.group().filter(|_| self.options.fifo)?;
        if group_locked(st, g) || st.ready_count == 0 {
            return None;
        }
        self.take_waiting_consumer(st)
    }

    /// Removes every ready message; returns how many.
    pub fn purge(&self) -> usize {
        let mut st = self.state.lock();
        let n = st.ready_count;
        let bytes: usize = st.levels.iter().flatten().map(Entry::resident).sum();
        if self.store.is_some() {
            let mut ops = Ops::new();
            for e in st.levels.iter().flatten() {
                self.forget(e, &mut ops);
            }
            self.commit(&mut ops);
        }
        st.levels.iter_mut().for_each(VecDeque::clear);
        st.ready_count = 0;
        st.ready_bytes = 0;
        st.ready_body_bytes = 0;
        st.ready_best_effort = 0;
        drop(st);
        self.env.memory.sub(bytes);
        n
    }

    /// Marks the queue deleted and drops everything in it; further publishes are
    /// dropped. Returns the consumers' wake-ups so owners can notice.
    pub fn delete(&self) -> Vec<Arc<Wakeup>> {
        let mut st = self.state.lock();
        st.deleted = true;
        self.forget_all(true);
        let bytes = resident_bytes(&st);
        st.levels.iter_mut().for_each(VecDeque::clear);
        st.leased.clear();
        st.lease_deadlines.clear();
        st.delayed.clear();
        st.delayed_bytes = 0;
        if let Some(f) = st.fifo.as_mut() {
            f.locked_groups.clear();
        }
        st.ready_count = 0;
        st.ready_bytes = 0;
        st.ready_body_bytes = 0;
        st.ready_best_effort = 0;
        let wakes = st.consumers.drain(..).map(|c| c.wakeup).collect();
        drop(st);
        self.env.memory.sub(bytes);
        wakes
    }

    /// Whether [`Queue::delete`] was called.
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Ready (not leased) messages.
    pub fn ready_len(&self) -> usize {
        self.state.lock().ready_count
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

    /// Copies of up to `max` ready messages in the order they would be
    /// delivered, for an administrator to look at. Nothing changes: no lease,
    /// no receive counted, no visibility or idle timer touched, and a
    /// paged-out body is read from the store without being brought back.
    /// Messages past their TTL or retention are skipped, as a receive would.
    pub fn peek(&self, max: usize) -> Vec<Peeked> {
        let now = Instant::now();
        let mut found: Vec<(Option<SharedMessage>, u32, u64)> = Vec::new();
        {
            let st = self.state.lock();
            for e in st.levels.iter().rev().flatten() {
                if found.len() >= max {
                    break;
                }
                if e.is_expired(now) || e.is_past_retention(now) {
                    continue;
                }
                found.push((e.msg.clone(), e.deliveries, e.seq));
            }
        }
        found
            .into_iter()
            .filter_map(|(msg, receive_count, seq)| {
                let msg = match msg {
                    Some(m) => m,
                    None => self.load(seq)?,
                };
                Some(Peeked {
                    msg,
                    receive_count,
                    seq,
                })
            })
            .collect()
    }

    /// Sizes and counters at one moment.
    pub fn counts(&self) -> QueueCounts {
        let st = self.state.lock();
        QueueCounts {
            ready: st.ready_count,
            delayed: st.delayed.len(),
            leased: st.leased.len(),
            consumers: st.consumers.len(),
            stats: st.stats,
        }
    }

    /// Runs due deadlines: makes delayed messages visible, returns messages whose
    /// visibility timeout passed, expires messages at the head (dead-lettering
    /// them), deletes messages past retention, deletes the queue when it has been
    /// unused for `x-expires`, and asks the scheduler for the next deadline.
    pub fn on_timer(&self, now: Instant) {
        let mut dead = Dead::new();
        let mut freed = 0usize;
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        let mut became_ready = false;
        let mut ops = Ops::new();
        while let Some((&(at, seq), _)) = st.delayed.first_key_value() {
            if at > now {
                break;
            }
            let Some(e) = st.delayed.remove(&(at, seq)) else {
                break;
            };
            st.delayed_bytes -= e.size();
            if e.is_past_retention(now) {
                freed += e.resident();
                self.forget(&e, &mut ops);
            } else {
                insert_ready(&mut st, e);
                became_ready = true;
            }
        }
        while let Some(&(at, tag)) = st.lease_deadlines.first() {
            if at > now {
                break;
            }
            if st.leased.get(&tag).is_some_and(|l| l.deadline == Some(at)) {
                if let Some(l) = unlease(&mut st, tag) {
                    // An expired lease is an unsuccessful delivery: past the
                    // delivery limit it is dead-lettered instead of returned.
                    if self.over_delivery_limit(&l.entry) {
                        freed += l.entry.resident();
                        dead.push((l.entry, DeathReason::DeliveryLimit));
                    } else {
                        insert_ready(&mut st, l.entry);
                        became_ready = true;
                    }
                }
            } else {
                st.lease_deadlines.pop_first();
            }
        }
        for level in (0..st.levels.len()).rev() {
            while let Some(front) = st.levels[level].front() {
                if front.is_past_retention(now) {
                    if let Some(e) = pop_level(&mut st, level) {
                        freed += e.resident();
                        self.forget(&e, &mut ops);
                    }
                } else if front.is_expired(now) {
                    if let Some(e) = pop_level(&mut st, level) {
                        st.stats.expired += 1;
                        freed += e.resident();
                        dead.push((e, DeathReason::Expired));
                    }
                } else {
                    break;
                }
            }
        }
        let idle_deadline = self
            .options
            .expires
            .filter(|_| st.consumers.is_empty())
            .map(|d| st.last_used + d);
        let idle = idle_deadline.is_some_and(|t| t <= now);
        let heads = st
            .levels
            .iter()
            .filter_map(|l| l.front())
            .flat_map(|e| [e.expires_at, e.drop_at])
            .flatten()
            .min();
        let next = [
            heads,
            idle_deadline.filter(|_| !idle),
            st.delayed.first_key_value().map(|(k, _)| k.0),
            st.lease_deadlines.first().map(|k| k.0),
        ]
        .into_iter()
        .flatten()
        .min();
        st.timer_at = next;
        self.commit(&mut ops);
        let wakes: SmallVec<[Arc<Wakeup>; 4]> = if became_ready {
            let sac = self.options.single_active_consumer;
            st.consumers
                .iter_mut()
                .take(if sac { 1 } else { usize::MAX })
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
        if let Some(t) = next {
            self.env.scheduler.schedule(t, self.me.clone());
        }
        self.env.memory.sub(freed);
        self.dispatch_dead(dead, false);
        if idle && let Some(vhost) = self.vhost.get().and_then(Weak::upgrade) {
            tracing::debug!(queue = %self.name, "queue unused for x-expires; deleting");
            vhost.delete_queue(&self.name);
        }
    }

    /// Republishes dead entries to the dead-letter exchange, if there is one.
    /// `counted` says whether their bytes still count in the memory gauge
    /// (leased entries do; entries already freed by the caller do not).
    fn dispatch_dead(&self, dead: Dead, counted: bool) {
        if dead.is_empty() {
            return;
        }
        if counted {
            let bytes: usize = dead.iter().map(|(e, _)| e.resident()).sum();
            self.env.memory.sub(bytes);
        }
        // Stored entries are forgotten only after their dead letter was
        // published, so a crash in between keeps the message rather than
        // losing it.
        let mut ops = Ops::new();
        for (entry, _) in &dead {
            self.forget(entry, &mut ops);
        }
        let Some(vhost) = self.vhost.get().and_then(Weak::upgrade) else {
            self.commit(&mut ops);
            return;
        };
        let redrive = self.state.lock().live.redrive.clone();
        let mut moved = 0u64;
        for (entry, reason) in dead {
            let msg = match &entry.msg {
                Some(m) => m.clone(),
                None => match self.load(entry.seq) {
                    Some(m) => m,
                    // Unreadable (logged): it cannot be dead-lettered.
                    None => continue,
                },
            };
            if reason == DeathReason::MaxReceives {
                // SQS redrive: the same message (id, attributes, timestamps)
                // moves to the dead-letter queue.
                if let Some(r) = &redrive {
                    let moved_msg = with_dead_letter_source(&msg, &self.name);
                    vhost.publish_dead_letter("", &moved_msg, &self.name, Some(&r.target));
                    moved += 1;
                }
                continue;
            }
            let Some(target) = &self.options.dead_letter else {
                continue;
            };
            moved += 1;
            let copy = dead_lettered(&msg, &self.name, reason, target);
            vhost.publish_dead_letter(&target.exchange, &copy, &self.name, None);
        }
        self.state.lock().stats.dead_lettered += moved;
        self.commit(&mut ops);
    }

    /// Whether this queue may page message bodies out to the store: it keeps
    /// them there, and is not FIFO (whose decisions need the group id).
    fn pageable(&self) -> bool {
        self.store.is_some() && !self.options.fifo
    }

    /// Reads the message of entry `seq` back from the store; `None` (logged)
    /// when it is missing or does not decode.
    fn load(&self, seq: u64) -> Option<SharedMessage> {
        let store = self.store.as_ref()?;
        match store.get(Space::Body, &keys::entry_key(self.uid, seq)) {
            Ok(Some(b)) => match decode_message(&b) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    tracing::warn!(queue = %self.name, seq, error = %e, "a stored message does not decode; dropped");
                    None
                }
            },
            Ok(None) => {
                tracing::warn!(queue = %self.name, seq, "a stored message is missing; dropped");
                None
            }
            Err(e) => {
                tracing::error!(queue = %self.name, seq, error = %e, "cannot read a stored message");
                None
            }
        }
    }

    /// The sequence number the next message will get (entries below it were
    /// submitted to the store already).
    pub fn next_seq(&self) -> u64 {
        self.state.lock().next_seq
    }

    /// Pages out the bodies of stored ready messages, newest first, keeping
    /// the first `keep` ready messages in memory, touching only entries
    /// numbered below `below` (whose writes are known durable), until about
    /// `budget` bytes are freed. Returns the bytes freed.
    pub fn page_out(&self, keep: usize, below: u64, budget: usize) -> usize {
        if !self.pageable() || budget == 0 {
            return 0;
        }
        let mut freed = 0usize;
        {
            let mut st = self.state.lock();
            let mut remaining = st.ready_count.saturating_sub(keep);
            // Lowest priority level first, newest first within a level: the
            // messages delivered last.
            'levels: for level in st.levels.iter_mut() {
                for e in level.iter_mut().rev() {
                    if remaining == 0 || freed >= budget {
                        break 'levels;
                    }
                    remaining -= 1;
                    if e.stored && e.seq < below && e.msg.is_some() {
                        e.msg = None;
                        freed += e.size();
                    }
                }
            }
        }
        self.env.memory.sub(freed);
        freed
    }

    /// Reads back the paged-out bodies among the first `window` ready
    /// messages, so consumers find them in memory. Returns the bytes loaded.
    pub fn page_in(&self, window: usize) -> usize {
        if !self.pageable() {
            return 0;
        }
        let wanted: Vec<u64> = {
            let st = self.state.lock();
            st.levels
                .iter()
                .rev()
                .flatten()
                .take(window)
                .filter(|e| e.msg.is_none())
                .map(|e| e.seq)
                .collect()
        };
        if wanted.is_empty() {
            return 0;
        }
        let loaded: Vec<(u64, SharedMessage)> = wanted
            .into_iter()
            .filter_map(|seq| self.load(seq).map(|m| (seq, m)))
            .collect();
        let mut added = 0usize;
        {
            let mut st = self.state.lock();
            for (seq, m) in loaded {
                // Still ready and still paged out? (It may have been taken.)
                for level in st.levels.iter_mut() {
                    if let Ok(i) = level.binary_search_by_key(&seq, |e| e.seq) {
                        if level[i].msg.is_none() {
                            level[i].msg = Some(m);
                            added += level[i].size();
                        }
                        break;
                    }
                }
            }
        }
        self.env.memory.add(added);
        added
    }

    /// Whether any ready message of the first `window` is paged out.
    pub fn wants_page_in(&self, window: usize) -> bool {
        self.pageable()
            && self
                .state
                .lock()
                .levels
                .iter()
                .rev()
                .flatten()
                .take(window)
                .any(|e| e.msg.is_none())
    }

    /// Bytes of ready messages (logical size, resident or not).
    pub fn ready_bytes(&self) -> usize {
        self.state.lock().ready_bytes
    }

    /// Stores the queue's counter reservations (nothing for a queue that
    /// keeps nothing).
    fn reserve_counters(&self, st: &State, ops: &mut Ops) {
        if self.store.is_some() {
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&st.reserved_seq.to_be_bytes());
            v[8..].copy_from_slice(&st.reserved_tag.to_be_bytes());
            ops.push(Op::Put(
                Space::Meta,
                keys::meta_key(keys::COUNTERS, &[&self.uid.to_be_bytes()]),
                bytes::Bytes::copy_from_slice(&v),
            ));
        }
    }

    /// Adds the removal of `e`'s stored record to `ops` (nothing if it has none).
    fn forget(&self, e: &Entry, ops: &mut Ops) {
        if e.stored {
            let key = keys::entry_key(self.uid, e.seq);
            ops.push(Op::Remove(Space::Index, key.clone()));
            ops.push(Op::Remove(Space::Body, key));
        }
    }

    /// Removes every stored entry (and, when the queue goes, its
    /// deduplication records).
    fn forget_all(&self, with_dedup: bool) {
        let Some(store) = &self.store else {
            return;
        };
        let mut ops = Ops::new();
        let prefix = keys::queue_prefix(self.uid);
        ops.push(Op::RemovePrefix(Space::Index, prefix.clone()));
        ops.push(Op::RemovePrefix(Space::Body, prefix));
        if with_dedup {
            ops.push(Op::RemovePrefix(
                Space::Meta,
                keys::meta_key(keys::DEDUP, &[&self.uid.to_be_bytes()]),
            ));
            ops.push(Op::Remove(
                Space::Meta,
                keys::meta_key(keys::COUNTERS, &[&self.uid.to_be_bytes()]),
            ));
        }
        store.submit(ops);
    }

    /// Hands `ops` to the store (called with the state lock held, so one
    /// queue's writes reach the store in the order they happened).
    fn commit(&self, ops: &mut Ops) {
        if ops.is_empty() {
            return;
        }
        if let Some(store) = &self.store {
            store.submit(std::mem::take(ops));
        } else {
            ops.clear();
        }
    }

    /// The store key of a deduplication record.
    fn dedup_store_key(&self, key: &(Option<ByteStr>, ByteStr)) -> Key {
        let scope = key.0.as_ref().map_or(&b""[..], |s| s.as_bytes().as_ref());
        keys::meta_key(
            keys::DEDUP,
            &[&self.uid.to_be_bytes(), scope, key.1.as_bytes()],
        )
    }

    /// Forgets deduplication ids older than the window.
    fn forget_old_dedup(&self, st: &mut State, now: Instant, ops: &mut Ops) {
        let Some(fifo) = st.fifo.as_mut() else {
            return;
        };
        while fifo.dedup_order.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, key)) = fifo.dedup_order.pop_front() {
                fifo.dedup.remove(&key);
                if self.store.is_some() {
                    ops.push(Op::Remove(Space::Meta, self.dedup_store_key(&key)));
                }
            }
        }
    }

    /// Puts entries read back from the store in place: in flight (an SQS
    /// receive whose visibility has not run out), delayed, or ready.
    fn restore(&self, kept: RecoveredQueue) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let levels = st.levels.len();
        let mut bytes = 0usize;
        for r in kept.entries {
            let rec = r.record;
            let at = |ms: u64| (ms != 0).then(|| ms_to_instant(ms));
            let msg = match r.msg {
                Some(m) => Some(m),
                // FIFO queues keep their messages in memory (the group is
                // inside); others page them in as consumers come.
                None if !self.pageable() => match self.load(r.seq) {
                    Some(m) => Some(m),
                    None => {
                        let mut ops = Ops::new();
                        let key = keys::entry_key(self.uid, r.seq);
                        ops.push(Op::Remove(Space::Index, key.clone()));
                        ops.push(Op::Remove(Space::Body, key));
                        self.commit(&mut ops);
                        continue;
                    }
                },
                None => None,
            };
            let entry = Entry {
                msg,
                msg_id: rec.msg_id,
                size: rec.size,
                body_len: rec.body_len,
                seq: r.seq,
                hints: DeliveryHints {
                    qos: rec.qos,
                    retain_as_published: rec.retain_as_published,
                    sub_ids: rec.sub_ids.clone(),
                },
                deliveries: rec.deliveries,
                first_delivery_ms: rec.first_delivery_ms,
                expires_at: at(rec.expires_at_ms),
                drop_at: at(rec.drop_at_ms),
                level: rec.level.min(u8::try_from(levels - 1).unwrap_or(u8::MAX)),
                stored: true,
                recovered: true,
            };
            bytes += entry.resident();
            st.next_seq = st.next_seq.max(r.seq + 1);
            let lease_deadline = at(rec.lease_deadline_ms).filter(|d| *d > now);
            let visible_at = at(rec.visible_at_ms).filter(|t| *t > now);
            if rec.lease_tag != 0
                && let Some(deadline) = lease_deadline
            {
                let tag = rec.lease_tag;
                st.next_tag = st.next_tag.max(tag);
                if let Some(g) = entry.group().filter(|_| self.options.fifo) {
                    *fifo_mut(&mut st)
                        .locked_groups
                        .entry(g.clone())
                        .or_insert(0) += 1;
                }
                st.lease_deadlines.insert((deadline, tag));
                st.leased.insert(
                    tag,
                    Leased {
                        entry,
                        owner: 0,
                        deadline: Some(deadline),
                    },
                );
            } else if let Some(t) = visible_at {
                st.delayed_bytes += entry.size();
                st.delayed.insert((t, entry.seq), entry);
            } else {
                push_ready(&mut st, entry);
            }
        }
        if let Some((seq, tag)) = kept.counters {
            st.next_seq = st.next_seq.max(seq);
            st.next_tag = st.next_tag.max(tag);
        }
        st.reserved_seq = st.next_seq;
        st.reserved_tag = st.next_tag;
        let mut dedup: Vec<RecoveredDedup> = kept.dedup;
        dedup.sort_by_key(|d| d.until_ms);
        for d in dedup {
            let until = ms_to_instant(d.until_ms);
            if until <= now {
                continue;
            }
            let key = (d.scope, d.id);
            let fifo = fifo_mut(&mut st);
            fifo.dedup.insert(
                key.clone(),
                Deduped {
                    message_id: d.message_id,
                    seq: d.seq,
                },
            );
            fifo.dedup_order.push_back((until, key));
        }
        drop(st);
        self.env.memory.add(bytes);
        // Let the timer sort out delays, leases, expiry and retention.
        self.env.scheduler.schedule(now, self.me.clone());
    }

    /// Picks the next waiting consumer round-robin (only the active one with
    /// single-active-consumer) and clears its waiting flag.
    fn take_waiting_consumer(&self, st: &mut State) -> Option<Arc<Wakeup>> {
        if self.options.single_active_consumer {
            let first = st.consumers.first_mut()?;
            if first.waiting {
                first.waiting = false;
                return Some(first.wakeup.clone());
            }
            return None;
        }
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
}

/// A copy of an entry for dead-lettering a message that never entered the queue.
fn entry_copy(e: &Entry) -> Entry {
    Entry {
        msg: e.msg.clone(),
        msg_id: e.msg_id,
        size: e.size,
        body_len: e.body_len,
        seq: e.seq,
        hints: e.hints.clone(),
        deliveries: e.deliveries,
        first_delivery_ms: e.first_delivery_ms,
        expires_at: e.expires_at,
        drop_at: e.drop_at,
        level: e.level,
        stored: false,
        recovered: e.recovered,
    }
}

/// The message as moved by a redrive policy: the same id, body and attributes,
/// remembering which queue it came from (SQS DeadLetterQueueSourceArn).
fn with_dead_letter_source(msg: &SharedMessage, queue: &ByteStr) -> SharedMessage {
    let mut moved = (**msg).clone();
    let mut props = moved.props.take().map(|p| *p).unwrap_or_default();
    props.dead_letter_source = Some(queue.clone());
    moved.props = Some(Box::new(props));
    Arc::new(moved)
}

/// Removes a lease, with its deadline and FIFO group lock.
fn unlease(st: &mut State, tag: u64) -> Option<Leased> {
    let l = st.leased.remove(&tag)?;
    if let Some(d) = l.deadline {
        st.lease_deadlines.remove(&(d, tag));
    }
    if let Some(g) = l.entry.group()
        && let Some(fifo) = st.fifo.as_mut()
        && let Some(n) = fifo.locked_groups.get_mut(g)
    {
        *n -= 1;
        if *n == 0 {
            fifo.locked_groups.remove(g);
        }
    }
    Some(l)
}

/// The deduplication key of a FIFO send: the explicit id, else the SHA-256
/// of the body when content-based deduplication is on; scoped per group when
/// configured.
fn dedup_key(
    st: &State,
    msg: &SharedMessage,
    send: &SendOptions,
) -> Option<(Option<ByteStr>, ByteStr)> {
    let id = match (&send.dedup_id, msg.dedup_id()) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) if st.live.content_based_dedup => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&msg.payload);
            ByteStr::from(
                digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            )
        }
        (None, None) => return None,
    };
    let scope = if st.live.dedup_per_group {
        msg.group_id().cloned()
    } else {
        None
    };
    Some((scope, id))
}

/// Bytes every entry of a queue holds in memory.
fn resident_bytes(st: &State) -> usize {
    st.levels
        .iter()
        .flatten()
        .map(Entry::resident)
        .sum::<usize>()
        + st.leased
            .values()
            .map(|l| l.entry.resident())
            .sum::<usize>()
        + st.delayed.values().map(Entry::resident).sum::<usize>()
}

/// The stored form of a deduplication record.
fn encode_dedup(message_id: u64, seq: u64, until_ms: u64) -> bytes::Bytes {
    let mut w = Writer::with_capacity(24);
    w.u8(1);
    w.uvar(message_id);
    w.uvar(seq);
    w.uvar(until_ms);
    w.finish()
}

/// Reads a deduplication record: `(message id, seq, until ms)`.
pub fn decode_dedup(b: &bytes::Bytes) -> Option<(u64, u64, u64)> {
    let mut r = Reader::new(b);
    if r.u8().ok()? != 1 {
        return None;
    }
    Some((r.uvar().ok()?, r.uvar().ok()?, r.uvar().ok()?))
}

/// What the store keeps about an entry: its visibility (delay) and, for an
/// SQS receive, its lease.
fn record_of(e: &Entry, visible_at: Option<Instant>, lease: Option<(u64, Instant)>) -> EntryRecord {
    let ms = |t: Option<Instant>| t.map_or(0, |t| instant_to_ms(t).max(1));
    EntryRecord {
        msg_id: e.msg_id,
        size: e.size,
        body_len: e.body_len,
        level: e.level,
        qos: e.hints.qos,
        retain_as_published: e.hints.retain_as_published,
        sub_ids: e.hints.sub_ids.clone(),
        deliveries: e.deliveries,
        first_delivery_ms: e.first_delivery_ms,
        expires_at_ms: ms(e.expires_at),
        drop_at_ms: ms(e.drop_at),
        visible_at_ms: ms(visible_at),
        lease_tag: lease.map_or(0, |(t, _)| t),
        lease_deadline_ms: ms(lease.map(|(_, d)| d)),
    }
}

/// The entry `skip` places behind the next one to deliver.
fn peek_ready_at(st: &State, skip: usize) -> Option<&Entry> {
    let mut remaining = skip;
    for level in st.levels.iter().rev() {
        if remaining < level.len() {
            return level.get(remaining);
        }
        remaining -= level.len();
    }
    None
}

/// Removes the entry `skip` places behind the next one to deliver.
fn take_ready_at(st: &mut State, skip: usize) -> Option<Entry> {
    if skip == 0 {
        return pop_ready(st);
    }
    let mut remaining = skip;
    for level in (0..st.levels.len()).rev() {
        let n = st.levels[level].len();
        if remaining < n {
            let e = st.levels[level].remove(remaining)?;
            st.ready_count -= 1;
            st.ready_bytes -= e.size();
            st.ready_body_bytes -= e.body_len();
            if e.hints.qos == 0 {
                st.ready_best_effort -= 1;
            }
            return Some(e);
        }
        remaining -= n;
    }
    None
}

fn pop_level(st: &mut State, level: usize) -> Option<Entry> {
    let e = st.levels[level].pop_front()?;
    st.ready_count -= 1;
    st.ready_bytes -= e.size();
    st.ready_body_bytes -= e.body_len();
    if e.hints.qos == 0 {
        st.ready_best_effort -= 1;
    }
    Some(e)
}

/// The next message to deliver: the oldest of the highest priority.
fn pop_ready(st: &mut State) -> Option<Entry> {
    let level = st.levels.iter().rposition(|l| !l.is_empty())?;
    pop_level(st, level)
}

/// The message to drop when full: the oldest of the lowest priority.
fn pop_oldest(st: &mut State) -> Option<Entry> {
    let level = st.levels.iter().position(|l| !l.is_empty())?;
    pop_level(st, level)
}

fn push_ready(st: &mut State, e: Entry) {
    st.ready_count += 1;
    st.ready_bytes += e.size();
    st.ready_body_bytes += e.body_len();
    if e.hints.qos == 0 {
        st.ready_best_effort += 1;
    }
    let level = usize::from(e.level).min(st.levels.len() - 1);
    st.levels[level].push_back(e);
}

/// Inserts a returning entry at its place by sequence number (usually the front).
fn insert_ready(st: &mut State, e: Entry) {
    st.ready_count += 1;
    st.ready_bytes += e.size();
    st.ready_body_bytes += e.body_len();
    if e.hints.qos == 0 {
        st.ready_best_effort += 1;
    }
    let level = usize::from(e.level).min(st.levels.len() - 1);
    let q = &mut st.levels[level];
    match q.front() {
        None => q.push_back(e),
        Some(f) if f.seq > e.seq => q.push_front(e),
        Some(_) => {
            let at = q.partition_point(|x| x.seq < e.seq);
            q.insert(at, e);
        }
    }
}

#[cfg(test)]
mod peek_tests {
    use super::*;
    use crate::core::message::{KeyForm, Message};

    fn message(id: u64) -> SharedMessage {
        Arc::new(Message {
            id,
            routing_key: ByteStr::from_static("q"),
            key_form: KeyForm::Amqp,
            exchange: ByteStr::from_static(""),
            payload: bytes::Bytes::from(format!("m{id}")),
            qos: 1,
            retain: false,
            persistent: false,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        })
    }

    #[test]
    fn peek_copies_ready_messages_without_leasing_or_counting() {
        let q = Queue::new(
            "q".into(),
            QueueOptions::default(),
            &QueueEnv::new(usize::MAX),
        );
        for id in 1..=3 {
            q.enqueue(&message(id), DeliveryHints::default());
        }
        let seen: Vec<u64> = q.peek(2).iter().map(|p| p.msg.id).collect();
        assert_eq!(seen, [1, 2]);
        assert!(q.peek(10).iter().all(|p| p.receive_count == 0));
        assert_eq!((q.ready_len(), q.leased_len()), (3, 0));
        assert_eq!(q.stats().delivered, 0);
        let mut out = Vec::new();
        let limits = PullLimits {
            max: 1,
            max_leased: 1,
        };
        q.pull(
            0,
            limits,
            PullMode::Receive {
                visibility: Duration::ZERO,
            },
            &mut out,
        );
        assert_eq!(out[0].delivery_count, 1, "the peeks counted no receive");
        assert!(q.change_visibility(out[0].tag.unwrap_or_default(), Duration::ZERO));
        let again = q.peek(1);
        assert_eq!((again[0].msg.id, again[0].receive_count), (1, 1));
    }
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
            exchange: ByteStr::from_static(""),
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

    pub(super) fn hints(qos: u8) -> DeliveryHints {
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
            &QueueEnv::new(usize::MAX),
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
            &QueueEnv::new(usize::MAX),
        );
        assert_eq!(
            q.enqueue(&msg(1, 0), hints(0)),
            EnqueueOutcome::Dropped(DropReason::NoConsumer)
        );
        assert_eq!(q.enqueue(&msg(2, 1), hints(1)), EnqueueOutcome::Queued);
    }

    #[test]
    fn memory_gauge_tracks_queued_bytes() {
        let env = QueueEnv::new(usize::MAX);
        let gauge = env.memory.clone();
        let q = Queue::new(ByteStr::from("q"), QueueOptions::default(), &env);
        q.enqueue(&msg(1, 1), hints(1));
        assert!(gauge.used() > 0);
        let got = pull_all(&q, PullMode::Lease { owner: 1 });
        assert!(gauge.used() > 0);
        q.ack(got[0].tag.unwrap());
        assert_eq!(gauge.used(), 0);
    }
    fn sqs_queue(settings: LiveSettings, fifo: bool) -> Arc<Queue> {
        Queue::new(
            ByteStr::from("sqs"),
            QueueOptions {
                settings,
                fifo,
                ..Default::default()
            },
            &QueueEnv::new(usize::MAX),
        )
    }

    fn grouped(n: u64, group: &str) -> SharedMessage {
        let mut m = (*msg(n, 1)).clone();
        m.props = Some(Box::new(crate::core::props::MessageProperties::from_sqs(
            Vec::new(),
            Some(group.into()),
            None,
        )));
        Arc::new(m)
    }

    pub(super) fn receive(q: &Queue, max: usize, visibility: Duration) -> Vec<Delivery> {
        let mut out = Vec::new();
        q.pull(
            0,
            PullLimits {
                max,
                max_leased: max,
            },
            PullMode::Receive { visibility },
            &mut out,
        );
        out
    }

    #[test]
    fn visibility_timeout_returns_an_undeleted_message() {
        let q = sqs_queue(LiveSettings::default(), false);
        q.send(&msg(1, 1), &SendOptions::default());
        let first = receive(&q, 10, Duration::from_secs(1));
        assert_eq!(ids(&first), [1]);
        assert!(
            receive(&q, 10, Duration::from_secs(1)).is_empty(),
            "invisible while leased"
        );
        q.on_timer(Instant::now() + Duration::from_secs(2));
        let again = receive(&q, 10, Duration::from_secs(1));
        assert_eq!(ids(&again), [1]);
        assert_eq!(again[0].delivery_count, 2);
        assert_ne!(
            again[0].tag, first[0].tag,
            "each receive has a fresh receipt"
        );
        assert!(
            !q.ack(first[0].tag.unwrap()),
            "an old receipt no longer deletes"
        );
        assert!(q.ack(again[0].tag.unwrap()));
    }

    #[test]
    fn change_visibility_to_zero_returns_the_message_now() {
        let q = sqs_queue(LiveSettings::default(), false);
        q.send(&msg(1, 1), &SendOptions::default());
        let got = receive(&q, 1, Duration::from_secs(30));
        assert!(q.change_visibility(got[0].tag.unwrap(), Duration::ZERO));
        assert_eq!(ids(&receive(&q, 1, Duration::from_secs(30))), [1]);
        assert!(!q.change_visibility(got[0].tag.unwrap(), Duration::from_secs(5)));
    }

    #[test]
    fn delayed_message_is_invisible_until_its_delay_passes() {
        let q = sqs_queue(LiveSettings::default(), false);
        let send = SendOptions {
            delay: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        q.send(&msg(1, 1), &send);
        assert_eq!(q.delayed_len(), 1);
        assert!(receive(&q, 1, Duration::from_secs(1)).is_empty());
        q.on_timer(Instant::now() + Duration::from_secs(6));
        assert_eq!(ids(&receive(&q, 1, Duration::from_secs(1))), [1]);
    }

    #[test]
    fn fifo_group_is_locked_while_one_of_its_messages_is_in_flight() {
        let q = sqs_queue(LiveSettings::default(), true);
        for (n, g) in [(1, "a"), (2, "a"), (3, "b")] {
            q.send(&grouped(n, g), &SendOptions::default());
        }
        let a1 = receive(&q, 1, Duration::from_secs(30));
        assert_eq!(ids(&a1), [1]);
        assert_eq!(
            ids(&receive(&q, 10, Duration::from_secs(30))),
            [3],
            "group a is locked"
        );
        assert!(q.ack(a1[0].tag.unwrap()));
        assert_eq!(ids(&receive(&q, 10, Duration::from_secs(30))), [2]);
    }

    #[test]
    fn fifo_receive_takes_consecutive_messages_of_one_group_in_order() {
        let q = sqs_queue(LiveSettings::default(), true);
        for n in 1..=3 {
            q.send(&grouped(n, "g"), &SendOptions::default());
        }
        let got = receive(&q, 10, Duration::from_secs(30));
        assert_eq!(ids(&got), [1, 2, 3]);
        let seqs: Vec<u64> = got.iter().map(|d| d.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn fifo_deduplicates_within_the_window() {
        let settings = LiveSettings {
            dedup_window: Duration::from_millis(50),
            ..Default::default()
        };
        let q = sqs_queue(settings, true);
        let send = SendOptions {
            dedup_id: Some("order-1".into()),
            ..Default::default()
        };
        let first = q.send(&grouped(1, "g"), &send);
        let Sent::Queued { seq } = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            q.send(&grouped(2, "g"), &send),
            Sent::Duplicate { message_id: 1, seq }
        );
        assert_eq!(q.ready_len(), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(
            q.send(&grouped(3, "g"), &send),
            Sent::Queued { .. }
        ));
    }

    #[test]
    fn content_based_deduplication_compares_bodies() {
        let settings = LiveSettings {
            content_based_dedup: true,
            dedup_window: Duration::from_secs(300),
            ..Default::default()
        };
        let q = sqs_queue(settings, true);
        let a = grouped(1, "g");
        let mut same_body = (*grouped(2, "g")).clone();
        same_body.payload = a.payload.clone();
        q.send(&a, &SendOptions::default());
        assert!(matches!(
            q.send(&Arc::new(same_body), &SendOptions::default()),
            Sent::Duplicate { .. }
        ));
        assert!(matches!(
            q.send(&grouped(3, "g"), &SendOptions::default()),
            Sent::Queued { .. }
        ));
    }

    #[test]
    fn retention_deletes_old_messages() {
        let settings = LiveSettings {
            retention: Some(Duration::from_millis(20)),
            ..Default::default()
        };
        let q = sqs_queue(settings, false);
        q.send(&msg(1, 1), &SendOptions::default());
        std::thread::sleep(Duration::from_millis(30));
        assert!(receive(&q, 10, Duration::from_secs(1)).is_empty());
        assert_eq!(q.ready_len(), 0);
    }
}

#[cfg(test)]
mod timer_tests {
    use super::tests::hints;
    use super::*;
    use crate::core::message::{KeyForm, Message};
    use bytes::Bytes;

    #[tokio::test]
    async fn lease_returns_when_its_visibility_timeout_passes() {
        let q = Queue::new(
            ByteStr::from("v"),
            QueueOptions {
                settings: LiveSettings {
                    visibility_timeout: Some(Duration::from_millis(100)),
                    ..Default::default()
                },
                ..Default::default()
            },
            &QueueEnv::new(usize::MAX),
        );
        let m = Arc::new(Message {
            id: 1,
            routing_key: "v".into(),
            key_form: KeyForm::Amqp,
            exchange: ByteStr::from_static(""),
            payload: Bytes::from_static(b"x"),
            qos: 1,
            retain: false,
            persistent: false,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        });
        q.enqueue(&m, hints(1));
        let mut out = Vec::new();
        q.pull(
            0,
            PullLimits {
                max: 1,
                max_leased: 1,
            },
            PullMode::Lease { owner: 1 },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(q.ready_len(), 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            q.ready_len(),
            1,
            "lease expired and the message is ready again"
        );
    }
}

#[cfg(test)]
mod store_tests {
    use super::tests::{hints, receive};
    use super::*;
    use crate::config::StorageConfig;
    use crate::core::message::{KeyForm, Message};
    use bytes::Bytes;

    fn stored_env(dir: &std::path::Path) -> QueueEnv {
        let config = StorageConfig {
            path: dir.to_owned(),
            ..Default::default()
        };
        QueueEnv::with_store(usize::MAX, crate::store::open(&config).expect("open store"))
    }

    fn persistent(n: u64) -> SharedMessage {
        Arc::new(Message {
            id: n,
            routing_key: ByteStr::from("k"),
            key_form: KeyForm::Amqp,
            exchange: ByteStr::from_static(""),
            payload: Bytes::from(vec![b'x'; 1000 + (n % 7) as usize]),
            qos: 1,
            retain: false,
            persistent: true,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        })
    }

    fn durable() -> QueueOptions {
        QueueOptions {
            durable: true,
            ..Default::default()
        }
    }

    fn take_all(q: &Queue) -> Vec<Delivery> {
        let mut out = Vec::new();
        q.pull(
            0,
            PullLimits {
                max: usize::MAX,
                max_leased: usize::MAX,
            },
            PullMode::NoAck,
            &mut out,
        );
        out
    }

    #[test]
    fn paged_out_bodies_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let env = stored_env(dir.path());
        let q = Queue::new("q".into(), durable(), &env);
        for n in 1..=2000 {
            q.enqueue(&persistent(n), hints(1));
        }
        let before = env.memory.used();
        env.store.flush().unwrap();
        let freed = q.page_out(100, q.next_seq(), usize::MAX);
        assert!(freed > 1_800_000, "freed only {freed} bytes");
        assert_eq!(env.memory.used(), before - freed);
        // Some come back ahead of consumers, the rest on demand.
        assert!(q.wants_page_in(200));
        assert!(q.page_in(200) > 0);
        let got = take_all(&q);
        let ids: Vec<u64> = got.iter().map(|d| d.msg.id).collect();
        assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
        assert!(got.iter().all(|d| d.msg.payload.len() >= 1000));
        assert_eq!(env.memory.used(), 0, "the gauge must return to zero");
    }

    #[test]
    fn sequence_numbers_and_tags_are_not_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (uid, old_tag, old_seq);
        {
            let env = stored_env(dir.path());
            let q = Queue::new("q".into(), durable(), &env);
            uid = q.uid();
            q.enqueue(&persistent(1), hints(1));
            let out = receive(&q, 1, Duration::from_secs(60));
            old_tag = out[0].tag.unwrap();
            old_seq = out[0].seq;
            // Emptied: nothing of the queue's history is left in its entries.
            assert!(q.ack(old_tag));
            env.store.flush().unwrap();
        }
        let env = stored_env(dir.path());
        let rec = crate::store::recovery::load(&*env.store).unwrap();
        *env.recovered.lock() = rec.queues;
        let q = Queue::restored("q".into(), durable(), uid, &env);
        assert!(!q.ack(old_tag), "an old receipt must not name anything");
        q.enqueue(&persistent(2), hints(1));
        let out = receive(&q, 1, Duration::from_secs(60));
        assert!(out[0].seq > old_seq, "sequence numbers went backwards");
        assert!(out[0].tag.unwrap() > old_tag, "a lease tag was reused");
    }

    #[test]
    fn entries_come_back_after_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let uid;
        {
            let env = stored_env(dir.path());
            let q = Queue::new("q".into(), durable(), &env);
            uid = q.uid();
            for n in 1..=50 {
                q.enqueue(&persistent(n), hints(1));
            }
            // Lease and ack the first ten.
            let mut out = Vec::new();
            q.pull(
                1,
                PullLimits {
                    max: 10,
                    max_leased: 10,
                },
                PullMode::Lease { owner: 7 },
                &mut out,
            );
            for d in &out {
                assert!(q.ack(d.tag.unwrap()));
            }
            // Lease five more and leave them in flight.
            out.clear();
            q.pull(
                1,
                PullLimits {
                    max: 5,
                    max_leased: 5,
                },
                PullMode::Lease { owner: 7 },
                &mut out,
            );
            env.store.flush().unwrap();
        }
        let env = stored_env(dir.path());
        let rec = crate::store::recovery::load(&*env.store).unwrap();
        *env.recovered.lock() = rec.queues;
        let q = Queue::restored("q".into(), durable(), uid, &env);
        let got = take_all(&q);
        let ids: Vec<u64> = got.iter().map(|d| d.msg.id).collect();
        assert_eq!(ids, (11..=50).collect::<Vec<_>>());
        assert!(
            got.iter().all(|d| d.redelivered),
            "recovered messages may have been delivered"
        );
        assert!(got.iter().all(|d| d.msg.payload.len() >= 1000));
    }
}
