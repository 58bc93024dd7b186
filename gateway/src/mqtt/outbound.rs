//! What an MQTT client receives: deliveries pulled from core queues and
//! encoded straight into the connection's write buffer.
//!
//! A pull takes a batch under one queue lock; each delivery becomes a PUBLISH
//! in the same buffer, so one write carries many messages. QoS 1/2 deliveries
//! stay leased in the queue until the client acknowledges them; the in-flight
//! window bounds how many are outstanding. Nothing here allocates per message
//! once the buffers are warm (topic aliases aside, once per topic).

use std::time::Instant;

use bytes::BytesMut;
use tether_protocols::mqtt::{
    EncodeError, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
    SubscriptionIds, UserProperties,
};

use super::connection::{Conn, WRITE_HIGH_WATER};
use crate::core::bytestr::ByteStr;
use crate::core::exchange::swap_separators_into;
use crate::core::message::KeyForm;
use crate::core::queue::{Delivery, PullLimits, PullMode};
use crate::core::session::Outgoing;
use crate::metrics::{DeliveryTally, Protocol};

/// Deliveries taken per pull.
const BATCH: usize = 64;

/// Appends the encoding of `packet` to `buf`.
pub(super) fn encode_into(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    packet: &Packet<'_>,
) -> Result<(), EncodeError> {
    let len = packet.encoded_len(version)?;
    let start = buf.len();
    buf.resize(start + len, 0);
    match packet.encode(version, &mut buf[start..]) {
        Ok(_) => Ok(()),
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

impl Conn {
    /// Pulls deliveries from every consumer into the write buffer until the
    /// queues run dry, the in-flight window is full, or the buffer is full.
    pub(super) fn fill_outbound(&mut self) {
        // Deliveries and their latencies, added to the metrics once per fill.
        let mut tally = DeliveryTally::default();
        self.fill_outbound_counting(&mut tally);
        tally.flush(&self.ctx.core.metrics, Protocol::Mqtt);
    }

    fn fill_outbound_counting(&mut self, tally: &mut DeliveryTally) {
        self.want_pull = false;
        let consumers = std::mem::take(&mut self.consumers);
        let mut deliveries = std::mem::take(&mut self.deliveries);
        for c in &consumers {
            c.wakeup.take();
            loop {
                if self.wbuf.len() >= WRITE_HIGH_WATER {
                    // Resumed when the buffer drains (see the I/O loop).
                    break;
                }
                let credit = self
                    .inflight_window
                    .saturating_sub(self.state.outgoing.len());
                deliveries.clear();
                let n = c.queue.pull(
                    c.id,
                    PullLimits {
                        max: BATCH,
                        max_leased: credit,
                    },
                    PullMode::ByQos {
                        owner: self.session.id,
                        max_qos: c.max_qos,
                    },
                    &mut deliveries,
                );
                for mut d in deliveries.drain(..) {
                    if let Some(g) = &c.group {
                        d.sub_ids.clear();
                        if g.subscription_id != 0 {
                            d.sub_ids.push(g.subscription_id);
                        }
                        d.retain_as_published = g.retain_as_published;
                    }
                    let packet_id = match d.tag {
                        Some(tag) => {
                            let Some(pid) = self.state.next_packet_id() else {
                                c.queue.reject(tag, true);
                                continue;
                            };
                            self.state.outgoing.push_back((
                                pid,
                                Outgoing::Publish {
                                    queue: c.queue.clone(),
                                    tag,
                                    qos: d.qos,
                                },
                            ));
                            Some(pid)
                        }
                        None => None,
                    };
                    let topic = c.group.as_ref().and_then(|g| g.topic.as_ref());
                    let sent = self.send_publish(&d, packet_id, false, topic);
                    if sent {
                        tally.observe(&d);
                    } else {
                        // Too large for the client: behave as if delivered (MQTT 5 §3.1.2.11.4).
                        if let (Some(tag), Some(pid)) = (d.tag, packet_id) {
                            self.state.take_outgoing(pid);
                            c.queue.ack(tag);
                        }
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
        self.deliveries = deliveries;
        self.consumers = consumers;
    }

    /// Resends unacknowledged PUBLISH (with DUP) and PUBREL packets of a resumed
    /// session, in their original order and with their original identifiers.
    pub(super) fn resend_inflight(&mut self) {
        let pending: Vec<(u16, Outgoing)> = self.state.outgoing.iter().cloned().collect();
        for (pid, o) in pending {
            match o {
                Outgoing::Publish { queue, tag, qos } => match queue.leased_message(tag) {
                    Some(mut d) => {
                        d.qos = qos;
                        self.send_publish(&d, Some(pid), true, None);
                    }
                    None => {
                        self.state.take_outgoing(pid);
                    }
                },
                Outgoing::Released => {
                    let _ = self.write_packet(&Packet::PubRel(PubResponse {
                        packet_id: pid,
                        reason: ReasonCode::SUCCESS,
                        properties: Properties::new(),
                    }));
                }
            }
        }
    }

    /// Encodes one delivery as PUBLISH. Returns false when it exceeds the
    /// client's maximum packet size and was not sent.
    fn send_publish(
        &mut self,
        d: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        topic_override: Option<&ByteStr>,
    ) -> bool {
        let msg = &d.msg;
        let v5 = self.version.is_v5();
        let topic: &str = match (topic_override, msg.key_form) {
            (Some(t), _) => t,
            (None, KeyForm::Mqtt) => &msg.routing_key,
            (None, KeyForm::Amqp) => {
                swap_separators_into(&msg.routing_key, &mut self.topic_scratch);
                &self.topic_scratch
            }
        };
        // An AMQP reply-to becomes a response topic in MQTT form.
        let response_topic = msg.props.as_ref().and_then(|p| p.response_topic_mqtt());
        let mut properties = Properties::new();
        if v5 {
            if let Some(p) = &msg.props {
                properties.payload_format_indicator = p.payload_is_utf8.then_some(1);
                properties.content_type = p.content_type();
                properties.response_topic = response_topic.as_deref();
                properties.correlation_data = p.correlation();
                properties.user_properties = UserProperties::Encoded(p.mqtt_user_properties());
            }
            properties.message_expiry_interval = msg.remaining_secs(Instant::now());
            properties.subscription_identifiers = SubscriptionIds::Slice(&d.sub_ids);
        }
        // Topic alias (v5): reuse one the client knows, or assign a new one, but
        // only once we know the packet will be sent.
        let known_alias = if self.out_alias_max > 0 {
            self.out_aliases.get(topic).copied()
        } else {
            None
        };
        let new_alias = (known_alias.is_none()
            && self.out_alias_max > 0
            && self.out_aliases.len() < usize::from(self.out_alias_max))
        .then(|| u16::try_from(self.out_aliases.len() + 1).unwrap_or(u16::MAX));
        properties.topic_alias = known_alias.or(new_alias);
        let mut publish = Publish {
            dup,
            qos: QoS::from_u8(d.qos).unwrap_or(QoS::AtMostOnce),
            retain: d.retain_as_published && msg.retain,
            topic: if known_alias.is_some() { "" } else { topic },
            packet_id,
            properties,
            payload: &msg.payload,
        };
        let fits = |p: &Publish<'_>| {
            Packet::Publish(*p)
                .encoded_len(self.version)
                .is_ok_and(|len| len <= self.client_max_packet)
        };
        if !fits(&publish) {
            // Without the new alias it cannot get smaller; with a known alias it
            // already is as small as it gets.
            tracing::debug!(client_id = %self.session.client_id, "delivery dropped: larger than the client's maximum packet size");
            return false;
        }
        if let Some(alias) = new_alias {
            let key = match (topic_override, msg.key_form) {
                (None, KeyForm::Mqtt) => msg.routing_key.clone(),
                _ => ByteStr::from(topic),
            };
            self.out_aliases.insert(key, alias);
        } else {
            publish.properties.topic_alias = known_alias;
        }
        let publish = Packet::Publish(publish);
        encode_into(&mut self.wbuf, self.version, &publish).is_ok()
    }
}
