//! Sensor fleet: simulated devices publish telemetry over MQTT, a topic rule
//! picks out the hot readings and routes them into an SQS queue, and an alert
//! worker drains that queue with the AWS SDK.
//!
//! ```text
//! 100 devices ── MQTT sensors/{device}/telemetry ──► rule `fleet-hot-readings`
//!                                                     (WHERE temperature > 30)
//!                                                        │
//!                      alert worker (aws-sdk-sqs) ◄── SQS queue `fleet-alerts`
//! ```
//!
//! This is the AWS IoT Core + IoT rules + SQS architecture, on one gateway.
//! Each device is its own MQTT connection and publishes, at QoS 1, exactly what
//! the firmware crate publishes: the topic `sensors/{device}/telemetry` and the
//! JSON written by `tether_firmware::sensor::telemetry::Telemetry`, e.g.
//! `{"device":"sensor-007","temperature":21.53,"humidity":40.1,"pressure":1013.2,"seq":42}`.
//!
//! # Run it
//!
//! Against a gateway started with the README's first command:
//!
//! ```text
//! cargo run --release                                      # the gateway
//! cargo run --example sensor-fleet                         # 100 devices, 30 s
//! cargo run --example sensor-fleet -- --devices 10 --seconds 3
//! ```
//!
//! The example installs its topic rule and queue itself, as a definitions
//! document posted to the gateway's admin API (`POST /api/definitions`, as
//! `guest`/`guest`, which the gateway accepts from the same machine while no
//! administrator is configured). The rule stays installed afterwards
//! (`tether admin export` shows it); running the example again changes
//! nothing.
//!
//! Flags (`--help` lists them): `--mqtt` (or `MQTT_ADDR`, default
//! `127.0.0.1:1883`), `--endpoint` (or `AWS_ENDPOINT_URL`, default
//! `http://127.0.0.1:9324`, the SQS API and the admin API), `--admin-user` /
//! `--admin-password` (or `TETHER_ADMIN_USER` / `TETHER_ADMIN_PASSWORD`),
//! `--devices`, `--seconds`, `--interval-ms`, `--threshold`.
//!
//! # What to look for
//!
//! * `ALERT sensor-… reads 3x.xx °C` lines: the worker received a reading the
//!   rule routed, through a queue the devices know nothing about.
//! * A progress line every second: readings sent, how many of them were hot,
//!   and alerts seen. At the end `every hot reading became exactly one alert`:
//!   the number of alerts equals the number of hot readings sent.
//! * If the admin API refuses the credential (a gateway with its own
//!   administrators), the example says so in one line instead of waiting.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use clap::Parser;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use tether_firmware::sensor::Reading;
use tether_firmware::sensor::telemetry::{Telemetry, telemetry_topic};
use tokio::time::Instant;

/// The queue the example's topic rule fills.
const ALERT_QUEUE: &str = "fleet-alerts";
/// The topic rule's name in the gateway (installing it again updates it).
const RULE: &str = "fleet-hot-readings";

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Simulated devices, a topic rule and an SQS alert worker")]
struct Args {
    /// The gateway's MQTT listener.
    #[arg(long, env = "MQTT_ADDR", default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// The gateway's SQS/SNS endpoint (its admin API is on the same port).
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:9324"
    )]
    endpoint: String,
    /// An administrator of the gateway (guest works from the same machine
    /// while no administrator is configured).
    #[arg(long, env = "TETHER_ADMIN_USER", default_value = "guest")]
    admin_user: String,
    /// That administrator's password.
    #[arg(long, env = "TETHER_ADMIN_PASSWORD", default_value = "guest")]
    admin_password: String,
    /// How many devices to simulate (one MQTT connection each).
    #[arg(long, default_value_t = 100)]
    devices: u32,
    /// How long the devices publish.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Time between two readings of one device.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Readings above this many °C become alerts (the topic rule's WHERE clause).
    #[arg(long, default_value_t = 30.0)]
    threshold: f64,
}

