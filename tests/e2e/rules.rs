//! Topic rules (`[[rules]]`), after the AWS IoT rules engine: JSON telemetry
//! published over MQTT is selected, filtered and routed to an SQS queue, an
//! SNS topic or another MQTT topic.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use tether_e2e::aws::{
    create_queue, create_topic, drain_bodies, receive_n, receive_one, sqs, sqs_client,
    subscribe_queue,
};
use tether_e2e::mqtt::v4;
use tether_e2e::{Gateway, tether_bin, wait_with_timeout};

/// The rule of the AWS IoT documentation's example, feeding queue `hot-readings`.
const HOT_TO_QUEUE: &str = r#"
[[rules]]
name = "hot-to-queue"
sql = "SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temperature > 50"
actions = [{ sqs = { queue = "hot-readings" } }]
"#;

async fn queue_url(c: &sqs::Client, name: &str) -> String {
    c.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the rule's queue {name} exists at start-up: {e:?}"))
        .queue_url
        .expect("QueueUrl")
}

async fn device(gw: &Gateway, id: &str) -> v4::Client {
    v4::Client::connect(v4::options(gw.mqtt_addr(), id)).await
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Bodies arriving in `url` up to and including one that satisfies `last`
/// (deleting them), then whatever else the queue still holds.
async fn bodies_until(
    c: &sqs::Client,
    url: &str,
    last: impl Fn(&Value) -> bool,
) -> (Vec<Value>, Vec<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sentinel never arrived; got {got:?}"
        );
        let batch = receive_n(c, url, 1, Duration::from_secs(2)).await;
        let done = batch
            .iter()
            .any(|m| last(&parse(m.body.as_deref().unwrap_or(""))));
        got.extend(batch.iter().map(|m| parse(m.body.as_deref().unwrap_or(""))));
        if done {
            break;
        }
    }
    (got, drain_bodies(c, url).await)
}

#[tokio::test]
async fn hot_reading_reaches_the_sqs_queue_with_the_selected_fields() {
    let gw = Gateway::builder().config(HOT_TO_QUEUE).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "hot-readings").await;
    let mut dev = device(&gw, "sensor-42").await;
    dev.publish_acked(
        "sensors/42/telemetry",
        r#"{"temperature": 71.5, "humidity": 30}"#,
    )
    .await;
    let m = receive_one(&c, &url).await;
    assert_eq!(
        parse(m.body.as_deref().unwrap()),
        json!({"temperature": 71.5, "device": "42"})
    );
}

