//! What an MQTT client sends: PUBLISH into the core, SUBSCRIBE/UNSUBSCRIBE as
//! bindings, acknowledgements of our deliveries, and DISCONNECT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;
use tether_protocols::mqtt::{
    Packet, Properties, PubResponse, Publish, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, UserProperties,
};
use tether_protocols::topic;

use super::connection::{AckKind, Conn, End, GroupOptions, PendingReply};
use crate::core::Core;
use crate::core::bytestr::ByteStr;
use crate::core::exchange::{BindingOptions, RouteScratch};
use crate::core::message::{KeyForm, Message, MessageProperties, now_ms};
use crate::core::queue::DeliveryHints;
use crate::core::session::{Outgoing, PacketSide, Subscription};
use crate::core::vhost::PublishOutcome;
use crate::store::{Lsn, tracked};

/// Builds the protocol-neutral properties of a PUBLISH or will, sharing bytes
/// with `frame`. `None` when there are none (the common case).
pub(super) fn message_properties(
    p: &Properties<'_>,
    frame: &Bytes,
) -> Option<Box<MessageProperties>> {
    let user_properties = match p.user_properties {
        UserProperties::Encoded(raw) if !p.user_properties.is_empty() => frame.slice_ref(raw),
        _ => Bytes::new(),
    };
    if p.content_type.is_none()
        && p.response_topic.is_none()
        && p.correlation_data.is_none()
        && p.payload_format_indicator.is_none()
        && user_properties.is_empty()
    {
        return None;
    }
    Some(Box::new(MessageProperties::from_mqtt(
        p.content_type.map(|s| ByteStr::slice_of(frame, s)),
        p.payload_format_indicator == Some(1),
        p.response_topic.map(|s| ByteStr::slice_of(frame, s)),
        p.correlation_data.map(|b| frame.slice_ref(b)),
        user_properties,
    )))
}

/// Stores a retained message (if flagged), routes `msg` through `amq.topic`,
/// and applies topic rules.
pub(crate) fn publish_message(
    core: &Arc<Core>,
    msg: &Arc<Message>,
    scratch: &mut RouteScratch,
    client_id: &str,
) -> PublishOutcome {
    if msg.retain {
        core.retained.set(&msg.routing_key, msg.clone());
    }
    let outcome = core.vhost.publish(core.vhost.amq_topic(), msg, scratch);
    if !core.rules.is_empty() {
        core.rules.apply(core, msg, client_id);
    }
    outcome
}

fn protocol_error(why: impl Into<String>) -> End {
    End::Protocol(ReasonCode::PROTOCOL_ERROR, why.into())
}

