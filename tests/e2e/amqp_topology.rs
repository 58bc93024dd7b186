//! AMQP topology through lapin: exchanges of every type and their routing,
//! exchange-to-exchange bindings, alternate exchanges, queues (exclusive,
//! auto-delete, server-named, purge, conditional delete) and the RabbitMQ
//! queue arguments (TTL, expiry, length limits and overflow, dead-lettering
//! with `x-death`, priorities, single active consumer, queue types, delivery
//! limit). RabbitMQ's behaviour is the reference for every expectation here.

use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::amqp::*;

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn try_declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> lapin::Result<()> {
    ch.exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
}

async fn try_declare_queue(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(name.into(), options, args).await
}

/// The payloads currently in `queue`, drained with basic.get.
async fn drain(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        out.push(m.delivery.data);
    }
    out
}

/// Declares queue `dlq` bound to a new fanout exchange `dlx`.
async fn dead_letter_sink(ch: &Channel) {
    declare_exchange(ch, "dlx", ExchangeKind::Fanout).await;
    declare_queue(ch, "dlq", FieldTable::default()).await;
    bind(ch, "dlq", "dlx", "", FieldTable::default()).await;
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
        other => panic!("expected a string, got {other:?}"),
    }
}

// ----- exchanges -----------------------------------------------------------

#[tokio::test]
async fn standard_exchanges_exist_with_their_types() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    for name in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        assert!(exchange_exists(&conn, name).await, "{name} is missing");
    }
    // Redeclaring a standard exchange with its own properties is allowed.
    try_declare_exchange(
        &ch,
        "amq.direct",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await
    .expect("equivalent redeclare of amq.direct");

    declare_queue(&ch, "std", FieldTable::default()).await;
    bind(&ch, "std", "amq.direct", "k", FieldTable::default()).await;
    bind(&ch, "std", "amq.fanout", "ignored", FieldTable::default()).await;
    bind(&ch, "std", "amq.topic", "t.*", FieldTable::default()).await;
    let all = table(&[("x-match", long_str("all")), ("h", long_str("1"))]);
    bind(&ch, "std", "amq.headers", "", all.clone()).await;
    bind(&ch, "std", "amq.match", "", all).await;
    let h = BasicProperties::default().with_headers(table(&[("h", long_str("1"))]));
    publish(&ch, "", "std", b"default").await;
    publish(&ch, "amq.direct", "k", b"direct").await;
    publish(&ch, "amq.direct", "other", b"direct-miss").await;
    publish(&ch, "amq.fanout", "whatever", b"fanout").await;
    publish(&ch, "amq.topic", "t.x", b"topic").await;
    publish(&ch, "amq.topic", "t.x.y", b"topic-miss").await;
    publish_with(&ch, "amq.headers", "", b"headers", h.clone()).await;
    publish_with(&ch, "amq.match", "", b"match", h).await;
    publish(&ch, "amq.headers", "", b"headers-miss").await;
    assert_eq!(await_message_count(&ch, "std", 6, WAIT).await, 6);
    assert_eq!(
        drain(&ch, "std").await,
        [
            &b"default"[..],
            b"direct",
            b"fanout",
            b"topic",
            b"headers",
            b"match"
        ]
    );
}

#[tokio::test]
async fn exchanges_of_each_type_can_be_declared() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    for (name, kind) in [
        ("x-direct", ExchangeKind::Direct),
        ("x-fanout", ExchangeKind::Fanout),
        ("x-topic", ExchangeKind::Topic),
        ("x-headers", ExchangeKind::Headers),
    ] {
        declare_exchange(&ch, name, kind.clone()).await;
        // Idempotent with the same properties.
        declare_exchange(&ch, name, kind).await;
        assert!(exchange_exists(&conn, name).await, "{name}");
    }
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_is_not_found() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let r = try_declare_exchange(
        &ch,
        "nowhere",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(expect_code(r, "passive declare of a missing exchange"), 404);
}

#[tokio::test]
async fn redeclaring_exchange_with_other_type_is_precondition_failed() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_exchange(&ch, "typed", ExchangeKind::Direct).await;
    let r = try_declare_exchange(
        &ch,
        "typed",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
    )
    .await;
    assert_eq!(expect_code(r, "redeclare with another type"), 406);
    let ch = conn.create_channel().await.unwrap();
    let r = try_declare_exchange(
        &ch,
        "typed",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(expect_code(r, "redeclare with other durability"), 406);
}

#[tokio::test]
async fn declaring_amq_prefixed_exchange_is_access_refused() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    let r = try_declare_exchange(
        &ch,
        "amq.foo",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
    )
    .await;
    assert_eq!(expect_code(r, "declare amq.foo"), 403);
    assert!(!exchange_exists(&conn, "amq.foo").await);
}

#[tokio::test]
async fn durable_exchange_is_declared_and_kept() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    try_declare_exchange(&ch, "lasting", ExchangeKind::Topic, durable)
        .await
        .expect("durable declare");
    try_declare_exchange(&ch, "lasting", ExchangeKind::Topic, durable)
        .await
        .expect("equivalent redeclare");
    assert!(exchange_exists(&conn, "lasting").await);
}

