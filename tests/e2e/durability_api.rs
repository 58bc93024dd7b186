//! Durability of the SQS and SNS APIs: what a client set up through the AWS
//! SDK is still there after the gateway is killed with SIGKILL and started
//! again on the same data directory.
//!
//! SQS: queue URLs and attributes (visibility, delay, redrive, tags, FIFO
//! settings), messages with their attributes and receive counts, in-flight
//! messages (still invisible, old receipt handles still valid), deletions,
//! FIFO deduplication, and message move tasks (finished ones listed, a
//! running one resumed). SNS: topics with attributes and tags, subscriptions
//! under the same ARNs with their filter policies and delivery settings, FIFO
//! sequence numbers that keep increasing, and HTTP subscriptions that deliver
//! what was waiting for them.
//!
//! Every test waits on conditions (long polls, polling with a deadline); the
//! longest wait is one six-second visibility timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use tether_e2e::Gateway;
use tether_e2e::aws::sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, ListMessageMoveTasksResultEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName as Sys, QueueAttributeName as Attr,
};
use tether_e2e::aws::{
    ACCOUNT, REGION, create_queue, create_topic, drain_bodies, message_counts, queue_arn, receive,
    receive_n, sns, sns_attribute, sns_client, sqs, sqs_client, sqs_string, subscribe_queue,
};

/// How long a "nothing arrives" check waits.
const QUIET: Duration = Duration::from_millis(300);

/// `[sns]` settings that make HTTP retries quick (and many, so an endpoint
/// that keeps failing keeps its message queued).
const CONFIG: &str = r#"
[sns]
http_retries = 1000
http_retry_delay = "50ms"
http_retry_max_delay = "100ms"
http_timeout = "2s"
"#;

/// A gateway on `dir`'s data directory (short SQS retention allowed).
fn start(dir: &tempfile::TempDir) -> Gateway {
    Gateway::builder()
        .data_dir(dir.path().join("data"))
        .env("TETHER_SQS__MINIMUM_RETENTION", "1s")
        .config(CONFIG)
        .start()
}

/// Kills `gw` with SIGKILL and starts a new gateway on the same directory.
fn crash_and_restart(gw: &mut Gateway, dir: &tempfile::TempDir) -> Gateway {
    gw.kill9();
    start(dir)
}

fn clients(gw: &Gateway) -> (sqs::Client, sns::Client) {
    let http = gw.http.expect("http listener");
    (sqs_client(http), sns_client(http))
}

fn body(m: &Message) -> &str {
    m.body.as_deref().unwrap_or_default()
}

fn receive_count(m: &Message) -> &str {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&Sys::ApproximateReceiveCount))
        .map_or("", String::as_str)
}

/// The path of a queue URL (`/account/name`): URLs name the listener, whose
/// port changes with each start.
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or(after_scheme, |i| &after_scheme[i..])
}

/// Every attribute of a queue except the message counts.
async fn settled_attributes(c: &sqs::Client, url: &str) -> BTreeMap<String, String> {
    c.get_queue_attributes()
        .queue_url(url)
        .attribute_names(Attr::All)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .filter(|(k, _)| !k.starts_with("ApproximateNumberOf"))
        .collect()
}

async fn queue_tags(c: &sqs::Client, url: &str) -> HashMap<String, String> {
    c.list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .expect("ListQueueTags")
        .tags
        .unwrap_or_default()
}

async fn queue_url(c: &sqs::Client, name: &str) -> String {
    c.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueUrl {name}: {e:?}"))
        .queue_url
        .unwrap_or_default()
}

// ---------------------------------------------------------------- SQS queues

