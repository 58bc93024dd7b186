//! The Prometheus text exposition format 0.0.4, and [`render`]: every metric
//! family of the gateway, read at scrape time.
//!
//! Each family is written as `# HELP`, `# TYPE`, then its samples; label
//! values are escaped (`\\`, `\"`, `\n`); histograms are cumulative
//! `_bucket{le=...}` lines ending with `le="+Inf"`, then `_sum` and `_count`.

use std::fmt::Write as _;

use super::{BATCH_BUCKETS, Count, LATENCY_BUCKETS, LatencySnapshot, Protocol, RefuseReason};
use crate::core::Core;
use crate::core::queue::{Queue, QueueCounts, QueueStats};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets at restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, sum and count.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts family `name`: its `# HELP` and `# TYPE` lines. Every sample of
    /// the family must follow before the next family starts.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        debug_assert!(valid_name(name), "bad metric name {name}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        push_value(&mut self.out, value);
        self.out.push('\n');
    }

    /// A whole histogram's samples: `buckets` pairs each upper bound with the
    /// number of observations in that bucket alone (not cumulative), the
    /// overflow above the last bound given as `overflow`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        overflow: u64,
        sum: f64,
    ) {
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (bound, n) in buckets {
            cumulative += n;
            le.clear();
            push_value(&mut le, *bound);
            self.out.push_str(&bucket_name);
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        cumulative += overflow;
        self.out.push_str(&bucket_name);
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {cumulative}");
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        self.out.push(' ');
        push_value(&mut self.out, sum);
        let _ = write!(self.out, "\n{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Writes a sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The aggregated series MQTT session queues are reported under (one per
/// metric rather than one per client).
pub const MQTT_SESSIONS_SERIES: &str = "mqtt-session:*";
/// The aggregated series MQTT shared-subscription group queues are reported under.
pub const MQTT_SHARED_SERIES: &str = "mqtt-share:*";

/// One queue series: its labels and its numbers.
struct QueueRow {
    vhost: String,
    queue: String,
    counts: QueueCounts,
}

fn sum_counts(queues: &[std::sync::Arc<Queue>], retired: QueueStats) -> QueueCounts {
    let mut total = QueueCounts {
        stats: retired,
        ..QueueCounts::default()
    };
    for q in queues {
        let c = q.counts();
        total.ready += c.ready;
        total.delayed += c.delayed;
        total.leased += c.leased;
        total.consumers += c.consumers;
        total.stats += c.stats;
    }
    total
}

/// Every metric family of the gateway, in the text format.
///
/// Counters the front ends keep come from `core.metrics`; queue, session,
/// memory and store numbers are read now. With `per_queue` off, queues of
/// the vhosts are summed into one series per vhost (`queue="*"`).
pub fn render(core: &Core, per_queue: bool) -> String {
    let m = &core.metrics;
    let mut e = Exposition::new();
    let version = env!("CARGO_PKG_VERSION");

    e.family(
        "tether_build_info",
        MetricType::Gauge,
        "The running version (value 1).",
    );
    e.sample("tether_build_info", &[("version", version)], 1.0);
    e.family(
        "tether_start_time_seconds",
        MetricType::Gauge,
        "When the gateway started, in seconds since the Unix epoch.",
    );
    e.sample("tether_start_time_seconds", &[], m.start_time_seconds());
    e.family(
        "tether_ready",
        MetricType::Gauge,
        "1 once the store is recovered and every listener is up; 0 while starting or stopping.",
    );
    e.sample(
        "tether_ready",
        &[],
        if m.readiness.is_ready() { 1.0 } else { 0.0 },
    );

    render_bridges(&mut e, &m.bridges());

    // Connections.
    let listeners = [Protocol::Mqtt, Protocol::Amqp, Protocol::Http];
    let conns: Vec<(Protocol, (u64, u64))> =
        listeners.iter().map(|p| (*p, m.connections(*p))).collect();
    e.family(
        "tether_connections",
        MetricType::Gauge,
        "Client connections open now, by protocol.",
    );
    for (p, (open, _)) in &conns {
        e.sample(
            "tether_connections",
            &[("protocol", p.as_str())],
            *open as f64,
        );
    }
    e.family(
        "tether_connections_accepted_total",
        MetricType::Counter,
        "Client connections accepted, by protocol (refused ones included).",
    );
    for (p, (_, accepted)) in &conns {
        e.sample(
            "tether_connections_accepted_total",
            &[("protocol", p.as_str())],
            *accepted as f64,
        );
    }
    e.family(
        "tether_connections_refused_total",
        MetricType::Counter,
        "Client connections refused during the handshake, by protocol and reason.",
    );
    for p in listeners {
        for r in RefuseReason::ALL {
            e.sample(
                "tether_connections_refused_total",
                &[("protocol", p.as_str()), ("reason", r.as_str())],
                m.refused_count(p, r) as f64,
            );
        }
    }
    e.family(
        "tether_auth_failures_total",
        MetricType::Counter,
        "Logins refused for bad credentials or lack of authorization (mqtt, amqp) and API requests with a bad SigV4 signature (http).",
    );
    for p in listeners {
        e.sample(
            "tether_auth_failures_total",
            &[("protocol", p.as_str())],
            m.get(p, Count::AuthFailures) as f64,
        );
    }

    // Messages and bytes.
    let message_protocols = [Protocol::Mqtt, Protocol::Amqp, Protocol::Sqs, Protocol::Sns];
    for (name, count, help) in [
        (
            "tether_messages_received_total",
            Count::MessagesReceived,
            "Messages published by clients, by protocol (MQTT PUBLISH, AMQP basic.publish, SQS messages sent, SNS messages published).",
        ),
        (
            "tether_messages_delivered_total",
            Count::MessagesDelivered,
            "Messages delivered to clients, by protocol (redeliveries included; SNS counts deliveries to HTTP endpoints).",
        ),
    ] {
        e.family(name, MetricType::Counter, help);
        for p in message_protocols {
            e.sample(name, &[("protocol", p.as_str())], m.get(p, count) as f64);
        }
    }
    for (name, count, help) in [
        (
            "tether_received_bytes_total",
            Count::BytesReceived,
            "Bytes read from client connections, by protocol.",
        ),
        (
            "tether_sent_bytes_total",
            Count::BytesSent,
            "Bytes written to client connections, by protocol.",
        ),
    ] {
        e.family(name, MetricType::Counter, help);
        for p in listeners {
            e.sample(name, &[("protocol", p.as_str())], m.get(p, count) as f64);
        }
    }
    e.family(
        "tether_publish_to_deliver_seconds",
        MetricType::Histogram,
        "Time from a message's publish to its first delivery from a queue (waiting in the queue included), by delivering protocol; 1 ms resolution.",
    );
    let bounds: Vec<f64> = (0..LATENCY_BUCKETS)
        .map(|i| (1u64 << i) as f64 / 1000.0)
        .collect();
    for p in [Protocol::Mqtt, Protocol::Amqp, Protocol::Sqs] {
        let LatencySnapshot { buckets, sum_ms } = m.latency(p);
        let pairs: Vec<(f64, u64)> = bounds
            .iter()
            .copied()
            .zip(buckets.iter().copied())
            .collect();
        e.histogram(
            "tether_publish_to_deliver_seconds",
            &[("protocol", p.as_str())],
            &pairs,
            buckets[LATENCY_BUCKETS],
            sum_ms as f64 / 1000.0,
        );
    }
    let requests = m.requests();
    e.family(
        "tether_http_requests_total",
        MetricType::Counter,
        "SQS and SNS API requests, by service, action and HTTP status.",
    );
    for (svc, action, status, n) in &requests {
        let status = status.to_string();
        e.sample(
            "tether_http_requests_total",
            &[("service", svc), ("action", action), ("status", &status)],
            *n as f64,
        );
    }

    // Queues.
    let mut rows: Vec<QueueRow> = Vec::new();
    let mut vhosts: Vec<_> = core.vhosts.values().collect();
    vhosts.sort_by(|a, b| a.name().cmp(b.name()));
    for v in vhosts {
        let mut queues = v.queues();
        queues.sort_by(|a, b| a.name().cmp(b.name()));
        if per_queue {
            for q in queues {
                rows.push(QueueRow {
                    vhost: v.name().to_string(),
                    queue: q.name().to_string(),
                    counts: q.counts(),
                });
            }
        } else if !queues.is_empty() {
            rows.push(QueueRow {
                vhost: v.name().to_string(),
                queue: "*".to_owned(),
                counts: sum_counts(&queues, QueueStats::default()),
            });
        }
    }
    let census = core.sessions.queue_census();
    let default_vhost = core.vhost.name().to_string();
    rows.push(QueueRow {
        vhost: default_vhost.clone(),
        queue: MQTT_SESSIONS_SERIES.to_owned(),
        counts: sum_counts(&census.sessions, census.sessions_retired),
    });
    rows.push(QueueRow {
        vhost: default_vhost,
        queue: MQTT_SHARED_SERIES.to_owned(),
        counts: sum_counts(&census.groups, census.groups_retired),
    });
    type Field = fn(&QueueCounts) -> u64;
    let gauges: [(&str, &str, Field); 4] = [
        (
            "tether_queue_messages_ready",
            "Messages ready for delivery (the queue depth), by vhost and queue.",
            |c| c.ready as u64,
        ),
        (
            "tether_queue_messages_delayed",
            "Messages not yet visible (SQS DelaySeconds), by vhost and queue.",
            |c| c.delayed as u64,
        ),
        (
            "tether_queue_messages_inflight",
            "Messages delivered and not yet acknowledged (leased; SQS in flight), by vhost and queue.",
            |c| c.leased as u64,
        ),
        (
            "tether_queue_consumers",
            "Consumers attached, by vhost and queue.",
            |c| c.consumers as u64,
        ),
    ];
    for (name, help, field) in gauges {
        e.family(name, MetricType::Gauge, help);
        for r in &rows {
            e.sample(
                name,
                &[("vhost", &r.vhost), ("queue", &r.queue)],
                field(&r.counts) as f64,
            );
        }
    }
    let counters: [(&str, &str, Field); 4] = [
        (
            "tether_queue_messages_enqueued_total",
            "Messages accepted into the queue, by vhost and queue.",
            |c| c.stats.enqueued,
        ),
        (
            "tether_queue_messages_delivered_total",
            "Messages handed out by the queue (redeliveries included), by vhost and queue.",
            |c| c.stats.delivered,
        ),
        (
            "tether_queue_messages_acked_total",
            "Messages acknowledged (deleted by SQS DeleteMessage), by vhost and queue.",
            |c| c.stats.acked,
        ),
        (
            "tether_queue_messages_dead_lettered_total",
            "Messages moved to a dead-letter queue or exchange (expiry, rejection, maxReceiveCount), by vhost and queue.",
            |c| c.stats.dead_lettered,
        ),
    ];
    for (name, help, field) in counters {
        e.family(name, MetricType::Counter, help);
        for r in &rows {
            e.sample(
                name,
                &[("vhost", &r.vhost), ("queue", &r.queue)],
                field(&r.counts) as f64,
            );
        }
    }
    e.family(
        "tether_queue_messages_dropped_total",
        MetricType::Counter,
        "Messages dropped or refused by the queue, by vhost, queue and reason (overflow: queue full; no_consumer: QoS 0 for an offline session; rejected: refused under reject-publish; expired: TTL passed).",
    );
    let reasons: [(&str, Field); 4] = [
        ("overflow", |c| c.stats.dropped_overflow),
        ("no_consumer", |c| c.stats.dropped_no_consumer),
        ("rejected", |c| c.stats.rejected),
        ("expired", |c| c.stats.expired),
    ];
    for r in &rows {
        for (reason, field) in reasons {
            e.sample(
                "tether_queue_messages_dropped_total",
                &[("vhost", &r.vhost), ("queue", &r.queue), ("reason", reason)],
                field(&r.counts) as f64,
            );
        }
    }

    // The core's other state.
    e.family(
        "tether_mqtt_sessions",
        MetricType::Gauge,
        "MQTT sessions, online and offline.",
    );
    e.sample("tether_mqtt_sessions", &[], core.sessions.len() as f64);
    e.family(
        "tether_mqtt_retained_messages",
        MetricType::Gauge,
        "Retained MQTT messages.",
    );
    e.sample(
        "tether_mqtt_retained_messages",
        &[],
        core.retained.len() as f64,
    );
    e.family(
        "tether_memory_queued_bytes",
        MetricType::Gauge,
        "Bytes of messages held in memory across the gateway.",
    );
    e.sample("tether_memory_queued_bytes", &[], core.memory.used() as f64);
    e.family(
        "tether_memory_high_watermark_bytes",
        MetricType::Gauge,
        "limits.memory_high_watermark: above it publishers are paused.",
    );
    e.sample(
        "tether_memory_high_watermark_bytes",
        &[],
        core.memory.high_watermark() as f64,
    );

    // Storage.
    let store = core.store.stats();
    e.family(
        "tether_store_batch_operations",
        MetricType::Histogram,
        "Operations per batch written by the store's group commit (_count: batches, _sum: operations).",
    );
    let pairs: Vec<(f64, u64)> = (0..BATCH_BUCKETS)
        .map(|i| ((1u64 << i) as f64, store.batch_sizes[i]))
        .collect();
    e.histogram(
        "tether_store_batch_operations",
        &[],
        &pairs,
        store.batch_sizes[BATCH_BUCKETS],
        store.ops as f64,
    );
    e.family(
        "tether_store_fsyncs_total",
        MetricType::Counter,
        "fsyncs the store issued.",
    );
    e.sample("tether_store_fsyncs_total", &[], store.syncs as f64);
    e.family(
        "tether_store_healthy",
        MetricType::Gauge,
        "1 while the store accepts writes; 0 after a write failed (writes are refused until a restart).",
    );
    e.sample(
        "tether_store_healthy",
        &[],
        if core.store.health().is_ok() {
            1.0
        } else {
            0.0
        },
    );
    if core.store.is_persistent() {
        e.family(
            "tether_store_disk_bytes",
            MetricType::Gauge,
            "Bytes the store's files take on disk.",
        );
        e.sample(
            "tether_store_disk_bytes",
            &[],
            core.store.disk_usage() as f64,
        );
    }
    e.finish()
}

/// The bridges' families, present only when bridges are configured.
fn render_bridges(e: &mut Exposition, bridges: &crate::bridge::Bridges) {
    use std::sync::atomic::Ordering::Relaxed;
    if bridges.0.is_empty() {
        return;
    }
    e.family(
        "tether_bridge_connected",
        MetricType::Gauge,
        "1 while the bridge is connected to its upstream, by bridge.",
    );
    for b in bridges.0.iter() {
        let up = b.status.connected.load(Relaxed);
        e.sample(
            "tether_bridge_connected",
            &[("bridge", &b.config.name)],
            if up { 1.0 } else { 0.0 },
        );
    }
    e.family(
        "tether_bridge_backlog_messages",
        MetricType::Gauge,
        "Messages in the bridge's outbox not yet acknowledged upstream.",
    );
    for b in bridges.0.iter() {
        let n = b.backlog() as f64;
        e.sample(
            "tether_bridge_backlog_messages",
            &[("bridge", &b.config.name)],
            n,
        );
    }
    e.family(
        "tether_bridge_forwarded_total",
        MetricType::Counter,
        "Messages forwarded: out (acknowledged upstream) and in (published locally).",
    );
    for b in bridges.0.iter() {
        for (dir, v) in [
            ("out", &b.status.forwarded_out),
            ("in", &b.status.forwarded_in),
        ] {
            let n = v.load(Relaxed) as f64;
            e.sample(
                "tether_bridge_forwarded_total",
                &[("bridge", &b.config.name), ("direction", dir)],
                n,
            );
        }
    }
    for (name, help, pick) in [
        (
            "tether_bridge_loops_broken_total",
            "Outbox messages not sent back upstream because this bridge brought them in.",
            (|b: &crate::bridge::Bridge| b.status.loops_broken.load(Relaxed))
                as fn(&crate::bridge::Bridge) -> u64,
        ),
        (
            "tether_bridge_inbound_dropped_total",
            "Upstream messages dropped: no rule covers the topic, or the ACL denies it.",
            |b| b.status.dropped_in.load(Relaxed),
        ),
        (
            "tether_bridge_disconnects_total",
            "Failed connection attempts and dropped connections to the upstream.",
            |b| b.status.disconnects.load(Relaxed),
        ),
    ] {
        e.family(name, MetricType::Counter, help);
        for b in bridges.0.iter() {
            e.sample(name, &[("bridge", &b.config.name)], pick(b) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_writes_help_then_type() {
        let mut e = Exposition::new();
        e.family(
            "tether_x_total",
            MetricType::Counter,
            "Things.\nMore \\ text.",
        );
        e.sample("tether_x_total", &[], 3.0);
        assert_eq!(
            e.finish(),
            "# HELP tether_x_total Things.\\nMore \\\\ text.\n# TYPE tether_x_total counter\ntether_x_total 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new();
        e.sample("m", &[("queue", "a\"b\\c\nd"), ("vhost", "/")], 1.5);
        assert_eq!(e.finish(), "m{queue=\"a\\\"b\\\\c\\nd\",vhost=\"/\"} 1.5\n");
    }

    #[test]
    fn values_print_as_integers_or_floats_or_specials() {
        let mut s = String::new();
        for v in [
            0.0,
            42.0,
            0.25,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e20,
        ] {
            push_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0 42 0.25 +Inf -Inf NaN 100000000000000000000 ");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut e = Exposition::new();
        e.family("h_seconds", MetricType::Histogram, "H.");
        e.histogram(
            "h_seconds",
            &[("protocol", "mqtt")],
            &[(0.001, 2), (0.002, 0), (0.004, 3)],
            1,
            0.5,
        );
        assert_eq!(
            e.finish(),
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{protocol=\"mqtt\",le=\"0.001\"} 2\n\
             h_seconds_bucket{protocol=\"mqtt\",le=\"0.002\"} 2\n\
             h_seconds_bucket{protocol=\"mqtt\",le=\"0.004\"} 5\n\
             h_seconds_bucket{protocol=\"mqtt\",le=\"+Inf\"} 6\n\
             h_seconds_sum{protocol=\"mqtt\"} 0.5\n\
             h_seconds_count{protocol=\"mqtt\"} 6\n"
        );
    }

    #[test]
    fn metric_names_are_checked() {
        assert!(valid_name("tether_queue_messages_ready"));
        assert!(valid_name("a:b_c9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn render_covers_every_family_once_with_help_and_type() {
        let core = crate::core::Core::new(
            &crate::config::Config::default(),
            std::sync::Arc::new(crate::store::memory::MemoryStore::default()),
        )
        .expect("core");
        let text = render(&core, true);
        let mut families = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                let ty = lines.next().expect("TYPE follows HELP");
                assert!(
                    ty.starts_with(&format!("# TYPE {name} ")),
                    "{ty} after HELP {name}"
                );
                assert!(!families.contains(&name), "{name} twice");
                families.push(name);
            } else {
                let name = families.last().expect("a sample before any family");
                assert!(
                    line.starts_with(name.as_str()),
                    "sample {line} outside family {name}"
                );
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
            }
        }
        for f in [
            "tether_connections",
            "tether_messages_received_total",
            "tether_publish_to_deliver_seconds",
            "tether_queue_messages_ready",
            "tether_queue_messages_dropped_total",
            "tether_store_batch_operations",
            "tether_store_fsyncs_total",
            "tether_auth_failures_total",
        ] {
            assert!(families.iter().any(|n| n == f), "{f} missing");
        }
        // Counters end in _total; the MQTT aggregate series are there.
        assert!(
            text.contains("tether_queue_messages_ready{vhost=\"/\",queue=\"mqtt-session:*\"} 0")
        );
        assert!(text.contains("tether_ready 0"));
    }
}
