//! MQTT 5.0 end to end: session expiry, will delay, takeover, assigned client
//! ids, keepalive, flow control, topic aliases, subscription identifiers and
//! options, message expiry, property pass-through, reason codes, packet size
//! limits and shared subscriptions.
//!
//! Each test starts its own gateway. rumqttc drives the ordinary cases; the raw
//! client ([`tether_e2e::raw`]) sends what rumqttc will not (DISCONNECT 0x04, a
//! silent keepalive, an oversize packet, an alias above the maximum), reads
//! CONNACK refusals whole, and reads DISCONNECTs that rumqttc 0.25 cannot parse
//! (remaining length 1: reason code without property length).

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{PubAck, UnsubAckReason};
use tether_e2e::mqtt::WAIT;
use tether_e2e::mqtt::v5::{
    Client, DisconnectReasonCode, Filter, LastWill, LastWillProperties, MqttOptions, Packet,
    PubAckReason, Publish, PublishProperties, QoS, RetainForwardRule, SubscribeProperties,
    SubscribeReasonCode,
};
use tether_e2e::raw::{self, ProtocolVersion, RawClient, ReasonCode};
use tether_e2e::{Gateway, eventually};

/// How long to watch for something that must not arrive.
const NOTHING: Duration = Duration::from_millis(400);

/// ACL rules: publish only under `allowed/`, subscribe anywhere except under
/// `secret/`, deny the rest.
const ACL_CONFIG: &str = r##"
[auth]
acl_default = "deny"

[[auth.acl]]
action = "subscribe"
topic = "secret/#"
effect = "deny"

[[auth.acl]]
action = "publish"
topic = "allowed/#"

[[auth.acl]]
action = "subscribe"
topic = "#"
"##;

/// One user, `sensor`, password `secret`; anonymous clients refused.
const USERS_CONFIG: &str = r#"
[auth]
allow_anonymous = false

[[auth.users]]
name = "sensor"
password_hash = '$argon2id$v=19$m=19456,t=2,p=1$j3vqR3cJJJfR5RjpRy195A$gLstgHDp3HJbhxXMdhhrdtYJ+ZWen58Mm1N/OwJ3vTY'
"#;

fn opts(gw: &Gateway, id: &str) -> MqttOptions {
    tether_e2e::mqtt::v5::options(gw.mqtt_addr(), id)
}

/// Options for a session that outlives its connection by `expiry_secs`.
fn persistent(gw: &Gateway, id: &str, expiry_secs: u32) -> MqttOptions {
    let mut o = opts(gw, id);
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(expiry_secs));
    o
}

async fn connect(gw: &Gateway, id: &str) -> Client {
    Client::connect(opts(gw, id)).await.0
}

/// Publishes at QoS 1 and returns the PUBACK.
async fn publish_qos1(
    c: &mut Client,
    topic: &str,
    payload: impl Into<Vec<u8>>,
    props: Option<PublishProperties>,
) -> PubAck {
    let payload = payload.into();
    match props {
        Some(p) => {
            c.client
                .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, p)
                .await
        }
        None => {
            c.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
        }
    }
    .expect("publish request");
    c.wait_for(WAIT, |p| match p {
        Packet::PubAck(a) => Some(a),
        _ => None,
    })
    .await
    .expect("no PUBACK")
}

/// Subscribes with full v5 options and returns the SUBACK codes.
async fn subscribe_filters(
    c: &mut Client,
    filters: Vec<Filter>,
    props: Option<SubscribeProperties>,
) -> Vec<SubscribeReasonCode> {
    match props {
        Some(p) => c.client.subscribe_many_with_properties(filters, p).await,
        None => c.client.subscribe_many(filters).await,
    }
    .expect("subscribe request");
    c.suback().await
}

fn filter(path: &str, qos: QoS) -> Filter {
    Filter::new(path, qos)
}

fn sub_id(id: usize) -> Option<SubscribeProperties> {
    Some(SubscribeProperties {
        id: Some(id),
        user_properties: Vec::new(),
    })
}

/// Waits until the gateway has logged the end of `n` connections of
/// `client_id`; by then their session is back in the registry (or ended).
async fn wait_disconnected(gw: &Gateway, client_id: &str, n: usize) {
    let re = regex::Regex::new(&format!(
        r"client disconnected peer=\S+ client_id={} ",
        regex::escape(client_id)
    ))
    .unwrap();
    let done = eventually(WAIT, || re.find_iter(&gw.log().text()).count() >= n).await;
    assert!(
        done,
        "gateway did not log the end of {client_id}'s connection:\n{}",
        gw.log().text()
    );
}