#[tokio::test]
async fn auto_delete_exchange_disappears_after_its_last_binding_is_removed() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    try_declare_exchange(
        &ch,
        "fleeting",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
    )
    .await
    .expect("auto-delete declare");
    assert!(
        exchange_exists(&conn, "fleeting").await,
        "an auto-delete exchange without bindings yet stays"
    );
    declare_queue(&ch, "ad1", FieldTable::default()).await;
    declare_queue(&ch, "ad2", FieldTable::default()).await;
    bind(&ch, "ad1", "fleeting", "a", FieldTable::default()).await;
    bind(&ch, "ad2", "fleeting", "b", FieldTable::default()).await;
    ch.queue_unbind(
        "ad1".into(),
        "fleeting".into(),
        "a".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind ad1");
    assert!(
        exchange_exists(&conn, "fleeting").await,
        "one binding is left"
    );
    ch.queue_unbind(
        "ad2".into(),
        "fleeting".into(),
        "b".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind ad2");
    assert!(
        !exchange_exists(&conn, "fleeting").await,
        "auto-delete exchange outlived its last binding"
    );
}

#[tokio::test]
async fn publishing_to_internal_exchange_is_access_refused() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    try_declare_exchange(
        &ch,
        "inner",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
    )
    .await
    .expect("internal declare");
    declare_exchange(&ch, "outer", ExchangeKind::Fanout).await;
    declare_queue(&ch, "behind-inner", FieldTable::default()).await;
    bind(&ch, "behind-inner", "inner", "", FieldTable::default()).await;
    ch.exchange_bind(
        "inner".into(),
        "outer".into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind inner to outer");
    // Routing *through* an internal exchange works.
    publish(&ch, "outer", "", b"via outer").await;
    assert_eq!(await_message_count(&ch, "behind-inner", 1, WAIT).await, 1);

    let pch = conn.create_channel().await.unwrap();
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = pch
        .basic_publish(
            "inner".into(),
            "".into(),
            BasicPublishOptions::default(),
            b"direct to inner",
            BasicProperties::default(),
        )
        .await;
    let r = match confirm {
        Ok(c) => c.await,
        Err(e) => Err(e),
    };
    assert_eq!(expect_code(r, "publish to an internal exchange"), 403);
    assert_eq!(message_count(&ch, "behind-inner").await, 1);
}

#[tokio::test]
async fn deleted_exchange_is_gone() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "temp-x", ExchangeKind::Topic).await;
    ch.exchange_delete("temp-x".into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
    assert!(!exchange_exists(&conn, "temp-x").await);
}

#[tokio::test]
async fn deleting_bound_exchange_if_unused_is_precondition_failed() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "busy-x", ExchangeKind::Direct).await;
    declare_queue(&ch, "busy-q", FieldTable::default()).await;
    bind(&ch, "busy-q", "busy-x", "k", FieldTable::default()).await;
    let r = ch
        .exchange_delete(
            "busy-x".into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(expect_code(r, "delete if-unused while bound"), 406);
    assert!(exchange_exists(&conn, "busy-x").await);
}

#[tokio::test]
async fn direct_exchange_routes_on_exact_key() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "d", ExchangeKind::Direct).await;
    declare_queue(&ch, "d-red", FieldTable::default()).await;
    declare_queue(&ch, "d-blue", FieldTable::default()).await;
    bind(&ch, "d-red", "d", "red", FieldTable::default()).await;
    bind(&ch, "d-blue", "d", "blue", FieldTable::default()).await;
    bind(&ch, "d-blue", "d", "navy", FieldTable::default()).await;
    for key in ["red", "blue", "navy", "green", "red.x"] {
        publish(&ch, "d", key, key.as_bytes()).await;
    }
    assert_eq!(await_message_count(&ch, "d-blue", 2, WAIT).await, 2);
    assert_eq!(drain(&ch, "d-red").await, [b"red"]);
    assert_eq!(drain(&ch, "d-blue").await, [&b"blue"[..], b"navy"]);
}

#[tokio::test]
async fn fanout_exchange_routes_to_every_bound_queue() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "f", ExchangeKind::Fanout).await;
    for q in ["f1", "f2", "f3"] {
        declare_queue(&ch, q, FieldTable::default()).await;
        bind(&ch, q, "f", q, FieldTable::default()).await;
    }
    publish(&ch, "f", "any-key", b"everyone").await;
    for q in ["f1", "f2", "f3"] {
        assert_eq!(await_message_count(&ch, q, 1, WAIT).await, 1, "{q}");
        assert_eq!(drain(&ch, q).await, [b"everyone"]);
    }
}

#[tokio::test]
async fn topic_exchange_routes_on_patterns() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "t", ExchangeKind::Topic).await;
    declare_queue(&ch, "t-star", FieldTable::default()).await;
    declare_queue(&ch, "t-hash", FieldTable::default()).await;
    declare_queue(&ch, "t-all", FieldTable::default()).await;
    bind(&ch, "t-star", "t", "stock.*.nyse", FieldTable::default()).await;
    bind(&ch, "t-hash", "t", "stock.#", FieldTable::default()).await;
    bind(&ch, "t-all", "t", "#", FieldTable::default()).await;
    for key in [
        "stock.ibm.nyse",
        "stock.ibm",
        "stock",
        "stock.a.b.nyse",
        "bond.x",
    ] {
        publish(&ch, "t", key, key.as_bytes()).await;
    }
    assert_eq!(await_message_count(&ch, "t-all", 5, WAIT).await, 5);
    assert_eq!(drain(&ch, "t-star").await, [b"stock.ibm.nyse"]);
    assert_eq!(
        drain(&ch, "t-hash").await,
        [
            &b"stock.ibm.nyse"[..],
            b"stock.ibm",
            b"stock",
            b"stock.a.b.nyse"
        ]
    );
}

