//! Smoke runs of the programs in `examples/`: each is started as a user would
//! run it (the built example binary, with small numbers), against a gateway on
//! its embedded defaults (the README's first command; sensor-fleet and
//! device-commands install their rule, user and ACL through the admin API),
//! and the test checks the outcome the example exists to show — from its output and,
//! where there is something to look at, from the gateway afterwards.
//!
//! The binaries come from `cargo build -p tether-examples --examples`
//! (`scripts/test` runs it; `TETHER_EXAMPLES_DIR` points elsewhere).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use tether_e2e::Gateway;
use tether_e2e::aws::{drain_bodies, message_counts, sqs, sqs_client};
use tether_e2e::examples::{ExampleRun, address_flags};

/// Generous: the examples finish in seconds, but CI machines are shared.
const RUN: Duration = Duration::from_secs(90);

fn gateway() -> Gateway {
    Gateway::start()
}

/// Address flags for the `which` listeners, then `extra`.
fn flags(gw: &Gateway, which: &[&str], extra: &[&str]) -> Vec<String> {
    let mut f = address_flags(gw, which);
    f.extend(extra.iter().map(|s| (*s).to_owned()));
    f
}

async fn queue_url(c: &sqs::Client, name: &str) -> String {
    c.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue {name}: {e:?}"))
        .queue_url
        .expect("QueueUrl")
}

/// Messages a queue still holds, waiting or in flight.
async fn held(c: &sqs::Client, name: &str) -> u64 {
    let url = queue_url(c, name).await;
    let (visible, in_flight, delayed) = message_counts(c, &url).await;
    visible + in_flight + delayed
}

/// The numbers of a line such as `progress: 154 readings sent, 13 hot, 13 alerts seen`.
fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[tokio::test]
async fn sensor_fleet_turns_every_hot_reading_into_one_alert() {
    let gw = gateway();
    let out = ExampleRun::start(
        "sensor-fleet",
        &flags(
            &gw,
            &["mqtt", "http"],
            &["--devices", "10", "--seconds", "3", "--interval-ms", "100"],
        ),
    )
    .succeeds(RUN);

    let last = out
        .lines()
        .rfind(|l| l.starts_with("progress:"))
        .unwrap_or_else(|| panic!("no progress line:\n{out}"));
    let [sent, hot, alerts] = numbers(last)[..] else {
        panic!("unexpected progress line: {last}");
    };
    // 10 devices × 3 s × 10 readings/s, one in ten hot on average.
    assert!(sent >= 200, "{sent} readings sent:\n{out}");
    assert!(hot > 0, "no hot reading in {sent}:\n{out}");
    assert_eq!(alerts, hot, "{out}");
    assert!(
        out.contains("every hot reading became exactly one alert"),
        "{out}"
    );
    let alert_lines = out
        .lines()
        .filter(|l| l.starts_with("ALERT sensor-"))
        .count();
    assert_eq!(alert_lines as u64, hot, "{out}");

    // The worker deleted every alert it printed.
    let c = sqs_client(gw.http.unwrap());
    assert_eq!(held(&c, "fleet-alerts").await, 0);
}

#[tokio::test]
async fn examples_that_install_definitions_say_so_when_the_admin_api_refuses() {
    // A gateway with its own administrator: guest/guest is no longer accepted.
    let config = format!(
        "[[auth.users]]\nname = \"ops\"\npassword_hash = \"{}\"\ntags = [\"administrator\"]\n",
        tether_e2e::amqp::hash_password("ops-secret")
    );
    let gw = Gateway::builder().config(&config).start();
    let fleet = ExampleRun::start(
        "sensor-fleet",
        &flags(
            &gw,
            &["mqtt", "http"],
            &["--devices", "2", "--seconds", "1"],
        ),
    );
    let commands = ExampleRun::start(
        "device-commands",
        &flags(&gw, &["mqtt", "amqp", "http"], &[]),
    );
    for run in [fleet, commands] {
        let (status, out) = run.finish(Duration::from_secs(30));
        assert!(!status.success(), "{out}");
        assert!(
            out.contains("refused the credential of `guest`") && out.contains("--admin-user"),
            "no hint at the admin credential:\n{out}"
        );
        assert_eq!(out.lines().count(), 1, "more than one line:\n{out}");
    }
}

