//! Bridges to upstream brokers, against a second Tether instance (MQTT and
//! AMQP), Debian's Mosquitto and Debian's RabbitMQ (each started by the test
//! on free loopback ports) as the upstream: forwarding out and in with prefix rewriting, an upstream that
//! goes away while messages are published, a local restart with a non-empty
//! outbox, overlapping rules in both directions that must not loop, inbound
//! ACLs, mutual TLS with ALPN, and the state in the admin API and metrics.
//!
//! Needs `mosquitto` and `rabbitmq-server` (`apt-get install -y mosquitto
//! rabbitmq-server`; scripts/test installs them). A RabbitMQ node starts
//! Erlang's `epmd` daemon, which outlives the test (as with any RabbitMQ).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use tether_e2e::Gateway;
use tether_e2e::admin::{Admin, find};
use tether_e2e::mqtt::v4::{self, Client, QoS};
use tether_e2e::prom::scrape;
use tether_e2e::tls::{Ca, Leaf, ServerFiles};

const WAIT: Duration = Duration::from_secs(10);

/// A `[[bridges]]` entry named `up` towards `upstream` with `rules` (TOML
/// `[[bridges.rules]]` tables), reconnecting quickly.
fn bridge_toml(upstream: SocketAddr, rules: &str) -> String {
    format!(
        r#"
[[bridges]]
name = "up"
kind = "mqtt"
address = "{upstream}"
reconnect_min = "50ms"
reconnect_max = "500ms"
ack_timeout = "5s"
{rules}
"#
    )
}

fn local(upstream: SocketAddr, rules: &str) -> Gateway {
    Gateway::builder()
        .config(&bridge_toml(upstream, rules))
        .start()
}

fn local_on(upstream: SocketAddr, rules: &str, data: PathBuf) -> Gateway {
    Gateway::builder()
        .config(&bridge_toml(upstream, rules))
        .data_dir(data)
        .start()
}

/// An upstream on a fixed address and data directory (to come back where it was).
fn upstream_at(addr: SocketAddr, data: PathBuf) -> Gateway {
    Gateway::builder()
        .env("TETHER_MQTT__LISTEN", addr)
        .data_dir(data)
        .start()
}

fn wait_connected(gw: &Gateway) {
    let re = Regex::new("bridge connected").unwrap();
    assert!(
        gw.log().wait_for(&re, WAIT).is_some(),
        "bridge did not connect:\n{}",
        gw.log().text()
    );
}

async fn subscriber(addr: SocketAddr, id: &str, filter: &str) -> Client {
    let mut c = Client::connect(v4::options(addr, id)).await;
    c.subscribe(filter, QoS::AtLeastOnce).await;
    c
}

/// Receives until every one of `expected` payloads was seen; returns them in
/// arrival order with repeats (at-least-once) removed.
async fn receive_all(c: &mut Client, expected: usize) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < expected {
        let Some(p) = c.recv(WAIT).await else {
            panic!("only {} of {expected} arrived: {seen:?}", seen.len());
        };
        let s = String::from_utf8_lossy(&p.payload).into_owned();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen
}

/// Calls `publish(0)`, `publish(1)`, ... every 200 ms until `to` receives
/// something, and returns that: for an upstream subscription the bridge sets
/// up right after connecting. Fails after [`WAIT`].
async fn publish_until_received<F, Fut>(to: &mut Client, mut publish: F) -> v4::Publish
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut i = 0;
    loop {
        publish(i).await;
        if let Some(p) = to.recv(Duration::from_millis(200)).await {
            return p;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing came in");
        i += 1;
    }
}

const OUT: &str = r#"
[[bridges.rules]]
direction = "out"
pattern = "sensors/#"
remote_prefix = "edge/17/"
"#;

#[tokio::test]
async fn local_publishes_reach_the_upstream_under_the_remote_prefix() {
    let upstream = Gateway::start();
    let mut sub = subscriber(upstream.mqtt_addr(), "cloud-app", "edge/17/#").await;
    let gw = local(upstream.mqtt_addr(), OUT);
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("sensors/t1", "21.5").await;
    device.publish_acked("other/t1", "not bridged").await;
    device.publish_acked("sensors/t2", "22.0").await;
    let a = sub.expect().await;
    assert_eq!(&a.topic[..], "edge/17/sensors/t1");
    assert_eq!(&a.payload[..], b"21.5");
    // `other/t1` matches no rule: the next one upstream is `sensors/t2`.
    let b = sub.expect().await;
    assert_eq!(&b.topic[..], "edge/17/sensors/t2");
}

#[tokio::test]
async fn upstream_publishes_reach_local_subscribers_under_the_local_prefix() {
    let upstream = Gateway::start();
    let gw = local(
        upstream.mqtt_addr(),
        r##"
[[bridges.rules]]
direction = "in"
pattern = "#"
local_prefix = "cmd/"
remote_prefix = "commands/17/"
"##,
    );
    let mut app = subscriber(gw.mqtt_addr(), "local-app", "cmd/#").await;
    wait_connected(&gw);
    let cloud = Client::connect(v4::options(upstream.mqtt_addr(), "cloud")).await;
    // The bridge subscribes right after connecting: publish until it has.
    let p = publish_until_received(&mut app, |_| {
        cloud.publish("commands/17/reboot", QoS::AtLeastOnce, false, "now")
    })
    .await;
    assert_eq!(&p.topic[..], "cmd/reboot");
    assert_eq!(&p.payload[..], b"now");
}

#[tokio::test]
async fn messages_published_while_the_upstream_is_down_arrive_in_order_when_it_returns() {
    upstream_down_while_publishing("mqtt").await;
}

/// A `kind` bridge to a Tether upstream that goes away while 50 QoS 1
/// messages are published locally; the bridge retries with growing delays,
/// and once the upstream is back a persistent-session app there gets all 50,
/// in order.
async fn upstream_down_while_publishing(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = Gateway::builder()
        .data_dir(dir.path().join("upstream"))
        .start();
    let (mqtt, amqp) = (upstream.mqtt_addr(), upstream.amqp.expect("amqp listener"));
    // A persistent session upstream keeps what arrives while its app is away.
    let mut opts = v4::options(mqtt, "cloud-app");
    opts.set_clean_session(false);
    let mut app = Client::connect(opts.clone()).await;
    app.subscribe("edge/17/#", QoS::AtLeastOnce).await;
    app.disconnect().await;

    let gw = match kind {
        "amqp" => amqp_local(amqp, OUT),
        _ => local(mqtt, OUT),
    };
    wait_connected(&gw);
    assert!(upstream.terminate().success());
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    let sent: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    for m in &sent {
        device.publish_acked("sensors/t", m.as_str()).await;
    }
    // Down for a while: the bridge keeps retrying with growing delays.
    let retried = Regex::new(r"(?s)(bridge disconnected.*){6}").unwrap();
    assert!(gw.log().wait_for(&retried, WAIT).is_some(), "no retries");
    let _upstream = Gateway::builder()
        .env("TETHER_MQTT__LISTEN", mqtt)
        .env("TETHER_AMQP__LISTEN", amqp)
        .data_dir(dir.path().join("upstream"))
        .start();
    let mut app = Client::connect(opts).await;
    assert_eq!(receive_all(&mut app, sent.len()).await, sent);
}

