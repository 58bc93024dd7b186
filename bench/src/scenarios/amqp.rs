//! `amqp`: producers and consumers on one AMQP 0-9-1 queue, at maximum or a
//! fixed rate, transient or persistent, with or without publisher confirms,
//! auto-ack or manual acks.
//!
//! The shapes of the comparison:
//!
//! * transient throughput: `--autoack --size 16` (and `--size 1024`);
//! * durable publish: `--persistent --confirm-window 256 --prefetch 256 --size 1024`;
//! * fixed-rate latency: `--rate 10000` (per producer; stamps are the
//!   scheduled send times, like `mqtt --rate`);
//! * publish-only (the bench's ceiling against `tether-bench sink`):
//!   `--consumers 0`.
//!
//! Producers publish through the default exchange to `--queue`, which the
//! scenario declares (durable with `--persistent`), purges before the run and
//! deletes after it; consumers share it. Each connection is one task of the
//! lean client ([`crate::amqp`]), on channel 1, and every connection is open
//! and consuming before the clock starts. Consumers acknowledge once per
//! read with `multiple` set, as a batching client library would.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::amqp::{Closed, Conn, ConnectOptions, Event, QueueOptions};
use crate::cli::RunArgs;
use crate::latency::{self, Latencies, STAMP_LEN};
use crate::net;
use crate::report::{Rate, Report, redact};
use crate::timeline::{Meter, Pacer, Timeline, join_workers};

/// Write-buffer size at which a producer stops encoding and writes.
const WRITE_BATCH: usize = 64 * 1024;
/// The channel every connection uses.
const CHANNEL: u16 = 1;
/// Largest message body accepted on the command line.
const MAX_SIZE: i64 = 64 * 1024 * 1024;

