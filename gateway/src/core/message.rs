//! The message every front end publishes into the core and every consumer reads.
//!
//! A [`Message`] is immutable once published and shared (`Arc`) by every queue it
//! is routed to: fan-out to a thousand subscribers costs a thousand pointer
//! copies, not a thousand payload copies. Per-queue state (receive count, lease)
//! lives in the queue's entry, never here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::bytestr::ByteStr;

/// How the routing key is spelled: MQTT topics separate levels with `/`, AMQP
/// routing keys separate words with `.`. The two are related by swapping the
/// separators (see `tether_protocols::mapping`), which is lossless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// An MQTT topic name (`sensors/42/temp`).
    Mqtt,
    /// An AMQP routing key (`sensors.42.temp`, or any string for direct exchanges).
    Amqp,
}

/// Delivery guarantee requested by the publisher, in MQTT terms. AMQP and SQS
/// publishes are at-least-once ([`Qos::AtLeastOnce`]).
pub type Qos = u8;

/// One published message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Gateway-unique id, increasing in publish order.
    pub id: u64,
    /// The routing key or topic, spelled as [`Message::key_form`] says.
    pub routing_key: ByteStr,
    /// Which spelling `routing_key` uses.
    pub key_form: KeyForm,
    /// The exchange it was published to (`amq.topic` for MQTT, `""` for the
    /// default exchange); reported to AMQP consumers and in `x-death`.
    pub exchange: ByteStr,
    /// The body, shared with every queue and often with the packet it arrived in.
    pub payload: Bytes,
    /// QoS the publisher asked for (0, 1 or 2).
    pub qos: Qos,
    /// The MQTT RETAIN flag as published (for retain-as-published).
    pub retain: bool,
    /// Kept across restarts when it sits in a durable queue (AMQP delivery
    /// mode 2, MQTT QoS 1/2, every SQS message).
    pub persistent: bool,
    /// AMQP priority (0 when unset); honoured by queues with `x-max-priority`.
    pub priority: u8,
    /// Milliseconds since the Unix epoch when the gateway accepted the message.
    pub published_at_ms: u64,
    /// When the message stops being deliverable, if it expires.
    pub expires_at: Option<Instant>,
    /// Id of the publishing session or connection (for MQTT no-local).
    pub origin: u64,
    /// Properties beyond the bare minimum; `None` for the common plain message.
    pub props: Option<Box<MessageProperties>>,
}

pub use super::props::{AmqpProperties, AttributeValue, MessageAttribute, MessageProperties};

impl Message {
    /// Bytes this message accounts for in queue and memory limits.
    pub fn size(&self) -> usize {
        self.payload.len() + self.routing_key.len() + self.props.as_ref().map_or(0, |p| p.size())
    }

    /// The SQS FIFO message group, if any.
    pub fn group_id(&self) -> Option<&ByteStr> {
        self.props.as_ref()?.group_id.as_ref()
    }

    /// The SQS FIFO deduplication id, if any.
    pub fn dedup_id(&self) -> Option<&ByteStr> {
        self.props.as_ref()?.dedup_id.as_ref()
    }

    /// Whether the message has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Whole seconds of life left at `now` (for forwarding MQTT Message Expiry).
    pub fn remaining_secs(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            // Round up so a message with 0.4 s left is not sent as "expires now".
            u32::try_from(left.as_millis().div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }
}

/// Ids reserved in the store at a time: a restart continues above the last
/// reservation, so ids are never reused.
const ID_BLOCK: u64 = 1 << 20;

/// Allocates message ids, unique across restarts when given a store.
#[derive(Debug, Default)]
pub struct MessageIds {
    next: AtomicU64,
    /// Ids below this are reserved in the store.
    reserved: AtomicU64,
    store: Option<crate::store::SharedStore>,
    reserving: parking_lot::Mutex<()>,
}

impl MessageIds {
    /// Ids continuing after `start` (the last reservation), reserving further
    /// blocks in `store`.
    pub fn with_store(store: crate::store::SharedStore, start: u64) -> Self {
        MessageIds {
            next: AtomicU64::new(start),
            reserved: AtomicU64::new(start),
            store: store.is_persistent().then_some(store),
            reserving: parking_lot::Mutex::new(()),
        }
    }

    /// The next id (starts at 1).
    pub fn next(&self) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if self.store.is_some() && id >= self.reserved.load(Ordering::Acquire) {
            self.reserve(id);
        }
        id
    }

    /// Stores a new reservation covering `id`. Its write precedes, in the
    /// store's order, every write of the message that uses the id.
    fn reserve(&self, id: u64) {
        let _one = self.reserving.lock();
        if id < self.reserved.load(Ordering::Acquire) {
            return;
        }
        let upto = id + ID_BLOCK;
        if let Some(store) = &self.store {
            use crate::store::{Op, Ops, Space, keys};
            let mut ops = Ops::new();
            ops.push(Op::Put(
                Space::Meta,
                keys::meta_key(keys::IDENTITY, &[b"message-ids"]),
                Bytes::copy_from_slice(&upto.to_be_bytes()),
            ));
            store.submit(ops);
        }
        self.reserved.store(upto, Ordering::Release);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A shared message.
pub type SharedMessage = Arc<Message>;
