//! MQTT ↔ AMQP through the one core: rumqttc (3.1.1 and 5.0) devices and lapin
//! applications exchange messages through `amq.topic` in both directions.
//!
//! What is pinned down: the topic mapping (`/` ↔ `.`, a `.` inside an MQTT
//! level is a `/` inside the AMQP word, `+` ↔ `*`, `#`), identical payload
//! bytes, QoS ↔ delivery mode, the property mapping of the README (user
//! properties ↔ headers, content type, correlation data ↔ correlation-id,
//! response topic ↔ reply-to, message expiry ↔ expiration), acknowledgements
//! on either side, and queues buffering for consumers that come later.
//!
//! RabbitMQ (its MQTT plugin's `mc_mqtt` conversions) is the reference where
//! the README leaves a detail open: an AMQP message is delivered to MQTT at
//! QoS 1 only when it is persistent (delivery-mode 2), and a response topic
//! crosses in the other protocol's topic form.

use bytes::Bytes;
use tether_e2e::amqp::*;
use tether_e2e::mqtt::{v4, v5};
use tether_e2e::{Gateway, eventually};

/// A payload that is not UTF-8 (and holds NUL, CR/LF and 0xFF).
const BINARY: &[u8] = &[0x00, 0xFF, 0xFE, 0x80, b'\r', b'\n', 0xC3, 0x28, 0x00];

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn v5_props(p: &v5::Publish) -> v5::PublishProperties {
    p.properties.clone().unwrap_or_default()
}

/// An exclusive queue bound to `amq.topic` with `keys`, and a no-ack consumer on it.
async fn amqp_listener(ch: &Channel, keys: &[&str]) -> Consumer {
    let q = bound_queue(ch, "", "amq.topic", keys).await;
    consume(ch, &q, "", true).await
}

async fn expect_delivery(consumer: &mut Consumer, what: &str) -> lapin::message::Delivery {
    next(consumer, WAIT)
        .await
        .unwrap_or_else(|| panic!("no AMQP delivery: {what}"))
}

/// MQTT 5 publish with properties; waits for the PUBACK at QoS 1.
async fn v5_publish(
    c: &mut v5::Client,
    topic: &str,
    qos: v5::QoS,
    payload: &[u8],
    props: v5::PublishProperties,
) {
    c.client
        .publish_with_properties(topic, qos, false, payload.to_vec(), props)
        .await
        .expect("publish request");
    if qos == v5::QoS::AtLeastOnce {
        c.wait_for(WAIT, |p| matches!(p, v5::Packet::PubAck(_)).then_some(()))
            .await
            .expect("no PUBACK");
    }
}

/// Waits until the gateway has logged the end of `n` connections of `client_id`.
async fn wait_mqtt_gone(gw: &Gateway, client_id: &str, n: usize) {
    let re = regex::Regex::new(&format!(
        r"client disconnected peer=\S+ client_id={} ",
        regex::escape(client_id)
    ))
    .unwrap();
    let log = gw.log().clone();
    assert!(
        eventually(WAIT, || re.find_iter(&log.text()).count() >= n).await,
        "the gateway did not log the end of {client_id}'s connection #{n}:\n{}",
        log.text()
    );
}

// ------------------------------------------------------------ MQTT → AMQP

#[tokio::test]
async fn mqtt_v4_publishes_reach_amqp_at_qos0_and_qos1() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut temps = amqp_listener(&ch, &["sensors.*.temp"]).await;
    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "dev-v4")).await;

    dev.publish("sensors/42/temp", v4::QoS::AtMostOnce, false, BINARY)
        .await;
    let d = expect_delivery(&mut temps, "QoS 0 publish").await;
    assert_eq!(d.data, BINARY, "payload bytes must cross unchanged");
    assert_eq!(d.routing_key.as_str(), "sensors.42.temp");
    assert_eq!(d.exchange.as_str(), "amq.topic");
    assert_ne!(
        *d.properties.delivery_mode(),
        Some(2),
        "QoS 0 is not persistent"
    );

    dev.publish_acked("sensors/42/temp", b"21.5\xff".to_vec())
        .await;
    let d = expect_delivery(&mut temps, "QoS 1 publish").await;
    assert_eq!(d.data, b"21.5\xff");
    assert_eq!(
        *d.properties.delivery_mode(),
        Some(2),
        "QoS 1 is delivery-mode 2"
    );
    assert_quiet(&mut temps, "only the two publishes").await;
}

