//! SQS semantics reached from every protocol: a rule fills an SQS queue from
//! MQTT telemetry, SDK receivers, AMQP consumers and MQTT `$queue/`
//! subscribers share queues, and visibility timeouts, receive counts and
//! dead-letter redrive apply whichever protocol leased the message.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use tether_e2e::Gateway;
use tether_e2e::amqp::{self as amqp, *};
use tether_e2e::aws::{
    create_queue, delete, drain_bodies, message_counts, queue_arn, receive, receive_one, sqs,
    sqs_client, sqs_string,
};
use tether_e2e::mqtt::{v4, v5};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Standard base64 (with padding) to bytes; panics on anything else.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("not base64: {text}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn system_attribute(m: &sqs::types::Message, name: &str) -> Option<String> {
    m.attributes
        .as_ref()?
        .get(&sqs::types::MessageSystemAttributeName::from(name))
        .cloned()
}

async fn set_queue_attribute(c: &sqs::Client, url: &str, name: &str, value: &str) {
    c.set_queue_attributes()
        .queue_url(url)
        .attributes(sqs::types::QueueAttributeName::from(name), value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SetQueueAttributes {name}: {e:?}"));
}

async fn make_visible(c: &sqs::Client, url: &str, m: &sqs::types::Message) {
    c.change_message_visibility()
        .queue_url(url)
        .receipt_handle(m.receipt_handle.clone().expect("ReceiptHandle"))
        .visibility_timeout(0)
        .send()
        .await
        .expect("ChangeMessageVisibility 0");
}

/// Waits until `url` holds no visible, in-flight or delayed message.
async fn await_empty(c: &sqs::Client, url: &str, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let counts = message_counts(c, url).await;
        if counts == (0, 0, 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} still holds messages: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn redrive_policy(dlq: &str, max_receive_count: u32) -> String {
    json!({"deadLetterTargetArn": queue_arn(dlq), "maxReceiveCount": max_receive_count}).to_string()
}

// ---------------------------------------------------------------------------
// The scenario: MQTT telemetry → rule → SQS queue with a DLQ → SDK → redrive
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rule_routed_telemetry_is_received_dead_lettered_after_three_receives_and_redriven() {
    let config = r#"
[[rules]]
name = "hot-telemetry"
sql = "SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temperature > 50"
actions = [{ sqs = { queue = "hot-readings" } }]
"#;
    let gw = Gateway::builder().config(config).start();
    let c = sqs_client(gw.http.unwrap());
    let url = c
        .get_queue_url()
        .queue_name("hot-readings")
        .send()
        .await
        .expect("the rule's queue exists")
        .queue_url
        .unwrap();
    let dlq = create_queue(&c, "hot-readings-dlq", &[]).await;
    set_queue_attribute(
        &c,
        &url,
        "RedrivePolicy",
        &redrive_policy("hot-readings-dlq", 3),
    )
    .await;
    let sources = c
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .unwrap();
    assert_eq!(sources.queue_urls(), std::slice::from_ref(&url));

    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "sensor-42")).await;

    // A good reading: received and deleted.
    dev.publish_acked("sensors/42/telemetry", r#"{"temperature": 71.5}"#)
        .await;
    let good = receive_one(&c, &url).await;
    assert_eq!(
        parse(good.body.as_deref().unwrap()),
        json!({"temperature": 71.5, "device": "42"})
    );
    delete(&c, &url, &good).await;
    await_empty(&c, &url, Duration::from_secs(2)).await;

    // A poison reading: received three times, never deleted.
    dev.publish_acked("sensors/13/telemetry", r#"{"temperature": 99}"#)
        .await;
    let poison_body = json!({"temperature": 99, "device": "13"});
    let mut message_id = None;
    for attempt in 1..=3 {
        let m = receive_one(&c, &url).await;
        assert_eq!(parse(m.body.as_deref().unwrap()), poison_body);
        assert_eq!(
            system_attribute(&m, "ApproximateReceiveCount").as_deref(),
            Some(attempt.to_string().as_str())
        );
        message_id.get_or_insert(m.message_id.clone());
        assert_eq!(message_id.as_ref(), Some(&m.message_id));
        // The consumer "crashes": the message becomes visible again at once.
        make_visible(&c, &url, &m).await;
    }
    // The fourth receive moves it to the dead-letter queue instead.
    assert!(receive(&c, &url, 10, 0).await.is_empty());
    let dead = receive_one(&c, &dlq).await;
    assert_eq!(parse(dead.body.as_deref().unwrap()), poison_body);
    assert_eq!(Some(&dead.message_id), message_id.as_ref());
    assert_eq!(
        system_attribute(&dead, "DeadLetterQueueSourceArn").as_deref(),
        Some(queue_arn("hot-readings").as_str())
    );
    make_visible(&c, &dlq, &dead).await;
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));

    // Redrive: back to the source queue, where it can be received again.
    let task = c
        .start_message_move_task()
        .source_arn(queue_arn("hot-readings-dlq"))
        .send()
        .await
        .unwrap();
    assert!(task.task_handle.is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = c
            .list_message_move_tasks()
            .source_arn(queue_arn("hot-readings-dlq"))
            .send()
            .await
            .unwrap();
        let t = tasks.results().first().expect("the move task is listed");
        if t.status() == Some("COMPLETED") {
            assert_eq!(t.approximate_number_of_messages_moved(), 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "move task did not complete: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = receive_one(&c, &url).await;
    assert_eq!(parse(back.body.as_deref().unwrap()), poison_body);
    delete(&c, &url, &back).await;
    await_empty(&c, &url, Duration::from_secs(2)).await;
    await_empty(&c, &dlq, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn receive_visibility_timeout_parameter_returns_the_message_after_it_passes() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let dlq = create_queue(&c, "slow-dlq", &[]).await;
    let url = create_queue(
        &c,
        "slow",
        &[("RedrivePolicy", &redrive_policy("slow-dlq", 1))],
    )
    .await;
    c.send_message()
        .queue_url(&url)
        .message_body("poison")
        .send()
        .await
        .unwrap();
    let first = c
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(1)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(first.len(), 1);
    assert!(receive(&c, &url, 10, 0).await.is_empty(), "invisible");
    // After the timeout, the next receive exceeds maxReceiveCount 1.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(receive(&c, &url, 10, 0).await.is_empty());
    assert_eq!(receive_one(&c, &dlq).await.body.as_deref(), Some("poison"));
}

// ---------------------------------------------------------------------------
// AMQP and SQS on one queue
// ---------------------------------------------------------------------------

#[tokio::test]
async fn amqp_consumer_and_sqs_receiver_share_a_queue_without_duplicates() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "shared", &[]).await;
    let all: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    for chunk in all.chunks(10) {
        let mut req = c.send_message_batch().queue_url(&url);
        for body in chunk {
            req = req.entries(
                sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(body)
                    .message_body(body)
                    .build()
                    .unwrap(),
            );
        }
        let out = req.send().await.unwrap();
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }

    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "shared".into(),
            "worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let by_amqp = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first = amqp::next(&mut consumer, WAIT)
        .await
        .expect("the AMQP consumer gets a message");
    let worker = {
        let (by_amqp, stop) = (by_amqp.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = Some(first);
            loop {
                if let Some(d) = next {
                    by_amqp
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&d.data).into_owned());
                    // A slow worker, so the SQS receiver gets its share.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    d.ack(BasicAckOptions::default()).await.expect("ack");
                } else if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return consumer;
                }
                next = amqp::next(&mut consumer, Duration::from_millis(50)).await;
            }
        })
    };

    let mut by_sqs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while by_sqs.len() + by_amqp.lock().unwrap().len() < all.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sqs {by_sqs:?} amqp {:?}",
            by_amqp.lock().unwrap()
        );
        for m in receive(&c, &url, 10, 0).await {
            delete(&c, &url, &m).await;
            by_sqs.push(m.body.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing is delivered twice, even a little later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receive(&c, &url, 10, 0).await.is_empty());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _consumer = worker.await.unwrap();
    let by_amqp = by_amqp.lock().unwrap().clone();
    assert!(!by_amqp.is_empty() && !by_sqs.is_empty());
    let mut both: Vec<String> = by_amqp.iter().chain(&by_sqs).cloned().collect();
    both.sort();
    assert_eq!(
        both, all,
        "every message exactly once (amqp {by_amqp:?}, sqs {by_sqs:?})"
    );
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

#[tokio::test]
async fn amqp_queue_with_visibility_timeout_and_delivery_limit_dead_letters_a_never_acked_message()
{
    let gw = Gateway::start();
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    ch.exchange_declare(
        "dlx".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    bound_queue(&ch, "dead", "dlx", &[""]).await;
    let mut args = FieldTable::default();
    args.insert("x-visibility-timeout".into(), AMQPValue::LongInt(200));
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(2));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("dlx".into()),
    );
    ch.queue_declare("work".into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            "work".into(),
            "forgetful".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        "work".into(),
        BasicPublishOptions::default(),
        b"poison",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    // Delivered, never acknowledged: each lease expires after 200 ms.
    let mut deliveries = Vec::new();
    while let Some(d) = amqp::next(&mut consumer, Duration::from_secs(1)).await {
        deliveries.push(d.redelivered);
        assert!(deliveries.len() <= 10, "redelivered without end");
    }
    assert_eq!(
        deliveries,
        vec![false, true, true],
        "delivered once, then redelivered until returned more than 2 times"
    );
    let dead = ch
        .basic_get("dead".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message was dead-lettered");
    assert_eq!(dead.delivery.data, b"poison");
    let deaths = x_death(&dead.delivery.properties);
    assert_eq!(
        deaths[0].inner().get("reason"),
        Some(&AMQPValue::LongString("delivery_limit".into()))
    );
}

#[tokio::test]
async fn amqp_publish_to_the_default_exchange_reaches_an_sqs_receiver_with_headers_as_attributes() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "from-amqp", &[]).await;
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    let body = "{\"v\": \"h\u{e9}llo \u{2713} <&>\"}";
    let mut headers = FieldTable::default();
    headers.insert("device".into(), AMQPValue::LongString("d-1".into()));
    headers.insert("count".into(), AMQPValue::LongInt(5));
    ch.basic_publish(
        "".into(),
        "from-amqp".into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        BasicProperties::default().with_headers(headers),
    )
    .await
    .unwrap();
    let m = receive_one(&c, &url).await;
    assert_eq!(m.body.as_deref(), Some(body));
    assert_eq!(
        m.md5_of_body.as_deref(),
        Some(tether_e2e::aws::md5_hex(body.as_bytes()).as_str())
    );
    let attrs = m.message_attributes.clone().unwrap_or_default();
    assert_eq!(attrs["device"].string_value.as_deref(), Some("d-1"));
    assert_eq!(attrs["device"].data_type, "String");
    assert_eq!(attrs["count"].string_value.as_deref(), Some("5"));
}

