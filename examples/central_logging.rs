//! Central logging: services push log lines into one queue over three
//! different protocols; one log processor reads them in batches and appends
//! them to a file, and loses none when it is stopped and restarted mid-stream.
//!
//! ```text
//! door-sensor ── MQTT logs/door-sensor ──► amq.topic ─(logs.#)─┐
//! billing ───── AMQP, default exchange ────────────────────────┼─► queue `central-logs` ──► log processor ──► central.log
//! web ───────── SQS SendMessageBatch ──────────────────────────┘        (SQS API, batches of 10)
//! ```
//!
//! # Why no line is lost, and none is written twice
//!
//! The processor receives a batch, appends it to the file, flushes the file to
//! disk, and only then deletes the batch from the queue. If it is stopped at
//! any point before the delete, the messages were never deleted: after the
//! queue's visibility timeout they are delivered again. That is SQS's
//! at-least-once delivery, and it means a batch can arrive twice: written,
//! then the processor died before deleting it. So the file is written
//! at-least-once *and deduplicated by id*: every line carries a unique id, the
//! processor reads the ids already in the file when it starts, and skips a
//! message whose id is there (deleting it from the queue all the same). A line
//! cut in half by a kill mid-write is dropped at start-up — its message was
//! not deleted either, so it comes back whole. The file ends up with every
//! line exactly once.
//!
//! # Run it
//!
//! ```text
//! cargo run --release                       # the gateway, embedded defaults
//! cargo run --example central-logging       # everything, with one simulated crash
//! ```
//!
//! By default (`--role all`) the example runs the three services and the
//! processor, stops the processor abruptly after it has written its third
//! batch but before deleting it (what `kill -9` at the worst moment does),
//! starts a new one, and checks the file at the end. To stop a processor
//! yourself, run the parts separately and press Ctrl-C (or `kill -9`) on the
//! processor while it works, then start it again:
//!
//! ```text
//! cargo run --example central-logging -- --role services --lines 2000
//! cargo run --example central-logging -- --role processor --exit-when-drained
//! ```
//!
//! Flags (`--help` lists them): `--mqtt` (or `MQTT_ADDR`, default
//! `127.0.0.1:1883`), `--amqp` (or `AMQP_URL`), `--endpoint` (or
//! `AWS_ENDPOINT_URL`, default `http://127.0.0.1:9324`), `--lines` per
//! service, `--out` (default `central.log`), `--visibility` (seconds).
//!
//! # What to look for
//!
//! * `processor: wrote batch …` lines mixing the three services.
//! * `processor stopped after writing batch 3, before deleting it`, then a
//!   new processor: after the visibility timeout it receives that batch again
//!   and reports `skipped … already in the file`.
//! * The last line: `verified: 300 lines from 3 services, each exactly once`.

use std::collections::HashSet;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, QueueAttributeName, SendMessageBatchRequestEntry,
};
use clap::{Parser, ValueEnum};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

const QUEUE: &str = "central-logs";

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Services and processor, with one simulated crash, then a check of the file.
    All,
    /// Only the three services: send `--lines` each and exit.
    Services,
    /// Only the log processor.
    Processor,
}

#[derive(Clone, Parser)]
#[command(about = "Log lines from MQTT, AMQP and SQS into one queue, one processor into a file")]
struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value = "all")]
    role: Role,
    /// The gateway's MQTT listener.
    #[arg(long, env = "MQTT_ADDR", default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// The gateway's AMQP URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp: String,
    /// The gateway's SQS/SNS endpoint.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:9324"
    )]
    endpoint: String,
    /// Log lines per service (at least 10).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(10..))]
    lines: u32,
    /// The file the processor appends to.
    #[arg(long, default_value = "central.log")]
    out: PathBuf,
    /// The queue's visibility timeout in seconds: how long a received, not yet
    /// deleted message stays hidden before it is delivered again.
    #[arg(long, default_value_t = 5)]
    visibility: u32,
    /// Processor: exit once the queue is empty, nothing is in flight, and the
    /// queue stayed so for a second (otherwise it runs until stopped).
    #[arg(long)]
    exit_when_drained: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors end the example with one line saying what went wrong.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("central-logging: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let sqs = sqs_client(&args.endpoint);
    let queue_url = setup_queue(&sqs, &args).await?;

    match args.role {
        Role::Services => {
            run_services(&args, &sqs, &queue_url, &run_id()).await?;
            println!("services: {} lines sent", 3 * args.lines);
        }
        Role::Processor => {
            let always = AtomicBool::new(true);
            let exit = args.exit_when_drained.then_some(&always);
            let written = process(&sqs, &queue_url, &args.out, None, exit).await?;
            println!(
                "processor: done, {written} new lines in {}",
                args.out.display()
            );
        }
        Role::All => run_all(&args, &sqs, &queue_url).await?,
    }
    Ok(())
}

