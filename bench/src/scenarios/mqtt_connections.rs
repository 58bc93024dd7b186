//! `mqtt-connections`: opens many idle MQTT connections at a target rate
//! (the connection ramp), holds them, and reports the connect rate reached,
//! CONNECT-to-CONNACK latency and, with `--broker-pid`, the broker's memory
//! per connection.
//!
//! Connections come from 127.0.0.1 … 127.0.0.N (`--source-addresses`) so a
//! single source address does not run out of ephemeral ports; each idle
//! connection is a small task that answers nothing and pings at half its
//! keep-alive.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tether_protocols::mqtt::{Packet, ProtocolVersion};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::latency::Latencies;
use crate::mqtt::{self as client, Conn, ConnectOptions};
use crate::probe;
use crate::report::{Rate, Report};
use crate::timeline::Timeline;

/// Options of `tether-bench mqtt-connections`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The broker's MQTT address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub addr: SocketAddr,
    /// MQTT version: `3.1.1` or `5`.
    #[arg(long = "mqtt-version", id = "mqtt_version", default_value = "3.1.1", value_parser = client::parse_version)]
    pub version: ProtocolVersion,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: u32,
    /// Connections started per second; 0 opens them as fast as the
    /// concurrency allows.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
    /// How long to hold every connection open once all are up (memory is
    /// read at the end of the hold).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Local addresses to connect from: connection `k` uses
    /// 127.0.0.(1 + k mod N).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addresses: u8,
    /// Keep-alive in seconds.
    #[arg(long, default_value_t = 120)]
    pub keep_alive: u16,
    /// A connection not accepted (CONNACK) within this time counts as failed,
    /// so one unanswered CONNECT cannot hang the run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// User name and password (`user:password`).
    #[arg(long)]
    pub credentials: Option<String>,
    /// Client identifiers are `{prefix}-c{k}`.
    #[arg(long, default_value = "tether-bench")]
    pub client_prefix: String,
    /// Process id of the broker, to report its memory per connection.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// Runs the scenario; see the module docs.