#[tokio::test]
async fn mqtt_v5_publishes_reach_amqp_at_qos0_and_qos1() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut temps = amqp_listener(&ch, &["sensors.*.temp"]).await;
    let (mut dev, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "dev-v5")).await;

    for (qos, payload) in [
        (v5::QoS::AtMostOnce, &b"q0\x00\xff"[..]),
        (v5::QoS::AtLeastOnce, BINARY),
    ] {
        v5_publish(&mut dev, "sensors/7/temp", qos, payload, Default::default()).await;
        let d = expect_delivery(&mut temps, &format!("{qos:?} publish")).await;
        assert_eq!(d.data, payload);
        assert_eq!(d.routing_key.as_str(), "sensors.7.temp");
        assert_eq!(
            *d.properties.delivery_mode() == Some(2),
            qos == v5::QoS::AtLeastOnce,
            "{qos:?}: delivery mode {:?}",
            d.properties.delivery_mode()
        );
    }
}

#[tokio::test]
async fn mqtt_topic_level_with_a_dot_reaches_amqp_as_a_slash() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut exact = amqp_listener(&ch, &["sensors.v1/2.temp"]).await;
    let mut wildcard = amqp_listener(&ch, &["sensors.*.temp"]).await;
    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "dotted")).await;
    dev.publish_acked("sensors/v1.2/temp", "21.5").await;
    for (consumer, what) in [(&mut exact, "exact key"), (&mut wildcard, "sensors.*.temp")] {
        let d = expect_delivery(consumer, what).await;
        assert_eq!(d.routing_key.as_str(), "sensors.v1/2.temp", "{what}");
        assert_eq!(d.data, b"21.5");
    }
    // The dot did not split the level: a three-word binding must not match.
    let mut split = amqp_listener(&ch, &["sensors.v1.2.temp"]).await;
    dev.publish_acked("sensors/v1.2/temp", "21.6").await;
    assert_quiet(&mut split, "sensors.v1.2.temp is another topic").await;
}

#[tokio::test]
async fn amqp_hash_binding_receives_every_mqtt_topic() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut all = amqp_listener(&ch, &["#"]).await;
    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "many")).await;
    let topics = ["a", "a/b/c", "sensors/v1.2/temp", "x/"];
    for t in topics {
        dev.publish_acked(t, t.as_bytes().to_vec()).await;
    }
    for (t, key) in topics.iter().zip(["a", "a.b.c", "sensors.v1/2.temp", "x."]) {
        let d = expect_delivery(&mut all, t).await;
        assert_eq!(d.routing_key.as_str(), key);
        assert_eq!(d.data, t.as_bytes());
    }
}

#[tokio::test]
async fn amqp_queue_buffers_telemetry_published_before_it_consumes() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let q = bound_queue(&ch, "telemetry", "amq.topic", &["fleet.#"]).await;
    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "truck-1")).await;
    for i in 0..3u8 {
        dev.publish_acked("fleet/truck-1/gps", vec![i, 0xFF]).await;
    }
    dev.publish("fleet/truck-1/fuel", v4::QoS::AtMostOnce, false, "0.5")
        .await;
    assert_eq!(await_message_count(&ch, &q, 4, WAIT).await, 4);
    let mut consumer = consume(&ch, &q, "late", false).await;
    let got = take(&mut consumer, 4, true).await;
    assert_eq!(
        got,
        [vec![0, 0xFF], vec![1, 0xFF], vec![2, 0xFF], b"0.5".to_vec()]
    );
    assert_quiet(&mut consumer, "four messages only").await;
}

#[tokio::test]
async fn amqp_nack_with_requeue_redelivers_an_mqtt_publish() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let q = bound_queue(&ch, "", "amq.topic", &["jobs.#"]).await;
    let mut consumer = consume(&ch, &q, "", false).await;
    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "jobber")).await;
    dev.publish_acked("jobs/1", BINARY).await;

    let first = expect_delivery(&mut consumer, "first delivery").await;
    assert!(!first.redelivered);
    first
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .expect("nack");
    let again = expect_delivery(&mut consumer, "redelivery after nack").await;
    assert!(again.redelivered, "a requeued message is redelivered");
    assert_eq!(again.data, BINARY);
    assert_eq!(again.routing_key.as_str(), "jobs.1");
    again.ack(BasicAckOptions::default()).await.expect("ack");
    assert_quiet(&mut consumer, "acked: not delivered again").await;
    assert_eq!(message_count(&ch, &q).await, 0);
}

