//! The outbox: a bounded, ordered store of messages waiting to be published
//! or acknowledged.
//!
//! [`Outbox<N, M>`] holds at most `N` messages of at most `M` bytes each
//! (topic and payload together), in slots allocated up front: its size is
//! known at compile time and nothing is ever allocated. A message stays in its
//! slot from [`push`](Outbox::push) until it is done: a QoS 0 message once it
//! has been written to the transport, a QoS 1 message once its PUBACK
//! arrives. Messages go out in the order they were pushed; after a reconnect
//! the unacknowledged QoS 1 messages go out again first, in their order.
//!
//! When all `N` slots are taken, the [`OverflowPolicy`] decides which message
//! is lost — the oldest (default: fresh readings matter more than stale ones)
//! or the newest — and [`OutboxStats`] counts it. Nothing is ever dropped
//! silently.
//!
//! This module knows nothing about connections; the client core
//! ([`crate::client`]) decides when a slot is sent, acknowledged or due again.

use tether_protocols::mqtt::QoS;
use tether_protocols::topic::validate_topic_name;

/// What [`Outbox::push`] does when every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Drop the oldest message (even one awaiting its PUBACK) to make room.
    #[default]
    DropOldest,
    /// Keep the queue as it is and drop the new message.
    DropNewest,
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; nothing was lost.
    Queued,
    /// Queued after dropping the oldest message ([`OverflowPolicy::DropOldest`]).
    QueuedDroppingOldest,
    /// Not queued: the outbox is full ([`OverflowPolicy::DropNewest`]).
    DroppedNewest,
}

/// Why a message cannot be queued at all (whatever the fill level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Topic and payload together are longer than the slot size `M`.
    TooLarge,
    /// The topic is not a valid MQTT topic name (empty, wildcard, U+0000).
    InvalidTopic,
    /// Only QoS 0 and 1 are supported.
    UnsupportedQoS,
}

impl core::fmt::Display for PushError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "message larger than an outbox slot",
            Self::InvalidTopic => "invalid topic name",
            Self::UnsupportedQoS => "only QoS 0 and 1 are supported",
        })
    }
}

impl core::error::Error for PushError {}

/// Counters of everything the outbox did. They wrap at `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Messages accepted by [`Outbox::push`].
    pub queued: u32,
    /// Messages dropped to make room ([`OverflowPolicy::DropOldest`]).
    pub dropped_oldest: u32,
    /// Messages refused because the outbox was full ([`OverflowPolicy::DropNewest`]).
    pub dropped_newest: u32,
    /// First transmissions.
    pub sent: u32,
    /// Retransmissions with DUP after reconnecting to a persistent session.
    pub resent: u32,
    /// Unacknowledged QoS 1 messages sent again as new messages because the
    /// server had lost the session.
    pub requeued: u32,
    /// QoS 1 messages acknowledged.
    pub acked: u32,
    /// QoS 1 messages the server acknowledged with an error reason (MQTT 5).
    pub rejected: u32,
}

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Waiting to be sent for the first time (or again, as a new message).
    Queued,
    /// Sent on the current connection; waiting for its PUBACK.
    InFlight,
    /// Sent on an earlier connection to a session that still exists; to be
    /// sent again with DUP and the same packet identifier.
    Resend,
    /// Finished; the slot is freed once every older slot is finished too.
    Done,
}

/// One message in the outbox.
#[derive(Debug, Clone, Copy)]
struct Slot<const M: usize> {
    state: SlotState,
    qos: QoS,
    retain: bool,
    /// Packet identifier once sent at QoS 1 (0 before).
    packet_id: u16,
    topic_len: u16,
    payload_len: u16,
    data: [u8; M],
}

impl<const M: usize> Slot<M> {
    const EMPTY: Self = Self {
        state: SlotState::Done,
        qos: QoS::AtMostOnce,
        retain: false,
        packet_id: 0,
        topic_len: 0,
        payload_len: 0,
        data: [0; M],
    };

    fn topic(&self) -> &str {
        // Validated UTF-8 on push; the fallback is never taken.
        self.data
            .get(..usize::from(self.topic_len))
            .and_then(|t| core::str::from_utf8(t).ok())
            .unwrap_or("")
    }

    fn payload(&self) -> &[u8] {
        let start = usize::from(self.topic_len);
        self.data
            .get(start..start + usize::from(self.payload_len))
            .unwrap_or(&[])
    }
}

