//! The client core against a scripted fake server: the session, edge cases of
//! the server's replies, keepalive, the outbox across reconnects, commands.

mod common;

use common::*;
use tether_firmware::backoff::BackoffConfig;
use tether_firmware::client::{Config, ConnectionError, State, Will};
use tether_firmware::outbox::{OverflowPolicy, Pushed};
use tether_firmware::protocols::mqtt::{DecodeError, PacketType, ProtocolVersion, QoS};

fn config() -> Config<'static> {
    Config::new("d1")
        .with_keep_alive(30)
        .with_commands(CMD)
        .with_backoff(BackoffConfig {
            initial_ms: 1_000,
            max_ms: 8_000,
        })
}

fn harness() -> Harness<8, 64> {
    Harness::new(config())
}

// --- the session ----------------------------------------------------------------

#[test]
fn connect_carries_credentials_will_keepalive_and_persistent_session() {
    let will = Will {
        topic: "devices/d1/status",
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: true,
    };
    let mut h: Harness<8, 64> = Harness::new(
        config()
            .with_credentials("device", b"s3cret")
            .with_will(will),
    );
    assert_eq!(
        h.client.reconnect_at(),
        Some(0),
        "first attempt is due at once"
    );
    h.client.on_transport_open(h.now);
    assert_eq!(h.client.state(), State::Connecting);
    let sent = h.sent();
    assert_eq!(
        sent,
        [Sent::Connect {
            client_id: "d1".into(),
            clean_start: false,
            keep_alive: 30,
            username: Some("device".into()),
            password: Some(b"s3cret".to_vec()),
            will: Some((
                "devices/d1/status".into(),
                b"offline".to_vec(),
                QoS::AtLeastOnce,
                true
            )),
            protocol: ProtocolVersion::V3_1_1,
            session_expiry: None,
            receive_maximum: None,
            maximum_packet_size: None,
        }]
    );
    assert!(h.sent().is_empty(), "CONNECT is sent once");
}

#[test]
fn accepted_connack_subscribes_to_commands_on_a_new_session() {
    let mut h = harness();
    let sent = h.connect(false);
    assert_eq!(
        sent,
        [Sent::Subscribe {
            packet_id: 1,
            filters: vec![(CMD.into(), QoS::AtLeastOnce)]
        }]
    );
    assert_eq!(
        h.feed(&suback(1, 1)).unwrap(),
        ["subscribed Some(AtLeastOnce)"]
    );
    assert!(h.client.is_idle());
}

#[test]
fn resumed_session_is_not_subscribed_again() {
    let mut h = harness();
    assert!(
        h.connect(true).is_empty(),
        "the session keeps its subscription"
    );
}

#[test]
fn refused_subscription_is_reported() {
    let mut h = harness();
    h.connect(false);
    assert_eq!(h.feed(&suback(1, 0x80)).unwrap(), ["subscribed None"]);
}

#[test]
fn connack_refusal_ends_the_connection_and_backs_off() {
    let mut h = harness();
    h.client.on_transport_open(h.now);
    h.sent();
    let err = h.feed(&connack(false, 5)).unwrap_err();
    assert_eq!(err, ConnectionError::Refused(5));
    assert_eq!(h.client.state(), State::Disconnected);
    let retry = h.client.reconnect_at().expect("a retry is scheduled");
    assert!(
        (h.now + 500..=h.now + 1_000).contains(&retry),
        "first retry within the first backoff window: {retry}"
    );
    assert!(h.sent().is_empty(), "nothing is sent while disconnected");
    assert_eq!(h.client.stats().connections, 0);
}

#[test]
fn malformed_reply_ends_the_connection() {
    let mut h = harness();
    h.client.on_transport_open(h.now);
    h.sent();
    // CONNACK with a reserved acknowledge-flags bit set.
    let err = h.feed(&[0x20, 0x02, 0x02, 0x00]).unwrap_err();
    assert_eq!(
        err,
        ConnectionError::Malformed(DecodeError::InvalidConnAckFlags)
    );
    assert_eq!(h.client.state(), State::Disconnected);
}

