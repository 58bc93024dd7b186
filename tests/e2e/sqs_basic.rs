//! SQS smoke tests with the AWS SDK for Rust.

use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::aws::{sns_client, sqs, sqs_client};

#[tokio::test]
async fn send_receive_delete_with_the_sdk() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = c
        .create_queue()
        .queue_name("orders")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    assert!(url.ends_with("/000000000000/orders"), "{url}");
    let sent = c
        .send_message()
        .queue_url(&url)
        .message_body("hello")
        .message_attributes(
            "kind",
            sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("greeting")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(sent.message_id.is_some());
    let got = c
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .message_system_attribute_names(sqs::types::MessageSystemAttributeName::All)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let msgs = got.messages.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body.as_deref(), Some("hello"));
    assert_eq!(
        msgs[0].message_attributes.as_ref().unwrap()["kind"]
            .string_value
            .as_deref(),
        Some("greeting")
    );
    c.delete_message()
        .queue_url(&url)
        .receipt_handle(msgs[0].receipt_handle.clone().unwrap())
        .send()
        .await
        .unwrap();
    let again = c
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(0)
        .send()
        .await
        .unwrap();
    assert!(again.messages.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn missing_queue_is_queue_does_not_exist() {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let err = c
        .get_queue_url()
        .queue_name("nope")
        .send()
        .await
        .unwrap_err();
    let svc = err.into_service_error();
    assert!(svc.is_queue_does_not_exist(), "{svc:?}");
}

#[tokio::test]
async fn sns_topic_fans_out_to_sqs_queue_raw_and_enveloped() {
    let gw = Gateway::start();
    let q = sqs_client(gw.http.unwrap());
    let t = sns_client(gw.http.unwrap());
    let raw_url = q
        .create_queue()
        .queue_name("raw")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let env_url = q
        .create_queue()
        .queue_name("env")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn_of = |name: &str| format!("arn:aws:sqs:us-east-1:000000000000:{name}");
    let topic = t
        .create_topic()
        .name("signups")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    t.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(arn_of("raw"))
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    t.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(arn_of("env"))
        .send()
        .await
        .unwrap();
    t.publish()
        .topic_arn(&topic)
        .message("new user")
        .subject("signup")
        .send()
        .await
        .unwrap();
    let raw = q
        .receive_message()
        .queue_url(&raw_url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.messages.unwrap()[0].body.as_deref(), Some("new user"));
    let env = q
        .receive_message()
        .queue_url(&env_url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let body = env.messages.unwrap()[0].body.clone().unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Type"], "Notification");
    assert_eq!(v["Message"], "new user");
    assert_eq!(v["Subject"], "signup");
    assert_eq!(v["TopicArn"], topic);
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn mqtt_device_consumes_an_sqs_queue_through_dollar_queue() {
    use tether_e2e::mqtt::v5;
    let gw = Gateway::start();
    let c = sqs_client(gw.http.unwrap());
    let url = c
        .create_queue()
        .queue_name("jobs")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let (mut dev, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "worker-1")).await;
    let codes = dev.subscribe("$queue/jobs", v5::QoS::AtLeastOnce).await;
    assert_eq!(
        codes,
        vec![v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]
    );
    c.send_message()
        .queue_url(&url)
        .message_body("job-1")
        .send()
        .await
        .unwrap();
    let p = dev.expect().await;
    assert_eq!(&p.topic[..], b"$queue/jobs");
    assert_eq!(&p.payload[..], b"job-1");
    // Acknowledged by the device (rumqttc acks automatically): gone from the queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let attrs = c
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let key = |k| attrs.get(&k).cloned().unwrap_or_default();
        if key(sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == "0"
            && key(sqs::types::QueueAttributeName::ApproximateNumberOfMessages) == "0"
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the device's ack did not delete the message: {attrs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn amqp_visibility_timeout_returns_unacked_delivery() {
    use tether_e2e::amqp::*;
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let mut args = FieldTable::default();
    args.insert("x-visibility-timeout".into(), AMQPValue::LongInt(300));
    ch.queue_declare("leased".into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        "leased".into(),
        BasicPublishOptions::default(),
        b"work",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let first = loop {
        if let Some(m) = ch
            .basic_get("leased".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            break m;
        }
    };
    assert!(!first.delivery.redelivered);
    // Not acked: after the visibility timeout it is delivered again.
    let again = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(m) = ch
                .basic_get("leased".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("redelivered after the visibility timeout");
    assert!(again.delivery.redelivered);
    assert_eq!(again.delivery.data, b"work");
}