fn payload_str(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

fn topic_str(p: &Publish) -> String {
    String::from_utf8_lossy(&p.topic).into_owned()
}

fn props(p: &Publish) -> PublishProperties {
    p.properties.clone().unwrap_or_default()
}

// ---------------------------------------------------------------- session expiry

#[tokio::test]
async fn session_expiry_zero_ends_session_with_connection() {
    let gw = Gateway::start();
    let mut o = opts(&gw, "se-zero");
    o.set_clean_start(false); // no Session Expiry Interval: 0
    let (mut sub, ack) = Client::connect(o.clone()).await;
    assert!(!ack.session_present);
    sub.subscribe("se/zero", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    wait_disconnected(&gw, "se-zero", 1).await;

    let mut publisher = connect(&gw, "se-zero-pub").await;
    let ack = publish_qos1(&mut publisher, "se/zero", "lost", None).await;
    assert_eq!(
        ack.reason,
        PubAckReason::NoMatchingSubscribers,
        "the ended session's subscription must be gone"
    );

    let (mut sub, ack) = Client::connect(o).await;
    assert!(!ack.session_present, "session must not survive expiry 0");
    sub.expect_none(NOTHING).await;
}

#[tokio::test]
async fn session_expiry_keeps_queued_qos1_messages_for_reconnect() {
    let gw = Gateway::start();
    let o = persistent(&gw, "se-keep", 60);
    let (mut sub, ack) = Client::connect(o.clone()).await;
    assert!(!ack.session_present);
    sub.subscribe("se/keep", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    wait_disconnected(&gw, "se-keep", 1).await;

    let mut publisher = connect(&gw, "se-keep-pub").await;
    for m in ["one", "two"] {
        let ack = publish_qos1(&mut publisher, "se/keep", m, None).await;
        assert_eq!(ack.reason, PubAckReason::Success, "offline session matches");
    }

    let (mut sub, ack) = Client::connect(o).await;
    assert!(ack.session_present, "session must be resumed");
    assert_eq!(payload_str(&sub.expect().await), "one");
    assert_eq!(payload_str(&sub.expect().await), "two");
    sub.expect_none(NOTHING).await;
}

#[tokio::test]
async fn session_expiry_elapsed_discards_session() {
    let gw = Gateway::start();
    let o = persistent(&gw, "se-short", 2);
    let (mut sub, _) = Client::connect(o.clone()).await;
    sub.subscribe("se/short", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    wait_disconnected(&gw, "se-short", 1).await;

    let mut publisher = connect(&gw, "se-short-pub").await;
    publish_qos1(&mut publisher, "se/short", "queued", None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mut sub, ack) = Client::connect(o).await;
    assert!(
        !ack.session_present,
        "session must be gone 3 s after a 2 s expiry"
    );
    sub.expect_none(NOTHING).await;
}

#[tokio::test]
async fn session_expiry_above_maximum_is_capped_in_connack() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_SESSION_EXPIRY", "10s")
        .start();
    let (_c, ack) = Client::connect(persistent(&gw, "se-cap", 3600)).await;
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.session_expiry_interval, Some(10));
}

// ---------------------------------------------------------------- will delay

fn will(topic: &str, payload: &str, delay: Option<u32>) -> LastWill {
    LastWill::new(
        topic,
        payload,
        QoS::AtLeastOnce,
        false,
        delay.map(|d| LastWillProperties {
            delay_interval: Some(d),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    )
}

async fn will_watcher(gw: &Gateway, filter: &str) -> Client {
    let mut w = connect(gw, "will-watcher").await;
    w.subscribe(filter, QoS::AtLeastOnce).await;
    w
}

#[tokio::test]
async fn will_delay_publishes_will_after_delay() {
    let gw = Gateway::start();
    let mut watcher = will_watcher(&gw, "will/delayed").await;
    let mut o = persistent(&gw, "will-delay", 60);
    o.set_last_will(will("will/delayed", "gone", Some(2)));
    let (c, _) = Client::connect(o).await;

    c.drop_connection();
    let dropped = Instant::now();
    watcher.expect_none(Duration::from_millis(1500)).await;
    let w = watcher
        .recv(Duration::from_secs(3))
        .await
        .expect("will after its delay");
    let elapsed = dropped.elapsed();
    assert_eq!(payload_str(&w), "gone");
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed <= Duration::from_secs(4),
        "will published {elapsed:?} after the drop, expected ~2 s"
    );
}

#[tokio::test]
async fn will_delay_reconnect_before_delay_cancels_will() {
    let gw = Gateway::start();
    let mut watcher = will_watcher(&gw, "will/cancelled").await;
    let mut o = persistent(&gw, "will-cancel", 60);
    o.set_last_will(will("will/cancelled", "gone", Some(1)));
    let (c, _) = Client::connect(o).await;
    c.drop_connection();
    wait_disconnected(&gw, "will-cancel", 1).await;

    // Back within the delay, resuming the session, without a will this time.
    let (_again, ack) = Client::connect(persistent(&gw, "will-cancel", 60)).await;
    assert!(ack.session_present);
    watcher.expect_none(Duration::from_millis(1600)).await;
}

#[tokio::test]
async fn will_not_published_after_normal_disconnect() {
    let gw = Gateway::start();
    let mut watcher = will_watcher(&gw, "will/normal").await;
    let mut o = opts(&gw, "will-normal");
    o.set_last_will(will("will/normal", "gone", None));
    let (c, _) = Client::connect(o).await;
    c.disconnect().await;
    wait_disconnected(&gw, "will-normal", 1).await;
    watcher.expect_none(NOTHING).await;
}

#[tokio::test]
async fn will_published_after_disconnect_with_will_message() {
    let gw = Gateway::start();
    let mut watcher = will_watcher(&gw, "will/asked").await;
    let mut connect = raw::connect_packet(ProtocolVersion::V5, "will-asked");
    connect.will = Some(raw::Will {
        topic: "will/asked",
        payload: b"gone",
        qos: raw::QoS::AtLeastOnce,
        retain: false,
        properties: raw::Properties::new(),
    });
    let (c, _) = RawClient::connect_with(gw.mqtt_addr(), &connect).await;
    c.disconnect(ReasonCode::DISCONNECT_WITH_WILL).await;
    let w = watcher.expect().await;
    assert_eq!(payload_str(&w), "gone");
}

// ---------------------------------------------------------------- connection

#[tokio::test]
async fn session_takeover_disconnects_first_connection_with_session_taken_over() {
    let gw = Gateway::start();
    // Raw, because rumqttc 0.25 cannot parse a DISCONNECT that omits the
    // property length (remaining length 1), which the specification allows.
    let mut first = RawClient::connect(gw.mqtt_addr(), ProtocolVersion::V5, "takeover").await;
    let mut second = connect(&gw, "takeover").await;
    let (code, _) = first.expect_disconnect(WAIT).await;
    assert_eq!(code, ReasonCode::SESSION_TAKEN_OVER.0);
    first.expect_closed(WAIT).await;
    // The second connection is the live one.
    second.subscribe("takeover/t", QoS::AtMostOnce).await;
}

#[tokio::test]
async fn empty_client_id_gets_assigned_client_identifier() {
    let gw = Gateway::start();
    let (_c, ack) = Client::connect(opts(&gw, "")).await;
    let id = ack
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("Assigned Client Identifier in CONNACK");
    assert!(!id.is_empty());
}

#[tokio::test]
async fn server_keep_alive_caps_client_keep_alive() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_KEEP_ALIVE", 5)
        .start();
    let mut o = opts(&gw, "ka-cap");
    o.set_keep_alive(Duration::from_secs(60));
    let (_c, ack) = Client::connect(o).await;
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.server_keep_alive, Some(5));
}

#[tokio::test]
async fn keep_alive_timeout_sends_disconnect_then_closes() {
    let gw = Gateway::start();
    let mut connect = raw::connect_packet(ProtocolVersion::V5, "ka-silent");
    connect.keep_alive = 1;
    let (mut c, _) = RawClient::connect_with(gw.mqtt_addr(), &connect).await;
    let silent = Instant::now();
    let (code, _) = c.expect_disconnect(Duration::from_secs(4)).await;
    assert_eq!(code, ReasonCode::KEEP_ALIVE_TIMEOUT.0);
    assert!(
        silent.elapsed() >= Duration::from_millis(1400),
        "closed after {:?}, before 1.5 x keepalive",
        silent.elapsed()
    );
    c.expect_closed(WAIT).await;
}

// ---------------------------------------------------------------- flow control

#[tokio::test]
async fn receive_maximum_limits_unacknowledged_qos1_deliveries() {
    let gw = Gateway::start();
    let mut o = opts(&gw, "rm-sub");
    o.set_manual_acks(true);
    o.set_receive_maximum(Some(2));
    let (mut sub, _) = Client::connect(o).await;
    sub.subscribe("rm/t", QoS::AtLeastOnce).await;

    let mut publisher = connect(&gw, "rm-pub").await;
    for i in 0..4 {
        publish_qos1(&mut publisher, "rm/t", i.to_string(), None).await;
    }

    let first = sub.expect().await;
    let second = sub.expect().await;
    assert_eq!(payload_str(&first), "0");
    assert_eq!(payload_str(&second), "1");
    sub.expect_none(NOTHING).await;

    sub.client.ack(&first).await.expect("ack");
    assert_eq!(payload_str(&sub.expect().await), "2");
    sub.expect_none(NOTHING).await;
}

#[tokio::test]
async fn connack_advertises_configured_limits() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__RECEIVE_MAXIMUM", 77)
        .env("TETHER_MQTT__MAX_PACKET_SIZE", 20000)
        .env("TETHER_MQTT__TOPIC_ALIAS_MAXIMUM", 7)
        .start();
    let (_c, ack) = Client::connect(opts(&gw, "limits")).await;
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.receive_max, Some(77));
    assert_eq!(props.max_packet_size, Some(20000));
    assert_eq!(props.topic_alias_max, Some(7));
}