#[test]
fn reserved_packet_type_is_malformed() {
    let mut h = harness();
    h.connect(false);
    let err = h.feed(&[0x00, 0x00]).unwrap_err();
    assert_eq!(
        err,
        ConnectionError::Malformed(DecodeError::InvalidPacketType(0))
    );
}

#[test]
fn packet_before_connack_is_a_protocol_violation() {
    let mut h = harness();
    h.client.on_transport_open(h.now);
    h.sent();
    let err = h.feed(&pingresp()).unwrap_err();
    assert_eq!(
        err,
        ConnectionError::ProtocolViolation(PacketType::PingResp)
    );
    assert_eq!(h.client.state(), State::Disconnected);
}

#[test]
fn second_connack_is_a_protocol_violation() {
    let mut h = harness();
    h.connect(false);
    let err = h.feed(&connack(false, 0)).unwrap_err();
    assert_eq!(err, ConnectionError::ProtocolViolation(PacketType::ConnAck));
}

#[test]
fn missing_connack_times_out() {
    let mut h = harness();
    h.client.on_transport_open(h.now);
    h.sent();
    assert_eq!(h.client.poll_timeout(), Some(h.now + 10_000));
    h.advance(9_999);
    assert_eq!(h.client.handle_timeout(h.now), Ok(()));
    h.advance(1);
    assert_eq!(
        h.client.handle_timeout(h.now),
        Err(ConnectionError::ConnAckTimeout)
    );
    assert_eq!(h.client.state(), State::Disconnected);
}

#[test]
fn input_split_into_single_bytes_is_reassembled() {
    let mut h = harness();
    h.client.on_transport_open(h.now);
    h.sent();
    let mut events = Vec::new();
    for b in connack(false, 0).iter().chain(suback(1, 1).iter()) {
        events.extend(h.feed(&[*b]).unwrap());
    }
    assert_eq!(
        events,
        ["connected sp=false", "subscribed Some(AtLeastOnce)"]
    );
}

#[test]
fn packet_larger_than_the_receive_buffer_ends_the_connection() {
    let mut h = harness();
    h.connect(false);
    let big = publish(CMD, &[b'x'; 300], QoS::AtMostOnce, None);
    let err = h.feed(&big).unwrap_err();
    assert_eq!(err, ConnectionError::PacketTooLarge);
}

#[test]
fn server_disconnect_ends_the_connection() {
    let mut h = harness();
    h.connect(false);
    let err = h
        .feed(&server_disconnect(ProtocolVersion::V3_1_1, 0))
        .unwrap_err();
    assert_eq!(err, ConnectionError::ServerDisconnect(0));
}

#[test]
fn clean_disconnect_sends_disconnect_and_stops() {
    let mut h = harness();
    h.connect(false);
    h.client.disconnect();
    assert_eq!(h.client.state(), State::Disconnecting);
    assert_eq!(h.sent(), [Sent::Disconnect]);
    assert_eq!(h.client.state(), State::Stopped);
    assert_eq!(
        h.client.reconnect_at(),
        None,
        "a stopped client does not reconnect"
    );
    assert_eq!(h.client.poll_timeout(), None);
}

#[test]
fn disconnect_goes_out_after_pending_acks_and_before_new_publishes() {
    let mut h = harness();
    h.connect(true);
    h.feed(&publish(CMD, b"reboot", QoS::AtLeastOnce, Some(9)))
        .unwrap();
    h.client.publish(TOPIC, b"late", QoS::AtMostOnce).unwrap();
    h.client.disconnect();
    assert_eq!(h.sent(), [Sent::PubAck(9), Sent::Disconnect]);
    assert_eq!(h.client.outbox().len(), 1, "the reading stays queued");
}

// --- keepalive ------------------------------------------------------------------

