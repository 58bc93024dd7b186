//! SQS queue semantics that depend on time and order, through the AWS SDK:
//! visibility timeouts and receipt handles, delays, retention, long polling,
//! dead-letter redrive and message move tasks, FIFO groups, deduplication and
//! sequence numbers.
//!
//! Time-dependent tests use one-second settings (the gateway is started with a
//! one-second minimum retention and deduplication window), so none waits more
//! than a few seconds.

use std::time::{Duration, Instant};

use tether_e2e::Gateway;
use tether_e2e::aws::sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, ListMessageMoveTasksResultEntry, Message,
    MessageSystemAttributeName as Sys, QueueAttributeName as Attr,
};
use tether_e2e::aws::{create_queue, message_counts, queue_attribute, receive, sqs, sqs_client};

const ACCOUNT: &str = "000000000000";

fn arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

/// A gateway whose retention and deduplication windows may be one second.
fn start() -> (Gateway, sqs::Client) {
    let gw = Gateway::builder()
        .env("TETHER_SQS__MINIMUM_RETENTION", "1s")
        .env("TETHER_SQS__DEDUP_WINDOW", "1s")
        .start();
    let c = sqs_client(gw.http.expect("http listener"));
    (gw, c)
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

async fn send_fifo(c: &sqs::Client, url: &str, group: &str, body: &str) -> String {
    c.send_message()
        .queue_url(url)
        .message_body(body)
        .message_group_id(group)
        .send()
        .await
        .expect("SendMessage")
        .sequence_number
        .expect("SequenceNumber")
}

async fn set_visibility(c: &sqs::Client, url: &str, m: &Message, secs: i32) {
    c.change_message_visibility()
        .queue_url(url)
        .receipt_handle(m.receipt_handle.clone().unwrap())
        .visibility_timeout(secs)
        .send()
        .await
        .expect("ChangeMessageVisibility");
}

async fn delete(c: &sqs::Client, url: &str, m: &Message) {
    c.delete_message()
        .queue_url(url)
        .receipt_handle(m.receipt_handle.clone().unwrap())
        .send()
        .await
        .expect("DeleteMessage");
}

fn body(m: &Message) -> &str {
    m.body.as_deref().unwrap_or_default()
}

fn bodies(ms: &[Message]) -> Vec<&str> {
    ms.iter().map(body).collect()
}

fn receive_count(m: &Message) -> &str {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&Sys::ApproximateReceiveCount))
        .map_or("", String::as_str)
}

// ---------------------------------------------------------------- visibility

#[tokio::test]
async fn received_message_is_invisible_until_its_visibility_timeout_passes() {
    let (_gw, c) = start();
    let url = create_queue(&c, "leases", &[("VisibilityTimeout", "1")]).await;
    let id = send(&c, &url, "work").await;
    let first = receive(&c, &url, 1, 0).await;
    let received_at = Instant::now();
    assert_eq!(first.len(), 1);
    assert_eq!(receive_count(&first[0]), "1");
    assert!(receive(&c, &url, 1, 0).await.is_empty(), "in flight");
    assert_eq!(message_counts(&c, &url).await, (0, 1, 0));

    let again = receive(&c, &url, 1, 3).await;
    let waited = received_at.elapsed();
    assert_eq!(again.len(), 1, "returned after the visibility timeout");
    assert!(
        waited >= Duration::from_millis(900),
        "returned after {waited:?}, before its 1 s visibility timeout"
    );
    assert!(waited < Duration::from_millis(2500), "took {waited:?}");
    assert_eq!(again[0].message_id.as_deref(), Some(id.as_str()));
    assert_eq!(receive_count(&again[0]), "2");
}

#[tokio::test]
async fn receive_visibility_timeout_parameter_overrides_the_queue_attribute() {
    let (_gw, c) = start();
    let url = create_queue(&c, "override", &[("VisibilityTimeout", "600")]).await;
    send(&c, &url, "work").await;
    let got = c
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap();
    assert_eq!(got.len(), 1);
    let again = receive(&c, &url, 1, 3).await;
    assert_eq!(bodies(&again), vec!["work"]);
}