#[tokio::test]
async fn amqp_binary_body_reaches_an_sqs_receiver_base64_encoded_and_marked() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "binary", &[]).await;
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    let bytes = [0u8, 0xff, 0xfe, 0x01, b'x'];
    ch.basic_publish(
        "".into(),
        "binary".into(),
        BasicPublishOptions::default(),
        &bytes,
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let m = receive_one(&c, &url).await;
    let attrs = m.message_attributes.clone().unwrap_or_default();
    assert_eq!(
        attrs
            .get("TetherBodyEncoding")
            .and_then(|a| a.string_value.as_deref()),
        Some("base64")
    );
    let decoded = base64_decode(m.body.as_deref().unwrap());
    assert_eq!(decoded, bytes);
}

#[tokio::test]
async fn sqs_message_attributes_reach_an_amqp_consumer_as_headers() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "to-amqp", &[]).await;
    c.send_message()
        .queue_url(&url)
        .message_body("hello amqp")
        .message_attributes("kind", sqs_string("greeting"))
        .send()
        .await
        .unwrap();
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    let got = ch
        .basic_get("to-amqp".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.data, b"hello amqp");
    assert_eq!(
        header(&got.delivery.properties, "kind"),
        Some(&AMQPValue::LongString("greeting".into()))
    );
}