#[tokio::test]
async fn sqs_queues_keep_their_urls_attributes_and_tags_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (c, _) = clients(&gw);
    let dlq = create_queue(&c, "orders-dlq", &[]).await;
    let orders = create_queue(
        &c,
        "orders",
        &[
            ("VisibilityTimeout", "7"),
            ("DelaySeconds", "2"),
            ("MaximumMessageSize", "2048"),
            ("MessageRetentionPeriod", "3600"),
            ("ReceiveMessageWaitTimeSeconds", "1"),
        ],
    )
    .await;
    // Changed after creation: the live settings and SQS's own metadata.
    let redrive =
        json!({"deadLetterTargetArn": queue_arn("orders-dlq"), "maxReceiveCount": 3}).to_string();
    c.set_queue_attributes()
        .queue_url(&orders)
        .attributes(Attr::VisibilityTimeout, "45")
        .attributes(Attr::RedrivePolicy, &redrive)
        .attributes(Attr::Policy, r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("SetQueueAttributes");
    c.tag_queue()
        .queue_url(&orders)
        .tags("team", "iot")
        .tags("env", "prod")
        .tags("temporary", "yes")
        .send()
        .await
        .expect("TagQueue");
    c.untag_queue()
        .queue_url(&orders)
        .tag_keys("temporary")
        .send()
        .await
        .expect("UntagQueue");
    let fifo = create_queue(
        &c,
        "ledger.fifo",
        &[
            ("FifoQueue", "true"),
            ("ContentBasedDeduplication", "true"),
            ("DeduplicationScope", "messageGroup"),
            ("FifoThroughputLimit", "perMessageGroupId"),
        ],
    )
    .await;
    let doomed = create_queue(&c, "doomed", &[]).await;
    c.delete_queue()
        .queue_url(&doomed)
        .send()
        .await
        .expect("DeleteQueue");
    let before_orders = settled_attributes(&c, &orders).await;
    let before_fifo = settled_attributes(&c, &fifo).await;
    let before_dlq = settled_attributes(&c, &dlq).await;
    assert_eq!(before_orders["VisibilityTimeout"], "45");
    assert_eq!(before_orders["RedrivePolicy"], redrive);

    let mut gw2 = crash_and_restart(&mut gw, &dir);
    let (c, _) = clients(&gw2);
    let listed = c.list_queues().send().await.expect("ListQueues");
    let mut paths: Vec<String> = listed
        .queue_urls
        .unwrap_or_default()
        .iter()
        .map(|u| url_path(u).to_owned())
        .collect();
    paths.sort();
    let path = |name: &str| format!("/{ACCOUNT}/{name}");
    assert_eq!(
        paths,
        vec![path("ledger.fifo"), path("orders"), path("orders-dlq")],
        "the deleted queue stays deleted"
    );
    let orders = queue_url(&c, "orders").await;
    assert_eq!(url_path(&orders), path("orders"));
    let fifo = queue_url(&c, "ledger.fifo").await;
    let dlq = queue_url(&c, "orders-dlq").await;
    let err = c
        .get_queue_url()
        .queue_name("doomed")
        .send()
        .await
        .expect_err("a deleted queue is not restored");
    assert!(
        err.into_service_error().is_queue_does_not_exist(),
        "GetQueueUrl of the deleted queue"
    );
    assert_eq!(settled_attributes(&c, &orders).await, before_orders);
    assert_eq!(settled_attributes(&c, &fifo).await, before_fifo);
    assert_eq!(settled_attributes(&c, &dlq).await, before_dlq);
    assert_eq!(
        queue_tags(&c, &orders).await,
        HashMap::from([
            ("team".to_owned(), "iot".to_owned()),
            ("env".to_owned(), "prod".to_owned())
        ])
    );
    // The restored settings are in force, not only reported.
    let sources = c
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .expect("ListDeadLetterSourceQueues")
        .queue_urls;
    assert_eq!(sources, vec![orders.clone()], "RedrivePolicy in force");
    c.send_message()
        .queue_url(&orders)
        .message_body("later")
        .send()
        .await
        .expect("SendMessage");
    assert_eq!(
        message_counts(&c, &orders).await,
        (0, 0, 1),
        "DelaySeconds in force"
    );
    let too_big = c
        .send_message()
        .queue_url(&orders)
        .message_body("x".repeat(3000))
        .send()
        .await;
    assert!(too_big.is_err(), "MaximumMessageSize in force");
    // And a second crash changes nothing.
    let gw3 = crash_and_restart(&mut gw2, &dir);
    let (c, _) = clients(&gw3);
    let orders = queue_url(&c, "orders").await;
    assert_eq!(settled_attributes(&c, &orders).await, before_orders);
}

// ---------------------------------------------------------------- SQS messages

