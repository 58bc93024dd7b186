//! The Amazon SNS API with the AWS SDK for Rust: topic and subscription
//! operations, delivery to SQS queues (raw and enveloped), filter policies,
//! FIFO topics, and delivery to HTTP endpoints with retries and a
//! dead-letter queue. Amazon SNS's documented behaviour is the reference.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use tether_e2e::Gateway;
use tether_e2e::aws::{
    ACCOUNT, REGION, create_queue, create_topic, drain_bodies, queue_arn, receive_n, receive_one,
    sns, sns_attribute, sns_client, sqs, sqs_client, subscribe_queue,
};

/// How long a "nothing arrives" check waits.
const QUIET: Duration = Duration::from_millis(300);

fn clients(gw: &Gateway) -> (sns::Client, sqs::Client) {
    let http = gw.http.expect("http listener");
    (sns_client(http), sqs_client(http))
}

fn topic_arn(name: &str) -> String {
    format!("arn:aws:sns:{REGION}:{ACCOUNT}:{name}")
}

fn tag(key: &str, value: &str) -> sns::types::Tag {
    sns::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("tag")
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

async fn publish(t: &sns::Client, topic: &str, message: &str) -> String {
    t.publish()
        .topic_arn(topic)
        .message(message)
        .send()
        .await
        .expect("Publish")
        .message_id
        .expect("MessageId")
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Milliseconds since the epoch of an ISO 8601 UTC timestamp
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn iso8601_ms(ts: &str) -> i64 {
    let re = regex::Regex::new(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")
        .expect("regex");
    let c = re
        .captures(ts)
        .unwrap_or_else(|| panic!("not ISO 8601 with milliseconds: {ts}"));
    let n = |i: usize| c[i].parse::<i64>().expect("digits");
    let (y, m, d) = (n(1), n(2), n(3));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + n(4) * 3600 + n(5) * 60 + n(6)) * 1000) + n(7)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

// ---------------------------------------------------------------------------
// A tiny HTTP/1.1 endpoint standing in for a subscriber's webhook.
// ---------------------------------------------------------------------------

/// One request the endpoint received.
#[derive(Debug, Clone)]
struct Posted {
    method: String,
    path: String,
    /// Header names in lower case.
    headers: HashMap<String, String>,
    body: String,
}

impl Posted {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// Answers each request with the next scripted status, then with `then`
/// forever, and reports every request on a channel.
struct Hook {
    url: String,
    posted: mpsc::UnboundedReceiver<Posted>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn start(script: &[u16], then: u16) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let statuses = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (tx, posted) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (tx, statuses) = (tx.clone(), statuses.clone());
                tokio::spawn(async move {
                    let _ = serve_connection(sock, tx, statuses, then).await;
                });
            }
        });
        Hook { url, posted, task }
    }

    /// The next request within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Posted> {
        tokio::time::timeout(wait, self.posted.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next request; panics if none arrives within 5 s.
    async fn expect(&mut self) -> Posted {
        self.next(Duration::from_secs(5))
            .await
            .expect("the endpoint received no request")
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(
    sock: TcpStream,
    tx: mpsc::UnboundedSender<Posted>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
    then: u16,
) -> std::io::Result<()> {
    let mut r = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let mut body = Vec::new();
        if headers
            .get("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.resize(n, 0);
            r.read_exact(&mut body).await?;
        }
        let status = statuses.lock().unwrap().pop_front().unwrap_or(then);
        let _ = tx.send(Posted {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let reply = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\n\r\n");
        r.get_mut().write_all(reply.as_bytes()).await?;
    }
}

/// `[sns]` settings that make HTTP retries quick.
const FAST_RETRIES: &str = r#"
[sns]
http_retries = 3
http_retry_delay = "50ms"
http_retry_max_delay = "200ms"
http_timeout = "2s"
"#;

async fn subscribe_http(
    t: &sns::Client,
    topic: &str,
    url: &str,
    attributes: &[(&str, &str)],
) -> String {
    let mut req = t
        .subscribe()
        .topic_arn(topic)
        .protocol("http")
        .endpoint(url)
        .return_subscription_arn(true);
    for (k, v) in attributes {
        req = req.attributes(*k, *v);
    }
    req.send()
        .await
        .expect("Subscribe http")
        .subscription_arn
        .expect("SubscriptionArn")
}

// ---------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_topic_is_idempotent_and_keeps_its_attributes_and_tags() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    let arn = t
        .create_topic()
        .name("alerts")
        .attributes("DisplayName", "Alerts")
        .tags(tag("team", "ops"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    assert_eq!(arn, topic_arn("alerts"));
    // Same name, same (or no) attributes: the same topic.
    let again = t.create_topic().name("alerts").send().await.unwrap();
    assert_eq!(again.topic_arn.as_deref(), Some(arn.as_str()));
    let same_attrs = t
        .create_topic()
        .name("alerts")
        .attributes("DisplayName", "Alerts")
        .send()
        .await
        .unwrap();
    assert_eq!(same_attrs.topic_arn.as_deref(), Some(arn.as_str()));
    // Same name, different attributes: refused.
    let err = t
        .create_topic()
        .name("alerts")
        .attributes("DisplayName", "Something else")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception(), "{err:?}");
    let attrs = topic_attributes(&t, &arn).await;
    assert_eq!(attrs["DisplayName"], "Alerts");
    let tags = t
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    let tags: Vec<(&str, &str)> = tags.iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, vec![("team", "ops")]);
    let listed = t.list_topics().send().await.unwrap().topics.unwrap();
    assert_eq!(listed.len(), 1, "one topic despite three CreateTopic calls");
}

#[tokio::test]
async fn create_topic_refuses_invalid_names() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    for name in ["has space", "dot.ted", "plain.fifo"] {
        let err = t
            .create_topic()
            .name(name)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_invalid_parameter_exception(), "{name}: {err:?}");
    }
}

#[tokio::test]
async fn list_topics_returns_every_topic_arn() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    for name in ["a", "b", "c"] {
        create_topic(&t, name).await;
    }
    let listed: Vec<String> = t
        .list_topics()
        .send()
        .await
        .unwrap()
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.topic_arn)
        .collect();
    assert_eq!(
        sorted(listed),
        vec![topic_arn("a"), topic_arn("b"), topic_arn("c")]
    );
}