#[tokio::test]
async fn headers_exchange_matches_all_or_any() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "h", ExchangeKind::Headers).await;
    declare_queue(&ch, "h-all", FieldTable::default()).await;
    declare_queue(&ch, "h-any", FieldTable::default()).await;
    bind(
        &ch,
        "h-all",
        "h",
        "",
        table(&[
            ("x-match", long_str("all")),
            ("format", long_str("pdf")),
            ("type", long_str("report")),
        ]),
    )
    .await;
    bind(
        &ch,
        "h-any",
        "h",
        "",
        table(&[
            ("x-match", long_str("any")),
            ("format", long_str("pdf")),
            ("type", long_str("report")),
        ]),
    )
    .await;
    let send = |name: &'static str, headers: FieldTable| {
        let ch = ch.clone();
        async move {
            publish_with(
                &ch,
                "h",
                "",
                name.as_bytes(),
                BasicProperties::default().with_headers(headers),
            )
            .await
        }
    };
    send(
        "both",
        table(&[("format", long_str("pdf")), ("type", long_str("report"))]),
    )
    .await;
    send("format-only", table(&[("format", long_str("pdf"))])).await;
    send(
        "wrong-type",
        table(&[("format", long_str("pdf")), ("type", long_str("log"))]),
    )
    .await;
    send("neither", table(&[("format", long_str("zip"))])).await;
    assert_eq!(await_message_count(&ch, "h-any", 3, WAIT).await, 3);
    assert_eq!(drain(&ch, "h-all").await, [b"both"]);
    assert_eq!(
        drain(&ch, "h-any").await,
        [&b"both"[..], b"format-only", b"wrong-type"]
    );
}

#[tokio::test]
async fn exchange_to_exchange_binding_routes_through_and_unbinds() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "src", ExchangeKind::Topic).await;
    declare_exchange(&ch, "dst", ExchangeKind::Fanout).await;
    declare_queue(&ch, "e2e-q", FieldTable::default()).await;
    bind(&ch, "e2e-q", "dst", "", FieldTable::default()).await;
    ch.exchange_bind(
        "dst".into(),
        "src".into(),
        "orders.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.bind");
    publish(&ch, "src", "orders.eu.new", b"routed").await;
    publish(&ch, "src", "invoices.eu", b"not routed").await;
    assert_eq!(await_message_count(&ch, "e2e-q", 1, WAIT).await, 1);
    assert_eq!(drain(&ch, "e2e-q").await, [b"routed"]);
    ch.exchange_unbind(
        "dst".into(),
        "src".into(),
        "orders.#".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.unbind");
    publish(&ch, "src", "orders.eu.new", b"after unbind").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(message_count(&ch, "e2e-q").await, 0);
}

#[tokio::test]
async fn alternate_exchange_receives_unroutable_messages() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "ae", ExchangeKind::Fanout).await;
    declare_queue(&ch, "unrouted", FieldTable::default()).await;
    bind(&ch, "unrouted", "ae", "", FieldTable::default()).await;
    ch.exchange_declare(
        "main-x".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[("alternate-exchange", long_str("ae"))]),
    )
    .await
    .expect("declare with alternate-exchange");
    declare_queue(&ch, "routed", FieldTable::default()).await;
    bind(&ch, "routed", "main-x", "known", FieldTable::default()).await;
    publish(&ch, "main-x", "known", b"known").await;
    publish(&ch, "main-x", "unknown", b"unknown").await;
    assert_eq!(await_message_count(&ch, "unrouted", 1, WAIT).await, 1);
    assert_eq!(drain(&ch, "routed").await, [b"known"]);
    let got = get_within(&ch, "unrouted", WAIT).await.expect("via ae");
    assert_eq!(got.delivery.data, b"unknown");
    assert_eq!(got.delivery.routing_key.as_str(), "unknown");
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name_and_refuses_bindings() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "by-name", FieldTable::default()).await;
    publish(&ch, "", "by-name", b"hello").await;
    publish(&ch, "", "no-such-queue", b"lost").await;
    let got = get_within(&ch, "by-name", WAIT).await.expect("message");
    assert_eq!(got.delivery.data, b"hello");
    assert_eq!(got.delivery.exchange.as_str(), "");
    let r = ch
        .queue_bind(
            "by-name".into(),
            "".into(),
            "other".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(expect_code(r, "binding to the default exchange"), 403);
}

// ----- queues --------------------------------------------------------------

#[tokio::test]
async fn server_named_queue_gets_amq_gen_name() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("server-named declare");
    let name = q.name().as_str().to_owned();
    assert!(name.starts_with("amq.gen-"), "name {name}");
    assert!(name.len() > "amq.gen-".len());
    assert!(queue_exists(&conn, &name).await);
    publish(&ch, "", &name, b"to generated").await;
    assert_eq!(await_message_count(&ch, &name, 1, WAIT).await, 1);
}