#[tokio::test]
async fn sqs_messages_come_back_with_their_attributes_and_receive_counts_and_deleted_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (c, _) = clients(&gw);
    let url = create_queue(&c, "inbox", &[("VisibilityTimeout", "60")]).await;
    // Received and deleted: gone for good.
    c.send_message()
        .queue_url(&url)
        .message_body("deleted")
        .send()
        .await
        .expect("SendMessage");
    let got = receive(&c, &url, 1, 0).await;
    assert_eq!(got.len(), 1);
    assert_eq!(body(&got[0]), "deleted");
    c.delete_message()
        .queue_url(&url)
        .receipt_handle(got[0].receipt_handle.clone().unwrap())
        .send()
        .await
        .expect("DeleteMessage");
    // Received once, then returned: receive count 1.
    let counted_id = c
        .send_message()
        .queue_url(&url)
        .message_body("counted")
        .send()
        .await
        .expect("SendMessage")
        .message_id;
    let first = receive(&c, &url, 1, 0).await;
    assert_eq!(first.len(), 1);
    assert_eq!(body(&first[0]), "counted");
    let first_receive_at =
        first[0].attributes.as_ref().unwrap()[&Sys::ApproximateFirstReceiveTimestamp].clone();
    c.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(first[0].receipt_handle.clone().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .expect("ChangeMessageVisibility");
    // Never received, with user and system attributes.
    let binary = MessageAttributeValue::builder()
        .data_type("Binary")
        .binary_value(sqs::primitives::Blob::new(vec![0u8, 1, 2, 255]))
        .build()
        .unwrap();
    let number = MessageAttributeValue::builder()
        .data_type("Number.celsius")
        .string_value("21.5")
        .build()
        .unwrap();
    let sent = c
        .send_message()
        .queue_url(&url)
        .message_body("with attributes")
        .message_attributes("device", sqs_string("pump-7"))
        .message_attributes("reading", number.clone())
        .message_attributes("raw", binary.clone())
        .send()
        .await
        .expect("SendMessage");
    assert_eq!(message_counts(&c, &url).await, (2, 0, 0));

    let gw2 = crash_and_restart(&mut gw, &dir);
    let (c, _) = clients(&gw2);
    let url = url_of(&gw2, "inbox");
    assert_eq!(message_counts(&c, &url).await, (2, 0, 0));
    let got = receive(&c, &url, 10, 0).await;
    let mut by_body: HashMap<&str, &Message> = got.iter().map(|m| (body(m), m)).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    let counted = by_body.remove("counted").expect("counted came back");
    assert_eq!(counted.message_id, counted_id, "MessageId kept");
    assert_eq!(receive_count(counted), "2", "its first receive was counted");
    assert_eq!(
        counted.attributes.as_ref().unwrap()[&Sys::ApproximateFirstReceiveTimestamp],
        first_receive_at
    );
    let m = by_body
        .remove("with attributes")
        .expect("the message with attributes came back");
    assert_eq!(m.message_id, sent.message_id, "MessageId kept");
    assert_eq!(m.md5_of_body, sent.md5_of_message_body);
    assert_eq!(m.md5_of_message_attributes, sent.md5_of_message_attributes);
    assert_eq!(receive_count(m), "1");
    let attrs = m.message_attributes.as_ref().expect("message attributes");
    assert_eq!(attrs["device"], sqs_string("pump-7"));
    assert_eq!(attrs["reading"], number);
    assert_eq!(attrs["raw"], binary);
    assert!(by_body.is_empty(), "the deleted message came back: {got:?}");
}

/// The URL of queue `name` on `gw`.
fn url_of(gw: &Gateway, name: &str) -> String {
    format!(
        "http://{}/{ACCOUNT}/{name}",
        gw.http.expect("http listener")
    )
}

#[tokio::test]
async fn in_flight_message_stays_invisible_until_its_visibility_timeout_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (c, _) = clients(&gw);
    let url = create_queue(&c, "leases", &[]).await;
    c.send_message()
        .queue_url(&url)
        .message_body("work")
        .send()
        .await
        .expect("SendMessage");
    let got = c
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(6)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    let received_at = Instant::now();
    assert_eq!(got.len(), 1);

    let gw2 = crash_and_restart(&mut gw, &dir);
    let (c, _) = clients(&gw2);
    let url = url_of(&gw2, "leases");
    assert!(
        received_at.elapsed() < Duration::from_secs(5),
        "the restart took too long for this test to mean anything"
    );
    assert_eq!(message_counts(&c, &url).await, (0, 1, 0), "still in flight");
    assert!(receive(&c, &url, 1, 0).await.is_empty(), "still invisible");
    let again = receive(&c, &url, 1, 10).await;
    let waited = received_at.elapsed();
    assert_eq!(
        again.len(),
        1,
        "returned once its visibility timeout passed"
    );
    assert!(
        waited >= Duration::from_millis(5900),
        "returned after {waited:?}, before its 6 s visibility timeout"
    );
    assert_eq!(again[0].message_id, got[0].message_id);
    assert_eq!(receive_count(&again[0]), "2");
}

