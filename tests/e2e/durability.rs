//! Durability: state that survives a crash (SIGKILL) and a clean restart.
//!
//! Each test starts `tether` on a data directory it keeps, changes state
//! through real clients, kills the process with SIGKILL, starts a new one on
//! the same directory and checks what came back: durable AMQP topology and
//! persistent messages (in-flight ones redelivered), MQTT persistent sessions
//! with their queued messages and subscriptions, retained messages. Also: a
//! second process on the same directory is refused, and an unusable directory
//! is a clear start-up error.

use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::amqp::{self, *};
use tether_e2e::mqtt::v4::{self, Client, QoS};

const WAIT: Duration = Duration::from_secs(5);

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// Publishes with confirms and waits for every ack.
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    bodies: &[String],
    props: BasicProperties,
) {
    for b in bodies {
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                b.as_bytes(),
                props.clone(),
            )
            .await
            .expect("publish");
        let c = tokio::time::timeout(WAIT, confirm)
            .await
            .expect("confirm timed out")
            .expect("confirm");
        assert!(c.is_ack(), "publish of {b} was not confirmed: {c:?}");
    }
}

fn restart(gw: &mut Gateway, dir: &tempfile::TempDir) -> Gateway {
    gw.kill9();
    Gateway::builder().data_dir(dir.path().join("data")).start()
}