#[test]
fn idle_connection_sends_pingreq_after_the_keepalive_interval() {
    let mut h = harness();
    h.connect(true);
    assert_eq!(h.client.poll_timeout(), Some(h.now + 30_000));
    h.advance(29_999);
    h.client.handle_timeout(h.now).unwrap();
    assert!(h.sent().is_empty());
    h.advance(1);
    h.client.handle_timeout(h.now).unwrap();
    assert_eq!(h.sent(), [Sent::PingReq]);
    // The PINGRESP clears the deadline; the next PINGREQ is 30 s later.
    assert_eq!(h.client.poll_timeout(), Some(h.now + 10_000));
    h.advance(100);
    assert!(h.feed(&pingresp()).unwrap().is_empty());
    assert_eq!(h.client.poll_timeout(), Some(h.now - 100 + 30_000));
}

#[test]
fn traffic_postpones_the_pingreq() {
    let mut h = harness();
    h.connect(true);
    h.advance(20_000);
    h.client.publish(TOPIC, b"1", QoS::AtMostOnce).unwrap();
    assert_eq!(h.sent().len(), 1);
    h.advance(20_000);
    h.client.handle_timeout(h.now).unwrap();
    assert!(h.sent().is_empty(), "only 20 s since the last packet");
}

#[test]
fn missing_pingresp_times_out() {
    let mut h = harness();
    h.connect(true);
    h.advance(30_000);
    h.client.handle_timeout(h.now).unwrap();
    assert_eq!(h.sent(), [Sent::PingReq]);
    h.advance(9_999);
    h.client.handle_timeout(h.now).unwrap();
    h.advance(1);
    assert_eq!(
        h.client.handle_timeout(h.now),
        Err(ConnectionError::PingTimeout)
    );
    assert_eq!(h.client.state(), State::Disconnected);
    assert!(h.client.reconnect_at().is_some());
}

#[test]
fn zero_keepalive_never_pings() {
    let mut h: Harness<8, 64> = Harness::new(config().with_keep_alive(0));
    h.connect(true);
    assert_eq!(h.client.poll_timeout(), None);
    h.advance(10_000_000);
    h.client.handle_timeout(h.now).unwrap();
    assert!(h.sent().is_empty());
}

// --- publishing and the outbox ----------------------------------------------------

#[test]
fn qos0_reading_leaves_the_outbox_once_written() {
    let mut h = harness();
    h.connect(true);
    h.client.publish(TOPIC, b"r1", QoS::AtMostOnce).unwrap();
    assert_eq!(
        h.sent(),
        [Sent::Publish {
            topic: TOPIC.into(),
            payload: b"r1".to_vec(),
            qos: QoS::AtMostOnce,
            dup: false,
            retain: false,
            packet_id: None
        }]
    );
    assert!(h.client.outbox().is_empty());
}

#[test]
fn qos1_reading_stays_in_the_outbox_until_its_puback() {
    let mut h = harness();
    h.connect(true);
    h.client.publish(TOPIC, b"r1", QoS::AtLeastOnce).unwrap();
    assert_eq!(publishes(&h.sent()), [("r1".into(), false, Some(1))]);
    assert_eq!(h.client.outbox().in_flight(), 1);
    assert_eq!(h.feed(&puback(1)).unwrap(), ["delivered 1"]);
    assert!(h.client.outbox().is_empty());
    assert_eq!(h.client.outbox().stats().acked, 1);
}

#[test]
fn unknown_puback_is_ignored() {
    let mut h = harness();
    h.connect(true);
    assert!(h.feed(&puback(77)).unwrap().is_empty());
    assert_eq!(h.client.state(), State::Connected);
}

#[test]
fn readings_queued_offline_drain_in_order_after_connecting() {
    let mut h = harness();
    for i in 0..5 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        h.client
            .publish(TOPIC, format!("r{i}").as_bytes(), qos)
            .unwrap();
    }
    let sent = h.connect(true);
    assert_eq!(
        publishes(&sent),
        [
            ("r0".into(), false, Some(1)),
            ("r1".into(), false, None),
            ("r2".into(), false, Some(2)),
            ("r3".into(), false, None),
            ("r4".into(), false, Some(3)),
        ]
    );
}