#[tokio::test]
async fn declare_ok_reports_message_and_consumer_counts() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    let q = declare_queue(&ch, "counted", FieldTable::default()).await;
    assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
    for i in 0..3u8 {
        publish(&ch, "", "counted", &[i]).await;
    }
    let (_c2, ch2) = channel(gw.amqp.unwrap()).await;
    let _a = consume(&ch2, "counted", "a", false).await;
    ch2.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let _b = consume(&ch2, "counted", "b", false).await;
    // The first consumer has no prefetch limit and takes everything.
    assert_eq!(await_message_count(&ch, "counted", 0, WAIT).await, 0);
    let q = try_declare_queue(&ch, "counted", passive(), FieldTable::default())
        .await
        .expect("passive");
    assert_eq!(q.consumer_count(), 2);
    assert_eq!(q.message_count(), 0, "ready messages only");
    let q = declare_queue(&ch, "counted", FieldTable::default()).await;
    assert_eq!(q.consumer_count(), 2, "non-passive redeclare reports too");
}

#[tokio::test]
async fn declare_ok_counts_ready_messages() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "ready", FieldTable::default()).await;
    for i in 0..5u8 {
        publish(&ch, "", "ready", &[i]).await;
    }
    assert_eq!(await_message_count(&ch, "ready", 5, WAIT).await, 5);
    let q = declare_queue(&ch, "ready", FieldTable::default()).await;
    assert_eq!((q.message_count(), q.consumer_count()), (5, 0));
}

#[tokio::test]
async fn durable_queue_redeclared_transient_is_precondition_failed() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    try_declare_queue(
        &ch,
        "solid",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("durable declare");
    let q = try_declare_queue(&ch, "solid", passive(), FieldTable::default())
        .await
        .expect("passive declare ignores flags");
    assert_eq!(q.name().as_str(), "solid");
    let r = try_declare_queue(
        &ch,
        "solid",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    assert_eq!(
        expect_code(r, "transient redeclare of a durable queue"),
        406
    );
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let gw = Gateway::start();
    let (_owner, och) = channel(gw.amqp.unwrap()).await;
    try_declare_queue(
        &och,
        "mine",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exclusive declare");
    let other = connect(gw.amqp.unwrap()).await;
    let ch = other.create_channel().await.unwrap();
    let r = try_declare_queue(&ch, "mine", passive(), FieldTable::default()).await;
    assert_eq!(
        expect_code(r, "passive declare from another connection"),
        405
    );
    let ch = other.create_channel().await.unwrap();
    let r = ch
        .basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(expect_code(r, "consume from another connection"), 405);
    let ch = other.create_channel().await.unwrap();
    let r = ch
        .queue_delete("mine".into(), QueueDeleteOptions::default())
        .await;
    assert_eq!(expect_code(r, "delete from another connection"), 405);
    // The owner still uses it.
    publish(&och, "", "mine", b"still mine").await;
    assert_eq!(await_message_count(&och, "mine", 1, WAIT).await, 1);
}

#[tokio::test]
async fn exclusive_queue_is_deleted_when_its_connection_closes() {
    let gw = Gateway::start();
    let (owner, och) = channel(gw.amqp.unwrap()).await;
    try_declare_queue(
        &och,
        "short-lived",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exclusive declare");
    owner.close(200, "bye".into()).await.expect("close");
    let other = connect(gw.amqp.unwrap()).await;
    assert!(
        !await_bool(WAIT, false, || queue_exists(&other, "short-lived")).await,
        "exclusive queue outlived its connection"
    );
}

#[tokio::test]
async fn auto_delete_queue_is_deleted_after_its_last_consumer_cancels() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    try_declare_queue(
        &ch,
        "ephemeral",
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("auto-delete declare");
    let a = consume(&ch, "ephemeral", "a", true).await;
    let b = consume(&ch, "ephemeral", "b", true).await;
    ch.basic_cancel(a.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel a");
    assert!(
        queue_exists(&conn, "ephemeral").await,
        "one consumer is left"
    );
    ch.basic_cancel(b.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel b");
    assert!(
        !await_bool(WAIT, false, || queue_exists(&conn, "ephemeral")).await,
        "auto-delete queue outlived its last consumer"
    );
}

/// RabbitMQ identifies a binding by (exchange, queue, key, arguments): two
/// headers bindings of one queue that differ only in arguments are both kept.
#[tokio::test]
async fn bindings_differing_only_in_arguments_coexist() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "hx", ExchangeKind::Headers).await;
    declare_queue(&ch, "hq", FieldTable::default()).await;
    bind(&ch, "hq", "hx", "", table(&[("color", long_str("red"))])).await;
    bind(&ch, "hq", "hx", "", table(&[("color", long_str("blue"))])).await;
    for color in ["red", "blue", "green"] {
        publish_with(
            &ch,
            "hx",
            "",
            color.as_bytes(),
            BasicProperties::default().with_headers(table(&[("color", long_str(color))])),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(drain(&ch, "hq").await, [&b"red"[..], b"blue"]);
}

#[tokio::test]
async fn unbind_with_arguments_removes_only_that_binding() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "hx", ExchangeKind::Headers).await;
    declare_queue(&ch, "hq", FieldTable::default()).await;
    let red = table(&[("color", long_str("red"))]);
    let blue = table(&[("color", long_str("blue"))]);
    bind(&ch, "hq", "hx", "", red.clone()).await;
    bind(&ch, "hq", "hx", "", blue).await;
    ch.queue_unbind("hq".into(), "hx".into(), "".into(), red)
        .await
        .expect("unbind red");
    for color in ["red", "blue"] {
        publish_with(
            &ch,
            "hx",
            "",
            color.as_bytes(),
            BasicProperties::default().with_headers(table(&[("color", long_str(color))])),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(drain(&ch, "hq").await, [b"blue"]);
}

#[tokio::test]
async fn queue_bind_and_unbind_change_routing() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "bx", ExchangeKind::Direct).await;
    declare_queue(&ch, "bq", FieldTable::default()).await;
    bind(&ch, "bq", "bx", "k", FieldTable::default()).await;
    publish(&ch, "bx", "k", b"bound").await;
    assert_eq!(await_message_count(&ch, "bq", 1, WAIT).await, 1);
    ch.queue_unbind("bq".into(), "bx".into(), "k".into(), FieldTable::default())
        .await
        .expect("unbind");
    publish(&ch, "bx", "k", b"unbound").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(drain(&ch, "bq").await, [b"bound"]);
}

#[tokio::test]
async fn purge_returns_the_number_of_messages_removed() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "purged", FieldTable::default()).await;
    for i in 0..7u8 {
        publish(&ch, "", "purged", &[i]).await;
    }
    assert_eq!(await_message_count(&ch, "purged", 7, WAIT).await, 7);
    let n = ch
        .queue_purge("purged".into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(n, 7);
    assert_eq!(message_count(&ch, "purged").await, 0);
}

#[tokio::test]
async fn queue_delete_returns_message_count_and_removes_queue() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "doomed", FieldTable::default()).await;
    for i in 0..3u8 {
        publish(&ch, "", "doomed", &[i]).await;
    }
    assert_eq!(await_message_count(&ch, "doomed", 3, WAIT).await, 3);
    let n = ch
        .queue_delete("doomed".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(n, 3);
    assert!(!queue_exists(&conn, "doomed").await);
}

#[tokio::test]
async fn delete_if_unused_with_consumer_is_precondition_failed() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "in-use", FieldTable::default()).await;
    let _consumer = consume(&ch, "in-use", "", true).await;
    let dch = conn.create_channel().await.unwrap();
    let r = dch
        .queue_delete(
            "in-use".into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(expect_code(r, "delete if-unused with a consumer"), 406);
    assert!(queue_exists(&conn, "in-use").await);
}

