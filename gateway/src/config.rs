//! Layered configuration: built-in defaults < TOML file < `TETHER_<SECTION>__<KEY>`
//! environment variables.
//!
//! Every key is documented in `tether.example.toml` at the repository root. Unknown
//! keys are refused, so a typo never silently falls back to a default. This module
//! only parses and validates; it does not bind sockets or touch storage.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole gateway configuration, one field per `[section]` of the TOML file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The MQTT front end.
    pub mqtt: MqttConfig,
    /// The AMQP 0-9-1 front end.
    pub amqp: AmqpConfig,
    /// The HTTP listener (SQS/SNS API, health, admin, metrics).
    pub http: HttpConfig,
    /// Identity of the SQS/SNS API (region, account, access keys).
    pub aws: AwsConfig,
    /// SQS API limits and timings.
    pub sqs: SqsConfig,
    /// SNS delivery to HTTP endpoints.
    pub sns: SnsConfig,
    /// Topic rules routing JSON telemetry into queues, topics or other topics.
    pub rules: Vec<RuleConfig>,
    /// Where and how state is kept.
    pub storage: StorageConfig,
    /// Gateway-wide resource limits.
    pub limits: LimitsConfig,
    /// Users, passwords and access rules shared by every protocol.
    pub auth: AuthConfig,
    /// Log output.
    pub log: LogConfig,
    /// Certificates for the TLS listeners, and client certificate checks.
    pub tls: TlsConfig,
    /// A definitions file applied at start-up (see `crate::definitions`).
    pub definitions: DefinitionsConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Bridges to upstream brokers (`[[bridges]]`, see `docs/bridges.md`).
    pub bridges: Vec<BridgeConfig>,
}

/// `[mqtt]`: the MQTT 3.1.1/5.0 listener and session limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Socket address to listen on; an empty string disables the listener.
    pub listen: String,
    /// Largest MQTT packet accepted (and advertised to v5 clients), in bytes.
    pub max_packet_size: ByteSize,
    /// A connection that sends no CONNECT within this time is closed.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Most simultaneous MQTT connections; further ones are refused.
    pub max_connections: usize,
    /// Largest keepalive (seconds) a client may use; a v5 client asking for more is
    /// told the lower value with Server Keep Alive. 0 means no limit.
    pub max_keep_alive: u16,
    /// Longest session expiry a client may ask for; longer requests are capped.
    #[serde(with = "humantime_serde")]
    pub max_session_expiry: Duration,
    /// Outgoing QoS 1/2 messages in flight per client before waiting for acks (the
    /// window for v3 clients; v5 clients' Receive Maximum is honoured when lower).
    pub max_inflight: u16,
    /// Incoming QoS 1/2 publishes a client may have unacknowledged (advertised to v5
    /// clients as Receive Maximum).
    pub receive_maximum: u16,
    /// Topic aliases accepted from a v5 client (Topic Alias Maximum); 0 disables them.
    pub topic_alias_maximum: u16,
    /// Subscriptions one client may hold.
    pub max_subscriptions_per_client: usize,
    /// QoS 1/2 messages queued per session (online or offline) before the overflow policy applies.
    pub max_queued_messages: usize,
    /// QoS 0 messages buffered per online session; further ones are dropped and counted.
    pub max_queued_qos0: usize,
    /// What happens when a session queue is full.
    pub overflow: OverflowPolicy,
    /// Messages waiting for a connected subscriber at which publishers to it
    /// are paused until it drains to half (0: never; its queue's limits and
    /// `overflow` apply instead). QoS 0 messages also pause them at half of
    /// `max_queued_qos0`.
    pub flow_control_at: usize,
    /// Longest one congestion pauses publishers: a subscriber that drains
    /// nothing for this long no longer slows them.
    #[serde(with = "humantime_serde")]
    pub flow_control_timeout: Duration,
    /// Whether retained messages are kept.
    pub retain_available: bool,
    /// MQTT over TLS (mqtts); active only when `tls.cert` and `tls.key` are set.
    pub tls_listen: String,
    /// MQTT over WebSocket (ws); empty disables it.
    pub ws_listen: String,
    /// MQTT over WebSocket with TLS (wss); empty disables it. Needs `tls.cert`.
    pub wss_listen: String,
    /// The HTTP path of the WebSocket upgrade on `ws_listen` and `wss_listen`.
    pub ws_path: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: "0.0.0.0:1883".into(),
            max_packet_size: ByteSize(1024 * 1024),
            connect_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            max_keep_alive: 0,
            max_session_expiry: Duration::from_secs(24 * 3600),
            max_inflight: 32,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_subscriptions_per_client: 1000,
            max_queued_messages: 10_000,
            max_queued_qos0: 1000,
            overflow: OverflowPolicy::DropOldest,
            flow_control_at: 5000,
            flow_control_timeout: Duration::from_secs(1),
            retain_available: true,
            tls_listen: "0.0.0.0:8883".into(),
            ws_listen: String::new(),
            wss_listen: String::new(),
            ws_path: "/mqtt".into(),
        }
    }
}

/// What a bounded queue does with a new message when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Discard the oldest queued message to make room (counted).
    DropOldest,
    /// Discard the new message (counted).
    DropNewest,
}

