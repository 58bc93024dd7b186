//! AMQP connections and channels through lapin: login (PLAIN, AMQPLAIN,
//! anonymous), server properties, Tune (frame_max, channel_max, heartbeat),
//! virtual hosts, closing in both directions, channel lifecycle, channel.flow,
//! channel errors that must not spill over to other channels, and
//! connection.blocked / unblocked at the memory high-watermark.

use std::time::Duration;

use futures_lite::StreamExt;
use tether_e2e::Gateway;
use tether_e2e::amqp::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with one configured user `alice` / `wonderland`.
fn gateway_with_user(allow_anonymous: bool) -> Gateway {
    let hash = hash_password("wonderland");
    Gateway::builder()
        .config(&format!(
            "[auth]\nallow_anonymous = {allow_anonymous}\n\n[[auth.users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"
        ))
        .start()
}

#[tokio::test]
async fn plain_login_with_configured_user_succeeds() {
    let gw = gateway_with_user(false);
    let uri = uri_with(gw.amqp.unwrap(), Some(("alice", "wonderland")), "/", "");
    let conn = try_connect(&uri).await.expect("alice logs in with PLAIN");
    assert!(conn.status().connected());
    assert_eq!(conn.status().username(), "alice");
    let ch = conn.create_channel().await.expect("channel");
    declare_queue(&ch, "alice-q", FieldTable::default()).await;
}

#[tokio::test]
async fn plain_login_with_wrong_password_is_refused_with_access_refused() {
    let gw = gateway_with_user(true);
    let uri = uri_with(gw.amqp.unwrap(), Some(("alice", "looking-glass")), "/", "");
    let code = expect_code(try_connect(&uri).await, "wrong password");
    assert_eq!(code, 403, "ACCESS_REFUSED");
    let uri = uri_with(gw.amqp.unwrap(), Some(("mallory", "x")), "/", "");
    let code = expect_code(try_connect(&uri).await, "unknown user");
    assert_eq!(code, 403, "ACCESS_REFUSED");
}

#[tokio::test]
async fn amqplain_login_with_configured_user_succeeds() {
    let gw = gateway_with_user(false);
    let ok = uri_with(
        gw.amqp.unwrap(),
        Some(("alice", "wonderland")),
        "/",
        "auth_mechanism=amqplain",
    );
    let conn = try_connect(&ok).await.expect("alice logs in with AMQPLAIN");
    let ch = conn.create_channel().await.expect("channel");
    declare_queue(&ch, "amqplain-q", FieldTable::default()).await;
    let bad = uri_with(
        gw.amqp.unwrap(),
        Some(("alice", "nope")),
        "/",
        "auth_mechanism=amqplain",
    );
    assert_eq!(
        expect_code(try_connect(&bad).await, "AMQPLAIN wrong password"),
        403
    );
}

#[tokio::test]
async fn anonymous_guest_login_is_allowed_by_default() {
    let gw = Gateway::start();
    let conn = try_connect(&uri(gw.amqp.unwrap()))
        .await
        .expect("guest/guest is anonymous and allowed");
    let ch = conn.create_channel().await.expect("channel");
    declare_queue(&ch, "guest-q", FieldTable::default()).await;
}

#[tokio::test]
async fn anonymous_guest_login_is_refused_when_anonymous_is_disabled() {
    let gw = gateway_with_user(false);
    let code = expect_code(
        try_connect(&uri(gw.amqp.unwrap())).await,
        "guest with allow_anonymous=false",
    );
    assert_eq!(code, 403, "ACCESS_REFUSED");
}

