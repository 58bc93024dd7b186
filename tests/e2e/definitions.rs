//! Definitions as code (`definitions.file`, `/api/definitions`) and the
//! runtime users and ACL (`/api/users`, `/api/acl`), against real gateways
//! with the AWS SDK, lapin and rumqttc.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use rumqttc::SubscribeReasonCode;
use tether_e2e::amqp::{channel, consume, next, publish};
use tether_e2e::aws::{
    queue_arn, queue_attribute, receive, receive_one, sns_attribute, sns_client, sqs, sqs_client,
};
use tether_e2e::mqtt::v4::{self, Client, ConnectReturnCode, QoS};
use tether_e2e::{Gateway, tether_bin, wait_with_timeout};

/// The example password `device-secret` (the device-commands example's default).
const DEVICE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$9R4RP2altarjIwlroN0EEA$r/lMwextdrMgDzqnQvAqv0MTcdN9fwLxGeQnwBsBXdU";

/// One of everything: an SQS queue dead-lettering into another, an AMQP
/// exchange, queue and binding, an SNS topic with a filtered SQS
/// subscription, a rule, a user and its ACL.
fn definitions() -> String {
    format!(
        r##"
acl_default = "deny"

[[queues]]
name = "orders-dlq"
attributes = {{}}

[[queues]]
name = "orders"
attributes = {{ VisibilityTimeout = 30, RedrivePolicy = {{ deadLetterTargetArn = "orders-dlq", maxReceiveCount = 2 }} }}

[[exchanges]]
name = "logs"
type = "direct"

[[queues]]
name = "errors"
arguments = {{ "x-max-length" = 100 }}

[[bindings]]
source = "logs"
destination = "errors"
routing_key = "error"

[[topics]]
name = "signups"

[[queues]]
name = "pro-signups"
attributes = {{}}

[[subscriptions]]
topic = "signups"
protocol = "sqs"
endpoint = "pro-signups"
attributes = {{ RawMessageDelivery = true, FilterPolicy = {{ plan = ["pro"] }} }}

[[rules]]
name = "hot"
sql = "SELECT temperature FROM 'sensors/+/t' WHERE temperature > 50"
actions = [{{ sqs = {{ queue = "hot-readings" }} }}]

[[users]]
name = "device"
password_hash = "{DEVICE_HASH}"

[[users]]
name = "watcher"
password_hash = "{DEVICE_HASH}"
tags = ["monitoring"]

[[acl]]
user = "device"
action = "all"
topic = "devices/%c/#"

[[acl]]
user = "watcher"
action = "all"
topic = "#"

[[acl]]
action = "publish"
topic = "sensors/#"
"##
    )
}

/// A definitions file in a directory the caller keeps alive.
fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the definitions file");
    path
}

fn start_with(file: &Path) -> Gateway {
    Gateway::builder()
        .env("TETHER_DEFINITIONS__FILE", file.display())
        .start()
}

fn start_defined() -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "definitions.toml", &definitions());
    (start_with(&file), dir)
}

/// `guest:guest`, accepted by the admin guard from loopback peers while no
/// administrator is configured.
const ADMIN_AUTH: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

/// One admin API request (JSON body, admin credential); status and body.
async fn api(gw: &Gateway, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.http.expect("http listener");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: {ADMIN_AUTH}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("a response within 20 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked response: {head}"
    );
    (status, body.to_owned())
}

