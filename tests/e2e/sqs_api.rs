//! The SQS API through the AWS SDK for Rust: each operation's success path,
//! the errors SQS documents for bad requests, its limits, and SigV4 checks.
//!
//! Amazon SQS's documented behaviour is the reference. The Rust SDK does not
//! verify MD5OfMessageBody / MD5OfMessageAttributes itself, so the tests
//! compute both digests independently (`tether_e2e::aws::md5_*`).

use std::collections::HashMap;
use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::aws::sqs::error::{ProvideErrorMetadata, SdkError};
use tether_e2e::aws::sqs::primitives::Blob;
use tether_e2e::aws::sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName as Sys, QueueAttributeName as Attr,
    SendMessageBatchRequestEntry,
};
use tether_e2e::aws::{
    create_queue, md5_hex, md5_of_sdk_attributes, message_counts, queue_attribute, receive, sqs,
    sqs_client, sqs_client_signed_with, test_keys,
};

const ACCOUNT: &str = "000000000000";

fn arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

fn start() -> (Gateway, sqs::Client) {
    let gw = Gateway::start();
    let c = sqs_client(gw.http.expect("http listener"));
    (gw, c)
}

fn text(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

/// The HTTP status of a failed call.
fn status<E>(e: &SdkError<E, sqs::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

async fn send(c: &sqs::Client, url: &str, body: &str) -> String {
    c.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage")
        .message_id
        .unwrap_or_default()
}

/// Makes a received message visible again.
async fn release(c: &sqs::Client, url: &str, m: &sqs::types::Message) {
    c.change_message_visibility()
        .queue_url(url)
        .receipt_handle(m.receipt_handle.clone().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .expect("ChangeMessageVisibility 0");
}

fn send_entry(id: &str, body: &str) -> SendMessageBatchRequestEntry {
    SendMessageBatchRequestEntry::builder()
        .id(id)
        .message_body(body)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- queues

#[tokio::test]
async fn create_queue_with_attributes_reports_them_back() {
    let (_gw, c) = start();
    let out = c
        .create_queue()
        .queue_name("configured")
        .attributes(Attr::VisibilityTimeout, "45")
        .attributes(Attr::DelaySeconds, "3")
        .attributes(Attr::MaximumMessageSize, "2048")
        .attributes(Attr::MessageRetentionPeriod, "7200")
        .attributes(Attr::ReceiveMessageWaitTimeSeconds, "4")
        .send()
        .await
        .unwrap();
    let url = out.queue_url.unwrap();
    assert!(url.ends_with(&format!("/{ACCOUNT}/configured")), "{url}");
    for (name, want) in [
        ("VisibilityTimeout", "45"),
        ("DelaySeconds", "3"),
        ("MaximumMessageSize", "2048"),
        ("MessageRetentionPeriod", "7200"),
        ("ReceiveMessageWaitTimeSeconds", "4"),
    ] {
        assert_eq!(
            queue_attribute(&c, &url, name).await.as_deref(),
            Some(want),
            "{name}"
        );
    }
}

#[tokio::test]
async fn create_queue_with_tags_applies_them() {
    let (_gw, c) = start();
    let url = c
        .create_queue()
        .queue_name("tagged-at-birth")
        .tags("team", "iot")
        .tags("env", "test")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let tags = c
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert_eq!(
        tags,
        HashMap::from([
            ("team".to_owned(), "iot".to_owned()),
            ("env".to_owned(), "test".to_owned())
        ]),
        "the tags given to CreateQueue"
    );
}

#[tokio::test]
async fn create_queue_again_with_identical_attributes_returns_the_same_url() {
    let (_gw, c) = start();
    let first = create_queue(&c, "same", &[("VisibilityTimeout", "5")]).await;
    let second = create_queue(&c, "same", &[("VisibilityTimeout", "5")]).await;
    assert_eq!(first, second);
    let urls = c.list_queues().send().await.unwrap().queue_urls.unwrap();
    assert_eq!(urls, vec![first]);
}

#[tokio::test]
async fn create_queue_with_a_conflicting_visibility_timeout_is_queue_name_exists() {
    let (_gw, c) = start();
    create_queue(&c, "clash", &[("VisibilityTimeout", "5")]).await;
    let err = c
        .create_queue()
        .queue_name("clash")
        .attributes(Attr::VisibilityTimeout, "6")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let e = err.into_service_error();
    assert!(e.is_queue_name_exists(), "{e:?}");
    assert_eq!(e.code(), Some("QueueAlreadyExists"));
}

#[tokio::test]
async fn create_queue_with_a_conflicting_maximum_message_size_is_queue_name_exists() {
    let (_gw, c) = start();
    create_queue(&c, "clash-size", &[("MaximumMessageSize", "2048")]).await;
    let err = c
        .create_queue()
        .queue_name("clash-size")
        .attributes(Attr::MaximumMessageSize, "4096")
        .send()
        .await
        .expect_err("a different MaximumMessageSize must conflict with the existing queue");
    let e = err.into_service_error();
    assert!(e.is_queue_name_exists(), "{e:?}");
}

#[tokio::test]
async fn get_queue_url_returns_the_url_create_queue_returned() {
    let (_gw, c) = start();
    let url = create_queue(&c, "lookup", &[]).await;
    let got = c
        .get_queue_url()
        .queue_name("lookup")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    assert_eq!(got, url);
}

#[tokio::test]
async fn list_queues_filters_by_name_prefix() {
    let (_gw, c) = start();
    let a = create_queue(&c, "sensor-a", &[]).await;
    let b = create_queue(&c, "sensor-b", &[]).await;
    create_queue(&c, "billing", &[]).await;
    let mut urls = c
        .list_queues()
        .queue_name_prefix("sensor-")
        .send()
        .await
        .unwrap()
        .queue_urls
        .unwrap();
    urls.sort();
    assert_eq!(urls, vec![a, b]);
    let none = c
        .list_queues()
        .queue_name_prefix("nothing")
        .send()
        .await
        .unwrap();
    assert!(none.queue_urls.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn list_queues_paginates_with_max_results_and_next_token() {
    let (_gw, c) = start();
    let mut all = Vec::new();
    for n in ["p1", "p2", "p3", "p4", "p5"] {
        all.push(create_queue(&c, n, &[]).await);
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = c
            .list_queues()
            .queue_name_prefix("p")
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        let urls = page.queue_urls.unwrap_or_default();
        assert!(urls.len() <= 2, "page larger than MaxResults: {urls:?}");
        seen.extend(urls);
        pages += 1;
        token = page.next_token;
        if token.is_none() {
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    seen.sort();
    all.sort();
    assert_eq!(seen, all);
}

#[tokio::test]
async fn delete_queue_removes_it_from_lookup_and_listing() {
    let (_gw, c) = start();
    let url = create_queue(&c, "doomed", &[]).await;
    c.delete_queue().queue_url(&url).send().await.unwrap();
    let err = c
        .get_queue_url()
        .queue_name("doomed")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");
    let urls = c.list_queues().send().await.unwrap().queue_urls;
    assert!(urls.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn get_queue_attributes_all_reports_the_defaults_and_the_arn() {
    let (_gw, c) = start();
    let url = create_queue(&c, "defaults", &[]).await;
    let attrs = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(Attr::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let get = |k: Attr| attrs.get(&k).map(String::as_str);
    assert_eq!(get(Attr::QueueArn), Some(arn("defaults").as_str()));
    assert_eq!(get(Attr::VisibilityTimeout), Some("30"));
    assert_eq!(get(Attr::DelaySeconds), Some("0"));
    assert_eq!(get(Attr::MessageRetentionPeriod), Some("345600"));
    assert_eq!(get(Attr::ReceiveMessageWaitTimeSeconds), Some("0"));
    assert_eq!(get(Attr::MaximumMessageSize), Some("1048576"));
    assert_eq!(get(Attr::ApproximateNumberOfMessages), Some("0"));
    assert_eq!(get(Attr::ApproximateNumberOfMessagesNotVisible), Some("0"));
    assert_eq!(get(Attr::ApproximateNumberOfMessagesDelayed), Some("0"));
    let created: u64 = get(Attr::CreatedTimestamp).unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        created <= now && now - created < 60,
        "CreatedTimestamp {created} (in seconds)"
    );
    assert!(get(Attr::LastModifiedTimestamp).is_some());
    assert!(
        !attrs.contains_key(&Attr::FifoQueue),
        "standard queue: {attrs:?}"
    );
}

#[tokio::test]
async fn get_queue_attributes_with_names_returns_only_those() {
    let (_gw, c) = start();
    let url = create_queue(&c, "some", &[("VisibilityTimeout", "12")]).await;
    let attrs = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(Attr::VisibilityTimeout)
        .attribute_names(Attr::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        attrs,
        HashMap::from([
            (Attr::VisibilityTimeout, "12".to_owned()),
            (Attr::QueueArn, arn("some")),
        ])
    );
}

#[tokio::test]
async fn approximate_counts_separate_visible_in_flight_and_delayed_messages() {
    let (_gw, c) = start();
    let url = create_queue(&c, "counts", &[]).await;
    send(&c, &url, "first").await;
    send(&c, &url, "second").await;
    c.send_message()
        .queue_url(&url)
        .message_body("later")
        .delay_seconds(60)
        .send()
        .await
        .unwrap();
    assert_eq!(message_counts(&c, &url).await, (2, 0, 1));
    let got = receive(&c, &url, 1, 0).await;
    assert_eq!(got.len(), 1);
    assert_eq!(message_counts(&c, &url).await, (1, 1, 1));
}

#[tokio::test]
async fn set_queue_attributes_changes_what_get_queue_attributes_reports() {
    let (_gw, c) = start();
    let url = create_queue(&c, "tuned", &[]).await;
    c.set_queue_attributes()
        .queue_url(&url)
        .attributes(Attr::VisibilityTimeout, "7")
        .attributes(Attr::DelaySeconds, "2")
        .attributes(Attr::MaximumMessageSize, "1024")
        .attributes(Attr::ReceiveMessageWaitTimeSeconds, "1")
        .send()
        .await
        .unwrap();
    for (name, want) in [
        ("VisibilityTimeout", "7"),
        ("DelaySeconds", "2"),
        ("MaximumMessageSize", "1024"),
        ("ReceiveMessageWaitTimeSeconds", "1"),
    ] {
        assert_eq!(
            queue_attribute(&c, &url, name).await.as_deref(),
            Some(want),
            "{name}"
        );
    }
}

#[tokio::test]
async fn purge_queue_removes_every_message() {
    let (_gw, c) = start();
    let url = create_queue(&c, "purged", &[]).await;
    for i in 0..3 {
        send(&c, &url, &format!("m{i}")).await;
    }
    assert_eq!(receive(&c, &url, 1, 0).await.len(), 1);
    c.purge_queue().queue_url(&url).send().await.unwrap();
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
    assert!(receive(&c, &url, 10, 0).await.is_empty());
}

// ---------------------------------------------------------------- messages

#[tokio::test]
async fn send_message_returns_the_md5_of_body_and_attributes() {
    let (_gw, c) = start();
    let url = create_queue(&c, "digests", &[]).await;
    let body = "température: 21.5 °C — ok";
    let attrs = HashMap::from([
        ("unit".to_owned(), text("celsius")),
        (
            "reading".to_owned(),
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("21.5")
                .build()
                .unwrap(),
        ),
        (
            "raw".to_owned(),
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(Blob::new(vec![0u8, 1, 2, 255]))
                .build()
                .unwrap(),
        ),
        (
            "site".to_owned(),
            MessageAttributeValue::builder()
                .data_type("String.location")
                .string_value("plant-7")
                .build()
                .unwrap(),
        ),
    ]);
    let out = c
        .send_message()
        .queue_url(&url)
        .message_body(body)
        .set_message_attributes(Some(attrs.clone()))
        .send()
        .await
        .unwrap();
    assert!(out.message_id.as_deref().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        out.md5_of_message_body.as_deref(),
        Some(md5_hex(body.as_bytes()).as_str())
    );
    assert_eq!(
        out.md5_of_message_attributes.as_deref(),
        Some(md5_of_sdk_attributes(&attrs).as_str())
    );
    assert_eq!(
        out.sequence_number, None,
        "standard queues have no sequence numbers"
    );

    let got = receive(&c, &url, 1, 0).await;
    let m = &got[0];
    assert_eq!(m.message_id, out.message_id);
    assert_eq!(m.body.as_deref(), Some(body));
    assert_eq!(
        m.md5_of_body.as_deref(),
        Some(md5_hex(body.as_bytes()).as_str())
    );
    assert_eq!(m.message_attributes.as_ref(), Some(&attrs));
    assert_eq!(
        m.md5_of_message_attributes.as_deref(),
        Some(md5_of_sdk_attributes(&attrs).as_str())
    );
}

#[tokio::test]
async fn send_message_without_attributes_has_no_attribute_md5() {
    let (_gw, c) = start();
    let url = create_queue(&c, "plain", &[]).await;
    let out = c
        .send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.md5_of_message_body.as_deref(),
        Some("5d41402abc4b2a76b9719d911017c592")
    );
    assert_eq!(out.md5_of_message_attributes, None);
}

#[tokio::test]
async fn send_message_batch_reports_each_entry_as_successful_or_failed() {
    let (_gw, c) = start();
    let url = create_queue(&c, "batched", &[]).await;
    let out = c
        .send_message_batch()
        .queue_url(&url)
        .entries(send_entry("ok-1", "one"))
        .entries(
            SendMessageBatchRequestEntry::builder()
                .id("too_late")
                .message_body("never")
                .delay_seconds(901)
                .build()
                .unwrap(),
        )
        .entries(
            SendMessageBatchRequestEntry::builder()
                .id("ok-2")
                .message_body("two")
                .message_attributes("k", text("v"))
                .build()
                .unwrap(),
        )
        .entries(send_entry("bad_chars", "nul \u{0} inside"))
        .send()
        .await
        .unwrap();
    let mut ok: Vec<&str> = out.successful.iter().map(|e| e.id.as_str()).collect();
    ok.sort();
    assert_eq!(ok, vec!["ok-1", "ok-2"]);
    for e in &out.successful {
        let body = if e.id == "ok-1" { "one" } else { "two" };
        assert_eq!(e.md5_of_message_body, md5_hex(body.as_bytes()), "{e:?}");
        assert!(!e.message_id.is_empty());
    }
    let two = out.successful.iter().find(|e| e.id == "ok-2").unwrap();
    assert_eq!(
        two.md5_of_message_attributes.as_deref(),
        Some(md5_of_sdk_attributes(&HashMap::from([("k".to_owned(), text("v"))])).as_str())
    );
    let mut failed: Vec<(&str, &str, bool)> = out
        .failed
        .iter()
        .map(|f| (f.id.as_str(), f.code.as_str(), f.sender_fault))
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![
            ("bad_chars", "InvalidMessageContents", true),
            ("too_late", "InvalidParameterValue", true),
        ]
    );
    let mut bodies: Vec<String> = receive(&c, &url, 10, 0)
        .await
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec!["one", "two"]);
}

#[tokio::test]
async fn receive_message_returns_at_most_max_number_of_messages() {
    let (_gw, c) = start();
    let url = create_queue(&c, "many", &[]).await;
    for start in [0, 10] {
        let mut req = c.send_message_batch().queue_url(&url);
        for i in start..start + 10 {
            req = req.entries(send_entry(&format!("e{i}"), &format!("m{i}")));
        }
        assert_eq!(req.send().await.unwrap().successful.len(), 10);
    }
    let one = c
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(one.len(), 1, "MaxNumberOfMessages defaults to 1");
    assert_eq!(receive(&c, &url, 1, 0).await.len(), 1);
    assert_eq!(receive(&c, &url, 10, 0).await.len(), 10);
    assert_eq!(receive(&c, &url, 10, 0).await.len(), 8);
    assert!(receive(&c, &url, 10, 0).await.is_empty());
}

#[tokio::test]
async fn receive_message_selects_message_attributes_by_all_prefix_and_name() {
    let (_gw, c) = start();
    let url = create_queue(&c, "selective", &[]).await;
    let attrs = HashMap::from([
        ("geo.lat".to_owned(), text("52.5")),
        ("geo.lon".to_owned(), text("13.4")),
        ("geography".to_owned(), text("not under geo.*")),
        ("device".to_owned(), text("pico-7")),
    ]);
    c.send_message()
        .queue_url(&url)
        .message_body("fix")
        .set_message_attributes(Some(attrs.clone()))
        .send()
        .await
        .unwrap();
    let cases: [(&[&str], &[&str]); 5] = [
        (&["All"], &["device", "geo.lat", "geo.lon", "geography"]),
        (&[".*"], &["device", "geo.lat", "geo.lon", "geography"]),
        (&["geo.*"], &["geo.lat", "geo.lon"]),
        (&["device", "geo.lon"], &["device", "geo.lon"]),
        (&[], &[]),
    ];
    for (asked, want) in cases {
        let got = c
            .receive_message()
            .queue_url(&url)
            .set_message_attribute_names(Some(asked.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .unwrap()
            .messages
            .unwrap();
        let m = &got[0];
        let returned = m.message_attributes.clone().unwrap_or_default();
        let mut names: Vec<&str> = returned.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, want, "MessageAttributeNames {asked:?}");
        if want.is_empty() {
            assert_eq!(m.md5_of_message_attributes, None);
        } else {
            // The digest covers the attributes returned.
            assert_eq!(
                m.md5_of_message_attributes.as_deref(),
                Some(md5_of_sdk_attributes(&returned).as_str()),
                "MessageAttributeNames {asked:?}"
            );
            for (k, v) in &returned {
                assert_eq!(Some(v), attrs.get(k));
            }
        }
        release(&c, &url, m).await;
    }
}

#[tokio::test]
async fn receive_message_reports_the_system_attributes_asked_for() {
    let (_gw, c) = start();
    let url = create_queue(&c, "system", &[]).await;
    let before = now_ms();
    send(&c, &url, "x").await;
    let after = now_ms();
    let first = receive(&c, &url, 1, 0).await.remove(0);
    let a = first.attributes.clone().unwrap();
    let num = |k: &Sys| -> u64 { a[k].parse().unwrap() };
    assert!(
        (before.saturating_sub(1000)..=after + 1000).contains(&num(&Sys::SentTimestamp)),
        "SentTimestamp {} not within [{before}, {after}]",
        a[&Sys::SentTimestamp]
    );
    assert_eq!(a[&Sys::ApproximateReceiveCount], "1");
    let first_receive = num(&Sys::ApproximateFirstReceiveTimestamp);
    assert!(first_receive >= num(&Sys::SentTimestamp));
    assert!(
        a.get(&Sys::SenderId).is_some_and(|s| !s.is_empty()),
        "{a:?}"
    );
    assert!(
        !a.contains_key(&Sys::SequenceNumber),
        "standard queue: {a:?}"
    );
    assert!(
        !a.contains_key(&Sys::MessageGroupId),
        "standard queue: {a:?}"
    );
    release(&c, &url, &first).await;

    // Only what is asked for, and the count goes up.
    let again = c
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(Sys::ApproximateReceiveCount)
        .message_system_attribute_names(Sys::ApproximateFirstReceiveTimestamp)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap()
        .remove(0);
    let a2 = again.attributes.clone().unwrap();
    assert_eq!(a2.len(), 2, "{a2:?}");
    assert_eq!(a2[&Sys::ApproximateReceiveCount], "2");
    assert_eq!(
        a2[&Sys::ApproximateFirstReceiveTimestamp],
        first_receive.to_string(),
        "the first receive time does not change"
    );
    release(&c, &url, &again).await;
    // Nothing asked for: no system attributes.
    let plain = c
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap()
        .remove(0);
    assert_eq!(plain.attributes, None);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn receive_message_on_a_fifo_queue_reports_group_dedup_id_and_sequence_number() {
    let (_gw, c) = start();
    let url = create_queue(&c, "ordered.fifo", &[("FifoQueue", "true")]).await;
    let sent = c
        .send_message()
        .queue_url(&url)
        .message_body("step")
        .message_group_id("line-1")
        .message_deduplication_id("d-1")
        .send()
        .await
        .unwrap();
    let seq = sent
        .sequence_number
        .clone()
        .expect("SequenceNumber on FIFO send");
    assert!(seq.chars().all(|c| c.is_ascii_digit()), "{seq}");
    let m = receive(&c, &url, 1, 0).await.remove(0);
    let a = m.attributes.unwrap();
    assert_eq!(a[&Sys::MessageGroupId], "line-1");
    assert_eq!(a[&Sys::MessageDeduplicationId], "d-1");
    assert_eq!(a[&Sys::SequenceNumber], seq);
    assert_eq!(a[&Sys::ApproximateReceiveCount], "1");
}

#[tokio::test]
async fn delete_message_removes_the_received_message() {
    let (_gw, c) = start();
    let url = create_queue(&c, "deletes", &[]).await;
    send(&c, &url, "bye").await;
    let m = receive(&c, &url, 1, 0).await.remove(0);
    c.delete_message()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

#[tokio::test]
async fn delete_message_batch_deletes_good_entries_and_reports_bad_handles() {
    let (_gw, c) = start();
    let url = create_queue(&c, "batch-deletes", &[]).await;
    for i in 0..3 {
        send(&c, &url, &format!("m{i}")).await;
    }
    let got = receive(&c, &url, 3, 0).await;
    assert_eq!(got.len(), 3);
    let entry = |id: &str, handle: &str| {
        DeleteMessageBatchRequestEntry::builder()
            .id(id)
            .receipt_handle(handle)
            .build()
            .unwrap()
    };
    let out = c
        .delete_message_batch()
        .queue_url(&url)
        .entries(entry("a", got[0].receipt_handle.as_deref().unwrap()))
        .entries(entry("b", got[1].receipt_handle.as_deref().unwrap()))
        .entries(entry("c", "not-a-receipt-handle"))
        .send()
        .await
        .unwrap();
    let mut ok: Vec<&str> = out.successful.iter().map(|e| e.id.as_str()).collect();
    ok.sort();
    assert_eq!(ok, vec!["a", "b"]);
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].id, "c");
    assert_eq!(out.failed[0].code, "ReceiptHandleIsInvalid");
    assert!(out.failed[0].sender_fault);
    assert_eq!(message_counts(&c, &url).await, (0, 1, 0));
}

#[tokio::test]
async fn change_message_visibility_batch_applies_each_entry() {
    let (_gw, c) = start();
    let url = create_queue(&c, "batch-visibility", &[]).await;
    send(&c, &url, "back-now").await;
    send(&c, &url, "stays-hidden").await;
    let got = receive(&c, &url, 2, 0).await;
    assert_eq!(got.len(), 2);
    let entry = |id: &str, m: &sqs::types::Message, secs: i32| {
        ChangeMessageVisibilityBatchRequestEntry::builder()
            .id(id)
            .receipt_handle(m.receipt_handle.clone().unwrap())
            .visibility_timeout(secs)
            .build()
            .unwrap()
    };
    let (now, later) = if got[0].body.as_deref() == Some("back-now") {
        (&got[0], &got[1])
    } else {
        (&got[1], &got[0])
    };
    let out = c
        .change_message_visibility_batch()
        .queue_url(&url)
        .entries(entry("now", now, 0))
        .entries(entry("later", later, 600))
        .entries(
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id("junk")
                .receipt_handle("junk")
                .visibility_timeout(0)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut ok: Vec<&str> = out.successful.iter().map(|e| e.id.as_str()).collect();
    ok.sort();
    assert_eq!(ok, vec!["later", "now"]);
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].id, "junk");
    assert_eq!(out.failed[0].code, "ReceiptHandleIsInvalid");
    let again = receive(&c, &url, 10, 0).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body.as_deref(), Some("back-now"));
}

#[tokio::test]
async fn tag_queue_untag_queue_and_list_queue_tags() {
    let (_gw, c) = start();
    let url = create_queue(&c, "tagged", &[]).await;
    let tags = |c: sqs::Client, url: String| async move {
        c.list_queue_tags()
            .queue_url(url)
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
    };
    assert!(tags(c.clone(), url.clone()).await.is_empty());
    c.tag_queue()
        .queue_url(&url)
        .tags("a", "1")
        .tags("b", "2")
        .send()
        .await
        .unwrap();
    c.tag_queue()
        .queue_url(&url)
        .tags("b", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(c.clone(), url.clone()).await,
        HashMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "3".to_owned())
        ])
    );
    c.untag_queue()
        .queue_url(&url)
        .tag_keys("a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(c.clone(), url.clone()).await,
        HashMap::from([("b".to_owned(), "3".to_owned())])
    );
}

#[tokio::test]
async fn list_dead_letter_source_queues_lists_the_queues_redriving_to_it() {
    let (_gw, c) = start();
    let dlq = create_queue(&c, "dlq", &[]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"3"}}"#,
        arn("dlq")
    );
    let src1 = create_queue(&c, "src-1", &[("RedrivePolicy", &policy)]).await;
    let src2 = create_queue(&c, "src-2", &[]).await;
    create_queue(&c, "unrelated", &[]).await;
    c.set_queue_attributes()
        .queue_url(&src2)
        .attributes(Attr::RedrivePolicy, &policy)
        .send()
        .await
        .unwrap();
    let mut urls = c
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .unwrap()
        .queue_urls;
    urls.sort();
    assert_eq!(urls, vec![src1.clone(), src2]);
    let redrive = queue_attribute(&c, &src1, "RedrivePolicy").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&redrive).unwrap();
    assert_eq!(v["deadLetterTargetArn"], arn("dlq"));
}

