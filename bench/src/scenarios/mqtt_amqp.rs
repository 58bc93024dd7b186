//! `mqtt-amqp`: MQTT publishers to AMQP consumers through `amq.topic`, the
//! path of a device fleet feeding a RabbitMQ-style worker.
//!
//! The scenario declares `--queue` (transient), binds it to `amq.topic` with
//! `<first level>.#` (MQTT's `/` is AMQP's `.` in Tether and in RabbitMQ's
//! MQTT plugin; `#` when the topic template's first level is not a plain
//! word), purges it, and deletes it after the run. Consumers share the queue
//! and consume with no-ack; publishers are the `mqtt` scenario's own
//! (same pacing, stamps, in-flight window and QoS handling).

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tether_protocols::mqtt::{ProtocolVersion, QoS};
use tokio::task::JoinSet;

use crate::Error;
use crate::amqp::{Conn, ConnectOptions, QueueOptions};
use crate::cli::RunArgs;
use crate::latency::{Latencies, STAMP_LEN};
use crate::mqtt as client;
use crate::report::{Rate, Report, redact};
use crate::scenarios::{amqp, mqtt};
use crate::timeline::{Timeline, join_workers};

/// Options of `tether-bench mqtt-amqp`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The broker's MQTT address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt_addr: SocketAddr,
    /// The broker's AMQP 0-9-1 URI, credentials and vhost included.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_uri: String,
    /// MQTT version of the publishers: `3.1.1` or `5`.
    #[arg(long = "mqtt-version", id = "mqtt_version", default_value = "3.1.1", value_parser = client::parse_version)]
    pub version: ProtocolVersion,
    /// MQTT publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// AMQP consuming connections (no-ack, sharing the queue).
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// QoS of the publishes.
    #[arg(long, default_value = "0", value_parser = client::parse_qos)]
    pub qos: QoS,
    /// Payload size in bytes (at least 8: the first 8 carry the send time).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(STAMP_LEN as i64..=(client::MAX_PACKET as i64 / 2)))]
    pub size: u32,
    /// Messages per second per publisher; 0 publishes as fast as the broker
    /// takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Topic each publisher publishes to; `{i}` is its index. Its first
    /// level makes the binding key (`bench/{i}` binds `bench.#`).
    #[arg(long, default_value = "bench/{i}")]
    pub topic: String,
    /// MQTT user name and password (`user:password`; RabbitMQ's MQTT plugin
    /// wants `guest:guest`).
    #[arg(long)]
    pub credentials: Option<String>,
    /// The AMQP queue bound to `amq.topic` (declared, purged, then deleted).
    #[arg(long, default_value = "tether-bench-mqtt-amqp")]
    pub queue: String,
    /// Duration, warm-up and broker process.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The `amq.topic` binding key that catches every topic `template` makes:
/// its first level followed by `.#`, or `#` when that level varies (`{i}`)
/// or is not a plain word.
pub fn binding_key(template: &str) -> String {
    let first = template.split('/').next().unwrap_or("");
    let plain = !first.is_empty() && !first.contains(['{', '}', '+', '#', '.', '*']);
    if plain {
        format!("{first}.#")
    } else {
        "#".to_owned()
    }
}

