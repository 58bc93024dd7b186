//! Bridges to upstream brokers: client connections that carry selected
//! traffic out of the local core to an upstream broker (AWS IoT Core, Amazon
//! MQ, RabbitMQ, Mosquitto, another Tether) and back in. See
//! `docs/bridges.md` for the design.
//!
//! This room owns the per-bridge outbox queues (ordinary durable core queues
//! bound to `amq.topic`), the upstream client tasks and their status. It
//! reaches the core only the way a front end does: routing through
//! `amq.topic`, leasing and acking queue messages. It never touches the MQTT
//! or AMQP front ends, so a gateway without bridges pays nothing.
//!
//! * [`mqtt`]: the MQTT 5 upstream client (rumqttc).
//! * [`amqp`]: the AMQP 0-9-1 upstream client (lapin, publisher confirms).

pub mod amqp;
pub mod mqtt;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BridgeConfig, BridgeRuleConfig, OutboxFull};
use crate::core::Core;
use crate::core::exchange::BindingOptions;
use crate::core::message::KeyForm;
use crate::core::queue::{
    Delivery, FlowControl, LiveSettings, Overflow, PullLimits, PullMode, Queue, QueueLimits,
    QueueOptions,
};
use crate::core::vhost::VHostError;

/// A message from the upstream, as either client hands it over.
#[derive(Debug, Default)]
pub struct Inbound {
    /// The upstream topic (MQTT spelling).
    pub topic: String,
    /// The body.
    pub payload: Bytes,
    /// 0 or 1.
    pub qos: u8,
    /// The MQTT RETAIN flag.
    pub retain: bool,
    /// MQTT user properties or AMQP string headers.
    pub user_properties: Vec<(String, String)>,
    /// MQTT Content Type / AMQP content-type.
    pub content_type: Option<String>,
    /// MQTT Response Topic.
    pub response_topic: Option<String>,
    /// MQTT Correlation Data / AMQP correlation-id.
    pub correlation_data: Option<Bytes>,
    /// MQTT Payload Format Indicator 1.
    pub payload_is_utf8: bool,
    /// MQTT Message Expiry Interval, seconds.
    pub expiry_secs: Option<u32>,
}

/// Publishes an upstream message into the core as a local MQTT client's
/// would be (ACL of `acl`, retained store, topic rules), marked as carried by
/// `bridge`, and returns once it is stored. `false` when it was dropped (no
/// rule, invalid topic, denied, or it carries the marker of one of this
/// gateway's bridges: it left here before, so taking it in would close a loop).
pub async fn publish_inbound(
    core: &Arc<Core>,
    bridge: &Bridge,
    acl: Option<&crate::auth::ClientAcl>,
    m: Inbound,
) -> bool {
    use crate::core::bytestr::ByteStr;
    use crate::core::message::{Message, now_ms};
    use crate::core::props::MessageProperties;
    use std::sync::atomic::Ordering::Relaxed;
    let cfg = &bridge.config;
    let status = &bridge.status;
    let looped = m
        .user_properties
        .iter()
        .any(|(k, v)| k == MARKER && bridge.ours.contains(v));
    if looped {
        status.loops_broken.fetch_add(1, Relaxed);
        return false;
    }
    let local = inbound_topic(&cfg.rules, &m.topic)
        .filter(|t| tether_protocols::topic::validate_topic_name(t).is_ok());
    let Some(local) = local else {
        status.dropped_in.fetch_add(1, Relaxed);
        return false;
    };
    if let Some(acl) = acl
        && !acl.may_publish(&local)
    {
        tracing::debug!(bridge = %cfg.name, topic = %local, "inbound publish denied by ACL");
        status.dropped_in.fetch_add(1, Relaxed);
        return false;
    }
    // Markers of other gateways' bridges stay: each hop adds its own, so a
    // longer loop is broken where it closes.
    let mut user = m.user_properties;
    user.push((MARKER.to_owned(), bridge.marker.clone()));
    let msg = Arc::new(Message {
        id: core.ids.next(),
        routing_key: ByteStr::from(local),
        key_form: KeyForm::Mqtt,
        exchange: ByteStr::from_static("amq.topic"),
        payload: m.payload,
        qos: m.qos.min(1),
        retain: m.retain,
        persistent: m.qos > 0,
        priority: 0,
        published_at_ms: now_ms(),
        expires_at: m
            .expiry_secs
            .map(|s| std::time::Instant::now() + Duration::from_secs(s.into())),
        origin: bridge.origin,
        props: Some(Box::new(MessageProperties::from_mqtt(
            m.content_type.map(ByteStr::from),
            m.payload_is_utf8,
            m.response_topic.map(ByteStr::from),
            m.correlation_data,
            encode_user_properties(&user),
        ))),
    });
    let mut scratch = crate::core::exchange::RouteScratch::default();
    let (_, lsn) = crate::store::tracked(|| {
        crate::mqtt::publish_message(core, &msg, &mut scratch, &bridge.client_id)
    });
    if let Err(e) = crate::store::durable(&*core.store, lsn).await {
        tracing::error!(bridge = %cfg.name, error = %e, "inbound message not stored");
    }
    status.forwarded_in.fetch_add(1, Relaxed);
    true
}