// ------------------------------------------------------------ AMQP → MQTT

#[tokio::test]
async fn amqp_publishes_reach_mqtt_v4_subscribers_at_qos0_and_qos1() {
    let gw = Gateway::start();
    let mut q0 = v4::Client::connect(v4::options(gw.mqtt_addr(), "sub-q0")).await;
    q0.subscribe("cmd/+", v4::QoS::AtMostOnce).await;
    let mut q1 = v4::Client::connect(v4::options(gw.mqtt_addr(), "sub-q1")).await;
    q1.subscribe("cmd/+", v4::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;

    publish_with(&ch, "amq.topic", "cmd.42", BINARY, persistent()).await;
    let p = q0.expect().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("cmd/42", BINARY));
    assert_eq!(p.qos, v4::QoS::AtMostOnce, "granted QoS 0 caps delivery");
    let p = q1.expect().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("cmd/42", BINARY));
    assert_eq!(p.qos, v4::QoS::AtLeastOnce, "persistent → QoS 1");
}

#[tokio::test]
async fn amqp_publishes_reach_mqtt_v5_subscribers_at_qos0_and_qos1() {
    let gw = Gateway::start();
    let (mut q0, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "sub5-q0")).await;
    q0.subscribe("cmd/#", v5::QoS::AtMostOnce).await;
    let (mut q1, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "sub5-q1")).await;
    q1.subscribe("cmd/#", v5::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;

    publish_with(&ch, "amq.topic", "cmd.42.reboot", BINARY, persistent()).await;
    for (c, qos) in [
        (&mut q0, v5::QoS::AtMostOnce),
        (&mut q1, v5::QoS::AtLeastOnce),
    ] {
        let p = c.expect().await;
        assert_eq!(&p.topic[..], b"cmd/42/reboot");
        assert_eq!(&p.payload[..], BINARY);
        assert_eq!(p.qos, qos);
    }
}

