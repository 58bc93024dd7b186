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
//!
//! With TLS (amqps, as Amazon MQ serves on 5671) the connection uses the
//! bridge's own rustls configuration ([`super::tls_config`]), handed to lapin
//! as a `RustlsConnector`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};
use tether_protocols::mapping::{
    mqtt_filter_to_binding_key_string, mqtt_topic_to_routing_key_string,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Bridge, Inbound};
use crate::core::Core;
use crate::core::queue::{Delivery, Wakeup};

/// Runs AMQP bridge `bridge` until `shutdown`, reconnecting with backoff.
pub async fn run(core: Arc<Core>, bridge: Arc<Bridge>, shutdown: CancellationToken) {
    let notify = Arc::new(Notify::new());
    let consumer = bridge.outbox.attach(Wakeup::new(notify.clone()));
    let link = Link {
        core,
        bridge: bridge.clone(),
        consumer,
        notify,
    };
    let link = &link;
    super::supervise(&bridge, &shutdown, || link.session()).await;
    bridge.outbox.detach(consumer);
}

struct Link {
    core: Arc<Core>,
    bridge: Arc<Bridge>,
    consumer: u64,
    notify: Arc<Notify>,
}

/// Publishes started together; `join_all` polls up to 30 futures in order
/// (above that it switches to an unordered set), which keeps the outbox order.
const BATCH: usize = 30;

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
            "{}://{auth}{}/{}?heartbeat={}",
            if c.uses_tls() { "amqps" } else { "amqp" },
            c.address,
            uri_part(&c.vhost),
            c.keepalive.as_secs()
        )
    }

    /// Opens the upstream connection: plain, or TLS with the bridge's own
    /// rustls configuration (CA, client certificate, ALPN; files read now).
    async fn connect(&self) -> Result<Connection, String> {
        let cfg = &self.bridge.config;
        let uri = self.uri();
        if !cfg.uses_tls() {
            return Connection::connect(&uri, ConnectionProperties::default())
                .await
                .map_err(|e| e.to_string());
        }
        let tls = RustlsConnector::from(Arc::new(super::tls_config(cfg)?));
        let (host, port) = super::host_port(&cfg.address)?;
        let (host, port) = (host.to_owned(), port);
        let uri: AMQPUri = uri.parse().map_err(|e| format!("uri: {e}"))?;
        let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
        let open = async move |_: AMQPUri, rt| -> lapin::Result<_> {
            let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            let tcp = AsyncTcpStream::connect(&rt, addrs).await?;
            Ok(tcp.into_rustls(&tls, &host).await?)
        };
        Connection::connector(uri, runtime, open, ConnectionProperties::default())
            .await
            .map_err(|e| e.to_string())
    }

    /// One connection: returns why it ended.
    async fn session(&self) -> String {
        let cfg = &self.bridge.config;
        let conn =
            match tokio::time::timeout(std::time::Duration::from_secs(10), self.connect()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return e,
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
            .acl_for(cfg.local_user.as_deref(), &self.bridge.client_id);
        // Publishes awaiting their confirm, oldest first. Awaited in order:
        // the outbox is acked in order, and the window bounds the wait.
        let mut pending: VecDeque<(u64, PublisherConfirm)> = VecDeque::new();
        let window = usize::from(cfg.inflight);
        let mut pulled = Vec::new();
        loop {
            if pending.len() < window {
                let room = window - pending.len();
                self.bridge.lease(self.consumer, room, &mut pulled);
                // lapin hands each publish to its I/O thread and waits for
                // the write: awaited one by one, that is a thread round trip
                // per message. Started together (`join_all` of at most
                // `BATCH` polls them in order, and a publish queues its
                // frames on its first poll, so upstream order is the outbox
                // order), one write carries the batch.
                while !pulled.is_empty() {
                    let rest = pulled.split_off(pulled.len().min(BATCH));
                    let batch = std::mem::replace(&mut pulled, rest);
                    let sends = batch.into_iter().map(|d| self.send(&ch, d));
                    for sent in futures_util::future::join_all(sends).await {
                        match sent {
                            Ok(Some(sent)) => pending.push_back(sent),
                            Ok(None) => {}
                            Err(why) => return why,
                        }
                    }
                }
            }
            let room = pending.len() < window;
            tokio::select! {
                result = oldest_confirm(&mut pending), if !pending.is_empty() => {
                    // This confirm and every later one already in (a
                    // broker confirms `multiple` at once), so the window
                    // refills in one batch.
                    let mut result = Some(result);
                    while let Some(r) = result.take() {
                        let Some((tag, _)) = pending.pop_front() else { break };
                        match r {
                            Ok(c) if c.is_ack() => {
                                self.bridge.status.forwarded_out.fetch_add(1, Ordering::Relaxed);
                                self.bridge.outbox.ack(tag);
                            }
                            // A nack: the broker could not take it; it stays in
                            // the outbox (in order) and the connection restarts.
                            Ok(_) => return "upstream nacked a publish".into(),
                            Err(e) => return format!("publisher confirm: {e}"),
                        }
                        result = pending.front_mut().and_then(|(_, c)| c.now_or_never());
                    }
                }
                delivery = next_delivery(&mut inbox) => match delivery {
                    Some(Ok(d)) => {
                        let m = inbound(&d);
                        super::publish_inbound(&self.core, &self.bridge, Some(&acl), m)
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
        let queue = format!("{}.inbox", self.bridge.client_id);
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

    /// Publishes one outbox message upstream: its lease tag and confirm, or
    /// `None` when it was settled here instead (it came from this bridge, or
    /// no rule covers it).
    async fn send(
        &self,
        ch: &Channel,
        d: Delivery,
    ) -> Result<Option<(u64, PublisherConfirm)>, String> {
        let Some(tag) = d.tag else { return Ok(None) };
        let Some(super::Outbound {
            rule,
            remote,
            user,
            expiry_secs,
        }) = super::route_out(&self.bridge, &d.msg, tag)
        else {
            return Ok(None);
        };
        let mut props = BasicProperties::default().with_headers(headers(&user));
        if let Some(secs) = expiry_secs {
            // Per-message TTL in milliseconds, as RabbitMQ's MQTT plugin maps
            // the Message Expiry Interval.
            props = props.with_expiration((u64::from(secs) * 1000).to_string().into());
        }
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
        Ok(Some((tag, confirm)))
    }
}

/// MQTT user properties as AMQP headers: a repeated name (the bridge marker
/// of every hop, say) becomes an array of its values.
fn headers(user: &[(String, String)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (i, (k, _)) in user.iter().enumerate() {
        if user[..i].iter().any(|(seen, _)| seen == k) {
            continue;
        }
        let mut values = user.iter().filter(|(n, _)| n == k).map(|(_, v)| v);
        let value = match (values.next(), values.next()) {
            (Some(v), None) => AMQPValue::LongString(v.as_str().into()),
            _ => AMQPValue::FieldArray(
                user.iter()
                    .filter(|(n, _)| n == k)
                    .map(|(_, v)| AMQPValue::LongString(v.as_str().into()))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        };
        t.insert(k.as_str().into(), value);
    }
    t
}

/// A string header value (or each string in an array) as user property values.
fn header_strings(v: &AMQPValue, out: &mut Vec<String>) {
    match v {
        AMQPValue::LongString(s) => out.push(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => out.push(s.to_string()),
        AMQPValue::FieldArray(a) => {
            for v in a.as_slice() {
                header_strings(v, out);
            }
        }
        _ => {}
    }
}

/// The confirm of the oldest pending publish (pending while there is none).
async fn oldest_confirm(
    pending: &mut VecDeque<(u64, PublisherConfirm)>,
) -> lapin::Result<lapin::Confirmation> {
    match pending.front_mut() {
        Some((_, confirm)) => confirm.await,
        None => std::future::pending().await,
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
    let mut user_properties = Vec::new();
    if let Some(h) = d.properties.headers() {
        let mut values = Vec::new();
        for (k, v) in h.inner() {
            values.clear();
            header_strings(v, &mut values);
            user_properties.extend(values.drain(..).map(|v| (k.to_string(), v)));
        }
    }
    // AMQP `expiration` is a per-message TTL in milliseconds.
    let expiry_secs = d
        .properties
        .expiration()
        .as_ref()
        .and_then(|ms| ms.as_str().parse::<u64>().ok())
        .map(|ms| u32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX));
    Inbound {
        topic,
        payload: bytes::Bytes::copy_from_slice(&d.data),
        qos: 1,
        user_properties,
        content_type: d.properties.content_type().as_ref().map(|s| s.to_string()),
        expiry_secs,
        ..Inbound::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_user_properties_travel_as_header_arrays_and_come_back() {
        let user: Vec<(String, String)> = [
            ("x-tether-bridge", "a@01"),
            ("site", "17"),
            ("x-tether-bridge", "b@02"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let h = headers(&user);
        let inner = h.inner();
        assert_eq!(inner.len(), 2);
        assert!(matches!(
            inner.get("x-tether-bridge"),
            Some(AMQPValue::FieldArray(a)) if a.as_slice().len() == 2
        ));
        let mut back = Vec::new();
        for (k, v) in inner {
            let mut values = Vec::new();
            header_strings(v, &mut values);
            back.extend(values.into_iter().map(|v| (k.to_string(), v)));
        }
        back.sort();
        let mut want = user.clone();
        want.sort();
        assert_eq!(back, want);
    }
}