/// Whether an outbox message must stay here: it came in through this
/// bridge (its origin, or its marker after a restart).
pub fn came_from(
    bridge: &Bridge,
    msg: &crate::core::message::Message,
    user: &[(String, String)],
) -> bool {
    msg.origin == bridge.origin || user.iter().any(|(k, v)| k == MARKER && *v == bridge.marker)
}

/// The MQTT topic of an outbox message (AMQP routing keys are mapped back).
pub fn mqtt_topic(msg: &crate::core::message::Message) -> Option<String> {
    match msg.key_form {
        KeyForm::Mqtt => Some(msg.routing_key.to_string()),
        _ => tether_protocols::mapping::routing_key_to_mqtt_topic_string(&msg.routing_key).ok(),
    }
}

/// The MQTT 5 user property (AMQP header) marking a message a bridge carried,
/// once per bridge it went through; the value is [`Bridge::marker`]. A bridge
/// never sends upstream a message carrying its own marker, and a gateway
/// never takes in a message carrying the marker of any of its bridges, which
/// breaks loops when directions overlap, between two bridges to one
/// upstream, and across gateways (as far as upstreams keep user properties).
pub const MARKER: &str = "x-tether-bridge";

/// The marker value of bridge `name` whose stored identity is `origin`:
/// `<name>@<origin in hex>`, so two gateways whose bridges share a name (a
/// fleet of edges all bridging as `cloud`) do not take each other's
/// messages for their own.
pub fn marker(name: &str, origin: u64) -> String {
    format!("{name}@{origin:016x}")
}

/// What a bridge is doing, for logs, metrics and the admin API.
#[derive(Debug, Default)]
pub struct BridgeStatus {
    /// Connected to the upstream right now.
    pub connected: AtomicBool,
    /// Messages the upstream acknowledged.
    pub forwarded_out: AtomicU64,
    /// Upstream messages published into the core.
    pub forwarded_in: AtomicU64,
    /// Outbox messages skipped because this bridge brought them in.
    pub loops_broken: AtomicU64,
    /// Inbound messages dropped (ACL denied, no matching rule).
    pub dropped_in: AtomicU64,
    /// Connection attempts that failed or connections that dropped.
    pub disconnects: AtomicU64,
    /// Why the last connection failed or ended.
    pub last_error: Mutex<Option<String>>,
}

/// One configured bridge.
#[derive(Debug)]
pub struct Bridge {
    /// Its configuration.
    pub config: BridgeConfig,
    /// Its outbox queue (`bridge.<name>.outbox` in vhost `/`).
    pub outbox: Arc<Queue>,
    /// Its live state.
    pub status: Arc<BridgeStatus>,
    /// Stable across restarts (kept in the store): the origin of the
    /// messages it brings in and the owner of its outbox leases.
    pub origin: u64,
    /// Its marker value ([`marker`]).
    pub marker: String,
    /// The client id it uses upstream: `client_id` from the configuration,
    /// or `tether-<name>-<8 hex digits of origin>`, unique per gateway so
    /// edges with the same configuration do not take over each other's
    /// upstream session (AMQP: name their inbox queues apart).
    pub client_id: String,
    /// The marker values of every bridge of this gateway.
    pub ours: Arc<[String]>,
}