#[tokio::test]
async fn a_local_restart_with_a_non_empty_outbox_loses_nothing() {
    local_restart_with_a_non_empty_outbox("mqtt").await;
}

#[tokio::test]
async fn a_local_restart_with_a_non_empty_amqp_outbox_loses_nothing() {
    local_restart_with_a_non_empty_outbox("amqp").await;
}

/// 20 messages wait in the outbox of a `kind` bridge to a Tether upstream
/// that is down; the local gateway restarts, the upstream comes back, all
/// 20 arrive in order.
async fn local_restart_with_a_non_empty_outbox(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = Gateway::builder()
        .data_dir(dir.path().join("upstream"))
        .start();
    let (mqtt, amqp) = (upstream.mqtt_addr(), upstream.amqp.expect("amqp listener"));
    assert!(upstream.terminate().success());
    let target = if kind == "amqp" { amqp } else { mqtt };
    let toml = bridge_toml(target, OUT).replace("kind = \"mqtt\"", &format!("kind = \"{kind}\""));
    let local = || {
        Gateway::builder()
            .config(&toml)
            .data_dir(dir.path().join("local"))
            .start()
    };

    // The upstream is unreachable: everything waits in the outbox.
    let mut gw = local();
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    let sent: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for m in &sent {
        device.publish_acked("sensors/t", m.as_str()).await;
    }
    device.disconnect().await;
    assert!(gw.terminate().success());

    let _upstream = Gateway::builder()
        .env("TETHER_MQTT__LISTEN", mqtt)
        .env("TETHER_AMQP__LISTEN", amqp)
        .data_dir(dir.path().join("upstream"))
        .start();
    let mut app = subscriber(mqtt, "cloud-app", "edge/17/#").await;
    let gw = local();
    let backlog = Regex::new(r"bridge starting.*backlog=(\d+)").unwrap();
    let found = gw.log().wait_for(&backlog, WAIT).expect("start-up line");
    assert_eq!(found[1], "20", "the outbox came back with its messages");
    assert_eq!(receive_all(&mut app, sent.len()).await, sent);
}

#[tokio::test]
async fn overlapping_rules_in_both_directions_do_not_loop() {
    let upstream = Gateway::start();
    assert_no_loop(upstream.mqtt_addr()).await;
}

/// A bridge with `both` on `loop/#` towards `upstream`: what comes in is not
/// sent back out, what goes out does not come back in.
async fn assert_no_loop(upstream: SocketAddr) {
    let gw = local(
        upstream,
        r#"
[[bridges.rules]]
direction = "both"
pattern = "loop/#"
"#,
    );
    let mut here = subscriber(gw.mqtt_addr(), "here", "loop/#").await;
    let mut there = subscriber(upstream, "there", "loop/#").await;
    wait_connected(&gw);

    // Upstream to local: wait (republishing, each time with a new payload)
    // until the bridge has subscribed.
    let cloud = Client::connect(v4::options(upstream, "cloud")).await;
    let p = publish_until_received(&mut here, |i| {
        cloud.publish("loop/in", QoS::AtLeastOnce, false, format!("in{i}"))
    })
    .await;
    let mut here_seen = vec![seen(&p)];
    // Local to upstream, after it: had a `loop/in` been sent back upstream,
    // `there` would get it twice, before `loop/out` (the outbox keeps order).
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("loop/out", "out").await;
    let mut there_seen = Vec::new();
    loop {
        let p = there.recv(WAIT).await.expect("loop/out upstream");
        let s = seen(&p);
        assert!(!there_seen.contains(&s), "{s} came back upstream");
        there_seen.push(s);
        if &p.topic[..] == "loop/out" {
            break;
        }
    }
    // Had `loop/out` come back in, `here` would get it twice before this
    // marker, published upstream after it and brought in by the bridge.
    cloud
        .publish("loop/end", QoS::AtLeastOnce, false, "end")
        .await;
    loop {
        let p = here.recv(WAIT).await.expect("loop/end locally");
        let s = seen(&p);
        assert!(!here_seen.contains(&s), "{s} came back in");
        here_seen.push(s);
        if &p.topic[..] == "loop/end" {
            break;
        }
    }
    assert!(here_seen.iter().any(|s| s == "loop/out=out"));
}

fn seen(p: &v4::Publish) -> String {
    format!("{}={}", p.topic, String::from_utf8_lossy(&p.payload))
}

#[tokio::test]
async fn bridge_state_shows_in_the_admin_api_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = Gateway::builder()
        .data_dir(dir.path().join("upstream"))
        .start();
    let addr = upstream.mqtt_addr();
    assert!(upstream.terminate().success());

    let gw = local(addr, OUT);
    let http = gw.http.expect("http listener");
    let admin = Admin::guest(http);
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    for i in 0..3 {
        device.publish_acked("sensors/t", format!("m{i}")).await;
    }
    let down = admin
        .poll("/bridges", WAIT, |v| {
            let b = find(v, "name", "up")?;
            (b["disconnects"].as_u64()? > 0).then(|| b.clone())
        })
        .await;
    assert_eq!(down["connected"], false);
    assert_eq!(down["backlog"], 3);
    assert_eq!(down["outbox"], "bridge.up.outbox");
    assert!(down["last_error"].is_string(), "{down}");
    let s = scrape(http).await;
    assert_eq!(s.val("tether_bridge_connected", &[("bridge", "up")]), 0.0);
    assert_eq!(
        s.val("tether_bridge_backlog_messages", &[("bridge", "up")]),
        3.0
    );

    let _upstream = upstream_at(addr, dir.path().join("upstream"));
    admin
        .poll("/bridges", WAIT, |v| {
            let b = find(v, "name", "up")?;
            (b["connected"] == true && b["backlog"] == 0 && b["forwarded_out"] == 3).then_some(())
        })
        .await;
    let s = scrape(http).await;
    assert_eq!(s.val("tether_bridge_connected", &[("bridge", "up")]), 1.0);
    assert_eq!(
        s.val(
            "tether_bridge_forwarded_total",
            &[("bridge", "up"), ("direction", "out")]
        ),
        3.0
    );
}