/// Counters shared by the devices, the worker and the progress line.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    hot: AtomicU64,
    alerts: AtomicU64,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors end the example with one line saying what went wrong.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sensor-fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let (host, port) = args
        .mqtt
        .rsplit_once(':')
        .ok_or("--mqtt must be host:port")?;
    let port: u16 = port.parse().map_err(|_| "--mqtt: bad port")?;

    // The AWS SDK, unchanged apart from the endpoint. Tether does not check
    // credentials unless the gateway is configured to, so any static pair works.
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&args.endpoint)
            .credentials_provider(Credentials::new("example", "example", None, None, "static"))
            .build(),
    );

    // The topic rule and its queue, installed as definitions through the admin
    // API: the same document could sit in the gateway's definitions file.
    install_rule(&args).await?;
    let queue_url = sqs
        .get_queue_url()
        .queue_name(ALERT_QUEUE)
        .send()
        .await
        .map_err(|e| format!("cannot reach the SQS API at {}: {e}", args.endpoint))?
        .queue_url
        .ok_or("GetQueueUrl returned no URL")?;
    // Start from an empty queue so the alert count below is this run's.
    sqs.purge_queue().queue_url(&queue_url).send().await?;
    println!(
        "alert worker polls {ALERT_QUEUE}; {} devices publish to sensors/<device>/telemetry for {} s",
        args.devices, args.seconds
    );

    let stats = Arc::new(Stats::default());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);

    // The devices: one task (and one MQTT connection) each.
    let mut devices = tokio::task::JoinSet::new();
    for n in 0..args.devices {
        let device = Device {
            id: format!("sensor-{n:03}"),
            host: host.to_owned(),
            port,
            interval: Duration::from_millis(args.interval_ms.max(1)),
            threshold: args.threshold,
            rng: Rng::new(u64::from(n) + 1),
        };
        devices.spawn(device.run(deadline, stats.clone()));
    }

    // The alert worker: an ordinary SQS consumer.
    let worker = tokio::spawn(alert_worker(sqs.clone(), queue_url.clone(), stats.clone()));

    // The progress line, once a second, until the devices are done.
    let progress = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                print_progress(&stats);
            }
        })
    };
    while let Some(done) = devices.join_next().await {
        done??;
    }
    println!("devices stopped; waiting for the last alerts");

    // Every reading was acknowledged (PUBACK) by now, so every hot one is in the
    // queue. Give the worker a moment to catch up, then compare.
    let expected = stats.hot.load(Ordering::Relaxed);
    let wait_until = Instant::now() + Duration::from_secs(10);
    while stats.alerts.load(Ordering::Relaxed) < expected && Instant::now() < wait_until {
        if worker.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.abort();
    if worker.is_finished() {
        // The worker loops until it fails: report why.
        worker
            .await?
            .map_err(|e| format!("alert worker failed: {e}"))?;
    } else {
        worker.abort();
    }
    print_progress(&stats);
    let seen = stats.alerts.load(Ordering::Relaxed);
    if seen == expected {
        println!("done: every hot reading became exactly one alert ({seen} alerts)");
        Ok(())
    } else {
        Err(format!("{expected} readings were hot but {seen} alerts arrived").into())
    }
}

/// Installs the topic rule (readings above the threshold into the alert
/// queue) and the queue with `POST /api/definitions`, as an administrator.
/// Applying the same document again changes nothing.
async fn install_rule(args: &Args) -> Result<(), BoxError> {
    let sql = format!(
        "SELECT device, temperature, seq FROM 'sensors/+/telemetry' WHERE temperature > {}",
        args.threshold
    );
    let definitions = serde_json::json!({
        "queues": [{ "name": ALERT_QUEUE, "attributes": {} }],
        "rules": [{ "name": RULE, "sql": sql, "actions": [{ "sqs": { "queue": ALERT_QUEUE } }] }],
    });
    let url = format!("{}/api/definitions", args.endpoint.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .basic_auth(&args.admin_user, Some(&args.admin_password))
        .header("content-type", "application/json")
        .body(definitions.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot reach the gateway's admin API at {url}: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!(
            "the admin API refused the credential of `{}`: pass an administrator with \
             --admin-user and --admin-password (TETHER_ADMIN_USER, TETHER_ADMIN_PASSWORD)",
            args.admin_user
        )
        .into());
    }
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("installing the topic rule failed: HTTP {status}: {text}").into());
    }
    println!("installed topic rule `{RULE}`: {sql} -> SQS queue `{ALERT_QUEUE}`");
    Ok(())
}