#[tokio::test]
async fn get_topic_attributes_reports_arn_owner_display_name_and_subscription_counts() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let arn = t
        .create_topic()
        .name("news")
        .attributes("DisplayName", "News")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    create_queue(&q, "n1", &[]).await;
    create_queue(&q, "n2", &[]).await;
    let s1 = subscribe_queue(&t, &arn, "n1", &[]).await;
    subscribe_queue(&t, &arn, "n2", &[]).await;
    let attrs = topic_attributes(&t, &arn).await;
    assert_eq!(attrs["TopicArn"], arn);
    assert_eq!(attrs["Owner"], ACCOUNT);
    assert_eq!(attrs["DisplayName"], "News");
    assert_eq!(attrs["SubscriptionsConfirmed"], "2");
    assert_eq!(attrs["SubscriptionsPending"], "0");
    let policy = parse(&attrs["Policy"]);
    assert!(policy["Statement"].is_array(), "{policy}");
    t.unsubscribe().subscription_arn(&s1).send().await.unwrap();
    assert_eq!(
        topic_attributes(&t, &arn).await["SubscriptionsConfirmed"],
        "1"
    );
}

#[tokio::test]
async fn set_topic_attributes_changes_display_name_and_refuses_unknown_names() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    let arn = create_topic(&t, "renamed").await;
    assert_eq!(topic_attributes(&t, &arn).await["DisplayName"], "");
    t.set_topic_attributes()
        .topic_arn(&arn)
        .attribute_name("DisplayName")
        .attribute_value("Renamed")
        .send()
        .await
        .unwrap();
    assert_eq!(topic_attributes(&t, &arn).await["DisplayName"], "Renamed");
    let err = t
        .set_topic_attributes()
        .topic_arn(&arn)
        .attribute_name("Colour")
        .attribute_value("blue")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception(), "{err:?}");
}

#[tokio::test]
async fn delete_topic_removes_it_and_its_subscriptions_stop_receiving() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "listener", &[]).await;
    let arn = create_topic(&t, "doomed").await;
    subscribe_queue(&t, &arn, "listener", &[("RawMessageDelivery", "true")]).await;
    publish(&t, &arn, "before").await;
    assert_eq!(drain_bodies(&q, &url).await, vec!["before"]);
    t.delete_topic().topic_arn(&arn).send().await.unwrap();
    let err = t
        .get_topic_attributes()
        .topic_arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    let subs = t.list_subscriptions().send().await.unwrap();
    assert!(
        subs.subscriptions.unwrap_or_default().is_empty(),
        "the topic's subscriptions are deleted with it"
    );
    // A new topic of the same name does not inherit the old subscriptions.
    let again = create_topic(&t, "doomed").await;
    publish(&t, &again, "after").await;
    tokio::time::sleep(QUIET).await;
    assert!(drain_bodies(&q, &url).await.is_empty());
    // Deleting a topic that does not exist succeeds, as in SNS.
    t.delete_topic()
        .topic_arn(topic_arn("never-was"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_topic_is_not_found_for_publish_subscribe_and_get_attributes() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    create_queue(&q, "orphan", &[]).await;
    let missing = topic_arn("missing");
    let err = t
        .publish()
        .topic_arn(&missing)
        .message("x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "Publish: {err:?}");
    let err = t
        .subscribe()
        .topic_arn(&missing)
        .protocol("sqs")
        .endpoint(queue_arn("orphan"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "Subscribe: {err:?}");
    let err = t
        .get_topic_attributes()
        .topic_arn(&missing)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "GetTopicAttributes: {err:?}");
    let err = t
        .list_subscriptions_by_topic()
        .topic_arn(&missing)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_not_found_exception(),
        "ListSubscriptionsByTopic: {err:?}"
    );
}

#[tokio::test]
async fn tags_are_added_replaced_removed_and_listed() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    let arn = create_topic(&t, "tagged").await;
    t.tag_resource()
        .resource_arn(&arn)
        .tags(tag("env", "dev"))
        .tags(tag("team", "iot"))
        .send()
        .await
        .unwrap();
    t.tag_resource()
        .resource_arn(&arn)
        .tags(tag("env", "prod"))
        .send()
        .await
        .unwrap();
    let list = |t: sns::Client, arn: String| async move {
        let mut tags: Vec<(String, String)> = t
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(
        list(t.clone(), arn.clone()).await,
        vec![
            ("env".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "iot".to_owned())
        ]
    );
    t.untag_resource()
        .resource_arn(&arn)
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    assert_eq!(
        list(t.clone(), arn.clone()).await,
        vec![("team".to_owned(), "iot".to_owned())]
    );
    let err = t
        .list_tags_for_resource()
        .resource_arn(topic_arn("missing"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn subscribe_sqs_and_http_endpoints_lists_them_and_repeats_return_the_same_arn() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    create_queue(&q, "inbox", &[]).await;
    let hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "mixed").await;
    let sqs_sub = subscribe_queue(&t, &arn, "inbox", &[]).await;
    assert!(sqs_sub.starts_with(&format!("{arn}:")), "{sqs_sub}");
    let http_sub = subscribe_http(&t, &arn, &hook.url, &[]).await;
    let https_sub = t
        .subscribe()
        .topic_arn(&arn)
        .protocol("https")
        .endpoint("https://127.0.0.1:9/hook")
        .return_subscription_arn(true)
        .send()
        .await
        .unwrap()
        .subscription_arn
        .unwrap();
    assert_eq!(subscribe_queue(&t, &arn, "inbox", &[]).await, sqs_sub);
    assert_eq!(subscribe_http(&t, &arn, &hook.url, &[]).await, http_sub);
    let mut subs: Vec<(String, String, String)> = t
        .list_subscriptions_by_topic()
        .topic_arn(&arn)
        .send()
        .await
        .unwrap()
        .subscriptions
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            (
                s.subscription_arn.unwrap_or_default(),
                s.protocol.unwrap_or_default(),
                s.endpoint.unwrap_or_default(),
            )
        })
        .collect();
    subs.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        subs,
        vec![
            (http_sub, "http".into(), hook.url.clone()),
            (https_sub, "https".into(), "https://127.0.0.1:9/hook".into()),
            (sqs_sub, "sqs".into(), queue_arn("inbox")),
        ]
    );
}

