//! Malformed and out-of-order input over raw TCP: the gateway refuses it
//! precisely, logs it once, and keeps serving everyone else.
//!
//! Every test:
//! * connects a healthy publisher/subscriber pair first and checks a round trip;
//! * has a raw client misbehave. After CONNECT, an MQTT 5 connection must get
//!   DISCONNECT with the precise reason code and then be closed; an MQTT 3.1.1
//!   connection (which has no DISCONNECT from the server) is just closed.
//!   Before CONNECT there is nothing to answer with but closing (or, for an
//!   unsupported protocol level, a 3.1.1 CONNACK with return code 1);
//! * checks the gateway logged exactly one line (above debug) naming the
//!   misbehaving peer's address;
//! * checks the healthy pair still works, a new pair can connect and work, and
//!   nothing panicked.
//!
//! The reason codes follow the MQTT 5 specification: 0x81 where it says "is a
//! Malformed Packet", 0x82 where it says "is a Protocol Error", 0x90/0x8F for
//! well-formed but unacceptable topic names/filters, 0x95 for packet size.

use std::net::SocketAddr;
use std::time::Duration;

use tether_e2e::mqtt::WAIT;
use tether_e2e::mqtt::v5::{self, Client, Packet as V5Packet, QoS as V5QoS};
use tether_e2e::raw::{
    self, Packet, Properties, ProtocolVersion, QoS, RawClient, ReasonCode, Subscribe,
    SubscribeFilters, SubscriptionOptions,
};
use tether_e2e::{Gateway, eventually};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A subscriber and a publisher that must keep working whatever others send.
struct Healthy {
    sub: Client,
    publisher: Client,
    topic: String,
    sent: u32,
}

impl Healthy {
    async fn start(gw: &Gateway, name: &str) -> Healthy {
        let addr = gw.mqtt_addr();
        let (mut sub, _) = Client::connect(v5::options(addr, &format!("{name}-sub"))).await;
        let topic = format!("healthy/{name}");
        sub.subscribe(&topic, V5QoS::AtLeastOnce).await;
        let (publisher, _) = Client::connect(v5::options(addr, &format!("{name}-pub"))).await;
        let mut h = Healthy {
            sub,
            publisher,
            topic,
            sent: 0,
        };
        h.round_trip().await;
        h
    }

    /// Publishes one QoS 1 message and checks it is acknowledged and delivered.
    async fn round_trip(&mut self) {
        self.sent += 1;
        let payload = self.sent.to_string();
        self.publisher
            .client
            .publish(&self.topic, V5QoS::AtLeastOnce, false, payload.clone())
            .await
            .expect("publish request");
        self.publisher
            .wait_for(WAIT, |p| matches!(p, V5Packet::PubAck(_)).then_some(()))
            .await
            .expect("healthy publisher got no PUBACK");
        let p = self
            .sub
            .recv(WAIT)
            .await
            .expect("healthy subscriber got nothing");
        assert_eq!(p.payload, payload.as_bytes(), "healthy round trip");
    }
}

/// A gateway with a healthy pair already working.
async fn gateway(builder: tether_e2e::GatewayBuilder) -> (Gateway, Healthy) {
    let gw = builder.start();
    let before = Healthy::start(&gw, "before").await;
    (gw, before)
}

/// The healthy pair still works, a new pair works, nothing panicked, and each
/// misbehaving peer got exactly one log line.
async fn assert_unharmed(gw: &Gateway, before: &mut Healthy, peers: &[SocketAddr]) {
    before.round_trip().await;
    let mut after = Healthy::start(gw, "after").await;
    after.round_trip().await;
    for peer in peers {
        assert_logged_once(gw, *peer).await;
    }
    let log = gw.log().text();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");
}

/// Exactly one log line above debug names `peer`.
async fn assert_logged_once(gw: &Gateway, peer: SocketAddr) {
    let re =
        regex::Regex::new(&format!(r"peer={}(\s|$)", regex::escape(&peer.to_string()))).unwrap();
    let lines = || -> Vec<String> {
        gw.log()
            .text()
            .lines()
            .filter(|l| re.is_match(l) && !l.contains(" DEBUG ") && !l.contains(" TRACE "))
            .map(str::to_owned)
            .collect()
    };
    eventually(WAIT, || !lines().is_empty()).await;
    // Let any further line for this peer show up before counting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lines = lines();
    assert_eq!(
        lines.len(),
        1,
        "expected one log line naming {peer}, got {lines:#?}\nfull log:\n{}",
        gw.log().text()
    );
}

