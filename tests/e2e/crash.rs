//! The crash harness: nothing acknowledged is lost across `kill -9`.
//!
//! Five cycles of: start `tether` on one data directory, run publishers that
//! count a message only once it is acknowledged (AMQP publisher confirms,
//! MQTT QoS 1 PUBACKs, SQS SendMessage responses on a FIFO queue) and
//! consumers that ack and delete, then SIGKILL the gateway at a random
//! moment. A last start drains every queue. Then:
//!
//! * every acknowledged message was delivered at least once (in some cycle or
//!   in the final drain);
//! * no SQS message whose DeleteMessage succeeded was ever received again;
//! * per FIFO message group, messages were first received in the order they
//!   were sent.
//!
//! (An AMQP basic.ack has no reply, so an ack in flight at the kill may be
//! lost and the message redelivered: at-least-once, as in RabbitMQ.)
//!
//! The random schedule comes from a seed printed at the start; set
//! `TETHER_CRASH_SEED` to replay one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::amqp::{self, *};
use tether_e2e::aws::{self, sqs};
use tether_e2e::mqtt::v4::{self, Client, Event, Incoming, QoS};

const CYCLES: usize = 5;
const GROUPS: u64 = 4;
const VISIBILITY: i32 = 2;

/// What the clients saw, across every cycle.
#[derive(Default)]
struct Ledger {
    /// Ids whose publish was acknowledged, per stream.
    acked: BTreeMap<&'static str, BTreeSet<u64>>,
    /// Ids delivered at least once, per stream.
    delivered: BTreeMap<&'static str, BTreeSet<u64>>,
    /// SQS ids whose DeleteMessage succeeded.
    deleted: BTreeSet<u64>,
    /// SQS: per group, ids in the order of their first receipt.
    first_receipts: HashMap<u64, Vec<u64>>,
    /// Broken promises found while running.
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Ledger>>;

fn note(l: &Shared, f: impl FnOnce(&mut Ledger)) {
    f(&mut l.lock().unwrap());
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn body_id(data: &[u8]) -> Option<u64> {
    std::str::from_utf8(data)
        .ok()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

async fn setup(gw: &Gateway) -> (Connection, sqs::Client, String) {
    let conn = amqp::connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for q in ["crash-amqp", "crash-mqtt"] {
        ch.queue_declare(q.into(), durable, FieldTable::default())
            .await
            .unwrap();
    }
    amqp::bind(
        &ch,
        "crash-mqtt",
        "amq.topic",
        "crash.mqtt",
        FieldTable::default(),
    )
    .await;
    let c = aws::sqs_client(gw.http.unwrap());
    let url = aws::create_queue(
        &c,
        "crash.fifo",
        &[
            ("FifoQueue", "true"),
            ("VisibilityTimeout", &VISIBILITY.to_string()),
        ],
    )
    .await;
    (conn, c, url)
}

/// AMQP: publishes persistent messages one by one with confirms.
async fn amqp_publisher(ch: Channel, ledger: Shared, next: Arc<Mutex<u64>>) {
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    loop {
        let id = {
            let mut n = next.lock().unwrap();
            *n += 1;
            *n
        };
        let Ok(confirm) = ch
            .basic_publish(
                "".into(),
                "crash-amqp".into(),
                BasicPublishOptions::default(),
                format!("amqp:{id}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
        else {
            return;
        };
        match confirm.await {
            Ok(c) if c.is_ack() => note(&ledger, |l| {
                l.acked.entry("amqp").or_default().insert(id);
            }),
            _ => return,
        }
    }
}

/// AMQP: consumes `queue`, acking each delivery.
async fn amqp_consumer(ch: Channel, queue: &'static str, stream: &'static str, ledger: Shared) {
    let _ = ch.basic_qos(50, BasicQosOptions::default()).await;
    let Ok(mut c) = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    while let Some(Ok(d)) = amqp::next_result(&mut c, Duration::from_secs(30)).await {
        if let Some(id) = body_id(&d.data) {
            note(&ledger, |l| {
                l.delivered.entry(stream).or_default().insert(id);
            });
        }
        if d.ack(BasicAckOptions::default()).await.is_err() {
            return;
        }
    }
}

/// MQTT: publishes at QoS 1, one at a time, counting each PUBACK.
async fn mqtt_publisher(
    addr: std::net::SocketAddr,
    cycle: usize,
    ledger: Shared,
    next: Arc<Mutex<u64>>,
) {
    let mut c = Client::start(v4::options(addr, &format!("crash-pub-{cycle}")));
    loop {
        match c.events.recv().await {
            Some(v4::Report::Event(Event::Incoming(Incoming::ConnAck(_)))) => break,
            Some(v4::Report::Event(_)) => continue,
            _ => return,
        }
    }
    loop {
        let id = {
            let mut n = next.lock().unwrap();
            *n += 1;
            *n
        };
        if c.client
            .publish("crash/mqtt", QoS::AtLeastOnce, false, format!("mqtt:{id}"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            match c.events.recv().await {
                Some(v4::Report::Event(Event::Incoming(Incoming::PubAck(_)))) => {
                    note(&ledger, |l| {
                        l.acked.entry("mqtt").or_default().insert(id);
                    });
                    break;
                }
                Some(v4::Report::Event(_)) => continue,
                _ => return,
            }
        }
    }
}

/// SQS: sends to the FIFO queue, spreading ids over the groups.
async fn sqs_sender(c: sqs::Client, url: String, ledger: Shared, next: Arc<Mutex<u64>>) {
    loop {
        let id = {
            let mut n = next.lock().unwrap();
            *n += 1;
            *n
        };
        let r = c
            .send_message()
            .queue_url(&url)
            .message_body(format!("sqs:{id}"))
            .message_group_id(format!("g{}", id % GROUPS))
            .message_deduplication_id(format!("d{id}"))
            .send()
            .await;
        if r.is_err() {
            return;
        }
        note(&ledger, |l| {
            l.acked.entry("sqs").or_default().insert(id);
        });
    }
}

/// SQS: receives and deletes, checking order and that deleted messages stay
/// deleted. Returns after `quiet` empty receives in a row (0: never).
async fn sqs_receiver(c: sqs::Client, url: String, ledger: Shared, quiet: usize) {
    let mut empty = 0;
    loop {
        let r = c
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let Ok(out) = r else {
            return;
        };
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            empty += 1;
            if quiet > 0 && empty >= quiet {
                return;
            }
            continue;
        }
        empty = 0;
        for m in msgs {
            let Some(id) = m.body().and_then(|b| body_id(b.as_bytes())) else {
                continue;
            };
            note(&ledger, |l| {
                if l.deleted.contains(&id) {
                    l.violations
                        .push(format!("sqs {id} was received again after it was deleted"));
                }
                l.delivered.entry("sqs").or_default().insert(id);
                let seen = l.first_receipts.entry(id % GROUPS).or_default();
                if !seen.contains(&id) {
                    seen.push(id);
                }
            });
            let Some(handle) = m.receipt_handle() else {
                continue;
            };
            if c.delete_message()
                .queue_url(&url)
                .receipt_handle(handle)
                .send()
                .await
                .is_err()
            {
                return;
            }
            note(&ledger, |l| {
                l.deleted.insert(id);
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_across_kill_9_cycles() {
    let seed = std::env::var("TETHER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("crash harness seed: {seed} (TETHER_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ledger: Shared = Arc::default();
    let ids = [
        Arc::new(Mutex::new(0u64)),
        Arc::new(Mutex::new(1_000_000u64)),
        Arc::new(Mutex::new(2_000_000u64)),
    ];

    for cycle in 0..CYCLES {
        let mut gw = Gateway::builder().data_dir(data.clone()).start();
        let (conn, c, url) = setup(&gw).await;
        let conn2 = amqp::connect(gw.amqp.unwrap()).await;
        let tasks = [
            tokio::spawn(amqp_publisher(
                conn.create_channel().await.unwrap(),
                ledger.clone(),
                ids[0].clone(),
            )),
            tokio::spawn(amqp_consumer(
                conn2.create_channel().await.unwrap(),
                "crash-amqp",
                "amqp",
                ledger.clone(),
            )),
            tokio::spawn(amqp_consumer(
                conn2.create_channel().await.unwrap(),
                "crash-mqtt",
                "mqtt",
                ledger.clone(),
            )),
            tokio::spawn(mqtt_publisher(
                gw.mqtt_addr(),
                cycle,
                ledger.clone(),
                ids[1].clone(),
            )),
            tokio::spawn(sqs_sender(
                c.clone(),
                url.clone(),
                ledger.clone(),
                ids[2].clone(),
            )),
            tokio::spawn(sqs_receiver(c, url, ledger.clone(), 0)),
        ];
        let run_for = Duration::from_millis(rng.between(300, 1500));
        tokio::time::sleep(run_for).await;
        gw.kill9();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        let l = ledger.lock().unwrap();
        println!(
            "cycle {cycle}: killed after {run_for:?}; acked so far: {:?}",
            l.acked
                .iter()
                .map(|(k, v)| (*k, v.len()))
                .collect::<Vec<_>>()
        );
    }

    // Final start: drain everything.
    let gw = Gateway::builder().data_dir(data).start();
    let (conn, c, url) = setup(&gw).await;
    let drain = vec![
        tokio::spawn(amqp_consumer(
            conn.create_channel().await.unwrap(),
            "crash-amqp",
            "amqp",
            ledger.clone(),
        )),
        tokio::spawn(amqp_consumer(
            conn.create_channel().await.unwrap(),
            "crash-mqtt",
            "mqtt",
            ledger.clone(),
        )),
    ];
    // Messages in flight at the last kill come back after their visibility
    // timeout; keep receiving well past it.
    sqs_receiver(
        c.clone(),
        url.clone(),
        ledger.clone(),
        2 * VISIBILITY as usize + 2,
    )
    .await;
    let ch = conn.create_channel().await.unwrap();
    for q in ["crash-amqp", "crash-mqtt"] {
        let left = amqp::await_message_count(&ch, q, 0, Duration::from_secs(10)).await;
        assert_eq!(left, 0, "{q} did not drain");
    }
    // Unacknowledged deliveries of the drain consumers are acked as they come;
    // give the last acks a moment to land before reading the ledger.
    let wanted: usize = {
        let l = ledger.lock().unwrap();
        l.acked.values().map(BTreeSet::len).sum()
    };
    let _ = tether_e2e::eventually(Duration::from_secs(10), || {
        let l = ledger.lock().unwrap();
        l.acked
            .iter()
            .all(|(s, ids)| ids.is_subset(l.delivered.get(s).unwrap_or(&BTreeSet::new())))
    })
    .await;
    for t in drain {
        t.abort();
    }

    let l = ledger.lock().unwrap();
    assert!(wanted > 0, "no publish was acknowledged at all");
    for stream in ["amqp", "mqtt", "sqs"] {
        let acked = l.acked.get(stream).cloned().unwrap_or_default();
        assert!(!acked.is_empty(), "{stream}: nothing was acknowledged");
        let delivered = l.delivered.get(stream).cloned().unwrap_or_default();
        let lost: Vec<u64> = acked.difference(&delivered).copied().collect();
        assert!(
            lost.is_empty(),
            "{stream}: {} acknowledged messages were lost (seed {seed}): {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        );
        println!(
            "{stream}: {} acknowledged, {} delivered, none lost",
            acked.len(),
            delivered.len()
        );
    }
    // FIFO: within each group, acknowledged messages were first received in
    // the order they were sent.
    let sqs_acked = l.acked.get("sqs").cloned().unwrap_or_default();
    for (g, order) in &l.first_receipts {
        let acked_order: Vec<u64> = order
            .iter()
            .copied()
            .filter(|i| sqs_acked.contains(i))
            .collect();
        let mut sorted = acked_order.clone();
        sorted.sort_unstable();
        assert_eq!(
            acked_order, sorted,
            "group g{g} was received out of order (seed {seed})"
        );
    }
    assert!(
        l.violations.is_empty(),
        "violations (seed {seed}): {:?}",
        &l.violations[..l.violations.len().min(20)]
    );
}