#[tokio::test]
async fn subscribe_with_an_unsupported_protocol_or_mismatched_endpoint_is_invalid_parameter() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    let arn = create_topic(&t, "picky").await;
    for (protocol, endpoint) in [
        ("carrier-pigeon", "coop-7"),
        ("http", "ftp://127.0.0.1/hook"),
        ("https", "http://127.0.0.1/hook"),
    ] {
        let err = t
            .subscribe()
            .topic_arn(&arn)
            .protocol(protocol)
            .endpoint(endpoint)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(
            err.is_invalid_parameter_exception(),
            "{protocol} {endpoint}: {err:?}"
        );
    }
    assert!(
        t.list_subscriptions()
            .send()
            .await
            .unwrap()
            .subscriptions
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_an_unknown_arn_is_not_found() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "leaver", &[]).await;
    let arn = create_topic(&t, "club").await;
    let sub = subscribe_queue(&t, &arn, "leaver", &[("RawMessageDelivery", "true")]).await;
    publish(&t, &arn, "one").await;
    assert_eq!(drain_bodies(&q, &url).await, vec!["one"]);
    t.unsubscribe().subscription_arn(&sub).send().await.unwrap();
    publish(&t, &arn, "two").await;
    tokio::time::sleep(QUIET).await;
    assert!(drain_bodies(&q, &url).await.is_empty());
    let err = t
        .unsubscribe()
        .subscription_arn(&sub)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn list_subscriptions_lists_all_and_by_topic_only_that_topics() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    for name in ["q1", "q2", "q3"] {
        create_queue(&q, name, &[]).await;
    }
    let a = create_topic(&t, "topic-a").await;
    let b = create_topic(&t, "topic-b").await;
    let a1 = subscribe_queue(&t, &a, "q1", &[]).await;
    let a2 = subscribe_queue(&t, &a, "q2", &[]).await;
    let b3 = subscribe_queue(&t, &b, "q3", &[]).await;
    let all = t
        .list_subscriptions()
        .send()
        .await
        .unwrap()
        .subscriptions
        .unwrap_or_default();
    let arns: Vec<String> = all
        .iter()
        .filter_map(|s| s.subscription_arn.clone())
        .collect();
    assert_eq!(
        sorted(arns),
        sorted(vec![a1.clone(), a2.clone(), b3.clone()])
    );
    for s in &all {
        assert_eq!(s.owner.as_deref(), Some(ACCOUNT));
        assert_eq!(s.protocol.as_deref(), Some("sqs"));
    }
    let only_a = t
        .list_subscriptions_by_topic()
        .topic_arn(&a)
        .send()
        .await
        .unwrap()
        .subscriptions
        .unwrap_or_default();
    assert!(only_a.iter().all(|s| s.topic_arn.as_deref() == Some(&a)));
    let arns: Vec<String> = only_a
        .into_iter()
        .filter_map(|s| s.subscription_arn)
        .collect();
    assert_eq!(sorted(arns), sorted(vec![a1, a2]));
    let only_b: Vec<String> = t
        .list_subscriptions_by_topic()
        .topic_arn(&b)
        .send()
        .await
        .unwrap()
        .subscriptions
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.subscription_arn)
        .collect();
    assert_eq!(only_b, vec![b3]);
}