#[tokio::test]
async fn delete_if_empty_with_messages_is_precondition_failed() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "full", FieldTable::default()).await;
    publish(&ch, "", "full", b"x").await;
    assert_eq!(await_message_count(&ch, "full", 1, WAIT).await, 1);
    let r = ch
        .queue_delete(
            "full".into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(expect_code(r, "delete if-empty with messages"), 406);
    assert!(queue_exists(&conn, "full").await);
}

#[tokio::test]
async fn redeclaring_queue_with_other_arguments_is_precondition_failed() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(
        &ch,
        "argued",
        table(&[("x-max-length", AMQPValue::LongInt(10))]),
    )
    .await;
    declare_queue(
        &ch,
        "argued",
        table(&[("x-max-length", AMQPValue::LongInt(10))]),
    )
    .await;
    let r = try_declare_queue(
        &ch,
        "argued",
        QueueDeclareOptions::default(),
        table(&[("x-max-length", AMQPValue::LongInt(20))]),
    )
    .await;
    assert_eq!(expect_code(r, "redeclare with another x-max-length"), 406);
}

// ----- queue arguments -----------------------------------------------------

#[tokio::test]
async fn message_ttl_expires_messages() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "ttl",
        table(&[("x-message-ttl", AMQPValue::LongInt(100))]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "ttl".into(),
            BasicPublishOptions::default(),
            b"short-lived",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "the queue accepted the message");
    assert_eq!(
        await_message_count(&ch, "ttl", 0, WAIT).await,
        0,
        "message outlived x-message-ttl"
    );
    assert!(
        ch.basic_get("ttl".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn message_ttl_dead_letters_with_reason_expired() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    dead_letter_sink(&ch).await;
    declare_queue(
        &ch,
        "ttl-dl",
        table(&[
            ("x-message-ttl", AMQPValue::LongInt(50)),
            ("x-dead-letter-exchange", long_str("dlx")),
        ]),
    )
    .await;
    publish(&ch, "", "ttl-dl", b"expiring").await;
    let got = get_within(&ch, "dlq", WAIT).await.expect("dead letter");
    assert_eq!(got.delivery.data, b"expiring");
    assert_eq!(got.delivery.exchange.as_str(), "dlx");
    assert_eq!(got.delivery.routing_key.as_str(), "ttl-dl");
    let deaths = x_death(&got.delivery.properties);
    assert_eq!(deaths.len(), 1);
    let d = deaths[0].inner();
    assert_eq!(text(d.get("reason")), "expired");
    assert_eq!(text(d.get("queue")), "ttl-dl");
    assert_eq!(d.get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(
        text(header(&got.delivery.properties, "x-first-death-reason")),
        "expired"
    );
}

#[tokio::test]
async fn per_message_expiration_expires_only_that_message() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "exp", FieldTable::default()).await;
    publish_with(
        &ch,
        "",
        "exp",
        b"expires",
        BasicProperties::default().with_expiration("100".into()),
    )
    .await;
    publish(&ch, "", "exp", b"stays").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(drain(&ch, "exp").await, [b"stays"]);
}