/// A message as the outbox holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS it is published with.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Where it is in its life.
    pub state: SlotState,
    /// Packet identifier (QoS 1, once sent; 0 before).
    pub packet_id: u16,
}

/// A bounded queue of `N` messages of at most `M` bytes of topic + payload.
///
/// RAM use is about `N * (M + 10)` bytes, all inline.
#[derive(Debug, Clone)]
pub struct Outbox<const N: usize, const M: usize> {
    slots: [Slot<M>; N],
    /// Index of the oldest slot.
    head: usize,
    /// Number of slots in use (including finished ones not yet freed).
    len: usize,
    policy: OverflowPolicy,
    stats: OutboxStats,
}

impl<const N: usize, const M: usize> Default for Outbox<N, M> {
    fn default() -> Self {
        Self::new(OverflowPolicy::default())
    }
}

impl<const N: usize, const M: usize> Outbox<N, M> {
    /// An empty outbox with this overflow policy.
    pub const fn new(policy: OverflowPolicy) -> Self {
        Self {
            slots: [Slot::EMPTY; N],
            head: 0,
            len: 0,
            policy,
            stats: OutboxStats {
                queued: 0,
                dropped_oldest: 0,
                dropped_newest: 0,
                sent: 0,
                resent: 0,
                requeued: 0,
                acked: 0,
                rejected: 0,
            },
        }
    }

    /// Number of messages held (queued, in flight or awaiting resend).
    pub fn len(&self) -> usize {
        self.count(|s| s.state != SlotState::Done)
    }

    /// Whether no message is waiting to be sent or acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `N`: how many messages fit.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// `M`: how many bytes of topic + payload fit in one slot.
    pub const fn slot_size(&self) -> usize {
        M
    }

    /// The overflow policy.
    pub const fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// Changes the overflow policy (applies to later pushes).
    pub fn set_policy(&mut self, policy: OverflowPolicy) {
        self.policy = policy;
    }

    /// The counters.
    pub const fn stats(&self) -> &OutboxStats {
        &self.stats
    }

    /// Number of QoS 1 messages sent on the current connection and not yet
    /// acknowledged.
    pub fn in_flight(&self) -> usize {
        self.count(|s| s.state == SlotState::InFlight)
    }

    /// Index of the `i`-th oldest slot in use.
    fn at(&self, i: usize) -> usize {
        (self.head + i) % N
    }

    /// Number of slots in use that satisfy `f`.
    fn count(&self, f: impl Fn(&Slot<M>) -> bool) -> usize {
        (0..self.len)
            .filter(|&i| f(&self.slots[self.at(i)]))
            .count()
    }

    /// Queues a message. Fails only if the message could never be sent;
    /// a full outbox is handled by the policy and reported in [`Pushed`].
    pub fn push(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<Pushed, PushError> {
        if qos == QoS::ExactlyOnce {
            return Err(PushError::UnsupportedQoS);
        }
        validate_topic_name(topic).map_err(|_| PushError::InvalidTopic)?;
        let size = topic.len().saturating_add(payload.len());
        if size > M {
            return Err(PushError::TooLarge);
        }
        // Both fit in M, which a slot indexes with u16 only if M is small
        // enough; refuse rather than truncate otherwise.
        let (Ok(topic_len), Ok(payload_len)) =
            (u16::try_from(topic.len()), u16::try_from(payload.len()))
        else {
            return Err(PushError::TooLarge);
        };
        if N == 0 {
            return Ok(self.refuse());
        }
        let mut outcome = Pushed::Queued;
        if self.len == N {
            match self.policy {
                OverflowPolicy::DropNewest => return Ok(self.refuse()),
                OverflowPolicy::DropOldest => {
                    self.drop_head();
                    outcome = Pushed::QueuedDroppingOldest;
                }
            }
        }
        let index = (self.head + self.len) % N;
        let slot = &mut self.slots[index];
        slot.state = SlotState::Queued;
        slot.qos = qos;
        slot.retain = retain;
        slot.packet_id = 0;
        slot.topic_len = topic_len;
        slot.payload_len = payload_len;
        slot.data[..topic.len()].copy_from_slice(topic.as_bytes());
        slot.data[topic.len()..size].copy_from_slice(payload);
        self.len += 1;
        self.stats.queued = self.stats.queued.wrapping_add(1);
        Ok(outcome)
    }

    fn refuse(&mut self) -> Pushed {
        self.stats.dropped_newest = self.stats.dropped_newest.wrapping_add(1);
        Pushed::DroppedNewest
    }

    /// Frees the oldest slot, counting it as dropped if it was still pending.
    fn drop_head(&mut self) {
        if self.len == 0 {
            return;
        }
        if self.slots[self.head].state != SlotState::Done {
            self.stats.dropped_oldest = self.stats.dropped_oldest.wrapping_add(1);
        }
        self.slots[self.head].state = SlotState::Done;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        self.free_done();
    }

    /// Frees finished slots at the head.
    fn free_done(&mut self) {
        while self.len > 0 && self.slots[self.head].state == SlotState::Done {
            self.head = (self.head + 1) % N;
            self.len -= 1;
        }
    }

    /// The messages held, oldest first (finished ones are skipped).
    pub fn iter(&self) -> impl Iterator<Item = Message<'_>> + '_ {
        (0..self.len)
            .map(move |i| self.at(i))
            .filter(|&index| self.slots[index].state != SlotState::Done)
            .map(|index| self.message(index))
    }

    /// The message in slot `index`.
    pub(crate) fn message(&self, index: usize) -> Message<'_> {
        let s = &self.slots[index % N];
        Message {
            topic: s.topic(),
            payload: s.payload(),
            qos: s.qos,
            retain: s.retain,
            state: s.state,
            packet_id: s.packet_id,
        }
    }