#[tokio::test]
async fn subscription_attributes_have_defaults_and_can_be_changed() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    create_queue(&q, "attrs", &[]).await;
    let arn = create_topic(&t, "settings").await;
    let sub = subscribe_queue(&t, &arn, "attrs", &[]).await;
    let a = subscription_attributes(&t, &sub).await;
    assert_eq!(a["SubscriptionArn"], sub);
    assert_eq!(a["TopicArn"], arn);
    assert_eq!(a["Owner"], ACCOUNT);
    assert_eq!(a["Protocol"], "sqs");
    assert_eq!(a["Endpoint"], queue_arn("attrs"));
    assert_eq!(a["PendingConfirmation"], "false");
    assert_eq!(a["RawMessageDelivery"], "false");
    assert_eq!(a["FilterPolicyScope"], "MessageAttributes");
    assert!(!a.contains_key("FilterPolicy"), "{a:?}");
    let set = |name: &'static str, value: &'static str| {
        let t = t.clone();
        let sub = sub.clone();
        async move {
            t.set_subscription_attributes()
                .subscription_arn(sub)
                .attribute_name(name)
                .attribute_value(value)
                .send()
                .await
        }
    };
    set("RawMessageDelivery", "true").await.unwrap();
    set("FilterPolicy", r#"{"kind":["alarm"]}"#).await.unwrap();
    set("FilterPolicyScope", "MessageBody").await.unwrap();
    let a = subscription_attributes(&t, &sub).await;
    assert_eq!(a["RawMessageDelivery"], "true");
    assert_eq!(parse(&a["FilterPolicy"]), json!({"kind": ["alarm"]}));
    assert_eq!(a["FilterPolicyScope"], "MessageBody");
    for (name, value) in [
        ("FilterPolicy", "{not json"),
        ("FilterPolicy", r#"{"kind": "alarm"}"#),
        ("FilterPolicyScope", "Everywhere"),
        ("RawMessageDelivery", "yes"),
        ("Colour", "blue"),
    ] {
        let err = set(name, value).await.unwrap_err().into_service_error();
        assert!(
            err.is_invalid_parameter_exception(),
            "{name}={value}: {err:?}"
        );
    }
    let err = t
        .get_subscription_attributes()
        .subscription_arn(format!("{arn}:00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
}

// ---------------------------------------------------------------------------
// Publishing and delivery to SQS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn raw_delivery_carries_the_body_and_attributes_as_sqs_message_attributes() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "raw", &[]).await;
    let arn = create_topic(&t, "readings").await;
    subscribe_queue(&t, &arn, "raw", &[("RawMessageDelivery", "true")]).await;
    let binary = sns::types::MessageAttributeValue::builder()
        .data_type("Binary")
        .binary_value(sns::primitives::Blob::new(vec![0u8, 1, 254, 255]))
        .build()
        .unwrap();
    t.publish()
        .topic_arn(&arn)
        .message(r#"{"t": 21.5}"#)
        .subject("ignored with raw delivery")
        .message_attributes("kind", sns_attribute("String", "reading"))
        .message_attributes("level", sns_attribute("Number", "3"))
        .message_attributes("tags", sns_attribute("String.Array", r#"["a","b"]"#))
        .message_attributes("blob", binary)
        .send()
        .await
        .unwrap();
    let m = receive_one(&q, &url).await;
    assert_eq!(m.body.as_deref(), Some(r#"{"t": 21.5}"#));
    let attrs = m.message_attributes.unwrap_or_default();
    let text = |k: &str| {
        let a = &attrs[k];
        (
            a.data_type.clone(),
            a.string_value.clone().unwrap_or_default(),
        )
    };
    assert_eq!(text("kind"), ("String".into(), "reading".into()));
    assert_eq!(text("level"), ("Number".into(), "3".into()));
    assert_eq!(text("tags"), ("String.Array".into(), r#"["a","b"]"#.into()));
    assert_eq!(attrs["blob"].data_type, "Binary");
    assert_eq!(
        attrs["blob"].binary_value.as_ref().map(|b| b.as_ref()),
        Some(&[0u8, 1, 254, 255][..])
    );
}

#[tokio::test]
async fn enveloped_delivery_has_the_sns_notification_fields() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "env", &[]).await;
    let arn = create_topic(&t, "orders").await;
    let sub = subscribe_queue(&t, &arn, "env", &[]).await;
    let published = t
        .publish()
        .topic_arn(&arn)
        .message("order 7 shipped")
        .subject("shipping")
        .message_attributes("kind", sns_attribute("String", "shipment"))
        .message_attributes("items", sns_attribute("Number", "3"))
        .send()
        .await
        .unwrap();
    let m = receive_one(&q, &url).await;
    // Attributes travel inside the envelope, not as SQS attributes.
    assert!(
        m.message_attributes.unwrap_or_default().is_empty(),
        "enveloped delivery sets no SQS message attributes"
    );
    let v = parse(m.body.as_deref().unwrap());
    assert_eq!(v["Type"], "Notification");
    assert_eq!(
        v["MessageId"].as_str(),
        published.message_id.as_deref(),
        "the envelope's MessageId is the one Publish returned"
    );
    assert_eq!(v["TopicArn"], arn);
    assert_eq!(v["Subject"], "shipping");
    assert_eq!(v["Message"], "order 7 shipped");
    let ts = iso8601_ms(v["Timestamp"].as_str().expect("Timestamp"));
    assert!(
        (now_ms() - ts).abs() < 60_000,
        "Timestamp {} is not now",
        v["Timestamp"]
    );
    assert_eq!(v["SignatureVersion"], "1");
    assert!(v["Signature"].is_string(), "{v}");
    assert!(
        v["SigningCertURL"]
            .as_str()
            .is_some_and(|u| u.ends_with(".pem")),
        "{v}"
    );
    let unsubscribe = v["UnsubscribeURL"].as_str().expect("UnsubscribeURL");
    assert!(
        unsubscribe.contains("Action=Unsubscribe") && unsubscribe.contains(&sub),
        "{unsubscribe}"
    );
    assert_eq!(
        v["MessageAttributes"],
        json!({
            "kind": {"Type": "String", "Value": "shipment"},
            "items": {"Type": "Number", "Value": "3"},
        })
    );
}

#[tokio::test]
async fn envelope_without_subject_or_attributes_leaves_them_out() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "bare", &[]).await;
    let arn = create_topic(&t, "plain").await;
    subscribe_queue(&t, &arn, "bare", &[]).await;
    publish(&t, &arn, "just text").await;
    let v = parse(receive_one(&q, &url).await.body.as_deref().unwrap());
    assert_eq!(v["Message"], "just text");
    assert!(v.get("Subject").is_none_or(Value::is_null), "{v}");
    assert!(v.get("MessageAttributes").is_none(), "{v}");
}

#[tokio::test]
async fn raw_message_delivery_change_applies_to_the_next_publish() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "switch", &[]).await;
    let arn = create_topic(&t, "switchable").await;
    let sub = subscribe_queue(&t, &arn, "switch", &[]).await;
    publish(&t, &arn, "first").await;
    let first = receive_one(&q, &url).await;
    assert_eq!(parse(first.body.as_deref().unwrap())["Message"], "first");
    t.set_subscription_attributes()
        .subscription_arn(&sub)
        .attribute_name("RawMessageDelivery")
        .attribute_value("true")
        .send()
        .await
        .unwrap();
    publish(&t, &arn, "second").await;
    let second = receive_one(&q, &url).await;
    assert_eq!(second.body.as_deref(), Some("second"));
}

/// A topic with a raw and an enveloped SQS subscriber and an HTTP one.
struct Structured {
    _gw: Gateway,
    t: sns::Client,
    q: sqs::Client,
    arn: String,
    raw_url: String,
    env_url: String,
    hook: Hook,
}

async fn structured() -> Structured {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, q) = clients(&gw);
    let raw_url = create_queue(&q, "structured-raw", &[]).await;
    let env_url = create_queue(&q, "structured-env", &[]).await;
    let hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "structured").await;
    subscribe_queue(
        &t,
        &arn,
        "structured-raw",
        &[("RawMessageDelivery", "true")],
    )
    .await;
    subscribe_queue(&t, &arn, "structured-env", &[]).await;
    subscribe_http(&t, &arn, &hook.url, &[]).await;
    Structured {
        _gw: gw,
        t,
        q,
        arn,
        raw_url,
        env_url,
        hook,
    }
}

#[tokio::test]
async fn message_structure_json_gives_each_protocol_its_own_entry() {
    let mut s = structured().await;
    let message = json!({"default": "fallback", "sqs": "for queues", "http": "for hooks"});
    s.t.publish()
        .topic_arn(&s.arn)
        .message(message.to_string())
        .message_structure("json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        receive_one(&s.q, &s.raw_url).await.body.as_deref(),
        Some("for queues")
    );
    let env = parse(receive_one(&s.q, &s.env_url).await.body.as_deref().unwrap());
    assert_eq!(env["Message"], "for queues");
    assert_eq!(parse(&s.hook.expect().await.body)["Message"], "for hooks");
}

#[tokio::test]
async fn message_structure_json_falls_back_to_the_default_entry() {
    let mut s = structured().await;
    s.t.publish()
        .topic_arn(&s.arn)
        .message(json!({"default": "fallback", "email": "for people"}).to_string())
        .message_structure("json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        receive_one(&s.q, &s.raw_url).await.body.as_deref(),
        Some("fallback")
    );
    let env = parse(receive_one(&s.q, &s.env_url).await.body.as_deref().unwrap());
    assert_eq!(env["Message"], "fallback");
    assert_eq!(parse(&s.hook.expect().await.body)["Message"], "fallback");
}

#[tokio::test]
async fn message_structure_json_must_be_json_with_a_default_entry() {
    let s = structured().await;
    for bad in ["not json", r#"{"sqs": "no default"}"#, r#"{"default": 7}"#] {
        let err =
            s.t.publish()
                .topic_arn(&s.arn)
                .message(bad)
                .message_structure("json")
                .send()
                .await
                .unwrap_err()
                .into_service_error();
        assert!(err.is_invalid_parameter_exception(), "{bad}: {err:?}");
    }
}

#[tokio::test]
async fn publish_batch_reports_each_entry_and_delivers_only_the_good_ones() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "batched", &[]).await;
    let arn = create_topic(&t, "batch").await;
    subscribe_queue(&t, &arn, "batched", &[("RawMessageDelivery", "true")]).await;
    let entry = |id: &str, message: &str| {
        sns::types::PublishBatchRequestEntry::builder()
            .id(id)
            .message(message)
    };
    let out = t
        .publish_batch()
        .topic_arn(&arn)
        .publish_batch_request_entries(entry("ok-1", "first").build().unwrap())
        .publish_batch_request_entries(
            entry("bad", r#"{"sqs": "no default"}"#)
                .message_structure("json")
                .build()
                .unwrap(),
        )
        .publish_batch_request_entries(
            entry("ok-2", "second")
                .message_attributes("kind", sns_attribute("String", "x"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ok: Vec<&str> = out
        .successful()
        .iter()
        .map(|s| s.id().unwrap_or_default())
        .collect();
    assert_eq!(ok, vec!["ok-1", "ok-2"]);
    assert!(out.successful().iter().all(|s| s.message_id().is_some()));
    let failed = out.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].id(), "bad");
    assert_eq!(failed[0].code(), "InvalidParameter");
    assert!(failed[0].sender_fault());
    let bodies = receive_n(&q, &url, 2, Duration::from_secs(3)).await;
    let bodies: Vec<String> = bodies.into_iter().filter_map(|m| m.body).collect();
    assert_eq!(sorted(bodies), vec!["first", "second"]);
    // Whole-request errors.
    let err = t
        .publish_batch()
        .topic_arn(&arn)
        .publish_batch_request_entries(entry("same", "a").build().unwrap())
        .publish_batch_request_entries(entry("same", "b").build().unwrap())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_batch_entry_ids_not_distinct_exception(), "{err:?}");
    let mut req = t.publish_batch().topic_arn(&arn);
    for i in 0..11 {
        req = req.publish_batch_request_entries(entry(&format!("e{i}"), "m").build().unwrap());
    }
    let err = req.send().await.unwrap_err().into_service_error();
    assert!(
        err.is_too_many_entries_in_batch_request_exception(),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Filter policies
// ---------------------------------------------------------------------------

/// A message to publish: body and (name, data type, value) attributes.
type Msg<'a> = (&'a str, &'a [(&'a str, &'a str, &'a str)]);

