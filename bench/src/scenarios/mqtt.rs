//! `mqtt`: publishers and subscribers over MQTT 3.1.1 or 5, at maximum rate
//! or a fixed rate, with publish-to-deliver latency.
//!
//! Topics come from templates in which `{i}` is the client's index, so one
//! scenario covers the usual shapes:
//!
//! * pairs: `--publishers 100 --subscribers 100 --topic 'bench/{i}' --filter 'bench/{i}'`;
//! * fan-out: `--publishers 5 --subscribers 1000 --topic bench/all --filter bench/all`;
//! * fan-in: `--publishers 10000 --rate 1 --subscribers 1 --topic 'bench/{i}' --filter 'bench/#'`,
//!   or a shared group with `--filter '$share/g/bench/#'`.
//!
//! Every payload starts with its send time (its scheduled time in fixed-rate
//! mode, so a stalled broker cannot hide latency by slowing the senders).
//! Each connection is one task (see [`crate::mqtt`]); every connection is
//! open and subscribed before the clock starts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use serde_json::Value;
use tether_protocols::mqtt::{
    Packet, Properties, ProtocolVersion, Publish, QoS, SubscribeFilters, SubscriptionOptions,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::cli::RunArgs;
use crate::latency::Latencies;
use crate::latency::{self, STAMP_LEN};
use crate::mqtt::{self as client, AckKind, Conn, ConnectOptions, MAX_PACKET};
use crate::net;
use crate::probe;
use crate::report::{Rate, Report};
use crate::timeline::{Meter, Pacer, Timeline, join_workers};

/// Write-buffer size at which a publisher stops encoding and writes.
const WRITE_BATCH: usize = 64 * 1024;

/// Options of `tether-bench mqtt`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The broker's MQTT address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub addr: SocketAddr,
    /// MQTT version: `3.1.1` or `5`.
    #[arg(long = "mqtt-version", id = "mqtt_version", default_value = "3.1.1", value_parser = client::parse_version)]
    pub version: ProtocolVersion,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Subscribing connections.
    #[arg(long, default_value_t = 1)]
    pub subscribers: u32,
    /// Topic each publisher publishes to; `{i}` is its index.
    #[arg(long, default_value = "bench/{i}")]
    pub topic: String,
    /// Filter each subscriber subscribes to; `{i}` is its index.
    #[arg(long, default_value = "bench/{i}")]
    pub filter: String,
    /// QoS of the publishes.
    #[arg(long, default_value = "0", value_parser = client::parse_qos)]
    pub qos: QoS,
    /// QoS of the subscriptions.
    #[arg(long, default_value = "0", value_parser = client::parse_qos)]
    pub sub_qos: QoS,
    /// Payload size in bytes (at least 8: the first 8 carry the send time).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(STAMP_LEN as i64..=(MAX_PACKET as i64 / 2)))]
    pub size: u32,
    /// Messages per second per publisher; 0 publishes as fast as the broker
    /// takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Most unacknowledged QoS 1/2 publishes per publisher (also capped by
    /// an MQTT 5 broker's receive maximum).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// Local addresses to connect from: connection `k` uses
    /// 127.0.0.(1 + k mod N). 0 lets the kernel choose.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=254))]
    pub source_addresses: u8,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// User name and password (`user:password`).
    #[arg(long)]
    pub credentials: Option<String>,
    /// Keep-alive in seconds.
    #[arg(long, default_value_t = 60)]
    pub keep_alive: u16,
    /// Client identifiers are `{prefix}-p{i}` and `{prefix}-s{i}`.
    #[arg(long, default_value = "tether-bench")]
    pub client_prefix: String,
    /// Duration, warm-up and broker process.
    #[command(flatten)]
    pub run: RunArgs,
}

/// What the workers count (also the MQTT side of `mqtt-amqp`).
#[derive(Debug, Default)]
pub(crate) struct Meters {
    /// PUBLISH packets written.
    pub(crate) published: Meter,
    /// PUBACKs and PUBCOMPs received.
    pub(crate) acked: Meter,
    /// Messages delivered to subscribers.
    pub(crate) received: Meter,
}

