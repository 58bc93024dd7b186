//! MQTT 3.1.1 end to end: rumqttc clients (and, where a well-behaved library
//! cannot be made to misbehave, a raw socket) against a running gateway.
//!
//! One behaviour per test, each on its own gateway. Waits are for conditions;
//! the only fixed waits are the short windows in which something must NOT
//! happen ([`QUIET`]) and the timing checks of keepalive and connect timeout.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rumqttc::SubscribeReasonCode;
use tether_e2e::mqtt::WAIT;
use tether_e2e::mqtt::v4::{
    self, AsyncClient, Client, ConnectReturnCode, LastWill, MqttOptions, Packet, Publish, QoS,
};
use tether_e2e::raw::{self, ProtocolVersion, RawClient, Received};
use tether_e2e::{Gateway, eventually, tether_bin};

/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(400);

// --- helpers -------------------------------------------------------------------

fn opts(gw: &Gateway, id: &str) -> MqttOptions {
    v4::options(gw.mqtt_addr(), id)
}

/// Options for a persistent session (clean session 0).
fn persistent(gw: &Gateway, id: &str) -> MqttOptions {
    let mut o = opts(gw, id);
    o.set_clean_session(false);
    o
}

async fn connect(gw: &Gateway, id: &str) -> Client {
    Client::connect(opts(gw, id)).await
}

/// Connects and returns the client with CONNACK's session-present flag.
async fn connect_session(o: MqttOptions) -> (Client, bool) {
    let mut c = Client::start(o);
    let ack = c.connack().await;
    assert_eq!(
        ack.code,
        ConnectReturnCode::Success,
        "connection refused: {ack:?}"
    );
    (c, ack.session_present)
}

/// Connects expecting a refusal; returns the CONNACK return code.
async fn connect_refused(o: MqttOptions) -> ConnectReturnCode {
    let (_client, mut eventloop) = AsyncClient::new(o, 10);
    match tokio::time::timeout(WAIT, eventloop.poll()).await {
        Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => code,
        other => panic!("expected a refused CONNACK, got {other:?}"),
    }
}

/// The next incoming packet `pick` accepts; panics on error or after [`WAIT`].
async fn wait_for<T>(c: &mut Client, what: &str, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_incoming(left).await {
            Some(Ok(p)) => {
                if let Some(t) = pick(p) {
                    return t;
                }
            }
            Some(Err(e)) => panic!("connection failed while waiting for {what}: {e}"),
            None => panic!("no {what} within {WAIT:?}"),
        }
    }
}

/// Publishes and waits until the publisher's side of the flow is complete:
/// PUBACK at QoS 1, PUBCOMP at QoS 2, nothing at QoS 0.
async fn publish_complete(
    c: &mut Client,
    topic: &str,
    qos: QoS,
    retain: bool,
    payload: impl Into<Vec<u8>>,
) {
    c.publish(topic, qos, retain, payload).await;
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            wait_for(c, "PUBACK", |p| {
                matches!(p, Packet::PubAck(_)).then_some(())
            })
            .await
        }
        QoS::ExactlyOnce => {
            wait_for(c, "PUBCOMP", |p| {
                matches!(p, Packet::PubComp(_)).then_some(())
            })
            .await
        }
    }
}

/// Every PUBLISH that arrives until nothing has come for `quiet`.
async fn drain(c: &mut Client, quiet: Duration) -> Vec<Publish> {
    let mut out = Vec::new();
    while let Some(p) = c.recv(quiet).await {
        out.push(p);
    }
    out
}

fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// Waits until the gateway has finished closing `client_id`'s `nth`
/// connection: it logs this after the session is handed back and the will, if
/// any, is published.
async fn wait_gone(gw: &Gateway, client_id: &str, nth: usize) {
    let re = regex::Regex::new(&format!(
        r"client disconnected peer=\S+ client_id={} ",
        regex::escape(client_id)
    ))
    .unwrap();
    let log = gw.log().clone();
    assert!(
        eventually(WAIT, || re.find_iter(&log.text()).count() >= nth).await,
        "the gateway did not close connection #{nth} of {client_id}:\n{}",
        log.text()
    );
}

/// A CONNECT (3.1.1) for a raw client.
fn raw_connect_packet(client_id: &str, keep_alive: u16) -> raw::Connect<'_> {
    raw::Connect {
        keep_alive,
        ..raw::connect_packet(ProtocolVersion::V3_1_1, client_id)
    }
}