#[tokio::test]
async fn each_receive_gives_a_fresh_receipt_handle_and_an_outdated_one_deletes_nothing() {
    let (_gw, c) = start();
    let url = create_queue(&c, "handles", &[("VisibilityTimeout", "1")]).await;
    send(&c, &url, "twice").await;
    let first = receive(&c, &url, 1, 0).await.remove(0);
    let second = receive(&c, &url, 1, 3).await.remove(0);
    assert_eq!(first.message_id, second.message_id);
    assert_ne!(
        first.receipt_handle, second.receipt_handle,
        "a new receive must give a new receipt handle"
    );
    // SQS: deleting with an outdated handle succeeds but deletes nothing.
    delete(&c, &url, &first).await;
    assert_eq!(
        message_counts(&c, &url).await,
        (0, 1, 0),
        "the outdated handle deleted the message"
    );
    delete(&c, &url, &second).await;
    assert_eq!(message_counts(&c, &url).await, (0, 0, 0));
}

#[tokio::test]
async fn change_message_visibility_to_zero_makes_the_message_visible_at_once() {
    let (_gw, c) = start();
    let url = create_queue(&c, "release", &[]).await;
    send(&c, &url, "again").await;
    let m = receive(&c, &url, 1, 0).await.remove(0);
    assert!(receive(&c, &url, 1, 0).await.is_empty());
    set_visibility(&c, &url, &m, 0).await;
    let again = receive(&c, &url, 1, 0).await;
    assert_eq!(bodies(&again), vec!["again"]);
    assert_eq!(receive_count(&again[0]), "2");
}

#[tokio::test]
async fn extending_the_visibility_timeout_keeps_the_message_invisible() {
    let (_gw, c) = start();
    let url = create_queue(&c, "extend", &[("VisibilityTimeout", "1")]).await;
    send(&c, &url, "slow job").await;
    let m = receive(&c, &url, 1, 0).await.remove(0);
    set_visibility(&c, &url, &m, 4).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receive(&c, &url, 1, 0).await.is_empty(),
        "visible again after the original 1 s timeout despite the extension"
    );
    assert_eq!(message_counts(&c, &url).await, (0, 1, 0));
    // The handle is still current: it can be released or deleted.
    set_visibility(&c, &url, &m, 0).await;
    assert_eq!(bodies(&receive(&c, &url, 1, 0).await), vec!["slow job"]);
}

// ---------------------------------------------------------------- delay, retention

#[tokio::test]
async fn queue_delay_seconds_holds_new_messages_back_and_counts_them_as_delayed() {
    let (_gw, c) = start();
    let url = create_queue(&c, "delayed", &[("DelaySeconds", "1")]).await;
    let sent_at = Instant::now();
    send(&c, &url, "later").await;
    assert_eq!(message_counts(&c, &url).await, (0, 0, 1));
    assert!(receive(&c, &url, 1, 0).await.is_empty(), "delayed");
    let got = receive(&c, &url, 1, 3).await;
    let waited = sent_at.elapsed();
    assert_eq!(bodies(&got), vec!["later"]);
    assert!(
        waited >= Duration::from_millis(900),
        "visible after {waited:?}"
    );
    assert!(waited < Duration::from_millis(2500), "took {waited:?}");
}

#[tokio::test]
async fn per_message_delay_seconds_delays_only_that_message() {
    let (_gw, c) = start();
    let url = create_queue(&c, "mixed-delay", &[]).await;
    c.send_message()
        .queue_url(&url)
        .message_body("delayed")
        .delay_seconds(1)
        .send()
        .await
        .unwrap();
    send(&c, &url, "now").await;
    assert_eq!(message_counts(&c, &url).await, (1, 0, 1));
    assert_eq!(bodies(&receive(&c, &url, 10, 0).await), vec!["now"]);
    let later = receive(&c, &url, 10, 3).await;
    assert_eq!(bodies(&later), vec!["delayed"]);
}

#[tokio::test]
async fn per_message_delay_seconds_zero_overrides_the_queue_delay() {
    let (_gw, c) = start();
    let url = create_queue(&c, "queue-delay", &[("DelaySeconds", "5")]).await;
    c.send_message()
        .queue_url(&url)
        .message_body("urgent")
        .delay_seconds(0)
        .send()
        .await
        .unwrap();
    assert_eq!(bodies(&receive(&c, &url, 1, 0).await), vec!["urgent"]);
}