#[tokio::test]
async fn receipt_handles_from_before_a_crash_still_delete_and_change_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (c, _) = clients(&gw);
    let url = create_queue(&c, "handles", &[("VisibilityTimeout", "600")]).await;
    for b in ["delete me", "release me"] {
        c.send_message()
            .queue_url(&url)
            .message_body(b)
            .send()
            .await
            .expect("SendMessage");
    }
    let got = receive(&c, &url, 10, 0).await;
    assert_eq!(got.len(), 2);
    let handle = |b: &str| {
        got.iter()
            .find(|m| body(m) == b)
            .and_then(|m| m.receipt_handle.clone())
            .unwrap_or_else(|| panic!("{b} not received"))
    };
    let (to_delete, to_release) = (handle("delete me"), handle("release me"));

    let gw2 = crash_and_restart(&mut gw, &dir);
    let (c, _) = clients(&gw2);
    let url = url_of(&gw2, "handles");
    assert_eq!(message_counts(&c, &url).await, (0, 2, 0));
    c.delete_message()
        .queue_url(&url)
        .receipt_handle(&to_delete)
        .send()
        .await
        .expect("DeleteMessage with a receipt handle from before the crash");
    c.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&to_release)
        .visibility_timeout(0)
        .send()
        .await
        .expect("ChangeMessageVisibility with a receipt handle from before the crash");
    assert_eq!(message_counts(&c, &url).await, (1, 0, 0));
    let back = receive(&c, &url, 10, 0).await;
    assert_eq!(back.len(), 1);
    assert_eq!(body(&back[0]), "release me");
    assert_eq!(receive_count(&back[0]), "2");
}

#[tokio::test]
async fn fifo_deduplication_recognises_ids_sent_before_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (c, _) = clients(&gw);
    let url = create_queue(
        &c,
        "payments.fifo",
        &[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")],
    )
    .await;
    let explicit = c
        .send_message()
        .queue_url(&url)
        .message_body("pay 10")
        .message_group_id("acct-1")
        .message_deduplication_id("payment-1")
        .send()
        .await
        .expect("SendMessage");
    let by_content = c
        .send_message()
        .queue_url(&url)
        .message_body("pay 20")
        .message_group_id("acct-2")
        .send()
        .await
        .expect("SendMessage");

    let gw2 = crash_and_restart(&mut gw, &dir);
    let (c, _) = clients(&gw2);
    let url = url_of(&gw2, "payments.fifo");
    let again = c
        .send_message()
        .queue_url(&url)
        .message_body("pay 10 (retried)")
        .message_group_id("acct-1")
        .message_deduplication_id("payment-1")
        .send()
        .await
        .expect("SendMessage");
    assert_eq!(
        again.message_id, explicit.message_id,
        "a retry after the crash is acknowledged as the original"
    );
    let again = c
        .send_message()
        .queue_url(&url)
        .message_body("pay 20")
        .message_group_id("acct-2")
        .send()
        .await
        .expect("SendMessage");
    assert_eq!(again.message_id, by_content.message_id, "content dedup");
    let fresh = c
        .send_message()
        .queue_url(&url)
        .message_body("pay 30")
        .message_group_id("acct-1")
        .message_deduplication_id("payment-3")
        .send()
        .await
        .expect("SendMessage");
    let seq = |s: &Option<String>| -> u128 {
        s.as_deref()
            .and_then(|s| s.parse().ok())
            .expect("numeric SequenceNumber")
    };
    assert!(seq(&fresh.sequence_number) > seq(&explicit.sequence_number));
    assert!(seq(&fresh.sequence_number) > seq(&by_content.sequence_number));
    assert_eq!(message_counts(&c, &url).await, (3, 0, 0), "no duplicates");
    let mut bodies = drain_bodies(&c, &url).await;
    bodies.sort();
    assert_eq!(bodies, vec!["pay 10", "pay 20", "pay 30"]);
}

// ---------------------------------------------------------------- move tasks

async fn move_tasks(c: &sqs::Client, source: &str) -> Vec<ListMessageMoveTasksResultEntry> {
    c.list_message_move_tasks()
        .source_arn(source)
        .max_results(10)
        .send()
        .await
        .expect("ListMessageMoveTasks")
        .results
        .unwrap_or_default()
}