/// Connects a raw client with `connect`, asserting CONNACK 0.
async fn raw_connect(gw: &Gateway, connect: &raw::Connect<'_>) -> RawClient {
    let (c, ack) = RawClient::connect_with(gw.mqtt_addr(), connect).await;
    match ack.packet(ProtocolVersion::V3_1_1) {
        raw::Packet::ConnAck(a) => assert_eq!(a.code, raw::ReasonCode::SUCCESS, "{a:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    c
}

/// Password hash for `[[auth.users]]`, made by the binary under test.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(tether_bin())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run tether hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "hash-password failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// --- 1. QoS 0, 1 and 2 --------------------------------------------------------------

/// Every byte value, so nothing in the path may treat the payload as text.
fn binary_payload(tag: u8) -> Vec<u8> {
    let mut p: Vec<u8> = (0..=255u8).collect();
    p.push(tag);
    p
}

/// Two clients each subscribe to their own topic at `qos` and publish to the
/// other's: both directions, payload bytes intact, delivered at `qos`, and
/// each publisher's flow completed.
async fn exchange_both_directions(qos: QoS) {
    let gw = Gateway::start();
    let mut a = connect(&gw, "a").await;
    let mut b = connect(&gw, "b").await;
    a.subscribe("dir/to-a", qos).await;
    b.subscribe("dir/to-b", qos).await;
    a.publish("dir/to-b", qos, false, binary_payload(b'a'))
        .await;
    b.publish("dir/to-a", qos, false, binary_payload(b'b'))
        .await;
    for (c, topic, from) in [(&mut a, "dir/to-a", b'b'), (&mut b, "dir/to-b", b'a')] {
        // The delivery and the end of the client's own publish flow, in either order.
        let mut delivered = None;
        let mut completed = qos == QoS::AtMostOnce;
        while delivered.is_none() || !completed {
            match wait_for(c, "PUBLISH or acknowledgement", Some).await {
                Packet::Publish(p) => {
                    assert!(delivered.is_none(), "delivered twice: {p:?}");
                    delivered = Some(p);
                }
                Packet::PubAck(_) if qos == QoS::AtLeastOnce => completed = true,
                Packet::PubComp(_) if qos == QoS::ExactlyOnce => completed = true,
                _ => {}
            }
        }
        let p = delivered.expect("delivered");
        assert_eq!(p.topic, topic);
        assert_eq!(p.qos, qos);
        assert_eq!(&p.payload[..], &binary_payload(from)[..]);
        assert!(!p.retain && !p.dup, "{p:?}");
        c.expect_none(QUIET).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_messages_flow_both_ways_byte_for_byte() {
    exchange_both_directions(QoS::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_messages_flow_both_ways_byte_for_byte() {
    exchange_both_directions(QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_messages_flow_both_ways_byte_for_byte() {
    exchange_both_directions(QoS::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publisher_completes_pubrec_pubrel_pubcomp() {
    let gw = Gateway::start();
    let mut publ = connect(&gw, "pub").await;
    publ.publish("q2/t", QoS::ExactlyOnce, false, "x").await;
    let rec = wait_for(&mut publ, "PUBREC", |p| match p {
        Packet::PubRec(r) => Some(r.pkid),
        Packet::PubComp(c) => panic!("PUBCOMP before PUBREC: {c:?}"),
        _ => None,
    })
    .await;
    // rumqttc answers PUBREC with PUBREL; the gateway must then complete.
    let comp = wait_for(&mut publ, "PUBCOMP", |p| match p {
        Packet::PubComp(c) => Some(c.pkid),
        _ => None,
    })
    .await;
    assert_eq!(rec, comp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_delivery_to_subscriber_is_released_with_pubrel() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("q2/t", QoS::ExactlyOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "q2/t", QoS::ExactlyOnce, false, "x").await;
    let p = sub.expect().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    // rumqttc answered with PUBREC; the gateway must send PUBREL for the same id.
    let rel = wait_for(&mut sub, "PUBREL", |p| match p {
        Packet::PubRel(r) => Some(r.pkid),
        _ => None,
    })
    .await;
    assert_eq!(rel, p.pkid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_resent_before_pubrel_is_delivered_once() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("q2/t", QoS::ExactlyOnce).await;
    let mut publ = raw_connect(&gw, &raw_connect_packet("pub", 30)).await;
    let publish = raw::publish_packet("q2/t", raw::QoS::ExactlyOnce, b"once");
    publ.publish(publish).await;
    publ.expect_type(raw::PacketType::PubRec, WAIT).await;
    // As if the PUBREC was lost: the publisher sends the PUBLISH again with DUP.
    publ.publish(raw::Publish {
        dup: true,
        ..publish
    })
    .await;
    publ.expect_type(raw::PacketType::PubRec, WAIT).await;
    publ.send_packet(&raw::Packet::PubRel(raw::PubResponse {
        packet_id: 1,
        reason: raw::ReasonCode::SUCCESS,
        properties: raw::Properties::new(),
    }))
    .await;
    publ.expect_type(raw::PacketType::PubComp, WAIT).await;
    assert_eq!(payloads(&drain(&mut sub, QUIET).await), ["once"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_filter_stops_receiving() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("un/t", QoS::AtLeastOnce).await;
    sub.subscribe("un/other", QoS::AtLeastOnce).await;
    sub.client
        .unsubscribe("un/t")
        .await
        .expect("unsubscribe request");
    wait_for(&mut sub, "UNSUBACK", |p| {
        matches!(p, Packet::UnsubAck(_)).then_some(())
    })
    .await;
    let mut publ = connect(&gw, "pub").await;
    publ.publish_acked("un/t", "gone").await;
    publ.publish_acked("un/other", "marker").await;
    assert_eq!(payloads(&drain(&mut sub, QUIET).await), ["marker"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_qos_is_the_lower_of_published_and_granted() {
    let gw = Gateway::start();
    let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut subs = Vec::new();
    for (i, granted) in levels.into_iter().enumerate() {
        let mut s = connect(&gw, &format!("sub{i}")).await;
        assert_eq!(
            s.subscribe("caps/t", granted).await,
            [SubscribeReasonCode::Success(granted)]
        );
        subs.push((granted, s));
    }
    let mut publ = connect(&gw, "pub").await;
    for published in levels {
        publish_complete(
            &mut publ,
            "caps/t",
            published,
            false,
            format!("{published:?}"),
        )
        .await;
    }
    for (granted, s) in &mut subs {
        for published in levels {
            let p = s.expect().await;
            assert_eq!(
                String::from_utf8_lossy(&p.payload),
                format!("{published:?}")
            );
            let want = std::cmp::min(published as u8, *granted as u8);
            assert_eq!(
                p.qos as u8, want,
                "published at {published:?}, granted {granted:?}"
            );
        }
    }
}

// --- 2. Retained messages ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_delivered_on_subscribe_with_retain_flag() {
    let gw = Gateway::start();
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "ret/a/b", QoS::AtLeastOnce, true, "kept").await;
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("ret/a/b", QoS::AtLeastOnce).await;
    let p = sub.expect().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("ret/a/b", &b"kept"[..])
    );
    assert!(p.retain, "retain flag must be set on a retained delivery");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.expect_none(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_reaches_single_level_wildcard_subscriber() {
    let gw = Gateway::start();
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "ret/a/b", QoS::AtLeastOnce, true, "kept").await;
    publish_complete(&mut publ, "ret/a/b/c", QoS::AtLeastOnce, true, "deeper").await;
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("ret/+/b", QoS::AtLeastOnce).await;
    let p = sub.expect().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("ret/a/b", &b"kept"[..])
    );
    assert!(p.retain);
    sub.expect_none(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_reach_multi_level_wildcard_subscriber() {
    let gw = Gateway::start();
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "ret/a", QoS::AtLeastOnce, true, "1").await;
    publish_complete(&mut publ, "ret/a/b", QoS::AtLeastOnce, true, "2").await;
    publish_complete(&mut publ, "other/x", QoS::AtLeastOnce, true, "3").await;
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("ret/#", QoS::AtLeastOnce).await;
    let got = drain(&mut sub, QUIET).await;
    assert!(got.iter().all(|p| p.retain), "{got:?}");
    let topics: BTreeSet<_> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, BTreeSet::from(["ret/a", "ret/a/b"]));
    assert_eq!(got.len(), 2, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_retained_message_replaces_older_one() {
    let gw = Gateway::start();
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "ret/t", QoS::AtLeastOnce, true, "old").await;
    publish_complete(&mut publ, "ret/t", QoS::AtLeastOnce, true, "new").await;
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("ret/t", QoS::AtLeastOnce).await;
    assert_eq!(payloads(&drain(&mut sub, QUIET).await), ["new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_retained_payload_clears_the_retained_message() {
    let gw = Gateway::start();
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "ret/t", QoS::AtLeastOnce, true, "kept").await;
    publish_complete(&mut publ, "ret/t", QoS::AtLeastOnce, true, "").await;
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("ret/t", QoS::AtLeastOnce).await;
    sub.subscribe("ret/#", QoS::AtLeastOnce).await;
    sub.expect_none(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_of_a_retained_publish_has_retain_cleared() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("ret/t", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "ret/t", QoS::AtLeastOnce, true, "live").await;
    let p = sub.expect().await;
    assert_eq!(&p.payload[..], b"live");
    assert!(
        !p.retain,
        "MQTT 3.1.1 §3.3.1.3: RETAIN is 0 when forwarded to an existing subscriber"
    );
}

// --- 3. Will messages -------------------------------------------------------------------

async fn will_watcher(gw: &Gateway, topic: &str) -> Client {
    let mut w = connect(gw, "watcher").await;
    w.subscribe(topic, QoS::AtLeastOnce).await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_socket_drops_without_disconnect() {
    let gw = Gateway::start();
    let mut watcher = will_watcher(&gw, "wills/#").await;
    let mut o = opts(&gw, "dev1");
    o.set_last_will(LastWill::new(
        "wills/dev1",
        "dev1 lost",
        QoS::AtLeastOnce,
        false,
    ));
    let dev = Client::connect(o).await;
    // Aborting the event-loop task drops rumqttc's socket: a TCP close with no
    // DISCONNECT, as when a device loses power mid-session.
    dev.drop_connection();
    let will = watcher.expect().await;
    assert_eq!(will.topic, "wills/dev1");
    assert_eq!(&will.payload[..], b"dev1 lost");
    assert_eq!(will.qos, QoS::AtLeastOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_after_keepalive_timeout() {
    let gw = Gateway::start();
    let mut watcher = will_watcher(&gw, "wills/#").await;
    let connect = raw::Connect {
        will: Some(raw::Will {
            topic: "wills/silent",
            payload: b"silent lost",
            qos: raw::QoS::AtLeastOnce,
            retain: false,
            properties: raw::Properties::new(),
        }),
        ..raw_connect_packet("silent", 1)
    };
    let mut dev = raw_connect(&gw, &connect).await;
    let start = Instant::now();
    // The device now says nothing at all.
    let will = watcher.expect().await;
    let after = start.elapsed();
    assert_eq!(will.topic, "wills/silent");
    assert_eq!(&will.payload[..], b"silent lost");
    assert!(
        after >= Duration::from_millis(1400) && after <= Duration::from_secs(3),
        "will published {after:?} after CONNACK; keepalive 1 s allows 1.5 s of silence"
    );
    dev.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_not_published_after_normal_disconnect() {
    let gw = Gateway::start();
    let mut watcher = will_watcher(&gw, "wills/#").await;
    let mut o = opts(&gw, "dev1");
    o.set_last_will(LastWill::new(
        "wills/dev1",
        "dev1 lost",
        QoS::AtLeastOnce,
        false,
    ));
    let dev = Client::connect(o).await;
    dev.disconnect().await;
    wait_gone(&gw, "dev1", 1).await;
    watcher.expect_none(QUIET).await;
}

// --- 4. Sessions --------------------------------------------------------------------------

/// A persistent session subscribed to `filter` at `qos`, then disconnected
/// (normally), with the gateway done closing it.
async fn offline_session(gw: &Gateway, id: &str, filter: &str, qos: QoS) {
    let (mut c, _) = connect_session(persistent(gw, id)).await;
    c.subscribe(filter, qos).await;
    c.disconnect().await;
    wait_gone(gw, id, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2_offline() {
    let gw = Gateway::start();
    offline_session(&gw, "keeper", "sess/t", QoS::ExactlyOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "sess/t", QoS::AtLeastOnce, false, "one").await;
    publish_complete(&mut publ, "sess/t", QoS::ExactlyOnce, false, "two").await;

    let (mut c, present) = connect_session(persistent(&gw, "keeper")).await;
    assert!(present, "CONNACK session present must be 1 on resume");
    // No SUBSCRIBE this time: the subscription is part of the session.
    let one = c.expect().await;
    let two = c.expect().await;
    assert_eq!((&one.payload[..], one.qos), (&b"one"[..], QoS::AtLeastOnce));
    assert_eq!((&two.payload[..], two.qos), (&b"two"[..], QoS::ExactlyOnce));
    // And it still routes live messages.
    publish_complete(&mut publ, "sess/t", QoS::AtLeastOnce, false, "three").await;
    assert_eq!(&c.expect().await.payload[..], b"three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_session_does_not_queue_qos0_messages() {
    let gw = Gateway::start();
    offline_session(&gw, "keeper", "sess/t", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "sess/t", QoS::AtMostOnce, false, "q0").await;
    publish_complete(&mut publ, "sess/t", QoS::AtLeastOnce, false, "q1").await;
    let (mut c, present) = connect_session(persistent(&gw, "keeper")).await;
    assert!(present);
    assert_eq!(payloads(&drain(&mut c, QUIET).await), ["q1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_discards_the_previous_session() {
    let gw = Gateway::start();
    offline_session(&gw, "keeper", "sess/t", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publish_complete(&mut publ, "sess/t", QoS::AtLeastOnce, false, "queued").await;

    let (mut c, present) = connect_session(opts(&gw, "keeper")).await;
    assert!(!present, "clean session must start without a session");
    // Neither the queued message nor the old subscription survives.
    publish_complete(&mut publ, "sess/t", QoS::AtLeastOnce, false, "live").await;
    c.expect_none(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_qos1_message_is_resent_with_dup_on_resume() {
    let gw = Gateway::start();
    let mut o = persistent(&gw, "acker");
    o.set_manual_acks(true);
    let (mut c, _) = connect_session(o).await;
    c.subscribe("dup/t", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publ.publish_acked("dup/t", "once").await;
    let first = c.expect().await;
    assert!(!first.dup);
    // Never acknowledged; the device goes away.
    c.drop_connection();
    wait_gone(&gw, "acker", 1).await;

    let (mut c, present) = connect_session(persistent(&gw, "acker")).await;
    assert!(present);
    let again = c.expect().await;
    assert_eq!(&again.payload[..], b"once");
    assert!(again.dup, "a resent PUBLISH must carry DUP=1: {again:?}");
    assert_eq!(again.pkid, first.pkid, "resent with its original packet id");
    c.expect_none(QUIET).await;
}

// --- 5. Takeover ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_with_same_client_id_takes_over() {
    let gw = Gateway::start();
    let mut first = connect(&gw, "twin").await;
    let mut second = connect(&gw, "twin").await;
    assert!(
        first.connection_error(WAIT).await.is_some(),
        "the first connection must be closed"
    );
    second.subscribe("twin/t", QoS::AtLeastOnce).await;
    second.publish_acked("twin/t", "still here").await;
    assert_eq!(&second.expect().await.payload[..], b"still here");
}

// --- 6. Client identifiers ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_with_clean_session_is_accepted() {
    let gw = Gateway::start();
    let mut c = Client::connect(opts(&gw, "")).await;
    c.subscribe("anon/t", QoS::AtLeastOnce).await;
    c.publish_acked("anon/t", "hi").await;
    assert_eq!(&c.expect().await.payload[..], b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_without_clean_session_is_rejected_with_code_2() {
    let gw = Gateway::start();
    // rumqttc refuses this combination in set_clean_session, so set the id after.
    let mut o = persistent(&gw, "placeholder");
    o.set_client_id(String::new());
    assert_eq!(connect_refused(o).await, ConnectReturnCode::BadClientId);
}

// --- 7. Keepalive ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected_after_one_and_a_half_keepalives() {
    let gw = Gateway::start();
    let mut c = raw_connect(&gw, &raw_connect_packet("quiet", 1)).await;
    let start = Instant::now();
    c.expect_closed(WAIT).await;
    let after = start.elapsed();
    assert!(
        after >= Duration::from_millis(1400) && after <= Duration::from_secs(3),
        "closed {after:?} after CONNACK; keepalive 1 s means 1.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_zero_never_times_out() {
    let gw = Gateway::start();
    let mut c = raw_connect(&gw, &raw_connect_packet("forever", 0)).await;
    c.expect_silence(Duration::from_millis(2600)).await;
    c.send_packet(&raw::Packet::PingReq).await;
    c.expect_type(raw::PacketType::PingResp, WAIT).await;
}

// --- 8. $-topics ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leading_wildcards_do_not_match_dollar_topics() {
    let gw = Gateway::start();
    let mut hash = connect(&gw, "hash").await;
    hash.subscribe("#", QoS::AtLeastOnce).await;
    let mut plus = connect(&gw, "plus").await;
    plus.subscribe("+/x", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publ.publish_acked("$SYS/x", "sys").await;
    publ.publish_acked("$foo/x", "foo").await;
    // Published last: arriving first proves the $-topics were not delivered.
    publ.publish_acked("a/x", "marker").await;
    for c in [&mut hash, &mut plus] {
        let p = c.expect().await;
        assert_eq!(p.topic, "a/x", "a $-topic leaked through a wildcard: {p:?}");
        c.expect_none(QUIET).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_filter_matches_dollar_topics() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "sub").await;
    sub.subscribe("$foo/#", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    publ.publish_acked("$foo/x", "foo").await;
    let p = sub.expect().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("$foo/x", &b"foo"[..]));
}

// --- 9. Shared subscriptions ----------------------------------------------------------------

const SHARED: &str = "$share/g/sensors/#";

fn index_of(p: &Publish) -> u32 {
    std::str::from_utf8(&p.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected payload {p:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_delivers_each_message_to_exactly_one_member() {
    let gw = Gateway::start();
    let mut m1 = connect(&gw, "m1").await;
    let mut m2 = connect(&gw, "m2").await;
    m1.subscribe(SHARED, QoS::AtLeastOnce).await;
    m2.subscribe(SHARED, QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    for i in 0..20 {
        publ.publish_acked(&format!("sensors/{i}"), i.to_string())
            .await;
    }
    let got1: Vec<u32> = drain(&mut m1, QUIET).await.iter().map(index_of).collect();
    let got2: Vec<u32> = drain(&mut m2, QUIET).await.iter().map(index_of).collect();
    let s1: BTreeSet<u32> = got1.iter().copied().collect();
    let s2: BTreeSet<u32> = got2.iter().copied().collect();
    assert_eq!(s1.len(), got1.len(), "duplicate at m1: {got1:?}");
    assert_eq!(s2.len(), got2.len(), "duplicate at m2: {got2:?}");
    assert!(s1.is_disjoint(&s2), "delivered to both: {got1:?} {got2:?}");
    let all: BTreeSet<u32> = s1.union(&s2).copied().collect();
    assert_eq!(all, (0..20).collect(), "m1 {got1:?} m2 {got2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_subscriber_gets_every_message_alongside_a_shared_group() {
    let gw = Gateway::start();
    let mut m1 = connect(&gw, "m1").await;
    let mut m2 = connect(&gw, "m2").await;
    m1.subscribe(SHARED, QoS::AtLeastOnce).await;
    m2.subscribe(SHARED, QoS::AtLeastOnce).await;
    let mut plain = connect(&gw, "plain").await;
    plain.subscribe("sensors/#", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    for i in 0..20 {
        publ.publish_acked(&format!("sensors/{i}"), i.to_string())
            .await;
    }
    let got: Vec<u32> = drain(&mut plain, QUIET)
        .await
        .iter()
        .map(index_of)
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    let shared = drain(&mut m1, QUIET).await.len() + drain(&mut m2, QUIET).await.len();
    assert_eq!(shared, 20, "the group still gets each message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_messages_unacked_by_a_dropped_member_go_to_the_remaining_member() {
    let gw = Gateway::start();
    let mut o = opts(&gw, "lazy");
    o.set_manual_acks(true);
    let mut lazy = Client::connect(o).await;
    lazy.subscribe(SHARED, QoS::AtLeastOnce).await;
    let mut busy = connect(&gw, "busy").await;
    busy.subscribe(SHARED, QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;

    // First half of the stream; the lazy member receives some and acks none.
    for i in 0..10 {
        publ.publish_acked(&format!("sensors/{i}"), i.to_string())
            .await;
    }
    let unacked: Vec<u32> = drain(&mut lazy, QUIET).await.iter().map(index_of).collect();
    assert!(
        !unacked.is_empty(),
        "the group gave the second member nothing of 10 messages; cannot test redelivery"
    );
    lazy.drop_connection();
    // Second half, while (or after) the gateway notices the member is gone.
    for i in 10..20 {
        publ.publish_acked(&format!("sensors/{i}"), i.to_string())
            .await;
    }

    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 20 && Instant::now() < deadline {
        if let Some(p) = busy.recv(deadline - Instant::now()).await {
            seen.insert(index_of(&p));
        }
    }
    let missing: Vec<u32> = (0..20).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "stranded after the member left: {missing:?} (it held {unacked:?})"
    );
}

// --- 10. Authentication and authorisation ---------------------------------------------------

/// No anonymous access; one user `sensor` / `s3cret`; no ACL rules.
fn login_gateway() -> Gateway {
    let hash = hash_password("s3cret");
    Gateway::builder()
        .config(&format!(
            r#"
[auth]
allow_anonymous = false

[[auth.users]]
name = "sensor"
password_hash = "{hash}"
"#
        ))
        .start()
}

/// Anonymous access on; `admin` may do anything; everyone may use
/// `devices/<client id>/#` and `users/<username>/#`; everything else is denied.
fn acl_gateway() -> Gateway {
    let admin = hash_password("admin-pw");
    let alice = hash_password("alice-pw");
    Gateway::builder()
        .config(&format!(
            r##"
[auth]
allow_anonymous = true
acl_default = "deny"

[[auth.users]]
name = "admin"
password_hash = "{admin}"

[[auth.users]]
name = "alice"
password_hash = "{alice}"

[[auth.acl]]
user = "admin"
action = "all"
topic = "#"

[[auth.acl]]
action = "all"
topic = "devices/%c/#"

[[auth.acl]]
action = "all"
topic = "users/%u/#"
"##
        ))
        .start()
}

async fn admin(gw: &Gateway) -> Client {
    let mut o = opts(gw, "admin-console");
    o.set_credentials("admin", "admin-pw");
    Client::connect(o).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_client_is_refused_with_code_5_when_anonymous_access_is_off() {
    let gw = login_gateway();
    assert_eq!(
        connect_refused(opts(&gw, "anon")).await,
        ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_code_4() {
    let gw = login_gateway();
    let mut o = opts(&gw, "s1");
    o.set_credentials("sensor", "wrong");
    assert_eq!(
        connect_refused(o).await,
        ConnectReturnCode::BadUserNamePassword
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_password_is_accepted() {
    let gw = login_gateway();
    let mut o = opts(&gw, "s1");
    o.set_credentials("sensor", "s3cret");
    let mut c = Client::connect(o).await;
    c.subscribe("any/t", QoS::AtLeastOnce).await;
    c.publish_acked("any/t", "ok").await;
    assert_eq!(&c.expect().await.payload[..], b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_client_id_rule_allows_publishing_under_own_id() {
    let gw = acl_gateway();
    let mut watch = admin(&gw).await;
    watch.subscribe("devices/#", QoS::AtLeastOnce).await;
    let mut d1 = connect(&gw, "d1").await;
    d1.publish_acked("devices/d1/x", "mine").await;
    let p = watch.expect().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("devices/d1/x", &b"mine"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_denied_publish_is_acked_but_dropped() {
    let gw = acl_gateway();
    let mut watch = admin(&gw).await;
    watch.subscribe("devices/#", QoS::AtLeastOnce).await;
    let mut d1 = connect(&gw, "d1").await;
    // 3.1.1 has no negative PUBACK: the publish is acknowledged and dropped.
    d1.publish_acked("devices/d2/x", "not mine").await;
    d1.publish_acked("devices/d1/x", "marker").await;
    let p = watch.expect().await;
    assert_eq!(
        p.topic, "devices/d1/x",
        "denied publish was delivered: {p:?}"
    );
    watch.expect_none(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_denied_subscribe_gets_failure_return_code() {
    let gw = acl_gateway();
    let mut d1 = connect(&gw, "d1").await;
    assert_eq!(
        d1.subscribe("devices/d2/#", QoS::AtLeastOnce).await,
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(
        d1.subscribe("devices/d1/#", QoS::AtLeastOnce).await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_username_placeholder_is_substituted() {
    let gw = acl_gateway();
    let mut o = opts(&gw, "alice-phone");
    o.set_credentials("alice", "alice-pw");
    let mut alice = Client::connect(o).await;
    assert_eq!(
        alice.subscribe("users/alice/#", QoS::AtLeastOnce).await,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(
        alice.subscribe("users/bob/#", QoS::AtLeastOnce).await,
        [SubscribeReasonCode::Failure]
    );
    alice.publish_acked("users/alice/inbox", "note").await;
    let p = alice.expect().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("users/alice/inbox", &b"note"[..])
    );
}

// --- 11. Ordering -----------------------------------------------------------------------------

/// Publishes 1,000 numbered messages at `qos` on one topic and checks both
/// subscribers receive all of them in order.
async fn thousand_in_order(qos: QoS) {
    const N: u32 = 1000;
    let gw = Gateway::start();
    let mut s1 = connect(&gw, "s1").await;
    let mut s2 = connect(&gw, "s2").await;
    s1.subscribe("order/t", qos).await;
    s2.subscribe("order/t", qos).await;
    let publ = connect(&gw, "pub").await;
    for i in 0..N {
        publ.publish("order/t", qos, false, i.to_string()).await;
    }
    for (name, s) in [("s1", &mut s1), ("s2", &mut s2)] {
        let mut got = Vec::with_capacity(N as usize);
        while got.len() < N as usize {
            match s.recv(WAIT).await {
                Some(p) => {
                    assert_eq!(p.qos, qos);
                    got.push(index_of(&p));
                }
                None => break,
            }
        }
        let lost = N as usize - got.len();
        let first_gap = got
            .iter()
            .zip(0..)
            .find(|(g, i)| **g != *i)
            .map(|(g, i)| (i, *g));
        assert!(
            lost == 0 && first_gap.is_none(),
            "{name}: {lost} of {N} lost; first out-of-place (expected, got): {first_gap:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_qos1_messages_arrive_in_order_at_two_subscribers() {
    thousand_in_order(QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_qos0_messages_arrive_in_order_at_two_subscribers() {
    thousand_in_order(QoS::AtMostOnce).await;
}

// --- 12. Slow subscribers ---------------------------------------------------------------------

/// A payload of `size` bytes: its decimal index, a space, then padding.
fn padded(i: usize, size: usize) -> Vec<u8> {
    let mut p = format!("{i} ").into_bytes();
    p.resize(size, b'.');
    p
}

/// The index at the start of a [`padded`] payload.
fn index_of_padded(payload: &[u8]) -> usize {
    let end = payload.iter().position(|&b| b == b' ').unwrap_or(0);
    std::str::from_utf8(&payload[..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad payload {:?}", &payload[..16.min(payload.len())]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_that_stops_reading_does_not_delay_others() {
    const N: usize = 5000;
    const CHUNK: usize = 50;
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_QUEUED_QOS0", 100)
        .start();
    // Subscribes, then never reads again: its socket buffers fill and stay full.
    let mut slow = RawClient::connect(gw.mqtt_addr(), ProtocolVersion::V3_1_1, "slow").await;
    assert_eq!(
        slow.subscribe(
            "feed/t",
            raw::SubscriptionOptions::with_qos(raw::QoS::AtMostOnce)
        )
        .await,
        [0]
    );
    let mut fast = connect(&gw, "fast").await;
    fast.subscribe("feed/t", QoS::AtMostOnce).await;
    let publ = connect(&gw, "pub").await;

    // 20 MiB in all, far beyond what the slow socket can absorb (loopback
    // buffers grow to a few MiB). Published in chunks no larger than the QoS 0
    // buffer so the fast subscriber can keep up; each chunk must reach it
    // promptly however stuck the slow one is.
    let start = Instant::now();
    for chunk in 0..N / CHUNK {
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            publ.publish("feed/t", QoS::AtMostOnce, false, padded(i, 4096))
                .await;
        }
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            let p = fast.recv(Duration::from_secs(2)).await.unwrap_or_else(|| {
                panic!("message {i} did not reach the fast subscriber within 2 s")
            });
            assert_eq!(index_of_padded(&p.payload), i);
        }
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(20), "{N} messages took {took:?}");

    // The gateway is alive and serving.
    let mut probe = connect(&gw, "probe").await;
    probe.subscribe("probe/t", QoS::AtLeastOnce).await;
    probe.publish_acked("probe/t", "alive").await;
    assert_eq!(&probe.expect().await.payload[..], b"alive");

    // The slow subscriber's backlog was bounded: once it reads again it finds
    // only what the socket buffers and the QoS 0 queue held, in order.
    let mut got = Vec::new();
    loop {
        match slow.recv(Duration::from_millis(500)).await {
            Received::Frame(f) => match f.packet(ProtocolVersion::V3_1_1) {
                raw::Packet::Publish(p) => got.push(index_of_padded(p.payload)),
                other => panic!("unexpected {other:?}"),
            },
            Received::Timeout => break,
            Received::Closed => panic!("the slow subscriber was disconnected"),
        }
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "slow subscriber's messages out of order"
    );
    assert!(
        !got.is_empty() && got.len() < N,
        "slow subscriber got {} of {N}: the excess should have been dropped",
        got.len()
    );
}

// --- 13. CONNECT handling ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_without_connect_is_closed_after_connect_timeout() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__CONNECT_TIMEOUT", "1s")
        .start();
    let mut c = RawClient::tcp(gw.mqtt_addr(), ProtocolVersion::V3_1_1).await;
    let start = Instant::now();
    c.expect_closed(WAIT).await;
    let after = start.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after <= Duration::from_secs(3),
        "closed after {after:?} with connect_timeout 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_closes_the_connection() {
    let gw = Gateway::start();
    let connect = raw_connect_packet("twice", 30);
    let mut c = raw_connect(&gw, &connect).await;
    c.send_packet(&raw::Packet::Connect(connect)).await;
    c.expect_closed(WAIT).await;
}

// --- 14. Limits -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_beyond_max_connections_gets_server_unavailable() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_CONNECTIONS", 2)
        .start();
    let _c1 = connect(&gw, "c1").await;
    let _c2 = connect(&gw, "c2").await;
    assert_eq!(
        connect_refused(opts(&gw, "c3")).await,
        ConnectReturnCode::ServiceUnavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_beyond_max_subscriptions_per_client_is_refused() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_SUBSCRIPTIONS_PER_CLIENT", 2)
        .start();
    let mut c = connect(&gw, "c").await;
    let ok = [SubscribeReasonCode::Success(QoS::AtLeastOnce)];
    assert_eq!(c.subscribe("lim/1", QoS::AtLeastOnce).await, ok);
    assert_eq!(c.subscribe("lim/2", QoS::AtLeastOnce).await, ok);
    assert_eq!(
        c.subscribe("lim/3", QoS::AtLeastOnce).await,
        [SubscribeReasonCode::Failure]
    );
    // Re-subscribing to an existing filter is not a new subscription.
    assert_eq!(c.subscribe("lim/1", QoS::AtLeastOnce).await, ok);
}

/// With `max_queued_messages = 3`, five QoS 1 messages for an offline session;
/// returns what the session receives on resume.
async fn overflowed_offline_queue(gw: &Gateway) -> Vec<String> {
    offline_session(gw, "keeper", "lim/t", QoS::AtLeastOnce).await;
    let mut publ = connect(gw, "pub").await;
    for i in 1..=5 {
        publ.publish_acked("lim/t", i.to_string()).await;
    }
    let (mut c, present) = connect_session(persistent(gw, "keeper")).await;
    assert!(present);
    payloads(&drain(&mut c, QUIET).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_offline_queue_drops_the_oldest_by_default() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_QUEUED_MESSAGES", 3)
        .start();
    assert_eq!(overflowed_offline_queue(&gw).await, ["3", "4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_offline_queue_drops_the_newest_when_configured() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_QUEUED_MESSAGES", 3)
        .env("TETHER_MQTT__OVERFLOW", "drop-newest")
        .start();
    assert_eq!(overflowed_offline_queue(&gw).await, ["1", "2", "3"]);
}

// --- 15. Memory high-watermark ----------------------------------------------------------------

const WATERMARK: &str = "64KiB";
/// Messages of 4 KiB: the watermark is crossed after about 16 of them.
const BIG: usize = 4096;

/// Counts PUBACKs until none has arrived for `quiet`; panics if the
/// connection fails meanwhile.
async fn count_pubacks(c: &mut Client, quiet: Duration) -> usize {
    let mut n = 0;
    loop {
        match c.next_incoming(quiet).await {
            Some(Ok(Packet::PubAck(_))) => n += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("publisher disconnected: {e}"),
            None => return n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_is_paused_not_disconnected_above_memory_watermark() {
    const N: usize = 40;
    // With the memory engine nothing can be paged to disk, so the backlog
    // stays in memory and the watermark must pause the publisher.
    let gw = Gateway::builder()
        .env("TETHER_LIMITS__MEMORY_HIGH_WATERMARK", WATERMARK)
        .env("TETHER_STORAGE__ENGINE", "memory")
        .start();
    offline_session(&gw, "backlog", "hw/t", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    for i in 0..N {
        publ.publish("hw/t", QoS::AtLeastOnce, false, padded(i, BIG))
            .await;
    }
    // Acks stop once the backlog passes 64 KiB; the connection stays up.
    let acked = count_pubacks(&mut publ, Duration::from_millis(800)).await;
    assert!(
        acked > 0 && acked < N,
        "{acked} of {N} 4 KiB publishes acknowledged with a 64 KiB watermark"
    );

    // The backlog drains: every publish completes and every message arrives.
    let (mut sub, present) = connect_session(persistent(&gw, "backlog")).await;
    assert!(present);
    let mut got = Vec::new();
    while got.len() < N {
        let p = sub
            .recv(WAIT)
            .await
            .unwrap_or_else(|| panic!("only {} of {N} messages arrived", got.len()));
        got.push(index_of_padded(&p.payload));
    }
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    let rest = N - acked;
    let mut late = 0;
    while late < rest {
        match publ.next_incoming(WAIT).await {
            Some(Ok(Packet::PubAck(_))) => late += 1,
            Some(Ok(_)) => {}
            other => panic!("{late} of {rest} paused publishes completed: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_paused_at_memory_watermark_is_not_dropped_for_keepalive() {
    const N: u16 = 30;
    // With the memory engine nothing can be paged to disk, so the backlog
    // stays in memory and the watermark must pause the publisher.
    let gw = Gateway::builder()
        .env("TETHER_LIMITS__MEMORY_HIGH_WATERMARK", WATERMARK)
        .env("TETHER_STORAGE__ENGINE", "memory")
        .start();
    offline_session(&gw, "backlog", "hw/t", QoS::AtLeastOnce).await;
    let mut publ = raw_connect(&gw, &raw_connect_packet("pub", 1)).await;
    let payload = vec![b'.'; BIG];
    for id in 1..=N {
        let p = raw::Publish {
            packet_id: Some(id),
            ..raw::publish_packet("hw/t", raw::QoS::AtLeastOnce, &payload)
        };
        publ.publish(p).await;
    }
    let mut acked = 0;
    while let Received::Frame(f) = publ.recv(Duration::from_millis(500)).await {
        assert_eq!(f.packet_type(), raw::PacketType::PubAck as u8);
        acked += 1;
    }
    assert!(acked < N, "the watermark never paused the publisher");
    // A well-behaved client keeps pinging while it waits. The gateway stopped
    // reading it on purpose; that silence is not the client's, so it must not
    // end the connection for keepalive (1.5 s here).
    let pingreq = raw::encode(ProtocolVersion::V3_1_1, &raw::Packet::PingReq);
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_secs(3) {
        if !publ.try_send(&pingreq).await {
            panic!(
                "gateway closed a paused publisher after {:?}",
                paused.elapsed()
            );
        }
        match publ.recv(Duration::from_millis(400)).await {
            Received::Closed => panic!(
                "gateway closed a paused publisher after {:?}:\n{}",
                paused.elapsed(),
                gw.log().text()
            ),
            Received::Frame(_) | Received::Timeout => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_publishes_and_subscribes_is_not_deadlocked_by_memory_watermark() {
    const N: usize = 40;
    // With the memory engine nothing can be paged to disk, so the backlog
    // stays in memory and the watermark must pause the publisher.
    let gw = Gateway::builder()
        .env("TETHER_LIMITS__MEMORY_HIGH_WATERMARK", WATERMARK)
        .env("TETHER_STORAGE__ENGINE", "memory")
        .start();
    // One client consumes its own stream: its PUBACKs for deliveries share the
    // socket with its publishes, so they must still be read while its
    // publishes are paused, or the backlog can never drain.
    let mut c = connect(&gw, "loop").await;
    c.subscribe("loop/t", QoS::AtLeastOnce).await;
    for i in 0..N {
        c.publish("loop/t", QoS::AtLeastOnce, false, padded(i, BIG))
            .await;
    }
    let mut got = Vec::new();
    let mut acked = 0;
    let deadline = Instant::now() + WAIT;
    while (got.len() < N || acked < N) && Instant::now() < deadline {
        match c.next_incoming(deadline - Instant::now()).await {
            Some(Ok(Packet::Publish(p))) => got.push(index_of_padded(&p.payload)),
            Some(Ok(Packet::PubAck(_))) => acked += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("disconnected: {e}"),
            None => break,
        }
    }
    assert_eq!(
        (got.len(), acked),
        (N, N),
        "stalled: {} of {N} delivered, {acked} of {N} acknowledged",
        got.len()
    );
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

// --- 16. Flow control: publishers wait for slow subscribers ----------------------------------

/// Reads QoS 1 deliveries on a raw subscriber, acknowledging each after
/// `pause`, until `n` have arrived; returns their indices in arrival order.
async fn read_slowly(sub: &mut RawClient, n: usize, pause: Duration) -> Vec<usize> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match sub.recv(WAIT).await {
            Received::Frame(f) => match f.packet(ProtocolVersion::V3_1_1) {
                raw::Packet::Publish(p) => {
                    got.push(index_of_padded(p.payload));
                    let id = p.packet_id.expect("a QoS 1 delivery has a packet id");
                    tokio::time::sleep(pause).await;
                    sub.puback(id).await;
                }
                other => panic!("unexpected {other:?}"),
            },
            Received::Timeout => panic!("stalled after {} of {n} deliveries", got.len()),
            Received::Closed => panic!("the subscriber was disconnected"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_publisher_is_slowed_to_a_slow_subscriber_instead_of_dropping() {
    const N: usize = 1000;
    // The session queue holds 100; without flow control a publisher this much
    // faster than its subscriber would lose most messages to drop-oldest.
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_QUEUED_MESSAGES", 100)
        .env("TETHER_MQTT__FLOW_CONTROL_AT", 20)
        .env("TETHER_MQTT__FLOW_CONTROL_TIMEOUT", "10s")
        .start();
    let mut sub = RawClient::connect(gw.mqtt_addr(), ProtocolVersion::V3_1_1, "slow").await;
    assert_eq!(
        sub.subscribe(
            "flow/t",
            raw::SubscriptionOptions::with_qos(raw::QoS::AtLeastOnce)
        )
        .await,
        [1]
    );
    let publ = connect(&gw, "pub").await;
    let sender = publ.client.clone();
    let send = tokio::spawn(async move {
        for i in 0..N {
            sender
                .publish("flow/t", QoS::AtLeastOnce, false, padded(i, 64))
                .await
                .expect("publish queued");
        }
    });
    // About 1 ms per message: far slower than the publisher.
    let got = read_slowly(&mut sub, N, Duration::from_millis(1)).await;
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "messages lost or reordered"
    );
    send.await.expect("publisher task");
    sub.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_pauses_publishers_only_for_the_flow_timeout() {
    const N: usize = 400;
    let gw = Gateway::builder()
        .env("TETHER_MQTT__FLOW_CONTROL_AT", 20)
        .env("TETHER_MQTT__FLOW_CONTROL_TIMEOUT", "300ms")
        .start();
    // Subscribes and then never acknowledges: its queue congests and stays so.
    let mut stuck = RawClient::connect(gw.mqtt_addr(), ProtocolVersion::V3_1_1, "stuck").await;
    stuck
        .subscribe(
            "stuck/t",
            raw::SubscriptionOptions::with_qos(raw::QoS::AtLeastOnce),
        )
        .await;
    let mut fine = connect(&gw, "fine").await;
    fine.subscribe("stuck/t", QoS::AtLeastOnce).await;
    let mut publ = connect(&gw, "pub").await;
    let start = Instant::now();
    for i in 0..N {
        publ.publish("stuck/t", QoS::AtLeastOnce, false, padded(i, 64))
            .await;
    }
    let mut acked = 0;
    while acked < N {
        match publ.next_incoming(WAIT).await {
            Some(Ok(Packet::PubAck(_))) => acked += 1,
            Some(Ok(_)) => {}
            other => panic!("{acked} of {N} publishes acknowledged: {other:?}"),
        }
    }
    let took = start.elapsed();
    // One pause of at most 300 ms, not one per message (that would be minutes).
    assert!(took < Duration::from_secs(5), "{N} publishes took {took:?}");
    for i in 0..N {
        let p = fine.expect().await;
        assert_eq!(index_of_padded(&p.payload), i);
    }
}