/// Runs the scenario; see the module docs.
pub async fn run(args: Args) -> Result<Report, Error> {
    if args.publishers == 0 || args.consumers == 0 {
        return Err("mqtt-amqp needs at least one publisher and one consumer".into());
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be 0 (max rate) or a positive number".into());
    }
    let opts = ConnectOptions::from_uri(&args.amqp_uri)?;
    let key = binding_key(&args.topic);
    let mut setup = Conn::connect(&opts).await?;
    amqp::prepare_queue(
        &mut setup,
        &args.queue,
        QueueOptions::default(),
        Some(("amq.topic", &key)),
    )
    .await?;
    let mut consumers = Vec::new();
    for i in 0..args.consumers {
        consumers.push(amqp::open_consumer(&opts, &args.queue, 0, true, i).await?);
    }
    // The publishers are the mqtt scenario's, with no subscribers.
    let pub_args = Arc::new(mqtt::Args {
        addr: args.mqtt_addr,
        version: args.version,
        publishers: args.publishers,
        subscribers: 0,
        topic: args.topic.clone(),
        filter: String::new(),
        qos: args.qos,
        sub_qos: QoS::AtMostOnce,
        size: args.size,
        rate: args.rate,
        inflight: 256,
        source_addresses: 0,
        connect_concurrency: 256,
        credentials: args.credentials.clone(),
        keep_alive: 60,
        client_prefix: "tether-bench-mqtt-amqp".into(),
        run: args.run.clone(),
    });
    let publishers = mqtt::open_all(&pub_args, mqtt::Role::Publisher).await?;

    let timeline = Arc::new(Timeline::start(args.run.warmup, args.run.duration));
    let meters = Arc::new(mqtt::Meters::default());
    let mut workers: JoinSet<Result<Option<Latencies>, Error>> = JoinSet::new();
    for conn in consumers {
        let (timeline, meters) = (timeline.clone(), meters.clone());
        workers.spawn(async move {
            let r = amqp::consumer(conn, true, &timeline, &meters.received).await;
            timeline.stop_on_error(r.map(Some))
        });
    }
    let n = publishers.len();
    for (i, conn) in publishers.into_iter().enumerate() {
        let (timeline, meters, pub_args) = (timeline.clone(), meters.clone(), pub_args.clone());
        workers.spawn(async move {
            let r = mqtt::publisher(conn, &pub_args, i, n, &timeline, &meters).await;
            timeline.stop_on_error(r.map(|_| None))
        });
    }

    let m = &*meters;
    let (counts, window, (broker_cpu, bench_cpu)) = timeline
        .drive_cpu(&[&m.published, &m.acked, &m.received], args.run.broker_pid)
        .await;
    let mut deliver = Latencies::new();
    let joined = join_workers(&mut workers, |l| {
        if let Some(l) = l {
            deliver.merge(&l);
        }
    })
    .await;
    let _ = setup.queue_delete(1, &args.queue).await;
    setup.close().await;
    joined?;

    let secs = window.as_secs_f64();
    let named = |name: &str, n: u64| (name.to_owned(), Rate::over(n, secs));
    let mut rates = vec![named("published", counts[0])];
    let mut totals = vec![("published".to_owned(), m.published.get())];
    if args.qos != QoS::AtMostOnce {
        rates.push(named("acked", counts[1]));
        totals.push(("acked".into(), m.acked.get()));
    }
    rates.push(named("received", counts[2]));
    totals.push(("received".into(), m.received.get()));
    let version = if args.version.is_v5() { "5" } else { "3.1.1" };
    let rate: Value = if args.rate > 0.0 {
        args.rate.into()
    } else {
        "max".into()
    };
    Ok(Report {
        scenario: "mqtt-amqp".into(),
        target: format!("mqtt://{} amqp {}", args.mqtt_addr, redact(&args.amqp_uri)),
        parameters: vec![
            ("version".into(), version.into()),
            ("publishers".into(), args.publishers.into()),
            ("consumers".into(), args.consumers.into()),
            ("qos".into(), args.qos.as_u8().into()),
            ("size".into(), args.size.into()),
            ("rate_per_publisher".into(), rate),
            ("topic".into(), args.topic.clone().into()),
            ("binding_key".into(), key.into()),
            ("queue".into(), args.queue.clone().into()),
        ],
        measured_seconds: secs,
        rates,
        latencies: vec![("deliver".into(), deliver.summary())],
        totals,
        resources: crate::report::resources(
            broker_cpu,
            bench_cpu,
            secs,
            counts[0] + counts[2],
            args.run.broker_pid,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_key_follows_the_topic_templates_first_level() {
        assert_eq!(binding_key("bench/{i}"), "bench.#");
        assert_eq!(binding_key("fleet/{i}/temp"), "fleet.#");
        assert_eq!(binding_key("bench"), "bench.#");
        assert_eq!(binding_key("{i}/x"), "#");
        assert_eq!(binding_key("/abs"), "#");
        assert_eq!(binding_key("a.b/c"), "#");
    }
}