/// RabbitMQ delivers an AMQP message to MQTT at QoS 1 only if it is
/// persistent (`mc_mqtt:convert_from(mc_amqpl, …)`): QoS 1 ↔ delivery-mode 2.
#[tokio::test]
async fn transient_amqp_message_reaches_qos1_subscriber_at_qos0() {
    let gw = Gateway::start();
    let mut sub = v4::Client::connect(v4::options(gw.mqtt_addr(), "sub-t")).await;
    sub.subscribe("cmd/+", v4::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    publish(&ch, "amq.topic", "cmd.1", b"transient").await;
    let p = sub.expect().await;
    assert_eq!(&p.payload[..], b"transient");
    assert_eq!(
        p.qos,
        v4::QoS::AtMostOnce,
        "a non-persistent AMQP message is QoS 0 for MQTT"
    );
}

#[tokio::test]
async fn amqp_routing_key_with_a_slash_reaches_mqtt_level_with_a_dot() {
    let gw = Gateway::start();
    let mut exact = v4::Client::connect(v4::options(gw.mqtt_addr(), "exact")).await;
    exact
        .subscribe("sensors/v1.2/temp", v4::QoS::AtLeastOnce)
        .await;
    let (mut all, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "all")).await;
    all.subscribe("#", v5::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;

    publish_with(&ch, "amq.topic", "sensors.v1/2.temp", b"21.5", persistent()).await;
    let p = exact.expect().await;
    assert_eq!(p.topic, "sensors/v1.2/temp");
    assert_eq!(&p.payload[..], b"21.5");
    let p = all.expect().await;
    assert_eq!(&p.topic[..], b"sensors/v1.2/temp");
    exact.expect_none(QUIET).await;
    all.expect_none(QUIET).await;
}

#[tokio::test]
async fn unacked_qos1_delivery_of_amqp_message_is_redelivered_to_mqtt_session() {
    let gw = Gateway::start();
    let opts = || {
        let mut o = v4::options(gw.mqtt_addr(), "valve-9");
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o
    };
    let mut dev = v4::Client::connect(opts()).await;
    dev.subscribe("cmd/valve-9/#", v4::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    publish_with(&ch, "amq.topic", "cmd.valve-9.open", BINARY, persistent()).await;

    let first = dev.expect().await;
    assert_eq!(first.qos, v4::QoS::AtLeastOnce);
    assert!(!first.dup);
    // Never acknowledged: the device loses its connection.
    dev.drop_connection();
    wait_mqtt_gone(&gw, "valve-9", 1).await;

    let mut dev = v4::Client::connect(opts()).await;
    let again = dev.expect().await;
    assert_eq!(again.topic, "cmd/valve-9/open");
    assert_eq!(&again.payload[..], BINARY);
    assert!(again.dup, "redelivered with DUP=1: {again:?}");
    dev.client.ack(&again).await.expect("ack");
    dev.disconnect().await;
    wait_mqtt_gone(&gw, "valve-9", 2).await;

    // Acknowledged now: a third connection gets nothing.
    let mut dev = v4::Client::connect(opts()).await;
    dev.expect_none(QUIET).await;
}

// ------------------------------------------------------------ properties

#[tokio::test]
async fn mqtt5_properties_become_amqp_properties() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut consumer = amqp_listener(&ch, &["meters.#"]).await;
    let (mut dev, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "meter")).await;
    let props = v5::PublishProperties {
        content_type: Some("application/json".into()),
        correlation_data: Some(Bytes::from_static(b"req-17")),
        message_expiry_interval: Some(60),
        user_properties: vec![
            ("site".into(), "north".into()),
            ("unit".into(), "kWh".into()),
        ],
        ..Default::default()
    };
    v5_publish(
        &mut dev,
        "meters/3/energy",
        v5::QoS::AtLeastOnce,
        b"{\"kwh\":1.5}",
        props,
    )
    .await;

    let d = expect_delivery(&mut consumer, "MQTT 5 publish").await;
    assert_eq!(d.data, b"{\"kwh\":1.5}");
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        p.correlation_id().as_ref().map(|s| s.as_str()),
        Some("req-17")
    );
    assert_eq!(header(p, "site"), Some(&long_str("north")));
    assert_eq!(header(p, "unit"), Some(&long_str("kWh")));
    let ms: u64 = p
        .expiration()
        .as_ref()
        .expect("message expiry → expiration")
        .as_str()
        .parse()
        .expect("expiration is milliseconds");
    assert!(
        (50_000..=60_000).contains(&ms),
        "60 s expiry became {ms} ms"
    );
}

#[tokio::test]
async fn amqp_properties_become_mqtt5_properties() {
    let gw = Gateway::start();
    let (mut dev, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "display")).await;
    dev.subscribe("screens/+", v5::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let headers = table(&[
        ("site", long_str("north")),
        ("priority", AMQPValue::LongInt(7)),
    ]);
    let props = persistent()
        .with_headers(headers)
        .with_content_type("text/plain".into())
        .with_correlation_id("job-5".into())
        .with_expiration("60000".into());
    publish_with(&ch, "amq.topic", "screens.lobby", b"Welcome", props).await;

    let p = dev.expect().await;
    assert_eq!(&p.topic[..], b"screens/lobby");
    assert_eq!(&p.payload[..], b"Welcome");
    let got = v5_props(&p);
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"job-5"[..]));
    let mut user = got.user_properties.clone();
    user.sort();
    assert_eq!(
        user,
        [
            ("priority".to_owned(), "7".to_owned()),
            ("site".to_owned(), "north".to_owned())
        ],
        "headers become user properties (values as text)"
    );
    let left = got
        .message_expiry_interval
        .expect("expiration → message expiry");
    assert!((50..=60).contains(&left), "60000 ms became {left} s");
}