#[tokio::test]
async fn reading_that_fails_the_where_clause_produces_nothing() {
    let gw = Gateway::builder().config(HOT_TO_QUEUE).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "hot-readings").await;
    let mut dev = device(&gw, "sensor-42").await;
    dev.publish_acked("sensors/42/telemetry", r#"{"temperature": 20}"#)
        .await;
    dev.publish_acked("sensors/42/telemetry", r#"{"humidity": 99}"#)
        .await;
    dev.publish_acked("sensors/42/telemetry", r#"{"temperature": "hot"}"#)
        .await;
    // Hot, but on a topic the rule does not select.
    dev.publish_acked("sensors/42/status", r#"{"temperature": 99}"#)
        .await;
    dev.publish_acked("sensors/42/telemetry", r#"{"temperature": 51}"#)
        .await;
    let (got, rest) = bodies_until(&c, &url, |v| v["temperature"] == 51).await;
    assert_eq!(got, vec![json!({"temperature": 51, "device": "42"})]);
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn non_json_payload_produces_nothing() {
    let gw = Gateway::builder().config(HOT_TO_QUEUE).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "hot-readings").await;
    let mut dev = device(&gw, "sensor-42").await;
    dev.publish_acked("sensors/42/telemetry", "temperature=99")
        .await;
    dev.publish_acked("sensors/42/telemetry", vec![0xff, 0x00, 0x7b])
        .await;
    dev.publish_acked("sensors/42/telemetry", "[99]").await;
    dev.publish_acked("sensors/42/telemetry", r#"{"temperature": 60}"#)
        .await;
    let (got, rest) = bodies_until(&c, &url, |v| v["temperature"] == 60).await;
    assert_eq!(got, vec![json!({"temperature": 60, "device": "42"})]);
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn sns_action_reaches_the_topics_sqs_subscriber() {
    let config = r#"
[[rules]]
name = "hot-to-topic"
sql = "SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temperature > 50"
actions = [{ sns = { topic = "overheating" } }]
"#;
    let gw = Gateway::builder().config(config).start();
    let http = gw.http.unwrap();
    let (q, t) = (sqs_client(http), tether_e2e::aws::sns_client(http));
    // The rule's topic exists from start-up; CreateTopic returns it.
    let topic = create_topic(&t, "overheating").await;
    let url = create_queue(&q, "pager", &[]).await;
    subscribe_queue(&t, &topic, "pager", &[]).await;
    let mut dev = device(&gw, "sensor-7").await;
    dev.publish_acked("sensors/7/telemetry", r#"{"temperature": 88}"#)
        .await;
    let envelope = parse(receive_one(&q, &url).await.body.as_deref().unwrap());
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], topic);
    assert_eq!(
        parse(envelope["Message"].as_str().expect("Message")),
        json!({"temperature": 88, "device": "7"})
    );
}

#[tokio::test]
async fn republish_action_substitutes_topic_levels_for_an_mqtt_subscriber() {
    let config = r#"
[[rules]]
name = "hot-to-alerts"
sql = "SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temperature > 50"
actions = [{ republish = { topic = "alerts/${topic(2)}" } }]
"#;
    let gw = Gateway::builder().config(config).start();
    let mut watcher = device(&gw, "watcher").await;
    watcher.subscribe("alerts/#", v4::QoS::AtLeastOnce).await;
    let mut dev = device(&gw, "sensor-42").await;
    dev.publish_acked("sensors/42/telemetry", r#"{"temperature": 20}"#)
        .await;
    dev.publish_acked("sensors/42/telemetry", r#"{"temperature": 71.5}"#)
        .await;
    let p = watcher.expect().await;
    assert_eq!(p.topic, "alerts/42");
    assert_eq!(
        parse(std::str::from_utf8(&p.payload).unwrap()),
        json!({"temperature": 71.5, "device": "42"})
    );
    watcher.expect_none(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn rule_with_several_actions_feeds_each_of_them() {
    let config = r#"
[[rules]]
name = "fan-out"
sql = "SELECT * FROM 'sensors/+/telemetry' WHERE temperature > 50"
actions = [
  { sqs = { queue = "hot-readings" } },
  { republish = { topic = "alerts/${topic(2)}/${clientid()}" } },
]
"#;
    let gw = Gateway::builder().config(config).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "hot-readings").await;
    let mut watcher = device(&gw, "watcher").await;
    watcher.subscribe("alerts/#", v4::QoS::AtLeastOnce).await;
    let mut dev = device(&gw, "sensor-9").await;
    dev.publish_acked("sensors/9/telemetry", r#"{"temperature": 60, "unit": "C"}"#)
        .await;
    let want = json!({"temperature": 60, "unit": "C"});
    assert_eq!(
        parse(receive_one(&c, &url).await.body.as_deref().unwrap()),
        want
    );
    let p = watcher.expect().await;
    assert_eq!(p.topic, "alerts/9/sensor-9");
    assert_eq!(parse(std::str::from_utf8(&p.payload).unwrap()), want);
}

#[tokio::test]
async fn where_clause_combines_and_or_not() {
    let config = r#"
[[rules]]
name = "logic"
sql = "SELECT id FROM 'plant/+/status' WHERE (temperature > 50 OR pressure >= 3) AND NOT maintenance = true"
actions = [{ sqs = { queue = "logic" } }]
"#;
    let gw = Gateway::builder().config(config).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "logic").await;
    let mut dev = device(&gw, "plc-1").await;
    for body in [
        json!({"id": "hot", "temperature": 60, "pressure": 1, "maintenance": false}),
        json!({"id": "pressed", "temperature": 10, "pressure": 3, "maintenance": false}),
        json!({"id": "in-maintenance", "temperature": 60, "pressure": 5, "maintenance": true}),
        json!({"id": "calm", "temperature": 10, "pressure": 1, "maintenance": false}),
        json!({"id": "end", "temperature": 99, "pressure": 9, "maintenance": false}),
    ] {
        dev.publish_acked("plant/1/status", body.to_string()).await;
    }
    let (got, rest) = bodies_until(&c, &url, |v| v["id"] == "end").await;
    let ids: Vec<&str> = got.iter().filter_map(|v| v["id"].as_str()).collect();
    assert_eq!(ids, vec!["hot", "pressed", "end"]);
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn clientid_timestamp_topic_and_string_functions_fill_the_result() {
    let config = r#"
[[rules]]
name = "functions"
sql = "SELECT clientid() AS who, timestamp() AS at, topic() AS t, upper(site) AS site, (watts - 1000) / 1000 AS kw FROM 'meters/#'"
actions = [{ sqs = { queue = "metering" } }]
"#;
    let gw = Gateway::builder().config(config).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "metering").await;
    let mut dev = device(&gw, "meter-7").await;
    let before = now_ms();
    dev.publish_acked("meters/7/power", r#"{"site": "north", "watts": 3500}"#)
        .await;
    let after = now_ms();
    let v = parse(receive_one(&c, &url).await.body.as_deref().unwrap());
    assert_eq!(v["who"], "meter-7");
    assert_eq!(v["t"], "meters/7/power");
    assert_eq!(v["site"], "NORTH");
    assert_eq!(v["kw"], 2.5);
    let at = v["at"].as_u64().expect("timestamp() is a number");
    assert!(
        (before.saturating_sub(1000)..=after + 1000).contains(&at),
        "timestamp() {at} is not the publish time ({before}..{after})"
    );
}

#[tokio::test]
async fn select_star_with_nested_field_paths() {
    let config = r#"
[[rules]]
name = "nested"
sql = "SELECT *, reading.value AS v FROM 'things/+/shadow' WHERE reading.unit = 'C' AND reading.value >= 30"
actions = [{ sqs = { queue = "nested" } }]
"#;
    let gw = Gateway::builder().config(config).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "nested").await;
    let mut dev = device(&gw, "thing-1").await;
    let cold = json!({"reading": {"unit": "C", "value": 12}, "n": 1});
    let wrong_unit = json!({"reading": {"unit": "F", "value": 90}, "n": 2});
    let hot = json!({"reading": {"unit": "C", "value": 31}, "n": 3});
    for body in [&cold, &wrong_unit, &hot] {
        dev.publish_acked("things/1/shadow", body.to_string()).await;
    }
    let (got, rest) = bodies_until(&c, &url, |v| v["n"] == 3).await;
    assert_eq!(
        got,
        vec![json!({"reading": {"unit": "C", "value": 31}, "n": 3, "v": 31})]
    );
    assert!(rest.is_empty(), "{rest:?}");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Runs the binary with `config` as its file; returns the exit code and
/// everything it printed.
fn run_with_config(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(tether_bin())
        .env_clear()
        .env("TETHER_STORAGE__PATH", dir.path().join("data"))
        .env("TETHER_MQTT__LISTEN", "127.0.0.1:0")
        .env("TETHER_AMQP__LISTEN", "127.0.0.1:0")
        .env("TETHER_HTTP__LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (status.code().unwrap_or(-1), text)
}

fn assert_one_line_naming(text: &str, needles: &[&str]) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{text}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "`{needle}` missing: {}",
            lines[0]
        );
    }
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn rule_with_a_syntax_error_refuses_to_start_naming_the_rule_and_the_position() {
    let sql = "SELECT temperature FROM sensors/+/telemetry";
    let position = sql.find("sensors").unwrap();
    let config = format!(
        "[[rules]]\nname = \"broken-rule\"\nsql = \"{sql}\"\nactions = [{{ sqs = {{ queue = \"q\" }} }}]\n"
    );
    let (code, text) = run_with_config(&config);
    assert_ne!(code, 0, "{text}");
    assert_one_line_naming(&text, &["broken-rule", &format!("position {position}")]);
}

#[test]
fn rule_ending_too_early_refuses_to_start_with_the_position_of_the_end() {
    let sql = "SELECT temperature FROM 'sensors/#' WHERE temperature >";
    let config = format!(
        "[[rules]]\nname = \"cut-short\"\nsql = \"{sql}\"\nactions = [{{ sqs = {{ queue = \"q\" }} }}]\n"
    );
    let (code, text) = run_with_config(&config);
    assert_ne!(code, 0, "{text}");
    assert_one_line_naming(&text, &["cut-short", &format!("position {}", sql.len())]);
}

#[test]
fn rule_with_an_invalid_topic_filter_refuses_to_start() {
    let config = "[[rules]]\nname = \"bad-filter\"\nsql = \"SELECT * FROM 'a/#/b'\"\nactions = [{ sqs = { queue = \"q\" } }]\n";
    let (code, text) = run_with_config(config);
    assert_ne!(code, 0, "{text}");
    assert_one_line_naming(&text, &["bad-filter", "a/#/b"]);
}

/// Rules see every publish to `amq.topic`, whichever protocol made it: an AMQP
/// application publishing with routing key `sensors.42.telemetry` is evaluated
/// like a device publishing to `sensors/42/telemetry`.
#[tokio::test]
async fn amqp_publish_to_amq_topic_is_evaluated_by_rules() {
    use tether_e2e::amqp::*;
    let gw = Gateway::builder().config(HOT_TO_QUEUE).start();
    let c = sqs_client(gw.http.unwrap());
    let url = queue_url(&c, "hot-readings").await;
    let (_conn, ch) = channel(gw.amqp.unwrap()).await;
    ch.basic_publish(
        "amq.topic".into(),
        "sensors.42.telemetry".into(),
        BasicPublishOptions::default(),
        br#"{"temperature": 88}"#,
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let m = receive_one(&c, &url).await;
    assert_eq!(
        parse(m.body.as_deref().unwrap()),
        json!({"temperature": 88, "device": "42"})
    );
}