#[test]
fn in_flight_window_limits_unacknowledged_publishes() {
    let mut h: Harness<8, 64> = Harness::new(config().with_max_in_flight(2));
    for i in 0..4 {
        h.client
            .publish(TOPIC, format!("r{i}").as_bytes(), QoS::AtLeastOnce)
            .unwrap();
    }
    let sent = h.connect(true);
    assert_eq!(publishes(&sent).len(), 2);
    h.feed(&puback(1)).unwrap();
    assert_eq!(publishes(&h.sent()), [("r2".into(), false, Some(3))]);
}

#[test]
fn unacknowledged_qos1_is_resent_with_dup_when_the_session_resumes() {
    let mut h = harness();
    h.connect(false);
    h.feed(&suback(1, 1)).unwrap();
    for i in 0..3 {
        h.client
            .publish(TOPIC, format!("r{i}").as_bytes(), QoS::AtLeastOnce)
            .unwrap();
    }
    assert_eq!(
        publishes(&h.sent()),
        [
            ("r0".into(), false, Some(2)),
            ("r1".into(), false, Some(3)),
            ("r2".into(), false, Some(4)),
        ]
    );
    h.feed(&puback(3)).unwrap();
    // The link drops before the other acknowledgements arrive.
    h.client.on_transport_closed(h.now);
    assert_eq!(h.client.state(), State::Disconnected);
    h.client.publish(TOPIC, b"r3", QoS::AtLeastOnce).unwrap();
    h.advance(60_000);
    let sent = h.connect(true);
    assert_eq!(
        publishes(&sent),
        [
            ("r0".into(), true, Some(2)),
            ("r2".into(), true, Some(4)),
            ("r3".into(), false, Some(5)),
        ],
        "DUP with the original identifiers first, in order, then new ones"
    );
    assert_eq!(h.client.outbox().stats().resent, 2);
    assert_eq!(h.feed(&puback(2)).unwrap(), ["delivered 2"]);
}

#[test]
fn unacknowledged_qos1_is_sent_as_new_when_the_server_lost_the_session() {
    let mut h = harness();
    h.connect(true);
    h.client.publish(TOPIC, b"r0", QoS::AtLeastOnce).unwrap();
    assert_eq!(publishes(&h.sent()), [("r0".into(), false, Some(1))]);
    h.client.on_transport_closed(h.now);
    let sent = h.connect(false);
    assert_eq!(
        publishes(&sent),
        [("r0".into(), false, Some(3))],
        "no DUP in a new session (identifier 2 went to the SUBSCRIBE)"
    );
    assert_eq!(h.client.outbox().stats().requeued, 1);
}

#[test]
fn outbox_overflow_while_offline_drops_oldest_by_default() {
    let mut h: Harness<4, 64> = Harness::new(config());
    let mut outcomes = Vec::new();
    for i in 0..6 {
        outcomes.push(
            h.client
                .publish(TOPIC, format!("r{i}").as_bytes(), QoS::AtLeastOnce)
                .unwrap(),
        );
    }
    assert_eq!(
        outcomes,
        [
            Pushed::Queued,
            Pushed::Queued,
            Pushed::Queued,
            Pushed::Queued,
            Pushed::QueuedDroppingOldest,
            Pushed::QueuedDroppingOldest
        ]
    );
    let sent = h.connect(true);
    let payloads: Vec<_> = publishes(&sent).into_iter().map(|p| p.0).collect();
    assert_eq!(payloads, ["r2", "r3", "r4", "r5"]);
    let stats = h.client.outbox().stats();
    assert_eq!(
        (stats.queued, stats.dropped_oldest, stats.dropped_newest),
        (6, 2, 0)
    );
}