// ---------------------------------------------------------------- topic aliases

fn alias(a: u16) -> PublishProperties {
    PublishProperties {
        topic_alias: Some(a),
        ..Default::default()
    }
}

#[tokio::test]
async fn client_topic_alias_resolves_to_full_topic() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "ca-sub").await;
    sub.subscribe("ca/#", QoS::AtLeastOnce).await;
    let mut publisher = connect(&gw, "ca-pub").await;

    let ack = publish_qos1(&mut publisher, "ca/t", "full", Some(alias(1))).await;
    assert_eq!(ack.reason, PubAckReason::Success);
    let ack = publish_qos1(&mut publisher, "", "aliased", Some(alias(1))).await;
    assert_eq!(ack.reason, PubAckReason::Success);

    for expected in ["full", "aliased"] {
        let p = sub.expect().await;
        assert_eq!(payload_str(&p), expected);
        assert_eq!(topic_str(&p), "ca/t");
        assert_eq!(props(&p).topic_alias, None, "subscriber allowed no aliases");
    }
}

#[tokio::test]
async fn unknown_topic_alias_is_protocol_error() {
    let gw = Gateway::start();
    let mut c = connect(&gw, "ca-unknown").await;
    c.client
        .publish_with_properties("", QoS::AtLeastOnce, false, "x", alias(5))
        .await
        .expect("publish request");
    let d = c.server_disconnect(WAIT).await.expect("DISCONNECT");
    assert_eq!(d.reason_code, DisconnectReasonCode::ProtocolError);
}