async fn api_json(gw: &Gateway, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, text) = api(gw, method, path, body).await;
    assert_eq!(status, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn queue_url(c: &sqs::Client, name: &str) -> String {
    c.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue {name} exists: {e:?}"))
        .queue_url
        .expect("QueueUrl")
}

async fn mqtt(gw: &Gateway, id: &str, login: Option<(&str, &str)>) -> Client {
    let mut o = v4::options(gw.mqtt_addr(), id);
    if let Some((user, password)) = login {
        o.set_credentials(user, password);
    }
    Client::connect(o).await
}

/// The refusal code of a login attempt that must be refused.
async fn refused_login(gw: &Gateway, id: &str, user: &str, password: &str) -> ConnectReturnCode {
    let mut o = v4::options(gw.mqtt_addr(), id);
    o.set_credentials(user, password);
    let (_client, mut eventloop) = v4::AsyncClient::new(o, 10);
    match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
        Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => code,
        other => panic!("expected a refused CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defined_sqs_queue_has_its_attributes_and_dead_letters_after_max_receive_count() {
    let (gw, _dir) = start_defined();
    let c = sqs_client(gw.http.unwrap());
    let orders = queue_url(&c, "orders").await;
    let dlq = queue_url(&c, "orders-dlq").await;
    assert_eq!(
        queue_attribute(&c, &orders, "VisibilityTimeout")
            .await
            .as_deref(),
        Some("30")
    );
    let policy: Value = serde_json::from_str(
        &queue_attribute(&c, &orders, "RedrivePolicy")
            .await
            .expect("RedrivePolicy"),
    )
    .unwrap();
    assert_eq!(
        policy,
        json!({"deadLetterTargetArn": queue_arn("orders-dlq"), "maxReceiveCount": 2})
    );
    c.send_message()
        .queue_url(&orders)
        .message_body("poison")
        .send()
        .await
        .unwrap();
    for n in 1..=2 {
        let got = receive(&c, &orders, 1, 1).await;
        assert_eq!(got.len(), 1, "receive {n}");
        c.change_message_visibility()
            .queue_url(&orders)
            .receipt_handle(got[0].receipt_handle.clone().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    assert!(
        receive(&c, &orders, 1, 0).await.is_empty(),
        "the third receive moves the message instead of delivering it"
    );
    let dead = receive_one(&c, &dlq).await;
    assert_eq!(dead.body.as_deref(), Some("poison"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defined_exchange_queue_and_binding_route_amqp_messages() {
    let (gw, _dir) = start_defined();
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    let mut consumer = consume(&ch, "errors", "c1", true).await;
    publish(&ch, "logs", "error", b"disk full").await;
    publish(&ch, "logs", "info", b"all good").await;
    publish(&ch, "logs", "error", b"disk still full").await;
    let first = next(&mut consumer, Duration::from_secs(5))
        .await
        .expect("a message");
    let second = next(&mut consumer, Duration::from_secs(5))
        .await
        .expect("a message");
    assert_eq!(first.data, b"disk full");
    assert_eq!(
        second.data, b"disk still full",
        "only the bound key reaches the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defined_subscription_delivers_what_its_filter_policy_passes() {
    let (gw, _dir) = start_defined();
    let t = sns_client(gw.http.unwrap());
    let c = sqs_client(gw.http.unwrap());
    let topic = "arn:aws:sns:us-east-1:000000000000:signups";
    for (plan, body) in [("free", "ann"), ("pro", "bob")] {
        t.publish()
            .topic_arn(topic)
            .message(body)
            .message_attributes("plan", sns_attribute("String", plan))
            .send()
            .await
            .unwrap_or_else(|e| panic!("Publish: {e:?}"));
    }
    let url = queue_url(&c, "pro-signups").await;
    let m = receive_one(&c, &url).await;
    assert_eq!(
        m.body.as_deref(),
        Some("bob"),
        "raw delivery of the pro signup"
    );
    assert!(
        receive(&c, &url, 10, 0).await.is_empty(),
        "the free signup was filtered out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defined_rule_routes_matching_telemetry() {
    let (gw, _dir) = start_defined();
    let c = sqs_client(gw.http.unwrap());
    // The rule's target queue is created with the rule.
    let url = queue_url(&c, "hot-readings").await;
    let mut sensor = mqtt(&gw, "s1", None).await;
    sensor
        .publish_acked("sensors/s1/t", r#"{"temperature": 20}"#)
        .await;
    sensor
        .publish_acked("sensors/s1/t", r#"{"temperature": 70}"#)
        .await;
    let m = receive_one(&c, &url).await;
    let body: Value = serde_json::from_str(m.body.as_deref().unwrap_or("")).unwrap();
    assert_eq!(body, json!({"temperature": 70}));
    assert!(
        receive(&c, &url, 10, 0).await.is_empty(),
        "the cool reading was not selected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defined_user_logs_in_and_its_acl_applies() {
    let (gw, _dir) = start_defined();
    assert_eq!(
        refused_login(&gw, "d1", "device", "wrong").await,
        ConnectReturnCode::BadUserNamePassword
    );
    let mut watcher = mqtt(&gw, "watch", Some(("watcher", "device-secret"))).await;
    watcher.subscribe("devices/#", QoS::AtLeastOnce).await;
    let mut d1 = mqtt(&gw, "d1", Some(("device", "device-secret"))).await;
    assert_eq!(
        d1.subscribe("devices/d2/#", QoS::AtLeastOnce).await,
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(
        d1.subscribe("devices/d1/#", QoS::AtLeastOnce).await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // 3.1.1 acknowledges a denied publish and drops it: the watcher's first
    // message is the allowed one published after it.
    d1.publish_acked("devices/d2/x", "not mine").await;
    d1.publish_acked("devices/d1/x", "mine").await;
    let p = watcher.expect().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("devices/d1/x", &b"mine"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_apply_with_the_http_listener_off() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "definitions.toml", &definitions());
    let gw = Gateway::builder()
        .env("TETHER_HTTP__LISTEN", "")
        .env("TETHER_DEFINITIONS__FILE", file.display())
        .start();
    assert!(gw.http.is_none());
    let applied =
        regex::Regex::new(r"definitions applied: created 11, updated 1, unchanged 0").unwrap();
    assert!(
        gw.log()
            .wait_for(&applied, Duration::from_secs(1))
            .is_some(),
        "{}",
        gw.log().text()
    );
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    let mut consumer = consume(&ch, "errors", "c1", true).await;
    publish(&ch, "logs", "error", b"disk full").await;
    let got = next(&mut consumer, Duration::from_secs(5))
        .await
        .expect("a message");
    assert_eq!(got.data, b"disk full");
    // The SNS subscription routes AMQP publishes to the topic's exchange too.
    let mut pro = consume(&ch, "pro-signups", "c2", true).await;
    let headers = tether_e2e::amqp::table(&[("plan", tether_e2e::amqp::long_str("pro"))]);
    tether_e2e::amqp::publish_with(
        &ch,
        "signups",
        "",
        b"carol",
        tether_e2e::amqp::BasicProperties::default().with_headers(headers),
    )
    .await;
    let got = next(&mut pro, Duration::from_secs(5))
        .await
        .expect("a message");
    assert_eq!(got.data, b"carol");
}

/// Runs the binary until it exits (it must, promptly); exit code and output.
fn run_until_exit(env: &[(&str, &str)]) -> (i32, String) {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(tether_bin());
    cmd.env_clear()
        .env("TETHER_STORAGE__PATH", data.path())
        .env("TETHER_MQTT__LISTEN", "127.0.0.1:0")
        .env("TETHER_AMQP__LISTEN", "127.0.0.1:0")
        .env("TETHER_HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tether");
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (status.code().unwrap_or(-1), text)
}

#[test]
fn invalid_definitions_file_refuses_to_start_with_the_entry_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "definitions.toml",
        r#"
[[queues]]
name = "orders"
attributes = { RedrivePolicy = { deadLetterTargetArn = "orders-dlq", maxReceiveCount = 3 } }
"#,
    );
    let (code, text) = run_until_exit(&[("TETHER_DEFINITIONS__FILE", &file.display().to_string())]);
    assert_eq!(code, 2, "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [format!(
            r#"tether: {}: queues[0].attributes.RedrivePolicy: dead-letter queue "orders-dlq" is not defined"#,
            file.display()
        )]
    );
    // A key the document does not know is refused the same way.
    let file = write_file(
        dir.path(),
        "typo.json",
        r#"{"queues": [{"name": "q", "durable": true, "ttl": 5}]}"#,
    );
    let (code, text) = run_until_exit(&[("TETHER_DEFINITIONS__FILE", &file.display().to_string())]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("queues[0].ttl: unknown field `ttl`"),
        "{text}"
    );
    assert_eq!(text.trim().lines().count(), 1, "{text}");
}

/// The definitions file applied again at a restart with the stored state
/// changes nothing and duplicates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_the_same_file_and_store_changes_nothing() {
    let (mut gw, dir) = start_defined();
    let applied =
        regex::Regex::new(r"definitions applied: created (\d+), updated (\d+), unchanged (\d+)")
            .unwrap();
    let first = gw
        .log()
        .wait_for(&applied, Duration::from_secs(1))
        .expect("summary line");
    // 4 queues, an exchange, a binding, a topic, a subscription, a rule and
    // 2 users created; the ACL (which always exists) replaced.
    assert_eq!(&first[1..], ["11", "1", "0"]);
    let before = api_json(&gw, "GET", "/api/definitions", None).await;
    assert!(gw.terminate().success());
    let file = dir.path().join("definitions.toml");
    let gw = Gateway::builder()
        .env("TETHER_DEFINITIONS__FILE", file.display())
        .data_dir(gw.data.clone())
        .start();
    let second = gw
        .log()
        .wait_for(&applied, Duration::from_secs(1))
        .expect("summary line");
    assert_eq!(&second[1..], ["0", "0", "12"]);
    let after = api_json(&gw, "GET", "/api/definitions", None).await;
    assert_eq!(before, after);
    let t = sns_client(gw.http.unwrap());
    let subs = t
        .list_subscriptions()
        .send()
        .await
        .unwrap()
        .subscriptions
        .unwrap_or_default();
    assert_eq!(subs.len(), 1, "{subs:?}");
    let c = sqs_client(gw.http.unwrap());
    let queues = c
        .list_queues()
        .send()
        .await
        .unwrap()
        .queue_urls
        .unwrap_or_default();
    assert_eq!(queues.len(), 5, "{queues:?}");
}

/// Export, start a fresh gateway with the export as its definitions file,
/// export again: the same document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_applied_to_a_fresh_gateway_exports_the_same_document() {
    let (gw, dir) = start_defined();
    // Some state made over the protocols, not the document, is exported too.
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    tether_e2e::amqp::declare_exchange(&ch, "audit", tether_e2e::amqp::ExchangeKind::Fanout).await;
    let c = sqs_client(gw.http.unwrap());
    tether_e2e::aws::create_queue(
        &c,
        "jobs.fifo",
        &[
            ("FifoQueue", "true"),
            ("DelaySeconds", "0"),
            ("ContentBasedDeduplication", "true"),
        ],
    )
    .await;
    let first = api_json(&gw, "GET", "/api/definitions", None).await;
    assert!(
        first["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["password_hash"]
                .as_str()
                .is_some_and(|h| h.starts_with("$argon2"))),
        "users are exported with hashes only: {first}"
    );
    assert!(!first.to_string().contains("device-secret"));
    let file = write_file(dir.path(), "export.json", &first.to_string());
    let fresh = start_with(&file);
    let second = api_json(&fresh, "GET", "/api/definitions", None).await;
    assert_eq!(first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_posted_to_the_api_apply_and_bad_ones_name_the_entry() {
    let gw = Gateway::start();
    let doc = json!({
        "queues": [{"name": "inbox", "attributes": {"DelaySeconds": 1}}],
        "topics": [{"name": "news"}],
        "subscriptions": [{"topic": "news", "protocol": "sqs", "endpoint": "inbox"}]
    });
    let summary = api_json(&gw, "POST", "/api/definitions", Some(&doc)).await;
    assert_eq!(summary, json!({"created": 3, "updated": 0, "unchanged": 0}));
    let summary = api_json(&gw, "POST", "/api/definitions", Some(&doc)).await;
    assert_eq!(summary, json!({"created": 0, "updated": 0, "unchanged": 3}));
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "inbox").await;
    assert_eq!(
        queue_attribute(&c, &url, "DelaySeconds").await.as_deref(),
        Some("1")
    );

    let (status, toml) = api(&gw, "GET", "/api/definitions?format=toml", None).await;
    assert_eq!(status, 200, "{toml}");
    assert!(
        toml.contains("[[queues]]\nvhost = \"/\"\nname = \"inbox\""),
        "{toml}"
    );

    let bad = json!({"bindings": [{"source": "amq.topic", "destination": "nowhere", "routing_key": "a"}]});
    let (status, body) = api(&gw, "POST", "/api/definitions", Some(&bad)).await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "invalid_definitions");
    assert_eq!(body["path"], "bindings[0].destination");
    assert_eq!(
        body["message"],
        r#"bindings[0].destination: queue "nowhere" is not defined in vhost "/""#
    );
    let flipped = json!({"queues": [{"name": "inbox"}]});
    let (status, body) = api(&gw, "POST", "/api/definitions", Some(&flipped)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("exists as an SQS queue"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_posted_at_runtime_applies_to_the_next_publish() {
    let gw = Gateway::start();
    let mut sensor = mqtt(&gw, "s1", None).await;
    let doc = json!({"rules": [{
        "name": "hot",
        "sql": "SELECT temperature FROM 'sensors/+/t' WHERE temperature > 50",
        "actions": [{"sqs": {"queue": "hot-readings"}}]
    }]});
    let summary = api_json(&gw, "POST", "/api/definitions", Some(&doc)).await;
    assert_eq!(summary, json!({"created": 1, "updated": 0, "unchanged": 0}));
    // A connection opened before the rule existed is subject to it too.
    sensor
        .publish_acked("sensors/s1/t", r#"{"temperature": 90}"#)
        .await;
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "hot-readings").await;
    let m = receive_one(&c, &url).await;
    assert_eq!(m.body.as_deref(), Some(r#"{"temperature":90}"#));
    let exported = api_json(&gw, "GET", "/api/definitions", None).await;
    assert_eq!(exported["rules"][0]["name"], "hot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_added_over_the_api_logs_in_at_once_and_after_a_restart() {
    let mut gw = Gateway::builder()
        .config("[auth]\nallow_anonymous = false\n")
        .start();
    assert_eq!(
        refused_login(&gw, "n1", "newbie", "pw-1").await,
        ConnectReturnCode::BadUserNamePassword
    );
    let body = json!({"password": "pw-1", "tags": ["monitoring"]});
    let (status, text) = api(&gw, "PUT", "/api/users/newbie", Some(&body)).await;
    assert_eq!(status, 204, "{text}");
    mqtt(&gw, "n1", Some(("newbie", "pw-1"))).await;
    let users = api_json(&gw, "GET", "/api/users", None).await;
    assert_eq!(
        users,
        json!([{"name": "newbie", "tags": ["monitoring"]}]),
        "no hashes listed"
    );
    let (status, text) = api(
        &gw,
        "PUT",
        "/api/users/newbie",
        Some(&json!({"password": ""})),
    )
    .await;
    assert_eq!(
        (status, text.contains("bad_request")),
        (400, true),
        "{text}"
    );

    // Runtime users are stored: they survive a restart.
    assert!(gw.terminate().success());
    let gw = Gateway::builder()
        .config("[auth]\nallow_anonymous = false\n")
        .data_dir(gw.data.clone())
        .start();
    mqtt(&gw, "n2", Some(("newbie", "pw-1"))).await;
    let (status, _) = api(&gw, "DELETE", "/api/users/newbie", None).await;
    assert_eq!(status, 204);
    assert_eq!(
        refused_login(&gw, "n3", "newbie", "pw-1").await,
        ConnectReturnCode::BadUserNamePassword
    );
    let (status, _) = api(&gw, "DELETE", "/api/users/newbie", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_put_over_the_api_governs_new_connections() {
    let gw = Gateway::start();
    // Connected before the change: no rules, so it may watch everything.
    let mut watcher = mqtt(&gw, "watch", None).await;
    watcher.subscribe("#", QoS::AtLeastOnce).await;
    let acl = json!({
        "rules": [{"action": "publish", "topic": "open/#"}],
        "default": "deny"
    });
    let (status, text) = api(&gw, "PUT", "/api/acl", Some(&acl)).await;
    assert_eq!(status, 204, "{text}");
    let got = api_json(&gw, "GET", "/api/acl", None).await;
    assert_eq!(
        got,
        json!({"rules": [{"action": "publish", "topic": "open/#", "effect": "allow"}], "default": "deny"})
    );
    let mut c = mqtt(&gw, "after", None).await;
    c.publish_acked("closed/x", "denied").await;
    c.publish_acked("open/x", "allowed").await;
    let p = watcher.expect().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("open/x", &b"allowed"[..])
    );
    let bad = json!({"rules": [{"action": "publish", "topic": "a/#/b"}]});
    let (status, text) = api(&gw, "PUT", "/api/acl", Some(&bad)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("rules[0].topic"), "{text}");
}
