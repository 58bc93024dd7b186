//! `amqp-durable`: durable publish with publisher confirms, AMQP 0-9-1.
//!
//! N publishers, each on its own connection and channel in confirm mode,
//! publish persistent messages (delivery mode 2) of a fixed size to a durable
//! queue through the default exchange, keeping at most `confirm_window`
//! messages unconfirmed each. M consumers, each on its own connection, consume
//! with a prefetch limit and acknowledge every message on its own. The queue
//! is declared and purged before the run and deleted after it.
//!
//! This is the storage benchmark: a confirm may only be sent once the message
//! is on disk, so confirmed msg/s and confirm latency measure how well the
//! broker batches fsyncs.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::cli::RunArgs;
use crate::latency::Latencies;
use crate::report::{Rate, Report, redact};
use crate::timeline::{Meter, Timeline, join_workers};

/// How long a publisher waits for any one confirm before giving up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `tether-bench amqp-durable`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The broker's AMQP 0-9-1 URI, credentials and vhost included
    /// (`amqp://user:pass@host:5672/%2f`).
    #[arg(long, default_value = "amqp://127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Publishing connections (one channel each, in confirm mode).
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Consuming connections (one channel and one consumer each).
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Message body size in bytes. Bodies are pseudo-random bytes, so a
    /// store that compresses gains nothing it would not gain in production
    /// on already-compressed or encrypted payloads.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Most unconfirmed messages per publisher.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub confirm_window: u32,
    /// Prefetch (basic.qos) per consumer; 0 means unlimited.
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,
    /// The durable queue to publish to (declared, purged, then deleted).
    #[arg(long, default_value = "tether-bench.durable")]
    pub queue: String,
    /// `x-queue-type` to declare the queue with (e.g. `classic`, `quorum`);
    /// none by default (the broker's default type).
    #[arg(long)]
    pub queue_type: Option<String>,
    /// Leave the queue (and what is left in it) after the run.
    #[arg(long)]
    pub keep_queue: bool,
    /// Duration and warm-up.
    #[command(flatten)]
    pub run: RunArgs,
}

/// What the workers count.
#[derive(Debug, Default)]
struct Meters {
    published: Meter,
    confirmed: Meter,
    nacked: Meter,
    consumed: Meter,
}

/// What a worker hands back: publishers their confirm latencies.
type Outcome = Result<Option<Latencies>, Error>;