/// Polls until the newest task of `source` has `status`.
async fn wait_for_task(
    c: &sqs::Client,
    source: &str,
    status: &str,
) -> ListMessageMoveTasksResultEntry {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = move_tasks(c, source).await;
        if let Some(t) = tasks.first()
            && t.status.as_deref() == Some(status)
        {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no task reached {status}: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `dlq` and `src` (redriving to it after one receive) and puts
/// `bodies` in the dead-letter queue.
async fn dead_letters(c: &sqs::Client, bodies: &[&str]) -> (String, String) {
    let dlq = create_queue(c, "dlq", &[]).await;
    let policy = json!({"deadLetterTargetArn": queue_arn("dlq"), "maxReceiveCount": 1}).to_string();
    let src = create_queue(c, "src", &[("RedrivePolicy", &policy)]).await;
    for b in bodies {
        c.send_message()
            .queue_url(&src)
            .message_body(*b)
            .send()
            .await
            .expect("SendMessage");
    }
    let got = receive(c, &src, 10, 0).await;
    assert_eq!(got.len(), bodies.len());
    let mut release = c.change_message_visibility_batch().queue_url(&src);
    for (i, m) in got.iter().enumerate() {
        release = release.entries(
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .receipt_handle(m.receipt_handle.clone().unwrap())
                .visibility_timeout(0)
                .build()
                .unwrap(),
        );
    }
    release.send().await.expect("ChangeMessageVisibilityBatch");
    assert!(receive(c, &src, 10, 0).await.is_empty(), "dead-lettered");
    assert_eq!(message_counts(c, &dlq).await, (bodies.len() as u64, 0, 0));
    (src, dlq)
}

/// The parts of a listed task that must survive a restart.
fn task_facts(
    t: &ListMessageMoveTasksResultEntry,
) -> (
    Option<String>,
    i64,
    Option<i64>,
    i64,
    Option<i32>,
    Option<String>,
) {
    (
        t.status.clone(),
        t.approximate_number_of_messages_moved,
        t.approximate_number_of_messages_to_move,
        t.started_timestamp,
        t.max_number_of_messages_per_second,
        t.destination_arn.clone(),
    )
}

#[tokio::test]
async fn finished_message_move_tasks_are_still_listed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (c, _) = clients(&gw);
    let (_src, _dlq) = dead_letters(&c, &["a", "b", "c"]).await;
    let source = queue_arn("dlq");
    let handle = c
        .start_message_move_task()
        .source_arn(&source)
        .max_number_of_messages_per_second(1)
        .send()
        .await
        .expect("StartMessageMoveTask")
        .task_handle
        .unwrap();
    c.cancel_message_move_task()
        .task_handle(&handle)
        .send()
        .await
        .expect("CancelMessageMoveTask");
    wait_for_task(&c, &source, "CANCELLED").await;
    c.start_message_move_task()
        .source_arn(&source)
        .send()
        .await
        .expect("StartMessageMoveTask");
    wait_for_task(&c, &source, "COMPLETED").await;
    let before = move_tasks(&c, &source).await;
    assert_eq!(before.len(), 2);

    let gw2 = crash_and_restart(&mut gw, &dir);
    let (c, _) = clients(&gw2);
    let after = move_tasks(&c, &source).await;
    assert_eq!(
        after.iter().map(task_facts).collect::<Vec<_>>(),
        before.iter().map(task_facts).collect::<Vec<_>>(),
        "{after:?}"
    );
    assert_eq!(after[0].status.as_deref(), Some("COMPLETED"));
    assert_eq!(after[1].status.as_deref(), Some("CANCELLED"));
    assert!(
        after.iter().all(|t| t.task_handle.is_none()),
        "finished tasks have no handle"
    );
    assert_eq!(
        after[0].approximate_number_of_messages_moved
            + after[1].approximate_number_of_messages_moved,
        3
    );
    // No task is left running: a new one may start.
    c.start_message_move_task()
        .source_arn(&source)
        .send()
        .await
        .expect("StartMessageMoveTask after the restart");
}

/// A running task resumes after a crash (see `Sqs::restore_move_tasks` for
/// why resuming rather than failing it).
#[tokio::test]
async fn running_message_move_task_resumes_after_a_crash_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (c, _) = clients(&gw);
    let bodies = ["m0", "m1", "m2", "m3"];
    dead_letters(&c, &bodies).await;
    let source = queue_arn("dlq");
    let handle = c
        .start_message_move_task()
        .source_arn(&source)
        .max_number_of_messages_per_second(1)
        .send()
        .await
        .expect("StartMessageMoveTask")
        .task_handle
        .unwrap();
    let running = move_tasks(&c, &source).await;
    assert_eq!(running[0].status.as_deref(), Some("RUNNING"));

    let gw2 = crash_and_restart(&mut gw, &dir);
    let (c, _) = clients(&gw2);
    let after = move_tasks(&c, &source).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].status.as_deref(),
        Some("RUNNING"),
        "a 1/s task moving 4 messages is still at work: {after:?}"
    );
    assert_eq!(after[0].task_handle.as_deref(), Some(handle.as_str()));
    assert_eq!(after[0].started_timestamp, running[0].started_timestamp);
    assert_eq!(after[0].max_number_of_messages_per_second, Some(1));
    let done = wait_for_task(&c, &source, "COMPLETED").await;
    assert_eq!(done.approximate_number_of_messages_to_move, Some(4));
    assert_eq!(message_counts(&c, &url_of(&gw2, "dlq")).await, (0, 0, 0));
    // At least once: a message caught mid-move by the crash may be moved twice.
    let mut moved = drain_bodies(&c, &url_of(&gw2, "src")).await;
    assert!(moved.len() <= bodies.len() + 1, "{moved:?}");
    moved.sort();
    moved.dedup();
    assert_eq!(moved, bodies);
}