#[tokio::test]
async fn topic_alias_above_maximum_is_topic_alias_invalid() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__TOPIC_ALIAS_MAXIMUM", 4)
        .start();
    let mut c = RawClient::connect(gw.mqtt_addr(), ProtocolVersion::V5, "ca-over").await;
    let mut p = raw::publish_packet("ca/t", raw::QoS::AtMostOnce, b"x");
    p.properties.topic_alias = Some(5);
    c.publish(p).await;
    let (code, _) = c.expect_disconnect(WAIT).await;
    assert_eq!(code, ReasonCode::TOPIC_ALIAS_INVALID.0);
    c.expect_closed(WAIT).await;
}

#[tokio::test]
async fn server_topic_alias_replaces_topic_on_repeat_delivery() {
    let gw = Gateway::start();
    let mut o = opts(&gw, "sa-sub");
    o.set_topic_alias_max(Some(5));
    let (mut sub, _) = Client::connect(o).await;
    sub.subscribe("sa/t", QoS::AtLeastOnce).await;
    let mut publisher = connect(&gw, "sa-pub").await;
    publish_qos1(&mut publisher, "sa/t", "1", None).await;
    publish_qos1(&mut publisher, "sa/t", "2", None).await;

    // rumqttc reports packets as they were on the wire, before it resolves aliases.
    let first = sub.expect().await;
    let a = props(&first)
        .topic_alias
        .expect("alias set up on first delivery");
    assert_eq!(topic_str(&first), "sa/t");
    assert!((1..=5).contains(&a), "alias {a} within our maximum of 5");
    let second = sub.expect().await;
    assert_eq!(
        topic_str(&second),
        "",
        "repeat delivery sends the alias only"
    );
    assert_eq!(props(&second).topic_alias, Some(a));
    assert_eq!(payload_str(&second), "2");
}