impl Bridge {
    /// Messages waiting to go upstream (ready and leased).
    pub fn backlog(&self) -> usize {
        self.outbox.ready_len() + self.outbox.leased_len()
    }

    /// Leases up to `room` outbox messages to outbox consumer `consumer`,
    /// owned by this bridge (so a session's leases can all be returned, in
    /// order, when it ends), into `out` (cleared first).
    pub fn lease(&self, consumer: u64, room: usize, out: &mut Vec<Delivery>) {
        out.clear();
        self.outbox.pull(
            consumer,
            PullLimits {
                max: room,
                max_leased: room,
            },
            PullMode::Lease { owner: self.origin },
            out,
        );
    }
}

/// Every configured bridge (empty without `[[bridges]]`).
#[derive(Debug, Default, Clone)]
pub struct Bridges(pub Arc<Vec<Arc<Bridge>>>);

/// The outbox queue's name for bridge `name`.
pub fn outbox_name(name: &str) -> String {
    format!("bridge.{name}.outbox")
}

/// Whether queue `name` is a bridge's outbox (made by `[[bridges]]`, so left
/// out of definition exports).
pub fn is_outbox(name: &str) -> bool {
    name.strip_prefix("bridge.")
        .and_then(|n| n.strip_suffix(".outbox"))
        .is_some_and(|n| !n.is_empty())
}

