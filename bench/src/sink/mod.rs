//! `tether-bench sink`: a null-sink broker, to measure the load generator's
//! own ceiling.
//!
//! It speaks just enough MQTT ([`mqtt`]) and AMQP 0-9-1 ([`amqp`]) for every
//! scenario to run against it: it accepts connections, answers every setup
//! request with success, acknowledges publishes when the protocol asks for it
//! (PUBACK, PUBREC/PUBCOMP, publisher confirms) and throws the messages away,
//! delivering nothing. Per message it only cuts a frame and counts it; acks
//! are batched per read, so the numbers a scenario reaches against the sink
//! are what the bench itself can drive on this machine.
//!
//! The sink is the one subcommand that prints before its report: one line,
//! `sink listening mqtt=ADDR amqp=ADDR` (`-` for a listener not asked for),
//! once both are bound, so a script can wait for it. It serves until SIGINT,
//! SIGTERM or `--duration`, then reports what it received.

pub mod amqp;
pub mod mqtt;

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::report::{Rate, Report};
use crate::timeline::Meter;

/// Options of `tether-bench sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to accept MQTT connections on (none: no MQTT listener).
    #[arg(long)]
    pub mqtt_listen: Option<SocketAddr>,
    /// Address to accept AMQP 0-9-1 connections on (none: no AMQP listener).
    #[arg(long)]
    pub amqp_listen: Option<SocketAddr>,
    /// Stop after this long (default: at SIGINT or SIGTERM).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// What the sink has seen.
#[derive(Debug, Default)]
pub struct Counters {
    /// MQTT connections accepted.
    pub mqtt_connections: Meter,
    /// MQTT PUBLISH packets received.
    pub mqtt_publishes: Meter,
    /// AMQP connections accepted.
    pub amqp_connections: Meter,
    /// AMQP basic.publish methods received.
    pub amqp_publishes: Meter,
    /// Publisher confirms sent (each a basic.ack, most with `multiple`).
    pub amqp_confirm_frames: Meter,
}

/// A bound sink, not yet serving.
pub struct Sink {
    mqtt: Option<TcpListener>,
    amqp: Option<TcpListener>,
    counters: Arc<Counters>,
}

impl Sink {
    /// Binds the listeners asked for (port 0 picks a free port).
    pub async fn bind(mqtt: Option<SocketAddr>, amqp: Option<SocketAddr>) -> Result<Sink, Error> {
        if mqtt.is_none() && amqp.is_none() {
            return Err("the sink needs --mqtt-listen, --amqp-listen or both".into());
        }
        let listen = |addr: Option<SocketAddr>| async move {
            match addr {
                Some(a) => TcpListener::bind(a)
                    .await
                    .map(Some)
                    .map_err(|e| Error::from(format!("cannot listen on {a}: {e}"))),
                None => Ok(None),
            }
        };
        Ok(Sink {
            mqtt: listen(mqtt).await?,
            amqp: listen(amqp).await?,
            counters: Arc::default(),
        })
    }

    /// The bound MQTT address.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound AMQP address.
    pub fn amqp_addr(&self) -> Option<SocketAddr> {
        self.amqp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The counters, live.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// `mqtt=ADDR amqp=ADDR`, `-` for a listener not bound.
    pub fn describe(&self) -> String {
        let show = |a: Option<SocketAddr>| a.map_or("-".to_owned(), |a| a.to_string());
        format!(
            "mqtt={} amqp={}",
            show(self.mqtt_addr()),
            show(self.amqp_addr())
        )
    }

    /// Serves until `until` resolves, then drops every connection and
    /// reports what was received.
    pub async fn serve(self, until: impl Future<Output = ()>) -> Report {
        let target = self.describe();
        let started = Instant::now();
        let cpu_from = crate::probe::cpu_seconds(None).unwrap_or(0.0);
        let counters = self.counters.clone();
        let mut conns: JoinSet<()> = JoinSet::new();
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                r = accept(self.mqtt.as_ref()) => {
                    if let Ok(stream) = r {
                        counters.mqtt_connections.add(1);
                        let c = counters.clone();
                        // A client going away is the end of its connection,
                        // not a failure of the sink.
                        conns.spawn(async move { let _ = mqtt::serve(stream, &c).await; });
                    }
                }
                r = accept(self.amqp.as_ref()) => {
                    if let Ok(stream) = r {
                        counters.amqp_connections.add(1);
                        let c = counters.clone();
                        conns.spawn(async move { let _ = amqp::serve(stream, &c).await; });
                    }
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.abort_all();
        let secs = started.elapsed().as_secs_f64();
        let cpu = crate::probe::cpu_seconds(None).unwrap_or(0.0) - cpu_from;
        let c = &*counters;
        let (mqtt_msgs, amqp_msgs) = (c.mqtt_publishes.get(), c.amqp_publishes.get());
        Report {
            scenario: "sink".into(),
            target,
            parameters: Vec::new(),
            measured_seconds: secs,
            rates: vec![
                ("mqtt publishes".into(), Rate::over(mqtt_msgs, secs)),
                ("amqp publishes".into(), Rate::over(amqp_msgs, secs)),
            ],
            latencies: Vec::new(),
            totals: vec![
                ("mqtt_connections".into(), c.mqtt_connections.get()),
                ("mqtt_publishes".into(), mqtt_msgs),
                ("amqp_connections".into(), c.amqp_connections.get()),
                ("amqp_publishes".into(), amqp_msgs),
                ("amqp_confirm_frames".into(), c.amqp_confirm_frames.get()),
            ],
            // The sink's own CPU over its whole run, reported as the bench's.
            resources: crate::report::resources(None, cpu, secs, mqtt_msgs + amqp_msgs, None),
        }
    }
}

/// The next connection on `listener`, or never without one.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(l) => {
            let (stream, _) = l.accept().await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        }
        None => std::future::pending().await,
    }
}

/// Runs `tether-bench sink`: binds, prints the listening line, serves until
/// a signal or the duration, and reports.
pub async fn run(args: Args) -> Result<Report, Error> {
    let sink = Sink::bind(args.mqtt_listen, args.amqp_listen).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "sink listening {}", sink.describe())?;
    stdout.flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let duration = args.duration;
    let until = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    };
    Ok(sink.serve(until).await)
}
