//! Observability: the metrics registry, the Prometheus exposition at
//! `/metrics`, readiness for `/readyz`, and the one log line every refused
//! connection gets.
//!
//! * [`Metrics`]: counters the front ends bump (messages and bytes in and out
//!   per protocol, auth failures, refused connections, the publish-to-deliver
//!   latency histogram), plus the connection counts of every listener.
//! * [`DeliveryTally`]: what a connection counts locally while it fills one
//!   write batch, flushed into the registry once per batch.
//! * `exposition`: the Prometheus text format 0.0.4 and [`render`], which
//!   also walks the core's queues, sessions and store at scrape time.
//! * `health`: [`Readiness`] and the probe answers given while the store is
//!   still being recovered.
//! * `counted`: an HTTP listener wrapper counting connections and bytes.
//!
//! The hot paths (one task per MQTT/AMQP connection, about 1.7M messages/s on
//! two cores) must not slow down: nothing here is touched per message.
//! Connections count in locals while they handle a read or fill a write
//! batch and add the totals once per batch to a per-thread shard of the
//! registry (so two worker threads never write the same cache line);
//! a scrape sums the shards. Per-queue numbers are not counted here at all:
//! queues already keep them under their own lock
//! ([`QueueStats`](crate::core::queue::QueueStats)), and a
//! scrape reads them.
//!
//! This module reads the core; it never changes it.

mod counted;
mod exposition;
mod health;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::core::queue::Delivery;
use crate::listener::Connections;

pub use counted::{CountedIo, CountedListener};
pub use exposition::{CONTENT_TYPE, Exposition, MetricType, render};
pub use health::{Readiness, answer_probes};

/// A protocol, as the `protocol` label spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1/5 connections.
    Mqtt,
    /// AMQP 0-9-1 connections.
    Amqp,
    /// The HTTP listener as a whole (connections, bytes, SigV4 failures).
    Http,
    /// The SQS API (messages sent and received).
    Sqs,
    /// The SNS API (messages published, deliveries to HTTP endpoints).
    Sns,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Protocol; PROTOCOLS] = [
        Protocol::Mqtt,
        Protocol::Amqp,
        Protocol::Http,
        Protocol::Sqs,
        Protocol::Sns,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Amqp => "amqp",
            Protocol::Http => "http",
            Protocol::Sqs => "sqs",
            Protocol::Sns => "sns",
        }
    }
}

const PROTOCOLS: usize = 5;

/// What a front end counts, per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Messages clients published (MQTT PUBLISH, AMQP basic.publish, SQS
    /// SendMessage entries, SNS Publish entries).
    MessagesReceived,
    /// Messages handed to clients (PUBLISH, basic.deliver/get-ok, SQS
    /// ReceiveMessage results, SNS HTTP deliveries).
    MessagesDelivered,
    /// Bytes read from client sockets.
    BytesReceived,
    /// Bytes written to client sockets.
    BytesSent,
    /// Logins refused for bad credentials or lack of authorization, and
    /// requests with a bad signature.
    AuthFailures,
}

const COUNTS: usize = 5;

impl Count {
    fn index(self, p: Protocol) -> usize {
        p as usize * COUNTS + self as usize
    }
}

/// Upper bounds of the publish-to-deliver latency buckets: 1 ms doubling up
/// to 2^20 ms (about 17.5 minutes). Messages carry their publish time in
/// milliseconds, so 1 ms is the resolution.
pub const LATENCY_BUCKETS: usize = 21;

/// Upper bounds of the store's batch-size buckets (operations per batch):
/// 1 doubling up to 4096.
pub const BATCH_BUCKETS: usize = 13;

/// The bucket of a latency of `ms` milliseconds: the first whose bound
/// (2^i ms) is at least `ms`; [`LATENCY_BUCKETS`] is the overflow (+Inf).
pub fn latency_bucket(ms: u64) -> usize {
    log2_bucket(ms, LATENCY_BUCKETS)
}

/// The first `i` with `v <= 2^i`, or `buckets` when there is none below it.
pub(crate) fn log2_bucket(v: u64, buckets: usize) -> usize {
    let i = if v <= 1 {
        0
    } else {
        (u64::BITS - (v - 1).leading_zeros()) as usize
    };
    i.min(buckets)
}