impl Conn {
    /// Dispatches one decoded packet; `Err` ends the connection.
    pub(super) fn handle_packet(&mut self, packet: Packet<'_>, frame: &Bytes) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.on_publish(p, frame),
            Packet::PubAck(r) => {
                self.on_puback(r.packet_id);
                Ok(())
            }
            Packet::PubRec(r) => self.on_pubrec(r),
            Packet::PubRel(r) => self.on_pubrel(r),
            Packet::PubComp(r) => {
                if let Some(Outgoing::Released) = self.state.take_outgoing(r.packet_id) {
                    self.ctx.core.sessions.save_packet(
                        &self.session,
                        PacketSide::Released,
                        r.packet_id,
                        false,
                    );
                    self.want_pull = true;
                }
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => self.reply(&Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(secs) = d.properties.session_expiry_interval {
                    if self.session_expiry.is_zero() && secs > 0 {
                        return Err(protocol_error(
                            "session expiry set in DISCONNECT after 0 in CONNECT",
                        ));
                    }
                    self.session_expiry =
                        Duration::from_secs(secs.into()).min(self.ctx.config.max_session_expiry);
                }
                Err(End::Client {
                    with_will: d.reason == ReasonCode::DISCONNECT_WITH_WILL,
                })
            }
            Packet::Connect(_) => Err(protocol_error("second CONNECT")),
            Packet::Auth(_) => Err(protocol_error("AUTH without an authentication method")),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(protocol_error("packet only a server may send"))
            }
        }
    }

    fn reply(&mut self, packet: &Packet<'_>) -> Result<(), End> {
        self.reply_after(0, packet)
    }

    /// Sends `packet` once ticket `lsn` is durable (and after every reply
    /// queued before it).
    fn reply_after(&mut self, lsn: Lsn, packet: &Packet<'_>) -> Result<(), End> {
        if self.pending.is_empty() && self.is_durable(lsn) {
            return self.write_packet(packet).map_err(|e| {
                End::Protocol(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR, e.to_string())
            });
        }
        let start = self.wbuf.len();
        self.write_packet(packet)
            .map_err(|e| End::Protocol(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR, e.to_string()))?;
        let encoded = self.wbuf.split_off(start).freeze();
        self.pending.push_back((lsn, PendingReply::Raw(encoded)));
        Ok(())
    }

    /// Stores the session's subscriptions (persistent sessions); the ticket to
    /// wait for before acknowledging the change.
    fn save_session(&self) -> Lsn {
        let ((), lsn) = tracked(|| {
            self.ctx
                .core
                .sessions
                .save(&self.session, &self.state, self.session_expiry, true);
        });
        lsn
    }

    /// Whether ticket `lsn` is durable already.
    fn is_durable(&self, lsn: Lsn) -> bool {
        lsn == 0 || *self.durable.borrow() >= lsn
    }

    /// Sends a publish-flow acknowledgement once ticket `lsn` is durable.
    fn ack_after(
        &mut self,
        lsn: Lsn,
        kind: AckKind,
        packet_id: u16,
        code: ReasonCode,
    ) -> Result<(), End> {
        if self.pending.is_empty() && self.is_durable(lsn) && self.stored_ok(lsn) {
            return self.ack(kind, packet_id, code, "");
        }
        self.pending.push_back((
            lsn,
            PendingReply::Ack {
                kind,
                packet_id,
                code,
            },
        ));
        Ok(())
    }

    fn stored_ok(&self, lsn: Lsn) -> bool {
        lsn == 0 || self.ctx.core.store.outcome(lsn).is_ok()
    }

    /// Sends the held replies whose tickets are durable, in order. A reply
    /// whose writes failed becomes an error: a v5 publisher gets reason 0x80,
    /// anything else ends the connection (the client retries elsewhere or
    /// later, and nothing unkept was acknowledged).
    pub(super) fn release_replies(&mut self) -> Result<(), End> {
        let done = *self.durable.borrow_and_update();
        // Taken out while releasing, so the replies written below go straight
        // to the socket buffer instead of queueing behind the rest.
        let mut pending = std::mem::take(&mut self.pending);
        let result = self.release_from(&mut pending, done);
        debug_assert!(self.pending.is_empty());
        pending.append(&mut self.pending);
        self.pending = pending;
        result
    }

    fn release_from(
        &mut self,
        pending: &mut std::collections::VecDeque<(Lsn, PendingReply)>,
        done: Lsn,
    ) -> Result<(), End> {
        while let Some((lsn, _)) = pending.front() {
            if *lsn > done {
                break;
            }
            let Some((lsn, reply)) = pending.pop_front() else {
                break;
            };
            let failed = !self.stored_ok(lsn);
            match reply {
                PendingReply::Raw(b) if !failed => self.wbuf.extend_from_slice(&b),
                PendingReply::Ack {
                    kind,
                    packet_id,
                    code,
                } if !failed => self.ack(kind, packet_id, code, "")?,
                PendingReply::Ack {
                    kind: kind @ (AckKind::Ack | AckKind::Rec),
                    packet_id,
                    ..
                } if self.version.is_v5() => {
                    if kind == AckKind::Rec {
                        self.state.incoming_qos2.remove(&packet_id);
                    }
                    self.ack(
                        kind,
                        packet_id,
                        ReasonCode::UNSPECIFIED_ERROR,
                        "the gateway could not store the message",
                    )?;
                }
                _ => {
                    return Err(End::Protocol(
                        ReasonCode::UNSPECIFIED_ERROR,
                        "the gateway could not store its state".into(),
                    ));
                }
            }
        }
        self.want_pull = true;
        Ok(())
    }

    /// Deliveries wait while a SUBACK is held, so retained messages still
    /// follow it.
    pub(super) fn holds_deliveries(&self) -> bool {
        self.pending
            .iter()
            .any(|(_, r)| matches!(r, PendingReply::Raw(_)))
    }

    /// A reason string for an error acknowledgement, if the client wants them.
    fn problem<'s>(&self, why: &'s str) -> Properties<'s> {
        Properties {
            reason_string: (self.version.is_v5() && self.problem_info).then_some(why),
            ..Properties::new()
        }
    }

    fn ack(
        &mut self,
        kind: AckKind,
        packet_id: u16,
        reason: ReasonCode,
        why: &str,
    ) -> Result<(), End> {
        let properties = if reason.is_error() {
            self.problem(why)
        } else {
            Properties::new()
        };
        let r = PubResponse {
            packet_id,
            reason,
            properties,
        };
        self.reply(&match kind {
            AckKind::Ack => Packet::PubAck(r),
            AckKind::Rec => Packet::PubRec(r),
            AckKind::Rel => Packet::PubRel(r),
            AckKind::Comp => Packet::PubComp(r),
        })
    }

    fn on_publish(&mut self, p: Publish<'_>, frame: &Bytes) -> Result<(), End> {
        let v5 = self.version.is_v5();
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(protocol_error(
                "subscription identifier in a client PUBLISH",
            ));
        }
        let topic = match p.properties.topic_alias {
            Some(alias) => {
                let Some(slot) = usize::from(alias)
                    .checked_sub(1)
                    .and_then(|i| self.in_aliases.get_mut(i))
                else {
                    return Err(End::Protocol(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        format!("topic alias {alias} is above the maximum we allow"),
                    ));
                };
                if p.topic.is_empty() {
                    match slot {
                        Some(t) => t.clone(),
                        None => return Err(protocol_error(format!("unknown topic alias {alias}"))),
                    }
                } else {
                    // Copied: an alias lives as long as the connection, and must
                    // not pin the frame it arrived in.
                    let t = ByteStr::from(p.topic);
                    *slot = Some(t.clone());
                    t
                }
            }
            None if p.topic.is_empty() => {
                return Err(End::Protocol(
                    ReasonCode::TOPIC_NAME_INVALID,
                    "empty topic".into(),
                ));
            }
            None => ByteStr::slice_of(frame, p.topic),
        };
        let mut retain = p.retain;
        if retain && !self.ctx.config.retain_available {
            if v5 {
                return Err(End::Protocol(
                    ReasonCode::RETAIN_NOT_SUPPORTED,
                    "retain is not available".into(),
                ));
            }
            retain = false;
        }
        let qos = p.qos as u8;
        let packet_id = p.packet_id.unwrap_or(0);
        if qos == 2 {
            if self.state.incoming_qos2.contains(&packet_id) {
                // A resend of a message we already have: acknowledge again only.
                return self.ack(AckKind::Rec, packet_id, ReasonCode::SUCCESS, "");
            }
            if self.state.incoming_qos2.len() >= usize::from(self.ctx.config.receive_maximum) {
                return Err(End::Protocol(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "more unacknowledged QoS 2 publishes than Receive Maximum".into(),
                ));
            }
        }
        if !self.acl.may_publish(&topic) {
            tracing::debug!(peer = %self.peer, client_id = %self.session.client_id, %topic, "publish denied");
            let denied = if v5 {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            };
            return match qos {
                0 => Ok(()),
                1 => self.ack(
                    AckKind::Ack,
                    packet_id,
                    denied,
                    "not authorized to publish to this topic",
                ),
                _ => {
                    if !v5 {
                        // v3 has no negative PUBREC: complete the flow, drop the message.
                        self.state.incoming_qos2.insert(packet_id);
                    }
                    self.ack(
                        AckKind::Rec,
                        packet_id,
                        denied,
                        "not authorized to publish to this topic",
                    )
                }
            };
        }
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(p.payload).is_err()
        {
            if qos == 0 {
                return Err(End::Protocol(
                    ReasonCode::PAYLOAD_FORMAT_INVALID,
                    "payload is not UTF-8".into(),
                ));
            }
            let kind = if qos == 1 { AckKind::Ack } else { AckKind::Rec };
            return self.ack(
                kind,
                packet_id,
                ReasonCode::PAYLOAD_FORMAT_INVALID,
                "payload is not UTF-8",
            );
        }
        if qos > 0 && self.ctx.core.store.health().is_err() {
            // Refused rather than acknowledged without being kept.
            if !v5 {
                return Err(End::Protocol(
                    ReasonCode::UNSPECIFIED_ERROR,
                    "the gateway cannot store messages".into(),
                ));
            }
            let kind = if qos == 1 { AckKind::Ack } else { AckKind::Rec };
            return self.ack(
                kind,
                packet_id,
                ReasonCode::UNSPECIFIED_ERROR,
                "the gateway cannot store messages",
            );
        }
        let msg = Arc::new(Message {
            id: self.ctx.core.ids.next(),
            routing_key: topic,
            key_form: KeyForm::Mqtt,
            exchange: ByteStr::from_static("amq.topic"),
            payload: frame.slice_ref(p.payload),
            qos,
            retain,
            persistent: qos > 0,
            priority: 0,
            published_at_ms: now_ms(),
            expires_at: p
                .properties
                .message_expiry_interval
                .map(|s| Instant::now() + Duration::from_secs(s.into())),
            origin: self.session.id,
            props: message_properties(&p.properties, frame),
        });
        let scratch = self.scratch.get_or_insert_with(Box::default);
        let (outcome, lsn) = tracked(|| {
            let outcome = publish_message(&self.ctx.core, &msg, scratch, &self.session.client_id);
            if qos == 2 {
                self.ctx.core.sessions.save_packet(
                    &self.session,
                    PacketSide::Incoming,
                    packet_id,
                    true,
                );
            }
            outcome
        });
        if let Some(q) = scratch.congested.take()
            && !Arc::ptr_eq(&q, &self.session.queue)
        {
            // Read no further PUBLISH until that subscriber catches up (its
            // own session queue excepted: its acks arrive on this connection).
            self.flow = Some(q);
        }
        let code = if outcome.routed == 0 && v5 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else if outcome.rejected > 0 && outcome.queued == 0 && v5 {
            // Every queue it reached refused it (`reject-publish`, a full
            // bridge outbox with `reject-new`): the publisher should know.
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode::SUCCESS
        };
        match qos {
            0 => Ok(()),
            1 => self.ack_after(lsn, AckKind::Ack, packet_id, code),
            _ => {
                self.state.incoming_qos2.insert(packet_id);
                self.ack_after(lsn, AckKind::Rec, packet_id, code)
            }
        }
    }

    fn on_puback(&mut self, packet_id: u16) {
        match self.state.take_outgoing(packet_id) {
            Some(Outgoing::Publish { queue, tag, .. }) => {
                queue.ack(tag);
                self.want_pull = true;
            }
            Some(released @ Outgoing::Released) => {
                // A PUBACK for a QoS 2 flow: keep waiting for PUBCOMP.
                self.state.outgoing.push_back((packet_id, released));
            }
            None => {}
        }
    }

    fn on_pubrec(&mut self, r: PubResponse<'_>) -> Result<(), End> {
        let Some(at) = self
            .state
            .outgoing
            .iter()
            .position(|(p, _)| *p == r.packet_id)
        else {
            return self.ack(
                AckKind::Rel,
                r.packet_id,
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                "unknown packet identifier",
            );
        };
        let refused = r.reason.is_error();
        let ((), lsn) = tracked(|| {
            if let (_, Outgoing::Publish { queue, tag, .. }) = &self.state.outgoing[at] {
                queue.ack(*tag);
            }
            if !refused {
                self.ctx.core.sessions.save_packet(
                    &self.session,
                    PacketSide::Released,
                    r.packet_id,
                    true,
                );
            }
        });
        if refused {
            // The client refused the message: the flow ends here.
            self.state.outgoing.remove(at);
            self.want_pull = true;
            return Ok(());
        }
        self.state.outgoing[at].1 = Outgoing::Released;
        self.ack_after(lsn, AckKind::Rel, r.packet_id, ReasonCode::SUCCESS)
    }

    fn on_pubrel(&mut self, r: PubResponse<'_>) -> Result<(), End> {
        let known = self.state.incoming_qos2.remove(&r.packet_id);
        if !known && self.version.is_v5() {
            return self.ack(
                AckKind::Comp,
                r.packet_id,
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                "unknown packet identifier",
            );
        }
        let ((), lsn) = tracked(|| {
            if known {
                self.ctx.core.sessions.save_packet(
                    &self.session,
                    PacketSide::Incoming,
                    r.packet_id,
                    false,
                );
            }
        });
        self.ack_after(lsn, AckKind::Comp, r.packet_id, ReasonCode::SUCCESS)
    }

    fn on_subscribe(&mut self, s: Subscribe<'_>) -> Result<(), End> {
        let v5 = self.version.is_v5();
        let sub_id = s.properties.subscription_identifier.unwrap_or(0);
        let mut codes: SmallVec<[u8; 8]> = SmallVec::new();
        let mut retained_jobs: SmallVec<[(String, u8); 4]> = SmallVec::new();
        let mut denied = false;
        for (filter, opts) in s.filters.iter() {
            if let Some(name) = filter.strip_prefix("$queue/") {
                codes.push(self.subscribe_queue(filter, name, opts, sub_id));
                continue;
            }
            let shared = match topic::parse_shared(filter) {
                Ok(s) => s,
                Err(_) => {
                    codes.push(if v5 {
                        ReasonCode::TOPIC_FILTER_INVALID.0
                    } else {
                        0x80
                    });
                    continue;
                }
            };
            let (group, inner) = match &shared {
                Some(sh) => (Some(sh.group), sh.filter),
                None => (None, filter),
            };
            if group.is_some() && opts.no_local {
                return Err(protocol_error("no-local on a shared subscription"));
            }
            if !self.acl.may_subscribe(inner) {
                tracing::debug!(peer = %self.peer, client_id = %self.session.client_id, filter, "subscribe denied");
                codes.push(if v5 {
                    ReasonCode::NOT_AUTHORIZED.0
                } else {
                    0x80
                });
                denied = true;
                continue;
            }
            let existed = self.state.subscriptions.contains_key(filter);
            if !existed
                && self.state.subscriptions.len() >= self.ctx.config.max_subscriptions_per_client
            {
                codes.push(if v5 {
                    ReasonCode::QUOTA_EXCEEDED.0
                } else {
                    0x80
                });
                continue;
            }
            let granted = opts.qos as u8;
            let sessions = &self.ctx.core.sessions;
            match group {
                None => {
                    sessions.bind(
                        &self.session,
                        inner,
                        BindingOptions {
                            max_qos: granted,
                            no_local_origin: opts.no_local.then_some(self.session.id),
                            retain_as_published: opts.retain_as_published,
                            subscription_id: sub_id,
                        },
                    );
                    let send_retained = match opts.retain_handling {
                        RetainHandling::SendOnSubscribe => true,
                        RetainHandling::SendOnNewSubscribe => !existed,
                        RetainHandling::DoNotSend => false,
                    };
                    if send_retained {
                        retained_jobs.push((inner.to_owned(), granted));
                    }
                }
                Some(g) => {
                    let queue = if existed {
                        sessions.group_queue(g, inner)
                    } else {
                        Some(sessions.join_group(g, inner))
                    };
                    if let Some(q) = queue {
                        let opts = GroupOptions {
                            subscription_id: sub_id,
                            retain_as_published: opts.retain_as_published,
                            topic: None,
                        };
                        self.add_consumer(q, granted, Some(opts));
                    }
                }
            }
            self.state.subscriptions.insert(
                filter.to_owned(),
                Subscription {
                    filter: inner.to_owned(),
                    group: group.map(str::to_owned),
                    options: opts,
                    id: sub_id,
                    queue: None,
                },
            );
            codes.push(granted);
        }
        let properties = if denied {
            self.problem("not authorized for some filters")
        } else {
            Properties::new()
        };
        let lsn = self.save_session();
        self.reply_after(
            lsn,
            &Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties,
                return_codes: &codes,
            }),
        )?;
        // Retained messages follow the SUBACK, through the session queue so they
        // take the normal QoS and in-flight path.
        for (filter, granted) in retained_jobs {
            for msg in self.ctx.core.retained.matching(&filter) {
                let hints = DeliveryHints {
                    qos: msg.qos.min(granted),
                    retain_as_published: true,
                    sub_ids: if sub_id != 0 {
                        std::iter::once(sub_id).collect()
                    } else {
                        Default::default()
                    },
                };
                self.session.queue.enqueue_unbounded(&msg, hints);
            }
        }
        Ok(())
    }

    /// Subscribes to `$queue/{name}`: the session consumes the named core queue
    /// (an SQS or AMQP queue) like a shared-subscription member, its
    /// visibility timeout and redrive policy applying to unacknowledged
    /// deliveries. Returns the SUBACK code.
    fn subscribe_queue(
        &mut self,
        filter: &str,
        name: &str,
        opts: SubscriptionOptions,
        sub_id: u32,
    ) -> u8 {
        let v5 = self.version.is_v5();
        if !self.acl.may_subscribe(filter) {
            return if v5 {
                ReasonCode::NOT_AUTHORIZED.0
            } else {
                0x80
            };
        }
        let Some(queue) = self.ctx.core.vhost.queue(name) else {
            return if v5 {
                ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR.0
            } else {
                0x80
            };
        };
        let existed = self.state.subscriptions.contains_key(filter);
        if !existed
            && self.state.subscriptions.len() >= self.ctx.config.max_subscriptions_per_client
        {
            return if v5 {
                ReasonCode::QUOTA_EXCEEDED.0
            } else {
                0x80
            };
        }
        let granted = opts.qos as u8;
        let group = GroupOptions {
            subscription_id: sub_id,
            retain_as_published: false,
            topic: Some(ByteStr::from(filter)),
        };
        self.add_consumer(queue, granted, Some(group));
        self.state.subscriptions.insert(
            filter.to_owned(),
            Subscription {
                filter: filter.to_owned(),
                group: None,
                options: opts,
                id: sub_id,
                queue: Some(name.to_owned()),
            },
        );
        granted
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe<'_>) -> Result<(), End> {
        let mut codes: SmallVec<[u8; 8]> = SmallVec::new();
        for filter in u.filters.iter() {
            let code = match self.state.subscriptions.remove(filter) {
                Some(sub) => {
                    let sessions = self.ctx.core.sessions.clone();
                    if let Some(name) = &sub.queue {
                        if let Some(q) = self.ctx.core.vhost.queue(name) {
                            self.remove_consumer(&q);
                            self.state.outgoing.retain(|(_, o)| {
                                !matches!(o, Outgoing::Publish { queue, .. } if Arc::ptr_eq(queue, &q))
                            });
                            q.release_owner(self.session.id);
                        }
                        codes.push(ReasonCode::SUCCESS.0);
                        continue;
                    }
                    match &sub.group {
                        None => {
                            sessions.unbind(&self.session, &sub.filter);
                        }
                        Some(g) => {
                            if let Some(q) = sessions.group_queue(g, &sub.filter) {
                                self.remove_consumer(&q);
                                self.state.outgoing.retain(|(_, o)| {
                                    !matches!(o, Outgoing::Publish { queue, .. } if Arc::ptr_eq(queue, &q))
                                });
                            }
                            sessions.leave_group(g, &sub.filter, self.session.id);
                        }
                    }
                    ReasonCode::SUCCESS.0
                }
                None => ReasonCode::NO_SUBSCRIPTION_EXISTED.0,
            };
            codes.push(code);
        }
        let reason_codes: &[u8] = if self.version.is_v5() { &codes } else { &[] };
        let lsn = self.save_session();
        self.reply_after(
            lsn,
            &Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::new(),
                reason_codes,
            }),
        )
    }
}