/// `[amqp]`: the AMQP 0-9-1 listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Socket address to listen on; an empty string disables the listener.
    pub listen: String,
    /// Virtual hosts clients may open (`/` is always there for MQTT and SQS).
    pub vhosts: Vec<String>,
    /// Largest frame we accept and offer in Tune (clients may ask for less).
    pub frame_max: ByteSize,
    /// Most channels per connection offered in Tune.
    pub channel_max: u16,
    /// Heartbeat interval offered in Tune; the client's choice wins, 0 disables.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Largest message body accepted (larger publishes close the channel with 406).
    pub max_message_size: ByteSize,
    /// A connection that has not completed the handshake by then is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Most simultaneous AMQP connections.
    pub max_connections: usize,
    /// AMQP over TLS (amqps); active only when `tls.cert` and `tls.key` are set.
    pub tls_listen: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            listen: "0.0.0.0:5672".into(),
            vhosts: vec!["/".into()],
            frame_max: ByteSize(131_072),
            channel_max: 2047,
            heartbeat: Duration::from_secs(60),
            max_message_size: ByteSize(16 * 1024 * 1024),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            tls_listen: "0.0.0.0:5671".into(),
        }
    }
}

/// `[http]`: the HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Socket address to listen on; an empty string disables the listener.
    pub listen: String,
    /// HTTPS (same API); active only when `tls.cert` and `tls.key` are set.
    pub tls_listen: String,
    /// Whether `/` and `/dashboard/...` serve the built-in web dashboard.
    pub dashboard: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:9324".into(),
            tls_listen: "0.0.0.0:9325".into(),
            dashboard: true,
        }
    }
}

/// `[aws]`: how the SQS/SNS API presents itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Region in queue URLs and ARNs.
    pub region: String,
    /// Account id in queue URLs and ARNs.
    pub account_id: String,
    /// When set, requests must carry a valid SigV4 signature by one of these
    /// keys; when empty, any signature (or none) is accepted.
    pub access_keys: Vec<AccessKeyConfig>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            access_keys: Vec::new(),
        }
    }
}

/// One `[[aws.access_keys]]` entry for SigV4 verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    /// The access key id (`AKIA...`).
    pub id: String,
    /// The secret access key.
    pub secret: String,
}

/// `[sqs]`: SQS API limits and timings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqsConfig {
    /// Shortest MessageRetentionPeriod accepted (SQS: 60 s; lower it for tests).
    #[serde(with = "humantime_serde")]
    pub minimum_retention: Duration,
    /// How long FIFO deduplication ids are remembered (SQS: 5 minutes).
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Longest WaitTimeSeconds accepted (SQS: 20 s).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for SqsConfig {
    fn default() -> Self {
        SqsConfig {
            minimum_retention: Duration::from_secs(60),
            dedup_window: Duration::from_secs(300),
            max_wait: Duration::from_secs(20),
        }
    }
}

/// `[sns]`: delivery to HTTP/HTTPS subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnsConfig {
    /// Delivery attempts after the first for a failed HTTP delivery.
    pub http_retries: u32,
    /// Delay before the first retry; doubled after each attempt.
    #[serde(with = "humantime_serde")]
    pub http_retry_delay: Duration,
    /// Longest delay between retries.
    #[serde(with = "humantime_serde")]
    pub http_retry_max_delay: Duration,
    /// How long one HTTP delivery may take.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
}

impl Default for SnsConfig {
    fn default() -> Self {
        SnsConfig {
            http_retries: 3,
            http_retry_delay: Duration::from_secs(1),
            http_retry_max_delay: Duration::from_secs(20),
            http_timeout: Duration::from_secs(15),
        }
    }
}

/// One `[[rules]]` entry: an AWS IoT-style topic rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name (for logs).
    pub name: String,
    /// `SELECT ... FROM 'topic/filter' WHERE ...`.
    pub sql: String,
    /// Where matching results go.
    pub actions: Vec<RuleActionConfig>,
}

/// Where a rule sends its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum RuleActionConfig {
    /// Into an SQS queue (created if missing).
    Sqs {
        /// Queue name.
        queue: String,
    },
    /// To an SNS topic.
    Sns {
        /// Topic name.
        topic: String,
    },
    /// Republished to an MQTT topic (`${topic(2)}`-style substitutions allowed).
    Republish {
        /// Target topic.
        topic: String,
    },
}

/// One `[[bridges]]` entry: a client connection to an upstream broker that
/// forwards selected traffic out of and into the local core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Unique name: names the outbox queue (`bridge.<name>.outbox`), logs and
    /// the loop-prevention marker.
    pub name: String,
    /// The upstream's protocol.
    pub kind: BridgeKind,
    /// Upstream `host:port`.
    pub address: String,
    /// Client id used upstream; empty means `tether-<name>-<8 hex digits>`,
    /// the digits stored per gateway (unique across a fleet, stable across restarts).
    #[serde(default)]
    pub client_id: String,
    /// Username for the upstream, if it asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the upstream.
    #[serde(default)]
    pub password: Option<String>,
    /// AMQP virtual host (AMQP bridges only).
    #[serde(default = "bridge_vhost")]
    pub vhost: String,
    /// MQTT keepalive (AMQP heartbeat) towards the upstream.
    #[serde(default = "bridge_keepalive", with = "humantime_serde")]
    pub keepalive: Duration,
    /// MQTT: how long the upstream keeps the bridge's session (its
    /// subscriptions and the QoS 1 messages for it) while the bridge is
    /// disconnected; zero for a clean session each time.
    #[serde(default = "bridge_session_expiry", with = "humantime_serde")]
    pub session_expiry: Duration,
    /// Connect with TLS (on by itself when `ca_file` or `cert_file` is set).
    #[serde(default)]
    pub tls: bool,
    /// PEM file with the CAs that sign the upstream's certificate; without it
    /// the built-in web PKI roots are used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS, e.g. AWS IoT Core).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// ALPN protocols offered, e.g. `["x-amzn-mqtt-ca"]` for AWS IoT Core on 443.
    #[serde(default)]
    pub alpn: Vec<String>,
    /// First reconnect delay; doubled after each failure up to `reconnect_max`.
    #[serde(default = "bridge_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    #[serde(default = "bridge_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Most messages the outbox holds.
    #[serde(default = "bridge_outbox_max")]
    pub outbox_max_messages: usize,
    /// What the outbox does when full.
    #[serde(default)]
    pub outbox_full: OutboxFull,
    /// How long an outbox message stays leased to an upstream publish that
    /// was not acknowledged before it is sent again.
    #[serde(default = "bridge_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Most upstream publishes awaiting acknowledgement.
    #[serde(default = "bridge_inflight")]
    pub inflight: u16,
    /// The local user whose ACL inbound publishes are checked against (as if
    /// that user had published them); none means the anonymous client's.
    #[serde(default)]
    pub local_user: Option<String>,
    /// What is forwarded, and which way.
    #[serde(default)]
    pub rules: Vec<BridgeRuleConfig>,
}

