//! TLS end to end: real handshakes against the `tether` binary with
//! certificates each test makes for itself (rcgen). rumqttc over mqtts (with
//! and without client certificates), lapin over amqps, hyper over https, raw
//! rustls clients where a version must be forced or inspected; certificate
//! reload on SIGHUP; mutual TLS identities in ACL rules.

use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;
use rumqttc::{TlsConfiguration, Transport};
use tether_e2e::mqtt::WAIT;
use tether_e2e::mqtt::{v4, v5};
use tether_e2e::tls::{self, ALL_VERSIONS, Ca, ServerFiles, TLS12, TLS13};
use tether_e2e::{Gateway, GatewayBuilder, tether_bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// --- helpers -------------------------------------------------------------------

/// A gateway whose `[tls]` names `files`, with more settings from `env`.
fn builder(files: &ServerFiles, env: &[(&str, &str)]) -> GatewayBuilder {
    let mut b = Gateway::builder();
    for (k, v) in files.env() {
        b = b.env(k, v);
    }
    for (k, v) in env {
        b = b.env(k, v);
    }
    b
}

fn mqtts(gw: &Gateway) -> std::net::SocketAddr {
    gw.addr("mqtts").expect("mqtts listener logged")
}

fn transport(config: Arc<rustls::ClientConfig>) -> Transport {
    Transport::tls_with_config(TlsConfiguration::Rustls(config))
}

/// MQTT 3.1.1 options for `id` at the gateway's mqtts listener.
fn v4_tls(gw: &Gateway, id: &str, config: Arc<rustls::ClientConfig>) -> v4::MqttOptions {
    let mut o = v4::options(mqtts(gw), id);
    o.set_transport(transport(config));
    o
}

/// MQTT 5 options for `id` at the gateway's mqtts listener.
fn v5_tls(gw: &Gateway, id: &str, config: Arc<rustls::ClientConfig>) -> v5::MqttOptions {
    let mut o = v5::options(mqtts(gw), id);
    o.set_transport(transport(config));
    o
}

/// Waits for a `tls handshake refused` line whose reason matches `reason`.
fn assert_refusal_logged(gw: &Gateway, reason: &str) {
    let re = Regex::new(&format!(
        r"tls handshake refused protocol=mqtts peer=127\.0\.0\.1:\d+ reason=.*{reason}"
    ))
    .unwrap();
    assert!(
        gw.log().wait_for(&re, WAIT).is_some(),
        "no refusal matching `{reason}` logged:\n{}",
        gw.log().text()
    );
}

/// Connects expecting a refused CONNACK; its return code.
async fn connect_refused(o: v4::MqttOptions) -> v4::ConnectReturnCode {
    let (_client, mut eventloop) = v4::AsyncClient::new(o, 10);
    match tokio::time::timeout(WAIT, eventloop.poll()).await {
        Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => code,
        other => panic!("expected a refused CONNACK, got {other:?}"),
    }
}

/// A v3.1.1 CONNECT for client id `a`, keepalive 60, clean session.
const RAW_CONNECT: &[u8] = &[
    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a',
];
/// The CONNACK accepting it.
const RAW_CONNACK_OK: &[u8] = &[0x20, 2, 0, 0];

/// Sends [`RAW_CONNECT`] over `stream` and reads the 4-byte CONNACK.
async fn raw_connack<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
) -> std::io::Result<[u8; 4]> {
    stream.write_all(RAW_CONNECT).await?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .map_err(|_| std::io::Error::other("no CONNACK in time"))??;
    Ok(connack)
}

// --- listeners and start-up ----------------------------------------------------------

#[test]
fn tls_listeners_stay_off_without_a_certificate() {
    let gw = Gateway::start();
    assert!(gw.mqtt.is_some() && gw.amqp.is_some() && gw.http.is_some());
    for protocol in ["mqtts", "amqps", "https", "ws", "wss"] {
        assert_eq!(
            gw.addr(protocol),
            None,
            "{protocol} listening without a certificate"
        );
    }
}