#[tokio::test]
async fn server_topic_alias_is_not_spent_on_message_too_large_for_client() {
    let gw = Gateway::start();
    let mut o = opts(&gw, "sa-mps");
    o.set_topic_alias_max(Some(5));
    o.set_max_packet_size(Some(100));
    let (mut sub, _) = Client::connect(o).await;
    sub.subscribe("sa/t", QoS::AtLeastOnce).await;
    let mut publisher = connect(&gw, "sa-mps-pub").await;
    publish_qos1(&mut publisher, "sa/t", vec![b'L'; 500], None).await;
    publish_qos1(&mut publisher, "sa/t", vec![b's'; 10], None).await;

    // The 500-byte message is never sent, so the client has not learned an
    // alias for the topic: the first delivery it does get must name it.
    let p = sub.expect().await;
    assert_eq!(p.payload.len(), 10);
    assert_eq!(
        topic_str(&p),
        "sa/t",
        "alias {:?} was never established with this client",
        props(&p).topic_alias
    );
}

// ---------------------------------------------------------------- subscription ids

#[tokio::test]
async fn delivery_carries_subscription_identifier() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "sid-sub").await;
    subscribe_filters(&mut sub, vec![filter("sid/a", QoS::AtLeastOnce)], sub_id(7)).await;
    let mut publisher = connect(&gw, "sid-pub").await;
    publish_qos1(&mut publisher, "sid/a", "x", None).await;
    let p = sub.expect().await;
    assert_eq!(props(&p).subscription_identifiers, vec![7]);
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_with_both_identifiers() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "sid-overlap").await;
    subscribe_filters(&mut sub, vec![filter("sid/+", QoS::AtLeastOnce)], sub_id(3)).await;
    subscribe_filters(&mut sub, vec![filter("sid/#", QoS::AtLeastOnce)], sub_id(4)).await;
    let mut publisher = connect(&gw, "sid-overlap-pub").await;
    publish_qos1(&mut publisher, "sid/x", "x", None).await;

    let p = sub.expect().await;
    let mut ids = props(&p).subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, vec![3, 4]);
    sub.expect_none(NOTHING).await;
}

// ---------------------------------------------------------------- no-local

#[tokio::test]
async fn no_local_skips_own_publishes_but_not_others() {
    let gw = Gateway::start();
    let mut me = connect(&gw, "nl-me").await;
    let mut f = filter("nl/t", QoS::AtLeastOnce);
    f.nolocal = true;
    subscribe_filters(&mut me, vec![f], None).await;

    publish_qos1(&mut me, "nl/t", "mine", None).await;
    me.expect_none(NOTHING).await;

    let mut other = connect(&gw, "nl-other").await;
    publish_qos1(&mut other, "nl/t", "theirs", None).await;
    assert_eq!(payload_str(&me.expect().await), "theirs");
}

#[tokio::test]
async fn no_local_on_shared_subscription_is_protocol_error() {
    let gw = Gateway::start();
    let mut c = connect(&gw, "nl-shared").await;
    let mut f = filter("$share/g/nl/t", QoS::AtLeastOnce);
    f.nolocal = true;
    c.client.subscribe_many(vec![f]).await.expect("subscribe");
    let d = c.server_disconnect(WAIT).await.expect("DISCONNECT");
    assert_eq!(d.reason_code, DisconnectReasonCode::ProtocolError);
}

// ---------------------------------------------------------------- retain options

/// A gateway holding one retained message on `rh/t`.
async fn gateway_with_retained() -> Gateway {
    let gw = Gateway::start();
    let mut publisher = connect(&gw, "rh-pub").await;
    publisher
        .client
        .publish("rh/t", QoS::AtLeastOnce, true, "kept")
        .await
        .expect("publish");
    publisher
        .wait_for(WAIT, |p| matches!(p, Packet::PubAck(_)).then_some(()))
        .await
        .expect("PUBACK");
    gw
}

fn retain_filter(rule: RetainForwardRule) -> Filter {
    let mut f = filter("rh/t", QoS::AtLeastOnce);
    f.retain_forward_rule = rule;
    f
}