// ---------------------------------------------------------------------------
// MQTT `$queue/` subscribers
// ---------------------------------------------------------------------------

fn manual_ack_options(gw: &Gateway, id: &str) -> v5::MqttOptions {
    let mut o = v5::options(gw.mqtt_addr(), id);
    o.set_manual_acks(true);
    o
}

#[tokio::test]
async fn mqtt_queue_subscriber_without_puback_gets_the_message_again_after_the_visibility_timeout()
{
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "jobs", &[("VisibilityTimeout", "1")]).await;
    let (mut dev, _) = v5::Client::connect(manual_ack_options(&gw, "worker-1")).await;
    dev.subscribe("$queue/jobs", v5::QoS::AtLeastOnce).await;
    c.send_message()
        .queue_url(&url)
        .message_body("job-1")
        .send()
        .await
        .unwrap();
    let first = dev.expect().await;
    assert_eq!(&first.payload[..], b"job-1");
    let leased_at = tokio::time::Instant::now();
    // Not acknowledged: in flight, then visible again after 1 s.
    assert_eq!(message_counts(&c, &url).await, (0, 1, 0));
    let again = dev
        .recv(Duration::from_secs(3))
        .await
        .expect("redelivered after the visibility timeout");
    assert!(
        leased_at.elapsed() >= Duration::from_millis(800),
        "redelivered after {:?}, before the 1 s visibility timeout",
        leased_at.elapsed()
    );
    assert_eq!(&again.payload[..], b"job-1");
    dev.client.ack(&again).await.expect("ack");
    await_empty(&c, &url, Duration::from_secs(2)).await;
    dev.expect_none(Duration::from_millis(1300)).await;
}