#[tokio::test]
async fn expired_message_is_dead_lettered_with_original_expiration() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    dead_letter_sink(&ch).await;
    declare_queue(
        &ch,
        "exp-dl",
        table(&[("x-dead-letter-exchange", long_str("dlx"))]),
    )
    .await;
    publish_with(
        &ch,
        "",
        "exp-dl",
        b"expires",
        BasicProperties::default().with_expiration("50".into()),
    )
    .await;
    let got = get_within(&ch, "dlq", WAIT).await.expect("dead letter");
    let props = &got.delivery.properties;
    assert_eq!(
        props.expiration(),
        &None,
        "the dead-lettered copy must not expire again"
    );
    let deaths = x_death(props);
    let d = deaths[0].inner();
    assert_eq!(text(d.get("reason")), "expired");
    assert_eq!(text(d.get("original-expiration")), "50");
}

#[tokio::test]
async fn x_expires_deletes_unused_queue() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "idle",
        table(&[("x-expires", AMQPValue::LongInt(200))]),
    )
    .await;
    assert!(queue_exists(&conn, "idle").await);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        !await_bool(WAIT, false, || queue_exists(&conn, "idle")).await,
        "unused queue outlived x-expires"
    );
}

#[tokio::test]
async fn x_expires_spares_queue_with_consumer() {
    let gw = Gateway::start();
    let (conn, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "watched",
        table(&[("x-expires", AMQPValue::LongInt(200))]),
    )
    .await;
    let _consumer = consume(&ch, "watched", "", true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(queue_exists(&conn, "watched").await);
}

#[tokio::test]
async fn max_length_drop_head_drops_oldest() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "bounded",
        table(&[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await;
    for m in ["m1", "m2", "m3", "m4"] {
        publish(&ch, "", "bounded", m.as_bytes()).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(drain(&ch, "bounded").await, [b"m3", b"m4"]);
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_with_reason_maxlen() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    dead_letter_sink(&ch).await;
    declare_queue(
        &ch,
        "bounded-dl",
        table(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-dead-letter-exchange", long_str("dlx")),
        ]),
    )
    .await;
    publish(&ch, "", "bounded-dl", b"old").await;
    publish(&ch, "", "bounded-dl", b"new").await;
    let got = get_within(&ch, "dlq", WAIT).await.expect("dropped head");
    assert_eq!(got.delivery.data, b"old");
    let deaths = x_death(&got.delivery.properties);
    assert_eq!(text(deaths[0].inner().get("reason")), "maxlen");
    assert_eq!(text(deaths[0].inner().get("queue")), "bounded-dl");
    assert_eq!(drain(&ch, "bounded-dl").await, [b"new"]);
}

/// RabbitMQ's `x-max-length-bytes` counts message bodies only.
#[tokio::test]
async fn max_length_bytes_drop_head_counts_bodies() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "byte-bounded",
        table(&[("x-max-length-bytes", AMQPValue::LongInt(8))]),
    )
    .await;
    for m in ["b001", "b002", "b003", "b004"] {
        publish(&ch, "", "byte-bounded", m.as_bytes()).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        drain(&ch, "byte-bounded").await,
        [b"b003", b"b004"],
        "8 bytes of bodies fit two 4-byte messages"
    );
}

#[tokio::test]
async fn max_length_bytes_drops_oldest_when_full() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "kb",
        table(&[("x-max-length-bytes", AMQPValue::LongInt(2500))]),
    )
    .await;
    for i in 0..5u8 {
        publish(&ch, "", "kb", &[i; 1000]).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let left = drain(&ch, "kb").await;
    assert_eq!(
        left.iter().map(|m| m[0]).collect::<Vec<_>>(),
        [3, 4],
        "the newest two 1000-byte messages fit"
    );
}

#[tokio::test]
async fn reject_publish_overflow_nacks_publisher() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "strict",
        table(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", long_str("reject-publish")),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let send = |body: &'static [u8]| {
        let ch = ch.clone();
        async move {
            ch.basic_publish(
                "".into(),
                "strict".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm")
        }
    };
    assert!(send(b"first").await.is_ack());
    assert!(send(b"second").await.is_nack(), "full queue must nack");
    assert_eq!(drain(&ch, "strict").await, [b"first"]);
    assert!(send(b"third").await.is_ack(), "room again after draining");
}

