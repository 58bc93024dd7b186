//! Malformed and out-of-order AMQP 0-9-1 over raw TCP: the gateway raises the
//! exact exception RabbitMQ would, and keeps serving everyone else.
//!
//! Every test:
//! * connects a healthy lapin client first and checks a round trip;
//! * has a raw client (`tether_e2e::raw_amqp`) misbehave and asserts the
//!   exception: connection.close (then, after our close-ok, the socket
//!   closes) or channel.close (the connection stays usable), with the reply
//!   code and, where they name the failing method, its class and method ids;
//! * checks the healthy client still works, a new one can connect and work,
//!   and nothing panicked.
//!
//! Reply codes are AMQP 0-9-1's (§1.9) as RabbitMQ uses them; an unknown class
//! or method is 540 NOT_IMPLEMENTED, our documented choice.

use std::net::SocketAddr;

use tether_e2e::Gateway;
use tether_e2e::amqp::{self, BasicProperties, Channel, Connection, Consumer, WAIT};
use tether_e2e::raw_amqp::{
    self, AMQPClass, FRAME_BODY, FRAME_HEARTBEAT, FRAME_METHOD, Login, PROTOCOL_HEADER, RawAmqp,
    Received, basic, channel, connection, queue,
};

const FRAME_ERROR: u16 = 501;
const CHANNEL_ERROR: u16 = 504;
const UNEXPECTED_FRAME: u16 = 505;
const NOT_ALLOWED: u16 = 530;
const NOT_IMPLEMENTED: u16 = 540;
const ACCESS_REFUSED: u16 = 403;
const NOT_FOUND: u16 = 404;
const PRECONDITION_FAILED: u16 = 406;

/// A lapin client that must keep working whatever others send.
struct Healthy {
    _conn: Connection,
    ch: Channel,
    consumer: Consumer,
    queue: String,
    sent: u32,
}

impl Healthy {
    async fn start(addr: SocketAddr) -> Healthy {
        let (conn, ch) = amqp::channel(addr).await;
        let queue = amqp::bound_queue(&ch, "", "amq.topic", &[]).await;
        let consumer = amqp::consume(&ch, &queue, "", true).await;
        let mut h = Healthy {
            _conn: conn,
            ch,
            consumer,
            queue,
            sent: 0,
        };
        h.round_trip().await;
        h
    }

    /// Publishes through the default exchange and expects the delivery.
    async fn round_trip(&mut self) {
        self.sent += 1;
        let body = format!("healthy {}", self.sent);
        amqp::publish_with(
            &self.ch,
            "",
            &self.queue,
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await;
        let d = amqp::next(&mut self.consumer, WAIT)
            .await
            .expect("healthy client lost its delivery");
        assert_eq!(d.data, body.as_bytes());
    }

    /// The healthy client still works, a new one does too, and nothing panicked.
    async fn check(mut self, gw: &Gateway) {
        self.round_trip().await;
        Healthy::start(gw.amqp.unwrap()).await.round_trip().await;
        let log = gw.log().text();
        assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");
    }
}

/// A gateway, a healthy client, and a raw client logged in with channel 1 open.
async fn setup() -> (Gateway, Healthy, RawAmqp) {
    let gw = Gateway::start();
    let healthy = Healthy::start(gw.amqp.unwrap()).await;
    let raw = RawAmqp::connect(gw.amqp.unwrap()).await;
    (gw, healthy, raw)
}

/// Expects connection.close with `code`, answers close-ok, expects the socket
/// to close; returns the close's (class id, method id).
async fn expect_connection_error(raw: &mut RawAmqp, code: u16) -> (u16, u16) {
    let close = raw.expect_connection_close().await;
    assert_eq!(
        close.reply_code,
        code,
        "connection.close {} {:?}",
        close.reply_code,
        close.reply_text.as_str()
    );
    raw.close_ok().await;
    (close.class_id, close.method_id)
}

/// Expects channel.close with `code` on `ch` and answers close-ok; returns
/// the close's (class id, method id).
async fn expect_channel_error(raw: &mut RawAmqp, ch: u16, code: u16) -> (u16, u16) {
    let close = raw.expect_channel_close(ch).await;
    assert_eq!(
        close.reply_code,
        code,
        "channel.close {} {:?}",
        close.reply_code,
        close.reply_text.as_str()
    );
    raw.channel_close_ok(ch).await;
    (close.class_id, close.method_id)
}

fn declare(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: Default::default(),
    }))
}

fn publish_method(exchange: &str, key: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: exchange.into(),
        routing_key: key.into(),
        mandatory: false,
        immediate: false,
    }))
}

// ------------------------------------------------------------ handshake