#[tokio::test]
async fn inbound_publishes_obey_the_local_users_acl() {
    let upstream = Gateway::start();
    let gw = local(
        upstream.mqtt_addr(),
        r##"
local_user = "bridge"

[[bridges.rules]]
direction = "in"
pattern = "#"
local_prefix = "cmd/"
remote_prefix = "commands/17/"

[auth]
acl_default = "deny"

[[auth.acl]]
user = "bridge"
action = "publish"
topic = "cmd/allowed/#"

[[auth.acl]]
action = "subscribe"
topic = "#"
"##,
    );
    let mut app = subscriber(gw.mqtt_addr(), "local-app", "cmd/#").await;
    wait_connected(&gw);
    let cloud = Client::connect(v4::options(upstream.mqtt_addr(), "cloud")).await;
    // The denied topic goes first each time: had it been let in, it would
    // arrive before the allowed one (one ordered connection).
    let cloud = &cloud;
    let p = publish_until_received(&mut app, |_| async move {
        cloud
            .publish("commands/17/denied/x", QoS::AtLeastOnce, false, "no")
            .await;
        cloud
            .publish("commands/17/allowed/x", QoS::AtLeastOnce, false, "yes")
            .await;
    })
    .await;
    assert_eq!(&p.topic[..], "cmd/allowed/x");
    let admin = Admin::guest(gw.http.expect("http listener"));
    let b = admin.get("/bridges").await;
    let b = find(&b, "name", "up").expect("bridge listed");
    assert!(b["inbound_dropped"].as_u64() > Some(0), "{b}");
}

#[tokio::test]
async fn a_rule_removed_from_the_configuration_no_longer_fills_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = Gateway::start();
    let addr = upstream.mqtt_addr();
    assert!(upstream.terminate().success());
    let mut gw = local_on(addr, OUT, dir.path().join("local"));
    assert!(gw.terminate().success());

    let metrics = r#"
[[bridges.rules]]
direction = "out"
pattern = "metrics/#"
"#;
    let gw = local_on(addr, metrics, dir.path().join("local"));
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("sensors/t", "old rule").await;
    device.publish_acked("metrics/cpu", "new rule").await;
    let admin = Admin::guest(gw.http.expect("http listener"));
    let queue = admin.queue("bridge.up.outbox").await;
    assert_eq!(queue["messages"], 1, "{queue}");
}

/// An upstream Tether serving TLS with a certificate from `ca`, requiring a
/// client certificate from `ca` on `listeners` (a TOML list of TLS listeners).
fn tls_upstream(ca: &Ca, listeners: &str) -> (Gateway, ServerFiles) {
    let files = ServerFiles::write(&ca.server(), Some(ca));
    let mut b = Gateway::builder().config(&format!(
        "[tls]\nclient_auth = \"required\"\nclient_cert_listeners = {listeners}\n"
    ));
    for (k, v) in files.env() {
        b = b.env(k, v);
    }
    (b.start(), files)
}

/// A `[[bridges]]` entry named `up` of `kind` towards `localhost:port` over
/// TLS, trusting only `ca` and presenting `client`'s certificate when given,
/// with `extra` lines (rules); the files live as long as the result.
struct TlsBridge {
    dir: tempfile::TempDir,
    toml: String,
}

impl TlsBridge {
    fn new(kind: &str, port: u16, ca: &Ca, client: Option<&Leaf>, extra: &str) -> TlsBridge {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let mut toml = format!(
            r#"
[[bridges]]
name = "up"
kind = "{kind}"
address = "localhost:{port}"
ca_file = "{}"
reconnect_min = "50ms"
reconnect_max = "200ms"
"#,
            ca_file.display()
        );
        if let Some(client) = client {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, &client.cert_pem).unwrap();
            std::fs::write(&key, &client.key_pem).unwrap();
            toml += &format!(
                "cert_file = \"{}\"\nkey_file = \"{}\"\n",
                cert.display(),
                key.display()
            );
        }
        toml += extra;
        TlsBridge { dir, toml }
    }

    fn start(&self) -> Gateway {
        Gateway::builder().config(&self.toml).start()
    }

    /// Overwrites the client certificate and key files with `client`'s.
    fn renew(&self, client: &Leaf) {
        std::fs::write(self.dir.path().join("cert.pem"), &client.cert_pem).unwrap();
        std::fs::write(self.dir.path().join("key.pem"), &client.key_pem).unwrap();
    }
}

/// Polls the admin API until bridge `up` of `gw` has failed to connect three
/// times; returns its state.
async fn refused_three_times(gw: &Gateway) -> serde_json::Value {
    let admin = Admin::guest(gw.http.expect("http listener"));
    let b = admin
        .poll("/bridges", WAIT, |v| {
            let b = find(v, "name", "up")?;
            (b["disconnects"].as_u64()? >= 3).then(|| b.clone())
        })
        .await;
    assert_eq!(b["connected"], false);
    assert!(b["last_error"].is_string(), "{b}");
    b
}

