//! The MQTT 5 upstream client of a bridge (rumqttc).
//!
//! One task per bridge: connect (with backoff), subscribe to the inbound
//! filters, then drain the outbox while relaying inbound publishes. An
//! outbox message is leased to this bridge, published upstream, and acked
//! in the outbox only when the upstream's PUBACK arrives (QoS 0 rules: once
//! written to the socket). When the connection ends, every lease still held
//! goes back to the outbox in its original order, so nothing is lost and
//! order is kept; a lease that is never answered returns after the outbox's
//! visibility timeout (`ack_timeout`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, Packet, PubAckReason, PublishProperties,
};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Bridge;
use crate::core::Core;
use crate::core::queue::{Delivery, Wakeup};

/// Runs bridge `bridge` until `shutdown`: connects, forwards, reconnects with
/// bounded exponential backoff.
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
    // The options (and the certificate files) are read again for every
    // connection, so renewed certificates are used from the next one.
    super::supervise(&bridge, &shutdown, || async {
        match options(&link.bridge.config, &link.bridge.client_id) {
            Ok(o) => link.session(o).await,
            Err(why) => why,
        }
    })
    .await;
    bridge.outbox.detach(consumer);
}

fn options(c: &crate::config::BridgeConfig, client_id: &str) -> Result<MqttOptions, String> {
    let (host, port) = super::host_port(&c.address)?;
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(c.keepalive.max(Duration::from_secs(5)))
        // A session the upstream keeps: what it publishes for us while we
        // are away (a restart, a network cut) waits there.
        .set_clean_start(c.session_expiry.is_zero())
        .set_session_expiry_interval(
            (!c.session_expiry.is_zero())
                .then(|| u32::try_from(c.session_expiry.as_secs()).unwrap_or(u32::MAX)),
        )
        .set_manual_acks(true)
        .set_connection_timeout(10)
        .set_outgoing_inflight_upper_limit(c.inflight)
        .set_request_channel_capacity(usize::from(c.inflight) * 2 + 16);
    if let Some(user) = &c.username {
        o.set_credentials(user.clone(), c.password.clone().unwrap_or_default());
    }
    if c.uses_tls() {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(super::tls_config(c)?),
        )));
    }
    Ok(o)
}

/// One bridge's side of the core.
struct Link {
    core: Arc<Core>,
    bridge: Arc<Bridge>,
    consumer: u64,
    notify: Arc<Notify>,
}

/// Outbox leases between the upstream client and the upstream.
#[derive(Default)]
struct Inflight {
    /// Handed to the client, not yet written (its packet id is not known yet).
    unsent: VecDeque<u64>,
    /// Written, awaiting PUBACK, by packet id.
    sent: HashMap<u16, u64>,
}

impl Inflight {
    fn len(&self) -> usize {
        self.unsent.len() + self.sent.len()
    }
}

impl Link {
    /// One connection: returns why it ended.
    async fn session(&self, options: MqttOptions) -> String {
        let cfg = &self.bridge.config;
        let (client, mut events) = AsyncClient::new(options, usize::from(cfg.inflight) * 2 + 16);
        if let Err(why) = connected(&mut events).await {
            return why;
        }
        self.bridge.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(bridge = %cfg.name, address = %cfg.address, "bridge connected");
        // Reloaded at each connection, so ACL changes apply from the next one.
        let acl = self
            .core
            .auth
            .acl_for(cfg.local_user.as_deref(), &self.bridge.client_id);
        let filters: Vec<Filter> = cfg
            .rules
            .iter()
            .filter(|r| r.direction.is_in())
            .map(|r| {
                let mut f = Filter::new(r.remote_filter(), qos(r.qos));
                // The upstream must not echo our own publishes back.
                f.nolocal = true;
                f
            })
            .collect();
        if !filters.is_empty()
            && let Err(e) = client.try_subscribe_many(filters)
        {
            return format!("subscribe: {e}");
        }
        let mut inflight = Inflight::default();
        let mut pulled = Vec::new();
        let window = usize::from(cfg.inflight);
        loop {
            if inflight.len() < window {
                let room = window - inflight.len();
                self.bridge.lease(self.consumer, room, &mut pulled);
                for d in pulled.drain(..) {
                    if let Err(why) = self.send(&client, d, &mut inflight) {
                        return why;
                    }
                }
            }
            let room = inflight.len() < window;
            tokio::select! {
                ev = events.poll() => match ev {
                    Ok(ev) => {
                        if let Some(why) = self.on_event(&client, ev, &mut inflight, &acl).await {
                            return why;
                        }
                    }
                    Err(e) => return e.to_string(),
                },
                _ = self.notify.notified(), if room => {}
            }
        }
    }