/// lapin does not keep the server properties of connection.start, so this
/// test reads connection.start off a raw socket and parses it with lapin's
/// own codec (`lapin::protocol`).
#[tokio::test]
async fn server_properties_announce_rabbitmq_capabilities() {
    use lapin::protocol::{AMQPClass, connection};
    let gw = Gateway::start();
    let mut sock = tokio::net::TcpStream::connect(gw.amqp.unwrap())
        .await
        .expect("tcp connect");
    sock.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut head = [0u8; 7];
    tokio::time::timeout(WAIT, sock.read_exact(&mut head))
        .await
        .expect("connection.start in time")
        .expect("frame header");
    assert_eq!(head[0], 1, "method frame");
    assert_eq!(u16::from_be_bytes([head[1], head[2]]), 0, "channel 0");
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let mut payload = vec![0u8; size + 1];
    sock.read_exact(&mut payload).await.expect("frame payload");
    assert_eq!(payload[size], 0xCE, "frame end");
    let (_, method) = lapin::protocol::parse_class(&payload[..size]).expect("parse method");
    let AMQPClass::Connection(connection::AMQPMethod::Start(start)) = method else {
        panic!("expected connection.start, got {method:?}");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let mechanisms = start.mechanisms.to_string();
    assert!(
        mechanisms.split(' ').any(|m| m == "PLAIN"),
        "mechanisms: {mechanisms}"
    );
    assert!(
        mechanisms.split(' ').any(|m| m == "AMQPLAIN"),
        "mechanisms: {mechanisms}"
    );
    let Some(AMQPValue::FieldTable(caps)) = start.server_properties.inner().get("capabilities")
    else {
        panic!("no capabilities table: {:?}", start.server_properties);
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        assert_eq!(
            caps.inner().get(cap),
            Some(&AMQPValue::Boolean(true)),
            "capability {cap}"
        );
    }
    for key in ["product", "version"] {
        assert!(
            start.server_properties.inner().contains_key(key),
            "server property {key}"
        );
    }
}

#[tokio::test]
async fn smaller_client_frame_max_splits_large_messages_byte_identical() {
    let gw = Gateway::start();
    let uri = uri_with(gw.amqp.unwrap(), None, "/", "frame_max=8192");
    let conn = try_connect(&uri).await.expect("connect");
    assert_eq!(
        conn.configuration().frame_max(),
        8192,
        "client's frame_max wins"
    );
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "big", FieldTable::default()).await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    publish(&ch, "", "big", &body).await;
    let mut consumer = consume(&ch, "big", "", true).await;
    let d = next(&mut consumer, WAIT).await.expect("large message");
    assert_eq!(d.data.len(), body.len());
    assert!(d.data == body, "payload differs after reassembly");
}

#[tokio::test]
async fn channel_max_from_config_limits_open_channels() {
    let gw = Gateway::builder()
        .env("TETHER_AMQP__CHANNEL_MAX", "3")
        .start();
    let conn = connect(gw.amqp.unwrap()).await;
    assert_eq!(
        conn.configuration().channel_max(),
        3,
        "Tune offers channel_max"
    );
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(
            conn.create_channel()
                .await
                .unwrap_or_else(|e| panic!("channel {} of 3: {e}", i + 1)),
        );
    }
    let err = conn
        .create_channel()
        .await
        .expect_err("a fourth channel is above channel_max");
    assert!(
        matches!(err.kind(), lapin::ErrorKind::ChannelsLimitReached),
        "unexpected error: {err}"
    );
    for ch in &open {
        assert!(ch.status().connected());
    }
    declare_queue(&open[2], "still-fine", FieldTable::default()).await;
}

#[tokio::test]
async fn client_channel_max_below_server_is_honoured() {
    let gw = Gateway::start();
    let uri = uri_with(gw.amqp.unwrap(), None, "/", "channel_max=2");
    let conn = try_connect(&uri).await.expect("connect");
    assert_eq!(conn.configuration().channel_max(), 2);
    let a = conn.create_channel().await.expect("channel 1");
    let b = conn.create_channel().await.expect("channel 2");
    assert!(
        conn.create_channel().await.is_err(),
        "third channel refused"
    );
    declare_queue(&a, "cm-a", FieldTable::default()).await;
    declare_queue(&b, "cm-b", FieldTable::default()).await;
}

fn two_vhosts() -> Gateway {
    Gateway::builder()
        .config("[amqp]\nvhosts = [\"/\", \"other\"]\n")
        .start()
}

#[tokio::test]
async fn second_vhost_is_a_separate_namespace() {
    let gw = two_vhosts();
    let other = try_connect(&uri_with(gw.amqp.unwrap(), None, "other", ""))
        .await
        .expect("vhost other opens");
    assert_eq!(other.status().vhost().as_str(), "other");
    let och = other.create_channel().await.unwrap();
    declare_queue(&och, "shared-name", FieldTable::default()).await;
    publish(&och, "", "shared-name", b"in other").await;
    assert_eq!(await_message_count(&och, "shared-name", 1, WAIT).await, 1);

    let root = connect(gw.amqp.unwrap()).await;
    assert!(
        !queue_exists(&root, "shared-name").await,
        "a queue of vhost other is invisible in /"
    );
    let rch = root.create_channel().await.unwrap();
    let q = declare_queue(&rch, "shared-name", FieldTable::default()).await;
    assert_eq!(q.message_count(), 0, "/ has its own, empty queue");
    publish(&rch, "", "shared-name", b"in root").await;
    let got = get_within(&rch, "shared-name", WAIT)
        .await
        .expect("root message");
    assert_eq!(got.delivery.data, b"in root");
    let got = get_within(&och, "shared-name", WAIT)
        .await
        .expect("other message");
    assert_eq!(got.delivery.data, b"in other");
}