#[tokio::test]
async fn retain_handling_0_sends_retained_on_every_subscribe() {
    let gw = gateway_with_retained().await;
    let mut sub = connect(&gw, "rh0").await;
    for _ in 0..2 {
        subscribe_filters(
            &mut sub,
            vec![retain_filter(RetainForwardRule::OnEverySubscribe)],
            None,
        )
        .await;
        let p = sub.expect().await;
        assert_eq!(payload_str(&p), "kept");
        assert!(p.retain, "retained message is sent with RETAIN 1");
    }
}

#[tokio::test]
async fn retain_handling_1_sends_retained_only_for_new_subscription() {
    let gw = gateway_with_retained().await;
    let mut sub = connect(&gw, "rh1").await;
    subscribe_filters(
        &mut sub,
        vec![retain_filter(RetainForwardRule::OnNewSubscribe)],
        None,
    )
    .await;
    assert_eq!(payload_str(&sub.expect().await), "kept");
    subscribe_filters(
        &mut sub,
        vec![retain_filter(RetainForwardRule::OnNewSubscribe)],
        None,
    )
    .await;
    sub.expect_none(NOTHING).await;
}

#[tokio::test]
async fn retain_handling_2_never_sends_retained() {
    let gw = gateway_with_retained().await;
    let mut sub = connect(&gw, "rh2").await;
    subscribe_filters(
        &mut sub,
        vec![retain_filter(RetainForwardRule::Never)],
        None,
    )
    .await;
    sub.expect_none(NOTHING).await;
}

async fn live_retain_flag(retain_as_published: bool) -> bool {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "rap-sub").await;
    let mut f = filter("rap/t", QoS::AtLeastOnce);
    f.preserve_retain = retain_as_published;
    subscribe_filters(&mut sub, vec![f], None).await;
    let publisher = connect(&gw, "rap-pub").await;
    publisher
        .client
        .publish("rap/t", QoS::AtLeastOnce, true, "live")
        .await
        .expect("publish");
    let p = sub.expect().await;
    assert_eq!(payload_str(&p), "live");
    p.retain
}

#[tokio::test]
async fn retain_as_published_keeps_retain_flag_on_live_delivery() {
    assert!(live_retain_flag(true).await);
}

#[tokio::test]
async fn without_retain_as_published_live_delivery_clears_retain() {
    assert!(!live_retain_flag(false).await);
}

// ---------------------------------------------------------------- message expiry

fn expiring(secs: u32) -> PublishProperties {
    PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    }
}

/// Subscribes `id` to `topic` with a 60 s session, then goes offline.
async fn offline_subscriber(gw: &Gateway, id: &str, topic: &str) -> MqttOptions {
    let o = persistent(gw, id, 60);
    let (mut sub, _) = Client::connect(o.clone()).await;
    sub.subscribe(topic, QoS::AtLeastOnce).await;
    sub.disconnect().await;
    wait_disconnected(gw, id, 1).await;
    o
}