/// Runs the scenario; see the module docs.
pub async fn run(args: Args) -> Result<Report, Error> {
    if args.publishers == 0 && args.consumers == 0 {
        return Err("nothing to do: --publishers and --consumers are both 0".into());
    }
    let target = redact(&args.uri);
    let connect = || async {
        Connection::connect(&args.uri, ConnectionProperties::default())
            .await
            .map_err(|e| Error::from(format!("cannot connect to {target}: {e}")))
    };
    let setup = connect().await?;
    let setup_ch = setup.create_channel().await?;
    declare(&setup_ch, &args).await?;
    setup_ch
        .queue_purge(args.queue.as_str().into(), QueuePurgeOptions::default())
        .await?;

    // Every connection is open before the clock starts.
    let mut consumer_conns = Vec::new();
    for _ in 0..args.consumers {
        consumer_conns.push(connect().await?);
    }
    let mut publisher_conns = Vec::new();
    for _ in 0..args.publishers {
        publisher_conns.push(connect().await?);
    }

    let args = Arc::new(args);
    let timeline = Arc::new(Timeline::start(args.run.warmup, args.run.duration));
    let meters = Arc::new(Meters::default());
    let payload: Arc<[u8]> = incompressible(args.size).into();
    let mut workers: JoinSet<Outcome> = JoinSet::new();
    for (i, conn) in consumer_conns.into_iter().enumerate() {
        let (args, timeline, meters) = (args.clone(), timeline.clone(), meters.clone());
        workers.spawn(async move {
            let r = consume(&conn, &args, i, &timeline, &meters).await;
            finish(conn, &timeline, r.map(|()| None)).await
        });
    }
    for conn in publisher_conns {
        let (args, timeline, meters) = (args.clone(), timeline.clone(), meters.clone());
        let payload = payload.clone();
        workers.spawn(async move {
            let r = publish(&conn, &args, &payload, &timeline, &meters).await;
            finish(conn, &timeline, r.map(Some)).await
        });
    }

    let m = &*meters;
    let (counts, window, (broker_cpu, bench_cpu)) = timeline
        .drive_cpu(
            &[&m.published, &m.confirmed, &m.consumed],
            args.run.broker_pid,
        )
        .await;
    let mut confirm = Latencies::new();
    let joined = join_workers(&mut workers, |l| {
        if let Some(l) = l {
            confirm.merge(&l);
        }
    })
    .await;
    if !args.keep_queue {
        let _ = setup_ch
            .queue_delete(args.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = setup.close(200, "bench done".into()).await;
    joined?;

    let secs = window.as_secs_f64();
    let named = |name: &str, n: u64| (name.to_owned(), Rate::over(n, secs));
    Ok(Report {
        scenario: "amqp-durable".into(),
        target,
        parameters: parameters(&args),
        measured_seconds: secs,
        rates: vec![
            named("published", counts[0]),
            named("confirmed", counts[1]),
            named("consumed", counts[2]),
        ],
        latencies: vec![("confirm".into(), confirm.summary())],
        totals: vec![
            ("published".into(), m.published.get()),
            ("confirmed".into(), m.confirmed.get()),
            ("nacked".into(), m.nacked.get()),
            ("consumed".into(), m.consumed.get()),
        ],
        resources: crate::report::resources(
            broker_cpu,
            bench_cpu,
            secs,
            counts[1] + counts[2],
            args.run.broker_pid,
        ),
    })
}

/// `len` pseudo-random bytes (xorshift64*, fixed seed: runs are comparable).
fn incompressible(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn parameters(args: &Args) -> Vec<(String, Value)> {
    let mut p: Vec<(String, Value)> = vec![
        ("publishers".into(), args.publishers.into()),
        ("consumers".into(), args.consumers.into()),
        ("message_bytes".into(), args.size.into()),
        ("confirm_window".into(), args.confirm_window.into()),
        ("prefetch".into(), args.prefetch.into()),
        ("queue".into(), args.queue.clone().into()),
    ];
    if let Some(t) = &args.queue_type {
        p.push(("queue_type".into(), t.clone().into()));
    }
    p.push(("warmup_s".into(), args.run.warmup.as_secs_f64().into()));
    p
}

async fn declare(ch: &Channel, args: &Args) -> Result<(), Error> {
    let mut arguments = FieldTable::default();
    if let Some(t) = &args.queue_type {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(t.as_str())),
        );
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(args.queue.as_str().into(), options, arguments)
        .await
        .map_err(|e| format!("cannot declare queue {}: {e}", args.queue))?;
    Ok(())
}

/// Stops the run if the worker failed, and closes its connection.
async fn finish(conn: Connection, timeline: &Timeline, r: Outcome) -> Outcome {
    if r.is_err() {
        timeline.stop();
    }
    let _ = conn.close(200, "bench done".into()).await;
    r
}

/// One publisher: publishes until the run stops, never more than the confirm
/// window ahead of the broker, and returns its confirm latencies.
async fn publish(
    conn: &Connection,
    args: &Args,
    payload: &[u8],
    timeline: &Arc<Timeline>,
    meters: &Arc<Meters>,
) -> Result<Latencies, Error> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let window = Arc::new(Semaphore::new(args.confirm_window as usize));
    // Confirms arrive in publish order, so one task awaiting them in order
    // sees each as soon as it lands; it gives the window slot back.
    let (tx, rx) = mpsc::unbounded_channel();
    let confirms = tokio::spawn(await_confirms(rx, timeline.clone(), meters.clone()));
    let stopped = timeline.stopped();
    tokio::pin!(stopped);
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let result: Result<(), Error> = async {
        loop {
            if timeline.is_stopped() {
                return Ok(());
            }
            let slot = match window.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => tokio::select! {
                    biased;
                    _ = &mut stopped => return Ok(()),
                    slot = window.clone().acquire_owned() => slot?,
                },
            };
            let sent = Instant::now();
            let confirm = ch
                .basic_publish(
                    "".into(),
                    args.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    payload,
                    persistent.clone(),
                )
                .await?;
            meters.published.add(1);
            if tx.send((sent, confirm, slot)).is_err() {
                // The confirm task failed; its error is reported below.
                return Ok(());
            }
        }
    }
    .await;
    drop(tx);
    let latencies = confirms.await??;
    result?;
    Ok(latencies)
}

async fn await_confirms(
    mut rx: mpsc::UnboundedReceiver<(Instant, PublisherConfirm, OwnedSemaphorePermit)>,
    timeline: Arc<Timeline>,
    meters: Arc<Meters>,
) -> Result<Latencies, Error> {
    let mut latencies = Latencies::new();
    while let Some((sent, confirm, _slot)) = rx.recv().await {
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| format!("no publisher confirm within {CONFIRM_TIMEOUT:?}"))??;
        let now = Instant::now();
        match confirmation {
            Confirmation::Ack(_) => meters.confirmed.add(1),
            Confirmation::Nack(_) => {
                meters.nacked.add(1);
                continue;
            }
            Confirmation::NotRequested => {
                return Err("the channel is not in confirm mode".into());
            }
        }
        if timeline.in_window(sent, now) {
            latencies.record(now - sent);
        }
    }
    Ok(latencies)
}

/// One consumer: acknowledges every delivery until the run stops.
async fn consume(
    conn: &Connection,
    args: &Args,
    index: usize,
    timeline: &Timeline,
    meters: &Meters,
) -> Result<(), Error> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(args.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("tether-bench-{index}");
    let mut deliveries = ch
        .basic_consume(
            args.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let stopped = timeline.stopped();
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stopped => break,
            next = deliveries.next() => next,
        };
        let Some(delivery) = next else {
            return Err("the broker cancelled the consumer".into());
        };
        delivery?.acker.ack(BasicAckOptions::default()).await?;
        meters.consumed.add(1);
    }
    let _ = ch
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_size_and_do_not_repeat_one_byte() {
        let body = incompressible(1024);
        assert_eq!(body.len(), 1024);
        let distinct = body.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct > 200, "{distinct} distinct byte values");
    }
}