/// Publishes `messages` to a topic with two raw SQS subscribers, one with
/// `policy` (in `scope`) and one without; checks the unfiltered one received
/// every message and returns the bodies the filtered one received, sorted.
async fn filtered(policy: &str, scope: &str, messages: &[Msg<'_>]) -> Vec<String> {
    filtered_with(policy, scope, messages, true).await
}

/// [`filtered`], with the policy given to Subscribe (`at_subscribe`) or set
/// afterwards with SetSubscriptionAttributes (scope first, then policy).
async fn filtered_with(
    policy: &str,
    scope: &str,
    messages: &[Msg<'_>],
    at_subscribe: bool,
) -> Vec<String> {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let all_url = create_queue(&q, "everything", &[]).await;
    let some_url = create_queue(&q, "filtered", &[]).await;
    let arn = create_topic(&t, "filtering").await;
    subscribe_queue(&t, &arn, "everything", &[("RawMessageDelivery", "true")]).await;
    if at_subscribe {
        subscribe_queue(
            &t,
            &arn,
            "filtered",
            &[
                ("RawMessageDelivery", "true"),
                ("FilterPolicyScope", scope),
                ("FilterPolicy", policy),
            ],
        )
        .await;
    } else {
        let sub = subscribe_queue(&t, &arn, "filtered", &[("RawMessageDelivery", "true")]).await;
        for (name, value) in [("FilterPolicyScope", scope), ("FilterPolicy", policy)] {
            t.set_subscription_attributes()
                .subscription_arn(&sub)
                .attribute_name(name)
                .attribute_value(value)
                .send()
                .await
                .unwrap_or_else(|e| panic!("SetSubscriptionAttributes {name}: {e:?}"));
        }
    }
    for (body, attrs) in messages {
        let mut req = t.publish().topic_arn(&arn).message(*body);
        for (name, data_type, value) in *attrs {
            req = req.message_attributes(*name, sns_attribute(data_type, value));
        }
        req.send().await.expect("Publish");
    }
    let all = receive_n(&q, &all_url, messages.len(), Duration::from_secs(5)).await;
    let mut all: Vec<String> = all.into_iter().filter_map(|m| m.body).collect();
    all.sort();
    let mut want: Vec<String> = messages.iter().map(|(b, _)| (*b).to_owned()).collect();
    want.sort();
    assert_eq!(all, want, "the unfiltered subscriber gets every message");
    // Routing is done by the time the unfiltered copies arrived.
    sorted(drain_bodies(&q, &some_url).await)
}

#[tokio::test]
async fn filter_policy_exact_strings_pass_only_listed_values() {
    let got = filtered(
        r#"{"color": ["red", "blue"]}"#,
        "MessageAttributes",
        &[
            ("red", &[("color", "String", "red")]),
            ("blue", &[("color", "String", "blue")]),
            ("green", &[("color", "String", "green")]),
            ("upper", &[("color", "String", "Red")]),
            ("none", &[]),
            ("other-key", &[("colour", "String", "red")]),
        ],
    )
    .await;
    assert_eq!(got, vec!["blue", "red"]);
}

#[tokio::test]
async fn filter_policy_prefix_matches_the_start_of_a_string() {
    let got = filtered(
        r#"{"region": [{"prefix": "eu-"}]}"#,
        "MessageAttributes",
        &[
            ("west", &[("region", "String", "eu-west-1")]),
            ("central", &[("region", "String", "eu-central-1")]),
            ("us", &[("region", "String", "us-east-1")]),
            ("eu-no-dash", &[("region", "String", "europe")]),
        ],
    )
    .await;
    assert_eq!(got, vec!["central", "west"]);
}

#[tokio::test]
async fn filter_policy_anything_but_passes_other_values_of_a_present_attribute() {
    let got = filtered(
        r#"{"status": [{"anything-but": ["failed", "cancelled"]}]}"#,
        "MessageAttributes",
        &[
            ("ok", &[("status", "String", "ok")]),
            ("pending", &[("status", "String", "pending")]),
            ("failed", &[("status", "String", "failed")]),
            ("cancelled", &[("status", "String", "cancelled")]),
            ("absent", &[]),
        ],
    )
    .await;
    assert_eq!(got, vec!["ok", "pending"]);
}

#[tokio::test]
async fn filter_policy_anything_but_prefix_excludes_a_prefix() {
    let got = filtered(
        r#"{"env": [{"anything-but": {"prefix": "test-"}}]}"#,
        "MessageAttributes",
        &[
            ("prod", &[("env", "String", "prod")]),
            ("test-a", &[("env", "String", "test-a")]),
        ],
    )
    .await;
    assert_eq!(got, vec!["prod"]);
}

#[tokio::test]
async fn filter_policy_numeric_range_matches_number_attributes() {
    let got = filtered(
        r#"{"price": [{"numeric": [">=", 10, "<", 20]}]}"#,
        "MessageAttributes",
        &[
            ("below", &[("price", "Number", "9.99")]),
            ("low-edge", &[("price", "Number", "10")]),
            ("inside", &[("price", "Number", "15.5")]),
            ("exponent", &[("price", "Number", "1.2e1")]),
            ("high-edge", &[("price", "Number", "20")]),
            ("absent", &[]),
        ],
    )
    .await;
    assert_eq!(got, vec!["exponent", "inside", "low-edge"]);
}

#[tokio::test]
async fn filter_policy_numeric_equality_ignores_number_spelling() {
    let got = filtered(
        r#"{"qty": [{"numeric": ["=", 301.5]}]}"#,
        "MessageAttributes",
        &[
            ("plain", &[("qty", "Number", "301.5")]),
            ("exponent", &[("qty", "Number", "3.015e2")]),
            ("other", &[("qty", "Number", "301")]),
        ],
    )
    .await;
    assert_eq!(got, vec!["exponent", "plain"]);
}

#[tokio::test]
async fn filter_policy_exists_true_needs_the_attribute() {
    let got = filtered(
        r#"{"vip": [{"exists": true}]}"#,
        "MessageAttributes",
        &[
            ("with", &[("vip", "String", "yes")]),
            ("without", &[("other", "String", "x")]),
        ],
    )
    .await;
    assert_eq!(got, vec!["with"]);
}

#[tokio::test]
async fn filter_policy_exists_false_needs_the_attribute_absent() {
    let got = filtered(
        r#"{"vip": [{"exists": false}]}"#,
        "MessageAttributes",
        &[
            ("with", &[("vip", "String", "yes")]),
            ("without", &[("other", "String", "x")]),
            ("nothing", &[]),
        ],
    )
    .await;
    assert_eq!(got, vec!["nothing", "without"]);
}

#[tokio::test]
async fn filter_policy_keys_are_anded_and_or_alternatives_are_ored() {
    let got = filtered(
        r#"{"kind": ["reading"], "$or": [{"level": [{"numeric": [">", 5]}]}, {"urgent": ["yes"]}]}"#,
        "MessageAttributes",
        &[
            (
                "high",
                &[("kind", "String", "reading"), ("level", "Number", "9")],
            ),
            (
                "urgent",
                &[("kind", "String", "reading"), ("urgent", "String", "yes")],
            ),
            (
                "low",
                &[("kind", "String", "reading"), ("level", "Number", "2")],
            ),
            (
                "wrong-kind",
                &[("kind", "String", "event"), ("level", "Number", "9")],
            ),
        ],
    )
    .await;
    assert_eq!(got, vec!["high", "urgent"]);
}

#[tokio::test]
async fn filter_policy_matches_any_element_of_a_string_array_attribute() {
    let got = filtered(
        r#"{"tags": ["urgent"]}"#,
        "MessageAttributes",
        &[
            ("has", &[("tags", "String.Array", r#"["low", "urgent"]"#)]),
            ("lacks", &[("tags", "String.Array", r#"["low", "later"]"#)]),
        ],
    )
    .await;
    assert_eq!(got, vec!["has"]);
}

const HOT: &str = r#"{"device": {"kind": "thermostat"}, "temperature": 35}"#;
const BODY_POLICY: &str =
    r#"{"device": {"kind": ["thermostat"]}, "temperature": [{"numeric": [">", 30]}]}"#;

/// JSON bodies for the MessageBody-scope tests; only [`HOT`] matches [`BODY_POLICY`].
const BODIES: &[Msg<'static>] = &[
    (HOT, &[]),
    (
        r#"{"device": {"kind": "thermostat"}, "temperature": 18}"#,
        &[],
    ),
    (r#"{"device": {"kind": "lamp"}, "temperature": 40}"#, &[]),
    ("not json at all", &[]),
    // Attributes do not count with scope MessageBody.
    ("{}", &[("temperature", "Number", "99")]),
];

#[tokio::test]
async fn filter_policy_scope_message_body_matches_nested_json_fields() {
    let got = filtered_with(BODY_POLICY, "MessageBody", BODIES, false).await;
    assert_eq!(got, vec![HOT]);
}

/// Subscribe's Attributes arrive as an unordered map: a nested body policy
/// must be accepted together with FilterPolicyScope MessageBody.
#[tokio::test]
async fn subscribe_accepts_a_body_filter_policy_with_its_scope() {
    let got = filtered_with(BODY_POLICY, "MessageBody", BODIES, true).await;
    assert_eq!(got, vec![HOT]);
}

// ---------------------------------------------------------------------------
// FIFO topics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn fifo_topic_to_fifo_queue_keeps_group_order_and_deduplicates() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "ledger.fifo", &[("FifoQueue", "true")]).await;
    let arn = create_topic(&t, "ledger.fifo").await;
    subscribe_queue(&t, &arn, "ledger.fifo", &[("RawMessageDelivery", "true")]).await;
    let sends = [
        ("g1", "a1", "d1"),
        ("g2", "b1", "d2"),
        ("g1", "a2", "d3"),
        ("g1", "a2-again", "d3"), // same deduplication id: dropped
        ("g2", "b2", "d4"),
        ("g1", "a3", "d5"),
    ];
    let mut sequence_numbers = Vec::new();
    for (group, body, dedup) in sends {
        let out = t
            .publish()
            .topic_arn(&arn)
            .message(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .unwrap();
        assert!(out.message_id.is_some());
        sequence_numbers.push(out.sequence_number.expect("SequenceNumber"));
    }
    let got = receive_n(&q, &url, 5, Duration::from_secs(5)).await;
    let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
    for m in &got {
        let attrs = m.attributes.clone().unwrap_or_default();
        let group = attrs
            .get(&sqs::types::MessageSystemAttributeName::MessageGroupId)
            .cloned()
            .expect("MessageGroupId");
        by_group
            .entry(group)
            .or_default()
            .push(m.body.clone().unwrap_or_default());
    }
    assert_eq!(by_group["g1"], vec!["a1", "a2", "a3"]);
    assert_eq!(by_group["g2"], vec!["b1", "b2"]);
    tokio::time::sleep(QUIET).await;
    assert!(
        drain_bodies(&q, &url).await.is_empty(),
        "the duplicate was not delivered"
    );
    let parsed: Vec<u128> = sequence_numbers
        .iter()
        .map(|s| s.parse().expect("numeric SequenceNumber"))
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[0] < w[1]),
        "{sequence_numbers:?}"
    );
}

#[tokio::test]
async fn fifo_topic_requires_a_message_group_and_a_deduplication_id_or_content_dedup() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    let arn = create_topic(&t, "strict.fifo").await;
    let err = t
        .publish()
        .topic_arn(&arn)
        .message("x")
        .message_deduplication_id("d")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception(), "{err:?}");
    let err = t
        .publish()
        .topic_arn(&arn)
        .message("x")
        .message_group_id("g")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception(), "{err:?}");
    let cbd = t
        .create_topic()
        .name("easy.fifo")
        .attributes("FifoTopic", "true")
        .attributes("ContentBasedDeduplication", "true")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    t.publish()
        .topic_arn(&cbd)
        .message("x")
        .message_group_id("g")
        .send()
        .await
        .unwrap();
}

/// Amazon SNS FIFO topics deliver to SQS FIFO *and* standard queues
/// (best-effort order); standard topics cannot deliver to FIFO queues.
/// <https://docs.aws.amazon.com/sns/latest/dg/fifo-message-delivery.html>
#[tokio::test]
async fn standard_queue_subscribed_to_a_fifo_topic_receives_its_messages() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    let url = create_queue(&q, "analytics", &[]).await;
    let arn = create_topic(&t, "prices.fifo").await;
    subscribe_queue(&t, &arn, "analytics", &[("RawMessageDelivery", "true")]).await;
    t.publish()
        .topic_arn(&arn)
        .message("price 10")
        .message_group_id("g")
        .message_deduplication_id("p1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        receive_one(&q, &url).await.body.as_deref(),
        Some("price 10")
    );
}

#[tokio::test]
async fn fifo_queue_cannot_subscribe_to_a_standard_topic() {
    let gw = Gateway::start();
    let (t, q) = clients(&gw);
    create_queue(&q, "ordered.fifo", &[("FifoQueue", "true")]).await;
    let arn = create_topic(&t, "unordered").await;
    let err = t
        .subscribe()
        .topic_arn(&arn)
        .protocol("sqs")
        .endpoint(queue_arn("ordered.fifo"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception(), "{err:?}");
}

/// "SNS FIFO topics can't deliver messages to customer managed endpoints,
/// such as ... HTTP(S) endpoints. Attempts to subscribe customer managed
/// endpoints to SNS FIFO topics result in errors."
#[tokio::test]
async fn http_endpoint_cannot_subscribe_to_a_fifo_topic() {
    let gw = Gateway::start();
    let (t, _) = clients(&gw);
    let hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "ordered-hooks.fifo").await;
    let err = t
        .subscribe()
        .topic_arn(&arn)
        .protocol("http")
        .endpoint(&hook.url)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception(), "{err:?}");
}

// ---------------------------------------------------------------------------
// HTTP subscriptions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http_subscription_receives_a_post_with_the_envelope_and_sns_headers() {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, _) = clients(&gw);
    let mut hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "webhooks").await;
    let sub = subscribe_http(&t, &arn, &hook.url, &[]).await;
    let published = t
        .publish()
        .topic_arn(&arn)
        .message("door opened")
        .subject("door")
        .message_attributes("room", sns_attribute("String", "hall"))
        .send()
        .await
        .unwrap();
    let p = hook.expect().await;
    assert_eq!(p.method, "POST");
    assert_eq!(p.path, "/hook");
    assert_eq!(p.header("x-amz-sns-message-type"), "Notification");
    assert_eq!(p.header("x-amz-sns-topic-arn"), arn);
    assert_eq!(p.header("x-amz-sns-subscription-arn"), sub);
    assert!(
        p.header("content-type").starts_with("text/plain"),
        "{:?}",
        p.headers
    );
    let v = parse(&p.body);
    assert_eq!(v["Type"], "Notification");
    assert_eq!(v["TopicArn"], arn);
    assert_eq!(v["Subject"], "door");
    assert_eq!(v["Message"], "door opened");
    assert_eq!(
        v["MessageAttributes"],
        json!({"room": {"Type": "String", "Value": "hall"}})
    );
    assert_eq!(v["MessageId"].as_str(), published.message_id.as_deref());
    assert_eq!(
        p.header("x-amz-sns-message-id"),
        v["MessageId"].as_str().unwrap_or_default(),
        "the x-amz-sns-message-id header carries the envelope's MessageId"
    );
    assert!(hook.next(QUIET).await.is_none(), "delivered once");
}