// ---------------------------------------------------------------- SNS

fn topic_arn(name: &str) -> String {
    format!("arn:aws:sns:{REGION}:{ACCOUNT}:{name}")
}

async fn topic_attributes(t: &sns::Client, arn: &str) -> HashMap<String, String> {
    t.get_topic_attributes()
        .topic_arn(arn)
        .send()
        .await
        .expect("GetTopicAttributes")
        .attributes
        .unwrap_or_default()
}

async fn subscription_attributes(t: &sns::Client, arn: &str) -> HashMap<String, String> {
    t.get_subscription_attributes()
        .subscription_arn(arn)
        .send()
        .await
        .expect("GetSubscriptionAttributes")
        .attributes
        .unwrap_or_default()
}

async fn topic_tags(t: &sns::Client, arn: &str) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = t
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("ListTagsForResource")
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    tags.sort();
    tags
}

async fn topic_arns(t: &sns::Client) -> Vec<String> {
    let mut arns: Vec<String> = t
        .list_topics()
        .send()
        .await
        .expect("ListTopics")
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.topic_arn)
        .collect();
    arns.sort();
    arns
}

/// (ARN, protocol, endpoint, topic) of every subscription, sorted.
async fn subscriptions(t: &sns::Client) -> Vec<(String, String, String, String)> {
    let mut subs: Vec<_> = t
        .list_subscriptions()
        .send()
        .await
        .expect("ListSubscriptions")
        .subscriptions
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            (
                s.subscription_arn.unwrap_or_default(),
                s.protocol.unwrap_or_default(),
                s.endpoint.unwrap_or_default(),
                s.topic_arn.unwrap_or_default(),
            )
        })
        .collect();
    subs.sort();
    subs
}

fn tag(key: &str, value: &str) -> sns::types::Tag {
    sns::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("tag")
}

async fn publish(t: &sns::Client, topic: &str, message: &str, severity: &str) {
    t.publish()
        .topic_arn(topic)
        .message(message)
        .message_attributes("severity", sns_attribute("String", severity))
        .send()
        .await
        .expect("Publish");
}