/// An application asks a device: reply-to names a routing key on
/// `amq.topic`, the device answers on its response topic, and the answer
/// reaches the reply queue bound to `amq.topic` with that key.
#[tokio::test]
async fn amqp_request_answered_by_mqtt5_device_via_response_topic() {
    let gw = Gateway::start();
    let (mut device, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "thermo")).await;
    device
        .subscribe("devices/thermo/get", v5::QoS::AtLeastOnce)
        .await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut replies = amqp_listener(&ch, &["replies.app1"]).await;
    let request = persistent()
        .with_reply_to("replies.app1".into())
        .with_correlation_id("req-1".into());
    publish_with(&ch, "amq.topic", "devices.thermo.get", b"temp?", request).await;

    let req = device.expect().await;
    let props = v5_props(&req);
    let response_topic = props
        .response_topic
        .clone()
        .expect("reply-to → response topic");
    assert_eq!(props.correlation_data.as_deref(), Some(&b"req-1"[..]));
    let answer = v5::PublishProperties {
        correlation_data: props.correlation_data.clone(),
        ..Default::default()
    };
    v5_publish(
        &mut device,
        &response_topic,
        v5::QoS::AtLeastOnce,
        b"21.5",
        answer,
    )
    .await;

    let d = next(&mut replies, WAIT).await.unwrap_or_else(|| {
        panic!(
            "the answer published on the response topic {response_topic:?} did not reach \
             the queue bound with reply-to 'replies.app1' (expected response topic 'replies/app1')"
        )
    });
    assert_eq!(d.data, b"21.5");
    assert_eq!(
        d.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("req-1")
    );
    assert_eq!(response_topic, "replies/app1");
}

/// A device asks an application: its response topic becomes reply-to, the
/// application answers on `amq.topic` with reply-to as the routing key (and
/// the correlation-id), and the device receives the answer.
#[tokio::test]
async fn mqtt5_request_answered_by_amqp_application_via_reply_to() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let q = bound_queue(&ch, "", "amq.topic", &["svc.echo"]).await;
    let mut service = consume(&ch, &q, "", false).await;
    let (mut device, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "asker")).await;
    device
        .subscribe("replies/asker", v5::QoS::AtLeastOnce)
        .await;
    let request = v5::PublishProperties {
        response_topic: Some("replies/asker".into()),
        correlation_data: Some(Bytes::from_static(b"c-7")),
        ..Default::default()
    };
    v5_publish(
        &mut device,
        "svc/echo",
        v5::QoS::AtLeastOnce,
        b"ping",
        request,
    )
    .await;

    let d = expect_delivery(&mut service, "request").await;
    let reply_to = d
        .properties
        .reply_to()
        .as_ref()
        .expect("response topic → reply-to")
        .as_str()
        .to_owned();
    let corr = d
        .properties
        .correlation_id()
        .clone()
        .expect("correlation-id");
    assert_eq!(corr.as_str(), "c-7");
    let answer = BasicProperties::default().with_correlation_id(corr);
    publish_with(&ch, "amq.topic", &reply_to, b"pong", answer).await;
    d.ack(BasicAckOptions::default()).await.expect("ack");

    let p = device.recv(WAIT).await.unwrap_or_else(|| {
        panic!(
            "the answer published to amq.topic with reply-to {reply_to:?} did not reach the \
             response topic 'replies/asker' (expected reply-to 'replies.asker')"
        )
    });
    assert_eq!(&p.topic[..], b"replies/asker");
    assert_eq!(&p.payload[..], b"pong");
    assert_eq!(v5_props(&p).correlation_data.as_deref(), Some(&b"c-7"[..]));
    assert_eq!(reply_to, "replies.asker");
}

#[tokio::test]
async fn mqtt5_subscriber_gets_amqp_publishes_on_plus_wildcard_only_one_level() {
    let gw = Gateway::start();
    let (mut sub, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "plus")).await;
    sub.subscribe("cmd/+", v5::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    publish_with(&ch, "amq.topic", "cmd.42.deep", b"no", persistent()).await;
    publish_with(&ch, "amq.topic", "cmd.42", b"yes", persistent()).await;
    let p = sub.expect().await;
    assert_eq!(&p.topic[..], b"cmd/42");
    assert_eq!(&p.payload[..], b"yes");
    sub.expect_none(QUIET).await;
}

#[tokio::test]
async fn mqtt_publishes_reach_both_amqp_and_mqtt_subscribers() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut app = amqp_listener(&ch, &["alerts.#"]).await;
    let mut peer = v4::Client::connect(v4::options(gw.mqtt_addr(), "peer")).await;
    peer.subscribe("alerts/#", v4::QoS::AtLeastOnce).await;
    let mut dev = v4::Client::connect(v4::options(gw.mqtt_addr(), "alarm")).await;
    dev.publish_acked("alerts/fire", BINARY).await;
    assert_eq!(expect_delivery(&mut app, "AMQP side").await.data, BINARY);
    assert_eq!(&peer.expect().await.payload[..], BINARY);
}