#[tokio::test]
async fn amqp_durable_topology_and_persistent_messages_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::builder().data_dir(dir.path().join("data")).start();
    let (conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.exchange_declare(
        "orders".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let args = table(&[
        ("x-max-length", AMQPValue::LongInt(100)),
        ("x-dead-letter-exchange", long_str("")),
        ("x-dead-letter-routing-key", long_str("orders.dlq")),
    ]);
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("orders.eu".into(), durable, args.clone())
        .await
        .unwrap();
    ch.queue_declare("orders.dlq".into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare(
        "scratch".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    amqp::bind(&ch, "orders.eu", "orders", "eu.#", FieldTable::default()).await;

    let kept: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    publish_confirmed(&ch, "orders", "eu.de", &kept, persistent()).await;
    publish_confirmed(
        &ch,
        "orders",
        "eu.fr",
        &["transient".to_owned()],
        BasicProperties::default(),
    )
    .await;
    publish_confirmed(&ch, "", "scratch", &["gone".to_owned()], persistent()).await;

    // Consume two: ack the first, keep the second in flight at the crash.
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut c = amqp::consume(&cch, "orders.eu", "c", false).await;
    let first = amqp::next(&mut c, WAIT).await.expect("first delivery");
    assert_eq!(first.data, b"p0");
    first.ack(BasicAckOptions::default()).await.unwrap();
    let second = amqp::next(&mut c, WAIT).await.expect("second delivery");
    assert_eq!(second.data, b"p1");
    assert!(!second.redelivered);
    // A basic.ack has no reply. A durable declaration after it on the same
    // channel does: its declare-ok waits until its write is durable, and the
    // store keeps the order of writes, so the ack is durable by then too.
    cch.queue_declare("sync-point".into(), durable, FieldTable::default())
        .await
        .unwrap();

    let gw2 = restart(&mut gw, &dir);
    let conn2 = amqp::connect(gw2.amqp.unwrap()).await;
    assert!(
        amqp::exchange_exists(&conn2, "orders").await,
        "durable exchange lost"
    );
    assert!(
        amqp::queue_exists(&conn2, "orders.eu").await,
        "durable queue lost"
    );
    assert!(
        !amqp::queue_exists(&conn2, "scratch").await,
        "transient queue came back"
    );
    // Re-declaring with the same arguments is accepted: they were kept.
    let ch2 = conn2.create_channel().await.unwrap();
    ch2.queue_declare("orders.eu".into(), durable, args.clone())
        .await
        .expect("redeclare with the stored arguments");
    // p1 (in flight) and p2..p9 are back; p0 (acked) and the transient one are not.
    let mut c2 = amqp::consume(&ch2, "orders.eu", "c2", false).await;
    let mut got = Vec::new();
    while let Some(d) = amqp::next(&mut c2, Duration::from_secs(2)).await {
        got.push((String::from_utf8(d.data.clone()).unwrap(), d.redelivered));
        d.ack(BasicAckOptions::default()).await.unwrap();
        if got.len() == 9 {
            break;
        }
    }
    let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(
        bodies,
        ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"]
    );
    assert!(
        got[0].1,
        "the message in flight at the crash must be marked redelivered"
    );
    amqp::assert_quiet(&mut c2, "after the recovered messages").await;

    // The binding came back too.
    let ch3 = conn2.create_channel().await.unwrap();
    ch3.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&ch3, "orders", "eu.it", &["after".to_owned()], persistent()).await;
    let d = amqp::next(&mut c2, WAIT)
        .await
        .expect("routed through the recovered binding");
    assert_eq!(d.data, b"after");
    d.ack(BasicAckOptions::default()).await.unwrap();

    // The dead-letter settings came back: rejecting dead-letters.
    publish_confirmed(
        &ch3,
        "orders",
        "eu.es",
        &["reject-me".to_owned()],
        persistent(),
    )
    .await;
    let d = amqp::next(&mut c2, WAIT).await.expect("delivery to reject");
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    assert_eq!(
        amqp::await_message_count(&ch3, "orders.dlq", 1, WAIT).await,
        1,
        "x-dead-letter-* arguments lost"
    );
}

#[tokio::test]
async fn deleted_topology_stays_deleted_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::builder().data_dir(dir.path().join("data")).start();
    let (conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        "temp-x".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    for q in ["q-keep", "q-delete"] {
        ch.queue_declare(q.into(), durable, FieldTable::default())
            .await
            .unwrap();
        amqp::bind(&ch, q, "temp-x", q, FieldTable::default()).await;
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&ch, "", "q-delete", &["x".to_owned()], persistent()).await;
    ch.queue_unbind(
        "q-keep".into(),
        "temp-x".into(),
        "q-keep".into(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_delete("q-delete".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    drop(conn);

    let gw2 = restart(&mut gw, &dir);
    let (conn2, ch2) = amqp::channel(gw2.amqp.unwrap()).await;
    assert!(
        !amqp::queue_exists(&conn2, "q-delete").await,
        "deleted queue came back"
    );
    assert!(amqp::queue_exists(&conn2, "q-keep").await);
    ch2.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&ch2, "temp-x", "q-keep", &["y".to_owned()], persistent()).await;
    assert_eq!(
        amqp::message_count(&ch2, "q-keep").await,
        0,
        "the removed binding came back"
    );
    // Declaring the deleted queue again gives an empty queue.
    let q = ch2
        .queue_declare("q-delete".into(), durable, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(
        q.message_count(),
        0,
        "messages of the deleted queue came back"
    );
}

#[tokio::test]
async fn mqtt_persistent_session_and_retained_messages_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::builder().data_dir(dir.path().join("data")).start();
    let addr = gw.mqtt_addr();
    let mut opts = v4::options(addr, "dev-sub");
    opts.set_clean_session(false);
    let mut sub = Client::connect(opts).await;
    sub.subscribe("sensors/+/temp", QoS::AtLeastOnce).await;
    sub.subscribe("sensors/+/noise", QoS::AtMostOnce).await;
    sub.disconnect().await;

    let mut publ = Client::connect(v4::options(addr, "dev-pub")).await;
    for i in 0..5 {
        publ.publish_acked(&format!("sensors/{i}/temp"), format!("t{i}"))
            .await;
    }
    // A QoS 1 publish to a QoS 0 subscription is not kept for an offline session.
    publ.publish_acked("sensors/1/noise", "n").await;
    publ.publish("status/gw", QoS::AtLeastOnce, true, "online")
        .await;
    publ.publish_acked("status/ignored", "x").await;

    let gw2 = restart(&mut gw, &dir);
    let addr2 = gw2.mqtt_addr();
    let mut opts = v4::options(addr2, "dev-sub");
    opts.set_clean_session(false);
    let mut sub = Client::start(opts);
    let ack = sub.connack().await;
    assert!(ack.session_present, "persistent session lost in the crash");
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = sub.expect().await;
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert_eq!(got, ["t0", "t1", "t2", "t3", "t4"]);
    sub.expect_none(Duration::from_millis(300)).await;

    // The subscriptions came back: a publish after the restart arrives.
    let mut publ = Client::connect(v4::options(addr2, "dev-pub2")).await;
    publ.publish_acked("sensors/9/temp", "after").await;
    assert_eq!(&sub.expect().await.payload[..], b"after");

    // The retained message came back.
    let mut late = Client::connect(v4::options(addr2, "late")).await;
    late.subscribe("status/#", QoS::AtLeastOnce).await;
    let r = late.expect().await;
    assert_eq!(
        (r.topic.as_str(), &r.payload[..], r.retain),
        ("status/gw", &b"online"[..], true)
    );
}

#[tokio::test]
async fn a_clean_session_is_not_kept_and_an_ended_session_stays_ended() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::builder().data_dir(dir.path().join("data")).start();
    let addr = gw.mqtt_addr();
    let mut opts = v4::options(addr, "ephemeral");
    opts.set_clean_session(true);
    let mut c = Client::connect(opts).await;
    c.subscribe("a/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    // A persistent session ended by a clean-session reconnect.
    let mut opts = v4::options(addr, "ended");
    opts.set_clean_session(false);
    let mut c = Client::connect(opts).await;
    c.subscribe("b/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut opts = v4::options(addr, "ended");
    opts.set_clean_session(true);
    Client::connect(opts).await.disconnect().await;
    // A PUBACK of a publish that writes something (a retained message) is
    // sent once that write is durable, and with it everything stored before
    // it (the session's removal included).
    let mut sync = Client::connect(v4::options(addr, "sync")).await;
    sync.publish("sync/point", QoS::AtLeastOnce, true, "x")
        .await;
    loop {
        match sync.next_incoming(WAIT).await {
            Some(Ok(v4::Packet::PubAck(_))) => break,
            Some(Ok(_)) => continue,
            other => panic!("no PUBACK: {other:?}"),
        }
    }

    let gw2 = restart(&mut gw, &dir);
    for id in ["ephemeral", "ended"] {
        let mut opts = v4::options(gw2.mqtt_addr(), id);
        opts.set_clean_session(false);
        let mut c = Client::start(opts);
        assert!(
            !c.connack().await.session_present,
            "{id}: session came back"
        );
        c.disconnect().await;
    }
}

#[tokio::test]
async fn a_clean_shutdown_keeps_state_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::builder().data_dir(dir.path().join("data")).start();
    let (_conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "kept".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(
        &ch,
        "",
        "kept",
        &["a".to_owned(), "b".to_owned()],
        persistent(),
    )
    .await;
    assert!(gw.terminate().success());
    let gw2 = Gateway::builder().data_dir(dir.path().join("data")).start();
    let (_c, ch2) = amqp::channel(gw2.amqp.unwrap()).await;
    assert_eq!(amqp::message_count(&ch2, "kept").await, 2);
}

#[tokio::test]
async fn a_second_process_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _gw = Gateway::builder().data_dir(dir.path().join("data")).start();
    let out = std::process::Command::new(tether_e2e::tether_bin())
        .env_clear()
        .env("TETHER_MQTT__LISTEN", "127.0.0.1:0")
        .env("TETHER_AMQP__LISTEN", "127.0.0.1:0")
        .env("TETHER_HTTP__LISTEN", "127.0.0.1:0")
        .env("TETHER_STORAGE__PATH", dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tether");
    assert!(!out.status.success(), "a second process started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another tether process"),
        "unclear error: {err}"
    );
}

#[tokio::test]
async fn an_unusable_data_directory_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let path = dir.path().join("not-a-dir");
    std::fs::write(&path, b"x").unwrap();
    let out = std::process::Command::new(tether_e2e::tether_bin())
        .env_clear()
        .env("TETHER_MQTT__LISTEN", "127.0.0.1:0")
        .env("TETHER_AMQP__LISTEN", "127.0.0.1:0")
        .env("TETHER_HTTP__LISTEN", "127.0.0.1:0")
        .env("TETHER_STORAGE__PATH", &path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tether");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage") && err.contains("not-a-dir"),
        "unclear error: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
}

#[tokio::test]
async fn memory_engine_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::builder()
        .data_dir(dir.path().join("data"))
        .env("TETHER_STORAGE__ENGINE", "memory")
        .start();
    let (_conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "mem".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    gw.kill9();
    let gw2 = Gateway::builder()
        .data_dir(dir.path().join("data"))
        .env("TETHER_STORAGE__ENGINE", "memory")
        .start();
    let conn2 = amqp::connect(gw2.amqp.unwrap()).await;
    assert!(!amqp::queue_exists(&conn2, "mem").await);
}

#[tokio::test]
async fn a_durable_queue_larger_than_the_memory_watermark_pages_to_disk() {
    // 4 MiB watermark, 24 MiB of persistent messages: without paging the
    // publisher would be blocked at the watermark until a consumer came.
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::builder()
        .data_dir(dir.path().join("data"))
        .env("TETHER_LIMITS__MEMORY_HIGH_WATERMARK", "4MiB")
        .start();
    let (_conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "big".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = vec![b'x'; 1024];
    let total = 24 * 1024;
    let publishing = async {
        let mut pending = std::collections::VecDeque::new();
        for i in 0..total {
            let mut b = body.clone();
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let c = ch
                .basic_publish(
                    "".into(),
                    "big".into(),
                    BasicPublishOptions::default(),
                    &b,
                    persistent(),
                )
                .await
                .expect("publish");
            pending.push_back(c);
            if pending.len() >= 256 {
                let c = pending.pop_front().unwrap().await.expect("confirm");
                assert!(c.is_ack());
            }
        }
        for c in pending {
            assert!(c.await.expect("confirm").is_ack());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publishing stalled at the memory watermark: bodies were not paged out");
    assert_eq!(amqp::message_count(&ch, "big").await, total as u32);
    // Everything comes back, in order, read from disk as the consumer goes.
    let cch = _conn.create_channel().await.unwrap();
    cch.basic_qos(500, BasicQosOptions::default())
        .await
        .unwrap();
    let mut c = amqp::consume(&cch, "big", "c", false).await;
    for i in 0..total {
        let d = amqp::next(&mut c, WAIT)
            .await
            .unwrap_or_else(|| panic!("message {i} did not arrive"));
        assert_eq!(d.data.len(), 1024);
        assert_eq!(
            u64::from_be_bytes(d.data[..8].try_into().unwrap()),
            i as u64
        );
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn pipelined_pubacks_come_back_in_order_while_waiting_for_the_disk() {
    use tether_e2e::raw::{self, Packet, ProtocolVersion, PubResponse, RawClient};
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::builder().data_dir(dir.path().join("data")).start();
    // A persistent subscriber makes QoS 1 publishes wait for the disk.
    let mut opts = v4::options(gw.mqtt_addr(), "keeper");
    opts.set_clean_session(false);
    let mut keeper = Client::connect(opts).await;
    keeper.subscribe("order/#", QoS::AtLeastOnce).await;
    keeper.disconnect().await;

    let v = ProtocolVersion::V3_1_1;
    let mut c = RawClient::connect(gw.mqtt_addr(), v, "pipeliner").await;
    let mut bytes = Vec::new();
    for id in 1..=300u16 {
        let mut p = raw::publish_packet("order/x", raw::QoS::AtLeastOnce, b"m");
        p.packet_id = Some(id);
        bytes.extend(raw::encode(v, &Packet::Publish(p)));
        if id % 50 == 0 {
            // Replies that need no disk, mixed in: they must not overtake.
            bytes.extend(raw::encode(v, &Packet::PingReq));
            let q0 = raw::publish_packet("order/y", raw::QoS::AtMostOnce, b"q0");
            bytes.extend(raw::encode(v, &Packet::Publish(q0)));
        }
    }
    c.send(&bytes).await;
    let mut acked = Vec::new();
    let mut pings = Vec::new();
    while acked.len() < 300 {
        let f = c.expect_frame(WAIT).await;
        match f.packet(v) {
            Packet::PubAck(PubResponse { packet_id, .. }) => acked.push(packet_id),
            Packet::PingResp => pings.push(acked.len()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        acked,
        (1..=300).collect::<Vec<u16>>(),
        "PUBACKs out of order"
    );
    // Each PINGRESP follows the PUBACKs of the publishes sent before it.
    for (i, after) in pings.iter().enumerate() {
        assert!(
            *after >= (i + 1) * 50,
            "PINGRESP {i} overtook PUBACKs: {pings:?}"
        );
    }
}

/// Bytes under `dir`, journals (`*.jnl`) excepted.
fn table_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            total += table_bytes(&p);
        } else if p.extension().is_none_or(|x| x != "jnl") {
            total += e.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

#[tokio::test]
async fn disk_use_returns_near_its_baseline_after_a_queue_drains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = Gateway::builder().data_dir(data.clone()).start();
    let (conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "drain".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // 80 MB: enough that memtables are flushed to tables (and the journal
    // rotates), so there is something on disk to give back.
    let body = vec![b'd'; 16 * 1024];
    let total = 5_000;
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..total {
        let c = ch
            .basic_publish(
                "".into(),
                "drain".into(),
                BasicPublishOptions::default(),
                &body,
                persistent(),
            )
            .await
            .unwrap();
        pending.push_back(c);
        if pending.len() >= 256 {
            assert!(pending.pop_front().unwrap().await.unwrap().is_ack());
        }
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack());
    }
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(500, BasicQosOptions::default())
        .await
        .unwrap();
    let mut c = amqp::consume(&cch, "drain", "c", false).await;
    for _ in 0..total {
        let d = amqp::next(&mut c, WAIT).await.expect("delivery");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // Tables shrink back once the store is quiet (journals are bounded
    // separately and not counted here).
    let quiet =
        tether_e2e::eventually(Duration::from_secs(20), || table_bytes(&data) < 1024 * 1024).await;
    assert!(
        quiet,
        "{} bytes of tables left after 80 MB was written and drained",
        table_bytes(&data)
    );
}

/// A small tmpfs mounted for the test (needs root); unmounted when dropped.
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size: &str) -> Option<TinyDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyDisk { dir })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_instead_of_acknowledging_them() {
    use tether_e2e::raw::{self, Packet, ProtocolVersion, PubResponse, RawClient, ReasonCode};
    // A full disk needs a small filesystem: a tmpfs, which needs root (as CI
    // and the test machines run). Elsewhere this test cannot set itself up.
    let Some(disk) = TinyDisk::mount("8m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let mut gw = Gateway::builder()
        .data_dir(disk.dir.path().join("data"))
        .start();
    let (_conn, ch) = amqp::channel(gw.amqp.unwrap()).await;
    ch.queue_declare(
        "fill".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // Incompressible bodies until the disk is full: every publish is either
    // confirmed (and kept) or refused with a nack; never confirmed and lost.
    let mut confirmed = 0;
    let mut nacked = false;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..4000 {
        let body: Vec<u8> = (0..10_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let c = ch
            .basic_publish(
                "".into(),
                "fill".into(),
                BasicPublishOptions::default(),
                &body,
                persistent(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        if c.is_ack() {
            confirmed += 1;
        } else {
            nacked = true;
            break;
        }
    }
    assert!(
        nacked,
        "8 MiB took {confirmed} confirmed 10 KB messages and never refused one"
    );
    assert!(
        gw.log().text().contains("storage write failed"),
        "no clear log line about the failing disk"
    );

    // MQTT 5: PUBACK 0x80 instead of success.
    let v = ProtocolVersion::V5;
    let mut m = RawClient::connect(gw.mqtt_addr(), v, "full-disk").await;
    let mut p = raw::publish_packet("any/topic", raw::QoS::AtLeastOnce, b"x");
    p.packet_id = Some(7);
    m.send_packet(&Packet::Publish(p)).await;
    match m.expect_frame(WAIT).await.packet(v) {
        Packet::PubAck(PubResponse {
            packet_id: 7,
            reason,
            ..
        }) => assert_eq!(reason, ReasonCode::UNSPECIFIED_ERROR),
        other => panic!("expected PUBACK 0x80, got {other:?}"),
    }

    // SQS: a 500, not a MessageId.
    let c = tether_e2e::aws::sqs_client(gw.http.unwrap());
    let url = c
        .create_queue()
        .queue_name("full")
        .send()
        .await
        .ok()
        .and_then(|o| o.queue_url);
    if let Some(url) = url {
        let r = c
            .send_message()
            .queue_url(url)
            .message_body("x")
            .send()
            .await;
        let e = r.expect_err("SendMessage succeeded on a full disk");
        let raw = e.raw_response().map(|r| r.status().as_u16());
        assert_eq!(raw, Some(500), "{e:?}");
    }

    // What was confirmed is still there to consume (the refused message may
    // be there too, in memory only: a nack promises nothing either way).
    let left = amqp::message_count(&ch, "fill").await;
    assert!(
        left >= confirmed,
        "{left} of {confirmed} confirmed messages left"
    );
    gw.kill9();
    drop(gw);
    drop(disk);
}