#[tokio::test]
async fn sns_topics_and_subscriptions_survive_a_crash_and_keep_filtering() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (q, t) = clients(&gw);
    let alerts = t
        .create_topic()
        .name("alerts")
        .attributes("DisplayName", "Plant alerts")
        .tags(tag("team", "iot"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .unwrap();
    t.set_topic_attributes()
        .topic_arn(&alerts)
        .attribute_name("DeliveryPolicy")
        .attribute_value(r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":5}}}"#)
        .send()
        .await
        .expect("SetTopicAttributes");
    t.tag_resource()
        .resource_arn(&alerts)
        .tags(tag("env", "prod"))
        .tags(tag("temporary", "yes"))
        .send()
        .await
        .expect("TagResource");
    t.untag_resource()
        .resource_arn(&alerts)
        .tag_keys("temporary")
        .send()
        .await
        .expect("UntagResource");
    let gone_topic = create_topic(&t, "retired").await;
    t.delete_topic()
        .topic_arn(&gone_topic)
        .send()
        .await
        .expect("DeleteTopic");

    create_queue(&q, "critical", &[]).await;
    create_queue(&q, "alarms", &[]).await;
    create_queue(&q, "unsubscribed", &[]).await;
    // Raw delivery, filtered on a message attribute.
    let critical = subscribe_queue(
        &t,
        &alerts,
        "critical",
        &[
            ("RawMessageDelivery", "true"),
            ("FilterPolicy", r#"{"severity":["critical"]}"#),
        ],
    )
    .await;
    // Enveloped, filtered on the body; settings changed after subscribing.
    let alarms = subscribe_queue(&t, &alerts, "alarms", &[]).await;
    for (name, value) in [
        ("FilterPolicyScope", "MessageBody"),
        ("FilterPolicy", r#"{"kind":["alarm"]}"#),
        (
            "RedrivePolicy",
            &json!({"deadLetterTargetArn": queue_arn("unsubscribed")}).to_string(),
        ),
    ] {
        t.set_subscription_attributes()
            .subscription_arn(&alarms)
            .attribute_name(name)
            .attribute_value(value)
            .send()
            .await
            .expect("SetSubscriptionAttributes");
    }
    let dropped = subscribe_queue(&t, &alerts, "unsubscribed", &[]).await;
    t.unsubscribe()
        .subscription_arn(&dropped)
        .send()
        .await
        .expect("Unsubscribe");

    assert_eq!(alerts, topic_arn("alerts"));
    let topics_before = topic_arns(&t).await;
    assert_eq!(topics_before, vec![alerts.clone()]);
    let attributes_before = topic_attributes(&t, &alerts).await;
    let tags_before = topic_tags(&t, &alerts).await;
    assert_eq!(
        tags_before,
        vec![
            ("env".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "iot".to_owned())
        ]
    );
    let subs_before = subscriptions(&t).await;
    assert_eq!(subs_before.len(), 2);
    let critical_before = subscription_attributes(&t, &critical).await;
    let alarms_before = subscription_attributes(&t, &alarms).await;

    let gw2 = crash_and_restart(&mut gw, &dir);
    let (q, t) = clients(&gw2);
    assert_eq!(
        topic_arns(&t).await,
        topics_before,
        "the deleted topic stays deleted"
    );
    assert_eq!(topic_attributes(&t, &alerts).await, attributes_before);
    assert_eq!(topic_tags(&t, &alerts).await, tags_before);
    assert_eq!(
        subscriptions(&t).await,
        subs_before,
        "same subscriptions, same ARNs"
    );
    assert_eq!(
        subscription_attributes(&t, &critical).await,
        critical_before
    );
    assert_eq!(subscription_attributes(&t, &alarms).await, alarms_before);
    let err = t
        .get_subscription_attributes()
        .subscription_arn(&dropped)
        .send()
        .await
        .expect_err("an unsubscribed subscription stays gone");
    assert!(err.into_service_error().is_not_found_exception());

    // Publishing after the restart reaches the subscribed queues, filtered.
    publish(&t, &alerts, r#"{"kind":"alarm","line":1}"#, "critical").await;
    publish(&t, &alerts, r#"{"kind":"info","line":2}"#, "low").await;
    publish(&t, &alerts, r#"{"kind":"alarm","line":3}"#, "low").await;
    let critical_url = url_of(&gw2, "critical");
    let got = receive_n(&q, &critical_url, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        body(&got[0]),
        r#"{"kind":"alarm","line":1}"#,
        "raw delivery"
    );
    let attrs = got[0]
        .message_attributes
        .as_ref()
        .expect("raw keeps attributes");
    assert_eq!(attrs["severity"].string_value.as_deref(), Some("critical"));
    let alarms_url = url_of(&gw2, "alarms");
    let got = receive_n(&q, &alarms_url, 2, Duration::from_secs(5)).await;
    let lines: Vec<Value> = got
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(body(m)).expect("an SNS envelope");
            assert_eq!(envelope["Type"], "Notification");
            assert_eq!(envelope["TopicArn"], alerts);
            let inner: Value =
                serde_json::from_str(envelope["Message"].as_str().unwrap()).expect("JSON");
            inner["line"].clone()
        })
        .collect();
    assert_eq!(lines, vec![json!(1), json!(3)], "body filter");
    tokio::time::sleep(QUIET).await;
    assert!(drain_bodies(&q, &critical_url).await.is_empty());
    assert!(drain_bodies(&q, &alarms_url).await.is_empty());
    assert!(
        drain_bodies(&q, &url_of(&gw2, "unsubscribed"))
            .await
            .is_empty(),
        "the unsubscribed queue receives nothing"
    );
}

#[tokio::test]
async fn fifo_topic_sequence_numbers_keep_increasing_across_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (q, t) = clients(&gw);
    create_queue(
        &q,
        "ledger.fifo",
        &[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")],
    )
    .await;
    let arn = t
        .create_topic()
        .name("ledger.fifo")
        .attributes("FifoTopic", "true")
        .attributes("ContentBasedDeduplication", "true")
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .unwrap();
    subscribe_queue(&t, &arn, "ledger.fifo", &[("RawMessageDelivery", "true")]).await;
    let publish_fifo = |t: sns::Client, body: String| {
        let arn = arn.clone();
        async move {
            let seq = t
                .publish()
                .topic_arn(arn)
                .message(body)
                .message_group_id("g")
                .send()
                .await
                .expect("Publish")
                .sequence_number
                .expect("SequenceNumber");
            seq.parse::<u128>().expect("numeric SequenceNumber")
        }
    };
    let mut seqs = vec![
        publish_fifo(t.clone(), "e1".into()).await,
        publish_fifo(t.clone(), "e2".into()).await,
    ];
    let mut gw = crash_and_restart(&mut gw, &dir);
    let (_, t) = clients(&gw);
    let attrs = topic_attributes(&t, &arn).await;
    assert_eq!(attrs["FifoTopic"], "true");
    assert_eq!(attrs["ContentBasedDeduplication"], "true");
    seqs.push(publish_fifo(t.clone(), "e3".into()).await);
    let gw2 = crash_and_restart(&mut gw, &dir);
    let (q, t) = clients(&gw2);
    seqs.push(publish_fifo(t.clone(), "e4".into()).await);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let got = receive_n(&q, &url_of(&gw2, "ledger.fifo"), 4, Duration::from_secs(5)).await;
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        vec!["e1", "e2", "e3", "e4"],
        "every message, in order, once"
    );
}

// ---------------------------------------------------------------- SNS over HTTP

/// A webhook answering every request with the current status and reporting
/// each body.
struct Webhook {
    url: String,
    status: Arc<AtomicU16>,
    bodies: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    async fn start(status: u16) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let status = Arc::new(AtomicU16::new(status));
        let (tx, bodies) = mpsc::unbounded_channel();
        let answer = status.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (tx, answer) = (tx.clone(), answer.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, tx, answer).await;
                });
            }
        });
        Webhook {
            url,
            status,
            bodies,
            task,
        }
    }

    /// The body of the next request within `wait`, whatever it was answered.
    async fn next(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.bodies.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests (Content-Length bodies) and answers each with `status`.
async fn serve(
    sock: TcpStream,
    tx: mpsc::UnboundedSender<String>,
    status: Arc<AtomicU16>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).await?;
        let code = status.load(Ordering::SeqCst);
        let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        let reply = format!("HTTP/1.1 {code} Scripted\r\ncontent-length: 0\r\n\r\n");
        r.get_mut().write_all(reply.as_bytes()).await?;
    }
}