/// Creates (or finds, after a restart, with the messages it kept) each
/// bridge's outbox, binds it to its outbound filters, and starts the upstream
/// clients on `tasks`; they stop when `shutdown` is cancelled. With `flow`,
/// an outbox the bridge does not keep up with slows local MQTT publishers
/// down (as a slow subscriber's queue does) instead of filling up. A bridge whose
/// client cannot be set up (an unreadable certificate file, say) is an error
/// naming it, found before any outbox is touched.
pub fn start(
    core: &Arc<Core>,
    configs: &[BridgeConfig],
    flow: Option<FlowControl>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Bridges, String> {
    for config in configs {
        check(config).map_err(|why| format!("bridges: bridge `{}`: {why}", config.name))?;
    }
    let origins: Vec<u64> = configs
        .iter()
        .map(|c| core.identity(&format!("bridge:{}", c.name)))
        .collect();
    let ours: Arc<[String]> = configs
        .iter()
        .zip(&origins)
        .map(|(c, &o)| marker(&c.name, o))
        .collect();
    let mut bridges = Vec::with_capacity(configs.len());
    for (config, &origin) in configs.iter().zip(&origins) {
        let Some(outbox) = outbox(core, config, flow) else {
            continue;
        };
        let bridge = Arc::new(Bridge {
            config: config.clone(),
            outbox,
            status: Arc::default(),
            origin,
            marker: marker(&config.name, origin),
            client_id: if config.client_id.is_empty() {
                format!("tether-{}-{:08x}", config.name, origin >> 32)
            } else {
                config.client_id.clone()
            },
            ours: ours.clone(),
        });
        tracing::info!(
            bridge = %config.name,
            address = %config.address,
            backlog = bridge.backlog(),
            "bridge starting"
        );
        match config.kind {
            crate::config::BridgeKind::Mqtt => {
                tasks.spawn(mqtt::run(core.clone(), bridge.clone(), shutdown.clone()));
            }
            crate::config::BridgeKind::Amqp => {
                tasks.spawn(amqp::run(core.clone(), bridge.clone(), shutdown.clone()));
            }
        }
        bridges.push(bridge);
    }
    let bridges = Bridges(Arc::new(bridges));
    core.metrics.set_bridges(bridges.clone());
    Ok(bridges)
}

fn outbox(
    core: &Arc<Core>,
    config: &BridgeConfig,
    flow: Option<FlowControl>,
) -> Option<Arc<Queue>> {
    let name = outbox_name(&config.name);
    let options = QueueOptions {
        durable: true,
        limits: QueueLimits {
            max_messages: Some(config.outbox_max_messages),
            overflow: match config.outbox_full {
                OutboxFull::DropOldest => Overflow::DropHead,
                OutboxFull::RejectNew => Overflow::RejectPublish,
            },
            ..QueueLimits::default()
        },
        settings: LiveSettings {
            visibility_timeout: Some(config.ack_timeout),
            ..LiveSettings::default()
        },
        flow,
        ..QueueOptions::default()
    };
    let queue = match core.vhost.declare_queue(&name, options, None) {
        Ok((q, _)) => q,
        Err(VHostError::Mismatch(_)) => {
            // The stored outbox was made with other limits: keep it (and its
            // messages) and apply the configured timeout.
            tracing::warn!(bridge = %config.name, queue = %name,
                "stored outbox has other settings than the configuration; keeping the stored limits");
            let q = core.vhost.queue(&name)?;
            q.update_settings(|s| s.visibility_timeout = Some(config.ack_timeout));
            q
        }
        Err(e) => {
            tracing::error!(bridge = %config.name, error = %e, "bridge outbox unusable; bridge not started");
            return None;
        }
    };
    let ex = core.vhost.amq_topic().clone();
    let wanted: Vec<String> = config
        .rules
        .iter()
        .filter(|r| r.direction.is_out())
        .map(|r| r.local_filter())
        .collect();
    // A stored outbox keeps the bindings of the last run: those whose rule
    // has left the configuration go.
    let stale: Vec<String> = queue
        .bound_from
        .lock()
        .iter()
        .filter(|b| b.exchange.as_ptr() == Arc::as_ptr(&ex))
        .map(|b| b.key.to_string())
        .filter(|k| !wanted.contains(k))
        .collect();
    for key in stale {
        tracing::info!(bridge = %config.name, filter = %key, "outbox binding no longer configured; removed");
        core.vhost
            .unbind_queue(&ex, &queue, &key, KeyForm::Mqtt, None);
    }
    for filter in &wanted {
        core.vhost
            .bind_queue(&ex, &queue, filter, KeyForm::Mqtt, BindingOptions::plain());
    }
    Some(queue)
}

/// The remote topic for local `topic` under the first outbound rule that
/// covers it.
pub fn outbound_topic<'a>(
    rules: &'a [BridgeRuleConfig],
    topic: &str,
) -> Option<(&'a BridgeRuleConfig, String)> {
    rules
        .iter()
        .filter(|r| r.direction.is_out())
        .find_map(|r| swap_prefix(r, topic, &r.local_prefix, &r.remote_prefix).map(|t| (r, t)))
}

/// Where an outbox message goes upstream.
#[derive(Debug)]
pub struct Outbound<'a> {
    /// The outbound rule that covers it.
    pub rule: &'a BridgeRuleConfig,
    /// Its topic upstream (prefixes swapped).
    pub remote: String,
    /// Its MQTT user properties, to carry along, this bridge's marker last.
    pub user: Vec<(String, String)>,
    /// Seconds it has left to live, when it expires.
    pub expiry_secs: Option<u32>,
}