#[tokio::test]
async fn mqtt_queue_subscriber_that_never_acks_sends_the_message_to_the_dead_letter_queue() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let dlq = create_queue(&c, "jobs-dlq", &[]).await;
    let url = create_queue(
        &c,
        "jobs",
        &[
            ("VisibilityTimeout", "1"),
            ("RedrivePolicy", &redrive_policy("jobs-dlq", 2)),
        ],
    )
    .await;
    let (mut dev, _) = v5::Client::connect(manual_ack_options(&gw, "worker-2")).await;
    dev.subscribe("$queue/jobs", v5::QoS::AtLeastOnce).await;
    c.send_message()
        .queue_url(&url)
        .message_body("poison-job")
        .send()
        .await
        .unwrap();
    let mut deliveries = 0;
    while let Some(p) = dev.recv(Duration::from_millis(1600)).await {
        assert_eq!(&p.payload[..], b"poison-job");
        deliveries += 1;
        assert!(deliveries <= 5, "redelivered without end");
    }
    assert_eq!(deliveries, 2, "maxReceiveCount 2");
    let dead = receive_one(&c, &dlq).await;
    assert_eq!(dead.body.as_deref(), Some("poison-job"));
    assert_eq!(
        system_attribute(&dead, "DeadLetterQueueSourceArn").as_deref(),
        Some(queue_arn("jobs").as_str())
    );
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

#[tokio::test]
async fn sqs_string_attributes_reach_an_mqtt5_queue_subscriber_as_user_properties() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "notify", &[]).await;
    let (mut dev, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "panel")).await;
    dev.subscribe("$queue/notify", v5::QoS::AtLeastOnce).await;
    c.send_message()
        .queue_url(&url)
        .message_body("door open")
        .message_attributes("kind", sqs_string("alarm"))
        .message_attributes(
            "zone",
            sqs::types::MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("3")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let p = dev.expect().await;
    assert_eq!(&p.topic[..], b"$queue/notify");
    assert_eq!(&p.payload[..], b"door open");
    let user: BTreeSet<(String, String)> = p
        .properties
        .as_ref()
        .map(|props| props.user_properties.iter().cloned().collect())
        .unwrap_or_default();
    assert!(
        user.contains(&("kind".to_owned(), "alarm".to_owned())),
        "{user:?}"
    );
    assert!(
        user.contains(&("zone".to_owned(), "3".to_owned())),
        "{user:?}"
    );
    await_empty(&c, &url, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn mqtt_queue_subscribers_and_sqs_receivers_never_get_the_same_message() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "tickets", &[]).await;
    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "kiosk")).await;
    dev.subscribe("$queue/tickets", v4::QoS::AtLeastOnce).await;
    for i in 0..10 {
        c.send_message()
            .queue_url(&url)
            .message_body(format!("t{i}"))
            .send()
            .await
            .unwrap();
    }
    let mut by_mqtt = Vec::new();
    while let Some(p) = dev.recv(Duration::from_millis(300)).await {
        by_mqtt.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    let by_sqs = drain_bodies(&c, &url).await;
    let mut both: Vec<String> = by_mqtt.iter().chain(&by_sqs).cloned().collect();
    both.sort();
    let want: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    assert_eq!(both, want, "mqtt {by_mqtt:?} sqs {by_sqs:?}");
}