#[tokio::test]
async fn the_bridge_connects_with_mutual_tls_and_alpn() {
    let ca = Ca::new("bridge test CA");
    let (upstream, _files) = tls_upstream(&ca, r#"["mqtts"]"#);
    let mqtts = upstream.addr("mqtts").expect("mqtts listener");
    let mut sub = subscriber(upstream.mqtt_addr(), "cloud-app", "edge/17/#").await;
    let extra = format!("alpn = [\"x-amzn-mqtt-ca\"]\n{OUT}");
    let bridge = TlsBridge::new(
        "mqtt",
        mqtts.port(),
        &ca,
        Some(&ca.client("edge-17")),
        &extra,
    );
    let gw = bridge.start();
    wait_connected(&gw);
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("sensors/t1", "over tls").await;
    let p = sub.expect().await;
    assert_eq!(&p.topic[..], "edge/17/sensors/t1");
    assert_eq!(&p.payload[..], b"over tls");
}

#[tokio::test]
async fn the_bridge_without_a_client_certificate_is_refused_and_keeps_retrying() {
    let ca = Ca::new("bridge test CA");
    let (upstream, _files) = tls_upstream(&ca, r#"["mqtts"]"#);
    let mqtts = upstream.addr("mqtts").expect("mqtts listener");
    let bridge = TlsBridge::new("mqtt", mqtts.port(), &ca, None, OUT);
    refused_three_times(&bridge.start()).await;
}

#[tokio::test]
async fn a_renewed_client_certificate_is_used_at_the_next_reconnect() {
    let ca = Ca::new("bridge test CA");
    let (upstream, _files) = tls_upstream(&ca, r#"["mqtts", "amqps"]"#);
    for (kind, listener) in [("mqtt", "mqtts"), ("amqp", "amqps")] {
        let port = upstream.addr(listener).expect("TLS listener").port();
        // A certificate the upstream does not accept (another CA).
        let other = Ca::new("another CA");
        let bridge = TlsBridge::new(kind, port, &ca, Some(&other.client("edge-17")), OUT);
        let gw = bridge.start();
        refused_three_times(&gw).await;
        bridge.renew(&ca.client("edge-17"));
        wait_connected(&gw);
    }
}

#[tokio::test]
async fn an_amqp_bridge_over_tls_with_a_client_certificate_forwards_out_and_in() {
    let ca = Ca::new("bridge test CA");
    let (upstream, _files) = tls_upstream(&ca, r#"["amqps"]"#);
    let amqps = upstream.addr("amqps").expect("amqps listener");
    let client = ca.client("edge-17");
    let bridge = TlsBridge::new("amqp", amqps.port(), &ca, Some(&client), AMQP_BOTH);
    forwards_out_and_in(&upstream, || bridge.start()).await;
}

#[tokio::test]
async fn an_amqp_bridge_without_a_client_certificate_or_with_another_ca_is_refused() {
    let ca = Ca::new("bridge test CA");
    let (upstream, _files) = tls_upstream(&ca, r#"["amqps"]"#);
    let amqps = upstream.addr("amqps").expect("amqps listener");
    // The upstream asks for a certificate the bridge does not have.
    let bridge = TlsBridge::new("amqp", amqps.port(), &ca, None, OUT);
    refused_three_times(&bridge.start()).await;
    // The bridge does not trust the upstream's certificate.
    let other = Ca::new("another CA");
    let bridge = TlsBridge::new("amqp", amqps.port(), &other, Some(&other.client("x")), OUT);
    let b = refused_three_times(&bridge.start()).await;
    assert!(
        b["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate"),
        "{b}"
    );
}

/// A Mosquitto broker on loopback (Debian's `mosquitto`), as an upstream.
/// Killed when dropped.
struct Mosquitto {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Mosquitto {
    /// Starts on `port` (0: a free one) keeping its state in `dir`, and waits
    /// until it accepts connections.
    fn start(port: u16, dir: &std::path::Path) -> Mosquitto {
        let port = if port == 0 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        } else {
            port
        };
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // `user root`: started as root, Mosquitto would otherwise
                // switch to `mosquitto` and could not write to `dir`.
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nlog_dest stderr\nuser root\n",
                dir.display()
            ),
        )
        .unwrap();
        // Debian puts it in /usr/sbin, which a non-root PATH may lack.
        let program = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = std::process::Command::new(program)
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is not runnable: apt-get install -y mosquitto");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, addr }
    }

    /// SIGTERM (Mosquitto saves its state) and waits for the exit.
    fn stop(&mut self) {
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        tether_e2e::wait_with_timeout(&mut self.child, WAIT);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn mosquitto_upstream_forwards_out_and_in() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(0, dir.path());
    let mut cloud_app = subscriber(broker.addr, "cloud-app", "edge/17/#").await;
    let gw = local(
        broker.addr,
        &format!(
            r##"{OUT}
[[bridges.rules]]
direction = "in"
pattern = "#"
local_prefix = "cmd/"
remote_prefix = "commands/17/"
"##
        ),
    );
    let mut app = subscriber(gw.mqtt_addr(), "local-app", "cmd/#").await;
    wait_connected(&gw);
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("sensors/t1", "21.5").await;
    let p = cloud_app.expect().await;
    assert_eq!(&p.topic[..], "edge/17/sensors/t1");

    let cloud = Client::connect(v4::options(broker.addr, "cloud")).await;
    let p = publish_until_received(&mut app, |_| {
        cloud.publish("commands/17/reboot", QoS::AtLeastOnce, false, "now")
    })
    .await;
    assert_eq!(&p.topic[..], "cmd/reboot");
}

#[tokio::test]
async fn mosquitto_upstream_down_while_publishing_gets_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(0, dir.path());
    let addr = broker.addr;
    let mut opts = v4::options(addr, "cloud-app");
    opts.set_clean_session(false);
    let mut app = Client::connect(opts.clone()).await;
    app.subscribe("edge/17/#", QoS::AtLeastOnce).await;
    app.disconnect().await;

    let gw = local(addr, OUT);
    wait_connected(&gw);
    broker.stop();
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    let sent: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    for m in &sent {
        device.publish_acked("sensors/t", m.as_str()).await;
    }
    let retried = Regex::new(r"(?s)(bridge disconnected.*){6}").unwrap();
    assert!(gw.log().wait_for(&retried, WAIT).is_some(), "no retries");
    let _broker = Mosquitto::start(addr.port(), dir.path());
    let mut app = Client::connect(opts).await;
    assert_eq!(receive_all(&mut app, sent.len()).await, sent);
}

#[tokio::test]
async fn mosquitto_upstream_with_overlapping_rules_does_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(0, dir.path());
    assert_no_loop(broker.addr).await;
}

#[tokio::test]
async fn mosquitto_upstream_after_a_local_restart_with_a_non_empty_outbox_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(0, dir.path());
    let addr = broker.addr;
    broker.stop();
    let mut gw = local_on(addr, OUT, dir.path().join("local"));
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    let sent: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for m in &sent {
        device.publish_acked("sensors/t", m.as_str()).await;
    }
    device.disconnect().await;
    assert!(gw.terminate().success());

    let _broker = Mosquitto::start(addr.port(), dir.path());
    let mut app = subscriber(addr, "cloud-app", "edge/17/#").await;
    let _gw = local_on(addr, OUT, dir.path().join("local"));
    assert_eq!(receive_all(&mut app, sent.len()).await, sent);
}

/// The outbox of a bridge to an unreachable upstream, holding at most two.
fn small_outbox(policy: &str) -> (Gateway, Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = Gateway::builder()
        .data_dir(dir.path().join("upstream"))
        .start();
    assert!(upstream.terminate().success());
    let rules = format!("outbox_max_messages = 2\noutbox_full = \"{policy}\"\n{OUT}");
    let gw = local(upstream.mqtt_addr(), &rules);
    (gw, upstream, dir)
}

#[tokio::test]
async fn a_full_outbox_with_drop_oldest_keeps_the_newest() {
    let (gw, upstream, dir) = small_outbox("drop-oldest");
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    for m in ["m0", "m1", "m2"] {
        device.publish_acked("sensors/t", m).await;
    }
    let _upstream = upstream_at(upstream.mqtt_addr(), dir.path().join("upstream"));
    let mut app = subscriber(upstream.mqtt_addr(), "cloud-app", "edge/17/#").await;
    assert_eq!(receive_all(&mut app, 2).await, ["m1", "m2"]);
}

#[tokio::test]
async fn a_full_outbox_with_reject_new_refuses_mqtt5_publishers() {
    use tether_e2e::mqtt::v5;
    let (gw, upstream, dir) = small_outbox("reject-new");
    let (mut device, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "device")).await;
    let mut reasons = Vec::new();
    for m in ["m0", "m1", "m2"] {
        device
            .client
            .publish("sensors/t", v5::QoS::AtLeastOnce, false, m)
            .await
            .expect("publish request");
        let ack = device
            .wait_for(WAIT, |p| match p {
                v5::Packet::PubAck(a) => Some(a),
                _ => None,
            })
            .await
            .expect("PUBACK");
        reasons.push(ack.reason);
    }
    use rumqttc::v5::mqttbytes::v5::PubAckReason::{QuotaExceeded, Success};
    assert_eq!(reasons, [Success, Success, QuotaExceeded]);
    let _upstream = upstream_at(upstream.mqtt_addr(), dir.path().join("upstream"));
    let mut app = subscriber(upstream.mqtt_addr(), "cloud-app", "edge/17/#").await;
    assert_eq!(receive_all(&mut app, 2).await, ["m0", "m1"]);
}

