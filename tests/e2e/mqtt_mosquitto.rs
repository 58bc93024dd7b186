//! Interoperability with Eclipse Mosquitto's command-line clients
//! (`mosquitto_pub`, `mosquitto_sub` from Debian's mosquitto-clients), over
//! MQTT 3.1.1 and 5.0, in both directions and alongside rumqttc.
//!
//! `mosquitto_sub` runs with `-d` under `stdbuf -oL`, so its "received SUBACK"
//! line tells the test when it is subscribed (no sleeps), and prints each
//! message as a `MSG ...` line chosen with `-F`. Every process has a `-W` or a
//! test-side timeout and is killed if the test fails.

use std::process::Stdio;
use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::mqtt::WAIT;
use tether_e2e::mqtt::v4::{self, Client, QoS};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";
/// Longest a mosquitto client may run (`-W` for mosquitto_sub).
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);
const TOOL_TIMEOUT_SECS: &str = "10";
/// Prefix of the lines mosquitto_sub prints for messages.
const MSG: &str = "MSG ";

/// Panics with instructions when `tool` is not installed.
fn require(tool: &str) {
    if let Err(e) = std::process::Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        panic!(
            "{tool} is not runnable ({e}): install mosquitto-clients \
             (`apt-get install -y mosquitto-clients`; scripts/test does)"
        );
    }
}

/// Arguments every mosquitto client gets: the gateway and the protocol version.
fn target(gw: &Gateway, version: &str) -> Vec<String> {
    let addr = gw.mqtt_addr();
    vec![
        "-h".into(),
        addr.ip().to_string(),
        "-p".into(),
        addr.port().to_string(),
        "-V".into(),
        version.into(),
    ]
}