#[tokio::test]
async fn message_move_task_on_an_empty_dead_letter_queue_completes_with_nothing_moved() {
    let (_gw, c) = start();
    create_queue(&c, "dlq", &[]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":1}}"#,
        arn("dlq")
    );
    create_queue(&c, "src", &[("RedrivePolicy", &policy)]).await;
    let handle = c
        .start_message_move_task()
        .source_arn(arn("dlq"))
        .destination_arn(arn("src"))
        .send()
        .await
        .unwrap()
        .task_handle
        .unwrap();
    assert!(!handle.is_empty());
    let mut last = None;
    for _ in 0..100 {
        let results = c
            .list_message_move_tasks()
            .source_arn(arn("dlq"))
            .max_results(10)
            .send()
            .await
            .unwrap()
            .results
            .unwrap_or_default();
        assert_eq!(results.len(), 1, "{results:?}");
        if results[0].status.as_deref() == Some("COMPLETED") {
            last = Some(results[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let task = last.expect("the task completes");
    assert_eq!(task.source_arn.as_deref(), Some(arn("dlq").as_str()));
    assert_eq!(task.destination_arn.as_deref(), Some(arn("src").as_str()));
    assert_eq!(task.approximate_number_of_messages_moved, 0);
    assert_eq!(task.task_handle, None, "only running tasks report a handle");
    // A finished task cannot be cancelled.
    let err = c
        .cancel_message_move_task()
        .task_handle(handle)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
}

#[tokio::test]
async fn start_message_move_task_needs_an_existing_dead_letter_queue() {
    let (_gw, c) = start();
    create_queue(&c, "ordinary", &[]).await;
    let err = c
        .start_message_move_task()
        .source_arn(arn("missing"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = c
        .start_message_move_task()
        .source_arn(arn("ordinary"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
}

#[tokio::test]
async fn cancel_message_move_task_with_an_unknown_handle_is_resource_not_found() {
    let (_gw, c) = start();
    let err = c
        .cancel_message_move_task()
        .task_handle("bm90LWEtdGFzaw")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn send_message_with_an_aws_trace_header_returns_it_as_a_system_attribute() {
    use tether_e2e::aws::sqs::types::{
        MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    };
    let (_gw, c) = start();
    let url = create_queue(&c, "traced", &[]).await;
    let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
    let out = c
        .send_message()
        .queue_url(&url)
        .message_body("traced")
        .message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(trace)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let want = tether_e2e::aws::md5_of_attributes([(
        "AWSTraceHeader",
        "String",
        tether_e2e::aws::AttrValue::Text(trace),
    )]);
    assert_eq!(
        out.md5_of_message_system_attributes.as_deref(),
        Some(want.as_str()),
        "MD5OfMessageSystemAttributes"
    );
    let m = receive(&c, &url, 1, 0).await.remove(0);
    assert_eq!(
        m.attributes
            .unwrap()
            .get(&Sys::AwsTraceHeader)
            .map(String::as_str),
        Some(trace)
    );
}

#[tokio::test]
async fn send_message_batch_may_total_more_than_the_queue_maximum_message_size() {
    // MaximumMessageSize limits each message; a batch may carry up to 1 MiB.
    let (_gw, c) = start();
    let url = create_queue(&c, "small-batch", &[("MaximumMessageSize", "1024")]).await;
    let body = "b".repeat(1000);
    let out = c
        .send_message_batch()
        .queue_url(&url)
        .entries(send_entry("one", &body))
        .entries(send_entry("two", &body))
        .send()
        .await
        .expect("two 1000-byte messages in one batch on a 1024-byte queue");
    assert_eq!(out.successful.len(), 2, "{:?}", out.failed);
}

#[tokio::test]
async fn send_message_batch_over_1_mib_in_total_is_batch_request_too_long() {
    let (_gw, c) = start();
    let url = create_queue(&c, "big-batch", &[]).await;
    let body = "b".repeat(600 * 1024);
    let err = c
        .send_message_batch()
        .queue_url(&url)
        .entries(send_entry("one", &body))
        .entries(send_entry("two", &body))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_batch_request_too_long(), "{err:?}");
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

// ---------------------------------------------------------------- errors

/// Asserts `result` failed with the SDK's QueueDoesNotExist variant.
macro_rules! assert_no_queue {
    ($op:literal, $result:expr) => {
        match $result {
            Ok(v) => panic!("{} on a missing queue succeeded: {v:?}", $op),
            Err(e) => {
                assert_eq!(status(&e), Some(400), "{}", $op);
                let e = e.into_service_error();
                assert!(e.is_queue_does_not_exist(), "{}: {e:?}", $op);
            }
        }
    };
}

#[tokio::test]
async fn every_queue_operation_on_a_missing_queue_is_queue_does_not_exist() {
    let (gw, c) = start();
    let url = format!("http://{}/{ACCOUNT}/missing", gw.http.unwrap());
    let handle = "bm90LWEtaGFuZGxl";
    assert_no_queue!(
        "GetQueueUrl",
        c.get_queue_url().queue_name("missing").send().await
    );
    assert_no_queue!("DeleteQueue", c.delete_queue().queue_url(&url).send().await);
    assert_no_queue!(
        "GetQueueAttributes",
        c.get_queue_attributes()
            .queue_url(&url)
            .attribute_names(Attr::All)
            .send()
            .await
    );
    assert_no_queue!(
        "SetQueueAttributes",
        c.set_queue_attributes()
            .queue_url(&url)
            .attributes(Attr::VisibilityTimeout, "5")
            .send()
            .await
    );
    assert_no_queue!("PurgeQueue", c.purge_queue().queue_url(&url).send().await);
    assert_no_queue!(
        "SendMessage",
        c.send_message()
            .queue_url(&url)
            .message_body("x")
            .send()
            .await
    );
    assert_no_queue!(
        "SendMessageBatch",
        c.send_message_batch()
            .queue_url(&url)
            .entries(send_entry("a", "x"))
            .send()
            .await
    );
    assert_no_queue!(
        "ReceiveMessage",
        c.receive_message().queue_url(&url).send().await
    );
    assert_no_queue!(
        "DeleteMessage",
        c.delete_message()
            .queue_url(&url)
            .receipt_handle(handle)
            .send()
            .await
    );
    assert_no_queue!(
        "DeleteMessageBatch",
        c.delete_message_batch()
            .queue_url(&url)
            .entries(
                DeleteMessageBatchRequestEntry::builder()
                    .id("a")
                    .receipt_handle(handle)
                    .build()
                    .unwrap()
            )
            .send()
            .await
    );
    assert_no_queue!(
        "ChangeMessageVisibility",
        c.change_message_visibility()
            .queue_url(&url)
            .receipt_handle(handle)
            .visibility_timeout(1)
            .send()
            .await
    );
    assert_no_queue!(
        "ChangeMessageVisibilityBatch",
        c.change_message_visibility_batch()
            .queue_url(&url)
            .entries(
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id("a")
                    .receipt_handle(handle)
                    .visibility_timeout(1)
                    .build()
                    .unwrap()
            )
            .send()
            .await
    );
    assert_no_queue!(
        "TagQueue",
        c.tag_queue().queue_url(&url).tags("k", "v").send().await
    );
    assert_no_queue!(
        "UntagQueue",
        c.untag_queue().queue_url(&url).tag_keys("k").send().await
    );
    assert_no_queue!(
        "ListQueueTags",
        c.list_queue_tags().queue_url(&url).send().await
    );
    assert_no_queue!(
        "ListDeadLetterSourceQueues",
        c.list_dead_letter_source_queues()
            .queue_url(&url)
            .send()
            .await
    );
}

#[tokio::test]
async fn add_and_remove_permission_on_a_missing_queue_is_queue_does_not_exist() {
    let (gw, c) = start();
    let url = format!("http://{}/{ACCOUNT}/missing", gw.http.unwrap());
    assert_no_queue!(
        "AddPermission",
        c.add_permission()
            .queue_url(&url)
            .label("l")
            .aws_account_ids("111122223333")
            .actions("SendMessage")
            .send()
            .await
    );
    assert_no_queue!(
        "RemovePermission",
        c.remove_permission()
            .queue_url(&url)
            .label("l")
            .send()
            .await
    );
}

/// Asserts `result` failed with error code `code` and HTTP 400.
macro_rules! assert_code {
    ($code:literal, $result:expr) => {
        match $result {
            Ok(v) => panic!("expected {} but the call succeeded: {v:?}", $code),
            Err(e) => {
                assert_eq!(e.code(), Some($code), "{e:?}");
                assert_eq!(status(&e), Some(400), "{e:?}");
            }
        }
    };
}

#[tokio::test]
async fn max_number_of_messages_outside_1_to_10_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let url = create_queue(&c, "limits", &[]).await;
    for n in [0, 11] {
        assert_code!(
            "InvalidParameterValue",
            c.receive_message()
                .queue_url(&url)
                .max_number_of_messages(n)
                .send()
                .await
        );
    }
}

#[tokio::test]
async fn delay_seconds_above_900_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let url = create_queue(&c, "limits", &[]).await;
    assert_code!(
        "InvalidParameterValue",
        c.send_message()
            .queue_url(&url)
            .message_body("x")
            .delay_seconds(901)
            .send()
            .await
    );
    // As a queue attribute it is an invalid attribute value.
    assert_code!(
        "InvalidAttributeValue",
        c.set_queue_attributes()
            .queue_url(&url)
            .attributes(Attr::DelaySeconds, "901")
            .send()
            .await
    );
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

#[tokio::test]
async fn visibility_timeout_above_43200_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let url = create_queue(&c, "limits", &[]).await;
    send(&c, &url, "x").await;
    assert_code!(
        "InvalidParameterValue",
        c.receive_message()
            .queue_url(&url)
            .visibility_timeout(43201)
            .send()
            .await
    );
    let m = receive(&c, &url, 1, 0).await.remove(0);
    assert_code!(
        "InvalidParameterValue",
        c.change_message_visibility()
            .queue_url(&url)
            .receipt_handle(m.receipt_handle.unwrap())
            .visibility_timeout(43201)
            .send()
            .await
    );
    assert_code!(
        "InvalidAttributeValue",
        c.set_queue_attributes()
            .queue_url(&url)
            .attributes(Attr::VisibilityTimeout, "43201")
            .send()
            .await
    );
}

#[tokio::test]
async fn wait_time_seconds_above_20_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let url = create_queue(&c, "limits", &[]).await;
    assert_code!(
        "InvalidParameterValue",
        c.receive_message()
            .queue_url(&url)
            .wait_time_seconds(21)
            .send()
            .await
    );
}

#[tokio::test]
async fn message_larger_than_maximum_message_size_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let url = create_queue(&c, "small", &[("MaximumMessageSize", "1024")]).await;
    c.send_message()
        .queue_url(&url)
        .message_body("a".repeat(1024))
        .send()
        .await
        .expect("a body of exactly MaximumMessageSize fits");
    assert_code!(
        "InvalidParameterValue",
        c.send_message()
            .queue_url(&url)
            .message_body("a".repeat(1025))
            .send()
            .await
    );
    assert_eq!(message_counts(&c, &url).await, (1, 0, 0));
}

#[tokio::test]
async fn fifo_send_without_message_group_id_is_missing_parameter() {
    // Amazon SQS answers `MissingParameter: The request must contain the
    // parameter MessageGroupId.` (400) for this.
    let (_gw, c) = start();
    let url = create_queue(
        &c,
        "grouped.fifo",
        &[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")],
    )
    .await;
    assert_code!(
        "MissingParameter",
        c.send_message()
            .queue_url(&url)
            .message_body("x")
            .send()
            .await
    );
}

#[tokio::test]
async fn fifo_send_without_deduplication_id_is_invalid_parameter_value_without_content_dedup() {
    let (_gw, c) = start();
    let url = create_queue(&c, "strict.fifo", &[("FifoQueue", "true")]).await;
    assert_code!(
        "InvalidParameterValue",
        c.send_message()
            .queue_url(&url)
            .message_body("x")
            .message_group_id("g")
            .send()
            .await
    );
}

#[tokio::test]
async fn fifo_per_message_delay_seconds_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let url = create_queue(
        &c,
        "nodelay.fifo",
        &[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")],
    )
    .await;
    assert_code!(
        "InvalidParameterValue",
        c.send_message()
            .queue_url(&url)
            .message_body("x")
            .message_group_id("g")
            .delay_seconds(1)
            .send()
            .await
    );
}

#[tokio::test]
async fn deduplication_id_on_a_standard_queue_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let url = create_queue(&c, "standard", &[]).await;
    assert_code!(
        "InvalidParameterValue",
        c.send_message()
            .queue_url(&url)
            .message_body("x")
            .message_deduplication_id("d")
            .send()
            .await
    );
}

#[tokio::test]
async fn create_queue_with_an_invalid_name_is_invalid_parameter_value() {
    let (_gw, c) = start();
    let long = "q".repeat(81);
    for name in ["has space", "dots.in.name", "ümlaut", long.as_str()] {
        assert_code!(
            "InvalidParameterValue",
            c.create_queue().queue_name(name).send().await
        );
    }
    assert!(c.list_queues().send().await.unwrap().queue_urls.is_none());
}

#[tokio::test]
async fn receipt_handle_from_another_queue_is_receipt_handle_is_invalid() {
    let (_gw, c) = start();
    let a = create_queue(&c, "queue-a", &[]).await;
    let b = create_queue(&c, "queue-b", &[]).await;
    send(&c, &a, "x").await;
    let m = receive(&c, &a, 1, 0).await.remove(0);
    let err = c
        .delete_message()
        .queue_url(&b)
        .receipt_handle(m.receipt_handle.unwrap())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_receipt_handle_is_invalid(), "{err:?}");
    assert_eq!(message_counts(&c, &a).await, (0, 1, 0));
}

#[tokio::test]
async fn garbage_receipt_handle_is_receipt_handle_is_invalid() {
    let (_gw, c) = start();
    let url = create_queue(&c, "handles", &[]).await;
    let err = c
        .delete_message()
        .queue_url(&url)
        .receipt_handle("garbage")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_receipt_handle_is_invalid(), "{err:?}");
    let err = c
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle("garbage")
        .visibility_timeout(5)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_receipt_handle_is_invalid(), "{err:?}");
}

#[tokio::test]
async fn batch_with_repeated_entry_ids_is_batch_entry_ids_not_distinct() {
    let (_gw, c) = start();
    let url = create_queue(&c, "batches", &[]).await;
    let err = c
        .send_message_batch()
        .queue_url(&url)
        .entries(send_entry("same", "a"))
        .entries(send_entry("same", "b"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_batch_entry_ids_not_distinct(), "{err:?}");
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

#[tokio::test]
async fn batch_with_eleven_entries_is_too_many_entries_in_batch_request() {
    let (_gw, c) = start();
    let url = create_queue(&c, "batches", &[]).await;
    let mut req = c.send_message_batch().queue_url(&url);
    for i in 0..11 {
        req = req.entries(send_entry(&format!("e{i}"), "x"));
    }
    let err = req.send().await.unwrap_err().into_service_error();
    assert!(err.is_too_many_entries_in_batch_request(), "{err:?}");
    let mut req = c.delete_message_batch().queue_url(&url);
    for i in 0..11 {
        req = req.entries(
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .receipt_handle("h")
                .build()
                .unwrap(),
        );
    }
    let err = req.send().await.unwrap_err().into_service_error();
    assert!(err.is_too_many_entries_in_batch_request(), "{err:?}");
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

#[tokio::test]
async fn batch_without_entries_is_empty_batch_request() {
    let (_gw, c) = start();
    let url = create_queue(&c, "batches", &[]).await;
    let err = c
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(Vec::new()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_empty_batch_request(), "{err:?}");
    let err = c
        .delete_message_batch()
        .queue_url(&url)
        .set_entries(Some(Vec::new()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_empty_batch_request(), "{err:?}");
    let err = c
        .change_message_visibility_batch()
        .queue_url(&url)
        .set_entries(Some(Vec::new()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_empty_batch_request(), "{err:?}");
}

#[tokio::test]
async fn batch_entry_id_with_invalid_characters_is_invalid_batch_entry_id() {
    let (_gw, c) = start();
    let url = create_queue(&c, "batches", &[]).await;
    let err = c
        .send_message_batch()
        .queue_url(&url)
        .entries(send_entry("not ok!", "a"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_batch_entry_id(), "{err:?}");
    let long = "x".repeat(81);
    let err = c
        .send_message_batch()
        .queue_url(&url)
        .entries(send_entry(&long, "a"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_batch_entry_id(), "81 characters: {err:?}");
}

#[tokio::test]
async fn body_with_nul_or_u_fffe_is_invalid_message_contents() {
    let (_gw, c) = start();
    let url = create_queue(&c, "contents", &[]).await;
    for body in ["nul \u{0}", "nonchar \u{FFFE}", "\u{1}"] {
        let err = c
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_invalid_message_contents(), "{body:?}: {err:?}");
    }
    // The allowed ranges' edges are fine.
    let ok = "tab\t nl\n cr\r \u{D7FF} \u{E000} \u{FFFD} \u{10000} \u{10FFFF}";
    let out = c
        .send_message()
        .queue_url(&url)
        .message_body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(out.md5_of_message_body.unwrap(), md5_hex(ok.as_bytes()));
    let m = receive(&c, &url, 1, 0).await.remove(0);
    assert_eq!(m.body.as_deref(), Some(ok));
}

#[tokio::test]
async fn unknown_attribute_name_is_invalid_attribute_name() {
    let (_gw, c) = start();
    let url = create_queue(&c, "attrs", &[]).await;
    let err = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(Attr::from("NoSuchAttribute"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_attribute_name(), "{err:?}");
    let err = c
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(Attr::from("NoSuchAttribute"), "1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_attribute_name(), "{err:?}");
}

#[tokio::test]
async fn change_visibility_of_a_deleted_message_is_message_not_inflight() {
    let (_gw, c) = start();
    let url = create_queue(&c, "inflight", &[]).await;
    send(&c, &url, "x").await;
    let m = receive(&c, &url, 1, 0).await.remove(0);
    let handle = m.receipt_handle.unwrap();
    c.delete_message()
        .queue_url(&url)
        .receipt_handle(&handle)
        .send()
        .await
        .unwrap();
    let err = c
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handle)
        .visibility_timeout(10)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_message_not_inflight(), "{err:?}");
}

#[tokio::test]
async fn change_visibility_after_the_lease_expired_is_message_not_inflight() {
    let (_gw, c) = start();
    let url = create_queue(&c, "expired", &[("VisibilityTimeout", "1")]).await;
    send(&c, &url, "x").await;
    let m = receive(&c, &url, 1, 0).await.remove(0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let err = c
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle.unwrap())
        .visibility_timeout(10)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_message_not_inflight(), "{err:?}");
    assert_eq!(message_counts(&c, &url).await, (1, 0, 0));
}

// ---------------------------------------------------------------- signatures

fn signed_gateway() -> Gateway {
    let (id, secret) = test_keys();
    Gateway::builder()
        .config(&format!(
            "[[aws.access_keys]]\nid = \"{id}\"\nsecret = \"{secret}\"\n"
        ))
        .start()
}

#[tokio::test]
async fn requests_signed_with_a_configured_key_are_accepted() {
    let gw = signed_gateway();
    let c = sqs_client(gw.http.unwrap());
    let url = create_queue(&c, "signed", &[]).await;
    send(&c, &url, "with signature").await;
    let m = receive(&c, &url, 1, 0).await;
    assert_eq!(m[0].body.as_deref(), Some("with signature"));
}

#[tokio::test]
async fn a_wrong_secret_is_signature_does_not_match_403() {
    let gw = signed_gateway();
    let (id, _) = test_keys();
    let c = sqs_client_signed_with(gw.http.unwrap(), id, "not-the-secret");
    let err = c
        .create_queue()
        .queue_name("forged")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403));
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
    let good = sqs_client(gw.http.unwrap());
    let lookup = good.get_queue_url().queue_name("forged").send().await;
    assert!(lookup.is_err(), "the refused request created the queue");
}

#[tokio::test]
async fn an_unknown_access_key_is_invalid_client_token_id_403() {
    let gw = signed_gateway();
    let (_, secret) = test_keys();
    let c = sqs_client_signed_with(gw.http.unwrap(), "AKIDSTRANGER", secret);
    let err = c
        .create_queue()
        .queue_name("intruder")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403));
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");
}
