//! The AMQP 0-9-1 upstream client of a bridge (lapin), for RabbitMQ, Amazon
//! MQ or another Tether.
//!
//! Out: outbox messages are published to the rule's exchange (default
//! `amq.topic`) with the remote topic as routing key (`/` and `.` swapped),
//! on a channel in confirm mode; a message is acked in the outbox when its
//! publisher confirm arrives. In: a durable upstream queue named after the
//! client id (`<client_id>.inbox`) is bound with each inbound filter and
//! consumed with manual acks, sent once the local publish is stored. AMQP
//! has no No Local, so our own publishes that come back are recognised by the
//! `x-tether-bridge` header and dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tether_protocols::mapping::{
    mqtt_filter_to_binding_key_string, mqtt_topic_to_routing_key_string,
};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Bridge, Inbound, MARKER};
use crate::core::Core;
use crate::core::queue::{Delivery, PullLimits, PullMode, Wakeup};

/// Runs AMQP bridge `bridge` until `shutdown`, reconnecting with backoff.
pub async fn run(core: Arc<Core>, bridge: Arc<Bridge>, shutdown: CancellationToken) {
    let origin = core.identity(&format!("bridge:{}", bridge.config.name));
    let notify = Arc::new(Notify::new());
    let consumer = bridge.outbox.attach(Wakeup::new(notify.clone()));
    let link = Link {
        core,
        bridge: bridge.clone(),
        origin,
        consumer,
        notify,
    };
    let link = &link;
    super::supervise(&bridge, origin, &shutdown, || link.session()).await;
    bridge.outbox.detach(consumer);
}

struct Link {
    core: Arc<Core>,
    bridge: Arc<Bridge>,
    origin: u64,
    consumer: u64,
    notify: Arc<Notify>,
}