/// An AMQP `[[bridges]]` entry named `up` towards `upstream` (an AMQP listener).
fn amqp_local(upstream: SocketAddr, rules: &str) -> Gateway {
    let toml = bridge_toml(upstream, rules).replace("kind = \"mqtt\"", "kind = \"amqp\"");
    Gateway::builder().config(&toml).start()
}

const AMQP_BOTH: &str = r##"
[[bridges.rules]]
direction = "out"
pattern = "sensors/#"
remote_prefix = "edge/17/"

[[bridges.rules]]
direction = "in"
pattern = "#"
local_prefix = "cmd/"
remote_prefix = "commands/17/"
"##;

#[tokio::test]
async fn amqp_upstream_forwards_out_and_in_through_amq_topic() {
    let upstream = Gateway::start();
    let amqp = upstream.amqp.expect("amqp listener");
    forwards_out_and_in(&upstream, || amqp_local(amqp, AMQP_BOTH)).await;
}

/// With a Tether `upstream` and a local gateway from `start` bridging it
/// with [`AMQP_BOTH`]: a local `sensors/t1` reaches the upstream as
/// `edge/17/sensors/t1`, an upstream `commands/17/reboot` comes in as
/// `cmd/reboot`.
async fn forwards_out_and_in(upstream: &Gateway, start: impl FnOnce() -> Gateway) {
    let mut cloud_app = subscriber(upstream.mqtt_addr(), "cloud-app", "edge/17/#").await;
    let gw = start();
    let mut app = subscriber(gw.mqtt_addr(), "local-app", "cmd/#").await;
    wait_connected(&gw);
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("sensors/t1", "21.5").await;
    // Routing key `edge.17.sensors.t1` on the upstream's amq.topic.
    let p = cloud_app.expect().await;
    assert_eq!(&p.topic[..], "edge/17/sensors/t1");
    assert_eq!(&p.payload[..], b"21.5");

    // The inbox is bound before "bridge connected" is logged.
    let cloud = Client::connect(v4::options(upstream.mqtt_addr(), "cloud")).await;
    cloud
        .publish("commands/17/reboot", QoS::AtLeastOnce, false, "now")
        .await;
    let p = app.expect().await;
    assert_eq!(&p.topic[..], "cmd/reboot");
    assert_eq!(&p.payload[..], b"now");
}

#[tokio::test]
async fn amqp_upstream_down_while_publishing_gets_everything_in_order() {
    upstream_down_while_publishing("amqp").await;
}

#[tokio::test]
async fn amqp_upstream_with_overlapping_rules_does_not_loop() {
    let upstream = Gateway::start();
    let gw = amqp_local(
        upstream.amqp.expect("amqp listener"),
        r#"
[[bridges.rules]]
direction = "both"
pattern = "loop/#"
"#,
    );
    let mut here = subscriber(gw.mqtt_addr(), "here", "loop/#").await;
    let mut there = subscriber(upstream.mqtt_addr(), "there", "loop/#").await;
    wait_connected(&gw);
    let cloud = Client::connect(v4::options(upstream.mqtt_addr(), "cloud")).await;
    cloud
        .publish("loop/in", QoS::AtLeastOnce, false, "in")
        .await;
    assert_eq!(seen(&here.expect().await), "loop/in=in");
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("loop/out", "out").await;
    // `there` sees the cloud's own publish, then the device's; had the
    // bridge sent `loop/in` back, it would come in between.
    assert_eq!(seen(&there.expect().await), "loop/in=in");
    assert_eq!(seen(&there.expect().await), "loop/out=out");
    // `loop/out` comes back to the bridge's own inbox (AMQP has no No
    // Local) and must be dropped there: the next message `here` gets after
    // the device's own is the marker.
    cloud
        .publish("loop/end", QoS::AtLeastOnce, false, "end")
        .await;
    assert_eq!(seen(&here.expect().await), "loop/out=out");
    assert_eq!(seen(&here.expect().await), "loop/end=end");
}

/// A RabbitMQ node on loopback (Debian's `rabbitmq-server`) with its own
/// home, data, logs and ports, as an AMQP upstream. Its process group is
/// killed when dropped.
struct Rabbit {
    child: std::process::Child,
    amqp: SocketAddr,
    dist: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Rabbit {
    /// A fresh node on free ports, its state under `dir`.
    fn start(dir: &std::path::Path) -> Rabbit {
        Rabbit::start_at(free_port(), free_port(), dir.to_path_buf())
    }

    /// A node listening for AMQP on `amqp` (same `amqp`, `dist` and `dir`:
    /// the same node, with its durable queues and messages).
    fn start_at(amqp: u16, dist: u16, d: PathBuf) -> Rabbit {
        Rabbit::start_with(amqp, dist, d, "")
    }

    /// A fresh node that also takes AMQP over TLS on `amqps` with `server`'s
    /// certificate (no client certificate asked for), the way Amazon MQ for
    /// RabbitMQ serves 5671.
    fn start_tls(
        dir: &std::path::Path,
        server: &tether_e2e::tls::ServerFiles,
        amqps: u16,
    ) -> Rabbit {
        let conf = format!(
            "listeners.ssl.default = 127.0.0.1:{amqps}\n\
             ssl_options.certfile = {}\nssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n",
            server.cert.display(),
            server.key.display()
        );
        let rabbit = Rabbit::start_with(free_port(), free_port(), dir.to_path_buf(), &conf);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", amqps)).is_err() {
            assert!(std::time::Instant::now() < deadline, "no amqps listener");
            std::thread::sleep(Duration::from_millis(100));
        }
        rabbit
    }