/// Decides where outbox delivery `msg` (lease `tag`) goes, for either client.
/// `None` when it was settled here instead: it came in through this bridge
/// (a loop, counted and dropped) or no outbound rule covers it any more
/// (bound by a rule since removed from the configuration).
pub fn route_out<'a>(
    bridge: &'a Bridge,
    msg: &crate::core::message::Message,
    tag: u64,
) -> Option<Outbound<'a>> {
    let mut user = msg
        .props
        .as_ref()
        .map(|p| decode_user_properties(&p.user_properties))
        .unwrap_or_default();
    if came_from(bridge, msg, &user) {
        bridge.status.loops_broken.fetch_add(1, Ordering::Relaxed);
        bridge.outbox.ack(tag);
        return None;
    }
    let Some((rule, remote)) =
        mqtt_topic(msg).and_then(|t| outbound_topic(&bridge.config.rules, &t))
    else {
        bridge.outbox.ack(tag);
        return None;
    };
    user.push((MARKER.to_owned(), bridge.marker.clone()));
    // Rounded up: a message with 0.3 s left must not become one without expiry.
    let expiry_secs = msg.expires_at.map(|at| {
        let left = at.saturating_duration_since(std::time::Instant::now());
        u32::try_from(left.as_millis().div_ceil(1000).max(1)).unwrap_or(u32::MAX)
    });
    Some(Outbound {
        rule,
        remote,
        user,
        expiry_secs,
    })
}

/// The local topic for remote `topic` under the first inbound rule that
/// covers it.
pub fn inbound_topic(rules: &[BridgeRuleConfig], topic: &str) -> Option<String> {
    rules
        .iter()
        .filter(|r| r.direction.is_in())
        .find_map(|r| swap_prefix(r, topic, &r.remote_prefix, &r.local_prefix))
}

fn swap_prefix(rule: &BridgeRuleConfig, topic: &str, from: &str, to: &str) -> Option<String> {
    let rest = topic.strip_prefix(from)?;
    tether_protocols::topic::matches(&rule.pattern, rest).then(|| format!("{to}{rest}"))
}

/// MQTT user properties from their wire form (a run of `0x26` entries, as
/// kept in [`MessageProperties::user_properties`](crate::core::props::MessageProperties)).
/// Stops at the first malformed entry.
pub fn decode_user_properties(mut wire: &[u8]) -> Vec<(String, String)> {
    fn string(b: &mut &[u8]) -> Option<String> {
        let (len, rest) = b.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let s = rest.get(..len)?;
        let s = std::str::from_utf8(s).ok()?.to_owned();
        *b = &rest[len..];
        Some(s)
    }
    let mut out = Vec::new();
    while let Some((&0x26, rest)) = wire.split_first() {
        wire = rest;
        let (Some(k), Some(v)) = (string(&mut wire), string(&mut wire)) else {
            break;
        };
        out.push((k, v));
    }
    out
}

/// The wire form of MQTT user properties; entries too long for MQTT are left out.
pub fn encode_user_properties(props: &[(String, String)]) -> Bytes {
    let mut b = BytesMut::new();
    for (k, v) in props {
        let (Ok(kl), Ok(vl)) = (u16::try_from(k.len()), u16::try_from(v.len())) else {
            continue;
        };
        b.put_u8(0x26);
        b.put_u16(kl);
        b.put_slice(k.as_bytes());
        b.put_u16(vl);
        b.put_slice(v.as_bytes());
    }
    b.freeze()
}

/// `(host, port)` of an upstream `address` (`host:port`, `[v6]:port`).
pub fn host_port(address: &str) -> Result<(&str, u16), String> {
    address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| format!("address `{address}` is not host:port"))
}

/// Whether a client for `config` can be set up: its address parses and, with
/// TLS, its CA, certificate and key files are readable and valid. The reason
/// when not.
pub fn check(config: &BridgeConfig) -> Result<(), String> {
    host_port(&config.address)?;
    if config.uses_tls() {
        tls_config(config)?;
    }
    Ok(())
}