#[test]
fn outbox_overflow_with_drop_newest_keeps_the_first_readings() {
    let mut h: Harness<4, 64> = Harness::new(config().with_overflow(OverflowPolicy::DropNewest));
    for i in 0..6 {
        h.client
            .publish(TOPIC, format!("r{i}").as_bytes(), QoS::AtMostOnce)
            .unwrap();
    }
    let sent = h.connect(true);
    let payloads: Vec<_> = publishes(&sent).into_iter().map(|p| p.0).collect();
    assert_eq!(payloads, ["r0", "r1", "r2", "r3"]);
    let stats = h.client.outbox().stats();
    assert_eq!(
        (stats.queued, stats.dropped_oldest, stats.dropped_newest),
        (4, 0, 2)
    );
}

// --- commands -------------------------------------------------------------------

#[test]
fn qos1_command_is_handed_out_then_acknowledged() {
    let mut h = harness();
    h.connect(true);
    let events = h
        .feed(&publish(CMD, b"{\"led\":true}", QoS::AtLeastOnce, Some(42)))
        .unwrap();
    assert_eq!(
        events,
        ["command devices/d1/cmd {\"led\":true} AtLeastOnce"]
    );
    assert_eq!(h.sent(), [Sent::PubAck(42)]);
    assert_eq!(h.client.stats().commands, 1);
}

#[test]
fn qos0_command_needs_no_acknowledgement() {
    let mut h = harness();
    h.connect(true);
    let events = h
        .feed(&publish(CMD, b"ping", QoS::AtMostOnce, None))
        .unwrap();
    assert_eq!(events, ["command devices/d1/cmd ping AtMostOnce"]);
    assert!(h.sent().is_empty());
}

#[test]
fn burst_of_commands_is_acknowledged_in_order() {
    let mut h = harness();
    h.connect(true);
    let mut bytes = Vec::new();
    for id in 1..=6u16 {
        bytes.extend(publish(
            CMD,
            format!("c{id}").as_bytes(),
            QoS::AtLeastOnce,
            Some(id),
        ));
    }
    // More commands than acknowledgements can wait: the harness transmits
    // the acknowledgements in between, as a driver does.
    let events = h.feed(&bytes).unwrap();
    assert_eq!(events.len(), 6);
    assert_eq!(h.sent(), (1..=6).map(Sent::PubAck).collect::<Vec<_>>());
}

#[test]
fn qos2_delivery_breaks_the_qos1_grant() {
    let mut h = harness();
    h.connect(true);
    let err = h
        .feed(&publish(CMD, b"x", QoS::ExactlyOnce, Some(1)))
        .unwrap_err();
    assert_eq!(err, ConnectionError::ProtocolViolation(PacketType::Publish));
}

// --- reconnecting ----------------------------------------------------------------

#[test]
fn failed_transport_opens_back_off_exponentially_and_reset_after_success() {
    let mut h = harness();
    let mut windows = Vec::new();
    for _ in 0..5 {
        let at = h.client.reconnect_at().unwrap();
        h.now = h.now.max(at);
        // The TCP connect fails: the application reports it.
        h.client.on_transport_closed(h.now);
        windows.push(h.client.reconnect_at().unwrap() - h.now);
    }
    let ceilings = [1_000, 2_000, 4_000, 8_000, 8_000];
    for (delay, ceiling) in windows.iter().zip(ceilings) {
        assert!(
            (ceiling / 2..=ceiling).contains(delay),
            "delay {delay} outside [{}, {ceiling}]",
            ceiling / 2
        );
    }
    h.connect(true);
    assert_eq!(
        h.client.backoff().failures(),
        0,
        "success resets the backoff"
    );
}

#[test]
fn bytes_received_while_disconnected_are_discarded() {
    let mut h = harness();
    assert_eq!(h.client.handle_input(&connack(false, 0)), 4);
    assert_eq!(h.client.poll_event(h.now), Ok(None));
}