#[tokio::test]
async fn http_subscription_delivers_what_was_waiting_and_what_comes_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start(&dir);
    let (_, t) = clients(&gw);
    // The endpoint fails until after the restart.
    let mut hook = Webhook::start(503).await;
    let arn = create_topic(&t, "webhooks").await;
    let sub = t
        .subscribe()
        .topic_arn(&arn)
        .protocol("http")
        .endpoint(&hook.url)
        .attributes("RawMessageDelivery", "true")
        .return_subscription_arn(true)
        .send()
        .await
        .expect("Subscribe")
        .subscription_arn
        .unwrap();
    t.publish()
        .topic_arn(&arn)
        .message("waiting")
        .send()
        .await
        .expect("Publish");
    assert_eq!(
        hook.next(Duration::from_secs(5)).await.as_deref(),
        Some("waiting"),
        "attempted before the crash"
    );

    // The endpoint recovers while the gateway is down.
    gw.kill9();
    hook.status.store(200, Ordering::SeqCst);
    while hook.next(QUIET).await.is_some() {}
    let gw2 = start(&dir);
    let (_, t) = clients(&gw2);
    assert_eq!(
        hook.next(Duration::from_secs(5)).await.as_deref(),
        Some("waiting"),
        "the undelivered message was kept and is delivered after the restart"
    );
    let attrs = subscription_attributes(&t, &sub).await;
    assert_eq!(attrs["Protocol"], "http");
    assert_eq!(attrs["Endpoint"], hook.url);
    assert_eq!(attrs["RawMessageDelivery"], "true");
    t.publish()
        .topic_arn(&arn)
        .message("after")
        .send()
        .await
        .expect("Publish");
    assert_eq!(
        hook.next(Duration::from_secs(5)).await.as_deref(),
        Some("after")
    );
    assert!(hook.next(QUIET).await.is_none(), "each delivered once");
}