#[tokio::test]
async fn expired_message_is_not_delivered_to_offline_session() {
    let gw = Gateway::start();
    let o = offline_subscriber(&gw, "me-expired", "me/t").await;
    let mut publisher = connect(&gw, "me-pub").await;
    publish_qos1(&mut publisher, "me/t", "short", Some(expiring(1))).await;
    publish_qos1(&mut publisher, "me/t", "long", Some(expiring(60))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (mut sub, ack) = Client::connect(o).await;
    assert!(ack.session_present);
    assert_eq!(payload_str(&sub.expect().await), "long");
    sub.expect_none(NOTHING).await;
}

#[tokio::test]
async fn forwarded_message_expiry_counts_down() {
    let gw = Gateway::start();
    let o = offline_subscriber(&gw, "me-countdown", "me/t").await;
    let mut publisher = connect(&gw, "me-pub").await;
    publish_qos1(&mut publisher, "me/t", "x", Some(expiring(60))).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (mut sub, _) = Client::connect(o).await;
    let p = sub.expect().await;
    let left = props(&p)
        .message_expiry_interval
        .expect("Message Expiry Interval forwarded");
    assert!((1..=59).contains(&left), "remaining expiry {left}");
}

// ---------------------------------------------------------------- pass-through

#[tokio::test]
async fn publish_properties_pass_through_unchanged() {
    let gw = Gateway::start();
    let mut sub = connect(&gw, "pt-sub").await;
    sub.subscribe("pt/t", QoS::AtLeastOnce).await;
    let mut publisher = connect(&gw, "pt-pub").await;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("pt/reply".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x00\x01corr\xff")),
        user_properties: vec![
            ("z".into(), "1".into()),
            ("a".into(), "2".into()),
            ("z".into(), "3".into()),
        ],
        ..Default::default()
    };
    publish_qos1(&mut publisher, "pt/t", "{\"v\":1}", Some(sent.clone())).await;

    let got = props(&sub.expect().await);
    assert_eq!(got.payload_format_indicator, sent.payload_format_indicator);
    assert_eq!(got.content_type, sent.content_type);
    assert_eq!(got.response_topic, sent.response_topic);
    assert_eq!(got.correlation_data, sent.correlation_data);
    assert_eq!(got.user_properties, sent.user_properties);
}

// ---------------------------------------------------------------- reason codes

#[tokio::test]
async fn puback_no_matching_subscribers() {
    let gw = Gateway::start();
    let mut c = connect(&gw, "rc-nobody").await;
    let ack = publish_qos1(&mut c, "nobody/listens", "x", None).await;
    assert_eq!(ack.reason, PubAckReason::NoMatchingSubscribers);
}

#[tokio::test]
async fn puback_not_authorized_when_acl_denies_publish() {
    let gw = Gateway::builder().config(ACL_CONFIG).start();
    let mut sub = connect(&gw, "acl-sub").await;
    sub.subscribe("#", QoS::AtLeastOnce).await;
    let mut c = connect(&gw, "acl-pub").await;

    let ack = publish_qos1(&mut c, "denied/t", "no", None).await;
    assert_eq!(ack.reason, PubAckReason::NotAuthorized);
    let ack = publish_qos1(&mut c, "allowed/t", "yes", None).await;
    assert_eq!(ack.reason, PubAckReason::Success);
    assert_eq!(
        payload_str(&sub.expect().await),
        "yes",
        "the denied message must not be routed"
    );
}

#[tokio::test]
async fn suback_not_authorized_when_acl_denies_filter() {
    let gw = Gateway::builder().config(ACL_CONFIG).start();
    let mut c = connect(&gw, "acl-subscriber").await;
    let codes = subscribe_filters(
        &mut c,
        vec![
            filter("allowed/#", QoS::AtLeastOnce),
            filter("secret/#", QoS::AtLeastOnce),
        ],
        None,
    )
    .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized
        ]
    );
}

#[tokio::test]
async fn suback_quota_exceeded_beyond_max_subscriptions() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_SUBSCRIPTIONS_PER_CLIENT", 2)
        .start();
    let mut c = connect(&gw, "quota").await;
    let codes = subscribe_filters(
        &mut c,
        vec![
            filter("q/1", QoS::AtMostOnce),
            filter("q/2", QoS::AtMostOnce),
            filter("q/3", QoS::AtMostOnce),
        ],
        None,
    )
    .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::QuotaExceeded
        ]
    );
}

#[tokio::test]
async fn unsuback_no_subscription_existed() {
    let gw = Gateway::start();
    let mut c = connect(&gw, "unsub").await;
    c.client
        .unsubscribe("never/subscribed")
        .await
        .expect("unsubscribe");
    let reasons = c
        .wait_for(WAIT, |p| match p {
            Packet::UnsubAck(u) => Some(u.reasons),
            _ => None,
        })
        .await
        .expect("UNSUBACK");
    assert_eq!(reasons, vec![UnsubAckReason::NoSubscriptionExisted]);
}