/// Runs the binary with `env` (and quiet logs); its exit code and output.
fn run_refused(env: &[(&str, String)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(tether_bin());
    cmd.env_clear()
        .env("TETHER_STORAGE__PATH", dir.path())
        .env("RUST_LOG", "off");
    for key in ["MQTT", "AMQP", "HTTP"] {
        cmd.env(format!("TETHER_{key}__LISTEN"), "127.0.0.1:0")
            .env(format!("TETHER_{key}__TLS_LISTEN"), "127.0.0.1:0");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tether");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn missing_certificate_file_refuses_to_start_naming_key_and_file() {
    let ca = Ca::new("start CA");
    let files = ServerFiles::write(&ca.server(), None);
    let missing = files.cert.with_file_name("missing.pem");
    let (code, text) = run_refused(&[
        ("TETHER_TLS__CERT", missing.display().to_string()),
        ("TETHER_TLS__KEY", files.key.display().to_string()),
    ]);
    assert_eq!(code, 2, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{text}");
    assert!(lines[0].contains("tls.cert"), "{text}");
    assert!(lines[0].contains(&*missing.to_string_lossy()), "{text}");
}

#[test]
fn key_file_holding_no_key_refuses_to_start_naming_it() {
    let ca = Ca::new("start CA");
    let files = ServerFiles::write(&ca.server(), None);
    // A certificate where the key should be.
    std::fs::write(&files.key, ca.pem()).unwrap();
    let (code, text) = run_refused(&[
        ("TETHER_TLS__CERT", files.cert.display().to_string()),
        ("TETHER_TLS__KEY", files.key.display().to_string()),
    ]);
    assert_eq!(code, 2, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{text}");
    assert!(lines[0].contains("tls.key"), "{text}");
    assert!(lines[0].contains("no private key"), "{text}");
}

// --- MQTT over TLS ---------------------------------------------------------------------

#[tokio::test]
async fn mqtts_clients_exchange_messages_over_tls_1_2_and_1_3() {
    let ca = Ca::new("mqtts CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[]).start();
    let mut sub =
        v4::Client::connect(v4_tls(&gw, "sub", tls::client_config(&ca, None, &[&TLS13]))).await;
    sub.subscribe("tls/#", v4::QoS::AtLeastOnce).await;
    let mut pub12 = v4::Client::connect(v4_tls(
        &gw,
        "pub12",
        tls::client_config(&ca, None, &[&TLS12]),
    ))
    .await;
    pub12.publish_acked("tls/one-two", "over TLS 1.2").await;
    let got = sub.expect().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        ("tls/one-two", &b"over TLS 1.2"[..])
    );
    // And to a plain TCP subscriber: one core behind every listener.
    let mut plain = v4::Client::connect(v4::options(gw.mqtt_addr(), "plain")).await;
    plain.subscribe("tls/#", v4::QoS::AtLeastOnce).await;
    pub12.publish_acked("tls/again", "both").await;
    assert_eq!(&sub.expect().await.payload[..], b"both");
    assert_eq!(&plain.expect().await.payload[..], b"both");
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_both_negotiated() {
    let ca = Ca::new("versions CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[]).start();
    for (version, expected) in [
        (&TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut stream = tls::connect(mqtts(&gw), tls::client_config(&ca, None, &[version]))
            .await
            .expect("handshake");
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        assert_eq!(raw_connack(&mut stream).await.unwrap(), RAW_CONNACK_OK);
    }
}

#[tokio::test]
async fn tls_1_2_client_is_refused_when_min_version_is_1_3() {
    let ca = Ca::new("min version CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[("TETHER_TLS__MIN_VERSION", "1.3")]).start();
    let refused = tls::connect(mqtts(&gw), tls::client_config(&ca, None, &[&TLS12])).await;
    assert!(refused.is_err(), "a TLS 1.2 handshake succeeded");
    assert_refusal_logged(&gw, "Tls12NotOffered");
    let mut ok = tls::connect(mqtts(&gw), tls::client_config(&ca, None, &[&TLS13]))
        .await
        .expect("TLS 1.3 handshake");
    assert_eq!(raw_connack(&mut ok).await.unwrap(), RAW_CONNACK_OK);
}

#[tokio::test]
async fn client_trusting_another_ca_does_not_connect() {
    let ca = Ca::new("real CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[]).start();
    let stranger = Ca::new("stranger CA");
    let err = tls::connect(
        mqtts(&gw),
        tls::client_config(&stranger, None, ALL_VERSIONS),
    )
    .await
    .expect_err("a certificate from an untrusted CA was accepted");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn silent_handshake_times_out_without_holding_up_other_clients() {
    let ca = Ca::new("timeout CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[("TETHER_TLS__HANDSHAKE_TIMEOUT", "500ms")]).start();
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(mqtts(&gw)).await.unwrap();
    // While it sits there, others complete their handshakes.
    let mut other = tls::connect(mqtts(&gw), tls::client_config(&ca, None, ALL_VERSIONS))
        .await
        .expect("handshake next to a silent client");
    assert_eq!(raw_connack(&mut other).await.unwrap(), RAW_CONNACK_OK);
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("the silent connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close the connection");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "closed too early"
    );
    assert_refusal_logged(&gw, "no handshake within");
}

#[tokio::test]
async fn connection_limit_counts_tls_connections() {
    let ca = Ca::new("limit CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[("TETHER_MQTT__MAX_CONNECTIONS", "1")]).start();
    let _plain = v4::Client::connect(v4::options(gw.mqtt_addr(), "plain")).await;
    let mut stream = tls::connect(mqtts(&gw), tls::client_config(&ca, None, ALL_VERSIONS))
        .await
        .expect("handshake");
    // CONNACK return code 3: server unavailable.
    assert_eq!(raw_connack(&mut stream).await.unwrap(), [0x20, 2, 0, 3]);
}

// --- mutual TLS ------------------------------------------------------------------------

/// Anonymous clients refused; a device may publish under its own name only,
/// and the dashboard may subscribe to every device.
const DEVICE_ACL: &str = r#"
[auth]
allow_anonymous = false
acl_default = "deny"

[[auth.acl]]
action = "publish"
topic = "devices/%u/#"

[[auth.acl]]
user = "dashboard"
action = "subscribe"
topic = "devices/#"
"#;

fn mtls_files(ca: &Ca) -> ServerFiles {
    ServerFiles::write(&ca.server(), Some(ca))
}

#[tokio::test]
async fn certificate_cn_is_the_username_acl_rules_match() {
    let ca = Ca::new("fleet CA");
    let files = mtls_files(&ca);
    let gw = builder(&files, &[("TETHER_TLS__USE_IDENTITY_AS_USERNAME", "true")])
        .config(DEVICE_ACL)
        .start();
    let dashboard = ca.client("dashboard");
    let (mut watch, _) = v5::Client::connect(v5_tls(
        &gw,
        "dash",
        tls::client_config(&ca, Some(&dashboard), ALL_VERSIONS),
    ))
    .await;
    assert_eq!(
        watch.subscribe("devices/#", v5::QoS::AtLeastOnce).await,
        [v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]
    );
    // No username or password in CONNECT: the certificate authenticates.
    let sensor = ca.client("sensor-1");
    let (mut device, _) = v5::Client::connect(v5_tls(
        &gw,
        "anything",
        tls::client_config(&ca, Some(&sensor), ALL_VERSIONS),
    ))
    .await;
    device
        .client
        .publish("devices/sensor-1/temp", v5::QoS::AtLeastOnce, false, "21.5")
        .await
        .unwrap();
    let got = watch.expect().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"devices/sensor-1/temp"[..], &b"21.5"[..])
    );
    let ack = device
        .wait_for(WAIT, |p| match p {
            v5::Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await;
    assert_eq!(ack, Some(v5::PubAckReason::Success));

    // Another device's topic is refused (PUBACK 0x87) and never delivered.
    device
        .client
        .publish(
            "devices/sensor-2/temp",
            v5::QoS::AtLeastOnce,
            false,
            "spoofed",
        )
        .await
        .unwrap();
    let ack = device
        .wait_for(WAIT, |p| match p {
            v5::Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await;
    assert_eq!(ack, Some(v5::PubAckReason::NotAuthorized));
    watch.expect_none(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_without_certificate_is_refused_when_certificates_are_required() {
    let ca = Ca::new("required CA");
    let files = mtls_files(&ca);
    let gw = builder(&files, &[]).start();
    let mut c = v4::Client::start(v4_tls(
        &gw,
        "no-cert",
        tls::client_config(&ca, None, ALL_VERSIONS),
    ));
    assert!(
        c.connection_error(WAIT).await.is_some(),
        "connected without a certificate"
    );
    assert_refusal_logged(&gw, "(?i)no certificates");
}

#[tokio::test]
async fn client_certificate_from_an_unknown_ca_is_refused_at_the_handshake() {
    let ca = Ca::new("fleet CA");
    let files = mtls_files(&ca);
    let gw = builder(&files, &[("TETHER_TLS__USE_IDENTITY_AS_USERNAME", "true")])
        .config(DEVICE_ACL)
        .start();
    let rogue = Ca::new("rogue CA").client("sensor-1");
    let mut c = v4::Client::start(v4_tls(
        &gw,
        "rogue",
        tls::client_config(&ca, Some(&rogue), ALL_VERSIONS),
    ));
    assert!(
        c.connection_error(WAIT).await.is_some(),
        "a rogue certificate connected"
    );
    assert_refusal_logged(&gw, "UnknownIssuer");
    // The refusal is counted too (the log line is written after the count).
    let scrape = tether_e2e::prom::scrape(gw.http.expect("http listener")).await;
    let refused = scrape.val(
        "tether_connections_refused_total",
        &[("protocol", "mqtt"), ("reason", "tls_handshake")],
    );
    assert!(refused >= 1.0, "tls_handshake refusals counted: {refused}");
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let ca = Ca::new("fleet CA");
    let files = mtls_files(&ca);
    let gw = builder(&files, &[]).start();
    let expired = ca.expired_client("sensor-old");
    let mut c = v4::Client::start(v4_tls(
        &gw,
        "old",
        tls::client_config(&ca, Some(&expired), ALL_VERSIONS),
    ));
    assert!(
        c.connection_error(WAIT).await.is_some(),
        "an expired certificate connected"
    );
    assert_refusal_logged(&gw, "(?i)expired");
}

#[tokio::test]
async fn optional_client_certificates_let_password_users_in() {
    let ca = Ca::new("optional CA");
    let files = mtls_files(&ca);
    let hash = tether_e2e::amqp::hash_password("s3cret");
    let gw = builder(
        &files,
        &[
            ("TETHER_TLS__CLIENT_AUTH", "optional"),
            ("TETHER_TLS__USE_IDENTITY_AS_USERNAME", "true"),
        ],
    )
    .config(&format!(
        "[auth]\nallow_anonymous = false\n[[auth.users]]\nname = \"alice\"\npassword_hash = '{hash}'\n"
    ))
    .start();
    let no_cert = || tls::client_config(&ca, None, ALL_VERSIONS);
    // Without a certificate: the password decides.
    let mut o = v4_tls(&gw, "alice", no_cert());
    o.set_credentials("alice", "s3cret");
    v4::Client::connect(o).await;
    let refused = connect_refused(v4_tls(&gw, "anon", no_cert())).await;
    assert_eq!(refused, v4::ConnectReturnCode::NotAuthorized);
    // With one: the certificate decides.
    let device = ca.client("sensor-9");
    v4::Client::connect(v4_tls(
        &gw,
        "sensor-9",
        tls::client_config(&ca, Some(&device), ALL_VERSIONS),
    ))
    .await;
}

#[tokio::test]
async fn certificate_identity_is_the_client_id() {
    let ca = Ca::new("client id CA");
    let files = mtls_files(&ca);
    let gw = builder(&files, &[("TETHER_TLS__USE_IDENTITY_AS_CLIENT_ID", "true")])
        .config(
            "[auth]\nacl_default = \"deny\"\n[[auth.acl]]\naction = \"all\"\ntopic = \"devices/%c/#\"\n",
        )
        .start();
    let cert = ca.client("sensor-7");
    let config = || tls::client_config(&ca, Some(&cert), ALL_VERSIONS);
    // Another client id than the certificate's is refused (identifier rejected).
    let refused = connect_refused(v4_tls(&gw, "sensor-8", config())).await;
    assert_eq!(refused, v4::ConnectReturnCode::BadClientId);
    // Its own id works, and %c is it.
    let mut c = v4::Client::connect(v4_tls(&gw, "sensor-7", config())).await;
    c.subscribe("devices/sensor-7/#", v4::QoS::AtLeastOnce)
        .await;
    c.publish_acked("devices/sensor-7/state", "on").await;
    assert_eq!(&c.expect().await.payload[..], b"on");
}

#[tokio::test]
async fn empty_client_id_becomes_the_certificate_identity() {
    use tether_protocols::mqtt::{self, Packet, ProtocolVersion};
    let ca = Ca::new("assigned CA");
    let files = mtls_files(&ca);
    let gw = builder(
        &files,
        &[
            ("TETHER_TLS__USE_IDENTITY_AS_CLIENT_ID", "true"),
            ("TETHER_TLS__IDENTITY", "san"),
        ],
    )
    .start();
    let cert = ca.client_with_san("pump-3.plant.example");
    let mut stream = tls::connect(
        mqtts(&gw),
        tls::client_config(&ca, Some(&cert), ALL_VERSIONS),
    )
    .await
    .expect("handshake");
    let connect = Packet::Connect(tether_e2e::raw::connect_packet(ProtocolVersion::V5, ""));
    let mut out = vec![0u8; 64];
    let n = connect
        .encode(ProtocolVersion::V5, &mut out)
        .expect("encode CONNECT");
    stream.write_all(&out[..n]).await.unwrap();
    let mut buf = vec![0u8; 256];
    let mut len = 0;
    let connack = loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf[len..]))
            .await
            .expect("CONNACK in time")
            .unwrap();
        assert!(n > 0, "closed before CONNACK");
        len += n;
        match mqtt::decode(&buf[..len], ProtocolVersion::V5, 1 << 20) {
            Ok((Packet::ConnAck(a), _)) => {
                let assigned = a.properties.assigned_client_identifier.map(str::to_owned);
                break (a.code.0, assigned);
            }
            Ok((other, _)) => panic!("expected CONNACK, got {other:?}"),
            Err(_) => continue,
        }
    };
    assert_eq!(connack, (0, Some("pump-3.plant.example".to_owned())));
}

// --- AMQP over TLS -------------------------------------------------------------------------

/// Connects lapin to the gateway's amqps listener trusting `ca`, presenting
/// `identity` when given.
async fn lapin_amqps(
    gw: &Gateway,
    ca: &Ca,
    identity: Option<&tls::Leaf>,
) -> Result<lapin::Connection, String> {
    use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
    let addr = gw.addr("amqps").expect("amqps listener logged");
    let uri = format!("amqps://{}:{}/%2f", addr.ip(), addr.port());
    let tls = OwnedTLSConfig {
        identity: identity.map(|leaf| OwnedIdentity::PKCS8 {
            pem: leaf.cert_pem.clone().into_bytes(),
            key: leaf.key_pem.clone().into_bytes(),
        }),
        cert_chain: Some(ca.pem()),
    };
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    let connect = lapin::Connection::connect_with_config(
        &uri,
        lapin::ConnectionProperties::default(),
        tls,
        runtime,
    );
    match tokio::time::timeout(WAIT, connect).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("amqps connect timed out".into()),
    }
}

#[tokio::test]
async fn lapin_publishes_and_consumes_over_amqps() {
    use futures_lite::StreamExt;
    use lapin::options::*;
    let ca = Ca::new("amqps CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[]).start();
    let conn = lapin_amqps(&gw, &ca, None).await.expect("amqps connect");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "tls-q".into(),
        QueueDeclareOptions::default(),
        Default::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        "tls-q".into(),
        BasicPublishOptions::default(),
        b"over amqps",
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "tls-q".into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("delivery in time")
        .expect("a delivery")
        .expect("delivery ok");
    assert_eq!(delivery.data, b"over amqps");
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn client_certificates_are_asked_for_only_on_the_listed_listeners() {
    let ca = Ca::new("listeners CA");
    let files = mtls_files(&ca);
    // By default MQTT (devices) asks, AMQPS and HTTPS (applications) do not.
    let gw = builder(&files, &[]).start();
    let no_cert = tls::client_config(&ca, None, ALL_VERSIONS);
    assert!(
        v4::Client::start(v4_tls(&gw, "no-cert", no_cert))
            .connection_error(WAIT)
            .await
            .is_some(),
        "mqtts let a client without certificate in"
    );
    let https = gw.addr("https").expect("https listener logged");
    assert_eq!(
        tls::https_get(https, &ca, "/healthz").await.unwrap().status,
        200
    );
    lapin_amqps(&gw, &ca, None)
        .await
        .expect("amqps without a client certificate");
    drop(gw);

    // Listed, AMQPS asks too: lapin with a certificate gets in, without one not.
    let gw = builder(&files, &[])
        .config("[tls]\nclient_cert_listeners = [\"amqps\"]\n")
        .start();
    let app = ca.client("billing-app");
    let conn = lapin_amqps(&gw, &ca, Some(&app))
        .await
        .expect("amqps with a certificate");
    conn.create_channel().await.expect("channel");
    assert!(
        lapin_amqps(&gw, &ca, None).await.is_err(),
        "amqps let a client without certificate in"
    );
    let refused =
        Regex::new(r"tls handshake refused protocol=amqps .*reason=.*(?i)no certificates").unwrap();
    assert!(
        gw.log().wait_for(&refused, WAIT).is_some(),
        "{}",
        gw.log().text()
    );
}

// --- HTTPS -----------------------------------------------------------------------------

#[tokio::test]
async fn https_health_check_answers_over_tls() {
    let ca = Ca::new("https CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[]).start();
    let addr = gw.addr("https").expect("https listener logged");
    let response = tls::https_get(addr, &ca, "/healthz")
        .await
        .expect("GET /healthz");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "ok\n");
    assert_eq!(response.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

// --- reload ----------------------------------------------------------------------------

fn sighup(gw: &Gateway) {
    let pid = gw.pid().expect("running") as i32;
    // SAFETY: kill(2) with the pid of a child we spawned and have not reaped.
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_connections() {
    let old_ca = Ca::new("old CA");
    let files = ServerFiles::write(&old_ca.server(), None);
    let gw = builder(&files, &[]).start();
    let mut before = v4::Client::connect(v4_tls(
        &gw,
        "before",
        tls::client_config(&old_ca, None, ALL_VERSIONS),
    ))
    .await;
    before.subscribe("reload/#", v4::QoS::AtLeastOnce).await;

    let new_ca = Ca::new("new CA");
    files.replace(&new_ca.server());
    sighup(&gw);
    let reloaded = Regex::new("tls certificates reloaded").unwrap();
    assert!(
        gw.log().wait_for(&reloaded, WAIT).is_some(),
        "{}",
        gw.log().text()
    );

    // New handshakes present the new certificate...
    let err = tls::connect(mqtts(&gw), tls::client_config(&old_ca, None, ALL_VERSIONS))
        .await
        .expect_err("the old certificate is still served");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let mut after = v4::Client::connect(v4_tls(
        &gw,
        "after",
        tls::client_config(&new_ca, None, ALL_VERSIONS),
    ))
    .await;
    // ...and the connection made before the reload still works.
    after.publish_acked("reload/x", "still here").await;
    assert_eq!(&before.expect().await.payload[..], b"still here");
}

#[tokio::test]
async fn failed_reload_keeps_the_current_certificate() {
    let ca = Ca::new("steady CA");
    let files = ServerFiles::write(&ca.server(), None);
    let gw = builder(&files, &[]).start();
    std::fs::write(&files.cert, "not a certificate").unwrap();
    sighup(&gw);
    let failed = Regex::new(r"tls reload failed.*tls\.cert").unwrap();
    assert!(
        gw.log().wait_for(&failed, WAIT).is_some(),
        "{}",
        gw.log().text()
    );
    let mut stream = tls::connect(mqtts(&gw), tls::client_config(&ca, None, ALL_VERSIONS))
        .await
        .expect("the previous certificate still serves");
    assert_eq!(raw_connack(&mut stream).await.unwrap(), RAW_CONNACK_OK);
}