fn bridge_session_expiry() -> Duration {
    Duration::from_secs(3600)
}
fn bridge_vhost() -> String {
    "/".to_owned()
}
fn bridge_keepalive() -> Duration {
    Duration::from_secs(30)
}
fn bridge_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn bridge_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn bridge_outbox_max() -> usize {
    100_000
}
fn bridge_ack_timeout() -> Duration {
    Duration::from_secs(30)
}
fn bridge_inflight() -> u16 {
    32
}

impl BridgeConfig {
    /// Whether the upstream connection uses TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls || self.ca_file.is_some() || self.cert_file.is_some()
    }

    fn validate(&self, i: usize) -> Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(format!(
                "entry {i}: name `{}` must be non-empty letters, digits, `-` or `_`",
                self.name
            ));
        }
        let n = &self.name;
        if self.kind == BridgeKind::Mqtt && self.rules.iter().any(|r| r.exchange.is_some()) {
            return Err(format!(
                "bridge `{n}`: `exchange` is for kind \"amqp\" only"
            ));
        }
        let port_ok = self.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(format!(
                "bridge `{n}`: address `{}` is not host:port",
                self.address
            ));
        }
        if self.session_expiry.as_secs() > u64::from(u32::MAX) {
            return Err(format!(
                "bridge `{n}`: session_expiry is above 4294967295 s"
            ));
        }
        if self.keepalive.as_secs() > u64::from(u16::MAX) {
            return Err(format!("bridge `{n}`: keepalive is above 65535 s"));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(format!("bridge `{n}`: cert_file and key_file go together"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return Err(format!(
                "bridge `{n}`: reconnect_min must be above zero and at most reconnect_max"
            ));
        }
        if self.outbox_max_messages == 0 {
            return Err(format!(
                "bridge `{n}`: outbox_max_messages must be at least 1"
            ));
        }
        if self.inflight == 0 {
            return Err(format!("bridge `{n}`: inflight must be at least 1"));
        }
        if self.ack_timeout < Duration::from_secs(1) {
            return Err(format!("bridge `{n}`: ack_timeout must be at least 1s"));
        }
        if self.rules.is_empty() {
            return Err(format!("bridge `{n}`: has no rules"));
        }
        for (j, r) in self.rules.iter().enumerate() {
            r.validate()
                .map_err(|why| format!("bridge `{n}` rule {j}: {why}"))?;
        }
        Ok(())
    }
}

/// The protocol a bridge speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeKind {
    /// MQTT 5 (rumqttc).
    Mqtt,
    /// AMQP 0-9-1 (lapin, publisher confirms), plain or over TLS.
    Amqp,
}

/// What a bridge's outbox does with a new message when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboxFull {
    /// Drop the oldest waiting message (the freshest telemetry is kept).
    #[default]
    DropOldest,
    /// Refuse the new message (MQTT 5 publishers get a negative PUBACK).
    RejectNew,
}

/// Which way a bridge rule forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeDirection {
    /// Local messages go upstream.
    Out,
    /// Upstream messages come into the local core.
    In,
    /// Both (loops are prevented by the bridge marker).
    Both,
}

impl BridgeDirection {
    /// Forwards local messages upstream.
    pub fn is_out(self) -> bool {
        matches!(self, BridgeDirection::Out | BridgeDirection::Both)
    }

    /// Forwards upstream messages into the core.
    pub fn is_in(self) -> bool {
        matches!(self, BridgeDirection::In | BridgeDirection::Both)
    }
}

/// One `[[bridges.rules]]` entry.
///
/// A topic is rewritten by swapping prefixes: going out, a local topic
/// starting with `local_prefix` becomes `remote_prefix` + the rest; coming
/// in, the reverse. The filters are the pattern with the prefix in front:
/// the local filter is `local_prefix` + `pattern`, the remote one
/// `remote_prefix` + `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeRuleConfig {
    /// Which way this rule forwards.
    pub direction: BridgeDirection,
    /// MQTT topic filter below the prefixes, e.g. `sensors/#`.
    pub pattern: String,
    /// Local topic prefix (e.g. `cmd/`); empty for none.
    #[serde(default)]
    pub local_prefix: String,
    /// Remote topic prefix (e.g. `fleet/edge-17/`); empty for none.
    #[serde(default)]
    pub remote_prefix: String,
    /// QoS upstream (0 or 1; AMQP: 1 is a persistent, confirmed publish).
    #[serde(default = "bridge_qos")]
    pub qos: u8,
    /// AMQP bridges: the upstream exchange published to and bound from
    /// (default `amq.topic`); the routing key is the remote topic with `/`
    /// and `.` swapped, as in Tether's own `amq.topic`.
    #[serde(default)]
    pub exchange: Option<String>,
}