#[tokio::test]
async fn message_retention_period_deletes_older_messages() {
    let (_gw, c) = start();
    let url = create_queue(&c, "short-lived", &[("MessageRetentionPeriod", "1")]).await;
    assert_eq!(
        queue_attribute(&c, &url, "MessageRetentionPeriod")
            .await
            .as_deref(),
        Some("1")
    );
    send(&c, &url, "stale").await;
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert!(
        receive(&c, &url, 10, 0).await.is_empty(),
        "received past its retention period"
    );
    // SQS deletes such messages; the counts reflect that.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let counts = message_counts(&c, &url).await;
        if counts == (0, 0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "still counted: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn message_retention_period_is_counted_without_any_receive() {
    let (_gw, c) = start();
    let url = create_queue(&c, "expiring", &[("MessageRetentionPeriod", "1")]).await;
    send(&c, &url, "stale").await;
    assert_eq!(message_counts(&c, &url).await, (1, 0, 0));
    // No receive touches the queue: the message must still go after 1 s.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let counts = message_counts(&c, &url).await;
        if counts == (0, 0, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ApproximateNumberOfMessages still counts a message past its retention period: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- long polling

#[tokio::test]
async fn long_poll_returns_as_soon_as_a_message_is_sent() {
    let (_gw, c) = start();
    let url = create_queue(&c, "long-poll", &[]).await;
    let poll = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let got = receive(&c, &url, 1, 5).await;
            (got, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the long poll returned before a message came"
    );
    let sent_at = Instant::now();
    send(&c, &url, "wake up").await;
    let (got, returned_at) = poll.await.unwrap();
    assert_eq!(bodies(&got), vec!["wake up"]);
    let lag = returned_at.duration_since(sent_at);
    assert!(
        lag < Duration::from_secs(1),
        "returned {lag:?} after the send"
    );
}

#[tokio::test]
async fn long_poll_returns_empty_after_the_wait() {
    let (_gw, c) = start();
    let url = create_queue(&c, "quiet", &[]).await;
    let started = Instant::now();
    let got = receive(&c, &url, 1, 1).await;
    let waited = started.elapsed();
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(900),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "returned after {waited:?}");
}

#[tokio::test]
async fn receive_message_wait_time_seconds_attribute_is_the_default_wait() {
    let (_gw, c) = start();
    let url = create_queue(
        &c,
        "default-wait",
        &[("ReceiveMessageWaitTimeSeconds", "3")],
    )
    .await;
    let poll = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            // No WaitTimeSeconds: the queue's attribute applies.
            c.receive_message()
                .queue_url(&url)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "returned at once: a short poll");
    send(&c, &url, "arrived").await;
    assert_eq!(bodies(&poll.await.unwrap()), vec!["arrived"]);

    // An explicit WaitTimeSeconds=0 is a short poll.
    let started = Instant::now();
    let got = c
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(0)
        .send()
        .await
        .unwrap();
    assert!(got.messages.unwrap_or_default().is_empty());
    assert!(started.elapsed() < Duration::from_millis(500));
}

// ---------------------------------------------------------------- redrive

/// A queue `src` redriving to `dlq` after two receives, and one message
/// ("poison") moved there by a third receive. Returns (src, dlq, message id).
async fn dead_letter_one(c: &sqs::Client) -> (String, String, String) {
    let dlq = create_queue(c, "dlq", &[]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"2"}}"#,
        arn("dlq")
    );
    let src = create_queue(c, "src", &[("RedrivePolicy", &policy)]).await;
    let id = send(c, &src, "poison").await;
    for n in 1..=2 {
        let got = receive(c, &src, 1, 0).await;
        assert_eq!(got.len(), 1, "receive {n}");
        assert_eq!(receive_count(&got[0]), n.to_string());
        set_visibility(c, &src, &got[0], 0).await;
    }
    let third = receive(c, &src, 1, 0).await;
    assert!(
        third.is_empty(),
        "the third receive must move the message to the dead-letter queue, not deliver it"
    );
    (src, dlq, id)
}

