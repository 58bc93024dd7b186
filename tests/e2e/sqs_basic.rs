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