/// `%`-encodes what may not appear raw in an AMQP URI component.
fn uri_part(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Link {
    fn uri(&self) -> String {
        let c = &self.bridge.config;
        let auth = match &c.username {
            Some(u) => format!(
                "{}:{}@",
                uri_part(u),
                uri_part(c.password.as_deref().unwrap_or_default())
            ),
            None => String::new(),
        };
        format!(
            "amqp://{auth}{}/{}?heartbeat={}",
            c.address,
            uri_part(&c.vhost),
            c.keepalive.as_secs()
        )
    }

    /// One connection: returns why it ended.
    async fn session(&self) -> String {
        let cfg = &self.bridge.config;
        let uri = self.uri();
        let connect = Connection::connect(&uri, ConnectionProperties::default());
        let conn = match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return e.to_string(),
            Err(_) => return "connect timed out".into(),
        };
        let ch = match conn.create_channel().await {
            Ok(ch) => ch,
            Err(e) => return format!("channel: {e}"),
        };
        if let Err(e) = ch.confirm_select(ConfirmSelectOptions::default()).await {
            return format!("confirm.select: {e}");
        }
        let mut inbox = match self.subscribe(&ch).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        self.bridge.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(bridge = %cfg.name, address = %cfg.address, "bridge connected");
        let acl = self
            .core
            .auth
            .acl_for(cfg.local_user.as_deref(), &cfg.upstream_client_id());
        // Confirms are awaited by small tasks that report (tag, acked) here.
        let (settled_tx, mut settled) = mpsc::unbounded_channel::<(u64, Result<bool, String>)>();
        let mut inflight = 0usize;
        let window = usize::from(cfg.inflight);
        let mut pulled = Vec::new();
        loop {
            if inflight < window {
                let room = window - inflight;
                pulled.clear();
                self.bridge.outbox.pull(
                    self.consumer,
                    PullLimits {
                        max: room,
                        max_leased: room,
                    },
                    PullMode::Lease { owner: self.origin },
                    &mut pulled,
                );
                for d in pulled.drain(..) {
                    match self.send(&ch, d, &settled_tx).await {
                        Ok(true) => inflight += 1,
                        Ok(false) => {}
                        Err(why) => return why,
                    }
                }
            }
            let room = inflight < window;
            tokio::select! {
                Some((tag, result)) = settled.recv() => {
                    inflight -= 1;
                    match result {
                        Ok(true) => {
                            self.bridge.status.forwarded_out.fetch_add(1, Ordering::Relaxed);
                            self.bridge.outbox.ack(tag);
                        }
                        // A nack: the broker could not take it; it stays in
                        // the outbox (in order) and the connection restarts.
                        Ok(false) => return "upstream nacked a publish".into(),
                        Err(e) => return e,
                    }
                }
                delivery = next_delivery(&mut inbox) => match delivery {
                    Some(Ok(d)) => {
                        let m = inbound(&d);
                        super::publish_inbound(&self.core, &self.bridge, self.origin, Some(&acl), m)
                            .await;
                        if let Err(e) = d.acker.ack(BasicAckOptions::default()).await {
                            return format!("ack: {e}");
                        }
                    }
                    Some(Err(e)) => return format!("consumer: {e}"),
                    None => return "upstream consumer ended".into(),
                },
                _ = self.notify.notified(), if room => {}
            }
        }
    }

    /// Declares and binds the inbox upstream and consumes it (`None` without
    /// inbound rules).
    async fn subscribe(&self, ch: &Channel) -> Result<Option<lapin::Consumer>, String> {
        let cfg = &self.bridge.config;
        let rules: Vec<_> = cfg.rules.iter().filter(|r| r.direction.is_in()).collect();
        if rules.is_empty() {
            return Ok(None);
        }
        let queue = format!("{}.inbox", cfg.upstream_client_id());
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("queue.declare {queue}: {e}"))?;
        for r in rules {
            let exchange = r.exchange.as_deref().unwrap_or("amq.topic");
            let key = mqtt_filter_to_binding_key_string(&r.remote_filter())
                .map_err(|e| format!("filter {}: {e:?}", r.remote_filter()))?;
            ch.queue_bind(
                queue.as_str().into(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("queue.bind {queue} to {exchange} ({key}): {e}"))?;
        }
        ch.basic_qos(cfg.inflight, BasicQosOptions::default())
            .await
            .map_err(|e| format!("basic.qos: {e}"))?;
        let consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("basic.consume {queue}: {e}"))?;
        Ok(Some(consumer))
    }

    /// Publishes one outbox message upstream; `Ok(false)` when it was
    /// settled here instead (it came from this bridge, or no rule covers it).
    async fn send(
        &self,
        ch: &Channel,
        d: Delivery,
        settled: &mpsc::UnboundedSender<(u64, Result<bool, String>)>,
    ) -> Result<bool, String> {
        let Some(tag) = d.tag else { return Ok(false) };
        let cfg = &self.bridge.config;
        let Some(super::Outbound { rule, remote, user }) =
            super::route_out(&self.bridge, self.origin, &d.msg, tag)
        else {
            return Ok(false);
        };
        let mut headers = FieldTable::default();
        for (k, v) in user {
            headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
        }
        headers.insert(
            MARKER.into(),
            AMQPValue::LongString(cfg.name.as_str().into()),
        );
        let mut props = BasicProperties::default().with_headers(headers);
        if rule.qos > 0 && d.msg.qos > 0 {
            props = props.with_delivery_mode(2);
        }
        if let Some(ct) = d.msg.props.as_ref().and_then(|p| p.content_type.as_ref()) {
            props = props.with_content_type(ct.as_ref().into());
        }
        let exchange = rule.exchange.as_deref().unwrap_or("amq.topic");
        let key = mqtt_topic_to_routing_key_string(&remote);
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                &d.msg.payload,
                props,
            )
            .await
            .map_err(|e| format!("basic.publish: {e}"))?;
        let settled = settled.clone();
        tokio::spawn(async move {
            let r = confirm.await.map(|c| c.is_ack()).map_err(|e| e.to_string());
            let _ = settled.send((tag, r));
        });
        Ok(true)
    }
}

async fn next_delivery(
    inbox: &mut Option<lapin::Consumer>,
) -> Option<Result<lapin::message::Delivery, lapin::Error>> {
    match inbox {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// An upstream AMQP delivery as an [`Inbound`] message: the routing key back
/// to an MQTT topic, string headers as user properties.
fn inbound(d: &lapin::message::Delivery) -> Inbound {
    let topic = tether_protocols::mapping::routing_key_to_mqtt_topic_string(d.routing_key.as_str())
        .unwrap_or_default();
    let user_properties = d
        .properties
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .filter_map(|(k, v)| match v {
                    AMQPValue::LongString(s) => Some((
                        k.to_string(),
                        String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    )),
                    AMQPValue::ShortString(s) => Some((k.to_string(), s.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Inbound {
        topic,
        payload: bytes::Bytes::copy_from_slice(&d.data),
        qos: 1,
        user_properties,
        content_type: d.properties.content_type().as_ref().map(|s| s.to_string()),
        ..Inbound::default()
    }
}