    /// Publishes one outbox message upstream, or settles it here when it must
    /// not go (it came from this bridge, or no rule covers it any more).
    fn send(
        &self,
        client: &AsyncClient,
        d: Delivery,
        inflight: &mut Inflight,
    ) -> Result<(), String> {
        let Some(tag) = d.tag else { return Ok(()) };
        let Some(super::Outbound {
            rule,
            remote,
            user,
            expiry_secs,
        }) = super::route_out(&self.bridge, &d.msg, tag)
        else {
            return Ok(());
        };
        let mut props = PublishProperties {
            user_properties: user,
            message_expiry_interval: expiry_secs,
            ..PublishProperties::default()
        };
        if let Some(p) = &d.msg.props {
            props.content_type = p.content_type.as_ref().map(|s| s.to_string());
            props.response_topic = p.response_topic.as_ref().map(|s| s.to_string());
            props.correlation_data = p.correlation_data.clone();
            props.payload_format_indicator = p.payload_is_utf8.then_some(1);
        }
        let qos = qos(rule.qos.min(d.msg.qos));
        client
            .try_publish_with_properties(remote, qos, false, d.msg.payload.clone(), props)
            .map_err(|e| format!("publish: {e}"))?;
        inflight.unsent.push_back(tag);
        Ok(())
    }

    /// Handles one event of the upstream connection; `Some(why)` ends it.
    async fn on_event(
        &self,
        client: &AsyncClient,
        ev: Event,
        inflight: &mut Inflight,
        acl: &crate::auth::ClientAcl,
    ) -> Option<String> {
        let status = &self.bridge.status;
        match ev {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let tag = inflight.unsent.pop_front()?;
                if pkid == 0 {
                    // QoS 0: nothing will acknowledge it.
                    self.bridge.outbox.ack(tag);
                    status.forwarded_out.fetch_add(1, Ordering::Relaxed);
                } else {
                    inflight.sent.insert(pkid, tag);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                let tag = inflight.sent.remove(&ack.pkid)?;
                // A refusal is final (retrying a NOT_AUTHORIZED forever would
                // block the outbox): the message is dropped and logged.
                if !matches!(
                    ack.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                ) {
                    tracing::warn!(bridge = %self.bridge.config.name, reason = ?ack.reason,
                        "upstream refused a message; dropped");
                    *status.last_error.lock() = Some(format!("upstream refused: {:?}", ack.reason));
                } else {
                    status.forwarded_out.fetch_add(1, Ordering::Relaxed);
                }
                self.bridge.outbox.ack(tag);
            }
            Event::Incoming(Packet::Publish(p)) => {
                let props = p.properties.clone().unwrap_or_default();
                let m = super::Inbound {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload.clone(),
                    qos: u8::from(p.qos != QoS::AtMostOnce),
                    retain: p.retain,
                    user_properties: props.user_properties,
                    content_type: props.content_type,
                    response_topic: props.response_topic,
                    correlation_data: props.correlation_data,
                    payload_is_utf8: props.payload_format_indicator == Some(1),
                    expiry_secs: props.message_expiry_interval,
                };
                super::publish_inbound(&self.core, &self.bridge, Some(acl), m).await;
                if p.qos != QoS::AtMostOnce
                    && let Err(e) = client.try_ack(&p)
                {
                    return Some(format!("ack: {e}"));
                }
            }
            Event::Incoming(Packet::Disconnect(d)) => {
                return Some(format!("upstream disconnected: {:?}", d.reason_code));
            }
            _ => {}
        }
        None
    }
}

/// Polls until the upstream's CONNACK: `Err(why)` when refused or unreachable.
async fn connected(events: &mut EventLoop) -> Result<(), String> {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return match ack.code {
                    ConnectReturnCode::Success => Ok(()),
                    code => Err(format!("upstream refused the connection: {code:?}")),
                };
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}