fn bridge_qos() -> u8 {
    1
}

impl BridgeRuleConfig {
    /// The local MQTT filter this rule covers.
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// The remote MQTT filter this rule covers.
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    fn validate(&self) -> Result<(), String> {
        if self.qos > 1 {
            return Err(format!("qos {} is not 0 or 1", self.qos));
        }
        for (what, prefix) in [
            ("local_prefix", &self.local_prefix),
            ("remote_prefix", &self.remote_prefix),
        ] {
            if prefix.contains(['+', '#', '\0']) {
                return Err(format!("{what} `{prefix}` has a wildcard"));
            }
        }
        for filter in [self.local_filter(), self.remote_filter()] {
            if filter.starts_with("$share/") {
                return Err(format!("`{filter}` is a shared subscription"));
            }
            tether_protocols::topic::validate_topic_filter(&filter)
                .map_err(|e| format!("`{filter}` is not a valid topic filter: {e:?}"))?;
        }
        Ok(())
    }
}

/// `[storage]`: where and how durable state is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding the gateway's state; created if missing.
    pub path: PathBuf,
    /// The storage engine: `fjall` (embedded, durable), `redb` (embedded,
    /// durable; needs a build with the `redb` feature) or `memory` (nothing
    /// survives a restart).
    pub engine: StorageEngine,
    /// When writes reach the disk before they are acknowledged.
    pub sync: SyncMode,
    /// With `sync = "interval"`: how often to fsync.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Block cache of the embedded engine.
    pub cache_size: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./tether-data"),
            engine: StorageEngine::Fjall,
            sync: SyncMode::Always,
            sync_interval: Duration::from_millis(100),
            cache_size: ByteSize(64 * 1024 * 1024),
        }
    }
}

/// Which engine keeps durable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageEngine {
    /// The embedded fjall store under `storage.path`.
    Fjall,
    /// The embedded redb store under `storage.path`. Always accepted here;
    /// a binary built without the `redb` feature refuses it at start-up.
    Redb,
    /// Nothing is stored; every restart starts empty.
    Memory,
}

/// When acknowledged writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// fsync before acknowledging (group commit amortises it).
    Always,
    /// Acknowledge once written to the OS; fsync every `sync_interval`. A
    /// crash of tether loses nothing acknowledged; a power loss may lose the
    /// last interval.
    Interval,
}

/// `[limits]`: gateway-wide resource limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// When queued message bytes across the gateway exceed this, publishers are
    /// slowed (their sockets are no longer read) until it falls below again.
    pub memory_high_watermark: ByteSize,
    /// How long shutdown waits for clients to be closed and state flushed.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_high_watermark: ByteSize(1024 * 1024 * 1024),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// `[auth]`: users and access-control rules, shared by every front end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether clients without a username may connect.
    pub allow_anonymous: bool,
    /// Known users.
    pub users: Vec<UserConfig>,
    /// Access rules, evaluated in order; the first rule that matches decides.
    pub acl: Vec<AclRuleConfig>,
    /// The decision when rules exist but none matches.
    pub acl_default: AclEffect,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: true,
            users: Vec::new(),
            acl: Vec::new(),
            acl_default: AclEffect::Deny,
        }
    }
}

/// One `[[auth.users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The username clients log in with.
    pub name: String,
    /// An argon2 PHC string, as printed by `tether hash-password`.
    pub password_hash: String,
    /// RabbitMQ-style tags; `administrator` may use the admin API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One `[[auth.acl]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleConfig {
    /// The username the rule applies to; absent means every user (and anonymous clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The client id the rule applies to; absent means every client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Which operation the rule governs.
    pub action: AclAction,
    /// An MQTT topic filter; `%c` is replaced by the client id and `%u` by the username.
    pub topic: String,
    /// Whether a match allows or denies.
    #[serde(default = "AclEffect::allow")]
    pub effect: AclEffect,
}

/// The operation an ACL rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    /// Publishing to matching topics.
    Publish,
    /// Subscribing to filters covered by the rule's filter.
    Subscribe,
    /// Both.
    All,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclEffect {
    /// The operation is permitted.
    Allow,
    /// The operation is refused.
    Deny,
}

impl AclEffect {
    fn allow() -> Self {
        AclEffect::Allow
    }
}

/// `[definitions]`: exchanges, queues, topics, rules, users and ACLs as code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefinitionsConfig {
    /// A `.toml` or `.json` definitions document applied (idempotently) at
    /// every start, after stored state is recovered; unset: none.
    pub file: Option<PathBuf>,
}