#[tokio::test]
async fn order_processing_dead_letters_the_order_that_fails_three_times() {
    let gw = gateway();
    let args = flags(
        &gw,
        &["amqp"],
        &["--orders", "40", "--workers", "3", "--work-ms", "10"],
    );
    let out = ExampleRun::start("order-processing", &args).succeeds(RUN);

    for attempt in 1..=3 {
        assert!(
            out.contains(&format!("order #13 payment declined (attempt {attempt})")),
            "attempt {attempt}:\n{out}"
        );
    }
    assert!(!out.contains("(attempt 4)"), "{out}");
    assert!(
        out.contains("DEAD-LETTERED order #13 (customer-13), x-death reason: delivery_limit"),
        "{out}"
    );
    assert!(out.contains("queue depth:"), "{out}");
    assert!(
        out.contains("done: 39 orders processed, 1 dead-lettered"),
        "{out}"
    );

    // Through the SQS API (every queue is an SQS queue): the work queue is
    // empty and the dead-letter queue holds order 13 and nothing else.
    let c = sqs_client(gw.http.unwrap());
    assert_eq!(held(&c, "orders").await, 0);
    let dead_url = queue_url(&c, "orders-dead-letters").await;
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead.extend(drain_bodies(&c, &dead_url).await);
        if !dead.is_empty() {
            break;
        }
        // The example's closing connection hands the unacknowledged dead
        // letter back to the queue.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    let order: Value = serde_json::from_str(&dead[0]).expect("JSON order");
    assert_eq!(order["order"], 13);
}

#[tokio::test]
async fn signup_fan_out_reaches_the_raw_the_filtered_and_the_webhook_subscriber() {
    let gw = gateway();
    let out = ExampleRun::start("signup-fan-out", &flags(&gw, &["http"], &[])).succeeds(RUN);

    let lines =
        |prefix: &str| -> Vec<&str> { out.lines().filter(|l| l.starts_with(prefix)).collect() };
    let emails = lines("email:");
    let analytics = lines("analytics:");
    let webhook = lines("webhook:");
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            emails.iter().filter(|l| l.contains(user)).count(),
            1,
            "{out}"
        );
        assert_eq!(
            webhook.iter().filter(|l| l.contains(user)).count(),
            1,
            "{out}"
        );
    }
    // The filter policy keeps paid plans only.
    assert_eq!(analytics.len(), 2, "{out}");
    assert!(!analytics.iter().any(|l| l.contains("alice")), "{out}");
    assert!(
        out.contains("done: email 3/3, analytics 2/2 (free plan filtered out), webhook 3/3"),
        "{out}"
    );
}

/// Reads the processor's file: every line once, per service counts.
fn check_log_file(path: &std::path::Path, per_service: usize) {
    let text = std::fs::read_to_string(path).expect("the log file");
    let mut ids = HashSet::new();
    let mut services: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line ({e}): {line}"));
        let id = entry["id"].as_str().expect("id").to_owned();
        assert!(ids.insert(id.clone()), "{id} written twice:\n{text}");
        *services
            .entry(entry["service"].as_str().expect("service").to_owned())
            .or_default() += 1;
    }
    let expected: HashMap<String, usize> = ["door-sensor", "billing", "web"]
        .iter()
        .map(|s| ((*s).to_owned(), per_service))
        .collect();
    assert_eq!(services, expected, "{text}");
}

#[tokio::test]
async fn central_logging_writes_every_line_exactly_once_across_a_stop() {
    let gw = gateway();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("central.log");
    let out = ExampleRun::start(
        "central-logging",
        &flags(
            &gw,
            &["mqtt", "amqp", "http"],
            &[
                "--lines",
                "30",
                "--visibility",
                "2",
                "--out",
                file.to_str().unwrap(),
            ],
        ),
    )
    .succeeds(RUN);

    assert!(
        out.contains("processor stopped after writing batch 3"),
        "{out}"
    );
    // The batch written but not deleted came back and was recognised.
    assert!(out.contains("already in the file"), "{out}");
    assert!(
        out.contains("verified: 90 lines from 3 services, each exactly once"),
        "{out}"
    );
    check_log_file(&file, 30);
    let c = sqs_client(gw.http.unwrap());
    assert_eq!(held(&c, "central-logs").await, 0);
}

