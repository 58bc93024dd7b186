//! The client core speaking MQTT 5 (the `v5` feature) to a scripted server.
#![cfg(feature = "v5")]

mod common;

use common::*;
use tether_firmware::client::{Config, ConnectionError, State};
use tether_firmware::protocols::mqtt::{
    self, ConnAck, Packet, ProtocolVersion, PubResponse, QoS, ReasonCode,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn config() -> Config<'static> {
    Config::new("d5").with_protocol(V5).with_commands(CMD)
}

fn connack_v5(code: u8, properties: mqtt::Properties<'static>) -> Vec<u8> {
    encode(
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode(code),
            properties,
        }),
        V5,
    )
}

fn open(h: &mut Harness<8, 64>, properties: mqtt::Properties<'static>) -> Vec<Sent> {
    h.client.on_transport_open(h.now);
    let connect = h.sent();
    let events = h.feed(&connack_v5(0, properties)).unwrap();
    assert_eq!(events, ["connected sp=false"]);
    connect
}

#[test]
fn v5_connect_announces_session_expiry_receive_maximum_and_packet_size() {
    let mut h: Harness<8, 64> = Harness::new(config());
    let connect = open(&mut h, mqtt::Properties::new());
    match &connect[..] {
        [
            Sent::Connect {
                protocol,
                clean_start,
                session_expiry,
                receive_maximum,
                maximum_packet_size,
                ..
            },
        ] => {
            assert_eq!(*protocol, V5);
            assert!(!clean_start);
            assert_eq!(
                *session_expiry,
                Some(86_400),
                "a persistent session must outlive the link"
            );
            assert_eq!(*receive_maximum, Some(4));
            assert_eq!(*maximum_packet_size, Some(256), "the receive buffer");
        }
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

#[test]
fn v5_refusal_reports_the_reason_code() {
    let mut h: Harness<8, 64> = Harness::new(config());
    h.client.on_transport_open(h.now);
    h.sent();
    let err = h
        .feed(&connack_v5(0x86, mqtt::Properties::new()))
        .unwrap_err();
    assert_eq!(err, ConnectionError::Refused(0x86));
}

#[test]
fn v5_puback_with_an_error_reason_rejects_the_message() {
    let mut h: Harness<8, 64> = Harness::new(config());
    open(&mut h, mqtt::Properties::new());
    h.sent();
    h.client.publish(TOPIC, b"r", QoS::AtLeastOnce).unwrap();
    assert_eq!(publishes(&h.sent()), [("r".into(), false, Some(2))]);
    let mut nack = PubResponse::new(2);
    nack.reason = ReasonCode::NOT_AUTHORIZED;
    let events = h.feed(&encode(Packet::PubAck(nack), V5)).unwrap();
    assert_eq!(events, ["rejected 2 0x87"]);
    assert!(h.client.outbox().is_empty());
    assert_eq!(h.client.outbox().stats().rejected, 1);
}

#[test]
fn v5_server_receive_maximum_limits_messages_in_flight() {
    let mut h: Harness<8, 64> = Harness::new(config());
    let props = mqtt::Properties {
        receive_maximum: Some(1),
        ..mqtt::Properties::new()
    };
    for i in 0..3 {
        h.client
            .publish(TOPIC, format!("r{i}").as_bytes(), QoS::AtLeastOnce)
            .unwrap();
    }
    open(&mut h, props);
    assert_eq!(publishes(&h.sent()).len(), 1);
}

#[test]
fn v5_server_keep_alive_overrides_ours() {
    let mut h: Harness<8, 64> = Harness::new(config());
    let props = mqtt::Properties {
        server_keep_alive: Some(5),
        ..mqtt::Properties::new()
    };
    open(&mut h, props);
    h.sent();
    assert_eq!(h.client.poll_timeout(), Some(h.now + 5_000));
}

#[test]
fn v5_server_disconnect_reason_is_reported() {
    let mut h: Harness<8, 64> = Harness::new(config());
    open(&mut h, mqtt::Properties::new());
    let err = h.feed(&server_disconnect(V5, 0x8B)).unwrap_err();
    assert_eq!(err, ConnectionError::ServerDisconnect(0x8B));
    assert_eq!(h.client.state(), State::Disconnected);
}

#[test]
fn v5_message_larger_than_the_server_maximum_is_dropped_and_counted() {
    let mut h: Harness<8, 64> = Harness::new(config());
    let props = mqtt::Properties {
        maximum_packet_size: Some(30),
        ..mqtt::Properties::new()
    };
    h.client
        .publish(TOPIC, &[b'x'; 30], QoS::AtMostOnce)
        .unwrap();
    h.client.publish(TOPIC, b"ok", QoS::AtMostOnce).unwrap();
    open(&mut h, props);
    let sent = publishes(&h.sent());
    assert_eq!(sent, [("ok".into(), false, None)]);
    assert_eq!(h.client.outbox().stats().rejected, 1);
}