/// The whole story in one process.
async fn run_all(args: &Args, sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<(), BoxError> {
    // A fresh file and an empty queue, so the check at the end is about this run.
    std::fs::write(&args.out, b"")?;
    sqs.purge_queue().queue_url(queue_url).send().await?;

    // The services send in the background while the processor works.
    let services = {
        let (args, sqs, queue_url) = (args.clone(), sqs.clone(), queue_url.to_owned());
        tokio::spawn(async move { run_services(&args, &sqs, &queue_url, &run_id()).await })
    };

    // The first processor "crashes" after its third batch, mid-stream.
    let services_done = AtomicBool::new(false);
    process(sqs, queue_url, &args.out, Some(3), None).await?;
    println!(
        "processor stopped after writing batch 3, before deleting it; starting a new one \
         (the batch comes back after the {} s visibility timeout)",
        args.visibility
    );

    // The new processor runs while the services are still sending, until they
    // are done and the queue is drained.
    let (processed, sent) = tokio::join!(
        process(sqs, queue_url, &args.out, None, Some(&services_done)),
        async {
            let sent = services.await;
            services_done.store(true, Ordering::Relaxed);
            println!(
                "services: all {} lines sent and acknowledged",
                3 * args.lines
            );
            sent
        }
    );
    sent??;
    processed?;

    // The check: every line of every service, exactly once.
    let text = std::fs::read_to_string(&args.out)?;
    let mut ids = HashSet::new();
    let mut services = HashSet::new();
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        let id = entry["id"]
            .as_str()
            .ok_or("a line without an id")?
            .to_owned();
        services.insert(entry["service"].as_str().unwrap_or("?").to_owned());
        if !ids.insert(id.clone()) {
            return Err(format!("{id} is in the file twice").into());
        }
    }
    let expected = 3 * args.lines as usize;
    if ids.len() != expected {
        return Err(format!("{} lines in the file, expected {expected}", ids.len()).into());
    }
    println!(
        "verified: {expected} lines from {} services, each exactly once, in {}",
        services.len(),
        args.out.display()
    );
    Ok(())
}

/// Creates the queue if needed (idempotent), sets its visibility timeout and
/// binds it to `amq.topic` so MQTT publishes under `logs/` reach it too.
async fn setup_queue(sqs: &aws_sdk_sqs::Client, args: &Args) -> Result<String, BoxError> {
    let url = sqs
        .create_queue()
        .queue_name(QUEUE)
        .send()
        .await
        .map_err(|e| format!("cannot reach the SQS API at {}: {e}", args.endpoint))?
        .queue_url
        .ok_or("CreateQueue returned no URL")?;
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            args.visibility.to_string(),
        )
        .send()
        .await?;
    if args.role != Role::Processor {
        // Every queue is an SQS queue *and* an AMQP queue: bind it like any other.
        let conn = amqp_connect(&args.amqp).await?;
        let channel = conn.create_channel().await?;
        channel
            .queue_bind(
                QUEUE.into(),
                "amq.topic".into(),
                "logs.#".into(), // MQTT `logs/#`
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        conn.close(200, "bye".into()).await?;
    }
    Ok(url)
}

/// The three services, each on its own protocol, all at once.
async fn run_services(
    args: &Args,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    run: &str,
) -> Result<(), BoxError> {
    let (mqtt, amqp, web) = tokio::join!(
        door_sensor_over_mqtt(&args.mqtt, run, args.lines),
        billing_over_amqp(&args.amqp, run, args.lines),
        web_over_sqs(sqs, queue_url, run, args.lines),
    );
    mqtt?;
    amqp?;
    web
}

/// One log line as the services send it: JSON with a unique id.
fn log_line(run: &str, service: &str, protocol: &str, n: u32, text: String) -> String {
    serde_json::json!({
        "id": format!("{run}-{service}-{n}"),
        "service": service,
        "protocol": protocol,
        "line": text,
    })
    .to_string()
}