/// Runs the scenario; see the module docs.
pub async fn run(args: Args) -> Result<Report, Error> {
    if args.publishers == 0 && args.subscribers == 0 {
        return Err("nothing to do: --publishers and --subscribers are both 0".into());
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be 0 (max rate) or a positive number".into());
    }
    probe::raise_fd_limit();
    let args = Arc::new(args);
    let subs = open_all(&args, Role::Subscriber).await?;
    let mut subscribed = Vec::with_capacity(subs.len());
    for (i, mut conn) in subs.into_iter().enumerate() {
        subscribe(&mut conn, &args, i).await?;
        subscribed.push(conn);
    }
    let pubs = open_all(&args, Role::Publisher).await?;

    let timeline = Arc::new(Timeline::start(args.run.warmup, args.run.duration));
    let meters = Arc::new(Meters::default());
    let mut workers: JoinSet<Result<Option<(Latencies, bool)>, Error>> = JoinSet::new();
    for conn in subscribed {
        let (timeline, meters, args) = (timeline.clone(), meters.clone(), args.clone());
        workers.spawn(async move {
            let l = subscriber(conn, &args, &timeline, &meters).await;
            timeline.stop_on_error(l.map(|l| Some((l, true))))
        });
    }
    let n = pubs.len();
    for (i, conn) in pubs.into_iter().enumerate() {
        let (timeline, meters, args) = (timeline.clone(), meters.clone(), args.clone());
        workers.spawn(async move {
            let l = publisher(conn, &args, i, n, &timeline, &meters).await;
            timeline.stop_on_error(l.map(|l| Some((l, false))))
        });
    }

    let m = &*meters;
    let (counts, window, (broker_cpu, bench_cpu)) = timeline
        .drive_cpu(&[&m.published, &m.acked, &m.received], args.run.broker_pid)
        .await;

    let mut deliver = Latencies::new();
    let mut ack = Latencies::new();
    join_workers(&mut workers, |o| match o {
        Some((l, true)) => deliver.merge(&l),
        Some((l, false)) => ack.merge(&l),
        None => {}
    })
    .await?;
    let secs = window.as_secs_f64();
    let named = |name: &str, n: u64| (name.to_owned(), Rate::over(n, secs));
    let mut latencies = Vec::new();
    if args.subscribers > 0 {
        latencies.push(("deliver".to_owned(), deliver.summary()));
    }
    if args.qos != QoS::AtMostOnce {
        latencies.push(("publish ack".to_owned(), ack.summary()));
    }
    Ok(Report {
        scenario: "mqtt".into(),
        target: args.addr.to_string(),
        parameters: parameters(&args),
        measured_seconds: secs,
        rates: vec![
            named("published", counts[0]),
            named("acked", counts[1]),
            named("received", counts[2]),
        ],
        latencies,
        totals: vec![
            ("published".into(), m.published.get()),
            ("acked".into(), m.acked.get()),
            ("received".into(), m.received.get()),
        ],
        resources: crate::report::resources(
            broker_cpu,
            bench_cpu,
            secs,
            counts[0] + counts[2],
            args.run.broker_pid,
        ),
    })
}

/// Which side of the run a connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Publishes.
    Publisher,
    /// Subscribes.
    Subscriber,
}

/// Opens every connection of one role, `connect_concurrency` at a time.
pub(crate) async fn open_all(args: &Arc<Args>, role: Role) -> Result<Vec<Conn>, Error> {
    let count = match role {
        Role::Publisher => args.publishers,
        Role::Subscriber => args.subscribers,
    } as usize;
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..count {
        let opts = connect_options(args, role, i);
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            Ok::<_, Error>((i, Conn::connect(&opts).await?))
        });
    }
    let mut conns: Vec<Option<Conn>> = (0..count).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, c) = r??;
        conns[i] = Some(c);
    }
    Ok(conns.into_iter().flatten().collect())
}