pub async fn run(args: Args) -> Result<Report, Error> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be 0 (as fast as possible) or a positive number".into());
    }
    let fd_limit = probe::raise_fd_limit();
    if fd_limit < u64::from(args.connections) + 64 {
        return Err(format!(
            "{} connections need as many file descriptors; the limit is {fd_limit} (raise it with ulimit -n)",
            args.connections
        )
        .into());
    }
    let rss_before = args.broker_pid.and_then(|p| probe::rss_bytes(Some(p)));
    let bench_rss_before = probe::rss_bytes(None);
    let cpu_before = probe::CpuMark::now(args.broker_pid);

    // The hold's stop signal; the window itself is timed below.
    let hold = Arc::new(Timeline::start(Duration::ZERO, Duration::ZERO));
    let failed = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut held: JoinSet<Result<(), Error>> = JoinSet::new();
    let started = Instant::now();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    for k in 0..args.connections {
        if let Some(iv) = interval {
            tokio::time::sleep_until(started + iv.mul_f64(f64::from(k))).await;
        }
        let permit = gate.clone().acquire_owned().await?;
        let opts = ConnectOptions {
            addr: args.addr,
            source: Some(IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                1 + (k % u32::from(args.source_addresses)) as u8,
            ))),
            version: args.version,
            client_id: format!("{}-c{k}", args.client_prefix),
            credentials: client::parse_credentials(args.credentials.as_deref()),
            keep_alive: args.keep_alive,
        };
        let (hold, failed, up_tx) = (hold.clone(), failed.clone(), up_tx.clone());
        let keep_alive = args.keep_alive;
        let connect_timeout = args.connect_timeout;
        held.spawn(async move {
            let t0 = Instant::now();
            let connected = tokio::time::timeout(connect_timeout, Conn::connect(&opts))
                .await
                .unwrap_or_else(|_| Err(format!("no CONNACK within {connect_timeout:?}").into()));
            let conn = match connected {
                Ok(c) => c,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    return Err(e);
                }
            };
            let _ = up_tx.send(t0.elapsed());
            drop(permit);
            idle(conn, keep_alive, &hold).await
        });
    }
    drop(up_tx);
    let mut connect = Latencies::new();
    let mut up = 0u64;
    while let Some(l) = up_rx.recv().await {
        connect.record(l);
        up += 1;
        if up + failed.load(Ordering::Relaxed) >= u64::from(args.connections) {
            break;
        }
    }
    let ramp = started.elapsed();
    tokio::time::sleep(args.hold).await;
    let rss_after = args.broker_pid.and_then(|p| probe::rss_bytes(Some(p)));
    let bench_rss_after = probe::rss_bytes(None);
    let cpu_after = probe::CpuMark::now(args.broker_pid);
    hold.stop();
    let mut first_error = None;
    let mut dropped = 0u64;
    while let Some(r) = held.join_next().await {
        if let Err(e) = r.map_err(Error::from).and_then(|r| r) {
            dropped += 1;
            first_error.get_or_insert(e);
        }
    }
    let failed = failed.load(Ordering::Relaxed);
    if up == 0 {
        return Err(first_error.unwrap_or_else(|| "no connection was accepted".into()));
    }

    let secs = ramp.as_secs_f64();
    let mut resources = Vec::new();
    let (broker_cpu, bench_cpu) = cpu_before.until(&cpu_after);
    if let Some(cpu) = broker_cpu {
        resources.push(("broker_cpu_seconds".to_owned(), cpu));
    }
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        resources.push(("broker_rss_mib".to_owned(), b as f64 / 1048576.0));
        resources.push((
            "broker_bytes_per_connection".to_owned(),
            (b as f64 - a as f64) / up as f64,
        ));
    }
    if let (Some(a), Some(b)) = (bench_rss_before, bench_rss_after) {
        resources.push((
            "bench_bytes_per_connection".to_owned(),
            (b as f64 - a as f64) / up as f64,
        ));
    }
    resources.push(("bench_cpu_seconds".to_owned(), bench_cpu));
    Ok(Report {
        scenario: "mqtt-connections".into(),
        target: args.addr.to_string(),
        parameters: vec![
            ("connections".into(), args.connections.into()),
            (
                "rate".into(),
                if args.rate > 0.0 {
                    args.rate.into()
                } else {
                    Value::from("max")
                },
            ),
            ("concurrency".into(), args.concurrency.into()),
            ("source_addresses".into(), args.source_addresses.into()),
            ("hold_seconds".into(), args.hold.as_secs_f64().into()),
        ],
        measured_seconds: secs,
        rates: vec![("connected".into(), Rate::over(up, secs))],
        latencies: vec![("connect".into(), connect.summary())],
        totals: vec![
            ("connected".into(), up),
            ("refused_or_failed".into(), failed),
            ("dropped_while_held".into(), dropped.saturating_sub(failed)),
        ],
        resources,
    })
}

/// Holds an idle connection until the run stops: pings at half the
/// keep-alive, reads (and discards) whatever arrives, and fails if the broker
/// closes it.
async fn idle(mut conn: Conn, keep_alive: u16, hold: &Timeline) -> Result<(), Error> {
    let period = Duration::from_secs(u64::from(keep_alive.max(2)) / 2);
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    // Idle connections keep only a small read buffer.
    conn.rbuf = bytes::BytesMut::with_capacity(64);
    loop {
        tokio::select! {
            r = conn.read.readable() => {
                r?;
                let mut scratch = [0u8; 64];
                match conn.read.try_read(&mut scratch) {
                    Ok(0) => return Err("the broker closed an idle connection".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ = ping.tick() => {
                conn.push(&Packet::PingReq)?;
                conn.flush().await?;
            }
            _ = hold.stopped() => break,
        }
    }
    conn.close().await;
    Ok(())
}