#[tokio::test]
async fn unknown_vhost_is_refused_with_not_allowed() {
    let gw = two_vhosts();
    let code = expect_code(
        try_connect(&uri_with(gw.amqp.unwrap(), None, "nowhere", "")).await,
        "unknown vhost",
    );
    assert_eq!(code, 530, "NOT_ALLOWED");
}

#[tokio::test]
async fn idle_connection_survives_several_heartbeat_periods() {
    let gw = Gateway::builder()
        .env("TETHER_AMQP__HEARTBEAT", "1s")
        .start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    assert_eq!(
        conn.configuration().heartbeat(),
        1,
        "server's heartbeat taken"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(conn.status().connected(), "connection dropped while idle");
    declare_queue(&ch, "after-idle", FieldTable::default()).await;
    assert!(
        !gw.log().text().contains("missed heartbeats"),
        "gateway saw missed heartbeats:\n{}",
        gw.log().text()
    );
}

#[tokio::test]
async fn client_close_is_acknowledged() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "before-close", FieldTable::default()).await;
    tokio::time::timeout(WAIT, conn.close(200, "bye".into()))
        .await
        .expect("close-ok in time")
        .expect("clean close");
    // close() returning Ok means close-ok arrived; lapin updates its status
    // from its I/O loop right after.
    assert!(
        tether_e2e::eventually(WAIT, || conn.status().closed()).await,
        "connection not closed after close-ok"
    );
    assert!(conn.create_channel().await.is_err());
    let re = regex::Regex::new("amqp client disconnected").unwrap();
    assert!(
        gw.log().wait_for(&re, WAIT).is_some(),
        "gateway did not record the disconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_shutdown_closes_connections_with_connection_forced() {
    let mut gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "doomed", FieldTable::default()).await;
    let mut events = conn.events_listener();
    let mut consumer = consume(&ch, "doomed", "", false).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.terminate();
        (gw, s)
    })
    .await
    .unwrap()
    .1;
    assert!(status.success(), "gateway exit status {status:?}");
    let code = tokio::time::timeout(WAIT, async {
        while let Some(ev) = events.next().await {
            if let lapin::Event::Error(e) = ev {
                return reply_code(&e);
            }
        }
        None
    })
    .await
    .expect("connection error event in time");
    assert_eq!(code, Some(320), "CONNECTION_FORCED");
    match next_result(&mut consumer, WAIT).await {
        Some(Err(e)) => assert_eq!(reply_code(&e), Some(320), "consumer error: {e}"),
        other => panic!("consumer should fail with CONNECTION_FORCED, got {other:?}"),
    }
    assert!(!conn.status().connected());
}

#[tokio::test]
async fn channels_open_and_close_independently() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let a = conn.create_channel().await.unwrap();
    let b = conn.create_channel().await.unwrap();
    assert_ne!(a.id(), b.id());
    a.close(200, "done".into()).await.expect("channel close-ok");
    assert!(!a.status().connected());
    assert!(
        a.queue_declare(
            "x".into(),
            QueueDeclareOptions::default(),
            FieldTable::default()
        )
        .await
        .is_err(),
        "a closed channel refuses methods"
    );
    declare_queue(&b, "b-works", FieldTable::default()).await;
    let c = conn
        .create_channel()
        .await
        .expect("a new channel after a close");
    declare_queue(&c, "c-works", FieldTable::default()).await;
}

#[tokio::test]
async fn channel_flow_pauses_and_resumes_deliveries() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "flowing", FieldTable::default()).await;
    let mut consumer = consume(&ch, "flowing", "", true).await;
    let active = ch
        .channel_flow(ChannelFlowOptions { active: false })
        .await
        .expect("flow-ok");
    assert!(!active);
    let (_p, pch) = channel(gw.amqp.unwrap()).await;
    publish(&pch, "", "flowing", b"held back").await;
    assert_quiet(&mut consumer, "deliveries while flow is off").await;
    let active = ch
        .channel_flow(ChannelFlowOptions { active: true })
        .await
        .expect("flow-ok");
    assert!(active);
    let d = next(&mut consumer, WAIT)
        .await
        .expect("delivery after flow on");
    assert_eq!(d.data, b"held back");
}

