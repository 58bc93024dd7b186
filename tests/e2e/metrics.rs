//! Observability: `/metrics` scraped and parsed (strictly) while real MQTT,
//! AMQP and SQS clients drive traffic, `/healthz` and `/readyz`, JSON logs,
//! and the one log line every refused connection gets.
//!
//! Each test starts its own gateway, so counters start at zero; values are
//! still compared before/after where the setup itself moves them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tether_e2e::amqp::{self as amqp_util, FieldTable};
use tether_e2e::aws;
use tether_e2e::mqtt::v4;
use tether_e2e::prom::{Scrape, scrape};
use tether_e2e::raw::{RawClient, connect_packet};
use tether_e2e::raw_amqp::{Login, RawAmqp};
use tether_e2e::{Gateway, Log};
use tether_protocols::mqtt::{Packet, ProtocolVersion, ReasonCode};

/// How long a counter may take to show what was done.
const SETTLE: Duration = Duration::from_secs(10);

/// Scrapes until `cond` holds (panics with the last scrape after [`SETTLE`]).
async fn scrape_until(http: SocketAddr, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = scrape(http).await;
        if cond(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not reached; last scrape:\n{:#?}", s.families);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn proto(p: &str) -> [(&str, &str); 1] {
    [("protocol", p)]
}

fn queue<'a>(vhost: &'a str, name: &'a str) -> [(&'a str, &'a str); 2] {
    [("vhost", vhost), ("queue", name)]
}

/// The log lines that mention `peer` and say `connection refused`.
fn refusal_lines(log: &Log, peer: SocketAddr) -> Vec<String> {
    let needle = format!("peer={peer}");
    log.text()
        .lines()
        .filter(|l| l.contains("connection refused") && l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Waits for the refusal line of `peer`, then checks it is the only one and
/// names `protocol` and `reason`.
async fn assert_one_refusal(log: &Log, peer: SocketAddr, protocol: &str, reason: &str) {
    let re = regex::Regex::new(&format!(
        r"connection refused.*peer={}",
        regex::escape(&peer.to_string())
    ))
    .unwrap();
    assert!(
        log.wait_for(&re, SETTLE).is_some(),
        "no refusal logged for {peer}:\n{}",
        log.text()
    );
    // A second line would come from the same handling; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = refusal_lines(log, peer);
    assert_eq!(
        lines.len(),
        1,
        "one line per refused connection: {lines:#?}"
    );
    let line = &lines[0];
    assert!(line.contains(&format!("protocol={protocol}")), "{line}");
    assert!(line.contains(&format!("reason={reason}")), "{line}");
}

#[tokio::test]
async fn connections_are_counted_per_protocol_up_then_down() {
    let gw = Gateway::start();
    let http = gw.http.unwrap();
    let before = scrape(http).await;
    assert_eq!(before.get("tether_connections", &proto("mqtt")), Some(0.0));
    assert_eq!(before.get("tether_connections", &proto("amqp")), Some(0.0));
    // The scrape's own connection is open while it is answered.
    assert!(before.val("tether_connections", &proto("http")) >= 1.0);

    let mqtt = v4::Client::connect(v4::options(gw.mqtt_addr(), "counted")).await;
    let amqp = amqp_util::connect(gw.amqp.unwrap()).await;
    let up = scrape_until(http, "one mqtt and one amqp connection", |s| {
        s.val("tether_connections", &proto("mqtt")) == 1.0
            && s.val("tether_connections", &proto("amqp")) == 1.0
    })
    .await;
    assert_eq!(
        up.val("tether_connections_accepted_total", &proto("mqtt")),
        1.0
    );
    assert_eq!(
        up.val("tether_connections_accepted_total", &proto("amqp")),
        1.0
    );
    assert!(
        up.val("tether_connections_accepted_total", &proto("http"))
            > before.val("tether_connections_accepted_total", &proto("http"))
    );
    assert_eq!(up.val("tether_mqtt_sessions", &[]), 1.0);

    mqtt.disconnect().await;
    amqp.close(200, "bye".into()).await.expect("close");
    let down = scrape_until(http, "connections closed", |s| {
        s.val("tether_connections", &proto("mqtt")) == 0.0
            && s.val("tether_connections", &proto("amqp")) == 0.0
    })
    .await;
    // Accepted totals never go down.
    assert_eq!(
        down.val("tether_connections_accepted_total", &proto("mqtt")),
        1.0
    );
    assert_eq!(
        down.val("tether_connections_accepted_total", &proto("amqp")),
        1.0
    );
}

#[tokio::test]
async fn mqtt_messages_bytes_and_latency_are_counted() {
    let gw = Gateway::start();
    let http = gw.http.unwrap();
    let mut sub = v4::Client::connect(v4::options(gw.mqtt_addr(), "sub")).await;
    sub.subscribe("metrics/t", v4::QoS::AtMostOnce).await;
    let publisher = v4::Client::connect(v4::options(gw.mqtt_addr(), "pub")).await;
    let before = scrape(http).await;

    let payload = [7u8; 100];
    for _ in 0..5 {
        publisher
            .publish("metrics/t", v4::QoS::AtMostOnce, false, payload)
            .await;
    }
    for _ in 0..5 {
        assert_eq!(sub.expect().await.payload.len(), 100);
    }
    // Connections add their counts once per batch, just after the work, so
    // wait until both sides have.
    let after = scrape_until(http, "five mqtt deliveries, counted both ways", |s| {
        s.val("tether_messages_delivered_total", &proto("mqtt"))
            - before.val("tether_messages_delivered_total", &proto("mqtt"))
            == 5.0
            && s.val("tether_messages_received_total", &proto("mqtt"))
                - before.val("tether_messages_received_total", &proto("mqtt"))
                >= 5.0
    })
    .await;
    let delta = |name: &str, p: &str| after.val(name, &proto(p)) - before.val(name, &proto(p));
    assert_eq!(delta("tether_messages_received_total", "mqtt"), 5.0);
    // Each PUBLISH carries the 100-byte payload and the topic, both ways.
    assert!(delta("tether_received_bytes_total", "mqtt") >= 5.0 * 109.0);
    assert!(delta("tether_sent_bytes_total", "mqtt") >= 5.0 * 109.0);
    // Nothing moved for the other protocols.
    assert_eq!(delta("tether_messages_received_total", "amqp"), 0.0);
    assert_eq!(delta("tether_messages_delivered_total", "sqs"), 0.0);

    // Every delivery is one observation in the latency histogram.
    let h0 = before
        .histogram("tether_publish_to_deliver_seconds", &proto("mqtt"))
        .expect("mqtt latency histogram");
    let h1 = after
        .histogram("tether_publish_to_deliver_seconds", &proto("mqtt"))
        .expect("mqtt latency histogram");
    assert_eq!(h1.count - h0.count, 5.0);
    assert_eq!(h1.buckets.last().unwrap().1, h1.count);
    assert!(h1.sum >= h0.sum);
    // The bounds start at 1 ms and double.
    assert_eq!(h1.buckets[0].0, 0.001);
    assert_eq!(h1.buckets[1].0, 0.002);
    // The session queue counted them too, in the aggregated series.
    let sessions = queue("/", "mqtt-session:*");
    assert_eq!(
        after.val("tether_queue_messages_enqueued_total", &sessions)
            - before.val("tether_queue_messages_enqueued_total", &sessions),
        5.0
    );
}

#[tokio::test]
async fn amqp_messages_queue_counters_and_escaped_names_are_reported() {
    let gw = Gateway::start();
    let http = gw.http.unwrap();
    let (_conn, ch) = amqp_util::channel(gw.amqp.unwrap()).await;
    // A name that needs escaping in a label value.
    let name = "work \"q\" \\ 1";
    amqp_util::declare_queue(&ch, name, FieldTable::default()).await;
    for i in 0..3u8 {
        amqp_util::publish(&ch, "", name, &[i; 10]).await;
    }
    // The connection adds its publish count right after it enqueues the
    // batch, so a scrape may fall in between: wait for both.
    let queued = scrape_until(http, "three ready messages, counted", |s| {
        s.val("tether_queue_messages_ready", &queue("/", name)) == 3.0
            && s.val("tether_messages_received_total", &proto("amqp")) >= 3.0
    })
    .await;
    assert_eq!(
        queued.val("tether_messages_received_total", &proto("amqp")),
        3.0
    );
    assert_eq!(
        queued.val("tether_queue_messages_enqueued_total", &queue("/", name)),
        3.0
    );

    let mut consumer = amqp_util::consume(&ch, name, "c", false).await;
    let mut tags = Vec::new();
    for _ in 0..3 {
        let d = amqp_util::next(&mut consumer, amqp_util::WAIT)
            .await
            .expect("delivery");
        tags.push(d.delivery_tag);
    }
    let leased = scrape_until(http, "three messages in flight, counted", |s| {
        s.val("tether_queue_messages_inflight", &queue("/", name)) == 3.0
            && s.val("tether_messages_delivered_total", &proto("amqp")) >= 3.0
    })
    .await;
    assert_eq!(
        leased.val("tether_queue_messages_ready", &queue("/", name)),
        0.0
    );
    assert_eq!(leased.val("tether_queue_consumers", &queue("/", name)), 1.0);
    assert_eq!(
        leased.val("tether_messages_delivered_total", &proto("amqp")),
        3.0
    );
    let h = leased
        .histogram("tether_publish_to_deliver_seconds", &proto("amqp"))
        .unwrap();
    assert_eq!(h.count, 3.0);

    for tag in tags {
        ch.basic_ack(tag, Default::default()).await.expect("ack");
    }
    let acked = scrape_until(http, "three acks", |s| {
        s.val("tether_queue_messages_acked_total", &queue("/", name)) == 3.0
    })
    .await;
    assert_eq!(
        acked.val("tether_queue_messages_inflight", &queue("/", name)),
        0.0
    );
    assert!(acked.val("tether_received_bytes_total", &proto("amqp")) > 0.0);
    assert!(acked.val("tether_sent_bytes_total", &proto("amqp")) > 0.0);
}

#[tokio::test]
async fn sqs_depth_in_flight_and_dead_letters_are_reported() {
    let gw = Gateway::start();
    let http = gw.http.unwrap();
    let c = aws::sqs_client(http);
    aws::create_queue(&c, "m-dlq", &[]).await;
    let redrive = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"1"}}"#,
        aws::queue_arn("m-dlq")
    );
    let url = aws::create_queue(&c, "m-q", &[("RedrivePolicy", &redrive)]).await;
    for i in 0..3 {
        c.send_message()
            .queue_url(&url)
            .message_body(format!("m{i}"))
            .send()
            .await
            .expect("SendMessage");
    }
    let sent = scrape(http).await;
    assert_eq!(
        sent.val("tether_queue_messages_ready", &queue("/", "m-q")),
        3.0
    );
    assert_eq!(
        sent.val("tether_queue_messages_inflight", &queue("/", "m-q")),
        0.0
    );
    assert_eq!(
        sent.val("tether_messages_received_total", &proto("sqs")),
        3.0
    );
    assert_eq!(
        sent.val(
            "tether_http_requests_total",
            &[
                ("service", "sqs"),
                ("action", "SendMessage"),
                ("status", "200")
            ]
        ),
        3.0
    );

    // Two received with a one-second visibility timeout: in flight.
    let got = c
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(2)
        .visibility_timeout(1)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 2);
    let received = scrape(http).await;
    assert_eq!(
        received.val("tether_queue_messages_ready", &queue("/", "m-q")),
        1.0
    );
    assert_eq!(
        received.val("tether_queue_messages_inflight", &queue("/", "m-q")),
        2.0
    );
    assert_eq!(
        received.val("tether_messages_delivered_total", &proto("sqs")),
        2.0
    );
    let h = received
        .histogram("tether_publish_to_deliver_seconds", &proto("sqs"))
        .unwrap();
    assert_eq!(h.count, 2.0);

    // Their leases run out; received once already (maxReceiveCount 1), the
    // next receive moves them to the dead-letter queue.
    let moved = {
        let deadline = Instant::now() + SETTLE;
        loop {
            aws::receive(&c, &url, 10, 0).await;
            let s = scrape(http).await;
            if s.val(
                "tether_queue_messages_dead_lettered_total",
                &queue("/", "m-q"),
            ) == 2.0
            {
                break s;
            }
            assert!(Instant::now() < deadline, "not dead-lettered: {s:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(
        moved.val("tether_queue_messages_ready", &queue("/", "m-dlq")),
        2.0
    );
    assert_eq!(
        moved.val("tether_queue_messages_enqueued_total", &queue("/", "m-dlq")),
        2.0
    );
    // The third message was received by the loop and is in flight.
    assert_eq!(
        moved.val("tether_queue_messages_inflight", &queue("/", "m-q")),
        1.0
    );
}

#[tokio::test]
async fn drops_are_counted_with_their_reason() {
    let gw = Gateway::start();
    let http = gw.http.unwrap();

    // An AMQP queue holding one message drops the oldest on overflow.
    let (_conn, ch) = amqp_util::channel(gw.amqp.unwrap()).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), amqp_util::AMQPValue::LongInt(1));
    amqp_util::declare_queue(&ch, "small", args).await;
    for i in 0..3u8 {
        amqp_util::publish(&ch, "", "small", &[i]).await;
    }

    // QoS 0 messages for an offline MQTT session are dropped: no consumer.
    let mut opts = v4::options(gw.mqtt_addr(), "sleeper");
    opts.set_clean_session(false);
    let mut sleeper = v4::Client::connect(opts).await;
    sleeper.subscribe("drops/t", v4::QoS::AtMostOnce).await;
    sleeper.disconnect().await;
    scrape_until(http, "the sleeper is offline", |s| {
        s.val("tether_connections", &proto("mqtt")) == 0.0
    })
    .await;
    let mut publisher = v4::Client::connect(v4::options(gw.mqtt_addr(), "waker")).await;
    for _ in 0..2 {
        publisher
            .publish("drops/t", v4::QoS::AtMostOnce, false, "x")
            .await;
    }
    // A QoS 1 round trip after them proves they were handled.
    publisher.publish_acked("other/t", "sync").await;

    let dropped = |s: &Scrape, q: &str, reason: &str| {
        s.val(
            "tether_queue_messages_dropped_total",
            &[("vhost", "/"), ("queue", q), ("reason", reason)],
        )
    };
    let s = scrape_until(http, "drops counted", |s| {
        dropped(s, "small", "overflow") == 2.0 && dropped(s, "mqtt-session:*", "no_consumer") == 2.0
    })
    .await;
    assert_eq!(
        s.val("tether_queue_messages_ready", &queue("/", "small")),
        1.0
    );
    assert_eq!(dropped(&s, "small", "no_consumer"), 0.0);
    assert_eq!(dropped(&s, "mqtt-session:*", "overflow"), 0.0);
    // Every reason has a series.
    for reason in ["overflow", "no_consumer", "rejected", "expired"] {
        assert!(
            s.get(
                "tether_queue_messages_dropped_total",
                &[("vhost", "/"), ("queue", "small"), ("reason", reason)]
            )
            .is_some(),
            "{reason}"
        );
    }
}