/// Connects by hand with `username`/`password` and returns the CONNACK code
/// and reason string.
async fn raw_connack(
    gw: &Gateway,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> (u8, Option<String>) {
    let mut connect = raw::connect_packet(ProtocolVersion::V5, "auth-client");
    connect.username = username;
    connect.password = password;
    let (_c, frame) = RawClient::connect_with(gw.mqtt_addr(), &connect).await;
    match frame.packet(ProtocolVersion::V5) {
        raw::Packet::ConnAck(a) => (a.code.0, a.properties.reason_string.map(str::to_owned)),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn connack_bad_user_name_or_password() {
    let gw = Gateway::builder().config(USERS_CONFIG).start();
    let (ok, _) = raw_connack(&gw, Some("sensor"), Some(b"secret")).await;
    assert_eq!(ok, ReasonCode::SUCCESS.0, "the right password is accepted");
    let (code, _) = raw_connack(&gw, Some("sensor"), Some(b"wrong")).await;
    assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD.0);
}

#[tokio::test]
async fn connack_not_authorized_for_anonymous_when_disallowed() {
    let gw = Gateway::builder().config(USERS_CONFIG).start();
    let (code, _) = raw_connack(&gw, None, None).await;
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED.0);
}

async fn denied_puback(problem_info: Option<u8>) -> PubAck {
    let gw = Gateway::builder().config(ACL_CONFIG).start();
    let mut o = opts(&gw, "problem");
    o.set_request_problem_info(problem_info);
    let (mut c, _) = Client::connect(o).await;
    let ack = publish_qos1(&mut c, "denied/t", "x", None).await;
    assert_eq!(ack.reason, PubAckReason::NotAuthorized);
    ack
}

#[tokio::test]
async fn reason_string_sent_by_default() {
    let ack = denied_puback(None).await;
    let why = ack.properties.and_then(|p| p.reason_string);
    assert!(
        why.is_some_and(|s| !s.is_empty()),
        "PUBACK 0x87 has a reason string"
    );
}

#[tokio::test]
async fn reason_string_withheld_when_problem_information_disabled() {
    let ack = denied_puback(Some(0)).await;
    let why = ack.properties.and_then(|p| p.reason_string);
    assert_eq!(why, None);
}

// ---------------------------------------------------------------- packet size

#[tokio::test]
async fn packet_above_maximum_packet_size_gets_disconnect_packet_too_large() {
    let gw = Gateway::builder()
        .env("TETHER_MQTT__MAX_PACKET_SIZE", 1024)
        .start();
    let mut c = RawClient::connect(gw.mqtt_addr(), ProtocolVersion::V5, "too-large").await;
    let payload = vec![b'x'; 2000];
    c.publish(raw::publish_packet("big/t", raw::QoS::AtMostOnce, &payload))
        .await;
    let (code, _) = c.expect_disconnect(WAIT).await;
    assert_eq!(code, ReasonCode::PACKET_TOO_LARGE.0);
    c.expect_closed(WAIT).await;
}

#[tokio::test]
async fn subscriber_maximum_packet_size_skips_larger_messages() {
    let gw = Gateway::start();
    let mut o = opts(&gw, "mps-sub");
    o.set_max_packet_size(Some(100));
    let (mut sub, _) = Client::connect(o).await;
    sub.subscribe("mps/t", QoS::AtLeastOnce).await;
    let mut publisher = connect(&gw, "mps-pub").await;
    publish_qos1(&mut publisher, "mps/t", vec![b'L'; 500], None).await;
    publish_qos1(&mut publisher, "mps/t", vec![b's'; 10], None).await;

    let p = sub.expect().await;
    assert_eq!(p.payload.len(), 10, "the 500-byte message must be skipped");
    sub.expect_none(NOTHING).await;
}

// ---------------------------------------------------------------- shared subscriptions

/// Every PUBLISH payload `c` receives until it has been idle for `idle`.
async fn drain(c: &mut Client, idle: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(p) = c.recv(idle).await {
        got.push(payload_str(&p));
    }
    got
}

#[tokio::test]
async fn shared_subscription_delivers_each_message_to_one_member() {
    let gw = Gateway::start();
    let mut a = connect(&gw, "share-a").await;
    let mut b = connect(&gw, "share-b").await;
    a.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    b.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    let mut publisher = connect(&gw, "share-pub").await;
    for i in 0..10 {
        publish_qos1(&mut publisher, "sh/t", i.to_string(), None).await;
    }

    let (got_a, got_b) = tokio::join!(drain(&mut a, NOTHING), drain(&mut b, NOTHING));
    let mut all: Vec<u32> = got_a
        .iter()
        .chain(&got_b)
        .map(|s| s.parse().expect("payload is a number"))
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..10).collect::<Vec<_>>(),
        "each message exactly once across the group (a: {got_a:?}, b: {got_b:?})"
    );
}

#[tokio::test]
async fn shared_subscription_delivery_carries_subscription_identifier() {
    let gw = Gateway::start();
    let mut member = connect(&gw, "share-sid").await;
    subscribe_filters(
        &mut member,
        vec![filter("$share/g/shs/t", QoS::AtLeastOnce)],
        sub_id(9),
    )
    .await;
    let mut publisher = connect(&gw, "share-sid-pub").await;
    publish_qos1(&mut publisher, "shs/t", "x", None).await;
    let p = member.expect().await;
    assert_eq!(props(&p).subscription_identifiers, vec![9]);
}