#[tokio::test]
async fn third_receive_with_max_receive_count_2_moves_the_message_to_the_dead_letter_queue() {
    let (_gw, c) = start();
    let (src, dlq, id) = dead_letter_one(&c).await;
    assert_eq!(message_counts(&c, &src).await, (0, 0, 0));
    let sources = c
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .unwrap()
        .queue_urls;
    assert_eq!(sources, vec![src]);
    let got = receive(&c, &dlq, 1, 1).await;
    assert_eq!(got.len(), 1, "nothing in the dead-letter queue");
    let m = &got[0];
    assert_eq!(m.message_id.as_deref(), Some(id.as_str()), "MessageId kept");
    assert_eq!(body(m), "poison");
    let a = m.attributes.as_ref().unwrap();
    assert_eq!(
        a.get(&Sys::DeadLetterQueueSourceArn).map(String::as_str),
        Some(arn("src").as_str())
    );
}

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

/// Polls ListMessageMoveTasks until the newest task has `status`.
async fn wait_for_task(
    c: &sqs::Client,
    source: &str,
    status: &str,
) -> ListMessageMoveTasksResultEntry {
    let deadline = Instant::now() + Duration::from_secs(5);
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

#[tokio::test]
async fn move_task_without_destination_returns_dead_letters_to_their_source_queue() {
    let (_gw, c) = start();
    let (src, dlq, _) = dead_letter_one(&c).await;
    let handle = c
        .start_message_move_task()
        .source_arn(arn("dlq"))
        .send()
        .await
        .unwrap()
        .task_handle;
    assert!(handle.is_some_and(|h| !h.is_empty()));
    let task = wait_for_task(&c, &arn("dlq"), "COMPLETED").await;
    assert_eq!(task.approximate_number_of_messages_moved, 1);
    assert_eq!(task.approximate_number_of_messages_to_move, Some(1));
    assert_eq!(task.source_arn.as_deref(), Some(arn("dlq").as_str()));
    assert_eq!(task.destination_arn, None);
    assert!(task.started_timestamp > 0);
    assert_eq!(message_counts(&c, &dlq).await, (0, 0, 0));
    let back = receive(&c, &src, 1, 1).await;
    assert_eq!(bodies(&back), vec!["poison"]);
    let a = back[0].attributes.as_ref().unwrap();
    assert!(
        !a.contains_key(&Sys::DeadLetterQueueSourceArn),
        "back in its source queue it is no dead letter: {a:?}"
    );
}

#[tokio::test]
async fn cancel_message_move_task_stops_a_rate_limited_task() {
    let (_gw, c) = start();
    let dlq = create_queue(&c, "dlq", &[]).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":1}}"#,
        arn("dlq")
    );
    let src = create_queue(&c, "src", &[("RedrivePolicy", &policy)]).await;
    for i in 0..4 {
        send(&c, &src, &format!("m{i}")).await;
    }
    let got = receive(&c, &src, 10, 0).await;
    assert_eq!(got.len(), 4);
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
    assert_eq!(release.send().await.unwrap().successful.len(), 4);
    assert!(
        receive(&c, &src, 10, 0).await.is_empty(),
        "all dead-lettered"
    );
    assert_eq!(message_counts(&c, &dlq).await, (4, 0, 0));

    let handle = c
        .start_message_move_task()
        .source_arn(arn("dlq"))
        .max_number_of_messages_per_second(1)
        .send()
        .await
        .unwrap()
        .task_handle
        .unwrap();
    let running = move_tasks(&c, &arn("dlq")).await;
    assert_eq!(running[0].status.as_deref(), Some("RUNNING"), "{running:?}");
    assert_eq!(running[0].task_handle.as_deref(), Some(handle.as_str()));
    assert_eq!(running[0].max_number_of_messages_per_second, Some(1));
    // A second task on the same source is refused while one runs.
    let second = c
        .start_message_move_task()
        .source_arn(arn("dlq"))
        .send()
        .await;
    assert!(second.is_err(), "two tasks on one source");

    let cancelled = c
        .cancel_message_move_task()
        .task_handle(&handle)
        .send()
        .await
        .unwrap();
    assert!(cancelled.approximate_number_of_messages_moved < 4);
    let task = wait_for_task(&c, &arn("dlq"), "CANCELLED").await;
    assert!(
        task.approximate_number_of_messages_moved < 4,
        "a cancelled 1/s task moved everything: {task:?}"
    );
    let (left, _, _) = message_counts(&c, &dlq).await;
    let (moved, _, _) = message_counts(&c, &src).await;
    assert_eq!(left + moved, 4);
    assert_eq!(moved as i64, task.approximate_number_of_messages_moved);
    // Nothing moves after the cancel.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(message_counts(&c, &dlq).await.0, left);
}