/// A gateway with user `alice`/`wonderland`, no anonymous access, and SigV4
/// required on the API.
fn gateway_with_credentials() -> Gateway {
    let hash = amqp_util::hash_password("wonderland");
    let (id, secret) = aws::test_keys();
    Gateway::builder()
        .config(&format!(
            "[auth]\nallow_anonymous = false\n\n[[auth.users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n\n\
             [[aws.access_keys]]\nid = \"{id}\"\nsecret = \"{secret}\"\n"
        ))
        .start()
}

#[tokio::test]
async fn auth_failures_are_counted_and_logged_once_with_peer_and_reason() {
    let gw = gateway_with_credentials();
    let http = gw.http.unwrap();

    // MQTT: a wrong password.
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, "intruder");
    connect.username = Some("alice");
    connect.password = Some(b"looking-glass");
    let (mqtt, connack) = RawClient::connect_with(gw.mqtt_addr(), &connect).await;
    match connack.packet(ProtocolVersion::V3_1_1) {
        Packet::ConnAck(a) => assert_eq!(a.code, ReasonCode(4), "bad username or password"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_one_refusal(gw.log(), mqtt.local, "mqtt", "bad_credentials").await;

    // AMQP: a wrong password.
    let (mut amqp, _start) = RawAmqp::start(gw.amqp.unwrap()).await;
    amqp.send_start_ok(&Login::plain("alice", "looking-glass"))
        .await;
    assert_eq!(amqp.expect_connection_close().await.reply_code, 403);
    assert_one_refusal(gw.log(), amqp.local, "amqp", "bad_credentials").await;

    // The API: a request signed with the wrong secret.
    let bad = aws::sqs_client_signed_with(http, aws::test_keys().0, "wrong-secret");
    assert!(bad.list_queues().send().await.is_err());

    let s = scrape(http).await;
    assert_eq!(s.val("tether_auth_failures_total", &proto("mqtt")), 1.0);
    assert_eq!(s.val("tether_auth_failures_total", &proto("amqp")), 1.0);
    assert!(s.val("tether_auth_failures_total", &proto("http")) >= 1.0);
    for p in ["mqtt", "amqp"] {
        assert_eq!(
            s.val(
                "tether_connections_refused_total",
                &[("protocol", p), ("reason", "bad_credentials")]
            ),
            1.0
        );
    }
    // The right credentials are not failures.
    let good = aws::sqs_client(http);
    good.list_queues().send().await.expect("signed request");
    let s2 = scrape(http).await;
    assert_eq!(
        s2.val("tether_auth_failures_total", &proto("http")),
        s.val("tether_auth_failures_total", &proto("http"))
    );
}

#[tokio::test]
async fn every_refused_connection_logs_one_line_with_peer_and_reason() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__CONNECT_TIMEOUT", "300ms")
        .env("TETHER_AMQP__HANDSHAKE_TIMEOUT", "300ms")
        .start();
    let log = gw.log();

    // MQTT: nothing sent within the CONNECT timeout.
    let silent = RawClient::tcp(gw.mqtt_addr(), ProtocolVersion::V3_1_1).await;
    assert_one_refusal(log, silent.local, "mqtt", "timeout").await;

    // MQTT: not a CONNECT.
    let mut garbage = RawClient::tcp(gw.mqtt_addr(), ProtocolVersion::V3_1_1).await;
    garbage.send(b"\x10\x05\x00\x03MQX").await;
    assert_one_refusal(log, garbage.local, "mqtt", "protocol_error").await;

    // MQTT: a protocol level the gateway does not speak.
    let mut old = RawClient::tcp(gw.mqtt_addr(), ProtocolVersion::V3_1_1).await;
    old.send(b"\x10\x0c\x00\x04MQTT\x09\x02\x00\x1e\x00\x00")
        .await;
    assert_one_refusal(log, old.local, "mqtt", "unsupported").await;

    // AMQP: not the AMQP header.
    let mut http_talk = RawAmqp::tcp(gw.amqp.unwrap()).await;
    http_talk.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert_one_refusal(log, http_talk.local, "amqp", "protocol_error").await;

    // AMQP: the header, then nothing within the handshake timeout.
    let (stalled, _start) = RawAmqp::start(gw.amqp.unwrap()).await;
    assert_one_refusal(log, stalled.local, "amqp", "timeout").await;

    // AMQP: a vhost that does not exist.
    let login = Login {
        vhost: "nowhere".into(),
        ..Login::default()
    };
    let (mut lost, _) = RawAmqp::handshake_with(gw.amqp.unwrap(), &login).await;
    assert_eq!(lost.expect_connection_close().await.reply_code, 530);
    assert_one_refusal(log, lost.local, "amqp", "vhost_not_found").await;

    let s = scrape(gw.http.unwrap()).await;
    for (p, reason) in [
        ("mqtt", "timeout"),
        ("mqtt", "protocol_error"),
        ("mqtt", "unsupported"),
        ("amqp", "protocol_error"),
        ("amqp", "timeout"),
        ("amqp", "vhost_not_found"),
    ] {
        assert_eq!(
            s.val(
                "tether_connections_refused_total",
                &[("protocol", p), ("reason", reason)]
            ),
            1.0,
            "{p} {reason}"
        );
    }
    // None of these was an authentication failure.
    assert_eq!(s.sum("tether_auth_failures_total", &[]), 0.0);
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_one_line() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_CONNECTIONS", 1)
        .env("TETHER_AMQP__MAX_CONNECTIONS", 1)
        .start();
    let _mqtt = RawClient::connect(gw.mqtt_addr(), ProtocolVersion::V3_1_1, "first").await;
    let (second, connack) = RawClient::connect_with(
        gw.mqtt_addr(),
        &connect_packet(ProtocolVersion::V3_1_1, "second"),
    )
    .await;
    match connack.packet(ProtocolVersion::V3_1_1) {
        Packet::ConnAck(a) => assert_eq!(a.code, ReasonCode(3), "server unavailable"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_one_refusal(gw.log(), second.local, "mqtt", "connection_limit").await;

    let _amqp = RawAmqp::connect(gw.amqp.unwrap()).await;
    let (mut over, _start) = RawAmqp::start(gw.amqp.unwrap()).await;
    over.send_start_ok(&Login::default()).await;
    assert_eq!(over.expect_connection_close().await.reply_code, 506);
    assert_one_refusal(gw.log(), over.local, "amqp", "connection_limit").await;

    let s = scrape(gw.http.unwrap()).await;
    for p in ["mqtt", "amqp"] {
        assert_eq!(
            s.val(
                "tether_connections_refused_total",
                &[("protocol", p), ("reason", "connection_limit")]
            ),
            1.0
        );
        // Refused connections were accepted first, then refused.
        assert_eq!(s.val("tether_connections_accepted_total", &proto(p)), 2.0);
    }
}

#[tokio::test]
async fn store_batches_and_fsyncs_grow_with_persistent_messages() {
    let gw = Gateway::start();
    let http = gw.http.unwrap();
    let c = aws::sqs_client(http);
    let url = aws::create_queue(&c, "stored", &[]).await;
    let before = scrape(http).await;
    let b0 = before
        .histogram("tether_store_batch_operations", &[])
        .expect("batch histogram");
    for i in 0..5 {
        // Each SendMessage is answered once its message is durable.
        c.send_message()
            .queue_url(&url)
            .message_body(format!("kept {i}"))
            .send()
            .await
            .expect("SendMessage");
    }
    let after = scrape(http).await;
    let b1 = after
        .histogram("tether_store_batch_operations", &[])
        .unwrap();
    assert!(b1.count > b0.count, "batches {} -> {}", b0.count, b1.count);
    assert!(
        b1.sum >= b0.sum + 5.0,
        "operations {} -> {}",
        b0.sum,
        b1.sum
    );
    assert!(
        after.val("tether_store_fsyncs_total", &[]) > before.val("tether_store_fsyncs_total", &[]),
        "storage.sync = always syncs every batch"
    );
    // Bucket bounds are operations per batch: 1, 2, 4, ...
    assert_eq!(b1.buckets[0].0, 1.0);
    assert_eq!(b1.buckets[1].0, 2.0);
    assert_eq!(after.val("tether_store_healthy", &[]), 1.0);
    assert!(after.val("tether_store_disk_bytes", &[]) > 0.0);
}

#[tokio::test]
async fn readyz_is_ready_once_started_and_healthz_is_live() {
    let gw = Gateway::start();
    let http = gw.http.unwrap();
    // The harness returned after "tether started".
    let ready = aws::http_request(http, "GET", "/readyz", "").await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body, "ready\n");
    let live = aws::http_request(http, "GET", "/healthz", "")
        .await
        .unwrap();
    assert_eq!(live.status, 200);
    let s = scrape(http).await;
    assert_eq!(s.val("tether_ready", &[]), 1.0);
}

#[tokio::test]
async fn metrics_can_be_switched_off_or_summed_per_vhost() {
    let off = Gateway::builder()
        .env("TETHER_METRICS__ENABLED", "false")
        .start();
    let r = aws::http_request(off.http.unwrap(), "GET", "/metrics", "")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);

    let summed = Gateway::builder()
        .env("TETHER_METRICS__PER_QUEUE", "false")
        .start();
    let c = aws::sqs_client(summed.http.unwrap());
    for name in ["a", "b"] {
        let url = aws::create_queue(&c, name, &[]).await;
        c.send_message()
            .queue_url(&url)
            .message_body("x")
            .send()
            .await
            .expect("SendMessage");
    }
    let s = scrape(summed.http.unwrap()).await;
    assert_eq!(s.val("tether_queue_messages_ready", &queue("/", "*")), 2.0);
    assert_eq!(s.get("tether_queue_messages_ready", &queue("/", "a")), None);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_refusals_carry_peer_and_reason() {
    let mut gw = Gateway::builder()
        .env("TETHER_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .start();
    assert!(gw.mqtt.is_some() && gw.http.is_some(), "addresses found");
    let mut garbage = RawClient::tcp(gw.mqtt_addr(), ProtocolVersion::V3_1_1).await;
    garbage.send(b"\x30\x03\x00\x01a").await;
    let peer = garbage.local.to_string();
    let re = regex::Regex::new(&regex::escape(&format!("\"peer\":\"{peer}\""))).unwrap();
    assert!(
        gw.log().wait_for(&re, SETTLE).is_some(),
        "{}",
        gw.log().text()
    );
    assert!(gw.terminate().success());

    let text = gw.log().text();
    let mut refusals = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(obj.contains_key(key), "{key} missing: {line}");
        }
        assert!(!line.contains('\u{1b}'), "colour codes in {line}");
        if obj["message"] == "connection refused" && obj.get("peer").is_some_and(|p| p == &peer) {
            refusals.push(v.clone());
        }
    }
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    let r = &refusals[0];
    assert_eq!(r["protocol"], "mqtt");
    assert_eq!(r["reason"], "protocol_error");
    assert_eq!(r["level"], "INFO");
    assert!(r["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
    assert!(
        r["peer"]
            .as_str()
            .is_some_and(|p| p.parse::<SocketAddr>().is_ok()),
        "{r}"
    );
}

#[tokio::test]
async fn scrapes_stay_valid_with_every_family_under_load_of_all_protocols() {
    // All three protocols at once, scraped concurrently: every scrape parses
    // (the parser checks HELP/TYPE, grouping, escaping, cumulative buckets).
    let gw = Gateway::start();
    let http = gw.http.unwrap();
    let mut sub = v4::Client::connect(v4::options(gw.mqtt_addr(), "load-sub")).await;
    sub.subscribe("load/#", v4::QoS::AtLeastOnce).await;
    let mut publisher = v4::Client::connect(v4::options(gw.mqtt_addr(), "load-pub")).await;
    let c = aws::sqs_client(http);
    let url = aws::create_queue(&c, "load", &[]).await;
    let scraper = tokio::spawn(async move {
        let mut n = 0;
        for _ in 0..10 {
            let s = scrape(http).await;
            assert!(s.families.len() > 20);
            n += 1;
        }
        n
    });
    for i in 0..20 {
        publisher.publish_acked(&format!("load/{i}"), "x").await;
        c.send_message()
            .queue_url(&url)
            .message_body("y")
            .send()
            .await
            .expect("SendMessage");
    }
    for _ in 0..20 {
        sub.expect().await;
    }
    assert_eq!(scraper.await.unwrap(), 10);
    let s = scrape_until(http, "twenty mqtt publishes counted", |s| {
        s.val("tether_messages_received_total", &proto("mqtt")) >= 20.0
            && s.val("tether_messages_received_total", &proto("sqs")) >= 20.0
    })
    .await;
    assert_eq!(
        s.val("tether_messages_received_total", &proto("mqtt")),
        20.0
    );
    assert_eq!(s.val("tether_messages_received_total", &proto("sqs")), 20.0);
    let s = scrape_until(http, "twenty mqtt deliveries", |s| {
        s.val("tether_messages_delivered_total", &proto("mqtt")) == 20.0
    })
    .await;
    assert_eq!(
        s.val("tether_queue_messages_ready", &queue("/", "load")),
        20.0
    );
}