#[tokio::test]
async fn central_logging_processor_killed_mid_stream_loses_nothing() {
    let gw = gateway();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("central.log");
    let file_flag = ["--out", file.to_str().unwrap(), "--visibility", "2"];

    // The services fill the queue.
    let mut services = flags(
        &gw,
        &["mqtt", "amqp", "http"],
        &["--role", "services", "--lines", "50"],
    );
    services.extend(file_flag.iter().map(|s| (*s).to_owned()));
    ExampleRun::start("central-logging", &services).succeeds(RUN);

    // A processor is killed with SIGKILL once it has written some batches
    // (and holds more in flight).
    let mut processor = flags(&gw, &["http"], &["--role", "processor"]);
    processor.extend(file_flag.iter().map(|s| (*s).to_owned()));
    let mut first = ExampleRun::start("central-logging", &processor);
    first.wait_for_line(r"wrote batch 3:", RUN);
    first.kill9();

    // A new one finishes the job.
    processor.push("--exit-when-drained".to_owned());
    let out = ExampleRun::start("central-logging", &processor).succeeds(RUN);
    assert!(out.contains("processor: done"), "{out}");
    check_log_file(&file, 50);
    let c = sqs_client(gw.http.unwrap());
    assert_eq!(held(&c, "central-logs").await, 0);
}

#[tokio::test]
async fn print_server_prints_every_upload_once_even_after_a_jam() {
    let gw = gateway();
    let out = ExampleRun::start(
        "print-server",
        &flags(
            &gw,
            &["http"],
            &["--images", "3", "--visibility", "2", "--print-ms", "50"],
        ),
    )
    .succeeds(RUN);

    for n in 1..=3 {
        let image = format!("photo-{n}.jpg");
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("printer: printed") && l.contains(&image))
                .count(),
            1,
            "{image}:\n{out}"
        );
        assert!(
            out.contains(&format!("thumbnailer: made a thumbnail of {image}")),
            "{image}:\n{out}"
        );
    }
    assert!(out.contains("paper jam on photo-2.jpg"), "{out}");
    // The jammed job was not deleted: it came back after the visibility timeout.
    assert!(out.contains("received photo-2.jpg (receive #2)"), "{out}");
    assert!(
        out.contains("done: 3/3 printed, 3/3 thumbnails, 0 jobs left in print-jobs"),
        "{out}"
    );
    let c = sqs_client(gw.http.unwrap());
    assert_eq!(held(&c, "print-jobs").await, 0);
}

#[tokio::test]
async fn device_commands_reach_only_their_device_and_replies_match() {
    let gw = gateway();
    let out = ExampleRun::start(
        "device-commands",
        &flags(
            &gw,
            &["mqtt", "amqp", "http"],
            &["--devices", "3", "--commands", "2"],
        ),
    )
    .succeeds(RUN);
    assert!(
        out.contains("installed the `device` user and its ACL rules"),
        "{out}"
    );

    assert!(
        out.contains("device-1 may not subscribe to cmd/+ (everyone's commands): refused"),
        "{out}"
    );
    for n in 1..=3 {
        let device = format!("device-{n}");
        let got = out
            .lines()
            .filter(|l| l.starts_with(&format!("{device}: got")))
            .count();
        assert_eq!(got, 2, "{device}:\n{out}");
        let answered = out
            .lines()
            .filter(|l| l.starts_with(&format!("backend: {device} answered")))
            .count();
        assert_eq!(answered, 2, "{device}:\n{out}");
    }
    assert!(
        out.contains("done: all 6 commands answered, each by the device it was sent to"),
        "{out}"
    );

    // A second run finds its user and rules in place and adds nothing.
    let again = ExampleRun::start(
        "device-commands",
        &flags(
            &gw,
            &["mqtt", "amqp", "http"],
            &["--devices", "1", "--commands", "1"],
        ),
    )
    .succeeds(RUN);
    assert!(
        again.contains("the `device` user and its ACL rules are in place"),
        "{again}"
    );
    let acl = tether_e2e::admin::Admin::guest(gw.http.unwrap())
        .get("/acl")
        .await;
    // The four device rules and the allow-everything-else rule.
    assert_eq!(acl["rules"].as_array().map(Vec::len), Some(5), "{acl}");
}