/// Connects a raw client with `version`, sends `bytes`, and checks the answer:
/// DISCONNECT with `code` then close for MQTT 5, close for MQTT 3.1.1.
/// Returns the peer address the gateway saw.
async fn misbehave_after_connect(
    gw: &Gateway,
    version: ProtocolVersion,
    code: ReasonCode,
    bytes: &[u8],
) -> SocketAddr {
    let id = format!("bad-v{}", version.level());
    let mut c = RawClient::connect(gw.mqtt_addr(), version, &id).await;
    c.send(bytes).await;
    if version.is_v5() {
        let (got, why) = c.expect_disconnect(WAIT).await;
        assert_eq!(
            got, code.0,
            "DISCONNECT reason 0x{got:02X} (reason string {why:?}), expected 0x{:02X}",
            code.0
        );
    }
    c.expect_closed(WAIT).await;
    c.local
}

/// Runs one after-CONNECT case for each version in `versions`.
async fn after_connect_case(
    builder: tether_e2e::GatewayBuilder,
    versions: &[ProtocolVersion],
    code: ReasonCode,
    bytes: impl Fn(ProtocolVersion) -> Vec<u8>,
) {
    let (gw, mut before) = gateway(builder).await;
    let mut peers = Vec::new();
    for &v in versions {
        peers.push(misbehave_after_connect(&gw, v, code, &bytes(v)).await);
    }
    assert_unharmed(&gw, &mut before, &peers).await;
}

/// Sends `bytes` as the very first thing on a connection and checks the
/// gateway answers with exactly `answer` (possibly nothing) and closes.
async fn before_connect_case(bytes: &[u8], answer: &[u8]) {
    let (gw, mut before) = gateway(Gateway::builder()).await;
    let mut c = RawClient::tcp(gw.mqtt_addr(), V3).await;
    c.send(bytes).await;
    if !answer.is_empty() {
        let f = c.expect_frame(WAIT).await;
        assert_eq!(&f.0[..], answer, "gateway answer");
    }
    c.expect_closed(WAIT).await;
    assert_unharmed(&gw, &mut before, &[c.local]).await;
}

fn encode(version: ProtocolVersion, packet: Packet<'_>) -> Vec<u8> {
    raw::encode(version, &packet)
}

/// A QoS 1 PUBLISH on `topic` (packet id 1); topic bytes start at offset 4.
fn publish(version: ProtocolVersion, topic: &str) -> Vec<u8> {
    let bytes = encode(
        version,
        Packet::Publish(raw::publish_packet(topic, QoS::AtLeastOnce, b"payload")),
    );
    assert!(
        bytes[1] < 0x80,
        "one-byte remaining length keeps offsets fixed"
    );
    bytes
}

/// Offset of the first topic byte in a small PUBLISH.
const TOPIC_AT: usize = 4;

fn subscribe(version: ProtocolVersion, filter: &str) -> Vec<u8> {
    let filters = [(filter, SubscriptionOptions::with_qos(QoS::AtLeastOnce))];
    encode(
        version,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::new(),
            filters: SubscribeFilters::Slice(&filters),
        }),
    )
}

/// An MQTT 5 QoS 0 PUBLISH on `t` with a hand-written property block.
fn v5_publish_with_properties(properties: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, b't'];
    body.push(u8::try_from(properties.len()).expect("short property block"));
    body.extend_from_slice(properties);
    body.extend_from_slice(b"payload");
    let mut packet = vec![0x30, u8::try_from(body.len()).expect("short packet")];
    packet.extend_from_slice(&body);
    packet
}

// ---------------------------------------------------------------- fixed header

#[tokio::test]
async fn remaining_length_of_five_bytes_is_malformed() {
    // Continuation bit set on four length bytes (each adding 0, so the size
    // limit cannot be what trips first), then a fifth.
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::MALFORMED_PACKET,
        |_| vec![0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
    )
    .await;
}

#[tokio::test]
async fn reserved_fixed_header_flags_are_malformed() {
    // SUBSCRIBE must carry flags 0b0010; send 0b0000.
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::MALFORMED_PACKET,
        |v| {
            let mut b = subscribe(v, "flags/t");
            b[0] = 0x80;
            b
        },
    )
    .await;
}

#[tokio::test]
async fn publish_with_qos_3_is_malformed() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::MALFORMED_PACKET,
        |v| {
            let mut b = publish(v, "qos/t");
            b[0] |= 0b0110;
            b
        },
    )
    .await;
}

#[tokio::test]
async fn qos1_publish_with_packet_identifier_0_is_protocol_error() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::PROTOCOL_ERROR,
        |v| {
            let topic = "pid/t";
            let mut b = publish(v, topic);
            let at = TOPIC_AT + topic.len();
            assert_eq!(&b[at..at + 2], &[0, 1], "packet id position");
            b[at..at + 2].copy_from_slice(&[0, 0]);
            b
        },
    )
    .await;
}

// ---------------------------------------------------------------- strings and topics

#[tokio::test]
async fn invalid_utf8_in_topic_is_malformed() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::MALFORMED_PACKET,
        |v| {
            let mut b = publish(v, "ab/t");
            // 0xC3 must be followed by a continuation byte; '(' is not one.
            b[TOPIC_AT..TOPIC_AT + 2].copy_from_slice(&[0xC3, 0x28]);
            b
        },
    )
    .await;
}