#[tokio::test]
async fn channel_error_closes_only_that_channel() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let bad = conn.create_channel().await.unwrap();
    let good = conn.create_channel().await.unwrap();
    declare_queue(&good, "survivor", FieldTable::default()).await;
    let mut consumer = consume(&good, "survivor", "", true).await;

    let r = bad
        .queue_declare(
            "no-such-queue".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert_eq!(expect_code(r, "passive declare of a missing queue"), 404);
    assert!(
        !await_bool(WAIT, false, || async { bad.status().connected() }).await,
        "the failed channel is closed"
    );

    assert!(conn.status().connected(), "the connection survives");
    publish(&good, "", "survivor", b"same connection").await;
    assert_eq!(
        next(&mut consumer, WAIT).await.expect("delivery").data,
        b"same connection"
    );
    let (_other, och) = channel(gw.amqp.unwrap()).await;
    publish(&och, "", "survivor", b"other connection").await;
    assert_eq!(
        next(&mut consumer, WAIT).await.expect("delivery").data,
        b"other connection"
    );
    let again = conn.create_channel().await.expect("new channel");
    declare_queue(&again, "after-error", FieldTable::default()).await;
}

// ----- connection.blocked --------------------------------------------------
//
// lapin stops writing anything on a connection once it has received
// connection.blocked (publishes, acks, channel opens, heartbeats) until
// connection.unblocked arrives. RabbitMQ blocks only connections that publish
// while a resource alarm is in effect, pauses their heartbeat monitor, and
// unblocks every blocked connection as soon as the alarm clears.

/// Bytes of queued messages above which the test gateways block publishers.
const WATERMARK: &str = "16384";

/// A gateway that blocks publishers above [`WATERMARK`] bytes of queued messages.
fn low_watermark_gateway(heartbeat: &str) -> Gateway {
    Gateway::builder()
        .env("TETHER_LIMITS__MEMORY_HIGH_WATERMARK", WATERMARK)
        .env("TETHER_AMQP__HEARTBEAT", heartbeat)
        .start()
}

/// Publishes 1 KiB messages to `queue` one at a time, pausing after each
/// until connection.blocked had time to arrive, and stops as soon as `conn`
/// is blocked: nothing more is sent, so the gateway holds no publish.
/// Returns how many were published.
async fn publish_until_blocked(conn: &Connection, ch: &Channel, queue: &str) -> usize {
    let body = [7u8; 1024];
    for i in 1..=200 {
        let send = ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        );
        tokio::time::timeout(WAIT, send)
            .await
            .unwrap_or_else(|_| panic!("publish {i} never left the client"))
            .expect("publish");
        if await_bool(Duration::from_millis(50), true, || async {
            conn.status().blocked()
        })
        .await
        {
            return i;
        }
    }
    panic!("200 KiB published without connection.blocked");
}