#[tokio::test]
async fn http_raw_delivery_posts_the_bare_message() {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, _) = clients(&gw);
    let mut hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "raw-hooks").await;
    let sub = subscribe_http(&t, &arn, &hook.url, &[("RawMessageDelivery", "true")]).await;
    publish(&t, &arn, r#"{"door": "open"}"#).await;
    let p = hook.expect().await;
    assert_eq!(p.body, r#"{"door": "open"}"#);
    assert_eq!(p.header("x-amz-sns-message-type"), "Notification");
    assert_eq!(p.header("x-amz-sns-subscription-arn"), sub);
    assert_eq!(p.header("x-amz-sns-rawdelivery"), "true");
}

#[tokio::test]
async fn http_subscription_receives_every_message_in_turn() {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, _) = clients(&gw);
    let mut hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "chatty").await;
    subscribe_http(&t, &arn, &hook.url, &[("RawMessageDelivery", "true")]).await;
    publish(&t, &arn, "one").await;
    assert_eq!(hook.expect().await.body, "one");
    // Published after the first delivery finished: the delivery task must
    // wake up again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    publish(&t, &arn, "two").await;
    publish(&t, &arn, "three").await;
    let mut got = Vec::new();
    while let Some(p) = hook.next(Duration::from_secs(3)).await {
        got.push(p.body);
        if got.len() == 2 {
            break;
        }
    }
    assert_eq!(got, vec!["two", "three"]);
}