// ---------------------------------------------------------------- FIFO

async fn fifo_queue(c: &sqs::Client, name: &str, extra: &[(&str, &str)]) -> String {
    let mut attrs = vec![("FifoQueue", "true"), ("ContentBasedDeduplication", "true")];
    attrs.extend_from_slice(extra);
    create_queue(c, name, &attrs).await
}

#[tokio::test]
async fn fifo_delivers_each_group_in_strict_order() {
    let (_gw, c) = start();
    let url = fifo_queue(&c, "order.fifo", &[]).await;
    for i in 0..5 {
        send_fifo(&c, &url, "a", &format!("a{i}")).await;
        if i < 3 {
            send_fifo(&c, &url, "b", &format!("b{i}")).await;
        }
    }
    let got = receive(&c, &url, 10, 0).await;
    let of = |g: char| -> Vec<&str> {
        bodies(&got)
            .into_iter()
            .filter(|b| b.starts_with(g))
            .collect()
    };
    assert_eq!(of('a'), vec!["a0", "a1", "a2", "a3", "a4"]);
    assert_eq!(of('b'), vec!["b0", "b1", "b2"]);
    // One at a time, deleting each: the same order.
    for m in &got {
        delete(&c, &url, m).await;
    }
    for i in 0..4 {
        send_fifo(&c, &url, "c", &format!("c{i}")).await;
    }
    for i in 0..4 {
        let m = receive(&c, &url, 1, 0).await.remove(0);
        assert_eq!(body(&m), format!("c{i}"));
        delete(&c, &url, &m).await;
    }
}

#[tokio::test]
async fn fifo_group_is_locked_while_one_of_its_messages_is_in_flight() {
    let (_gw, c) = start();
    let url = fifo_queue(&c, "locks.fifo", &[]).await;
    send_fifo(&c, &url, "A", "a1").await;
    send_fifo(&c, &url, "A", "a2").await;
    send_fifo(&c, &url, "B", "b1").await;
    let a1 = receive(&c, &url, 1, 0).await.remove(0);
    assert_eq!(body(&a1), "a1");
    // Group A is locked by a1; group B still flows.
    let next = receive(&c, &url, 10, 0).await;
    assert_eq!(bodies(&next), vec!["b1"]);
    assert!(
        receive(&c, &url, 10, 0).await.is_empty(),
        "a2 while a1 is in flight"
    );
    delete(&c, &url, &a1).await;
    assert_eq!(bodies(&receive(&c, &url, 10, 0).await), vec!["a2"]);
}

#[tokio::test]
async fn fifo_message_returned_to_the_queue_comes_before_the_rest_of_its_group() {
    let (_gw, c) = start();
    let url = fifo_queue(&c, "retry.fifo", &[]).await;
    send_fifo(&c, &url, "g", "first").await;
    send_fifo(&c, &url, "g", "second").await;
    let m = receive(&c, &url, 1, 0).await.remove(0);
    assert_eq!(body(&m), "first");
    set_visibility(&c, &url, &m, 0).await;
    let again = receive(&c, &url, 1, 0).await.remove(0);
    assert_eq!(body(&again), "first");
    assert_eq!(receive_count(&again), "2");
}

#[tokio::test]
async fn fifo_deduplication_id_suppresses_duplicates_within_the_window_only() {
    let (_gw, c) = start();
    let url = create_queue(&c, "dedup.fifo", &[("FifoQueue", "true")]).await;
    let send_dedup = |body: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.send_message()
                .queue_url(url)
                .message_body(body)
                .message_group_id("g")
                .message_deduplication_id("order-42")
                .send()
                .await
                .expect("SendMessage")
        }
    };
    let first = send_dedup("first").await;
    let dup = send_dedup("second").await;
    assert_eq!(
        dup.message_id, first.message_id,
        "a duplicate is acknowledged as the original message"
    );
    assert_eq!(message_counts(&c, &url).await, (1, 0, 0));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    send_dedup("third").await;
    assert_eq!(message_counts(&c, &url).await, (2, 0, 0));
    let got = receive(&c, &url, 10, 0).await;
    assert_eq!(bodies(&got), vec!["first", "third"]);
}