    /// Slot index of the oldest message due for transmission (queued, or
    /// awaiting resend).
    pub(crate) fn next_due(&self) -> Option<usize> {
        (0..self.len)
            .map(|i| self.at(i))
            .find(|&i| matches!(self.slots[i].state, SlotState::Queued | SlotState::Resend))
    }

    /// Records that slot `index` was written to the transport, with
    /// `packet_id` for QoS 1.
    pub(crate) fn mark_sent(&mut self, index: usize, packet_id: u16) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if slot.state == SlotState::Resend {
            self.stats.resent = self.stats.resent.wrapping_add(1);
        } else {
            self.stats.sent = self.stats.sent.wrapping_add(1);
        }
        if slot.qos == QoS::AtMostOnce {
            slot.state = SlotState::Done;
            self.free_done();
        } else {
            slot.state = SlotState::InFlight;
            slot.packet_id = packet_id;
        }
    }

    /// Drops a message that can never be sent (e.g. larger than the server's
    /// maximum packet size); counted as rejected.
    pub(crate) fn discard(&mut self, index: usize) {
        if let Some(slot) = self.slots.get_mut(index) {
            slot.state = SlotState::Done;
            self.stats.rejected = self.stats.rejected.wrapping_add(1);
            self.free_done();
        }
    }

    /// Settles the in-flight message with this packet identifier; `accepted`
    /// is false for an MQTT 5 error reason. Returns whether it was known.
    pub(crate) fn acknowledge(&mut self, packet_id: u16, accepted: bool) -> bool {
        let found = (0..self.len).map(|i| self.at(i)).find(|&i| {
            let s = &self.slots[i];
            s.state == SlotState::InFlight && s.packet_id == packet_id
        });
        let Some(index) = found else {
            return false;
        };
        self.slots[index].state = SlotState::Done;
        if accepted {
            self.stats.acked = self.stats.acked.wrapping_add(1);
        } else {
            self.stats.rejected = self.stats.rejected.wrapping_add(1);
        }
        self.free_done();
        true
    }

    /// Whether a pending message uses this packet identifier.
    pub(crate) fn uses_packet_id(&self, packet_id: u16) -> bool {
        self.count(|s| {
            s.packet_id == packet_id && matches!(s.state, SlotState::InFlight | SlotState::Resend)
        }) > 0
    }

    /// After reconnecting: unacknowledged messages are resent with DUP when
    /// the server kept the session, or sent again as new messages when it did not.
    pub(crate) fn reconnected(&mut self, session_present: bool) {
        for i in 0..self.len {
            let index = self.at(i);
            let slot = &mut self.slots[index];
            if matches!(slot.state, SlotState::InFlight | SlotState::Resend) {
                if session_present {
                    slot.state = SlotState::Resend;
                } else {
                    slot.state = SlotState::Queued;
                    slot.packet_id = 0;
                    self.stats.requeued = self.stats.requeued.wrapping_add(1);
                }
            }
        }
    }
}