/// Waits for the first event matching `want` on `events`.
async fn await_event(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
    wait: Duration,
    want: impl Fn(&lapin::Event) -> bool,
) -> bool {
    tokio::time::timeout(wait, async {
        while let Some(ev) = events.next().await {
            if want(&ev) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

fn is_blocked(e: &lapin::Event) -> bool {
    matches!(e, lapin::Event::ConnectionBlocked(_))
}

fn is_unblocked(e: &lapin::Event) -> bool {
    matches!(e, lapin::Event::ConnectionUnblocked)
}

/// A publisher connection with an events stream and a channel on which
/// queue `pressure` is declared.
async fn publisher(
    gw: &Gateway,
) -> (
    Connection,
    std::pin::Pin<Box<dyn futures_lite::Stream<Item = lapin::Event> + Send>>,
    Channel,
) {
    let conn = connect(gw.amqp.unwrap()).await;
    let events = Box::pin(conn.events_listener());
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "pressure", FieldTable::default()).await;
    (conn, events, ch)
}

#[tokio::test]
async fn publisher_receives_connection_blocked_above_the_high_watermark() {
    let gw = low_watermark_gateway("60s");
    let (conn, mut events, ch) = publisher(&gw).await;
    let n = publish_until_blocked(&conn, &ch, "pressure").await;
    assert!(
        (14..=20).contains(&n),
        "blocked after {n} KiB with a 16 KiB watermark"
    );
    assert!(
        await_event(&mut events, WAIT, is_blocked).await,
        "no connection.blocked event"
    );
    assert!(conn.status().connected());
}

#[tokio::test]
async fn connection_blocked_stalls_publisher_until_queue_drains() {
    let gw = low_watermark_gateway("60s");
    // The observer connects and subscribes to a probe queue before the alarm.
    let (_o, och) = channel(gw.amqp.unwrap()).await;
    declare_queue(&och, "probe", FieldTable::default()).await;
    let mut probe = consume(&och, "probe", "", true).await;
    let (conn, mut events, pch) = publisher(&gw).await;
    publish_until_blocked(&conn, &pch, "pressure").await;
    assert!(await_event(&mut events, WAIT, is_blocked).await);

    // Publishing stalls while blocked; the connection stays open.
    let stalled = tokio::spawn({
        let pch = pch.clone();
        async move { publish(&pch, "", "probe", b"stalled").await }
    });
    assert_quiet(&mut probe, "a publish while blocked").await;
    assert!(conn.status().connected(), "blocked connection closed");
    assert!(conn.status().blocked());

    // A consumer drains the queue: the publisher is unblocked at once (it
    // has nothing in flight: lapin holds the stalled publish itself) and the
    // stalled message goes through.
    let mut drain = consume(&och, "pressure", "", true).await;
    let drained = take(&mut drain, 10, false).await;
    assert_eq!(drained.len(), 10);
    assert!(
        await_event(&mut events, WAIT, is_unblocked).await,
        "no connection.unblocked after the queue drained"
    );
    tokio::time::timeout(WAIT, stalled)
        .await
        .expect("stalled publish completes after unblock")
        .unwrap();
    assert_eq!(
        next(&mut probe, WAIT).await.expect("stalled message").data,
        b"stalled"
    );
    assert!(conn.status().connected());
}

/// RabbitMQ blocks only connections that publish during an alarm: a client
/// that connects to consume must be able to open a channel, consume and ack,
/// which is how the queue drains and the alarm clears.
#[tokio::test]
async fn consuming_connections_are_not_blocked() {
    let gw = low_watermark_gateway("60s");
    let (conn, mut events, pch) = publisher(&gw).await;
    publish_until_blocked(&conn, &pch, "pressure").await;
    assert!(await_event(&mut events, WAIT, is_blocked).await);

    let consumer_conn = connect(gw.amqp.unwrap()).await;
    let ch = tokio::time::timeout(WAIT, consumer_conn.create_channel())
        .await
        .expect("channel.open-ok while publishers are blocked")
        .expect("channel");
    let mut consumer = tokio::time::timeout(
        WAIT,
        ch.basic_consume(
            "pressure".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("consume-ok while publishers are blocked")
    .expect("consume");
    for i in 0..10 {
        let d = next(&mut consumer, WAIT)
            .await
            .unwrap_or_else(|| panic!("delivery {i}"));
        tokio::time::timeout(WAIT, d.ack(BasicAckOptions::default()))
            .await
            .unwrap_or_else(|_| panic!("ack {i} was not sent: consumer connection blocked"))
            .expect("ack");
    }
    assert!(
        !consumer_conn.status().blocked(),
        "a connection that never published was blocked"
    );
    assert!(
        await_event(&mut events, WAIT, is_unblocked).await,
        "publisher not unblocked after acks drained the queue"
    );
}

/// A blocked lapin connection sends nothing, not even heartbeats; RabbitMQ
/// pauses its heartbeat monitor while a connection is blocked.
#[tokio::test]
async fn blocked_connection_is_not_closed_for_missed_heartbeats() {
    let gw = low_watermark_gateway("1s");
    let (_o, och) = channel(gw.amqp.unwrap()).await;
    let (conn, mut events, pch) = publisher(&gw).await;
    assert_eq!(conn.configuration().heartbeat(), 1);
    publish_until_blocked(&conn, &pch, "pressure").await;
    assert!(await_event(&mut events, WAIT, is_blocked).await);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        conn.status().connected(),
        "blocked connection was closed after {}",
        if gw.log().text().contains("missed heartbeats") {
            "\"missed heartbeats\""
        } else {
            "an unknown reason"
        }
    );
    let mut drain = consume(&och, "pressure", "", true).await;
    take(&mut drain, 10, false).await;
    assert!(await_event(&mut events, WAIT, is_unblocked).await);
}