#[tokio::test]
async fn handshake_negotiates_0_9_1_and_client_close_gets_close_ok() {
    let gw = Gateway::start();
    let healthy = Healthy::start(gw.amqp.unwrap()).await;
    let (mut raw, negotiated) = RawAmqp::login(gw.amqp.unwrap(), &Login::default()).await;
    let start = &negotiated.start;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let mechanisms = start.mechanisms.to_string();
    assert!(
        mechanisms.split(' ').any(|m| m == "PLAIN"),
        "mechanisms {mechanisms:?}"
    );
    let caps = match start.server_properties.inner().get("capabilities") {
        Some(raw_amqp::AMQPValue::FieldTable(t)) => t.clone(),
        other => panic!("no capabilities table: {other:?}"),
    };
    for cap in [
        "authentication_failure_close",
        "publisher_confirms",
        "basic.nack",
    ] {
        assert_eq!(
            caps.inner().get(cap),
            Some(&raw_amqp::AMQPValue::Boolean(true)),
            "capability {cap}"
        );
    }
    assert!(negotiated.tune.frame_max >= 4096, "{:?}", negotiated.tune);
    raw.round_trip(1, "raw-q", b"raw works").await;

    raw.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match raw.expect_method(0).await {
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
    raw.expect_closed().await;
    healthy.check(&gw).await;
}

#[tokio::test]
async fn unsupported_protocol_header_is_answered_with_ours_then_closed() {
    let gw = Gateway::start();
    let healthy = Healthy::start(gw.amqp.unwrap()).await;
    for header in [
        &b"AMQP\x00\x00\x09\x00"[..], // 0-9-0
        b"AMQP\x01\x01\x00\x09",      // 0-8 as RabbitMQ 1.x clients send it
        b"AMQP\x00\x01\x00\x00",      // AMQP 1.0
        b"HTTP/1.1",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut raw = RawAmqp::tcp(gw.amqp.unwrap()).await;
        raw.send(header).await;
        let answer = raw.recv_bytes(8, WAIT).await;
        assert_eq!(
            answer,
            PROTOCOL_HEADER,
            "answer to {:?}",
            String::from_utf8_lossy(header)
        );
        assert!(
            matches!(raw.recv(WAIT).await, Received::Closed),
            "connection must close after the header for {:?}",
            String::from_utf8_lossy(header)
        );
    }
    healthy.check(&gw).await;
}

#[tokio::test]
async fn unknown_vhost_is_refused_with_530() {
    let gw = Gateway::start();
    let healthy = Healthy::start(gw.amqp.unwrap()).await;
    let login = Login {
        vhost: "/nowhere".into(),
        ..Login::default()
    };
    let (mut raw, _) = RawAmqp::handshake_with(gw.amqp.unwrap(), &login).await;
    let ids = expect_connection_error(&mut raw, NOT_ALLOWED).await;
    assert_eq!(ids, (10, 40), "the close names connection.open");
    healthy.check(&gw).await;
}

#[tokio::test]
async fn wrong_credentials_are_refused_with_403_when_the_client_asks_for_the_close() {
    let hash = amqp::hash_password("right");
    let gw = Gateway::builder()
        .config(&format!(
            "[[auth.users]]\nname = \"sensor\"\npassword_hash = '{hash}'\n"
        ))
        .start();
    let healthy = Healthy::start(gw.amqp.unwrap()).await;
    let addr = gw.amqp.unwrap();

    // The right password works.
    let (mut ok, _) = RawAmqp::login(addr, &Login::plain("sensor", "right")).await;
    ok.round_trip(1, "sensor-q", b"logged in").await;

    // A client that announced authentication_failure_close gets the close…
    let (mut raw, _) = RawAmqp::start(addr).await;
    raw.send_start_ok(&Login::plain("sensor", "wrong")).await;
    let ids = expect_connection_error(&mut raw, ACCESS_REFUSED).await;
    assert_eq!(ids, (10, 11), "the close names connection.start-ok");

    // … one that did not is just disconnected, as RabbitMQ does.
    let (mut raw, _) = RawAmqp::start(addr).await;
    raw.send_start_ok(&Login {
        auth_failure_close: false,
        ..Login::plain("sensor", "wrong")
    })
    .await;
    raw.expect_closed().await;
    healthy.check(&gw).await;
}

// ------------------------------------------------------------ framing

#[tokio::test]
async fn bad_frame_end_octet_is_frame_error() {
    let (gw, healthy, mut raw) = setup().await;
    let mut frame = raw_amqp::method_frame(1, declare("q"));
    *frame.last_mut().unwrap() = 0x00;
    raw.send(&frame).await;
    expect_connection_error(&mut raw, FRAME_ERROR).await;
    healthy.check(&gw).await;
}

#[tokio::test]
async fn frame_larger_than_negotiated_frame_max_is_frame_error() {
    let gw = Gateway::start();
    let healthy = Healthy::start(gw.amqp.unwrap()).await;
    let login = Login {
        frame_max: 4096,
        ..Login::default()
    };
    let (mut raw, _) = RawAmqp::login(gw.amqp.unwrap(), &login).await;
    // frame_max counts the whole frame: a 4088-byte body frame is exactly 4096.
    raw.round_trip(1, "edge", &[b'e'; 4088]).await;
    // A whole 5000-byte body in one frame: 5008 bytes on the wire > 4096.
    let body = vec![b'x'; 5000];
    raw.send(&raw_amqp::method_frame(1, publish_method("", "big")))
        .await;
    raw.send(&raw_amqp::header_frame(1, 5000, BasicProperties::default()))
        .await;
    raw.try_send(&raw_amqp::body_frame(1, &body)).await;
    expect_connection_error(&mut raw, FRAME_ERROR).await;
    healthy.check(&gw).await;
}

#[tokio::test]
async fn unknown_frame_type_is_frame_error() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send(&raw_amqp::raw_frame(9, 1, b"what")).await;
    expect_connection_error(&mut raw, FRAME_ERROR).await;
    healthy.check(&gw).await;
}

