//! Order processing: a web shop's traffic spike lands in an AMQP queue, a pool
//! of workers takes orders at its own pace, and an order that keeps failing is
//! dead-lettered instead of blocking the others.
//!
//! ```text
//! shop (producer) ── burst of orders ──► queue `orders` ──► 4 workers (prefetch 5, manual ack)
//!                                          │ fails 3 times
//!                                          ▼
//!                          exchange `orders-dlx` ──► queue `orders-dead-letters`
//! ```
//!
//! This is the RabbitMQ "work queues" pattern with a quorum queue's delivery
//! limit, written with lapin exactly as it would be for RabbitMQ or Amazon MQ.
//! The queue absorbs the spike: the shop publishes every order in well under a
//! second (with publisher confirms, so each one is safely queued), while the
//! workers need several seconds to get through them.
//!
//! # Run it
//!
//! ```text
//! cargo run --release                       # the gateway, embedded defaults
//! cargo run --example order-processing
//! cargo run --example order-processing -- --orders 60 --workers 3 --work-ms 20
//! ```
//!
//! Flags (`--help` lists them): `--amqp` (or `AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), `--orders`, `--workers`,
//! `--prefetch`, `--work-ms`, `--failing-order`.
//!
//! # What to look for
//!
//! * `queue depth` lines: the depth jumps to (nearly) every order at once,
//!   then falls steadily as the workers catch up. Nothing is refused and no
//!   worker is overwhelmed: each has at most `--prefetch` unacknowledged orders.
//! * Order #13's card is declined every time: three `payment declined` lines
//!   (attempts 1, 2, 3), then `DEAD-LETTERED order #13` with the reason the
//!   broker gives in the `x-death` header (`delivery_limit`).
//! * The final line: every other order processed exactly once, and one order
//!   left in `orders-dead-letters` for a person to look at.

use std::collections::HashMap;
use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::time::Instant;

const ORDERS: &str = "orders";
const DEAD_LETTER_EXCHANGE: &str = "orders-dlx";
const DEAD_LETTERS: &str = "orders-dead-letters";

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "AMQP work queue with prefetch, manual acks and a dead-letter queue")]
struct Args {
    /// The gateway's AMQP URL (RabbitMQ's guest/guest is an anonymous login).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp: String,
    /// How many orders the spike brings.
    #[arg(long, default_value_t = 200)]
    orders: u64,
    /// How many workers process orders.
    #[arg(long, default_value_t = 4)]
    workers: u64,
    /// Unacknowledged orders a worker may hold at once.
    #[arg(long, default_value_t = 5)]
    prefetch: u16,
    /// How long one order takes to process.
    #[arg(long, default_value_t = 40)]
    work_ms: u64,
    /// The order whose payment is always declined (0: none).
    #[arg(long, default_value_t = 13)]
    failing_order: u64,
}

/// What the workers and the dead-letter watcher have seen.
#[derive(Default)]
struct Progress {
    processed: AtomicU64,
    dead_lettered: AtomicU64,
    /// Failed attempts per order id.
    failures: Mutex<HashMap<u64, u32>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors end the example with one line saying what went wrong.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-processing: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let conn = Connection::connect(&args.amqp, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.amqp))?;
    let setup = conn.create_channel().await?;
    declare_topology(&setup).await?;
    println!(
        "declared `{ORDERS}` (delivery limit 2, dead letters to `{DEAD_LETTER_EXCHANGE}` → `{DEAD_LETTERS}`)"
    );

    let progress = Arc::new(Progress::default());

    // The worker pool: one channel and one consumer each.
    for n in 1..=args.workers {
        let channel = conn.create_channel().await?;
        let work = worker(
            n,
            channel,
            progress.clone(),
            args.prefetch,
            args.work_ms,
            args.failing_order,
        );
        tokio::spawn(async move {
            if let Err(e) = work.await {
                eprintln!("worker {n} stopped: {e}");
            }
        });
    }

    // Someone watching the dead-letter queue.
    let watcher = dead_letter_watcher(conn.create_channel().await?, progress.clone());
    tokio::spawn(async move {
        if let Err(e) = watcher.await {
            eprintln!("dead-letter watcher stopped: {e}");
        }
    });

    // The spike: every order as fast as the shop can send it.
    let shop = conn.create_channel().await?;
    shop.confirm_select(ConfirmSelectOptions::default()).await?;
    let started = Instant::now();
    let mut confirms = Vec::with_capacity(args.orders as usize);
    for id in 1..=args.orders {
        let order = serde_json::json!({
            "order": id,
            "customer": format!("customer-{}", id % 37),
            "total_cents": 1000 + (id * 7919) % 9000,
        });
        let confirm = shop
            .basic_publish(
                "".into(), // the default exchange routes by queue name
                ORDERS.into(),
                BasicPublishOptions::default(),
                order.to_string().as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2) // persistent: survives a gateway restart
                    .with_content_type("application/json".into()),
            )
            .await?;
        confirms.push(confirm);
    }
    // A confirm means the gateway has the order on disk: the shop can tell the
    // customer "order received" now, whatever the workers are doing.
    for confirm in confirms {
        if !confirm.await?.is_ack() {
            return Err("the gateway refused an order (nack)".into());
        }
    }
    println!(
        "shop: {} orders published and confirmed in {} ms",
        args.orders,
        started.elapsed().as_millis()
    );

    // Watch the queue absorb the spike, until every order is accounted for.
    let expect_dead = u64::from((1..=args.orders).contains(&args.failing_order));
    let expect_processed = args.orders - expect_dead;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        // A passive declare asks for the queue's state without changing it.
        let queue = setup
            .queue_declare(
                ORDERS.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let processed = progress.processed.load(Ordering::Relaxed);
        let dead = progress.dead_lettered.load(Ordering::Relaxed);
        println!(
            "t={:>5.2}s queue depth: {:>4} waiting · {processed} processed · {dead} dead-lettered",
            started.elapsed().as_secs_f64(),
            queue.message_count(),
        );
        if processed >= expect_processed && dead >= expect_dead {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "gave up after 60 s: {processed}/{expect_processed} processed, {dead}/{expect_dead} dead-lettered"
            )
            .into());
        }
    }
    println!(
        "done: {expect_processed} orders processed, {expect_dead} dead-lettered and kept in `{DEAD_LETTERS}`"
    );
    conn.close(200, "bye".into()).await?;
    Ok(())
}