/// `[log]`: log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is not set, e.g. `info` or `tether_gateway=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[tls]`: the certificate the TLS listeners present and how client
/// certificates are checked. Empty `cert` and `key` keep every TLS listener off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file with the CAs that sign client certificates; when set, clients
    /// are asked for a certificate (mutual TLS).
    pub client_ca: PathBuf,
    /// With `client_ca`: whether a client must present a certificate.
    pub client_auth: ClientAuth,
    /// With `client_ca`: the TLS listeners that ask for client certificates
    /// (`mqtts`, `wss`, `amqps`, `https`); the others do not.
    pub client_cert_listeners: Vec<String>,
    /// Which certificate field names the client: the subject's common name,
    /// or the first DNS (else URI) subject alternative name.
    pub identity: IdentityField,
    /// The certificate's identity is the MQTT username (ACL `user` and `%u`);
    /// the certificate authenticates the client and CONNECT credentials are
    /// ignored.
    pub use_identity_as_username: bool,
    /// The certificate's identity is the MQTT client id (`%c`); a CONNECT with
    /// an empty client id gets it, one with another id is refused.
    pub use_identity_as_client_id: bool,
    /// Oldest protocol version accepted: "1.2" or "1.3".
    pub min_version: TlsVersion,
    /// A connection whose handshake has not completed by then is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            client_ca: PathBuf::new(),
            client_auth: ClientAuth::Required,
            client_cert_listeners: vec!["mqtts".into(), "wss".into()],
            identity: IdentityField::Cn,
            use_identity_as_username: false,
            use_identity_as_client_id: false,
            min_version: TlsVersion::V1_2,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// `[metrics]`: Prometheus metrics at `/metrics` on the HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`.
    pub enabled: bool,
    /// One series per SQS/AMQP queue (labels `vhost` and `queue`); when off,
    /// each vhost's queues are summed into one series (`queue="*"`), which
    /// keeps the label set small with very many queues.
    pub per_queue: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            per_queue: true,
        }
    }
}

impl TlsConfig {
    /// Whether a certificate is configured (the TLS listeners are on).
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

/// Whether clients must present a certificate (with `tls.client_ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A handshake without a valid client certificate is refused.
    Required,
    /// A client may connect without a certificate (and then logs in as
    /// usual); one it presents must still be valid.
    Optional,
}