/// The TLS client configuration of an upstream connection, read from the
/// files now (each connection reads them again, so renewed certificates are
/// picked up at the next reconnect): `ca_file` (PEM; the public web roots
/// without it), `cert_file` + `key_file` (client certificate), `alpn`.
pub fn tls_config(c: &BridgeConfig) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &c.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_slice_iter(&read(path)?) {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "ca_file {}: no certificate found (expected PEM `BEGIN CERTIFICATE` blocks)",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match (&c.cert_file, &c.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| format!("key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = c.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(config)
}

/// Keeps one bridge connected until `shutdown`: runs `session` (one upstream
/// connection, which sets `status.connected` once it is up and returns why it
/// ended) again and again, waiting a bounded exponential backoff between
/// attempts, reset after a session that got connected. Every outbox lease a
/// session held goes back to the outbox, in order, when it ends.
pub async fn supervise<F, Fut>(bridge: &Bridge, shutdown: &CancellationToken, mut session: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    use std::sync::atomic::Ordering::Relaxed;
    let name = &bridge.config.name;
    let mut backoff = Backoff::new(bridge.config.reconnect_min, bridge.config.reconnect_max);
    loop {
        let ended = tokio::select! {
            _ = shutdown.cancelled() => None,
            why = session() => Some(why),
        };
        let returned = bridge.outbox.release_owner(bridge.origin);
        let was_connected = bridge.status.connected.swap(false, Relaxed);
        let Some(why) = ended else { break };
        if was_connected {
            backoff.reset();
        }
        bridge.status.disconnects.fetch_add(1, Relaxed);
        let delay = backoff.next_delay();
        tracing::warn!(bridge = %name, error = %why, returned, retry_in = ?delay, "bridge disconnected");
        *bridge.status.last_error.lock() = Some(why);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!(bridge = %name, "bridge stopped");
}

/// Reconnect delays: doubling from `min` to `max`, with up to 25% jitter so
/// many gateways do not reconnect to one upstream in step.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
        (base + jitter).min(self.max)
    }

    /// After a successful connection: back to `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BridgeDirection;

    fn rule(
        direction: BridgeDirection,
        pattern: &str,
        local: &str,
        remote: &str,
    ) -> BridgeRuleConfig {
        BridgeRuleConfig {
            direction,
            pattern: pattern.into(),
            local_prefix: local.into(),
            remote_prefix: remote.into(),
            qos: 1,
            exchange: None,
        }
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            host_port("broker.example:8883"),
            Ok(("broker.example", 8883))
        );
        assert_eq!(host_port("[::1]:5671"), Ok(("::1", 5671)));
        for bad in ["broker.example", ":8883", "host:port", "host:70000"] {
            assert!(host_port(bad).unwrap_err().contains("host:port"), "{bad}");
        }
    }

    #[test]
    fn markers_name_the_bridge_and_its_gateway() {
        assert_eq!(marker("cloud", 0xAB), "cloud@00000000000000ab");
        assert_ne!(marker("cloud", 1), marker("cloud", 2));
    }

    #[test]
    fn prefixes_are_swapped_both_ways() {
        let rules = [
            rule(BridgeDirection::Out, "sensors/#", "", "edge/17/"),
            rule(BridgeDirection::In, "#", "cmd/", "commands/17/"),
        ];
        let (rule, remote) = outbound_topic(&rules, "sensors/t1").expect("an outbound rule");
        assert_eq!((remote.as_str(), rule.qos), ("edge/17/sensors/t1", 1));
        assert!(outbound_topic(&rules, "other/t1").is_none());
        assert_eq!(
            inbound_topic(&rules, "commands/17/reboot"),
            Some("cmd/reboot".into())
        );
        assert_eq!(inbound_topic(&rules, "edge/17/sensors/t1"), None);
    }

    #[test]
    fn user_properties_round_trip_and_tolerate_garbage() {
        let props = vec![
            (MARKER.to_owned(), "cloud".to_owned()),
            ("a".into(), "".into()),
        ];
        let wire = encode_user_properties(&props);
        assert_eq!(decode_user_properties(&wire), props);
        assert_eq!(
            decode_user_properties(&wire[..wire.len() - 3]),
            props[..1].to_vec()
        );
        assert!(decode_user_properties(&[0x26, 0xff]).is_empty());
        assert!(decode_user_properties(&[0x01, 0, 0]).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_bound_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<Duration> = (0..4).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(100) && d[0] <= Duration::from_millis(125));
        assert!(d[1] >= Duration::from_millis(200) && d[1] <= Duration::from_millis(250));
        assert_eq!(d[3], Duration::from_millis(350));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