/// Declares the queues and the dead-letter route, and empties both queues so
/// the run starts clean. Declarations are idempotent: running the example
/// again finds everything in place.
async fn declare_topology(ch: &Channel) -> Result<(), BoxError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.exchange_declare(
        DEAD_LETTER_EXCHANGE.into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(DEAD_LETTERS.into(), durable, FieldTable::default())
        .await?;
    ch.queue_bind(
        DEAD_LETTERS.into(),
        DEAD_LETTER_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    // RabbitMQ's quorum-queue arguments: after the delivery limit (2 returns,
    // so the third failure) the broker dead-letters the message itself; the
    // workers only say "this attempt failed".
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(2));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
    );
    ch.queue_declare(ORDERS.into(), durable, args)
        .await
        .map_err(|e| format!("declaring `{ORDERS}`: {e} (delete the queue if an older run declared it differently)"))?;

    ch.queue_purge(ORDERS.into(), QueuePurgeOptions::default())
        .await?;
    ch.queue_purge(DEAD_LETTERS.into(), QueuePurgeOptions::default())
        .await?;
    Ok(())
}

/// One worker: takes up to `prefetch` orders at a time, processes each, and
/// acknowledges it only when done — so an order a worker was holding when it
/// crashed goes back to the queue for another worker.
async fn worker(
    n: u64,
    channel: Channel,
    progress: Arc<Progress>,
    prefetch: u16,
    work_ms: u64,
    failing_order: u64,
) -> Result<(), BoxError> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut orders = channel
        .basic_consume(
            ORDERS.into(),
            format!("worker-{n}").as_str().into(),
            BasicConsumeOptions::default(), // manual acks
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = orders.next().await {
        let delivery = delivery?;
        let order: serde_json::Value = serde_json::from_slice(&delivery.data)?;
        let id = order["order"].as_u64().unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(work_ms)).await; // "processing"

        if id == failing_order {
            let attempt = {
                let mut failures = progress.failures.lock().map_err(|_| "lock poisoned")?;
                let count = failures.entry(id).or_default();
                *count += 1;
                *count
            };
            println!(
                "worker {n}: order #{id} payment declined (attempt {attempt}), returning it to the queue"
            );
            // Requeue: the broker counts the delivery and dead-letters the
            // order once it has failed past the queue's delivery limit.
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?;
        } else {
            delivery.ack(BasicAckOptions::default()).await?;
            progress.processed.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Reports what reaches the dead-letter queue. It does not acknowledge: when
/// the example's connection closes, the order goes back to
/// `orders-dead-letters` and stays there for a person to inspect.
async fn dead_letter_watcher(channel: Channel, progress: Arc<Progress>) -> Result<(), BoxError> {
    let mut dead = channel
        .basic_consume(
            DEAD_LETTERS.into(),
            "dead-letter-watcher".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = dead.next().await {
        let delivery = delivery?;
        let order: serde_json::Value = serde_json::from_slice(&delivery.data)?;
        println!(
            "DEAD-LETTERED order #{} ({}), x-death reason: {}",
            order["order"],
            order["customer"].as_str().unwrap_or("?"),
            death_reason(&delivery.properties).unwrap_or_else(|| "unknown".into()),
        );
        progress.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The `reason` of the newest `x-death` entry, which the broker adds when it
/// dead-letters a message (`rejected`, `expired`, `maxlen`, `delivery_limit`).
fn death_reason(props: &BasicProperties) -> Option<String> {
    let headers = props.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(newest) = deaths.as_slice().first()? else {
        return None;
    };
    match newest.inner().get("reason")? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