#[tokio::test]
async fn fifo_content_based_deduplication_suppresses_identical_bodies_within_the_window_only() {
    let (_gw, c) = start();
    let url = fifo_queue(&c, "content.fifo", &[]).await;
    assert_eq!(
        queue_attribute(&c, &url, "ContentBasedDeduplication")
            .await
            .as_deref(),
        Some("true")
    );
    send_fifo(&c, &url, "g", "same").await;
    send_fifo(&c, &url, "g", "same").await;
    send_fifo(&c, &url, "g", "different").await;
    assert_eq!(message_counts(&c, &url).await, (2, 0, 0));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    send_fifo(&c, &url, "g", "same").await;
    assert_eq!(message_counts(&c, &url).await, (3, 0, 0));
    let got = receive(&c, &url, 10, 0).await;
    assert_eq!(bodies(&got), vec!["same", "different", "same"]);
}

#[tokio::test]
async fn fifo_sequence_numbers_increase() {
    let (_gw, c) = start();
    let url = fifo_queue(&c, "seq.fifo", &[]).await;
    let mut seqs = Vec::new();
    for (g, b) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")] {
        seqs.push(send_fifo(&c, &url, g, b).await);
    }
    let nums: Vec<u128> = seqs
        .iter()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("not a number: {s}")))
        .collect();
    assert!(
        nums.windows(2).all(|w| w[0] < w[1]),
        "not increasing: {seqs:?}"
    );
    let got = receive(&c, &url, 10, 0).await;
    for m in &got {
        let seq = &m.attributes.as_ref().unwrap()[&Sys::SequenceNumber];
        let i: usize = body(m).parse::<usize>().unwrap() - 1;
        assert_eq!(seq, &seqs[i], "receive reports the send's SequenceNumber");
    }
}

#[tokio::test]
async fn fifo_deduplication_scope_message_group_accepts_one_id_in_two_groups() {
    let (_gw, c) = start();
    let url = create_queue(
        &c,
        "per-group.fifo",
        &[
            ("FifoQueue", "true"),
            ("DeduplicationScope", "messageGroup"),
            ("FifoThroughputLimit", "perMessageGroupId"),
        ],
    )
    .await;
    let attrs = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(Attr::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attrs[&Attr::DeduplicationScope], "messageGroup");
    assert_eq!(attrs[&Attr::FifoThroughputLimit], "perMessageGroupId");
    assert_eq!(attrs[&Attr::FifoQueue], "true");
    for (group, body) in [("a", "in a"), ("b", "in b"), ("a", "a again")] {
        c.send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id("same-id")
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        message_counts(&c, &url).await,
        (2, 0, 0),
        "one per group: the id is scoped to its group"
    );
    let mut got: Vec<String> = receive(&c, &url, 10, 0)
        .await
        .iter()
        .map(|m| body(m).to_owned())
        .collect();
    got.sort();
    assert_eq!(got, vec!["in a", "in b"]);
}

#[tokio::test]
async fn fifo_queue_defaults_to_queue_scope_and_per_queue_throughput() {
    let (_gw, c) = start();
    let url = fifo_queue(&c, "plain.fifo", &[]).await;
    assert_eq!(
        queue_attribute(&c, &url, "DeduplicationScope")
            .await
            .as_deref(),
        Some("queue")
    );
    assert_eq!(
        queue_attribute(&c, &url, "FifoThroughputLimit")
            .await
            .as_deref(),
        Some("perQueue")
    );
    for group in ["a", "b"] {
        c.send_message()
            .queue_url(&url)
            .message_body(group)
            .message_group_id(group)
            .message_deduplication_id("same-id")
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        message_counts(&c, &url).await,
        (1, 0, 0),
        "queue scope: the id is a duplicate in any group"
    );
}