    /// [`Rabbit::start_at`] with `extra` lines in `rabbitmq.conf`.
    fn start_with(amqp: u16, dist: u16, d: PathBuf, extra: &str) -> Rabbit {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(d.join("home")).unwrap();
        std::fs::write(d.join("rabbitmq-env.conf"), "").unwrap();
        std::fs::write(d.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{amqp}\nloopback_users = none\n\
                 disk_free_limit.absolute = 50MB\nlog.console = false\n{extra}"
            ),
        )
        .unwrap();
        let bin = "/usr/lib/rabbitmq/bin/rabbitmq-server";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: apt-get install -y rabbitmq-server"
        );
        let child = std::process::Command::new(bin)
            .env("HOME", d.join("home"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env(
                "RABBITMQ_NODENAME",
                format!("tether-bridge-{amqp}@localhost"),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("rabbitmq-server");
        let addr: SocketAddr = ([127, 0, 0, 1], amqp).into();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "rabbitmq did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Rabbit {
            child,
            amqp: addr,
            dist,
            dir: d,
        }
    }

    /// Stops the node cleanly (SIGTERM to its process group) and waits.
    fn stop(mut self) -> (u16, u16, PathBuf) {
        // SAFETY: kill(2) on the process group of a child we spawned as its
        // leader (`process_group(0)`), not yet reaped.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGTERM);
        }
        tether_e2e::wait_with_timeout(&mut self.child, Duration::from_secs(60));
        // The node itself may outlive the script by a moment.
        let addr = self.amqp;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "rabbitmq did not stop"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        (self.amqp.port(), self.dist, self.dir.clone())
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // stopped already
        }
        // SAFETY: kill(2) on the process group of a child we spawned as its
        // leader (`process_group(0)`), not yet reaped.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn rabbitmq_upstream_forwards_out_and_in_and_does_not_loop() {
    use tether_e2e::amqp as lapin_help;
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::start(dir.path());
    let (_conn, ch, mut cloud_app) = cloud_app(rabbit.amqp, "#").await;
    let gw = amqp_local(
        rabbit.amqp,
        &format!(
            r##"{AMQP_BOTH}
[[bridges.rules]]
direction = "both"
pattern = "loop/#"
"##
        ),
    );
    let mut app = subscriber(gw.mqtt_addr(), "local-app", "#").await;
    wait_connected(&gw);
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("sensors/t1", "21.5").await;
    device.publish_acked("loop/out", "out").await;
    assert_eq!(
        upstream_next(&mut cloud_app).await,
        "edge.17.sensors.t1=21.5"
    );
    assert_eq!(upstream_next(&mut cloud_app).await, "loop.out=out");

    lapin_help::publish(&ch, "amq.topic", "commands.17.reboot", b"now").await;
    lapin_help::publish(&ch, "amq.topic", "loop.in", b"in").await;
    // Locally: the device's own messages, then what came in; `loop/out`
    // (back in the bridge's inbox, RabbitMQ has no No Local) is dropped.
    let mut here = Vec::new();
    while here.len() < 4 {
        here.push(seen(&app.expect().await));
    }
    assert_eq!(
        here,
        [
            "sensors/t1=21.5",
            "loop/out=out",
            "cmd/reboot=now",
            "loop/in=in"
        ]
    );
    // `loop/in` was not sent back upstream: the next message there is the
    // cloud's own `commands.17.reboot`, then `loop.in`, then nothing of ours.
    assert_eq!(
        upstream_next(&mut cloud_app).await,
        "commands.17.reboot=now"
    );
    assert_eq!(upstream_next(&mut cloud_app).await, "loop.in=in");
    device.publish_acked("sensors/t2", "end").await;
    assert_eq!(
        upstream_next(&mut cloud_app).await,
        "edge.17.sensors.t2=end"
    );
}

/// A RabbitMQ-side application: queue `cloud-app` bound to `amq.topic` with
/// `key`, consumed with auto-ack; the connection and channel come along.
async fn cloud_app(
    addr: SocketAddr,
    key: &str,
) -> (
    tether_e2e::amqp::Connection,
    tether_e2e::amqp::Channel,
    tether_e2e::amqp::Consumer,
) {
    use tether_e2e::amqp::{self as lapin_help, FieldTable};
    let (conn, ch) = lapin_help::channel(addr).await;
    lapin_help::declare_queue(&ch, "cloud-app", FieldTable::default()).await;
    lapin_help::bind(&ch, "cloud-app", "amq.topic", key, FieldTable::default()).await;
    let consumer = lapin_help::consume(&ch, "cloud-app", "", true).await;
    (conn, ch, consumer)
}

/// The next delivery upstream as `routing-key=body`.
async fn upstream_next(c: &mut tether_e2e::amqp::Consumer) -> String {
    let d = tether_e2e::amqp::next(c, WAIT)
        .await
        .expect("a delivery upstream");
    format!("{}={}", d.routing_key, String::from_utf8_lossy(&d.data))
}

#[tokio::test]
async fn rabbitmq_upstream_down_while_publishing_gets_everything_in_order() {
    use tether_e2e::amqp::{self as lapin_help, FieldTable, QueueDeclareOptions};
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::start(dir.path());
    let (conn, ch) = lapin_help::channel(rabbit.amqp).await;
    ch.queue_declare(
        "cloud-app".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    lapin_help::bind(
        &ch,
        "cloud-app",
        "amq.topic",
        "edge.17.#",
        FieldTable::default(),
    )
    .await;
    drop((ch, conn));
    let gw = amqp_local(rabbit.amqp, OUT);
    wait_connected(&gw);
    let (amqp, dist, data) = rabbit.stop();

    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    let sent: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    for m in &sent {
        device.publish_acked("sensors/t", m.as_str()).await;
    }
    let rabbit = Rabbit::start_at(amqp, dist, data);
    let (_conn, ch) = lapin_help::channel(rabbit.amqp).await;
    let mut cloud_app = lapin_help::consume(&ch, "cloud-app", "", true).await;
    let mut got: Vec<String> = Vec::new();
    while got.len() < sent.len() {
        let s = upstream_next(&mut cloud_app).await;
        let body = s
            .split_once('=')
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        if !got.contains(&body) {
            got.push(body);
        }
    }
    assert_eq!(got, sent);
}

#[tokio::test]
async fn rabbitmq_upstream_after_a_local_restart_with_a_non_empty_outbox_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    // RabbitMQ is not up yet: everything waits in the outbox.
    let (amqp, dist) = (free_port(), free_port());
    let upstream: SocketAddr = ([127, 0, 0, 1], amqp).into();
    let mut gw = local_on_amqp(upstream, dir.path().join("local"));
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    let sent: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for m in &sent {
        device.publish_acked("sensors/t", m.as_str()).await;
    }
    device.disconnect().await;
    assert!(gw.terminate().success());

    let rabbit = Rabbit::start_at(amqp, dist, dir.path().join("rabbit"));
    let (_conn, _ch, mut cloud_app) = cloud_app(rabbit.amqp, "edge.17.#").await;
    let _gw = local_on_amqp(upstream, dir.path().join("local"));
    let mut got: Vec<String> = Vec::new();
    while got.len() < sent.len() {
        let s = upstream_next(&mut cloud_app).await;
        let body = s
            .split_once('=')
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        if !got.contains(&body) {
            got.push(body);
        }
    }
    assert_eq!(got, sent);
}

fn local_on_amqp(upstream: SocketAddr, data: PathBuf) -> Gateway {
    let toml = bridge_toml(upstream, OUT).replace("kind = \"mqtt\"", "kind = \"amqp\"");
    Gateway::builder().config(&toml).data_dir(data).start()
}

#[tokio::test]
async fn tether_admin_bridges_lists_state_and_backlog() {
    let mut upstream = Gateway::start();
    let addr = upstream.mqtt_addr();
    assert!(upstream.terminate().success());
    let gw = local(addr, OUT);
    let http = gw.http.expect("http listener");
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("sensors/t", "waiting").await;
    Admin::guest(http)
        .poll("/bridges", WAIT, |v| {
            let b = find(v, "name", "up")?;
            (b["disconnects"].as_u64()? > 0).then_some(())
        })
        .await;
    let run = tether_e2e::admin::cli(
        &["bridges", "--url", &tether_e2e::admin::url(http)],
        &[],
        "",
    )
    .await
    .ok();
    let mut lines = run.stdout.lines();
    let head: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        head[..4],
        ["NAME", "KIND", "ADDRESS", "CONNECTED"],
        "{}",
        run.stdout
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..5],
        ["up", "mqtt", addr.to_string().as_str(), "no", "1"],
        "{}",
        run.stdout
    );
}