/// A device logging over MQTT, QoS 1: it waits for every PUBACK before it
/// says it is done, so nothing it counts as sent is lost.
async fn door_sensor_over_mqtt(addr: &str, run: &str, lines: u32) -> Result<(), BoxError> {
    let (host, port) = addr.rsplit_once(':').ok_or("--mqtt must be host:port")?;
    let options = MqttOptions::new(format!("door-sensor-{run}"), host, port.parse()?);
    let (client, mut events) = AsyncClient::new(options, 100);
    let sender = {
        let (client, run) = (client.clone(), run.to_owned());
        tokio::spawn(async move {
            for n in 0..lines {
                let state = if n % 2 == 0 { "opened" } else { "closed" };
                let line = log_line(&run, "door-sensor", "mqtt", n, format!("door {state}"));
                client
                    .publish("logs/door-sensor", QoS::AtLeastOnce, false, line)
                    .await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, rumqttc::ClientError>(())
        })
    };
    let mut acked = 0;
    while acked < lines {
        if let Event::Incoming(Incoming::PubAck(_)) = events.poll().await? {
            acked += 1;
        }
    }
    sender.await??;
    client.disconnect().await?;
    Ok(())
}

/// A backend logging over AMQP with publisher confirms, straight to the queue
/// through the default exchange.
async fn billing_over_amqp(url: &str, run: &str, lines: u32) -> Result<(), BoxError> {
    let conn = amqp_connect(url).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    for n in 0..lines {
        let cents = 500 + (n * 37) % 5000;
        let line = log_line(
            run,
            "billing",
            "amqp",
            n,
            format!("charged invoice {n}: {cents} cents"),
        );
        let confirm = channel
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                line.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        if !confirm.await?.is_ack() {
            return Err("the gateway refused a billing log line".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}

/// A web server logging through the SQS API, ten lines per request.
async fn web_over_sqs(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    run: &str,
    lines: u32,
) -> Result<(), BoxError> {
    let mut n = 0;
    while n < lines {
        let mut batch = sqs.send_message_batch().queue_url(queue_url);
        let end = (n + 10).min(lines);
        for i in n..end {
            let status = if i % 7 == 0 { 404 } else { 200 };
            let body = log_line(run, "web", "sqs", i, format!("GET /products/{i} {status}"));
            batch = batch.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()?,
            );
        }
        let out = batch.send().await?;
        if !out.failed.is_empty() {
            return Err(format!("SendMessageBatch failed for {} lines", out.failed.len()).into());
        }
        n = end;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The log processor. Returns how many new lines it wrote.
///
/// `crash_after`: stop right after writing that many batches, before deleting
/// the last one (the worst moment to die). `exit_when_drained`: once this
/// flag is set, return as soon as nothing is left in the queue or in flight.
async fn process(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    out: &Path,
    crash_after: Option<u32>,
    exit_when_drained: Option<&AtomicBool>,
) -> Result<usize, BoxError> {
    let mut seen = ids_in_file(out)?;
    println!(
        "processor: started, {} lines already in {}",
        seen.len(),
        out.display()
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)?;
    let (mut batches, mut written, mut drained_polls) = (0, 0, 0);
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            let may_exit = exit_when_drained.is_some_and(|f| f.load(Ordering::Relaxed));
            if may_exit && queue_is_drained(sqs, queue_url).await? {
                drained_polls += 1;
                if drained_polls >= 2 {
                    return Ok(written);
                }
            }
            continue;
        }
        drained_polls = 0;

        // 1. Append the new lines, in one write, and flush them to disk.
        let mut chunk = String::new();
        let (mut new, mut skipped) = (0, 0);
        for msg in &received {
            let body = msg.body().unwrap_or_default();
            let entry: serde_json::Value = serde_json::from_str(body)?;
            let id = entry["id"].as_str().ok_or("a log line without an id")?;
            if seen.insert(id.to_owned()) {
                chunk.push_str(body);
                chunk.push('\n');
                new += 1;
            } else {
                skipped += 1;
            }
        }
        file.write_all(chunk.as_bytes())?;
        file.sync_data()?;
        batches += 1;
        written += new;
        if skipped > 0 {
            println!(
                "processor: skipped {skipped} lines already in the file (delivered again after a stop)"
            );
        }
        if new > 0 {
            println!(
                "processor: wrote batch {batches}: {new} lines ({} in total)",
                seen.len()
            );
        }

        if crash_after == Some(batches) {
            return Ok(written); // gone before the delete below
        }

        // 2. Only now tell the queue these are done.
        let mut delete = sqs.delete_message_batch().queue_url(queue_url);
        for (i, msg) in received.iter().enumerate() {
            delete = delete.entries(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(msg.receipt_handle().unwrap_or_default())
                    .build()?,
            );
        }
        delete.send().await?;
    }
}

/// Whether the queue holds nothing, visible or in flight.
async fn queue_is_drained(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<bool, BoxError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    Ok(attrs.values().all(|v| v == "0"))
}

/// The ids of the lines already in the file. A last line without its newline
/// was cut short by a stop mid-write: it is removed (its message was never
/// deleted, so it will be delivered again).
fn ids_in_file(path: &Path) -> Result<HashSet<String>, BoxError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e.into()),
    };
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        println!("processor: dropping a half-written last line");
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(complete as u64)?;
    }
    let mut ids = HashSet::new();
    for line in text[..complete].lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        if let Some(id) = entry["id"].as_str() {
            ids.insert(id.to_owned());
        }
    }
    Ok(ids)
}

/// An id for this run, so lines of different runs never share an id.
fn run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("r{millis}")
}

async fn amqp_connect(url: &str) -> Result<Connection, BoxError> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}").into())
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "example", "example", None, None, "static",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}