/// Why a connection was refused: the `reason` field of its log line and the
/// label of `tether_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The opening bytes were not the protocol (bad CONNECT, bad AMQP header,
    /// unexpected method, undecodable frame).
    ProtocolError,
    /// A protocol version, mechanism or feature the gateway does not offer.
    Unsupported,
    /// The handshake did not finish in time.
    Timeout,
    /// Unknown user or wrong password (or anonymous while that is off).
    BadCredentials,
    /// The credentials are fine but the client may not connect.
    NotAuthorized,
    /// The requested AMQP virtual host does not exist.
    VhostNotFound,
    /// The listener's connection limit was reached.
    ConnectionLimit,
    /// The TLS handshake failed (for TLS listeners to report).
    TlsHandshake,
}

const REASONS: usize = 8;

impl RefuseReason {
    /// Every reason, in label order.
    pub const ALL: [RefuseReason; REASONS] = [
        RefuseReason::ProtocolError,
        RefuseReason::Unsupported,
        RefuseReason::Timeout,
        RefuseReason::BadCredentials,
        RefuseReason::NotAuthorized,
        RefuseReason::VhostNotFound,
        RefuseReason::ConnectionLimit,
        RefuseReason::TlsHandshake,
    ];

    /// The label value (and the log line's `reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::ProtocolError => "protocol_error",
            RefuseReason::Unsupported => "unsupported",
            RefuseReason::Timeout => "timeout",
            RefuseReason::BadCredentials => "bad_credentials",
            RefuseReason::NotAuthorized => "not_authorized",
            RefuseReason::VhostNotFound => "vhost_not_found",
            RefuseReason::ConnectionLimit => "connection_limit",
            RefuseReason::TlsHandshake => "tls_handshake",
        }
    }

    /// Whether this is an authentication or authorization failure.
    pub fn is_auth_failure(self) -> bool {
        matches!(
            self,
            RefuseReason::BadCredentials | RefuseReason::NotAuthorized
        )
    }
}

/// One thread's share of the hot counters. Aligned so two shards never share
/// a cache line (128 bytes covers adjacent-line prefetch).
#[repr(align(128))]
struct Shard {
    counts: [AtomicU64; PROTOCOLS * COUNTS],
    /// Per protocol: observations per bucket (not cumulative), the last
    /// being +Inf.
    latency: [[AtomicU64; LATENCY_BUCKETS + 1]; PROTOCOLS],
    latency_sum_ms: [AtomicU64; PROTOCOLS],
}