#[test]
fn an_unreadable_bridge_certificate_refuses_to_start_naming_bridge_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let toml = format!(
        "{}ca_file = \"{}\"\n",
        bridge_toml("127.0.0.1:8883".parse().unwrap(), "")
            .split("[[bridges.rules]]")
            .next()
            .unwrap_or_default(),
        missing.display()
    ) + OUT;
    let config = dir.path().join("tether.toml");
    std::fs::write(&config, toml).unwrap();
    let out = std::process::Command::new(tether_e2e::tether_bin())
        .env_clear()
        .env("TETHER_STORAGE__PATH", dir.path().join("data"))
        .env("RUST_LOG", "off")
        .env("TETHER_MQTT__LISTEN", "127.0.0.1:0")
        .env("TETHER_AMQP__LISTEN", "127.0.0.1:0")
        .env("TETHER_HTTP__LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run tether");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("bridge `up`"), "{text}");
    assert!(text.contains(&*missing.to_string_lossy()), "{text}");
}

#[tokio::test]
async fn upstream_messages_published_while_the_local_gateway_is_down_arrive_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Gateway::start();
    let rules = r##"
[[bridges.rules]]
direction = "in"
pattern = "#"
local_prefix = "cmd/"
remote_prefix = "commands/17/"
"##;
    let mut gw = local_on(upstream.mqtt_addr(), rules, dir.path().join("local"));
    let local_mqtt = gw.mqtt_addr();
    let mut opts = v4::options(local_mqtt, "local-app");
    opts.set_clean_session(false);
    let mut app = Client::connect(opts.clone()).await;
    app.subscribe("cmd/#", QoS::AtLeastOnce).await;
    wait_connected(&gw);
    let cloud = Client::connect(v4::options(upstream.mqtt_addr(), "cloud")).await;
    // Until the bridge's subscription is in place upstream.
    publish_until_received(&mut app, |_| {
        cloud.publish("commands/17/probe", QoS::AtLeastOnce, false, "p")
    })
    .await;
    app.disconnect().await;
    assert!(gw.terminate().success());

    // The upstream keeps them in the bridge's session meanwhile.
    let mut cloud = Client::connect(v4::options(upstream.mqtt_addr(), "cloud-2")).await;
    let sent: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for m in &sent {
        cloud.publish_acked("commands/17/do", m.as_str()).await;
    }
    // Back on the same address, so the app's options still point at it.
    let gw = Gateway::builder()
        .config(&bridge_toml(upstream.mqtt_addr(), rules))
        .env("TETHER_MQTT__LISTEN", local_mqtt)
        .data_dir(dir.path().join("local"))
        .start();
    let mut app = Client::connect(opts).await;
    let mut got: Vec<String> = Vec::new();
    while got.len() < sent.len() {
        let p = app.expect().await;
        if p.topic != "cmd/do" {
            continue; // late probes
        }
        let s = String::from_utf8_lossy(&p.payload).into_owned();
        if !got.contains(&s) {
            got.push(s);
        }
    }
    assert_eq!(got, sent);
    drop(gw);
}

#[tokio::test]
async fn rabbitmq_upstream_over_tls_with_a_password_like_amazon_mq() {
    use tether_e2e::amqp as lapin_help;
    use tether_e2e::mqtt::v5;
    let ca = Ca::new("broker CA");
    let files = ServerFiles::write(&ca.server(), None);
    let dir = tempfile::tempdir().unwrap();
    let amqps = free_port();
    let rabbit = Rabbit::start_tls(dir.path(), &files, amqps);
    let (_conn, ch, mut cloud_app) = cloud_app(rabbit.amqp, "edge.#").await;
    // Amazon MQ: amqps on 5671, a user name and password, no client certificate.
    let extra = format!("username = \"guest\"\npassword = \"guest\"\n{AMQP_BOTH}");
    let bridge = TlsBridge::new("amqp", amqps, &ca, None, &extra);
    let gw = bridge.start();
    let mut app = subscriber(gw.mqtt_addr(), "local-app", "cmd/#").await;
    wait_connected(&gw);
    let (device, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "device")).await;
    let props = v5::PublishProperties {
        message_expiry_interval: Some(600),
        ..Default::default()
    };
    device
        .client
        .publish_with_properties("sensors/t1", v5::QoS::AtLeastOnce, false, "21.5", props)
        .await
        .expect("publish request");
    let d = tether_e2e::amqp::next(&mut cloud_app, WAIT)
        .await
        .expect("a delivery upstream");
    assert_eq!(d.routing_key.as_str(), "edge.17.sensors.t1");
    assert_eq!(&d.data[..], b"21.5");
    // The Message Expiry Interval travels as a per-message TTL (ms).
    let ttl: u64 = d
        .properties
        .expiration()
        .as_ref()
        .expect("expiration carried")
        .as_str()
        .parse()
        .unwrap();
    assert!((500_000..=600_000).contains(&ttl), "{ttl}");

    lapin_help::publish(&ch, "amq.topic", "commands.17.reboot", b"now").await;
    let p = app.expect().await;
    assert_eq!(&p.topic[..], "cmd/reboot");
    assert_eq!(&p.payload[..], b"now");
}

#[tokio::test]
async fn message_expiry_is_carried_upstream_as_the_time_left() {
    use tether_e2e::mqtt::v5;
    let upstream = Gateway::start();
    let (mut app, _) = v5::Client::connect(v5::options(upstream.mqtt_addr(), "cloud-app")).await;
    app.subscribe("edge/17/#", v5::QoS::AtLeastOnce).await;
    let gw = local(upstream.mqtt_addr(), OUT);
    wait_connected(&gw);
    let (device, _) = v5::Client::connect(v5::options(gw.mqtt_addr(), "device")).await;
    for (payload, expiry) in [("fresh", Some(600)), ("forever", None)] {
        let props = v5::PublishProperties {
            message_expiry_interval: expiry,
            ..Default::default()
        };
        device
            .client
            .publish_with_properties("sensors/t", v5::QoS::AtLeastOnce, false, payload, props)
            .await
            .expect("publish request");
        let p = app.expect().await;
        assert_eq!(&p.payload[..], payload.as_bytes());
        let left = p.properties.and_then(|p| p.message_expiry_interval);
        match expiry {
            Some(_) => assert!(matches!(left, Some(500..=600)), "{left:?}"),
            None => assert_eq!(left, None),
        }
    }
}