#[tokio::test]
async fn http_filter_policy_applies_to_http_subscriptions() {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, _) = clients(&gw);
    let mut hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "filtered-hooks").await;
    subscribe_http(
        &t,
        &arn,
        &hook.url,
        &[
            ("RawMessageDelivery", "true"),
            ("FilterPolicy", r#"{"room": ["hall"]}"#),
        ],
    )
    .await;
    for (body, room) in [("kitchen", "kitchen"), ("hall", "hall")] {
        t.publish()
            .topic_arn(&arn)
            .message(body)
            .message_attributes("room", sns_attribute("String", room))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(hook.expect().await.body, "hall");
    assert!(hook.next(QUIET).await.is_none());
}

#[tokio::test]
async fn http_delivery_is_retried_until_the_endpoint_answers_2xx() {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, _) = clients(&gw);
    let mut hook = Hook::start(&[500, 500], 200).await;
    let arn = create_topic(&t, "flaky").await;
    subscribe_http(&t, &arn, &hook.url, &[("RawMessageDelivery", "true")]).await;
    publish(&t, &arn, "eventually").await;
    for attempt in 1..=3 {
        let p = hook.expect().await;
        assert_eq!(p.body, "eventually", "attempt {attempt}");
    }
    assert!(hook.next(QUIET).await.is_none(), "no attempt after the 200");
}