/// The client certificate field that names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityField {
    /// The subject's common name (CN).
    Cn,
    /// The first DNS-name subject alternative name, else the first URI one.
    San,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl Serialize for TlsVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TLS version, \"1.2\" or \"1.3\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TlsVersion, E> {
                match v.trim() {
                    "1.2" => Ok(TlsVersion::V1_2),
                    "1.3" => Ok(TlsVersion::V1_3),
                    other => Err(E::custom(format!(
                        "unknown TLS version `{other}` (expected \"1.2\" or \"1.3\")"
                    ))),
                }
            }
            // `TETHER_TLS__MIN_VERSION=1.3` arrives as a number.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A byte count that may be written as a number or with a unit (`64KiB`, `1MiB`, `2GiB`, `1MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The size as `usize`, saturating on 32-bit hosts.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a size (try 1048576 or 1MiB)"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => return Err(format!("unknown size unit `{other}` in `{text}`")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count such as 1048576 or \"1MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Why a configuration was refused; its `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// The file, environment or a value did not parse.
    #[error("{0}")]
    Invalid(String),
    /// A key parsed but its value is not acceptable.
    #[error("{key}: {reason}")]
    Value {
        /// The dotted key, e.g. `mqtt.listen`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then `file` (if given), then `TETHER_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            // Read the file ourselves so that a missing or unreadable file names itself.
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("TETHER_"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("TETHER")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let layered = builder.build().map_err(|e| describe(file, e))?;
        let config: Config = layered.try_deserialize().map_err(|e| describe(file, e))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, addr) in [
            ("mqtt.listen", &self.mqtt.listen),
            ("amqp.listen", &self.amqp.listen),
            ("http.listen", &self.http.listen),
        ] {
            parse_listen(key, addr)?;
        }
        self.validate_tls()?;
        let a = &self.amqp;
        if a.frame_max.0 < 4096 || a.frame_max.0 > u64::from(u32::MAX) {
            return Err(ConfigError::Value {
                key: "amqp.frame_max",
                reason: format!("{} is outside 4096 ..= 4294967295 bytes", a.frame_max),
            });
        }
        if a.channel_max == 0 {
            return Err(ConfigError::Value {
                key: "amqp.channel_max",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(bad) = a.vhosts.iter().find(|v| v.is_empty() || v.len() > 255) {
            return Err(ConfigError::Value {
                key: "amqp.vhosts",
                reason: format!("`{bad}` is not a valid virtual host name"),
            });
        }
        let m = &self.mqtt;
        if m.max_packet_size.0 < 64 || m.max_packet_size.0 > 268_435_460 {
            return Err(ConfigError::Value {
                key: "mqtt.max_packet_size",
                reason: format!(
                    "{} is outside 64 ..= 268435460 bytes (the MQTT limit)",
                    m.max_packet_size
                ),
            });
        }
        if m.max_inflight == 0 {
            return Err(ConfigError::Value {
                key: "mqtt.max_inflight",
                reason: "must be at least 1".into(),
            });
        }
        if m.receive_maximum == 0 {
            return Err(ConfigError::Value {
                key: "mqtt.receive_maximum",
                reason: "must be at least 1".into(),
            });
        }
        if m.max_queued_messages == 0 {
            return Err(ConfigError::Value {
                key: "mqtt.max_queued_messages",
                reason: "must be at least 1".into(),
            });
        }
        if self.storage.path.as_os_str().is_empty() {
            return Err(ConfigError::Value {
                key: "storage.path",
                reason: "must not be empty".into(),
            });
        }
        if self.storage.sync == SyncMode::Interval && self.storage.sync_interval.is_zero() {
            return Err(ConfigError::Value {
                key: "storage.sync_interval",
                reason: "must be longer than zero with sync = \"interval\"".into(),
            });
        }
        for (i, user) in self.auth.users.iter().enumerate() {
            if user.name.is_empty() {
                return Err(ConfigError::Value {
                    key: "auth.users",
                    reason: format!("entry {i} has an empty name"),
                });
            }
            crate::auth::check_password_hash(&user.password_hash).map_err(|reason| {
                ConfigError::Value {
                    key: "auth.users",
                    reason: format!("user `{}`: password_hash {reason}", user.name),
                }
            })?;
            if let Some(bad) = user.tags.iter().find(|t| t.trim().is_empty()) {
                return Err(ConfigError::Value {
                    key: "auth.users",
                    reason: format!("user `{}`: tag `{bad}` is empty", user.name),
                });
            }
        }
        for rule in &self.rules {
            crate::core::rules::Rule::compile(rule).map_err(|reason| ConfigError::Value {
                key: "rules",
                reason: format!("rule `{}`: {reason}", rule.name),
            })?;
        }
        for (i, rule) in self.auth.acl.iter().enumerate() {
            crate::auth::check_acl_topic(&rule.topic).map_err(|reason| ConfigError::Value {
                key: "auth.acl",
                reason: format!("rule {i} topic `{}`: {reason}", rule.topic),
            })?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, bridge) in self.bridges.iter().enumerate() {
            bridge.validate(i).map_err(|reason| ConfigError::Value {
                key: "bridges",
                reason,
            })?;
            if !names.insert(bridge.name.as_str()) {
                return Err(ConfigError::Value {
                    key: "bridges",
                    reason: format!("bridge name `{}` is used twice", bridge.name),
                });
            }
        }
        if let Some(path) = &self.definitions.file {
            crate::definitions::Format::of(path).map_err(|reason| ConfigError::Value {
                key: "definitions.file",
                reason,
            })?;
        }
        Ok(())
    }

    /// The parsed MQTT listen address, or `None` when the listener is disabled.
    pub fn mqtt_listen(&self) -> Option<SocketAddr> {
        parse_listen("mqtt.listen", &self.mqtt.listen)
            .ok()
            .flatten()
    }

    /// The parsed AMQP listen address, or `None` when the listener is disabled.
    pub fn amqp_listen(&self) -> Option<SocketAddr> {
        parse_listen("amqp.listen", &self.amqp.listen)
            .ok()
            .flatten()
    }

    /// The parsed HTTP listen address, or `None` when the listener is disabled.
    pub fn http_listen(&self) -> Option<SocketAddr> {
        parse_listen("http.listen", &self.http.listen)
            .ok()
            .flatten()
    }

    /// The TLS and WebSocket listeners that are on, as (configuration key,
    /// protocol name, address): `mqtts`, `amqps` and `https` need a
    /// certificate, `ws` does not, `wss` refuses to start without one.
    pub fn tls_listeners(&self) -> Vec<(&'static str, &'static str, SocketAddr)> {
        let tls = self.tls.enabled();
        [
            ("mqtt.tls_listen", "mqtts", &self.mqtt.tls_listen, tls),
            ("amqp.tls_listen", "amqps", &self.amqp.tls_listen, tls),
            ("http.tls_listen", "https", &self.http.tls_listen, tls),
            ("mqtt.ws_listen", "ws", &self.mqtt.ws_listen, true),
            ("mqtt.wss_listen", "wss", &self.mqtt.wss_listen, tls),
        ]
        .into_iter()
        .filter(|(_, _, _, on)| *on)
        .filter_map(|(key, protocol, text, _)| {
            let addr = parse_listen(key, text).ok().flatten()?;
            Some((key, protocol, addr))
        })
        .collect()
    }

    /// Checks `[tls]` and the TLS and WebSocket listener keys (the files
    /// themselves are read when the gateway starts).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        for (key, addr) in [
            ("mqtt.tls_listen", &self.mqtt.tls_listen),
            ("mqtt.ws_listen", &self.mqtt.ws_listen),
            ("mqtt.wss_listen", &self.mqtt.wss_listen),
            ("amqp.tls_listen", &self.amqp.tls_listen),
            ("http.tls_listen", &self.http.tls_listen),
        ] {
            parse_listen(key, addr)?;
        }
        if !self.mqtt.ws_path.starts_with('/') {
            return Err(ConfigError::Value {
                key: "mqtt.ws_path",
                reason: format!("`{}` must start with /", self.mqtt.ws_path),
            });
        }
        let t = &self.tls;
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        let needs_cert = |key: &'static str| ConfigError::Value {
            key,
            reason: "needs tls.cert and tls.key".into(),
        };
        if set(&t.cert) != set(&t.key) {
            return Err(if set(&t.cert) {
                ConfigError::Value {
                    key: "tls.key",
                    reason: "must be set together with tls.cert".into(),
                }
            } else {
                ConfigError::Value {
                    key: "tls.cert",
                    reason: "must be set together with tls.key".into(),
                }
            });
        }
        if !t.enabled() {
            if set(&t.client_ca) {
                return Err(needs_cert("tls.client_ca"));
            }
            if !self.mqtt.wss_listen.trim().is_empty() {
                return Err(needs_cert("mqtt.wss_listen"));
            }
        }
        if !set(&t.client_ca) {
            for (key, on) in [
                ("tls.use_identity_as_username", t.use_identity_as_username),
                ("tls.use_identity_as_client_id", t.use_identity_as_client_id),
            ] {
                if on {
                    return Err(ConfigError::Value {
                        key,
                        reason: "needs tls.client_ca (client certificates)".into(),
                    });
                }
            }
        }
        if let Some(bad) = t
            .client_cert_listeners
            .iter()
            .find(|l| !["mqtts", "wss", "amqps", "https"].contains(&l.as_str()))
        {
            return Err(ConfigError::Value {
                key: "tls.client_cert_listeners",
                reason: format!(
                    "`{bad}` is not a TLS listener (expected \"mqtts\", \"wss\", \"amqps\" or \"https\")"
                ),
            });
        }
        if t.handshake_timeout.is_zero() {
            return Err(ConfigError::Value {
                key: "tls.handshake_timeout",
                reason: "must be longer than zero".into(),
            });
        }
        Ok(())
    }
}

