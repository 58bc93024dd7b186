//! AMQP basics: publish, consume, ack, get, and MQTT ↔ AMQP through amq.topic.

use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::amqp::*;
use tether_e2e::mqtt::v4;

#[tokio::test]
async fn published_message_reaches_consumer_and_is_acked() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "hello".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "hello".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        "hello".into(),
        BasicPublishOptions::default(),
        b"Hello World!",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    assert_eq!(d.data, b"Hello World!");
    assert_eq!(d.routing_key.as_str(), "hello");
    d.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test]
async fn publisher_confirms_are_positive() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..100u32 {
        let confirm = ch
            .basic_publish(
                "".into(),
                "q".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack(), "message {i} nacked");
    }
    let q = ch
        .queue_declare(
            "q".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 100);
}

#[tokio::test]
async fn mqtt_publish_reaches_amqp_queue_bound_on_amq_topic() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "temps".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "temps".into(),
        "amq.topic".into(),
        "sensors.*.temp".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "temps".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut device = v4::Client::connect(v4::options(gw.mqtt_addr(), "device-42")).await;
    device.publish_acked("sensors/v1.2/temp", "21.5").await;
    let d = next(&mut consumer, WAIT).await.expect("delivery from MQTT");
    assert_eq!(d.data, b"21.5");
    assert_eq!(d.routing_key.as_str(), "sensors.v1/2.temp");
    assert_eq!(d.exchange.as_str(), "amq.topic");
    assert!(
        next(&mut consumer, Duration::from_millis(200))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn amqp_publish_reaches_mqtt_subscriber() {
    let gw = Gateway::start();
    let mut sub = v4::Client::connect(v4::options(gw.mqtt_addr(), "dev")).await;
    sub.subscribe("cmd/42", v4::QoS::AtLeastOnce).await;
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.basic_publish(
        "amq.topic".into(),
        "cmd.42".into(),
        BasicPublishOptions::default(),
        b"reboot",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let p = sub.expect().await;
    assert_eq!(p.topic, "cmd/42");
    assert_eq!(&p.payload[..], b"reboot");
}

#[tokio::test]
async fn basic_get_returns_message_then_empty() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "g".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        "g".into(),
        BasicPublishOptions::default(),
        b"one",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(m) = ch
                .basic_get("g".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("message");
    assert_eq!(got.delivery.data, b"one");
    assert!(
        ch.basic_get("g".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .is_none()
    );
}