#[tokio::test]
async fn heartbeat_on_a_nonzero_channel_is_frame_error() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send(&raw_amqp::raw_frame(FRAME_HEARTBEAT, 1, &[]))
        .await;
    expect_connection_error(&mut raw, FRAME_ERROR).await;
    healthy.check(&gw).await;
}

// ------------------------------------------------------------ channels

#[tokio::test]
async fn method_on_a_channel_never_opened_is_channel_error() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send_method(5, declare("q")).await;
    let ids = expect_connection_error(&mut raw, CHANNEL_ERROR).await;
    assert_eq!(ids, (50, 10), "the close names queue.declare");
    healthy.check(&gw).await;
}

#[tokio::test]
async fn method_on_a_closed_channel_is_channel_error() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "done".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match raw.expect_method(1).await {
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {}
        other => panic!("expected channel.close-ok, got {other:?}"),
    }
    raw.send_method(1, declare("q")).await;
    let ids = expect_connection_error(&mut raw, CHANNEL_ERROR).await;
    assert_eq!(ids, (50, 10), "the close names queue.declare");
    healthy.check(&gw).await;
}

#[tokio::test]
async fn second_channel_open_on_an_open_channel_is_channel_error() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    let ids = expect_connection_error(&mut raw, CHANNEL_ERROR).await;
    assert_eq!(ids, (20, 10), "the close names channel.open");
    healthy.check(&gw).await;
}

#[tokio::test]
async fn publish_to_a_missing_exchange_closes_only_that_channel() {
    let (gw, healthy, mut raw) = setup().await;
    raw.open_channel(2).await;
    raw.send(&raw_amqp::publish_frames(
        1,
        "no-such-exchange",
        "k",
        b"lost",
    ))
    .await;
    let ids = expect_channel_error(&mut raw, 1, NOT_FOUND).await;
    assert_eq!(ids, (60, 40), "the close names basic.publish");
    // The connection and its other channel carry on; channel 1 can be reopened.
    raw.round_trip(2, "still-here", b"channel 2").await;
    raw.open_channel(1).await;
    raw.round_trip(1, "still-here", b"channel 1 again").await;
    raw.open_channel(3).await;
    raw.round_trip(3, "new-channel", b"channel 3").await;
    healthy.check(&gw).await;
}

#[tokio::test]
async fn ack_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 42,
            multiple: false,
        })),
    )
    .await;
    let ids = expect_channel_error(&mut raw, 1, PRECONDITION_FAILED).await;
    assert_eq!(ids, (60, 80), "the close names basic.ack");
    raw.open_channel(2).await;
    raw.round_trip(2, "after-406", b"fine").await;
    healthy.check(&gw).await;
}

// ------------------------------------------------------------ content

#[tokio::test]
async fn content_body_without_its_header_is_unexpected_frame() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send_method(1, publish_method("", "q")).await;
    raw.send(&raw_amqp::body_frame(1, b"no header")).await;
    expect_connection_error(&mut raw, UNEXPECTED_FRAME).await;
    healthy.check(&gw).await;
}

#[tokio::test]
async fn content_body_without_a_publish_is_unexpected_frame() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send(&raw_amqp::raw_frame(FRAME_BODY, 1, b"stray body"))
        .await;
    expect_connection_error(&mut raw, UNEXPECTED_FRAME).await;
    healthy.check(&gw).await;
}

#[tokio::test]
async fn method_where_a_content_header_was_expected_is_unexpected_frame() {
    let (gw, healthy, mut raw) = setup().await;
    raw.send_method(1, publish_method("", "q")).await;
    raw.send_method(1, declare("q")).await;
    expect_connection_error(&mut raw, UNEXPECTED_FRAME).await;
    healthy.check(&gw).await;
}

// ------------------------------------------------------------ unknown methods

#[tokio::test]
async fn unknown_class_or_method_is_not_implemented() {
    let gw = Gateway::start();
    let healthy = Healthy::start(gw.amqp.unwrap()).await;
    for (class, method) in [(99u16, 10u16), (60, 999)] {
        let mut raw = RawAmqp::connect(gw.amqp.unwrap()).await;
        let mut payload = Vec::new();
        payload.extend_from_slice(&class.to_be_bytes());
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(b"\x00\x00\x00\x00");
        raw.send(&raw_amqp::raw_frame(FRAME_METHOD, 1, &payload))
            .await;
        let ids = expect_connection_error(&mut raw, NOT_IMPLEMENTED).await;
        assert_eq!(ids, (class, method), "the close names the unknown method");
    }
    healthy.check(&gw).await;
}