fn parse_listen(key: &'static str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| ConfigError::Value {
        key,
        reason: format!("`{text}` is not a socket address (expected e.g. 0.0.0.0:1883)"),
    })
}

/// Turns the `config` crate's error into one line that names the file and key.
fn describe(file: Option<&Path>, e: config::ConfigError) -> ConfigError {
    let mut text = e.to_string();
    // The config crate spells env-var keys in lower case; say where they came from.
    if let Some(path) = file {
        if !text.contains(&*path.to_string_lossy()) {
            text = format!("{text} (in {} or TETHER_* environment)", path.display());
        }
    } else {
        text = format!("{text} (in TETHER_* environment)");
    }
    ConfigError::Invalid(text.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_listen_on_the_standard_ports() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.mqtt_listen().unwrap().port(), 1883);
        assert_eq!(c.amqp_listen().unwrap().port(), 5672);
        assert_eq!(c.http_listen().unwrap().port(), 9324);
        assert_eq!(c.storage.path, PathBuf::from("./tether-data"));
    }

    #[test]
    fn environment_overrides_a_key() {
        let c = Config::load_from(
            None,
            env(&[
                ("TETHER_MQTT__LISTEN", "127.0.0.1:18830"),
                ("TETHER_MQTT__MAX_INFLIGHT", "7"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.mqtt.listen, "127.0.0.1:18830");
        assert_eq!(c.mqtt.max_inflight, 7);
    }

    #[test]
    fn file_then_environment_layering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "[mqtt]\nlisten = \"127.0.0.1:1\"\nmax_packet_size = \"64KiB\"\n[storage]\npath = \"/x\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&path), env(&[("TETHER_STORAGE__PATH", "/y")])).unwrap();
        assert_eq!(c.mqtt.listen, "127.0.0.1:1");
        assert_eq!(c.mqtt.max_packet_size, ByteSize(65536));
        assert_eq!(c.storage.path, PathBuf::from("/y"));
    }

    #[test]
    fn unknown_key_in_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[mqtt]\nlisten_on = \"127.0.0.1:1\"\n").unwrap();
        let e = Config::load_from(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_on"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn unknown_environment_key_is_refused_by_name() {
        let e = Config::load_from(None, env(&[("TETHER_MQTT__LISTN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn malformed_address_names_the_key() {
        let e = Config::load_from(None, env(&[("TETHER_AMQP__LISTEN", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("amqp.listen:"), "{e}");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let e = Config::load_from(Some(Path::new("/nonexistent/t.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/t.toml"), "{e}");
    }

    #[test]
    fn empty_listen_disables_a_listener() {
        let c = Config::load_from(None, env(&[("TETHER_AMQP__LISTEN", "")])).unwrap();
        assert!(c.amqp_listen().is_none());
    }

    #[test]
    fn storage_engine_parses_every_engine_name() {
        for (name, engine) in [
            ("fjall", StorageEngine::Fjall),
            ("redb", StorageEngine::Redb),
            ("memory", StorageEngine::Memory),
        ] {
            let c = Config::load_from(None, env(&[("TETHER_STORAGE__ENGINE", name)])).unwrap();
            assert_eq!(c.storage.engine, engine);
        }
    }

    #[test]
    fn tls_listeners_stay_off_without_a_certificate() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert!(c.tls_listeners().is_empty());
        let c =
            Config::load_from(None, env(&[("TETHER_MQTT__WS_LISTEN", "127.0.0.1:8083")])).unwrap();
        let on: Vec<_> = c.tls_listeners().iter().map(|l| l.1).collect();
        assert_eq!(on, ["ws"]);
    }

    #[test]
    fn tls_certificate_turns_on_the_default_tls_ports() {
        let c = Config::load_from(
            None,
            env(&[
                ("TETHER_TLS__CERT", "/etc/tether/cert.pem"),
                ("TETHER_TLS__KEY", "/etc/tether/key.pem"),
                ("TETHER_TLS__MIN_VERSION", "1.3"),
            ]),
        )
        .unwrap();
        let on: Vec<_> = c
            .tls_listeners()
            .iter()
            .map(|l| (l.1, l.2.port()))
            .collect();
        assert_eq!(on, [("mqtts", 8883), ("amqps", 5671), ("https", 9325)]);
        assert_eq!(c.tls.min_version, TlsVersion::V1_3);
    }

    #[test]
    fn tls_settings_that_cannot_work_name_their_key() {
        for (pairs, key) in [
            (&[("TETHER_TLS__CERT", "/c.pem")][..], "tls.key:"),
            (&[("TETHER_TLS__KEY", "/k.pem")][..], "tls.cert:"),
            (
                &[("TETHER_TLS__CLIENT_CA", "/ca.pem")][..],
                "tls.client_ca:",
            ),
            (
                &[("TETHER_MQTT__WSS_LISTEN", "127.0.0.1:0")][..],
                "mqtt.wss_listen:",
            ),
            (&[("TETHER_MQTT__WS_PATH", "mqtt")][..], "mqtt.ws_path:"),
            (
                &[("TETHER_MQTT__TLS_LISTEN", "nowhere")][..],
                "mqtt.tls_listen:",
            ),
            (
                &[
                    ("TETHER_TLS__CERT", "/c.pem"),
                    ("TETHER_TLS__KEY", "/k.pem"),
                    ("TETHER_TLS__USE_IDENTITY_AS_USERNAME", "true"),
                ][..],
                "tls.use_identity_as_username:",
            ),
        ] {
            let e = Config::load_from(None, env(pairs)).unwrap_err().to_string();
            assert!(e.starts_with(key), "{e}");
        }
        let e = Config::load_from(None, env(&[("TETHER_TLS__MIN_VERSION", "1.1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1.1"), "{e}");
    }

    #[test]
    fn client_cert_listeners_names_tls_listeners_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "[tls]\nclient_cert_listeners = [\"mqtts\", \"mqtt\"]\n",
        )
        .unwrap();
        let e = Config::load_from(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tls.client_cert_listeners:"), "{e}");
        assert!(e.contains("`mqtt`"), "{e}");
    }

    #[test]
    fn byte_sizes_accept_units() {
        assert_eq!(ByteSize::parse("1MiB").unwrap(), ByteSize(1 << 20));
        assert_eq!(ByteSize::parse("10").unwrap(), ByteSize(10));
        assert!(ByteSize::parse("1XB").is_err());
    }

    fn bridge_config(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_from(Some(&path), env(&[]))
    }

    const BRIDGE: &str = r#"
[[bridges]]
name = "cloud"
kind = "mqtt"
address = "broker.example:8883"
alpn = ["x-amzn-mqtt-ca"]
ca_file = "/etc/ca.pem"

[[bridges.rules]]
direction = "both"
pattern = "sensors/#"
remote_prefix = "edge/"
"#;

    #[test]
    fn bridge_parses_with_defaults() {
        let c = bridge_config(BRIDGE).unwrap();
        let b = &c.bridges[0];
        assert_eq!(b.kind, BridgeKind::Mqtt);
        assert!(b.uses_tls());
        assert_eq!(b.outbox_full, OutboxFull::DropOldest);
        assert_eq!(b.inflight, 32);
        assert_eq!(b.rules[0].qos, 1);
        assert_eq!(b.rules[0].local_filter(), "sensors/#");
        assert_eq!(b.rules[0].remote_filter(), "edge/sensors/#");
        assert!(b.rules[0].direction.is_in() && b.rules[0].direction.is_out());
    }

    #[test]
    fn bridge_unknown_key_is_refused() {
        let e = bridge_config(&BRIDGE.replace("alpn", "alpns")).unwrap_err();
        assert!(e.to_string().contains("alpns"), "{e}");
    }

    #[test]
    fn bridge_bad_values_are_refused_with_a_reason() {
        for (from, to, why) in [
            ("broker.example:8883", "broker.example", "host:port"),
            (
                "pattern = \"sensors/#\"",
                "pattern = \"a/#/b\"",
                "topic filter",
            ),
            (
                "remote_prefix = \"edge/\"",
                "remote_prefix = \"+/\"",
                "wildcard",
            ),
            (
                "direction = \"both\"",
                "direction = \"both\"\nexchange = \"x\"",
                "amqp",
            ),
            ("name = \"cloud\"", "name = \"a b\"", "name"),
            (
                "direction = \"both\"",
                "direction = \"both\"\nqos = 2",
                "qos",
            ),
            ("ca_file", "cert_file", "key_file"),
        ] {
            let e = bridge_config(&BRIDGE.replace(from, to)).unwrap_err();
            assert!(e.to_string().contains(why), "{to}: {e}");
        }
        let twice = format!("{BRIDGE}{BRIDGE}");
        let e = bridge_config(&twice).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The example file in the repository documents every key with its default;
    /// it must stay loadable and agree with the built-in defaults.
    #[test]
    fn example_config_loads_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tether.example.toml");
        let from_file = Config::load_from(Some(&path), Vec::new()).expect("example config loads");
        let defaults = Config::default();
        assert_eq!(
            serde_json::to_value(&from_file).unwrap(),
            serde_json::to_value(&defaults).unwrap(),
            "tether.example.toml and Config::default() disagree"
        );
    }

    /// Every `[[bridges]]` example in the README (AWS IoT Core, Amazon MQ)
    /// is a valid configuration.
    #[test]
    fn readme_bridge_examples_are_valid() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
                .expect("README.md");
        let mut checked = Vec::new();
        for block in readme.split("```toml\n").skip(1) {
            let block = &block[..block.find("```").expect("closed block")];
            if !block.starts_with("[[bridges]]") {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tether.toml");
            std::fs::write(&path, block).unwrap();
            let c = Config::load_from(Some(&path), Vec::new())
                .unwrap_or_else(|e| panic!("README bridge example:\n{block}\n{e}"));
            checked.push((c.bridges[0].kind, c.bridges[0].uses_tls()));
        }
        assert_eq!(
            checked,
            [(BridgeKind::Mqtt, true), (BridgeKind::Amqp, true)],
            "expected the AWS IoT Core and the Amazon MQ examples"
        );
    }
}