/// Runs `mosquitto_pub` to completion and asserts it succeeded (for QoS 1 and
/// 2 that means the whole acknowledgement flow completed).
async fn mosquitto_pub(gw: &Gateway, version: &str, args: &[&str]) {
    require("mosquitto_pub");
    let out = tokio::time::timeout(
        TOOL_TIMEOUT,
        Command::new("mosquitto_pub")
            .args(target(gw, version))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("mosquitto_pub {args:?} did not finish"))
    .expect("spawn mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `mosquitto_sub`.
struct MosquittoSub {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every line printed so far (for failure messages).
    transcript: Vec<String>,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub` printing each message as `MSG <format>` and
    /// returns once the gateway has acknowledged its subscription.
    async fn start(gw: &Gateway, version: &str, format: &str, args: &[&str]) -> MosquittoSub {
        require("mosquitto_sub");
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg("mosquitto_sub")
            .args(target(gw, version))
            .args(["-d", "-W", TOOL_TIMEOUT_SECS, "-F"])
            .arg(format!("{MSG}{format}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn stdbuf mosquitto_sub");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut sub = MosquittoSub {
            child,
            stdout,
            transcript: Vec::new(),
        };
        loop {
            match sub.next_line(WAIT).await {
                Some(line) if line.contains("received SUBACK") => return sub,
                Some(_) => {}
                None => panic!(
                    "mosquitto_sub {args:?} got no SUBACK:\n{}",
                    sub.transcript.join("\n")
                ),
            }
        }
    }

    async fn next_line(&mut self, wait: Duration) -> Option<String> {
        let line = tokio::time::timeout(wait, self.stdout.next_line())
            .await
            .ok()?
            .ok()??;
        self.transcript.push(line.clone());
        Some(line)
    }

    /// Waits for the process to exit successfully (`-C` reached) and returns
    /// the message lines without their prefix.
    async fn finish(mut self) -> Vec<String> {
        while self.next_line(TOOL_TIMEOUT).await.is_some() {}
        let status = tokio::time::timeout(TOOL_TIMEOUT, self.child.wait())
            .await
            .expect("mosquitto_sub did not exit")
            .expect("wait mosquitto_sub");
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut stderr).await;
        }
        assert!(
            status.success(),
            "mosquitto_sub exited with {status} (27 = -W timeout):\n{}\n{stderr}",
            self.transcript.join("\n")
        );
        self.transcript
            .iter()
            .filter_map(|l| l.strip_prefix(MSG).map(str::to_owned))
            .collect()
    }
}

async fn rumqttc_subscriber(gw: &Gateway, filter: &str, qos: QoS) -> Client {
    let mut c = Client::connect(v4::options(gw.mqtt_addr(), "rumqttc-sub")).await;
    c.subscribe(filter, qos).await;
    c
}

// --- mosquitto_pub → rumqttc ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_v311_qos1_reaches_rumqttc_subscriber() {
    let gw = Gateway::start();
    let mut sub = rumqttc_subscriber(&gw, "interop/in", QoS::AtLeastOnce).await;
    mosquitto_pub(
        &gw,
        V311,
        &["-q", "1", "-t", "interop/in", "-m", "from mosquitto"],
    )
    .await;
    let p = sub.expect().await;
    assert_eq!(p.topic, "interop/in");
    assert_eq!(&p.payload[..], b"from mosquitto");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_v5_qos2_reaches_rumqttc_subscriber() {
    let gw = Gateway::start();
    let mut sub = rumqttc_subscriber(&gw, "interop/in", QoS::ExactlyOnce).await;
    mosquitto_pub(&gw, V5, &["-q", "2", "-t", "interop/in", "-m", "from v5"]).await;
    let p = sub.expect().await;
    assert_eq!(&p.payload[..], b"from v5");
    assert_eq!(p.qos, QoS::ExactlyOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_binary_file_payload_arrives_byte_for_byte() {
    let gw = Gateway::start();
    let mut sub = rumqttc_subscriber(&gw, "interop/bin", QoS::AtLeastOnce).await;
    let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, &payload).expect("write payload");
    let file = file.to_str().expect("utf-8 path");
    mosquitto_pub(&gw, V311, &["-q", "1", "-t", "interop/bin", "-f", file]).await;
    assert_eq!(&sub.expect().await.payload[..], &payload[..]);
}

// --- rumqttc → mosquitto_sub ------------------------------------------------------------

/// rumqttc publishes three messages at `qos`; `mosquitto_sub` at `version`
/// prints them with their QoS.
async fn rumqttc_to_mosquitto_sub(version: &str, qos: QoS) {
    let gw = Gateway::start();
    let q = (qos as u8).to_string();
    let sub = MosquittoSub::start(
        &gw,
        version,
        "%q %t %p",
        &["-q", &q, "-t", "interop/out/#", "-C", "3"],
    )
    .await;
    let mut publ = Client::connect(v4::options(gw.mqtt_addr(), "rumqttc-pub")).await;
    for i in 1..=3 {
        publ.publish(
            &format!("interop/out/{i}"),
            qos,
            false,
            format!("message {i}"),
        )
        .await;
    }
    // Let rumqttc complete its flows before the test (and the client) ends.
    if qos != QoS::AtMostOnce {
        let mut done = 0;
        while done < 3 {
            match publ.next_incoming(WAIT).await {
                Some(Ok(v4::Packet::PubAck(_) | v4::Packet::PubComp(_))) => done += 1,
                Some(Ok(_)) => {}
                other => panic!("publisher flow did not complete: {other:?}"),
            }
        }
    }
    assert_eq!(
        sub.finish().await,
        (1..=3)
            .map(|i| format!("{q} interop/out/{i} message {i}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_qos1_messages_reach_mosquitto_sub_v311() {
    rumqttc_to_mosquitto_sub(V311, QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_qos2_messages_reach_mosquitto_sub_v311() {
    rumqttc_to_mosquitto_sub(V311, QoS::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_qos1_messages_reach_mosquitto_sub_v5() {
    rumqttc_to_mosquitto_sub(V5, QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_qos2_messages_reach_mosquitto_sub_v5() {
    rumqttc_to_mosquitto_sub(V5, QoS::ExactlyOnce).await;
}

// --- mosquitto ↔ mosquitto -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v5_publisher_reaches_mosquitto_v311_subscriber() {
    let gw = Gateway::start();
    let sub = MosquittoSub::start(
        &gw,
        V311,
        "%q %p",
        &["-q", "2", "-t", "interop/x", "-C", "1"],
    )
    .await;
    mosquitto_pub(
        &gw,
        V5,
        &["-q", "2", "-t", "interop/x", "-m", "across versions"],
    )
    .await;
    assert_eq!(sub.finish().await, ["2 across versions"]);
}

/// `mosquitto_pub -r` at `version`, then a later `mosquitto_sub` at `version`
/// sees it with the retain flag set.
async fn retained_from_mosquitto(version: &str) {
    let gw = Gateway::start();
    mosquitto_pub(
        &gw,
        version,
        &["-r", "-q", "1", "-t", "interop/status", "-m", "online"],
    )
    .await;
    let sub = MosquittoSub::start(
        &gw,
        version,
        "%r %t %p",
        &["-q", "1", "-t", "interop/+", "-C", "1"],
    )
    .await;
    assert_eq!(sub.finish().await, ["1 interop/status online"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_from_mosquitto_pub_reaches_later_mosquitto_sub_v311() {
    retained_from_mosquitto(V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_from_mosquitto_pub_reaches_later_mosquitto_sub_v5() {
    retained_from_mosquitto(V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_user_properties_reach_mosquitto_sub_in_order() {
    let gw = Gateway::start();
    let sub = MosquittoSub::start(
        &gw,
        V5,
        "%P|%p",
        &["-q", "1", "-t", "interop/props", "-C", "1"],
    )
    .await;
    mosquitto_pub(
        &gw,
        V5,
        &[
            "-q",
            "1",
            "-t",
            "interop/props",
            "-m",
            "body",
            "-D",
            "publish",
            "user-property",
            "site",
            "north",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
    )
    .await;
    assert_eq!(sub.finish().await, ["site:north k:v|body"]);
}