#[tokio::test]
async fn http_delivery_that_always_fails_lands_in_the_subscriptions_dead_letter_queue() {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, q) = clients(&gw);
    let dlq = create_queue(&q, "hook-dlq", &[]).await;
    let mut hook = Hook::start(&[], 500).await;
    let arn = create_topic(&t, "broken").await;
    let redrive = json!({"deadLetterTargetArn": queue_arn("hook-dlq")}).to_string();
    subscribe_http(&t, &arn, &hook.url, &[("RedrivePolicy", &redrive)]).await;
    let published = t
        .publish()
        .topic_arn(&arn)
        .message("undeliverable")
        .send()
        .await
        .unwrap();
    // The first attempt and three retries.
    for _ in 0..4 {
        hook.expect().await;
    }
    assert!(hook.next(QUIET).await.is_none(), "no fifth attempt");
    let m = receive_one(&q, &dlq).await;
    let v = parse(m.body.as_deref().unwrap());
    assert_eq!(v["Type"], "Notification");
    assert_eq!(v["Message"], "undeliverable");
    assert_eq!(v["MessageId"].as_str(), published.message_id.as_deref());
}

#[tokio::test]
async fn unsubscribed_http_endpoint_gets_nothing_more() {
    let gw = Gateway::builder().config(FAST_RETRIES).start();
    let (t, _) = clients(&gw);
    let mut hook = Hook::start(&[], 200).await;
    let arn = create_topic(&t, "goodbye").await;
    let sub = subscribe_http(&t, &arn, &hook.url, &[("RawMessageDelivery", "true")]).await;
    publish(&t, &arn, "one").await;
    assert_eq!(hook.expect().await.body, "one");
    t.unsubscribe().subscription_arn(&sub).send().await.unwrap();
    publish(&t, &arn, "two").await;
    assert!(hook.next(QUIET).await.is_none());
}