fn print_progress(stats: &Stats) {
    println!(
        "progress: {} readings sent, {} hot, {} alerts seen",
        stats.sent.load(Ordering::Relaxed),
        stats.hot.load(Ordering::Relaxed),
        stats.alerts.load(Ordering::Relaxed),
    );
}

/// Drains the alert queue: long polling (returns as soon as something
/// arrives), up to ten messages at a time, each deleted once handled.
async fn alert_worker(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    stats: Arc<Stats>,
) -> Result<(), BoxError> {
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for msg in out.messages.unwrap_or_default() {
            // The rule's SELECT made the body: {"device":..,"temperature":..,"seq":..}.
            let alert: serde_json::Value = serde_json::from_str(msg.body().unwrap_or_default())?;
            println!(
                "ALERT {} reads {} °C (reading #{})",
                alert["device"].as_str().unwrap_or("?"),
                alert["temperature"],
                alert["seq"],
            );
            stats.alerts.fetch_add(1, Ordering::Relaxed);
            // Deleting is what tells SQS the alert was handled; otherwise it
            // would come back after the visibility timeout.
            if let Some(handle) = msg.receipt_handle() {
                sqs.delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
}

/// One simulated device.
struct Device {
    id: String,
    host: String,
    port: u16,
    interval: Duration,
    threshold: f64,
    rng: Rng,
}

impl Device {
    /// Connects, publishes a reading every `interval` until `deadline`, waits
    /// for the PUBACK of every reading, and disconnects.
    async fn run(mut self, deadline: Instant, stats: Arc<Stats>) -> Result<(), BoxError> {
        let mut options = MqttOptions::new(&self.id, &self.host, self.port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 10);

        // The event loop does the network I/O: nothing is sent or received
        // unless it is polled. First the connection: wait for the CONNACK.
        loop {
            let event = events
                .poll()
                .await
                .map_err(|e| format!("{}: cannot connect: {e}", self.id))?;
            if let Event::Incoming(Incoming::ConnAck(_)) = event {
                break;
            }
        }
        // Then the event loop runs on its own task and counts the gateway's
        // PUBACKs: a QoS 1 reading is safely in the gateway once acknowledged.
        let acked = Arc::new(AtomicU64::new(0));
        let io = {
            let (acked, id) = (acked.clone(), self.id.clone());
            tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Incoming::PubAck(_))) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("{id}: MQTT connection failed: {e}")),
                    }
                }
            })
        };

        // A reading every `interval` until the deadline, in the firmware's
        // topic layout and JSON.
        let mut topic_buf = [0u8; 64];
        let topic = telemetry_topic(&self.id, &mut topic_buf)?.to_owned();
        let mut payload = [0u8; 160];
        let mut ticker = tokio::time::interval(self.interval);
        let mut seq = 0u32;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
            if io.is_finished() {
                break; // the connection failed; its error is reported below
            }
            let reading = self.measure();
            let n = Telemetry {
                device: &self.id,
                reading,
                seq,
            }
            .write_json(&mut payload)?;
            client
                .publish(
                    topic.as_str(),
                    QoS::AtLeastOnce,
                    false,
                    payload[..n].to_vec(),
                )
                .await?;
            seq += 1;
            stats.sent.fetch_add(1, Ordering::Relaxed);
            if f64::from(reading.temperature_centi_c) / 100.0 > self.threshold {
                stats.hot.fetch_add(1, Ordering::Relaxed);
            }
        }

        // Wait for the last acknowledgements, then say goodbye properly.
        while acked.load(Ordering::Relaxed) < u64::from(seq) && !io.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !io.is_finished() {
            client.disconnect().await?;
        }
        io.await??;
        Ok(())
    }

    /// A made-up reading: a comfortable room, and one reading in ten a hot spike.
    fn measure(&mut self) -> Reading {
        let centi_c = if self.rng.below(10) == 0 {
            3100 + self.rng.below(1400) as i32 // 31.00 .. 44.99 °C
        } else {
            2000 + self.rng.below(600) as i32 // 20.00 .. 25.99 °C
        };
        Reading {
            temperature_centi_c: centi_c,
            humidity_milli_pct: 35_000 + self.rng.below(20_000) as u32,
            pressure_pa: 100_000 + self.rng.below(2_500) as u32,
        }
    }
}

/// A tiny xorshift generator: enough for made-up readings, no extra crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