#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    dead_letter_sink(&ch).await;
    declare_queue(
        &ch,
        "strict-dl",
        table(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", long_str("reject-publish-dlx")),
            ("x-dead-letter-exchange", long_str("dlx")),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (body, ack) in [(&b"kept"[..], true), (b"refused", false)] {
        let c = ch
            .basic_publish(
                "".into(),
                "strict-dl".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(
            c.is_ack(),
            ack,
            "confirm for {:?}",
            String::from_utf8_lossy(body)
        );
    }
    let got = get_within(&ch, "dlq", WAIT).await.expect("dead letter");
    assert_eq!(got.delivery.data, b"refused");
    let deaths = x_death(&got.delivery.properties);
    assert_eq!(text(deaths[0].inner().get("reason")), "maxlen");
    assert_eq!(drain(&ch, "strict-dl").await, [b"kept"]);
}

#[tokio::test]
async fn rejected_message_is_dead_lettered_with_x_death_like_rabbitmq() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "work-x", ExchangeKind::Direct).await;
    declare_exchange(&ch, "dead-x", ExchangeKind::Direct).await;
    declare_queue(&ch, "graveyard", FieldTable::default()).await;
    bind(&ch, "graveyard", "dead-x", "dead", FieldTable::default()).await;
    declare_queue(
        &ch,
        "work",
        table(&[
            ("x-dead-letter-exchange", long_str("dead-x")),
            ("x-dead-letter-routing-key", long_str("dead")),
        ]),
    )
    .await;
    bind(&ch, "work", "work-x", "job", FieldTable::default()).await;
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_message_id("m-1".into())
        .with_headers(table(&[("tenant", long_str("acme"))]));
    publish_with(&ch, "work-x", "job", b"payload", props).await;
    let mut consumer = consume(&ch, "work", "", false).await;
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();

    let got = get_within(&ch, "graveyard", WAIT)
        .await
        .expect("dead letter");
    let dl = &got.delivery;
    assert_eq!(dl.data, b"payload");
    assert_eq!(dl.exchange.as_str(), "dead-x");
    assert_eq!(dl.routing_key.as_str(), "dead");
    let p = &dl.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
    assert_eq!(text(header(p, "tenant")), "acme");

    let deaths = x_death(p);
    assert_eq!(deaths.len(), 1);
    let d = deaths[0].inner();
    assert_eq!(d.get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(text(d.get("reason")), "rejected");
    assert_eq!(text(d.get("queue")), "work");
    assert_eq!(text(d.get("exchange")), "work-x");
    match d.get("time") {
        Some(AMQPValue::Timestamp(t)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert!(t.abs_diff(now) < 60, "time {t} is not now ({now})");
        }
        other => panic!("time is not a timestamp: {other:?}"),
    }
    match d.get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => {
            assert_eq!(a.as_slice(), [long_str("job")]);
        }
        other => panic!("routing-keys is not an array: {other:?}"),
    }
    assert_eq!(text(header(p, "x-first-death-reason")), "rejected");
    assert_eq!(text(header(p, "x-first-death-queue")), "work");
    assert_eq!(text(header(p, "x-first-death-exchange")), "work-x");
}

/// The retry pattern: work rejects into a delay queue whose TTL sends the
/// message back. RabbitMQ keeps one x-death entry per (queue, reason), bumps
/// its count and moves it to the front.
#[tokio::test]
async fn repeated_dead_lettering_counts_per_queue_and_reason() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "retry-work",
        table(&[
            ("x-dead-letter-exchange", long_str("")),
            ("x-dead-letter-routing-key", long_str("retry-wait")),
        ]),
    )
    .await;
    declare_queue(
        &ch,
        "retry-wait",
        table(&[
            ("x-message-ttl", AMQPValue::LongInt(20)),
            ("x-dead-letter-exchange", long_str("")),
            ("x-dead-letter-routing-key", long_str("retry-work")),
        ]),
    )
    .await;
    publish(&ch, "", "retry-work", b"flaky").await;
    let mut consumer = consume(&ch, "retry-work", "", false).await;
    let mut last = None;
    for round in 1..=3 {
        let d = next(&mut consumer, WAIT)
            .await
            .unwrap_or_else(|| panic!("round {round}"));
        if round == 3 {
            d.ack(BasicAckOptions::default()).await.unwrap();
            last = Some(d);
            break;
        }
        d.reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
    }
    let d = last.unwrap();
    let deaths = x_death(&d.properties);
    assert_eq!(deaths.len(), 2, "one entry per (queue, reason): {deaths:?}");
    let newest = deaths[0].inner();
    assert_eq!(text(newest.get("queue")), "retry-wait");
    assert_eq!(text(newest.get("reason")), "expired");
    assert_eq!(newest.get("count"), Some(&AMQPValue::LongLongInt(2)));
    let older = deaths[1].inner();
    assert_eq!(text(older.get("queue")), "retry-work");
    assert_eq!(text(older.get("reason")), "rejected");
    assert_eq!(older.get("count"), Some(&AMQPValue::LongLongInt(2)));
    assert_eq!(
        text(header(&d.properties, "x-first-death-queue")),
        "retry-work"
    );
    assert_eq!(
        text(header(&d.properties, "x-first-death-reason")),
        "rejected"
    );
}