impl Shard {
    fn new() -> Self {
        Shard {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency_sum_ms: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Hands each thread a shard index once, round robin.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn thread_shard() -> usize {
    SHARD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

/// The publish-to-deliver latency histogram of one protocol, summed over
/// shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Observations per bucket (not cumulative); index [`LATENCY_BUCKETS`]
    /// is the overflow above the last bound.
    pub buckets: [u64; LATENCY_BUCKETS + 1],
    /// Sum of the observed latencies in milliseconds.
    pub sum_ms: u64,
}

impl LatencySnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Totals of one protocol, for the admin API and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProtocolTotals {
    /// Connections open now.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused since start (every reason).
    pub connections_refused: u64,
    /// Messages received from clients.
    pub messages_received: u64,
    /// Messages delivered to clients.
    pub messages_delivered: u64,
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Authentication and authorization failures.
    pub auth_failures: u64,
}

/// Totals per protocol, read from the registry at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// MQTT.
    pub mqtt: ProtocolTotals,
    /// AMQP 0-9-1.
    pub amqp: ProtocolTotals,
    /// The HTTP listener as a whole.
    pub http: ProtocolTotals,
    /// The SQS API.
    pub sqs: ProtocolTotals,
    /// The SNS API.
    pub sns: ProtocolTotals,
}

impl Snapshot {
    /// The totals of `p`.
    pub fn protocol(&self, p: Protocol) -> &ProtocolTotals {
        match p {
            Protocol::Mqtt => &self.mqtt,
            Protocol::Amqp => &self.amqp,
            Protocol::Http => &self.http,
            Protocol::Sqs => &self.sqs,
            Protocol::Sns => &self.sns,
        }
    }

    fn protocol_mut(&mut self, p: Protocol) -> &mut ProtocolTotals {
        match p {
            Protocol::Mqtt => &mut self.mqtt,
            Protocol::Amqp => &mut self.amqp,
            Protocol::Http => &mut self.http,
            Protocol::Sqs => &mut self.sqs,
            Protocol::Sns => &mut self.sns,
        }
    }
}

/// One HTTP API request outcome: service, action and status.
type RequestKey = (&'static str, u16);

/// The gateway's metrics registry; one per [`Core`](crate::core::Core).
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[Shard]>,
    /// Refused connections by protocol and reason (rare: plain atomics).
    refused: [[AtomicU64; REASONS]; PROTOCOLS],
    /// The connection counters of every listener, by protocol.
    listeners: RwLock<Vec<(Protocol, Arc<Connections>)>>,
    /// SQS/SNS API requests: action → (service, status) → count.
    requests: parking_lot::Mutex<std::collections::HashMap<String, Vec<(RequestKey, u64)>>>,
    /// Up, and serving.
    pub readiness: Readiness,
    started_at: std::time::SystemTime,
    /// The configured bridges, read at scrape time and by the admin API.
    bridges: RwLock<crate::bridge::Bridges>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shard")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with a shard per thread that is likely to count
    /// (twice the CPUs, at least 4, at most 64).
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let shards = (cpus * 2).next_power_of_two().clamp(4, 64);
        Metrics {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            refused: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            listeners: RwLock::new(Vec::new()),
            requests: parking_lot::Mutex::new(std::collections::HashMap::new()),
            readiness: Readiness::default(),
            started_at: std::time::SystemTime::now(),
            bridges: RwLock::default(),
        }
    }

    /// Registers the configured bridges (once, at start-up).
    pub fn set_bridges(&self, bridges: crate::bridge::Bridges) {
        *self.bridges.write() = bridges;
    }

    /// The configured bridges (empty without `[[bridges]]`).
    pub fn bridges(&self) -> crate::bridge::Bridges {
        self.bridges.read().clone()
    }

    fn shard(&self) -> &Shard {
        // The shard count is a power of two.
        &self.shards[thread_shard() & (self.shards.len() - 1)]
    }

    /// Adds `n` to counter `c` of protocol `p`. Call once per batch, not per
    /// message.
    #[inline]
    pub fn add(&self, p: Protocol, c: Count, n: u64) {
        if n > 0 {
            self.shard().counts[c.index(p)].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The current value of counter `c` of protocol `p`.
    pub fn get(&self, p: Protocol, c: Count) -> u64 {
        self.shards
            .iter()
            .map(|s| s.counts[c.index(p)].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    /// Registers a listener's connection counter, reported as `p`.
    pub fn track_connections(&self, p: Protocol, connections: Arc<Connections>) {
        self.listeners.write().push((p, connections));
    }

    /// Open and accepted connections of protocol `p`.
    pub fn connections(&self, p: Protocol) -> (u64, u64) {
        self.listeners
            .read()
            .iter()
            .filter(|(q, _)| *q == p)
            .fold((0, 0), |(open, accepted), (_, c)| {
                (open + c.count() as u64, accepted + c.accepted())
            })
    }

    /// Logs the one line a refused connection gets (`connection refused` with
    /// `protocol`, `peer`, `reason` and `detail`, plus the client id and user
    /// when known) and counts it; authentication failures also count in
    /// [`Count::AuthFailures`].
    pub fn refused(
        &self,
        protocol: Protocol,
        peer: SocketAddr,
        reason: RefuseReason,
        detail: &str,
        client_id: Option<&str>,
        user: Option<&str>,
    ) {
        let p = protocol.as_str();
        let r = reason.as_str();
        match reason {
            RefuseReason::BadCredentials
            | RefuseReason::NotAuthorized
            | RefuseReason::VhostNotFound
            | RefuseReason::ConnectionLimit => {
                tracing::warn!(protocol = %p, %peer, reason = %r, detail, client_id, user, "connection refused");
            }
            RefuseReason::ProtocolError
            | RefuseReason::Unsupported
            | RefuseReason::Timeout
            | RefuseReason::TlsHandshake => {
                tracing::info!(protocol = %p, %peer, reason = %r, detail, client_id, user, "connection refused");
            }
        }
        self.count_refused(protocol, reason);
    }

    /// Counts a refused connection without logging it (for callers that log
    /// their own line, such as the TLS handshake).
    pub fn count_refused(&self, protocol: Protocol, reason: RefuseReason) {
        self.refused[protocol as usize][reason as usize].fetch_add(1, Ordering::Relaxed);
        if reason.is_auth_failure() {
            self.add(protocol, Count::AuthFailures, 1);
        }
    }

    /// Connections of protocol `p` refused for `reason`.
    pub fn refused_count(&self, p: Protocol, reason: RefuseReason) -> u64 {
        self.refused[p as usize][reason as usize].load(Ordering::Relaxed)
    }

    /// Counts one SQS/SNS API request. `action` is recorded as given when
    /// `known`, else as `unknown` (so clients cannot grow the label set).
    pub fn count_request(&self, service: &'static str, action: &str, known: bool, status: u16) {
        let action = if known { action } else { "unknown" };
        let key = (service, status);
        let mut map = self.requests.lock();
        let entries = match map.get_mut(action) {
            Some(e) => e,
            None => map.entry(action.to_owned()).or_default(),
        };
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => entries.push((key, 1)),
        }
    }

    /// Every SQS/SNS API request counted so far: (service, action, status,
    /// count), sorted.
    pub fn requests(&self) -> Vec<(&'static str, String, u16, u64)> {
        let map = self.requests.lock();
        let mut out: Vec<_> = map
            .iter()
            .flat_map(|(action, e)| {
                e.iter()
                    .map(move |((svc, status), n)| (*svc, action.clone(), *status, *n))
            })
            .collect();
        out.sort();
        out
    }

    /// The publish-to-deliver histogram of protocol `p`.
    pub fn latency(&self, p: Protocol) -> LatencySnapshot {
        let mut snap = LatencySnapshot {
            buckets: [0; LATENCY_BUCKETS + 1],
            sum_ms: 0,
        };
        for s in self.shards.iter() {
            for (i, b) in s.latency[p as usize].iter().enumerate() {
                snap.buckets[i] += b.load(Ordering::Relaxed);
            }
            snap.sum_ms += s.latency_sum_ms[p as usize].load(Ordering::Relaxed);
        }
        snap
    }

    /// Totals per protocol (for `/api/overview` and the like).
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        for p in Protocol::ALL {
            let (open, accepted) = self.connections(p);
            let t = snap.protocol_mut(p);
            t.connections = open;
            t.connections_accepted = accepted;
            t.connections_refused = RefuseReason::ALL
                .iter()
                .map(|r| self.refused_count(p, *r))
                .sum();
            t.messages_received = self.get(p, Count::MessagesReceived);
            t.messages_delivered = self.get(p, Count::MessagesDelivered);
            t.bytes_received = self.get(p, Count::BytesReceived);
            t.bytes_sent = self.get(p, Count::BytesSent);
            t.auth_failures = self.get(p, Count::AuthFailures);
        }
        snap
    }

    /// When the registry was made (the gateway's start), in seconds since
    /// the Unix epoch.
    pub fn start_time_seconds(&self) -> f64 {
        self.started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

/// Deliveries a connection makes while it fills one write batch: counted in
/// plain fields on the stack and added to the registry by
/// [`DeliveryTally::flush`], once per batch.
///
/// Latency is observed on a message's first delivery from a queue, from the
/// time the gateway accepted it to the time the queue handed it out (both
/// wall-clock milliseconds, read once per pull by the queue anyway), so it
/// includes the time the message waited in the queue.
#[derive(Debug, Clone)]
pub struct DeliveryTally {
    messages: u64,
    sum_ms: u64,
    buckets: [u32; LATENCY_BUCKETS + 1],
}

impl Default for DeliveryTally {
    fn default() -> Self {
        DeliveryTally {
            messages: 0,
            sum_ms: 0,
            buckets: [0; LATENCY_BUCKETS + 1],
        }
    }
}

impl DeliveryTally {
    /// Counts one delivery handed to the client.
    #[inline]
    pub fn observe(&mut self, d: &Delivery) {
        self.messages += 1;
        if d.delivery_count == 1 && d.msg.published_at_ms != 0 {
            let ms = d.first_delivery_ms.saturating_sub(d.msg.published_at_ms);
            self.observe_latency_ms(ms);
        }
    }

    /// Records one publish-to-deliver latency of `ms` milliseconds (without
    /// counting a delivery).
    #[inline]
    pub fn observe_latency_ms(&mut self, ms: u64) {
        self.sum_ms = self.sum_ms.saturating_add(ms);
        let b = &mut self.buckets[latency_bucket(ms)];
        *b = b.saturating_add(1);
    }

    /// Deliveries counted since the last flush.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Adds what was counted to `metrics` as deliveries of `p`, and starts over.
    pub fn flush(&mut self, metrics: &Metrics, p: Protocol) {
        if self.messages == 0 && self.buckets.iter().all(|b| *b == 0) {
            return;
        }
        let shard = metrics.shard();
        if self.messages > 0 {
            shard.counts[Count::MessagesDelivered.index(p)]
                .fetch_add(self.messages, Ordering::Relaxed);
        }
        for (i, n) in self.buckets.iter().enumerate() {
            if *n > 0 {
                shard.latency[p as usize][i].fetch_add(u64::from(*n), Ordering::Relaxed);
            }
        }
        if self.sum_ms > 0 {
            shard.latency_sum_ms[p as usize].fetch_add(self.sum_ms, Ordering::Relaxed);
        }
        *self = DeliveryTally::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_hold_values_up_to_their_bound() {
        // Bounds are 1, 2, 4, 8 ... ms; a value equal to a bound is in it.
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(2), 1);
        assert_eq!(latency_bucket(3), 2);
        assert_eq!(latency_bucket(4), 2);
        assert_eq!(latency_bucket(5), 3);
        assert_eq!(latency_bucket(1 << 20), 20);
        assert_eq!(latency_bucket((1 << 20) + 1), LATENCY_BUCKETS);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS);
    }

    #[test]
    fn counts_from_many_threads_sum_across_shards() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.add(Protocol::Mqtt, Count::MessagesReceived, 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.get(Protocol::Mqtt, Count::MessagesReceived), 24_000);
        assert_eq!(m.get(Protocol::Amqp, Count::MessagesReceived), 0);
        assert_eq!(m.snapshot().mqtt.messages_received, 24_000);
    }

    #[test]
    fn tally_flushes_deliveries_and_latency_once() {
        let m = Metrics::new();
        let mut t = DeliveryTally::default();
        t.observe_latency_ms(0);
        t.observe_latency_ms(3);
        t.observe_latency_ms(3);
        t.observe_latency_ms(5_000_000);
        t.messages = 4;
        t.flush(&m, Protocol::Amqp);
        // Flushing again adds nothing: the tally started over.
        t.flush(&m, Protocol::Amqp);
        assert_eq!(m.get(Protocol::Amqp, Count::MessagesDelivered), 4);
        let l = m.latency(Protocol::Amqp);
        assert_eq!(l.count(), 4);
        assert_eq!(l.buckets[0], 1);
        assert_eq!(l.buckets[2], 2);
        assert_eq!(l.buckets[LATENCY_BUCKETS], 1);
        assert_eq!(l.sum_ms, 5_000_006);
        assert_eq!(m.latency(Protocol::Mqtt).count(), 0);
    }

    #[test]
    fn refusals_count_by_reason_and_auth_failures_by_protocol() {
        let m = Metrics::new();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        m.refused(
            Protocol::Mqtt,
            peer,
            RefuseReason::BadCredentials,
            "bad username or password",
            Some("c1"),
            Some("u"),
        );
        m.refused(
            Protocol::Mqtt,
            peer,
            RefuseReason::Timeout,
            "no CONNECT",
            None,
            None,
        );
        assert_eq!(
            m.refused_count(Protocol::Mqtt, RefuseReason::BadCredentials),
            1
        );
        assert_eq!(m.refused_count(Protocol::Mqtt, RefuseReason::Timeout), 1);
        assert_eq!(m.get(Protocol::Mqtt, Count::AuthFailures), 1);
        let snap = m.snapshot();
        assert_eq!(snap.mqtt.connections_refused, 2);
        assert_eq!(snap.amqp.connections_refused, 0);
    }

    #[test]
    fn requests_keep_unknown_actions_out_of_the_label_set() {
        let m = Metrics::new();
        m.count_request("sqs", "SendMessage", true, 200);
        m.count_request("sqs", "SendMessage", true, 200);
        m.count_request("sqs", "SendMessage", true, 400);
        m.count_request("sqs", "Nonsense1", false, 400);
        m.count_request("sqs", "Nonsense2", false, 400);
        assert_eq!(
            m.requests(),
            vec![
                ("sqs", "SendMessage".to_owned(), 200, 2),
                ("sqs", "SendMessage".to_owned(), 400, 1),
                ("sqs", "unknown".to_owned(), 400, 2),
            ]
        );
    }
}