fn connect_options(args: &Args, role: Role, i: usize) -> ConnectOptions {
    let (tag, offset) = match role {
        Role::Publisher => ("p", args.subscribers as usize),
        Role::Subscriber => ("s", 0),
    };
    let source = (args.source_addresses > 0).then(|| {
        let k = (offset + i) % usize::from(args.source_addresses);
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k as u8))
    });
    ConnectOptions {
        addr: args.addr,
        source,
        version: args.version,
        client_id: format!("{}-{tag}{i}", args.client_prefix),
        credentials: client::parse_credentials(args.credentials.as_deref()),
        keep_alive: args.keep_alive,
    }
}

/// `template` with `{i}` replaced by `i`.
fn expand(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

/// Subscribes subscriber `i` and checks the granted QoS.
async fn subscribe(conn: &mut Conn, args: &Args, i: usize) -> Result<(), Error> {
    let filter = expand(&args.filter, i);
    let filters = [(filter.as_str(), SubscriptionOptions::with_qos(args.sub_qos))];
    conn.push(&Packet::Subscribe(tether_protocols::mqtt::Subscribe {
        packet_id: 1,
        properties: Properties::new(),
        filters: SubscribeFilters::Slice(&filters),
    }))?;
    conn.flush().await?;
    let deadline = Instant::now() + client::CONNECT_TIMEOUT;
    loop {
        if let Some(n) = conn.frame()? {
            let (packet, _) = Packet::decode(&conn.rbuf[..n], conn.version, MAX_PACKET)?;
            if let Packet::SubAck(ack) = packet {
                let code = ack.return_codes.first().copied().unwrap_or(0x80);
                if code >= 0x80 {
                    return Err(format!(
                        "the broker refused the subscription to {filter:?}: {code:#04x}"
                    )
                    .into());
                }
                conn.rbuf.advance(n);
                return Ok(());
            }
            conn.rbuf.advance(n);
            continue;
        }
        tokio::time::timeout_at(deadline, conn.fill())
            .await
            .map_err(|_| Error::from(format!("no SUBACK for {filter:?}")))??;
    }
}

/// Receives until the run stops; returns the deliver latencies measured in
/// the window.
async fn subscriber(
    mut conn: Conn,
    args: &Args,
    timeline: &Timeline,
    meters: &Meters,
) -> Result<Latencies, Error> {
    let mut latencies = Latencies::new();
    let mut ping = ping_interval(args.keep_alive);
    loop {
        tokio::select! {
            r = net::fill(&mut conn.read, &mut conn.rbuf) => {
                r?;
                let now = Instant::now();
                let mut received = 0;
                while let Some(n) = conn.frame()? {
                    let (packet, _) = Packet::decode(&conn.rbuf[..n], conn.version, MAX_PACKET)?;
                    match packet {
                        Packet::Publish(p) => {
                            received += 1;
                            if let Some(sent) = latency::stamped_at(p.payload)
                                && timeline.in_window(sent, now)
                            {
                                latencies.record(now - sent);
                            }
                            match (p.qos, p.packet_id) {
                                (QoS::AtLeastOnce, Some(id)) => conn.push_ack(AckKind::PubAck, id)?,
                                (QoS::ExactlyOnce, Some(id)) => conn.push_ack(AckKind::PubRec, id)?,
                                _ => {}
                            }
                        }
                        Packet::PubRel(r) => conn.push_ack(AckKind::PubComp, r.packet_id)?,
                        Packet::Disconnect(d) => return Err(client::disconnected(d.reason)),
                        _ => {}
                    }
                    conn.rbuf.advance(n);
                }
                meters.received.add(received);
            }
            r = net::write_some(&mut conn.write, &mut conn.wbuf), if !conn.wbuf.is_empty() => r?,
            _ = ping.tick() => conn.push(&Packet::PingReq)?,
            _ = timeline.stopped() => break,
        }
    }
    conn.close().await;
    Ok(latencies)
}

/// Publishes until the run stops; returns the publish-to-ack latencies
/// measured in the window (QoS 1 and 2). Publisher `index` of `of`
/// publishes to `args.topic` with `{i}` replaced by `index`.
pub(crate) async fn publisher(
    mut conn: Conn,
    args: &Args,
    index: usize,
    of: usize,
    timeline: &Timeline,
    meters: &Meters,
) -> Result<Latencies, Error> {
    let topic = expand(&args.topic, index);
    let mut payload = vec![0u8; args.size as usize];
    let window = u32::from(args.inflight.min(conn.receive_maximum.max(1)));
    let mut latencies = Latencies::new();
    // Send time of each in-flight packet id.
    let mut sent_at = InFlight::new(if args.qos == QoS::AtMostOnce {
        0
    } else {
        window
    });
    let mut inflight: u32 = 0;
    let mut ping = ping_interval(args.keep_alive);
    let mut pacer = Pacer::new(args.rate, index, of);
    loop {
        // Encode what may go now.
        let now = Instant::now();
        let mut published = 0;
        while conn.wbuf.len() < WRITE_BATCH && (args.qos == QoS::AtMostOnce || inflight < window) {
            let Some(stamp_at) = pacer.next(now) else {
                break;
            };
            latency::stamp(&mut payload, stamp_at);
            let packet_id = match args.qos {
                QoS::AtMostOnce => None,
                _ => Some(
                    sent_at
                        .start(stamp_at)
                        .ok_or("no free packet id in the window")?,
                ),
            };
            conn.push_publish(&Publish {
                dup: false,
                qos: args.qos,
                retain: false,
                topic: &topic,
                packet_id,
                properties: Properties::new(),
                payload: &payload,
            })?;
            if packet_id.is_some() {
                inflight += 1;
            }
            published += 1;
        }
        meters.published.add(published);
        let can_send = args.qos == QoS::AtMostOnce || inflight < window;
        let sleep_until = pacer.wake_at(can_send, now);
        tokio::select! {
            r = net::fill(&mut conn.read, &mut conn.rbuf) => {
                r?;
                let now = Instant::now();
                let mut acked = 0;
                while let Some(n) = conn.frame()? {
                    let (packet, _) = Packet::decode(&conn.rbuf[..n], conn.version, MAX_PACKET)?;
                    let done = match packet {
                        Packet::PubAck(r) | Packet::PubComp(r) => Some(r.packet_id),
                        Packet::PubRec(r) => {
                            conn.push_ack(AckKind::PubRel, r.packet_id)?;
                            None
                        }
                        Packet::Disconnect(d) => return Err(client::disconnected(d.reason)),
                        _ => None,
                    };
                    if let Some(id) = done
                        && let Some(sent) = sent_at.finish(id)
                    {
                        inflight -= 1;
                        acked += 1;
                        if timeline.in_window(sent, now) {
                            latencies.record(now - sent);
                        }
                    }
                    conn.rbuf.advance(n);
                }
                meters.acked.add(acked);
            }
            r = net::write_some(&mut conn.write, &mut conn.wbuf), if !conn.wbuf.is_empty() => r?,
            _ = tokio::time::sleep_until(sleep_until) => {}
            _ = ping.tick() => conn.push(&Packet::PingReq)?,
            _ = timeline.stopped() => {
                // Wait a little for acknowledgements still on their way.
                if inflight > 0 {
                    let until = Instant::now() + Duration::from_secs(2);
                    let _ = tokio::time::timeout_at(until, drain(&mut conn, &mut inflight, &mut sent_at, meters)).await;
                }
                break;
            }
        }
    }
    conn.close().await;
    Ok(latencies)
}

/// After the window: reads acknowledgements until none is outstanding.
/// Send times of a publisher's in-flight QoS 1/2 publishes, by packet id.
/// Ids come from a free list, so the table is as small as the window (a
/// table of all 65,535 ids per publisher costs 1 MiB, 10 GB for 10,000
/// publishers) and acknowledgements may arrive in any order.
pub(crate) struct InFlight {
    sent_at: Vec<Option<Instant>>,
    free: Vec<u16>,
}

impl InFlight {
    /// Room for `window` publishes in flight (at most 65,535).
    pub(crate) fn new(window: u32) -> Self {
        let window = window.min(u32::from(u16::MAX)) as u16;
        InFlight {
            sent_at: vec![None; usize::from(window) + 1],
            free: (1..=window).rev().collect(),
        }
    }

    /// Takes a free packet id for a publish sent (stamped) at `at`.
    pub(crate) fn start(&mut self, at: Instant) -> Option<u16> {
        let id = self.free.pop()?;
        self.sent_at[usize::from(id)] = Some(at);
        Some(id)
    }

    /// Frees `id` on its acknowledgement: when it was sent, if it was in flight.
    pub(crate) fn finish(&mut self, id: u16) -> Option<Instant> {
        let at = self.sent_at.get_mut(usize::from(id))?.take()?;
        self.free.push(id);
        Some(at)
    }
}

async fn drain(
    conn: &mut Conn,
    inflight: &mut u32,
    sent_at: &mut InFlight,
    meters: &Meters,
) -> Result<(), Error> {
    while *inflight > 0 {
        if !conn.wbuf.is_empty() {
            conn.flush().await?;
        }
        conn.fill().await?;
        while let Some(n) = conn.frame()? {
            let (packet, _) = Packet::decode(&conn.rbuf[..n], conn.version, MAX_PACKET)?;
            match packet {
                Packet::PubAck(r) | Packet::PubComp(r) if sent_at.finish(r.packet_id).is_some() => {
                    *inflight -= 1;
                    meters.acked.add(1);
                }
                Packet::PubRec(r) => conn.push_ack(AckKind::PubRel, r.packet_id)?,
                _ => {}
            }
            conn.rbuf.advance(n);
        }
    }
    Ok(())
}

/// A timer that fires at half the keep-alive (never, for keep-alive 0).
fn ping_interval(keep_alive: u16) -> tokio::time::Interval {
    let period = if keep_alive == 0 {
        Duration::from_secs(86_400)
    } else {
        Duration::from_secs(u64::from(keep_alive)) / 2
    };
    let mut iv = tokio::time::interval_at(Instant::now() + period, period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    iv
}

fn parameters(args: &Args) -> Vec<(String, Value)> {
    let version = if args.version.is_v5() { "5" } else { "3.1.1" };
    vec![
        ("version".into(), version.into()),
        ("publishers".into(), args.publishers.into()),
        ("subscribers".into(), args.subscribers.into()),
        ("topic".into(), args.topic.clone().into()),
        ("filter".into(), args.filter.clone().into()),
        ("qos".into(), args.qos.as_u8().into()),
        ("sub_qos".into(), args.sub_qos.as_u8().into()),
        ("size".into(), args.size.into()),
        (
            "rate_per_publisher".into(),
            if args.rate > 0.0 {
                args.rate.into()
            } else {
                "max".into()
            },
        ),
        ("inflight".into(), args.inflight.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_ids_are_reused_in_any_ack_order_and_never_twice_at_once() {
        let t0 = Instant::now();
        let mut f = InFlight::new(3);
        let a = f.start(t0).unwrap();
        let b = f.start(t0 + Duration::from_millis(1)).unwrap();
        let c = f.start(t0 + Duration::from_millis(2)).unwrap();
        assert_eq!(f.start(t0), None, "the window is full");
        let mut ids = [a, b, c];
        ids.sort();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(f.finish(b), Some(t0 + Duration::from_millis(1)));
        assert_eq!(f.finish(b), None, "an id is acknowledged once");
        assert_eq!(f.finish(999), None, "an unknown id is ignored");
        let d = f.start(t0).unwrap();
        assert_eq!(d, b, "the freed id is reused");
        assert_eq!(f.finish(a), Some(t0));
        assert_eq!(f.finish(c), Some(t0 + Duration::from_millis(2)));
    }
}