#[tokio::test]
async fn null_character_in_topic_is_malformed() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::MALFORMED_PACKET,
        |v| {
            let mut b = publish(v, "nul/t");
            b[TOPIC_AT + 1] = 0x00;
            b
        },
    )
    .await;
}

#[tokio::test]
async fn wildcard_in_publish_topic_is_topic_name_invalid() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::TOPIC_NAME_INVALID,
        |v| {
            let mut b = publish(v, "a/x");
            b[TOPIC_AT + 2] = b'+';
            b
        },
    )
    .await;
}

#[tokio::test]
async fn misplaced_multi_level_wildcard_in_filter_is_topic_filter_invalid() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::TOPIC_FILTER_INVALID,
        |v| {
            let mut b = subscribe(v, "a/x/b");
            let at = b
                .windows(5)
                .position(|w| w == b"a/x/b")
                .expect("filter bytes");
            b[at + 2] = b'#';
            b
        },
    )
    .await;
}

#[tokio::test]
async fn subscribe_without_filters_is_protocol_error() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::PROTOCOL_ERROR,
        |v| {
            if v.is_v5() {
                // Packet id 1, empty property block, no payload.
                vec![0x82, 0x03, 0x00, 0x01, 0x00]
            } else {
                vec![0x82, 0x02, 0x00, 0x01]
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------- properties (MQTT 5)

#[tokio::test]
async fn duplicate_property_is_protocol_error() {
    // Content Type (0x03) twice: "It is a Protocol Error to include the Content
    // Type more than once" (§3.3.2.3.9).
    after_connect_case(
        Gateway::builder(),
        &[V5],
        ReasonCode::PROTOCOL_ERROR,
        |_| v5_publish_with_properties(&[0x03, 0x00, 0x01, b'a', 0x03, 0x00, 0x01, b'b']),
    )
    .await;
}

#[tokio::test]
async fn property_not_allowed_on_packet_is_malformed() {
    // Session Expiry Interval (0x11) on a PUBLISH. §2.2.2.2: "A Control Packet
    // which contains an Identifier which is not valid for its packet type ...
    // is a Malformed Packet."
    after_connect_case(
        Gateway::builder(),
        &[V5],
        ReasonCode::MALFORMED_PACKET,
        |_| v5_publish_with_properties(&[0x11, 0x00, 0x00, 0x00, 0x3C]),
    )
    .await;
}

// ---------------------------------------------------------------- size

#[tokio::test]
async fn packet_above_configured_maximum_is_packet_too_large() {
    let builder = Gateway::builder().env("TETHER_MQTT__MAX_PACKET_SIZE", 1024);
    after_connect_case(builder, &[V5, V3], ReasonCode::PACKET_TOO_LARGE, |v| {
        let payload = vec![b'x'; 2000];
        encode(
            v,
            Packet::Publish(raw::publish_packet("big/t", QoS::AtMostOnce, &payload)),
        )
    })
    .await;
}

// ---------------------------------------------------------------- packet types and order

#[tokio::test]
async fn packet_type_0_closes_v311_connection() {
    after_connect_case(
        Gateway::builder(),
        &[V3],
        ReasonCode::MALFORMED_PACKET,
        |_| vec![0x00, 0x00],
    )
    .await;
}

#[tokio::test]
async fn packet_type_15_closes_v311_connection() {
    // AUTH does not exist before MQTT 5.
    after_connect_case(
        Gateway::builder(),
        &[V3],
        ReasonCode::MALFORMED_PACKET,
        |_| vec![0xF0, 0x00],
    )
    .await;
}

#[tokio::test]
async fn second_connect_is_protocol_error() {
    after_connect_case(
        Gateway::builder(),
        &[V5, V3],
        ReasonCode::PROTOCOL_ERROR,
        |v| encode(v, Packet::Connect(raw::connect_packet(v, "again"))),
    )
    .await;
}

#[tokio::test]
async fn first_packet_other_than_connect_is_refused() {
    let publish = encode(
        V3,
        Packet::Publish(raw::publish_packet("early/t", QoS::AtMostOnce, b"x")),
    );
    before_connect_case(&publish, &[]).await;
}

#[tokio::test]
async fn garbage_before_connect_is_refused() {
    let mut bytes = vec![0x00, 0xFF, 0x13, 0x37];
    bytes.extend(encode(V3, Packet::Connect(raw::connect_packet(V3, "late"))));
    before_connect_case(&bytes, &[]).await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_v311_connack_return_code_1() {
    let mut bytes = encode(V3, Packet::Connect(raw::connect_packet(V3, "future")));
    // Fixed header (2), protocol name "MQTT" (2 + 4), then the level.
    assert_eq!(bytes[8], 4, "protocol level position");
    bytes[8] = 6;
    before_connect_case(&bytes, &[0x20, 0x02, 0x00, 0x01]).await;
}