/// Options of `tether-bench amqp`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The broker's AMQP 0-9-1 URI, credentials and vhost included.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Consuming connections (0: publish only).
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Message body size in bytes (at least 8: the first 8 carry the send
    /// time).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(STAMP_LEN as i64..=MAX_SIZE))]
    pub size: u32,
    /// Durable queue and persistent messages (delivery-mode 2).
    #[arg(long)]
    pub persistent: bool,
    /// Publisher confirms: at most this many unconfirmed messages per
    /// producer; 0 publishes without confirms.
    #[arg(long, default_value_t = 0)]
    pub confirm_window: u32,
    /// basic.qos prefetch per consumer; 0 sends no basic.qos.
    #[arg(long, default_value_t = 0)]
    pub prefetch: u16,
    /// Consume without acknowledgements (no-ack); otherwise acknowledge
    /// every read's deliveries with one multiple ack.
    #[arg(long)]
    pub autoack: bool,
    /// Messages per second per producer; 0 publishes as fast as the broker
    /// takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// The queue (declared, purged before the run, deleted after it).
    #[arg(long, default_value = "tether-bench-amqp")]
    pub queue: String,
    /// Duration, warm-up and broker process.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Default)]
struct Meters {
    published: Meter,
    confirmed: Meter,
    nacked: Meter,
    received: Meter,
}

/// What a worker hands back.
enum Outcome {
    /// A consumer's deliver latencies.
    Deliver(Latencies),
    /// A producer's confirm latencies.
    Confirm(Latencies),
}

/// Runs the scenario; see the module docs.
pub async fn run(args: Args) -> Result<Report, Error> {
    if args.producers == 0 && args.consumers == 0 {
        return Err("nothing to do: --producers and --consumers are both 0".into());
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be 0 (max rate) or a positive number".into());
    }
    let opts = ConnectOptions::from_uri(&args.uri)?;
    let mut setup = Conn::connect(&opts).await?;
    let queue_opts = QueueOptions {
        durable: args.persistent,
        ..QueueOptions::default()
    };
    prepare_queue(&mut setup, &args.queue, queue_opts, None).await?;

    let mut consumers = Vec::new();
    for i in 0..args.consumers {
        consumers.push(open_consumer(&opts, &args.queue, args.prefetch, args.autoack, i).await?);
    }
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        let mut conn = Conn::connect(&opts).await?;
        conn.open_channel(CHANNEL).await?;
        if args.confirm_window > 0 {
            conn.confirm_select(CHANNEL).await?;
        }
        producers.push(conn);
    }

    let args = Arc::new(args);
    let timeline = Arc::new(Timeline::start(args.run.warmup, args.run.duration));
    let meters = Arc::new(Meters::default());
    let mut workers: JoinSet<Result<Outcome, Error>> = JoinSet::new();
    for conn in consumers {
        let (timeline, meters, autoack) = (timeline.clone(), meters.clone(), args.autoack);
        workers.spawn(async move {
            let r = consumer(conn, autoack, &timeline, &meters.received).await;
            timeline.stop_on_error(r.map(Outcome::Deliver))
        });
    }
    let n = producers.len();
    for (i, conn) in producers.into_iter().enumerate() {
        let (timeline, meters, args) = (timeline.clone(), meters.clone(), args.clone());
        workers.spawn(async move {
            let r = producer(conn, &args, i, n, &timeline, &meters).await;
            timeline.stop_on_error(r.map(Outcome::Confirm))
        });
    }

    let m = &*meters;
    let (counts, window, (broker_cpu, bench_cpu)) = timeline
        .drive_cpu(
            &[&m.published, &m.confirmed, &m.received],
            args.run.broker_pid,
        )
        .await;

    let mut deliver = Latencies::new();
    let mut confirm = Latencies::new();
    let joined = join_workers(&mut workers, |o| match o {
        Outcome::Deliver(l) => deliver.merge(&l),
        Outcome::Confirm(l) => confirm.merge(&l),
    })
    .await;
    let _ = setup.queue_delete(CHANNEL, &args.queue).await;
    setup.close().await;
    joined?;

    let secs = window.as_secs_f64();
    let named = |name: &str, n: u64| (name.to_owned(), Rate::over(n, secs));
    let confirms = args.confirm_window > 0;
    let mut rates = vec![named("published", counts[0])];
    let mut totals = vec![("published".to_owned(), m.published.get())];
    let mut latencies = Vec::new();
    if confirms {
        rates.push(named("confirmed", counts[1]));
        totals.push(("confirmed".into(), m.confirmed.get()));
        totals.push(("nacked".into(), m.nacked.get()));
    }
    rates.push(named("received", counts[2]));
    totals.push(("received".into(), m.received.get()));
    if args.consumers > 0 {
        latencies.push(("deliver".to_owned(), deliver.summary()));
    }
    if confirms {
        latencies.push(("confirm".to_owned(), confirm.summary()));
    }
    Ok(Report {
        scenario: "amqp".into(),
        target: redact(&args.uri),
        parameters: parameters(&args),
        measured_seconds: secs,
        rates,
        latencies,
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

fn parameters(args: &Args) -> Vec<(String, Value)> {
    vec![
        ("producers".into(), args.producers.into()),
        ("consumers".into(), args.consumers.into()),
        ("size".into(), args.size.into()),
        ("persistent".into(), args.persistent.into()),
        ("confirm_window".into(), args.confirm_window.into()),
        ("prefetch".into(), args.prefetch.into()),
        ("autoack".into(), args.autoack.into()),
        (
            "rate_per_producer".into(),
            if args.rate > 0.0 {
                args.rate.into()
            } else {
                "max".into()
            },
        ),
        ("queue".into(), args.queue.clone().into()),
    ]
}

/// Opens channel 1 on `conn` and declares `queue`, empty: declared (again,
/// after deleting it, if it exists with other options, such as a durable
/// queue left by a persistent run), bound to `bind` (`(exchange, key)`) if
/// given, and purged.
pub(crate) async fn prepare_queue(
    conn: &mut Conn,
    queue: &str,
    opts: QueueOptions,
    bind: Option<(&str, &str)>,
) -> Result<(), Error> {
    conn.open_channel(CHANNEL).await?;
    if let Err(e) = conn.queue_declare(CHANNEL, queue, opts).await {
        // 406 PRECONDITION_FAILED: it exists with other options.
        if !Closed::of(&e).is_some_and(|c| !c.connection && c.code == 406) {
            return Err(format!("cannot declare queue {queue}: {e}").into());
        }
        conn.open_channel(CHANNEL).await?;
        conn.queue_delete(CHANNEL, queue).await?;
        conn.queue_declare(CHANNEL, queue, opts)
            .await
            .map_err(|e| format!("cannot declare queue {queue}: {e}"))?;
    }
    if let Some((exchange, key)) = bind {
        conn.queue_bind(CHANNEL, queue, exchange, key)
            .await
            .map_err(|e| format!("cannot bind queue {queue} to {exchange} with {key}: {e}"))?;
    }
    conn.queue_purge(CHANNEL, queue).await?;
    Ok(())
}

/// Opens consumer `index`: a connection, channel 1, basic.qos if `prefetch`
/// is not 0, and basic.consume from `queue`.
pub(crate) async fn open_consumer(
    opts: &ConnectOptions,
    queue: &str,
    prefetch: u16,
    autoack: bool,
    index: u32,
) -> Result<Conn, Error> {
    let mut conn = Conn::connect(opts).await?;
    conn.open_channel(CHANNEL).await?;
    if prefetch > 0 {
        conn.basic_qos(CHANNEL, prefetch).await?;
    }
    conn.basic_consume(CHANNEL, queue, &format!("tether-bench-c{index}"), autoack)
        .await?;
    Ok(conn)
}

/// Receives until the run stops, counting deliveries on `received` and
/// acknowledging them (unless `autoack`) once per read; returns the deliver
/// latencies measured in the window.
pub(crate) async fn consumer(
    mut conn: Conn,
    autoack: bool,
    timeline: &Timeline,
    received: &Meter,
) -> Result<Latencies, Error> {
    let mut latencies = Latencies::new();
    loop {
        tokio::select! {
            r = net::fill(&mut conn.read, &mut conn.rbuf) => {
                r?;
                let now = Instant::now();
                let mut count = 0;
                let mut last = None;
                while let Some(event) = conn.next_event()? {
                    if let Event::Delivery { delivery_tag, sent, .. } = event {
                        count += 1;
                        last = Some(delivery_tag);
                        if let Some(sent) = sent
                            && timeline.in_window(sent, now)
                        {
                            latencies.record(now - sent);
                        }
                    }
                }
                if !autoack && let Some(tag) = last {
                    conn.push_ack(CHANNEL, tag, true);
                }
                received.add(count);
            }
            r = net::write_some(&mut conn.write, &mut conn.wbuf), if !conn.wbuf.is_empty() => r?,
            _ = timeline.stopped() => break,
        }
    }
    // Acknowledge what was received before closing (closing would requeue it).
    if !conn.wbuf.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.flush()).await;
    }
    conn.close().await;
    Ok(latencies)
}

/// Publishes until the run stops, never more than the confirm window ahead
/// of the broker; returns the confirm latencies measured in the window.
async fn producer(
    mut conn: Conn,
    args: &Args,
    index: usize,
    of: usize,
    timeline: &Timeline,
    meters: &Meters,
) -> Result<Latencies, Error> {
    let mut body = vec![0u8; args.size as usize];
    let window = args.confirm_window as usize;
    let mut unconfirmed = Unconfirmed::default();
    let mut latencies = Latencies::new();
    let mut pacer = Pacer::new(args.rate, index, of);
    loop {
        let now = Instant::now();
        let mut published = 0;
        while conn.wbuf.len() < WRITE_BATCH && (window == 0 || unconfirmed.len() < window) {
            let Some(at) = pacer.next(now) else {
                break;
            };
            latency::stamp(&mut body, at);
            conn.push_publish(CHANNEL, "", &args.queue, args.persistent, &body)?;
            if window > 0 {
                unconfirmed.push(at);
            }
            published += 1;
        }
        meters.published.add(published);
        let can_send = window == 0 || unconfirmed.len() < window;
        let sleep_until = pacer.wake_at(can_send, now);
        tokio::select! {
            r = net::fill(&mut conn.read, &mut conn.rbuf) => {
                r?;
                settle(&mut conn, &mut unconfirmed, timeline, meters, &mut latencies)?;
            }
            r = net::write_some(&mut conn.write, &mut conn.wbuf), if !conn.wbuf.is_empty() => r?,
            _ = tokio::time::sleep_until(sleep_until) => {}
            _ = timeline.stopped() => {
                // Wait a little for confirms still on their way.
                let until = Instant::now() + Duration::from_secs(2);
                let _ = tokio::time::timeout_at(until, async {
                    while !unconfirmed.is_empty() {
                        if !conn.wbuf.is_empty() {
                            conn.flush().await?;
                        }
                        conn.fill().await?;
                        settle(&mut conn, &mut unconfirmed, timeline, meters, &mut latencies)?;
                    }
                    Ok::<(), Error>(())
                })
                .await;
                break;
            }
        }
    }
    conn.close().await;
    Ok(latencies)
}

/// Applies the confirms in what was read.
fn settle(
    conn: &mut Conn,
    unconfirmed: &mut Unconfirmed,
    timeline: &Timeline,
    meters: &Meters,
    latencies: &mut Latencies,
) -> Result<(), Error> {
    let now = Instant::now();
    let (mut acked, mut nacked) = (0, 0);
    while let Some(event) = conn.next_event()? {
        if let Event::Confirm {
            delivery_tag,
            multiple,
            ack,
            ..
        } = event
        {
            unconfirmed.confirm(delivery_tag, multiple, |sent| {
                if ack {
                    acked += 1;
                    if timeline.in_window(sent, now) {
                        latencies.record(now - sent);
                    }
                } else {
                    nacked += 1;
                }
            });
        }
    }
    meters.confirmed.add(acked);
    meters.nacked.add(nacked);
    Ok(())
}

/// The send times of a producer's unconfirmed publishes, by sequence number
/// (the broker numbers a confirm-mode channel's publishes from 1).
#[derive(Debug, Default)]
struct Unconfirmed {
    /// Send time of publish `first + k` at index `k`; `None` once confirmed
    /// out of order.
    sent: VecDeque<Option<Instant>>,
    /// Sequence number of the front of `sent`, minus one.
    settled: u64,
}

impl Unconfirmed {
    /// Publishes not yet known to be confirmed (bounding the window).
    fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether every publish is settled.
    fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Records the next publish's send time.
    fn push(&mut self, at: Instant) {
        self.sent.push_back(Some(at));
    }

    /// Settles publish `tag` (and every earlier one with `multiple`),
    /// calling `each` with the send time of each publish settled now.
    fn confirm(&mut self, tag: u64, multiple: bool, mut each: impl FnMut(Instant)) {
        if multiple {
            while self.settled < tag {
                let Some(slot) = self.sent.pop_front() else {
                    break;
                };
                self.settled += 1;
                if let Some(at) = slot {
                    each(at);
                }
            }
        } else if tag > self.settled {
            let k = usize::try_from(tag - self.settled - 1).unwrap_or(usize::MAX);
            if let Some(at) = self.sent.get_mut(k).and_then(Option::take) {
                each(at);
            }
        }
        while self.sent.front().is_some_and(Option::is_none) {
            self.sent.pop_front();
            self.settled += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_settle_single_multiple_and_out_of_order() {
        let t0 = Instant::now();
        let at = |k: u64| t0 + Duration::from_millis(k);
        let mut u = Unconfirmed::default();
        for k in 1..=6 {
            u.push(at(k));
        }
        let mut settled = Vec::new();
        // 2 alone, out of order: 1 still holds the window.
        u.confirm(2, false, |t| settled.push(t));
        assert_eq!((settled.clone(), u.len()), (vec![at(2)], 6));
        // Everything up to 4: 1, 3 and 4 (2 is not counted twice).
        u.confirm(4, true, |t| settled.push(t));
        assert_eq!(settled, vec![at(2), at(1), at(3), at(4)]);
        assert_eq!(u.len(), 2);
        // 6 alone, then 5 alone: the window empties.
        u.confirm(6, false, |t| settled.push(t));
        u.confirm(5, false, |t| settled.push(t));
        assert_eq!(u.len(), 0);
        assert_eq!(settled.len(), 6);
        // Confirms of unknown or already settled numbers are ignored.
        u.confirm(3, false, |_| panic!("settled twice"));
        u.confirm(99, false, |_| panic!("never published"));
        u.push(at(7));
        u.confirm(7, true, |t| settled.push(t));
        assert_eq!((settled.len(), u.len()), (7, 0));
    }
}