/// Two bridges `a` and `b` to `upstream`: `a` sends `loop/#` out, `b` takes
/// `loop/#` in, so what `a` sends comes back through `b`.
fn crossing_bridges(upstream: SocketAddr) -> Gateway {
    let bridge = |name: &str, direction: &str| {
        format!(
            r#"
[[bridges]]
name = "{name}"
kind = "mqtt"
address = "{upstream}"
reconnect_min = "50ms"
reconnect_max = "500ms"
[[bridges.rules]]
direction = "{direction}"
pattern = "loop/#"
"#
        )
    };
    let toml = bridge("a", "out") + &bridge("b", "in");
    Gateway::builder().config(&toml).start()
}

#[tokio::test]
async fn two_bridges_to_one_upstream_with_crossing_rules_do_not_loop() {
    let upstream = Gateway::start();
    let up = upstream.mqtt_addr();
    let gw = crossing_bridges(up);
    let admin = Admin::guest(gw.http.expect("http listener"));
    let mut here = subscriber(gw.mqtt_addr(), "here", "loop/#").await;
    let mut there = subscriber(up, "there", "loop/#").await;
    admin
        .poll("/bridges", WAIT, |v| {
            let both = ["a", "b"]
                .iter()
                .all(|n| find(v, "name", n).is_some_and(|b| b["connected"] == true));
            both.then_some(())
        })
        .await;
    // Until `b` has subscribed upstream, what the cloud publishes does not
    // come in; republish (new payloads) until it does.
    let cloud = Client::connect(v4::options(up, "cloud")).await;
    let p = publish_until_received(&mut here, |i| {
        cloud.publish("loop/warm", QoS::AtLeastOnce, false, format!("w{i}"))
    })
    .await;
    let mut here_seen = vec![seen(&p)];
    // A local message: out through `a`, back in through `b`, where it must
    // stop (it carries `a`'s marker).
    let mut device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    device.publish_acked("loop/x", "x").await;
    let mut there_x = 0;
    loop {
        let p = there.recv(WAIT).await.expect("loop/x upstream");
        if seen(&p) == "loop/x=x" {
            there_x += 1;
            break;
        }
    }
    let b = admin
        .poll("/bridges", WAIT, |v| {
            let b = find(v, "name", "b")?;
            (b["loops_broken"].as_u64()? >= 2).then(|| b.clone())
        })
        .await;
    assert_eq!(b["connected"], true, "{b}");
    // After the cloud's `loop/end`: `loop/x` reached the upstream once and
    // came in locally once (from the device itself).
    cloud
        .publish("loop/end", QoS::AtLeastOnce, false, "end")
        .await;
    loop {
        let p = there.recv(WAIT).await.expect("loop/end upstream");
        match seen(&p).as_str() {
            "loop/x=x" => there_x += 1,
            "loop/end=end" => break,
            _ => {}
        }
    }
    assert_eq!(there_x, 1, "loop/x went upstream more than once");
    loop {
        let p = here.recv(WAIT).await.expect("loop/end locally");
        let s = seen(&p);
        assert!(!here_seen.contains(&s), "{s} came back in");
        here_seen.push(s);
        if &p.topic[..] == "loop/end" {
            break;
        }
    }
    assert!(here_seen.iter().any(|s| s == "loop/x=x"), "{here_seen:?}");
}

#[tokio::test]
async fn edges_whose_bridges_share_a_name_exchange_messages_through_the_upstream() {
    let upstream = Gateway::start();
    let rules = r#"
[[bridges.rules]]
direction = "both"
pattern = "fleet/#"
"#;
    // Two edges with the same configuration (bridge `up`, no client id).
    let e1 = local(upstream.mqtt_addr(), rules);
    let e2 = local(upstream.mqtt_addr(), rules);
    wait_connected(&e1);
    wait_connected(&e2);
    let id = |gw: &Gateway| {
        let admin = Admin::guest(gw.http.expect("http listener"));
        async move {
            let v = admin.get("/bridges").await;
            find(&v, "name", "up").expect("bridge up")["client_id"]
                .as_str()
                .expect("client_id")
                .to_owned()
        }
    };
    let (id1, id2) = (id(&e1).await, id(&e2).await);
    assert_ne!(id1, id2, "the edges share an upstream client id");
    assert!(id1.starts_with("tether-up-"), "{id1}");

    let mut at_e2 = subscriber(e2.mqtt_addr(), "app", "fleet/#").await;
    let device = Client::connect(v4::options(e1.mqtt_addr(), "device")).await;
    let p = publish_until_received(&mut at_e2, |i| {
        device.publish("fleet/e1", QoS::AtLeastOnce, false, format!("r{i}"))
    })
    .await;
    assert_eq!(&p.topic[..], "fleet/e1");
    // Both bridges stayed up: no session takeover between the edges.
    for gw in [&e1, &e2] {
        let v = Admin::guest(gw.http.expect("http listener"))
            .get("/bridges")
            .await;
        let b = find(&v, "name", "up").expect("bridge up");
        assert_eq!(b["disconnects"], 0, "{b}");
    }
}

/// Publishes 3,000 QoS 1 messages as fast as the local gateway takes them
/// into a bridge that forwards one at a time (`inflight = 1`) into an outbox
/// of 1,000, with MQTT flow control at `flow_at` (0: off); returns the
/// outbox's dropped count and what arrived upstream. With flow control off
/// the outbox overflows (hundreds dropped when this was written).
async fn outrun_the_bridge(flow_at: usize) -> (u64, Vec<String>) {
    let upstream = Gateway::start();
    let mut app = subscriber(upstream.mqtt_addr(), "cloud-app", "edge/17/#").await;
    let rules =
        format!("inflight = 1\noutbox_max_messages = 1000\noutbox_full = \"drop-oldest\"\n{OUT}");
    let gw = Gateway::builder()
        .env("TETHER_MQTT__FLOW_CONTROL_AT", flow_at)
        // However slow a loaded machine makes the bridge, the publisher waits.
        .env("TETHER_MQTT__FLOW_CONTROL_TIMEOUT", "60s")
        .config(&bridge_toml(upstream.mqtt_addr(), &rules))
        .start();
    wait_connected(&gw);
    let device = Client::connect(v4::options(gw.mqtt_addr(), "device")).await;
    for i in 0..3000 {
        device
            .publish("sensors/t", QoS::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    let admin = Admin::guest(gw.http.expect("http listener"));
    let q = admin
        .poll("/queues", Duration::from_secs(60), |v| {
            let q = find(v, "name", "bridge.up.outbox")?;
            let s = &q["stats"];
            let settled = s["acked"].as_u64()? + s["dropped"].as_u64()?;
            (settled == 3000).then(|| q.clone())
        })
        .await;
    let dropped = q["stats"]["dropped"].as_u64().unwrap_or_default();
    let arrived = receive_all(&mut app, 3000 - dropped as usize).await;
    (dropped, arrived)
}

#[tokio::test]
async fn a_publisher_faster_than_the_bridge_is_slowed_down_instead_of_losing_messages() {
    let (dropped, arrived) = outrun_the_bridge(50).await;
    assert_eq!(dropped, 0, "the outbox dropped messages");
    let sent: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
    assert_eq!(arrived, sent);
}