#[tokio::test]
async fn max_priority_delivers_higher_priority_first() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "prio",
        table(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
    )
    .await;
    for (body, p) in [
        ("low", 1u8),
        ("high", 9),
        ("mid", 5),
        ("none", 0),
        ("high2", 9),
    ] {
        publish_with(
            &ch,
            "",
            "prio",
            body.as_bytes(),
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    assert_eq!(await_message_count(&ch, "prio", 5, WAIT).await, 5);
    assert_eq!(
        drain(&ch, "prio").await,
        [&b"high"[..], b"high2", b"mid", b"low", b"none"]
    );
}

#[tokio::test]
async fn single_active_consumer_gets_everything_until_it_cancels() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "sac",
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let (_c2, ch2) = channel(gw.amqp.unwrap()).await;
    let mut first = consume(&ch, "sac", "first", true).await;
    let mut second = consume(&ch2, "sac", "second", true).await;
    for i in 0..4u8 {
        publish(&ch, "", "sac", &[b'a' + i]).await;
    }
    assert_eq!(take(&mut first, 4, false).await, [b"a", b"b", b"c", b"d"]);
    assert_quiet(&mut second, "the waiting consumer").await;
    ch.basic_cancel(first.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    for i in 0..2u8 {
        publish(&ch, "", "sac", &[b'x' + i]).await;
    }
    assert_eq!(take(&mut second, 2, false).await, [b"x", b"y"]);
}

#[tokio::test]
async fn classic_and_quorum_queue_types_are_accepted_stream_is_refused() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for kind in ["classic", "quorum"] {
        try_declare_queue(
            &ch,
            &format!("{kind}-q"),
            durable,
            table(&[("x-queue-type", long_str(kind))]),
        )
        .await
        .unwrap_or_else(|e| panic!("x-queue-type {kind}: {e}"));
    }
    let r = try_declare_queue(
        &ch,
        "stream-q",
        durable,
        table(&[("x-queue-type", long_str("stream"))]),
    )
    .await;
    assert_eq!(expect_code(r, "x-queue-type stream"), 406);
    assert!(!queue_exists(&conn, "stream-q").await);
}

#[tokio::test]
async fn delivery_limit_dead_letters_with_reason_delivery_limit() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    dead_letter_sink(&ch).await;
    try_declare_queue(
        &ch,
        "limited",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        table(&[
            ("x-queue-type", long_str("quorum")),
            ("x-delivery-limit", AMQPValue::LongInt(2)),
            ("x-dead-letter-exchange", long_str("dlx")),
        ]),
    )
    .await
    .expect("quorum queue with a delivery limit");
    publish(&ch, "", "limited", b"poison").await;
    let mut consumer = consume(&ch, "limited", "", false).await;
    // Delivered three times: the limit of 2 allows two returns, not the third.
    for attempt in 1..=3 {
        let d = next(&mut consumer, WAIT)
            .await
            .unwrap_or_else(|| panic!("attempt {attempt}"));
        assert_eq!(d.redelivered, attempt > 1, "attempt {attempt}");
        d.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_quiet(&mut consumer, "after the delivery limit").await;
    let got = get_within(&ch, "dlq", WAIT).await.expect("dead letter");
    assert_eq!(got.delivery.data, b"poison");
    let deaths = x_death(&got.delivery.properties);
    assert_eq!(text(deaths[0].inner().get("reason")), "delivery_limit");
    assert_eq!(text(deaths[0].inner().get("queue")), "limited");
}

/// RabbitMQ changes only the headers (and drops `expiration`) of a message it
/// dead-letters; every other property stays as published, absent ones included.
#[tokio::test]
async fn dead_lettered_message_keeps_its_other_properties_unchanged() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    dead_letter_sink(&ch).await;
    declare_queue(
        &ch,
        "keeps-props",
        table(&[("x-dead-letter-exchange", long_str("dlx"))]),
    )
    .await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("c-9".into())
        .with_reply_to("answers".into())
        .with_app_id("billing".into())
        .with_headers(table(&[("tenant", long_str("acme"))]));
    publish_with(&ch, "", "keeps-props", b"{}", props.clone()).await;
    let mut consumer = consume(&ch, "keeps-props", "", false).await;
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let got = get_within(&ch, "dlq", WAIT).await.expect("dead letter");
    let p = got.delivery.properties;
    assert_eq!(text(header(&p, "tenant")), "acme");
    assert_eq!(p.content_type(), props.content_type());
    assert_eq!(p.correlation_id(), props.correlation_id());
    assert_eq!(p.reply_to(), props.reply_to());
    assert_eq!(p.app_id(), props.app_id());
    assert_eq!(
        p.delivery_mode(),
        &None,
        "delivery-mode was not set by the publisher"
    );
    let without_headers = p.clone().with_headers(props.headers().clone().unwrap());
    assert_eq!(
        without_headers, props,
        "properties other than headers changed"
    );
}

#[tokio::test]
async fn mandatory_message_taken_by_alternate_exchange_is_not_returned() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "ae2", ExchangeKind::Fanout).await;
    declare_queue(&ch, "caught", FieldTable::default()).await;
    bind(&ch, "caught", "ae2", "", FieldTable::default()).await;
    ch.exchange_declare(
        "with-ae".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[("alternate-exchange", long_str("ae2"))]),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let c = ch
        .basic_publish(
            "with-ae".into(),
            "nobody".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"caught",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(c, lapin::Confirmation::Ack(None));
    assert_eq!(await_message_count(&ch, "caught", 1, WAIT).await, 1);
}

/// RabbitMQ compares `alternate-exchange` when an exchange is redeclared.
#[tokio::test]
async fn redeclaring_exchange_with_other_alternate_exchange_is_precondition_failed() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "ae-a", ExchangeKind::Fanout).await;
    declare_exchange(&ch, "ae-b", ExchangeKind::Fanout).await;
    let declare = |ae: &'static str| {
        let ch = ch.clone();
        async move {
            ch.exchange_declare(
                "with-alt".into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                table(&[("alternate-exchange", long_str(ae))]),
            )
            .await
        }
    };
    declare("ae-a").await.expect("first declare");
    declare("ae-a").await.expect("equivalent redeclare");
    assert_eq!(
        expect_code(
            declare("ae-b").await,
            "redeclare with another alternate-exchange"
        ),
        406
    );
}
